"""``medshield bench secure-load``: PE-HEALTH secure inference under load, over loopback.

Case: the PE-HEALTH network (f) (``pehealth-f``, MNIST-shaped ``1x28x28`` inputs, ring
``Z_2^32`` with 12 fractional bits), deployed on two compute-server **processes**
(``python -m medshield.secure.cli serve``) with mutual TLS on every link; the healthcare
centre (deployment, dealer, result collector) and the sensors run in this process, every
sensor in its own thread with its own certificate and connections. ``quick`` and ``full``:
1,000 requests (one image each) from 50 concurrent sensors, 20 each; a sensor submits its
next request when the centre has the result of its previous one (closed loop: at most 50
requests in flight). ``fast``: 40 requests from 8 sensors. Material for every request is
dealt before the clock starts (offline phase): one single-image slot per request plus
16-image slots, so server 0 runs up to 16 queued requests as one batch.

Measured: throughput (requests whose result the centre reconstructed, per second of wall
time from the first submission to the last result), and end-to-end latency per request
(sensor starts sharing -> centre has the result), p50 and p99. Every result is checked
against the plaintext model (``|secure - plain| <= 0.05``) and against its patient id, so a
lost or mixed-up request fails the bench. Peer: the same requests through the in-process
engine (:func:`medshield.secure.engine.run_in_process`: both servers as threads, no
network, no TLS, no scheduling) on up to 160 of the same images in batches of 16 (the
deployment's largest merged batch); ``speedup`` = peer time per image / ours (below 1: what
the deployment costs over the bare protocol). ``full`` repeats both 3 times,
interleaved, and reports medians and the spread (max - min) of ours.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medshield.experiments.base import BENCHES, RunOptions
from medshield.results import BenchFile, BenchRow, machine_info

__all__ = ["secure_load_bench", "run_load"]

_SETTINGS = {"fast": (40, 8, 1), "quick": (1000, 50, 1), "full": (1000, 50, 3)}
_TOL = 0.05
_MERGE = 16


def _address(log: Path, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> tuple[str, int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for line in log.read_text(errors="replace").splitlines():
            if " listening on " in line:
                host, port = line.rsplit(" ", 1)[1].rsplit(":", 1)
                return host, int(port)
        if proc.poll() is not None:
            raise RuntimeError(f"a compute server exited at start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)
    raise RuntimeError(f"a compute server did not start within {timeout} s (log: {log})")


def _start_server(pki: Path, log: Path, party: int, peer: tuple[str, int] | None
                  ) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "medshield.secure.cli", "serve", "--party", str(party),
            "--creds", str(pki), "--listen", "127.0.0.1:0", "--timeout", "60"]
    if peer is not None:
        args += ["--peer", f"{peer[0]}:{peer[1]}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    with open(log, "wb") as fh:
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=fh, env=env)


def run_load(
    *, requests: int, sensors: int, seed: int = 0, workdir: str | Path | None = None,
    merge_batch: int = _MERGE,
) -> dict[str, Any]:
    """One load run on fresh server processes; returns timings and correctness counts.

    Returns
    -------
    dict with ``wall_s``, ``latencies_ms`` (per request), ``delivered``, ``correct``,
    ``deal_s`` (offline: sharing the model and dealing material for every request) and
    ``per_request_plain`` (the plaintext outputs used as reference).
    """
    import medshield
    from medshield.models import MODELS  # noqa: F401  (registers the models)
    from medshield.secure.compiler import compile_model
    from medshield.secure.net import credentials as cr
    from medshield.secure.net.centre import InferenceResult, ResultCollector, deploy_model
    from medshield.secure.net.sensor import Sensor

    if requests % sensors:
        raise ValueError(f"requests ({requests}) must be a multiple of sensors ({sensors})")
    per = requests // sensors
    tmp = tempfile.TemporaryDirectory() if workdir is None else None
    base = Path(tmp.name if tmp is not None else workdir)  # type: ignore[arg-type]
    pki = base / "pki"
    cr.init_ca(pki)
    for name in ("centre", "server0", "server1", *(f"sensor-{i}" for i in range(sensors))):
        cr.issue(pki, name)
    net = medshield.create("model", "pehealth-f", seed=seed).eval()
    compiled = compile_model(net, (1, 28, 28), frac_bits=12, ring_bits=32)
    x = np.random.default_rng(seed).random((sensors, per, 1, 1, 28, 28))
    with torch.no_grad():
        ref = net(torch.as_tensor(x.reshape(-1, 1, 28, 28), dtype=torch.float32)).numpy()
    ref = ref.reshape(sensors, per, -1)
    procs: list[subprocess.Popen[bytes]] = []
    done_at: dict[tuple[str, str], float] = {}
    events = {(f"sensor-{i}", f"r{j}"): threading.Event()
              for i in range(sensors) for j in range(per)}
    lock = threading.Lock()

    def on_result(res: InferenceResult) -> None:
        with lock:
            done_at[(res.sensor, res.rid)] = time.perf_counter()
        events[(res.sensor, res.rid)].set()

    collector = ResultCollector(creds=cr.load_credentials(pki, "centre"),
                                programs=[compiled.program], on_result=on_result,
                                timeout=60).start()
    try:
        procs.append(_start_server(pki, base / "server1.log", 1, None))
        s1 = _address(base / "server1.log", procs[0])
        procs.append(_start_server(pki, base / "server0.log", 0, s1))
        s0 = _address(base / "server0.log", procs[1])
        t = time.perf_counter()
        deploy_model(compiled, creds=cr.load_credentials(pki, "centre"), servers=(s0, s1),
                     centre_address=collector.address, slots=requests, timeout=120,
                     merge_batch=merge_batch)
        deal_s = time.perf_counter() - t
        started: dict[tuple[str, str], float] = {}
        errors: list[BaseException] = []
        go = threading.Barrier(sensors + 1)

        def sensor(i: int) -> None:
            name = f"sensor-{i}"
            try:
                with Sensor(creds=cr.load_credentials(pki, name), servers=(s0, s1),
                            timeout=120) as s:
                    s.fetch_params()
                    go.wait()
                    for j in range(per):
                        with lock:
                            started[(name, f"r{j}")] = time.perf_counter()
                        s.submit(x[i, j], patient=f"patient-{i}-{j}", rid=f"r{j}")
                        if not events[(name, f"r{j}")].wait(300):
                            raise RuntimeError(f"no result for request r{j} of {name}")
            except BaseException as exc:  # reported below
                errors.append(exc)
                if not go.broken:
                    go.abort()

        threads = [threading.Thread(target=sensor, args=(i,), daemon=True)
                   for i in range(sensors)]
        for th in threads:
            th.start()
        go.wait()
        t0 = time.perf_counter()
        for th in threads:
            th.join()
        if errors:
            raise RuntimeError(f"a sensor failed: {errors[0]}") from errors[0]
        if not collector.wait_for(requests, timeout=max(120.0, requests * 0.5)):
            raise RuntimeError(f"only {len(collector.results)} of {requests} results arrived")
        wall = max(done_at.values()) - t0
    finally:
        collector.stop()
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if tmp is not None:
            tmp.cleanup()
    correct = 0
    for i in range(sensors):
        for j in range(per):
            r = collector.results[(f"sensor-{i}", f"r{j}")]
            ok = (r.status == "ok" and r.patient == f"patient-{i}-{j}" and r.output is not None
                  and np.allclose(np.asarray(r.output)[0], ref[i, j], atol=_TOL))
            correct += int(ok)
    lat = [1e3 * (done_at[k] - started[k]) for k in started]
    return {"wall_s": wall, "latencies_ms": lat, "delivered": len(collector.results),
            "correct": correct, "deal_s": deal_s, "compiled": compiled,
            "inputs": x.reshape(-1, 1, 1, 28, 28)}


def _plain_engine_ms(compiled: Any, inputs: np.ndarray, count: int, batch: int) -> float:
    """ms per image of the in-process engine on ``count`` images in batches of ``batch``."""
    from medshield.secure.engine import run_in_process
    from medshield.secure.randomness import RandomSource, SecurityWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        rng = RandomSource(seed=0)
    images = inputs[: min(count, len(inputs))].reshape(-1, *inputs.shape[2:])
    t = time.perf_counter()
    for k in range(0, len(images), batch):
        run_in_process(compiled, images[k : k + batch], rng=rng)
    return 1e3 * (time.perf_counter() - t) / len(images)


@BENCHES.register("secure-load")
def secure_load_bench(opts: RunOptions) -> BenchFile:
    """1,000 requests from 50 concurrent sensors (``fast``: 40 from 8) through the deployment."""
    requests, sensors, reps = _SETTINGS[opts.mode]
    if opts.threads is not None:
        torch.set_num_threads(opts.threads)
    runs, peers = [], []
    for rep in range(reps):
        runs.append(run_load(requests=requests, sensors=sensors, seed=opts.seed + rep))
        peers.append(_plain_engine_ms(runs[-1]["compiled"], runs[-1]["inputs"],
                                      min(requests, 160), _MERGE))
    case = f"pehealth-f, {requests} requests x 1 image, {sensors} sensors, loopback mTLS"
    per_req = [1e3 * r["wall_s"] / requests for r in runs]
    thr = [requests / r["wall_s"] for r in runs]
    p50 = [float(np.percentile(r["latencies_ms"], 50)) for r in runs]
    p99 = [float(np.percentile(r["latencies_ms"], 99)) for r in runs]
    spread = (lambda v: max(v) - min(v)) if reps > 1 else (lambda v: None)
    peer_ms = statistics.median(peers)
    delivered = min(r["delivered"] for r in runs)
    correct = min(r["correct"] for r in runs)
    note_ok = (f"{correct}/{requests} results correct and matched to their patient; "
               f"{delivered}/{requests} delivered")
    rows = [
        BenchRow(case=case, measure="time per request (1 / throughput)", unit="ms",
                 ours=statistics.median(per_req), peer=peer_ms,
                 peer_name=f"in-process engine, batches of {_MERGE} (no network/TLS/scheduling)",
                 spread=spread(per_req), note=note_ok),
        BenchRow(case=case, measure="throughput", unit="requests/s", ours=statistics.median(thr),
                 spread=spread(thr), note="requests reconstructed at the centre per second"),
        BenchRow(case=case, measure="latency p50 (sensor -> centre)", unit="ms",
                 ours=statistics.median(p50), spread=spread(p50)),
        BenchRow(case=case, measure="latency p99 (sensor -> centre)", unit="ms",
                 ours=statistics.median(p99), spread=spread(p99)),
        BenchRow(case=case, measure="results delivered and correct", unit="requests",
                 ours=float(correct), note=note_ok),
        BenchRow(case=case, measure="offline: share model + deal material for all requests",
                 unit="s", ours=statistics.median(r["deal_s"] for r in runs)),
    ]
    if correct < requests:
        raise RuntimeError(f"secure-load: {note_ok}; results were lost or wrong")
    return BenchFile(bench="secure-load", machine=machine_info(), rows=rows)
