"""``medshield bench obfnet``: the device runtime and the inference service under load.

Device side (the paper's future work: "overhead on actual IoT hardware platforms"):

* **Ours**: ObfNet1 and ObfNet2 exported to ONNX and run by onnxruntime, fp32 and int8
  (dynamic quantisation), one intra-op thread, batch of one sample.
* **Peer**: the same network in PyTorch eager mode (``torch.inference_mode``), the same thread
  count, the same inputs.

Runs are interleaved (torch, ONNX fp32, ONNX int8, torch, ...) after a warm-up, ``reps``
rounds of ``calls`` single-sample calls each; a row gives the median time per sample of ours
and the peer, ``speedup`` = the median of the per-round ratios (peer / ours) and ``spread`` =
the interquartile range of those ratios. Sizes are the ONNX files' bytes, against the paper's
MB figures (fp32) and against the fp32 file (int8).

Service side: the coordinator's LeNet behind :func:`medshield.serve.create_app` in its own
process on loopback; 2,000 requests (one sample each, raw or obfuscated as voluntary
participants send them) from 50 concurrent clients; every answer is checked against the
model's local prediction. Rows: throughput, p50 and p99 latency, share answered correctly.
The network code needs the ``serve`` and ``device`` extras.
"""

from __future__ import annotations

import secrets
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from medshield.experiments.base import BENCHES, RunOptions
from medshield.models import LeNet5, ObfNet1, ObfNet2
from medshield.results import BenchFile, BenchRow, machine_info

__all__ = ["obfnet_bench", "latency_rows", "size_rows", "service_rows"]

_PAPER_MB = {"ObfNet1": 2.17, "ObfNet2": 6.01}


def _sizes(mode: str) -> dict[str, int]:
    if mode == "fast":
        return {"reps": 5, "calls": 20, "requests": 200, "concurrency": 10}
    if mode == "quick":
        return {"reps": 7, "calls": 200, "requests": 2000, "concurrency": 50}
    return {"reps": 15, "calls": 1000, "requests": 2000, "concurrency": 50}


def _time_calls(fn: Any, xs: list[Any]) -> float:
    t0 = time.perf_counter()
    for x in xs:
        fn(x)
    return (time.perf_counter() - t0) / len(xs)


def _iqr(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[2] - q[0]


def latency_rows(
    name: str,
    net: nn.Module,
    fp32: Path,
    int8: Path,
    *,
    reps: int,
    calls: int,
    threads: int,
    seed: int,
) -> list[BenchRow]:
    """Per-sample latency of ONNX fp32 and int8 against PyTorch eager, interleaved."""
    from medshield.deploy import OnnxModel

    ort32, ort8 = OnnxModel(fp32, threads=threads), OnnxModel(int8, threads=threads)
    gen = torch.Generator().manual_seed(seed)
    xs_t = [torch.rand(1, 1, 28, 28, generator=gen) for _ in range(calls)]
    xs_n = [x.numpy() for x in xs_t]
    net = net.eval()

    def eager(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return net(x)  # type: ignore[no-any-return]

    for _ in range(2):  # warm-up
        _time_calls(eager, xs_t[:20])
        _time_calls(ort32.run, xs_n[:20])
        _time_calls(ort8.run, xs_n[:20])
    t_torch, t32, t8 = [], [], []
    for _ in range(reps):
        t_torch.append(_time_calls(eager, xs_t))
        t32.append(_time_calls(ort32.run, xs_n))
        t8.append(_time_calls(ort8.run, xs_n))
    rows = []
    for label, ours in (("fp32", t32), ("int8 (dynamic)", t8)):
        ratios = [p / o for p, o in zip(t_torch, ours, strict=True)]
        rows.append(
            BenchRow(
                case=f"{name}, ONNX {label} (onnxruntime) vs PyTorch eager",
                measure="latency per sample (batch 1)",
                unit="us",
                ours=statistics.median(ours) * 1e6,
                peer=statistics.median(t_torch) * 1e6,
                peer_name=f"PyTorch eager, {threads} thread(s)",
                speedup=statistics.median(ratios),
                spread=_iqr(ratios),
                note=f"{reps} interleaved rounds of {calls} calls; speedup = median per-round "
                "ratio, spread = its interquartile range",
            )
        )
    return rows


def size_rows(name: str, net: nn.Module, fp32: Path, int8: Path) -> list[BenchRow]:
    """Bytes of the ONNX files against the paper's sizes and against each other."""
    from medshield.deploy import OnnxModel

    x = torch.rand(64, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
    dev8 = float((OnnxModel(int8)(x) - ref).abs().max())
    scale = float(ref.abs().max())
    b32, b8 = fp32.stat().st_size, int8.stat().st_size
    paper = _PAPER_MB[name] * 1e6
    return [
        BenchRow(
            case=f"{name}, ONNX fp32 file",
            measure="bytes per model",
            unit="bytes",
            ours=b32,
            peer=paper,
            peer_name=f"paper ({_PAPER_MB[name]} MB)",
            note="speedup > 1: smaller than the paper's figure",
        ),
        BenchRow(
            case=f"{name}, ONNX int8 file",
            measure="bytes per model",
            unit="bytes",
            ours=b8,
            peer=b32,
            peer_name="ONNX fp32 file",
            note=f"max |int8 - fp32 output| = {dev8:.3g} on outputs up to {scale:.3g}",
        ),
    ]


def _samples(n: int, seed: int) -> np.ndarray:
    """``n`` MNIST test digits (embedded, no data directory needed), float32 (n, 1, 28, 28)."""
    from medshield.data import load_dataset

    data = load_dataset("mnist", source="embedded", seed=seed)
    return np.ascontiguousarray(data.test.x[:n], dtype=np.float32)


def service_rows(
    model: nn.Module,
    obfnets: list[nn.Module],
    workdir: Path,
    *,
    requests: int,
    concurrency: int,
    seed: int,
) -> list[BenchRow]:
    """Throughput and latency of the service under ``concurrency`` clients, answers checked."""
    from medshield.defenses.obfnet import Participant
    from medshield.serve import ServerProcess, load_test

    path = workdir / "lenet.pt"
    torch.save(model.state_dict(), path)
    x = torch.from_numpy(_samples(500, seed))
    sent, _ = Participant(obfnets, p_raw=0.3).obfuscate(x)  # OS randomness, as deployed
    with torch.inference_mode():
        expected = model.eval()(sent).argmax(1).numpy()
    key = secrets.token_urlsafe(32)
    with ServerProcess(path, key, threads=1) as srv:
        rep = load_test(
            srv.url, key, sent.numpy(), expected, requests=requests, concurrency=concurrency
        )
    case = f"service: LeNet, {requests} req x 1 sample, {concurrency} clients"
    note = (
        f"{rep.correct}/{rep.requests} answers equal the local predictions, {rep.failed} "
        "failed; server: 1 process, 1 torch thread, uvicorn on loopback; clients: httpx, one "
        "keep-alive connection each, JSON bodies, in this process"
    )
    return [
        BenchRow(
            case=case, measure="throughput", unit="requests/s", ours=rep.throughput, note=note
        ),
        BenchRow(case=case, measure="latency p50", unit="ms", ours=rep.p50_ms),
        BenchRow(case=case, measure="latency p99", unit="ms", ours=rep.p99_ms),
        BenchRow(
            case=case,
            measure="answers correct",
            unit="fraction",
            ours=rep.correct / rep.requests,
            note=note,
        ),
    ]


@BENCHES.register("obfnet")
def obfnet_bench(opts: RunOptions) -> BenchFile:
    """ONNX fp32/int8 vs PyTorch eager per sample, bytes per model, and the service under load."""
    from medshield.deploy import export_onnx, quantize_int8

    size = _sizes(opts.mode)
    threads = opts.threads or 1
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    rows: list[BenchRow] = []
    try:
        nets = {
            "ObfNet1": ObfNet1(seed=opts.seed).eval(),
            "ObfNet2": ObfNet2(seed=opts.seed).eval(),
        }
        with tempfile.TemporaryDirectory(prefix="medshield-bench-obfnet-") as tmp:
            work = Path(tmp)
            for name, net in nets.items():
                fp32 = export_onnx(net, work / f"{name}.onnx")
                int8 = quantize_int8(fp32)
                rows += latency_rows(
                    name,
                    net,
                    fp32,
                    int8,
                    reps=size["reps"],
                    calls=size["calls"],
                    threads=threads,
                    seed=opts.seed,
                )
                rows += size_rows(name, net, fp32, int8)
            obf2 = [ObfNet2(seed=opts.seed + k).eval() for k in range(3)]
            rows += service_rows(
                LeNet5(seed=opts.seed).eval(),
                obf2,
                work,
                requests=size["requests"],
                concurrency=size["concurrency"],
                seed=opts.seed,
            )
        machine = machine_info()
    finally:
        torch.set_num_threads(old)
    machine.update(
        {
            "bench_threads": threads,
            "onnxruntime_threads": threads,
            "note": "weights are random initialisations: latency and size do not depend "
            "on trained values; the service answers are checked against the "
            "same model's local predictions",
        }
    )
    return BenchFile(bench="obfnet", machine=machine, rows=rows)
