"""PE-HEALTH's own protocol end to end: ElGamal weights, SecConv walks, SecReLU by comparison.

Parties as in :mod:`medshield.secure.engine` (sensor, healthcare centre, two non-colluding
semi-honest servers). What changes is how linear layers are evaluated:

* **setup (Protocol 1).** The centre draws ``(sk, pk)`` in a DDH group, sends both servers
  the ElGamal ciphertexts of every fixed-point weight (``f`` fractional bits) and each
  server an additive share of every bias (in ``Z_{2^64}``, at ``2f`` bits) and of ``sk``
  (in ``Z_q``).
* **upload (section IV-B).** The sensor sends each server ``Z_q`` shares of ``x`` and of
  ``sk * x`` (so the sensor knows ``sk``, as in the paper).
* **SecConv / SecFC (Protocol 2).** Local exponentiations and a distinguished-point walk per
  output (:mod:`.secconv`, :mod:`.walk`) give integer shares of ``x W``; adding the bias
  shares gives ``Z_{2^64}`` shares at ``2f`` fractional bits. No communication.
* **SecReLU / SecPool (Protocol 3)** and the fixed-point truncation run on those ring
  shares with the comparison gates of :mod:`medshield.secure.gates` (dealer-assisted,
  the healthcare centre deals offline).
* **re-share for the next linear layer.** Protocol 2 needs ``Z_q`` shares of ``x`` *and*
  ``sk * x``. The paper gets ``<sk * mu>`` with ``|q|`` more walks per output (encryptions
  of ``sk^(j) w``) and then, in SecReLU, zeroes the shares of negative elements, which
  reveals the comparison bit to both servers. We keep the comparison secret, so the shares
  of ``sk * relu(x)`` have to be recomputed: the dealer gives ring and ``Z_q`` shares of a
  mask ``R < 2^62`` and ``Z_q`` shares of ``sk R``; the servers open
  ``z = x + 2^61 + R`` (one round, 8 bytes per element and server; ``z`` hides ``x`` with
  statistical distance ``|x| / 2^62``) and set ``x = z - 2^61 - R`` and
  ``sk x = <sk> (z - 2^61) - <sk R>`` locally. This is the one deliberate departure from
  the paper, made so that no comparison result leaks.

Threat model: semi-honest, non-colluding servers; honest sensor and centre; a walk failure
(probability in :mod:`.walk`) silently corrupts one output, so accuracy falls with ``d``
unless the walks grow. Security needs :data:`~.group.MODP_2048` (or larger) and OS
randomness; :data:`~.group.TOY_GROUP` is for tests and timing only.
"""

from __future__ import annotations

import threading
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.comm import Peer
from medshield.secure.elgamal.cipher import KeyPair, encrypt, keygen
from medshield.secure.elgamal.group import DDHGroup
from medshield.secure.elgamal.secconv import EncryptedWeights, secconv_party
from medshield.secure.layers import (
    _as_2d,
    avgpool_local,
    deal_gate_op,
    deal_maxpool,
    gate_op_online,
    maxpool_online,
    windows,
)
from medshield.secure.program import (
    AvgPoolOp,
    CompiledModel,
    ConvOp,
    GateOp,
    LinearOp,
    MaxPoolOp,
    Program,
    ReshapeOp,
)
from medshield.secure.randomness import RandomSource, SecurityWarning
from medshield.secure.ring import Ring
from medshield.secure.sharing import reconstruct, share

__all__ = [
    "WalkParams",
    "ServerSetup",
    "ElGamalCentre",
    "ElGamalServer",
    "share_input_q",
    "run_elgamal_in_process",
]

_MASK_BITS = 62  # the re-share mask R is uniform in [0, 2^62); offset 2^61


@dataclass(frozen=True)
class WalkParams:
    """Distinguished-point walk parameters: density ``2^-dp_bits``, give up after ``max_steps``."""

    dp_bits: int = 12
    max_steps: int = 1 << 18


@dataclass
class ServerSetup:
    """What one server receives at deployment (Protocol 1)."""

    party: int
    fingerprint: str
    weights: dict[str, EncryptedWeights]
    bias: dict[str, NDArray[np.uint64]]
    sk_share: int

    def nbytes(self, group: DDHGroup) -> int:
        """Bytes on the wire: ciphertexts, bias shares (8 bytes each), the ``sk`` share."""
        ct = sum(w.ct.nbytes(group) for w in self.weights.values())
        return ct + sum(8 * b.size for b in self.bias.values()) + group.element_bytes


class _Zq:
    """Arithmetic in ``Z_q`` on arrays (``uint64`` for a small group, Python ints otherwise)."""

    def __init__(self, group: DDHGroup) -> None:
        self.group, self.q = group, group.q

    def from_signed(self, a: ArrayLike) -> NDArray[Any]:
        return self.group.reduce_exponent(a)

    def add(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        return (a + b) % (np.uint64(self.q) if self.group.small else self.q)

    def sub(self, a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        if self.group.small:
            q = np.uint64(self.q)
            return (a + (q - b % q)) % q
        return (a - b) % self.q

    def mul_scalar(self, a: NDArray[Any], s: int) -> NDArray[Any]:
        if self.group.small:
            return (a * np.uint64(s % self.q)) % np.uint64(self.q)
        return (a * s) % self.q

    def random(self, shape: tuple[int, ...], rng: RandomSource) -> NDArray[Any]:
        return self.group.random_exponents(shape, rng)

    def share(self, v: NDArray[Any], rng: RandomSource) -> tuple[NDArray[Any], NDArray[Any]]:
        s0 = self.random(v.shape, rng)
        return s0, self.sub(v, s0)

    def to_signed(self, a: NDArray[Any]) -> NDArray[np.int64]:
        v = np.asarray(a).astype(object) % self.q
        return np.where(v > self.q // 2, v - self.q, v).astype(np.int64)


def _states(program: Program) -> list[str]:
    """The sharing each op receives: ``"q"`` (``Z_q`` shares of x and sk x) or ``"ring"``."""
    state, out = "q", []
    for op in program.ops:
        out.append(state)
        if isinstance(op, LinearOp | ConvOp):
            state = "ring"
        elif isinstance(op, GateOp | MaxPoolOp | AvgPoolOp):
            if state != "ring":
                raise ValueError(
                    f"layer {op.name!r} ({op.kind}) comes before any linear layer; the "
                    "ElGamal backend starts from Z_q shares and needs a Conv/Linear first "
                    "(use the 'beaver-2pc' backend for this model)"
                )
    return out


def share_input_q(x: ArrayLike, *, frac_bits: int, key: KeyPair, rng: RandomSource
                  ) -> tuple[tuple[NDArray[Any], NDArray[Any]], tuple[NDArray[Any], NDArray[Any]]]:
    """The sensor's upload: ``Z_q`` shares of ``round(x 2^f)`` and of ``sk`` times it.

    Returns ``((x', sx'), (x'', sx''))`` for server 0 and server 1.
    """
    zq = _Zq(key.group)
    xi = zq.from_signed(np.rint(np.asarray(x, dtype=np.float64) * 2.0**frac_bits).astype(np.int64))
    sx = zq.mul_scalar(xi, key.sk)
    x0, x1 = zq.share(xi, rng)
    s0, s1 = zq.share(sx, rng)
    return (x0, s0), (x1, s1)


class ElGamalCentre:
    """The healthcare centre of the ElGamal variant: keys, encrypted weights, dealer.

    Parameters
    ----------
    compiled
        A model compiled with ``ring_bits=64`` (:func:`~medshield.secure.compiler.compile_model`).
    group
        The DDH group.
    rng
        Randomness (``None``: OS entropy).
    """

    def __init__(self, compiled: CompiledModel, group: DDHGroup,
                 rng: RandomSource | None = None) -> None:
        if compiled.program.ring_bits != 64:
            raise ValueError(
                f"the ElGamal backend needs ring_bits=64 (got {compiled.program.ring_bits}): "
                "its re-share step masks values with 62-bit randomness; compile with ring_bits=64"
            )
        self.compiled, self.group = compiled, group
        self.rng = rng if rng is not None else RandomSource()
        self.states = _states(compiled.program)
        self.key = keygen(group, self.rng)
        self.zq = _Zq(group)

    @property
    def program(self) -> Program:
        return self.compiled.program

    def weight_matrix(self, op: LinearOp | ConvOp) -> NDArray[np.int64]:
        """Signed fixed-point weights as ``(K, O)`` (fan-in by outputs)."""
        w = self.compiled.ring.to_signed(self.compiled.weights[op.name]["w"])
        return np.ascontiguousarray(w.reshape(w.shape[0], -1).T)

    def setup(self) -> tuple[ServerSetup, ServerSetup]:
        """Protocol 1: ciphertexts of the weights (to both), bias and ``sk`` shares."""
        ring, fp = self.compiled.ring, self.program.fingerprint()
        weights: dict[str, EncryptedWeights] = {}
        b0: dict[str, NDArray[np.uint64]] = {}
        b1: dict[str, NDArray[np.uint64]] = {}
        for op in self.program.ops:
            if isinstance(op, LinearOp | ConvOp):
                weights[op.name] = EncryptedWeights(encrypt(self.key, self.weight_matrix(op),
                                                            self.rng))
                if "b" in self.compiled.weights[op.name]:
                    b0[op.name], b1[op.name] = share(self.compiled.weights[op.name]["b"], ring,
                                                     self.rng)
        sk0 = int(self.zq.random((1,), self.rng)[0])
        sk1 = (self.key.sk - sk0) % self.group.q
        return (ServerSetup(0, fp, weights, b0, sk0), ServerSetup(1, fp, weights, b1, sk1))

    def deal(self, batch: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Offline material per op: comparison gates, and re-share masks before linear layers."""
        ring, zq = self.compiled.ring, self.zq
        m0: list[dict[str, Any]] = []
        m1: list[dict[str, Any]] = []
        for op, state in zip(self.program.ops, self.states, strict=True):
            pair: tuple[dict[str, Any], dict[str, Any]] = ({}, {})
            if isinstance(op, LinearOp | ConvOp) and state == "ring":
                shape = (batch, *op.in_shape)
                r = self.rng.uint64(shape) >> np.uint64(64 - _MASK_BITS)
                r_ring = share(r, ring, self.rng)
                r_q = zq.share(zq.from_signed(r.view(np.int64)), self.rng)
                skr = zq.share(zq.mul_scalar(zq.from_signed(r.view(np.int64)), self.key.sk),
                               self.rng)
                pair = tuple({"r": r_ring[p], "rq": r_q[p], "skr": skr[p]}  # type: ignore[assignment]
                             for p in (0, 1))
            elif isinstance(op, GateOp):
                pair = deal_gate_op(op, batch, ring, self.rng)
            elif isinstance(op, MaxPoolOp):
                pair = deal_maxpool(op, batch, ring, self.rng)
            m0.append(pair[0])
            m1.append(pair[1])
        return m0, m1

    def reconstruct(self, y0: ArrayLike, y1: ArrayLike) -> NDArray[np.float64]:
        ring = self.compiled.ring
        return ring.decode(reconstruct(y0, y1, ring), self.program.output_scale)


@dataclass
class ElGamalServer:
    """One compute server of the ElGamal variant (see the module docstring)."""

    party: int
    program: Program
    setup: ServerSetup
    group: DDHGroup
    peer: Peer
    walk: WalkParams = field(default_factory=WalkParams)
    probe: bool = False

    def __post_init__(self) -> None:
        if self.setup.fingerprint != self.program.fingerprint() or self.setup.party != self.party:
            raise ValueError("this server got another server's (or program's) setup; "
                             "give each server its own part of ElGamalCentre.setup()")
        self.ring = Ring(64)
        self.zq = _Zq(self.group)
        self.states = _states(self.program)
        self.layer_seconds: dict[str, float] = {}
        self.walk_failures = 0
        self.trace: dict[str, tuple[Any, Any]] = {}
        for w in self.setup.weights.values():
            w.prepare(self.group)

    def _reshare(self, x: NDArray[np.uint64], m: dict[str, Any]) -> tuple[Any, Any]:
        ring, zq = self.ring, self.zq
        off = np.uint64(1 << (_MASK_BITS - 1))
        mine = ring.add(x, m["r"])
        if self.party == 0:
            mine = ring.add(mine, off)
        z = self.peer.open_ring(mine, ring)
        zc = zq.from_signed(z.view(np.int64) - np.int64(1 << (_MASK_BITS - 1)))
        xq = zq.sub(zc if self.party == 0 else np.zeros_like(m["rq"]), m["rq"])
        sxq = zq.sub(zq.mul_scalar(zc, self.setup.sk_share), m["skr"])
        return xq, sxq

    def _linear(self, op: LinearOp | ConvOp, xq: Any, sxq: Any) -> NDArray[np.uint64]:
        bsz = xq.shape[0]
        if isinstance(op, LinearOp):
            px, psx = xq.reshape(bsz, -1), sxq.reshape(bsz, -1)
        else:
            def patches(a: Any) -> Any:
                cols = windows(_as_2d(a, op.dims), op.kernel, op.stride, op.padding)
                _, c, oh, ow, k = cols.shape
                return cols.transpose(0, 2, 3, 1, 4).reshape(bsz * oh * ow, c * k)
            px, psx = patches(xq), patches(sxq)
        s, ok = secconv_party(self.group, self.party, px, psx, self.setup.weights[op.name],
                              dp_bits=self.walk.dp_bits, max_steps=self.walk.max_steps)
        self.walk_failures += int((~ok).sum())
        if self.probe:
            self.trace[op.name] = (px, s)
        y = s.view(np.uint64)
        if isinstance(op, ConvOp):
            oh_ow = s.shape[0] // bsz
            y = y.reshape(bsz, oh_ow, op.out_channels).transpose(0, 2, 1)
        y = np.ascontiguousarray(y).reshape((bsz, *op.out_shape))
        if op.name in self.setup.bias:
            b = self.setup.bias[op.name]
            y = y + (b if isinstance(op, LinearOp) else b.reshape((-1,) + (1,) * (y.ndim - 2)))
        return self.ring.reduce(y)

    def run(self, xq: Any, sxq: Any, material: list[dict[str, Any]]) -> NDArray[np.uint64]:
        """Evaluate the program on this server's input shares; returns its output share."""
        ring, peer = self.ring, self.peer
        cur: Any = None
        for op, state, m in zip(self.program.ops, self.states, material, strict=True):
            t0 = time.perf_counter()
            if isinstance(op, LinearOp | ConvOp):
                if state == "ring":
                    xq, sxq = self._reshare(cur, m)
                cur = self._linear(op, xq, sxq)
            elif isinstance(op, GateOp):
                cur = gate_op_online(op, peer, ring, cur, m)
            elif isinstance(op, MaxPoolOp):
                cur = maxpool_online(op, peer, ring, cur, m)
            elif isinstance(op, AvgPoolOp):
                cur = avgpool_local(op, cur, ring)
            elif isinstance(op, ReshapeOp):
                if state == "q":
                    b = xq.shape[0]
                    xq, sxq = xq.reshape((b, *op.out_shape)), sxq.reshape((b, *op.out_shape))
                else:
                    cur = cur.reshape((cur.shape[0], *op.out_shape))
            key = f"{op.name} ({op.kind})"
            self.layer_seconds[key] = self.layer_seconds.get(key, 0.0) + time.perf_counter() - t0
        return cur  # type: ignore[no-any-return]


def run_elgamal_in_process(
    compiled: CompiledModel,
    x: ArrayLike,
    *,
    group: DDHGroup,
    walk: WalkParams | None = None,
    rng: RandomSource | None = None,
    timeout: float | None = 600.0,
    probe: bool = False,
) -> Any:
    """Every party of the ElGamal variant in this process (two server threads).

    Warns with :class:`~medshield.secure.randomness.SecurityWarning` for a toy group.
    Returns a :class:`medshield.secure.engine.SecureRun` (``offline_seconds``: dealing;
    the one-off encryption of the weights is ``extra["setup_seconds"]``); ``extra`` holds
    ``layer_seconds`` (per op, the slower server), ``walk_failures`` (walks that gave up),
    the group and walk parameters and, with ``probe``, ``conversions`` (per linear layer:
    number of outputs, number whose reconstructed value differs from the exact integer
    dot product) - the measured conversion error rate.
    """
    from medshield.secure.engine import SecureRun, slower_server_layers
    from medshield.transport import InProcessChannel

    rng = rng if rng is not None else RandomSource()
    walk = walk or WalkParams()
    prog = compiled.program
    xa = np.asarray(x, dtype=np.float64)
    if tuple(xa.shape[1:]) != prog.input_shape:
        raise ValueError(f"input has per-sample shape {tuple(xa.shape[1:])}, the program "
                         f"expects {prog.input_shape} (put the batch axis first)")
    if not group.secure:
        warnings.warn(
            f"the {group.name} group is NOT SECURE (discrete logarithms in it are easy, so a "
            "server can decrypt the weights); use it for tests and timing only and "
            "group='modp-2048' for real data",
            SecurityWarning,
            stacklevel=2,
        )
    centre = ElGamalCentre(compiled, group, rng)
    t0 = time.perf_counter()
    setups = centre.setup()
    setup_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    mats = centre.deal(xa.shape[0])
    offline = time.perf_counter() - t0
    (x0, s0), (x1, s1) = share_input_q(xa, frac_bits=prog.frac_bits, key=centre.key, rng=rng)
    chans = InProcessChannel.pair()
    servers = [ElGamalServer(p, prog, setups[p], group, Peer(chans[p], p, timeout=timeout),
                             walk, probe) for p in (0, 1)]
    outs: list[Any] = [None, None]
    errors: list[BaseException] = []

    def work(p: int, xs: Any, sxs: Any) -> None:
        try:
            outs[p] = servers[p].run(xs, sxs, mats[p])
        except BaseException as err:  # surfaced in the caller
            errors.append(err)
            chans[1 - p].close()

    threads = [threading.Thread(target=work, args=a, daemon=True)
               for a in ((0, x0, s0), (1, x1, s1))]
    t1 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    online = time.perf_counter() - t1
    if errors:
        raise errors[0]
    result = centre.reconstruct(outs[0], outs[1])
    stats = (chans[0].stats.snapshot(), chans[1].stats.snapshot())
    for c in chans:
        c.close()
    layer = slower_server_layers(servers)
    extra: dict[str, Any] = {
        "backend": "elgamal-2pc", "group": group.name, "dp_bits": walk.dp_bits,
        "max_steps": walk.max_steps, "frac_bits": prog.frac_bits, "layer_seconds": layer,
        "walk_failures": servers[0].walk_failures + servers[1].walk_failures,
        "setup_seconds": setup_seconds,
    }
    if probe:
        extra["conversions"] = _conversion_errors(centre, servers)
    qb = (group.q.bit_length() + 7) // 8
    return SecureRun(
        output=result, batch_size=xa.shape[0], online_seconds=online, offline_seconds=offline,
        online_bytes=(stats[0].bytes_sent, stats[1].bytes_sent),
        online_rounds=(stats[0].rounds, stats[1].rounds),
        offline_bytes=tuple(_material_bytes(m, qb) for m in mats),  # type: ignore[arg-type]
        upload_bytes=4 * x0.size * qb, result_bytes=2 * outs[0].size * 8,
        setup_bytes=setups[0].nbytes(group) + setups[1].nbytes(group), extra=extra,
    )


def _material_bytes(mats: list[dict[str, Any]], q_bytes: int) -> int:
    total = 0
    for m in mats:
        for key, v in m.items():
            if isinstance(v, dict):
                total += _material_bytes([v], q_bytes)
            elif isinstance(v, np.ndarray):
                total += v.size * q_bytes if key in ("rq", "skr") else int(v.nbytes)
    return total


def _conversion_errors(centre: ElGamalCentre, servers: list[ElGamalServer]
                       ) -> dict[str, dict[str, int]]:
    """Per linear layer: outputs converted, and how many differ from the exact dot product."""
    zq, out = centre.zq, {}
    for op in centre.program.ops:
        if not isinstance(op, LinearOp | ConvOp):
            continue
        (px0, s0), (px1, s1) = servers[0].trace[op.name], servers[1].trace[op.name]
        x = zq.to_signed(zq.add(px0, px1))
        exact = x.astype(object).dot(centre.weight_matrix(op).astype(object))
        got = (s0.astype(object) + s1.astype(object))
        out[op.name] = {"outputs": int(exact.size), "errors": int((exact != got).sum())}
    return out
