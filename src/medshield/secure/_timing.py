"""Time secure inference of the CryptoNets-topology ReLU network (not a test).

Runs :func:`medshield.secure.engine.run_in_process` (two server threads, in-process
channel) at batch 1 and batch 64 and prints, per image: online wall time, each server's CPU
time, online MB (both servers, and their mean = CrypTen's "summed and halved"), offline
(dealer) MB, and rounds. The network is PE-HEALTH network (f) / the CrypTen peer's
``bench.py`` net (conv 1->5, 5x5, stride 2, pad 1 -> 845 -> FC 100 -> FC 10, ReLU) with
random weights of the same scales as the peer's script.

Usage::

    python -m medshield.secure._timing [--reps 7] [--ring-bits 32 --frac-bits 12]
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings

import numpy as np
import torch
from torch import nn

from medshield.secure.compiler import compile_model
from medshield.secure.engine import run_in_process
from medshield.secure.randomness import RandomSource


def cryptonets_relu(seed: int = 0) -> nn.Sequential:
    """The peer's network with its weight scales (``bench.py``: 0.2, 0.03, 0.1; biases 0.1)."""
    g = torch.Generator().manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 5, 5, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
        nn.Linear(845, 100), nn.ReLU(), nn.Linear(100, 10),
    )
    with torch.no_grad():
        for mod, scale in ((net[0], 0.2), (net[3], 0.03), (net[5], 0.1)):
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * scale)
            mod.bias.copy_(torch.randn(mod.bias.shape, generator=g) * 0.1)
    return net.eval()


def time_batch(
    batch: int, *, reps: int, ring_bits: int, frac_bits: int, secure_rng: bool = True
) -> dict[str, float]:
    """Median costs per image over ``reps`` runs (after one warm-up run)."""
    net = cryptonets_relu()
    compiled = compile_model(net, (1, 28, 28), frac_bits=frac_bits, ring_bits=ring_bits)
    x = np.random.default_rng(1).random((batch, 1, 28, 28))
    with torch.no_grad():
        ref = net(torch.from_numpy(x).float()).double().numpy()
    runs = []
    for i in range(reps + 1):
        if secure_rng:
            rng = RandomSource()
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rng = RandomSource(seed=i)
        runs.append(run_in_process(compiled, x, rng=rng))
    runs = runs[1:]
    last = runs[-1]
    per = last.per_image()
    return {
        "batch": batch,
        "ring_bits": ring_bits,
        "frac_bits": frac_bits,
        "online_ms_per_image": statistics.median(r.online_seconds for r in runs) * 1e3 / batch,
        "cpu_ms_per_image_server0": statistics.median(r.extra["cpu_seconds"][0] for r in runs) * 1e3 / batch,
        "cpu_ms_per_image_server1": statistics.median(r.extra["cpu_seconds"][1] for r in runs) * 1e3 / batch,
        "offline_ms_per_image": statistics.median(r.offline_seconds for r in runs) * 1e3 / batch,
        "online_MB_per_image_both": per["online_MB_both"],
        "online_MB_per_image_mean": per["online_MB_mean"],
        "offline_MB_per_image_both": per["offline_MB_both"],
        "upload_MB_per_image": per["upload_MB"],
        "rounds": per["rounds"],
        "max_abs_err": float(np.abs(last.output - ref).max()),
        "argmax_agree": float((last.output.argmax(1) == ref.argmax(1)).mean()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--ring-bits", type=int, nargs="*", default=[32, 64])
    parser.add_argument("--frac-bits", type=int, nargs="*", default=[12, 16])
    parser.add_argument("--batch", type=int, nargs="*", default=[1, 64])
    parser.add_argument("--threads", type=int, default=1, help="torch threads (compile only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for ring_bits, frac_bits in zip(args.ring_bits, args.frac_bits, strict=True):
        for batch in args.batch:
            row = time_batch(batch, reps=args.reps, ring_bits=ring_bits, frac_bits=frac_bits)
            print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}))


if __name__ == "__main__":
    main()
