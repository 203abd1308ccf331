"""The healthcare centre as offline dealer of correlated randomness.

PE-HEALTH's healthcare centre is honest and owns the model; here it also prepares, ahead of
time and without seeing any input, the correlated randomness the two servers consume online.
Material is generated for a given program and batch size, one part per server, and can be
serialised (:meth:`Material.to_bytes`, no pickle) and shipped in advance.

What is dealt, per step (see :mod:`.beaver`, :mod:`.comparison`, :mod:`.gates`):

================  ============================================  ============================
step              material per server                           bytes per element, ``l = 32``
================  ============================================  ============================
Linear / Conv     weight-aware matrix triple ``A``, ``C = A W``  4 per input + 4 per output
ReLU              comparison (mask share 4, digit tables 32,    4 + 32 + 7.3 + 0.4 + 76
                  4-ary masks 7.3, last level 0.4), 19
                  monomials (:mod:`.gates`)
rescale / square  as ReLU with 10 / 20 monomials                ~84 / ~124
MaxPool           one ReLU gate per tournament level            ~120 per compared pair
================  ============================================  ============================

Arithmetic values take 4 bytes (``l <= 32``) or 8, bits are packed eight to a byte.
Compression (:meth:`Dealer.deal`, on by default) replaces server 0's part by a 32-byte seed,
so only server 1's part travels: for the CryptoNets ReLU network about 124 KB per image
(``l = 32``) or 160 KB (``l = 64``).

Security: every array a server receives is a uniform share, independent of the other
server's material; the dealer never sees an input or an output. A dealer that is one of the
servers breaks the guarantee (it would know both servers' masks): keep it at the centre.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medshield.secure.layers import deal_affine, deal_gate_op, deal_maxpool
from medshield.secure.program import CompiledModel, ConvOp, GateOp, LinearOp, MaxPoolOp
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import Ring

__all__ = ["Material", "Dealer"]

_MAGIC = b"MSDM1"
_SEED_BYTES = 32


def prg_array(
    seed: bytes, label: str, dtype: np.dtype[Any], shape: tuple[int, ...], ring_bits: int
) -> np.ndarray:
    """A pseudorandom array: SHAKE-256 of ``seed || label``, read as ``dtype``.

    Arrays of the ring's dtype are ring elements and are reduced modulo ``2^ring_bits``;
    other dtypes (bit rows, lookup tables) are raw bits.
    """
    count = int(np.prod(shape, dtype=np.int64))
    dt = np.dtype(dtype)
    raw = hashlib.shake_256(seed + label.encode()).digest(count * dt.itemsize)
    arr = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
    ring = Ring(ring_bits)
    if dt == ring.dtype:
        arr = ring.reduce(arr)
    return arr


@dataclass
class Material:
    """One server's dealer material for one batch.

    Attributes
    ----------
    fingerprint
        :meth:`Program.fingerprint` of the program it was made for.
    party
        The server it belongs to (0 or 1).
    batch_size
        The number of inputs it covers (consumed by exactly one :meth:`ComputeServer.run`).
    ops
        Per program step, a dict of arrays (empty for local steps).
    """

    fingerprint: str
    party: int
    batch_size: int
    ops: list[dict[str, Any]] = field(default_factory=list)
    ring_bits: int = 64
    seed: bytes | None = None

    def to_bytes(self) -> bytes:
        """Serialise (numpy ``.npz``, ``allow_pickle=False``; bool arrays packed to bits).

        Material whose arrays are all pseudorandom (``seed`` set, see
        :meth:`Dealer.deal`) is written as the seed and the array shapes only.
        """
        if self.seed is not None:
            layout = [[i, key, arr.dtype.str, list(arr.shape)]
                      for i, op in enumerate(self.ops) for key, arr in _flatten(op)]
            body = self.seed + json.dumps(layout, separators=(",", ":")).encode()
            return self._header(b"S") + body
        arrays: dict[str, np.ndarray] = {}
        for i, op in enumerate(self.ops):
            for key, arr in _flatten(op):
                name = f"{i}/{key}"
                if arr.dtype == bool:
                    arrays[f"{name}|bits|{'x'.join(map(str, arr.shape))}"] = np.packbits(arr.ravel())
                else:
                    arrays[f"{name}|raw"] = arr
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return self._header(b"A") + buf.getvalue()

    def _header(self, kind: bytes) -> bytes:
        head = f"{self.fingerprint}|{self.party}|{self.batch_size}|{self.ring_bits}|{len(self.ops)}"
        raw = head.encode()
        return _MAGIC + kind + len(raw).to_bytes(2, "little") + raw

    @classmethod
    def from_bytes(cls, data: bytes) -> Material:
        """Inverse of :meth:`to_bytes` (expands seeded material).

        Raises
        ------
        ValueError
            If the bytes are not dealer material (wrong magic or malformed).
        """
        if not data.startswith(_MAGIC) or data[5:6] not in (b"A", b"S"):
            raise ValueError("these bytes are not medshield dealer material (bad magic)")
        kind = data[5:6]
        n = int.from_bytes(data[6:8], "little")
        fp, party, batch, bits, nops = data[8 : 8 + n].decode().split("|")
        ops: list[dict[str, Any]] = [{} for _ in range(int(nops))]
        body = data[8 + n :]
        if kind == b"S":
            seed = bytes(body[:_SEED_BYTES])
            for idx, key, dtype, shape in json.loads(body[_SEED_BYTES:]):
                _unflatten(ops[idx], key, prg_array(seed, f"{idx}/{key}", np.dtype(dtype),
                                                    tuple(shape), int(bits)))
            return cls(fp, int(party), int(batch), ops, int(bits), seed)
        with np.load(io.BytesIO(body), allow_pickle=False) as z:
            for name in z.files:
                path, kind, *rest = name.split("|")
                idx, key = path.split("/", 1)
                arr = z[name]
                if kind == "bits":
                    shape = tuple(int(s) for s in rest[0].split("x")) if rest[0] else ()
                    count = int(np.prod(shape, dtype=np.int64))
                    arr = np.unpackbits(arr, count=count).astype(bool).reshape(shape)
                _unflatten(ops[int(idx)], key, arr)
        return cls(fp, int(party), int(batch), ops, int(bits))

    @property
    def nbytes(self) -> int:
        """Size of :meth:`to_bytes` (what shipping it to the server costs)."""
        return len(self.to_bytes())


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, np.ndarray]]:
    out: list[tuple[str, np.ndarray]] = []
    for key, val in d.items():
        if isinstance(val, dict):
            out.extend(_flatten(val, f"{prefix}{key}/"))
        else:
            out.append((f"{prefix}{key}", np.asarray(val)))
    return out


def _unflatten(d: dict[str, Any], key: str, arr: np.ndarray) -> None:
    parts = key.split("/")
    for p in parts[:-1]:
        d = d.setdefault(p, {})
    d[parts[-1]] = arr


class Dealer:
    """Generates the material for a compiled model (run by the healthcare centre).

    Parameters
    ----------
    compiled
        The model (the dealer needs the weights for the weight-aware triples).
    rng
        Randomness; ``None`` means secure (OS entropy).
    """

    def __init__(self, compiled: CompiledModel, rng: RandomSource | None = None) -> None:
        self.compiled = compiled
        self.rng = rng if rng is not None else RandomSource()

    def deal(self, batch_size: int, *, compress: bool = True) -> tuple[Material, Material]:
        """Material for one run of ``batch_size`` inputs: ``(server 0's, server 1's)``.

        With ``compress`` (default), server 0's shares are re-drawn from a fresh 32-byte seed
        (SHAKE-256, :func:`prg_array`) and server 1's adjusted so the secrets are unchanged
        (``s1 = s0 + s1 - prg`` for ring values, XOR for bits). Server 0's material then
        serialises to the seed alone, which halves the dealer's traffic; server 1's shares
        stay uniform because it never learns the seed.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        prog = self.compiled.program
        ring = self.compiled.ring
        fp = prog.fingerprint()
        mats = (Material(fp, 0, batch_size, [], ring.bits), Material(fp, 1, batch_size, [], ring.bits))
        for op in prog.ops:
            pair: tuple[dict[str, Any], dict[str, Any]]
            if isinstance(op, LinearOp | ConvOp):
                pair = deal_affine(op, batch_size, self.compiled.weights[op.name], ring, self.rng)
            elif isinstance(op, GateOp):
                pair = deal_gate_op(op, batch_size, ring, self.rng)
            elif isinstance(op, MaxPoolOp):
                pair = deal_maxpool(op, batch_size, ring, self.rng)
            else:
                pair = ({}, {})
            mats[0].ops.append(pair[0])
            mats[1].ops.append(pair[1])
        if compress:
            _compress(mats[0], mats[1], self.rng.bytes(_SEED_BYTES))
        return mats


def _compress(m0: Material, m1: Material, seed: bytes) -> None:
    """Replace server 0's shares by ``prg_array(seed, ...)``, adjusting server 1's."""
    ring = Ring(m0.ring_bits)
    for i, (op0, op1) in enumerate(zip(m0.ops, m1.ops, strict=True)):
        for key, a0 in _flatten(op0):
            a1 = _get(op1, key)
            p = prg_array(seed, f"{i}/{key}", a0.dtype, a0.shape, m0.ring_bits)
            if a0.dtype == ring.dtype:  # additive shares
                new1 = ring.reduce(a1 + (a0 - p))
            else:  # XOR shares (bit rows, lookup tables)
                new1 = a1 ^ a0 ^ p
            _unflatten(op0, key, p)
            _unflatten(op1, key, new1)
    m0.seed = seed


def _get(d: dict[str, Any], key: str) -> np.ndarray:
    for part in key.split("/"):
        d = d[part]
    return d  # type: ignore[return-value]
