"""``medshield reproduce pehealth``: PE-HEALTH secure inference, networks (a)-(f).

Liu et al., "PE-HEALTH" (pe-health-secure-inference.txt), section VI. Trains networks
(a)-(f) (:mod:`medshield.models.pehealth`) on post-operative (a, b), wearable (c, d) and
MNIST (e, f) for a few epochs, then runs secure inference of the test sets at several
precisions ``d`` (decimal digits, as in the paper; ``f = ceil(d log2 10)`` fractional
bits) with both backends:

* ``beaver-2pc`` - our design (:mod:`medshield.secure`), the whole evaluated test set;
* ``elgamal-2pc`` - the paper's own protocol (:mod:`medshield.secure.elgamal`), toy group,
  on a subset (each output needs a walk of ``2^dp_bits`` steps).

Outputs: Fig. 6 (accuracy vs ``d``), Fig. 7 (output error vs ``d``; conversion error rate
of the Conv/FC outputs vs ``d``, measured and modelled), Table IV (per-layer runtime),
Tables I-III (per-image runtime, message sizes; sensor and centre cost for 4096 images),
with the paper's numbers (:mod:`.pehealth_paper`) and, when its environment is present,
CrypTen's measured numbers beside ours. Modes: ``fast`` (seconds: (e), (f) on embedded
MNIST, plus (a), (b) when post-operative is present), ``quick`` (minutes), ``full``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from medshield.experiments import pehealth_paper as paper
from medshield.experiments.base import DEMO_SECTIONS, EXPERIMENTS, RunOptions
from medshield.results import ResultsFile, Section

__all__ = ["pehealth_experiment", "pehealth_demo", "digits_to_bits", "secure_size_costs",
           "MODES"]

#: Per mode: precisions, epochs, training cap, beaver / elgamal test caps, walk dp_bits.
MODES: dict[str, dict[str, Any]] = {
    "fast": {"d": (1, 2), "epochs": 1, "max_train": 1000, "beaver_n": 64, "elgamal_n": 2,
             "elgamal_mnist_n": 1, "dp_bits": 10, "nets": "abef"},
    "quick": {"d": (1, 2, 3, 4), "epochs": 3, "max_train": 10_000, "beaver_n": 1000,
              "elgamal_n": 64, "elgamal_mnist_n": 8, "dp_bits": 14, "nets": "abcdef"},
    "full": {"d": paper.PRECISIONS, "epochs": 10, "max_train": 0, "beaver_n": 0,
             "elgamal_n": 200, "elgamal_mnist_n": 50, "dp_bits": 16, "nets": "abcdef"},
}
_QUIET = {"category": UserWarning}


def digits_to_bits(d: int) -> int:
    """Fractional bits with at least the resolution of ``d`` decimal digits."""
    return math.ceil(d * math.log2(10))


@dataclass
class _Net:
    letter: str
    net: nn.Module
    x_test: np.ndarray
    y_test: np.ndarray
    plain_acc: float
    source: str


def _load(name: str, opts: RunOptions, embedded: bool) -> Any:
    from medshield.data import load_dataset
    from medshield.data.base import DataError
    from medshield.runtime import data_dir

    if name == "mnist":
        return load_dataset("mnist", None if embedded else data_dir(opts.data_root),
                            **({"source": "embedded"} if embedded else {}))
    root = None if embedded else data_dir(opts.data_root)
    if root is None:
        return None
    try:
        return load_dataset(name, root)
    except (DataError, FileNotFoundError, OSError):
        return None


def _build(letter: str, data: Any, seed: int) -> nn.Module:
    from medshield.models import pehealth as m

    if letter in "ef":
        return (m.PEHealthE(activation="relu", mean_pool=True, seed=seed) if letter == "e"
                else m.PEHealthF(seed=seed))
    k, n = int(data.train.x.shape[1]), len(data.info.classes)
    cls = {"a": m.PEHealthA, "b": m.PEHealthB, "c": m.PEHealthC, "d": m.PEHealthD}[letter]
    return cls(in_features=k, num_classes=n, seed=seed)  # type: ignore[no-any-return]


def _train(net: nn.Module, data: Any, *, epochs: int, max_train: int, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    x, y = torch.from_numpy(data.train.x).float(), torch.from_numpy(data.train.y).long()
    if max_train and len(x) > max_train:
        idx = torch.randperm(len(x), generator=g)[:max_train]
        x, y = x[idx], y[idx]
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    bs = 64 if len(x) > 500 else 16
    net.train()
    for _ in range(epochs * (1 if len(x) > 500 else 20)):  # tiny tables: more passes
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), bs):
            b = perm[i:i + bs]
            opt.zero_grad()
            nn.functional.cross_entropy(net(x[b]), y[b]).backward()
            opt.step()
    return net.eval()


def _nets(opts: RunOptions, cfg: dict[str, Any], embedded: bool, res: ResultsFile) -> list[_Net]:
    out, cache = [], {}
    for letter in cfg["nets"]:
        name = paper.NETWORK_DATA[letter]
        if name not in cache:
            cache[name] = _load(name, opts, embedded)
            res.data[name] = "missing" if cache[name] is None else cache[name].info.source
        data = cache[name]
        if data is None:
            continue
        torch.manual_seed(opts.seed)
        net = _train(_build(letter, data, opts.seed), data, epochs=cfg["epochs"],
                     max_train=cfg["max_train"], seed=opts.seed)
        cap = cfg["beaver_n"]
        xt, yt = data.test.x, data.test.y
        if cap and len(xt) > cap:
            xt, yt = xt[:cap], yt[:cap]
        with torch.no_grad():
            acc = float((net(torch.from_numpy(xt).float()).argmax(1).numpy() == yt).mean())
        out.append(_Net(letter, net, xt.astype(np.float64), yt, acc, data.info.source))
    return out


def _secure(backend: str, item: _Net, x: np.ndarray, d: int, dp_bits: int, seed: int,
            batch: int = 256) -> dict[str, Any]:
    import medshield
    from medshield.secure.randomness import RandomSource

    f = digits_to_bits(d)
    opts: dict[str, Any] = ({"frac_bits": f, "ring_bits": 64} if backend == "beaver-2pc"
                            else {"frac_bits": f, "dp_bits": dp_bits, "probe": True})
    proto = medshield.create("protocol", backend, **opts)
    compiled = proto.compile(item.net, x.shape[1:])
    with torch.no_grad():
        plain = item.net(torch.from_numpy(x).float()).double().numpy()
    outs, runs = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", **_QUIET)
        for i in range(0, len(x), batch):
            run = proto.run(compiled, x[i:i + batch], rng=RandomSource(seed=seed + i))
            outs.append(run.output)
            runs.append(run)
    y = np.concatenate(outs)
    conv = {"outputs": 0, "errors": 0}
    layers: dict[str, float] = {}
    for r in runs:
        for c in r.extra.get("conversions", {}).values():
            conv["outputs"] += c["outputs"]
            conv["errors"] += c["errors"]
        for k, v in r.extra.get("layer_seconds", {}).items():
            layers[k] = layers.get(k, 0.0) + v
    n = len(x)
    return {
        "backend": backend, "d": d, "frac_bits": f, "images": n,
        "accuracy": float((y.argmax(1) == item.y_test[:n]).mean()),
        "argmax_agree": float((y.argmax(1) == plain.argmax(1)).mean()),
        "max_abs_error": float(np.abs(y - plain).max()),
        "mean_abs_error": float(np.abs(y - plain).mean()),
        "online_ms_per_image": 1e3 * sum(r.online_seconds for r in runs) / n,
        "online_MB_per_image": sum(sum(r.online_bytes) for r in runs) / 1e6 / n,
        "offline_MB_per_image": sum(sum(r.offline_bytes) for r in runs) / 1e6 / n,
        "upload_MB_per_image": sum(r.upload_bytes for r in runs) / 1e6 / n,
        "conversion_error_rate": (conv["errors"] / conv["outputs"]) if conv["outputs"] else None,
        "layer_ms_per_image": {k: 1e3 * v / n for k, v in layers.items()},
        "compiled": compiled,
    }


def secure_size_costs(reps: int = 5) -> dict[str, float]:
    """Measured per-operation costs in the 2048-bit group, in milliseconds: a full
    exponentiation (``pow``), a general multiplication, a walk step (multiplication by ``g``
    plus the hash ``phi``), and the fixed-base exponentiation SecConv uses (a table of
    ``base^(2^i)`` built at deployment: about ``|q| / 2`` multiplications)."""
    import secrets

    from medshield.secure.elgamal import MODP_2048 as G

    es = [secrets.randbelow(G.q) for _ in range(reps)]
    t0 = time.perf_counter()
    for e in es:
        pow(G.g, e, G.p)
    t_exp = (time.perf_counter() - t0) / reps
    h, n = pow(G.g, es[0], G.p), 2000
    t0 = time.perf_counter()
    for _ in range(n):
        h = h * G.g % G.p
        _ = ((h & 0xFFFFFFFFFFFFFFFF) * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    t_step = (time.perf_counter() - t0) / n
    a, b = pow(G.g, es[0], G.p), pow(G.g, es[-1], G.p)
    t0 = time.perf_counter()
    for _ in range(n):
        a = a * b % G.p
    t_mul = (time.perf_counter() - t0) / n
    return {"exp_ms": 1e3 * t_exp, "mul_ms": 1e3 * t_mul, "step_ms": 1e3 * t_step,
            "fixed_base_exp_ms": 1e3 * t_mul * G.q.bit_length() / 2}


def _op_counts(compiled: Any) -> dict[str, dict[str, int]]:
    """Per linear layer and image: multiply-accumulates (= exponentiation pairs) and outputs."""
    from medshield.secure.program import ConvOp, LinearOp

    out = {}
    for op in compiled.program.ops:
        if isinstance(op, LinearOp):
            out[op.name] = {"macs": op.in_features * op.out_features, "outputs": op.out_features}
        elif isinstance(op, ConvOp):
            outputs = int(np.prod(op.out_shape))
            k = op.in_channels * op.kernel[0] * op.kernel[1]
            out[op.name] = {"macs": outputs * k, "outputs": outputs}
    return out


@EXPERIMENTS.register("pehealth", aliases=("pe-health",))
def pehealth_experiment(opts: RunOptions) -> ResultsFile:
    """Reproduce section VI of PE-HEALTH (see the module docstring)."""
    from medshield.experiments.pehealth_tables import build_tables

    cfg = MODES[opts.mode]
    res = ResultsFile(system="pehealth")
    old = torch.get_num_threads()
    torch.set_num_threads(opts.threads or 1)
    try:
        nets = _nets(opts, cfg, embedded=False, res=res)
        sweeps: list[dict[str, Any]] = []
        for item in nets:
            n_el = cfg["elgamal_mnist_n"] if item.letter in "ef" else cfg["elgamal_n"]
            for d in cfg["d"]:
                sweeps.append({"net": item.letter,
                               **_secure("beaver-2pc", item, item.x_test, d, 0, opts.seed)})
                sweeps.append({"net": item.letter, **_secure(
                    "elgamal-2pc", item, item.x_test[:n_el], d, cfg["dp_bits"], opts.seed,
                    batch=n_el)})
        build_tables(res, opts, cfg, nets, sweeps)
    finally:
        torch.set_num_threads(old)
    return res


@DEMO_SECTIONS.register("pehealth")
def pehealth_demo(opts: RunOptions) -> ResultsFile:
    """Secure inference of network (f) on embedded MNIST: agreement, bytes, per-layer cost."""
    cfg = {**MODES["fast"], "nets": "f", "max_train": 2000}
    res = ResultsFile(system="pehealth")
    old = torch.get_num_threads()
    torch.set_num_threads(opts.threads or 1)
    try:
        (item,) = _nets(opts, cfg, embedded=True, res=res)
        x = item.x_test[:64]
        bea = _secure("beaver-2pc", item, x, 4, 0, opts.seed)
        elg = _secure("elgamal-2pc", item, x[:1], 1, 14, opts.seed, batch=1)
    finally:
        torch.set_num_threads(old)
    res.tables["secure_vs_plaintext"] = [
        {"backend": r["backend"], "d": r["d"], "images": r["images"],
         "argmax agrees with plaintext": r["argmax_agree"], "max |error|": r["max_abs_error"],
         "online ms/image": r["online_ms_per_image"],
         "online MB/image (both servers)": r["online_MB_per_image"],
         "dealer MB/image": r["offline_MB_per_image"],
         "conversion error rate": r["conversion_error_rate"]} for r in (bea, elg)]
    res.tables["per_layer_ms"] = [
        {"layer": k, "beaver-2pc ms/image (d=4)": bea["layer_ms_per_image"].get(k),
         "elgamal-2pc ms/image (toy group, d=1)": v}
        for k, v in elg["layer_ms_per_image"].items()]
    res.sections.append(Section(
        title="PE-HEALTH secure inference (network (f), embedded MNIST)",
        text=("Two compute servers evaluate network (f) on secret-shared images with secret "
              f"weights. Our backend (beaver-2pc, d=4) agrees with plaintext on "
              f"{bea['argmax_agree']:.0%} of {bea['images']} images and sends "
              f"{bea['online_MB_per_image']:.4f} MB per image online (both servers). The "
              "paper's ElGamal protocol (elgamal-2pc, toy 31-bit group, d=1) is shown per "
              "layer: its Conv/FC layers need no messages but one distinguished-point walk "
              "per output."),
        tables=["secure_vs_plaintext", "per_layer_ms"]))
    res.meta = {"mode": "demo", "plaintext accuracy": item.plain_acc}
    return res
