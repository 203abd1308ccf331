"""Tables, figures and notes of ``medshield reproduce pehealth`` (see :mod:`.pehealth`)."""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from medshield.experiments import pehealth_paper as paper
from medshield.experiments.base import RunOptions
from medshield.results import FigureSpec, ResultsFile, Section

__all__ = ["build_tables", "table_ii"]

_PAPER_KIND = {"conv": "conv", "linear": "linear", "relu": "relu", "maxpool": "maxpool",
               "avgpool": "avgpool", "square": "relu"}


def _kind(layer: str) -> str:
    return layer.rsplit("(", 1)[-1].rstrip(")")


def table_ii(batch: int = paper.TABLE_II_BATCH, seed: int = 0) -> list[dict[str, Any]]:
    """Sensor sharing and centre reconstruction of ``batch`` MNIST-sized inputs, both backends."""
    from medshield.secure.elgamal import TOY_GROUP, keygen, share_input_q
    from medshield.secure.randomness import RandomSource
    from medshield.secure.ring import Ring
    from medshield.secure.sharing import reconstruct, share_input

    x = np.random.default_rng(seed).random((batch, 1, 28, 28))
    ring = Ring(64)
    rows = []
    t0 = time.perf_counter()
    x0, _ = share_input(x, frac_bits=14, ring_bits=64)
    t_b = time.perf_counter() - t0
    y = RandomSource().uint64((batch, 10))
    t0 = time.perf_counter()
    ring.decode(reconstruct(y, y, ring), 28)
    t_d = time.perf_counter() - t0
    rows.append({"approach": "ours beaver-2pc (Z_2^64, d=4)", "paper encrypt s": None,
                 "ours encrypt s": t_b, "ours decrypt s": t_d,
                 "ours upload MB (to both servers)": 2 * x0.size * 8 / 1e6,
                 "ours result MB (from both servers)": 2 * y.size * 8 / 1e6})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = keygen(TOY_GROUP, RandomSource())
    t0 = time.perf_counter()
    (q0, _), _ = share_input_q(x, frac_bits=14, key=key, rng=RandomSource())
    t_e = time.perf_counter() - t0
    qb = (TOY_GROUP.q.bit_length() + 7) // 8
    rows.append({"approach": "ours elgamal-2pc (toy group; x and sk*x shared)",
                 "ours encrypt s": t_e, "ours decrypt s": t_d,
                 "ours upload MB (to both servers)": 4 * q0.size * qb / 1e6,
                 "ours result MB (from both servers)": 2 * y.size * 8 / 1e6,
                 "note": "a 2048-bit group would make the upload 64x larger (256-byte shares)"})
    for name, vals in paper.TABLE_II.items():
        rows.append({"approach": f"paper: {name}", "paper encrypt s": vals["encrypt_s"],
                     "paper decrypt s": vals["decrypt_s"], "paper upload MB": vals["upload_MB"],
                     "paper result MB": vals["result_MB"]})
    return rows


def _crypten_batch1() -> dict[str, Any] | None:
    from medshield.benchmarks.secure import find_crypten, run_crypten

    py, peer_dir, _ = find_crypten()
    if py is None or peer_dir is None:
        return None
    try:
        return run_crypten(py, peer_dir, 1)
    except Exception:  # noqa: BLE001 - the peer is optional; its absence is reported
        return None


def build_tables(res: ResultsFile, opts: RunOptions, cfg: dict[str, Any], nets: list[Any],
                 sweeps: list[dict[str, Any]]) -> None:
    """Fill ``res`` with Figs. 6-7, Tables I-IV, sections and notes."""
    from medshield.experiments.pehealth import _op_counts, _secure, secure_size_costs
    from medshield.secure.elgamal import conversion_error

    plain = {n.letter: n.plain_acc for n in nets}
    res.tables["fig6_accuracy"] = [
        {"net": s["net"], "dataset": paper.NETWORK_DATA[s["net"]], "backend": s["backend"],
         "d": s["d"], "frac bits": s["frac_bits"], "images": s["images"],
         "paper (d=4)": paper.FIG6_ACCURACY_D4.get(s["net"]) if s["d"] == 4 else None,
         "ours plaintext": plain[s["net"]], "ours secure": s["accuracy"],
         "argmax agrees with plaintext": s["argmax_agree"]} for s in sweeps]
    res.tables["fig7_error"] = [
        {"net": s["net"], "backend": s["backend"], "d": s["d"],
         "paper output error (d=4)": paper.FIG7_ERROR_D4 if s["d"] == 4 else None,
         "ours max |output error|": s["max_abs_error"],
         "ours mean |output error|": s["mean_abs_error"],
         "ours conversion error rate (Conv/FC outputs)": s["conversion_error_rate"],
         "model rate for |value| = 2^(2f)": (float(conversion_error(
             2.0 ** (2 * s["frac_bits"]), dp_bits=cfg["dp_bits"], max_steps=1 << 20))
             if s["backend"] == "elgamal-2pc" else None)} for s in sweeps]
    res.tables["cost_vs_precision"] = [
        {"net": s["net"], "backend": s["backend"], "d": s["d"], "images": s["images"],
         "online ms/image": s["online_ms_per_image"],
         "online MB/image (both servers)": s["online_MB_per_image"],
         "dealer MB/image": s["offline_MB_per_image"],
         "conversion error rate": s["conversion_error_rate"],
         "walk dp_bits": cfg["dp_bits"] if s["backend"] == "elgamal-2pc" else None}
        for s in sweeps]
    for data in ("post-operative", "wearable", "mnist"):
        sel = [s for s in sweeps if paper.NETWORK_DATA[s["net"]] == data]
        if not sel:
            continue
        series = {f"({s['net']}) {s['backend']}": [t["accuracy"] for t in sel
                                                   if t["net"] == s["net"]
                                                   and t["backend"] == s["backend"]]
                  for s in sel}
        res.figures.append(FigureSpec(id=f"fig6_{data}", kind="line",
                                      title=f"Fig. 6: accuracy vs precision d, {data}",
                                      x=list(cfg["d"]), series=series, xlabel="d (decimal digits)",
                                      ylabel="test accuracy"))
    err_series = {f"({s['net']}) {s['backend']}": [max(t["max_abs_error"], 1e-12) for t in sweeps
                                                   if t["net"] == s["net"]
                                                   and t["backend"] == s["backend"]]
                  for s in sweeps}
    res.figures.append(FigureSpec(id="fig7_output_error", kind="line",
                                  title="Fig. 7(a): max |output error| vs precision d",
                                  x=list(cfg["d"]), series=err_series, xlabel="d",
                                  ylabel="max |secure - plaintext|"))
    conv_series = {f"({s['net']})": [t["conversion_error_rate"] for t in sweeps
                                     if t["net"] == s["net"] and t["backend"] == "elgamal-2pc"]
                   for s in sweeps if s["backend"] == "elgamal-2pc"}
    res.figures.append(FigureSpec(id="fig7_conversion_error", kind="line",
                                  title="Fig. 7(b): Conv/FC outputs converted wrongly (elgamal-2pc)",
                                  x=list(cfg["d"]), series=conv_series, xlabel="d",
                                  ylabel="conversion error rate"))
    # ---- Table IV: per-layer runtime (elgamal-2pc at the smallest d), secure-size estimate
    cost = secure_size_costs(3 if opts.mode == "fast" else 10)
    d0 = min(cfg["d"])
    rows4: list[dict[str, Any]] = []
    for item in nets:
        s = next(t for t in sweeps if t["net"] == item.letter and t["backend"] == "elgamal-2pc"
                 and t["d"] == d0)
        b = next((t for t in sweeps if t["net"] == item.letter and t["backend"] == "beaver-2pc"
                  and t["d"] == d0), None)
        beaver_ms = {} if b is None else b["layer_ms_per_image"]
        counts = _op_counts(s["compiled"])
        by_type: dict[str, dict[str, Any]] = {}
        for layer, ms in s["layer_ms_per_image"].items():
            kind = _kind(layer)
            if kind == "reshape":
                continue
            row = by_type.setdefault(kind, {
                "net": item.letter, "layer type": kind, "layers": [],
                "paper ms": paper.TABLE_IV.get(_PAPER_KIND.get(kind, kind), {}).get(item.letter),
                f"ours beaver-2pc ms (d={d0})": 0.0,
                f"ours elgamal-2pc ms (toy group, d={d0})": 0.0,
                "ours estimate ms (2048-bit group, same walks)": None})
            row["layers"].append(layer.split(" ")[0])
            row[f"ours beaver-2pc ms (d={d0})"] += beaver_ms.get(layer, 0.0)
            row[f"ours elgamal-2pc ms (toy group, d={d0})"] += ms
            name = layer.split(" ")[0]
            if name in counts:
                c = counts[name]
                est = (2 * c["macs"] * cost["fixed_base_exp_ms"]
                       + c["outputs"] * 2.0 ** cfg["dp_bits"] * cost["step_ms"])
                key = "ours estimate ms (2048-bit group, same walks)"
                row[key] = (row[key] or 0.0) + est
        for row in by_type.values():
            row["layers"] = ", ".join(row["layers"])
            rows4.append(row)
    res.tables["table4_layer_runtime"] = rows4
    # ---- Tables I and III: one image, networks (e) and (f)
    peer = _crypten_batch1() if opts.mode != "fast" else None
    for letter, table, tname in (("e", paper.TABLE_I, "table1_network_e"),
                                 ("f", paper.TABLE_III, "table3_network_f")):
        item = next((n for n in nets if n.letter == letter), None)
        rows: list[dict[str, Any]] = [{"approach": f"paper: {k}", "paper runtime s": v["runtime_s"],
                                       "paper message MB": v["message_MB"],
                                       "paper accuracy": v["accuracy"]} for k, v in table.items()]
        if item is not None:
            one = _secure("beaver-2pc", item, item.x_test[:1], 4, 0, opts.seed)
            dacc = 4 if 4 in cfg["d"] else max(cfg["d"])
            acc = next(t["accuracy"] for t in sweeps if t["net"] == letter
                       and t["backend"] == "beaver-2pc" and t["d"] == dacc)
            rows.append({"approach": f"ours beaver-2pc (time: d=4, batch 1; accuracy: d={dacc})",
                         "ours runtime s": one["online_ms_per_image"] / 1e3,
                         "ours message MB": one["online_MB_per_image"],
                         "ours dealer MB": one["offline_MB_per_image"],
                         "ours accuracy": acc})
            el = next(t for t in sweeps if t["net"] == letter and t["backend"] == "elgamal-2pc"
                      and t["d"] == d0)
            est = sum(r["ours estimate ms (2048-bit group, same walks)"] or 0 for r in rows4
                      if r["net"] == letter) / 1e3
            rows.append({"approach": f"ours elgamal-2pc (toy group, d={d0})",
                         "ours runtime s": el["online_ms_per_image"] / 1e3,
                         "ours message MB": el["online_MB_per_image"],
                         "ours accuracy": el["accuracy"],
                         "ours estimate s (2048-bit group)": est})
            if peer is not None:
                rows.append({"approach": "CrypTen 0.4.1 (measured, batch 1; net (f) topology)",
                             "ours runtime s": peer["secure_median_s"],
                             "ours message MB": peer["MB_per_image"]})
        res.tables[tname] = rows
    res.tables["table2_sensor_centre"] = table_ii(seed=opts.seed)
    res.tables["secure_size_costs"] = [{"group": "modp-2048 (RFC 3526)", **cost}]
    res.sections.append(Section(
        title="PE-HEALTH (section VI): secure inference of networks (a)-(f)",
        text="Accuracy and error against the precision d, per-layer and per-image costs, "
             "with the paper's numbers and CrypTen's beside ours.",
        tables=list(res.tables), figures=[f.id for f in res.figures]))
    res.notes.extend(_notes(cfg, cost, peer))
    res.meta = {"mode": opts.mode, "dp_bits": cfg["dp_bits"],
                "plaintext accuracy": plain, "sources": dict(res.data)}


def _notes(cfg: dict[str, Any], cost: dict[str, float], peer: Any) -> list[str]:
    f4 = 14
    need = 2 * f4 + 7  # |V| ~ 2^(2f), error 1 % -> dp_bits ~ 2f + log2(100)
    walk_s = 110 * 2.0**need * cost["step_ms"] / 1e3
    return [
        "Precision: the paper's d counts decimal digits; we use f = ceil(d log2 10) binary "
        "fractional bits (d=4 -> f=14).",
        "Networks (a)-(f) are reconstructions (Fig. 5 is missing); (e) uses ReLU and the mean "
        "pool so that its layer types match Table IV. Training is short (few epochs), so "
        "plaintext accuracies sit below the paper's.",
        "beaver-2pc's linear layers are exact; its output error is the fixed-point rounding "
        "(about 2^-f per operation), which falls with d as in Fig. 7.",
        "elgamal-2pc: every Conv/FC output is a distinguished-point walk over a value of about "
        f"|y| 2^(2f); with density 2^-{cfg['dp_bits']} the measured conversion error rate grows "
        "about 4x per extra bit of f, so accuracy FALLS as d grows, the opposite of Fig. 6. "
        f"For a 1 % conversion error at d=4 the walks need ~2^{need} steps per output: about "
        f"{walk_s:.3g} s per image for the 110 FC outputs of (f) alone at the measured "
        f"{cost['step_ms'] * 1e3:.2f} us per step (2048-bit group).",
        f"A 2048-bit exponentiation costs {cost['exp_ms']:.2f} ms here with pow() and about "
        f"{cost['fixed_base_exp_ms']:.2f} ms with fixed-base tables (|q|/2 multiplications of "
        f"{cost['mul_ms'] * 1e3:.1f} us); SecConv needs two per multiply-accumulate (about "
        f"2 x 107,000 for network (f)), i.e. about "
        f"{2 * 107_000 * cost['fixed_base_exp_ms'] / 3.6e6:.1f} hours per image before any "
        "walk (Table IV's estimate column), and the paper's key-bit encryptions (|q| more per weight) "
        "multiply that by about 2048. The paper's 0.86 s (e) and 1.02 s (f) per image cannot be "
        "reproduced with the protocol as written; our toy-group timings show the protocol's "
        "structure only (the toy group is insecure).",
        "elgamal-2pc differs from the paper in one place: after SecReLU it re-shares x and "
        "sk*x with a dealer mask (one round) instead of zeroing shares by a comparison bit "
        "that the paper's Protocol 3 reveals to both servers.",
        "Table II: upload sizes follow from the encodings (PE-HEALTH's 24.5 MB for 4096 images "
        "is 6 bytes per pixel); the sensor cost is one random draw and a subtraction per value.",
        ("CrypTen was measured in the same run (batch 1, its bench.py, network (f) topology "
         "with random weights)." if peer is not None else
         "CrypTen was not measured in this mode or its environment is unavailable "
         "(see `medshield bench secure`)."),
    ]
