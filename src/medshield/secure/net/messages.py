"""Messages of a networked PE-HEALTH deployment and the checks every party applies to them.

Every message is a dict with ``"op"`` (what it is) and ``"seq"`` (its position on this
connection in this direction, from 0). A receiver accepts only the next ``seq``
(:class:`SeqGuard`), so a frame replayed, dropped or reordered on a link is rejected. Each
inference request carries a ``rid`` chosen by the sensor (unique per sensor) and a
``patient`` id; the servers refuse a ``(sensor, rid)`` pair they have already accepted, so a
replayed request never consumes dealer material or produces a second result.

Ops (``->`` is the direction):

=============  ======================  ==================================================
op             link                    fields
=============  ======================  ==================================================
``deploy``     centre -> server        ``program`` (JSON), ``weights`` (this server's
                                       weight shares), ``centre`` (``host:port`` for results)
``material``   centre -> server        ``slots`` (ids), ``blobs`` (serialised material)
``params``     sensor -> server        (asks for the public parameters)
``input``      sensor -> server        ``rid``, ``patient``, ``x`` (this server's share)
``run``        server0 -> server1      ``rid``, ``sensor``, ``patient``, ``slot``
``result``     server -> centre        ``rid``, ``sensor``, ``patient``, ``party``, ``y``,
                                       ``program``
``ok`` /       replies                 ``error`` carries ``code`` and a ``message`` that names
``error``                              the problem and the fix (never a value)
=============  ======================  ==================================================
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from medshield.secure.program import (
    AvgPoolOp,
    ConvOp,
    GateOp,
    LinearOp,
    MaxPoolOp,
    Op,
    Program,
    ReshapeOp,
)

__all__ = [
    "ProtocolError",
    "SeqGuard",
    "check_rid",
    "program_to_json",
    "program_from_json",
    "error_reply",
]

_RID = re.compile(r"^[A-Za-z0-9_.:-]{1,80}$")
_OPS: dict[str, type[Op]] = {
    c.__name__: c for c in (LinearOp, ConvOp, GateOp, MaxPoolOp, AvgPoolOp, ReshapeOp)
}


class ProtocolError(ValueError):
    """A well-formed frame that breaks the deployment protocol (wrong op, seq, id, shape).

    ``code`` is a short machine-readable reason (``"seq"``, ``"replay"``, ``"shape"``, ...).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class SeqGuard:
    """Checks the per-connection sequence numbers of incoming messages and numbers outgoing ones."""

    def __init__(self) -> None:
        self.expect = 0
        self.next_out = 0

    def check(self, msg: Any, *ops: str) -> dict[str, Any]:
        """Validate ``msg`` (a dict with the expected ``seq`` and one of ``ops``) and return it."""
        if not isinstance(msg, dict) or not isinstance(msg.get("op"), str):
            raise ProtocolError("format", "a message must be a dict with a string 'op'")
        seq = msg.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or seq != self.expect:
            raise ProtocolError(
                "seq",
                f"message out of sequence (got seq {seq if isinstance(seq, int) else '?'}, "
                f"expected {self.expect}): a replayed, dropped or reordered frame; reconnect "
                "and start again from seq 0",
            )
        if ops and msg["op"] not in ops:
            raise ProtocolError(
                "op", f"unexpected op {msg['op'][:32]!r} here; expected one of {', '.join(ops)}"
            )
        self.expect += 1
        return msg

    def stamp(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Add the next outgoing ``seq`` to ``msg``."""
        msg["seq"] = self.next_out
        self.next_out += 1
        return msg


def check_rid(rid: Any, what: str = "request id") -> str:
    """A request or patient id: 1-80 characters of ``[A-Za-z0-9_.:-]``."""
    if not isinstance(rid, str) or not _RID.match(rid):
        raise ProtocolError(
            "id", f"{what} must be 1-80 characters of letters, digits and '_.:-'"
        )
    return rid


def error_reply(code: str, message: str) -> dict[str, Any]:
    """The reply to a refused message (``message`` must never quote values)."""
    return {"op": "error", "code": code, "message": message}


def program_to_json(program: Program) -> str:
    """The public program as JSON (what the centre sends to the servers)."""
    doc = {
        "ops": [[type(op).__name__, asdict(op)] for op in program.ops],
        "input_shape": list(program.input_shape),
        "frac_bits": program.frac_bits,
        "ring_bits": program.ring_bits,
        "fingerprint": program.fingerprint(),
    }
    return json.dumps(doc)


def _fix(value: Any) -> Any:
    return tuple(_fix(v) for v in value) if isinstance(value, list) else value


def program_from_json(text: str) -> Program:
    """Inverse of :func:`program_to_json`; checks op types and the fingerprint."""
    try:
        doc = json.loads(text)
        ops = []
        for name, fields in doc["ops"]:
            cls = _OPS[name]
            ops.append(cls(**{k: _fix(v) for k, v in fields.items()}))
        prog = Program(tuple(ops), tuple(doc["input_shape"]), int(doc["frac_bits"]),
                       int(doc["ring_bits"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(
            "program", f"the program description is invalid ({type(exc).__name__}); the "
            "centre runs an incompatible medshield version"
        ) from None
    if prog.fingerprint() != doc.get("fingerprint"):
        raise ProtocolError("program", "program fingerprint mismatch (corrupted description)")
    return prog
