"""FedMA baseline: matched averaging of fully connected layers (Wang et al., ICLR 2020).

H. Wang, M. Yurochkin, Y. Sun, D. Papailiopoulos, Y. Khazaeni, "Federated learning with
matched averaging", ICLR 2020. Hidden units of independently trained networks are
permutation-symmetric, so averaging them coordinate-wise mixes unrelated units. FedMA
matches the units of each client layer by layer (bottom-up) to a global set, then averages
matched units; the permutation found for layer ``l`` is applied to the *input* columns of
layer ``l + 1`` before that layer is matched.

What is implemented (and what is not)
-------------------------------------
:func:`match_mlp` matches each hidden layer with the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on squared Euclidean distances between unit
vectors ``[w_i, b_i]``, iterating "match every client to the global units, re-average"
until the assignment is stable (the fixed-point iteration of PFNM/FedMA). The global
width stays equal to the clients' width: FedMA's Beta-Bernoulli-process prior, which can
add new global units, is not implemented, and FedMA's layer-wise freeze-and-retrain
schedule is replaced by matching all layers every round ("FedMA with communication", one
communication round per federated round). The output layer (whose units are the classes)
is averaged without matching.

:class:`FedMA` is the Flower strategy that applies it to the clients' replies.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from flwr.app import Array, ArrayRecord, Message, MetricRecord
from flwr.serverapp.strategy import FedAvg
from scipy.optimize import linear_sum_assignment

__all__ = ["match_layer", "match_mlp", "FedMA", "linear_pairs"]


def match_layer(units: Sequence[np.ndarray], weights: Sequence[float], *,
                iterations: int = 10) -> tuple[np.ndarray, list[np.ndarray]]:
    """Match the units of one layer across clients and average them.

    Parameters
    ----------
    units : per client, ``(n, d)``: one row per unit (incoming weights and bias)
    weights : per client, its weight in the average (e.g. sample counts)
    iterations : passes of "assign every client by Hungarian matching, re-average"

    Returns
    -------
    global_units : ``(n, d)`` weighted mean of the matched units
    perms : per client, ``perm[k]`` = the client unit matched to global unit ``k``
    """
    if not units:
        raise ValueError("match_layer needs at least one client")
    n = units[0].shape[0]
    if any(u.shape != units[0].shape for u in units):
        raise ValueError("every client must have the same layer shape (fixed-width FedMA); "
                         f"got {[u.shape for u in units]}")
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    # start from the heaviest client, so the initial global units are real units
    ref = int(np.argmax(w))
    glob = units[ref].astype(np.float64).copy()
    perms = [np.arange(n) for _ in units]
    for _ in range(max(1, iterations)):
        new_perms = []
        for u in units:
            cost = ((glob[:, None, :] - u[None, :, :].astype(np.float64)) ** 2).sum(-1)
            rows, cols = linear_sum_assignment(cost)
            perm = np.empty(n, dtype=np.int64)
            perm[rows] = cols
            new_perms.append(perm)
        glob = sum(wj * u[p].astype(np.float64) for wj, u, p in zip(w, units, new_perms,
                                                                    strict=True))
        stable = all(np.array_equal(a, b) for a, b in zip(perms, new_perms, strict=True))
        perms = new_perms
        if stable:
            break
    return glob, perms


def linear_pairs(keys: Sequence[str], shapes: Sequence[tuple[int, ...]]) -> list[tuple[int, int]]:
    """Indices ``(weight, bias)`` of consecutive fully connected layers in a state dict.

    Raises
    ------
    ValueError
        If the arrays are not an alternation of 2-D weights and 1-D biases whose widths
        chain (i.e. the model is not a plain MLP).
    """
    if len(keys) % 2 or not keys:
        raise ValueError("FedMA here matches MLP layers only: expected (weight, bias) pairs, "
                         f"got {len(keys)} arrays ({list(keys)[:4]}...)")
    pairs = []
    for i in range(0, len(keys), 2):
        ws, bs = shapes[i], shapes[i + 1]
        if len(ws) != 2 or len(bs) != 1 or ws[0] != bs[0]:
            raise ValueError(f"FedMA here matches MLP layers only; {keys[i]} {ws} / "
                             f"{keys[i + 1]} {bs} is not a linear layer's weight and bias "
                             "(use FedAvg for other architectures)")
        if pairs and shapes[pairs[-1][0]][0] != ws[1]:
            raise ValueError(f"layer {keys[i]} takes {ws[1]} inputs but the previous layer "
                             f"has {shapes[pairs[-1][0]][0]} units")
        pairs.append((i, i + 1))
    return pairs


def match_mlp(models: Sequence[Sequence[np.ndarray]], weights: Sequence[float], *,
              keys: Sequence[str] | None = None, iterations: int = 10) -> list[np.ndarray]:
    """Matched average of MLPs given as ``[W1, b1, W2, b2, ..., W_L, b_L]`` per client.

    ``W_l`` has shape ``(out, in)`` (PyTorch ``nn.Linear``). Hidden layers ``1 .. L-1`` are
    matched bottom-up with :func:`match_layer`; each client's permutation of layer ``l`` is
    applied to its layer-``l`` rows and to the columns of its layer ``l+1`` before that
    layer is matched. The output layer is averaged directly. Returns the global arrays in
    the same order.
    """
    if not models:
        raise ValueError("match_mlp needs at least one client model")
    keys = list(keys) if keys is not None else [str(i) for i in range(len(models[0]))]
    pairs = linear_pairs(keys, [tuple(a.shape) for a in models[0]])
    clients = [[np.asarray(a, dtype=np.float64).copy() for a in m] for m in models]
    w = np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    out: list[np.ndarray] = [np.zeros(0)] * len(keys)
    for layer, (wi, bi) in enumerate(pairs):
        last = layer == len(pairs) - 1
        if last:
            for idx in (wi, bi):
                out[idx] = sum(wj * c[idx] for wj, c in zip(w, clients, strict=True))
            break
        units = [np.concatenate([c[wi], c[bi][:, None]], axis=1) for c in clients]
        glob, perms = match_layer(units, w, iterations=iterations)
        out[wi], out[bi] = glob[:, :-1], glob[:, -1]
        nxt = pairs[layer + 1][0]
        for c, p in zip(clients, perms, strict=True):
            c[wi], c[bi] = c[wi][p], c[bi][p]
            c[nxt] = c[nxt][:, p]
    return [o.astype(np.asarray(models[0][i]).dtype) for i, o in enumerate(out)]


class FedMA(FedAvg):
    """Flower strategy: FedAvg's sampling and messages, matched averaging of MLP replies.

    Parameters are FedAvg's (``fraction_train``, ``min_available_nodes`` ...), plus
    ``iterations`` of :func:`match_layer`. Client weights are ``weighted_by_key``
    (``"num-examples"``).
    """

    def __init__(self, *, iterations: int = 10, **fedavg: object) -> None:
        super().__init__(**fedavg)  # type: ignore[arg-type]
        self.iterations = iterations

    def aggregate_train(self, server_round: int, replies: Iterable[Message]
                        ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        valid, _ = self._check_and_log_replies(replies, is_train=True)
        if not valid:
            return None, None
        contents = [m.content for m in valid]
        records = [next(iter(c.array_records.values())) for c in contents]
        keys = list(records[0].keys())
        models = [[r[k].numpy() for k in keys] for r in records]
        weights = [float(next(iter(c.metric_records.values()))[self.weighted_by_key])
                   for c in contents]
        merged = match_mlp(models, weights, keys=keys, iterations=self.iterations)
        arrays = ArrayRecord({k: Array(np.ascontiguousarray(a)) for k, a in zip(keys, merged,
                                                                               strict=True)})
        metrics = self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        return arrays, metrics
