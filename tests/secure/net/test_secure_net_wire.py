"""The sensor's numpy-only wire format against the transport codec (the reference)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from medshield.secure.net import messages as m
from medshield.secure.net.wire import WireError, decode_message, encode_frame, encode_message
from medshield.transport import decode, encode
from medshield.transport import encode_frame as ref_frame

MESSAGES = [
    {"op": "input", "seq": 3, "rid": "r-1", "patient": "p:7",
     "x": np.arange(32, dtype=np.uint32).reshape(2, 16) * 2**27},
    {"op": "params", "seq": 0},
    {"a": None, "b": True, "c": -(2**70), "d": 1.5e-300, "e": b"\x00\xff", "f": [1, (2, "x")],
     "g": {"h": np.zeros((0, 3), np.uint64)}, "i": np.array([1.0, -2.0], np.float32)},
]


@pytest.mark.parametrize("msg", MESSAGES)
def test_wire_matches_the_transport_codec_both_ways(msg) -> None:  # type: ignore[no-untyped-def]
    assert encode_message(msg) == encode(msg)
    assert encode_frame(msg) == ref_frame(msg)
    for got in (decode_message(encode(msg)), decode(encode_message(msg))):
        assert got.keys() == msg.keys()
        for k, v in msg.items():
            if isinstance(v, np.ndarray):
                assert got[k].dtype == v.dtype and np.array_equal(got[k], v)
            elif k == "g":
                assert got[k]["h"].shape == (0, 3)
            else:
                assert got[k] == v


@pytest.mark.parametrize("payload", [b"", b"\x05\x00\x00\x00{}", encode({"x": b"ab"})[:-1],
                                     encode({"x": b"ab"}) + b"!"])
def test_wire_rejects_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(WireError, match="malformed"):
        decode_message(payload)


def test_sensor_needs_numpy_only() -> None:
    code = ("import sys; import medshield.secure.net.sensor, medshield.secure.net.wire; "
            "bad = [m for m in ('torch', 'medshield.transport') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_seq_guard_and_ids() -> None:
    g = m.SeqGuard()
    assert g.check({"op": "a", "seq": 0}, "a")["op"] == "a"
    for bad, code in (({"op": "a", "seq": 0}, "seq"), ({"op": "a", "seq": 5}, "seq"),
                      ({"op": "a"}, "seq"), ({"seq": 1}, "format"), ([1], "format"),
                      ({"op": "b", "seq": 1}, "op")):
        with pytest.raises(m.ProtocolError) as err:
            g.check(bad, "a")
        assert err.value.code == code
    assert g.stamp({})["seq"] == 0 and g.stamp({})["seq"] == 1
    for ok in ("r1", "a.b:c-d_e", "x" * 80):
        assert m.check_rid(ok) == ok
    for bad_id in ("", "x" * 81, "a b", "../etc", 5, None, "é"):
        with pytest.raises(m.ProtocolError):
            m.check_rid(bad_id)


def test_program_round_trips_through_json(compiled) -> None:  # type: ignore[no-untyped-def]
    from medshield.models.pehealth import PEHealthF
    from medshield.secure.compiler import compile_model

    for prog in (compiled.program,
                 compile_model(PEHealthF(seed=0).eval(), (1, 28, 28), frac_bits=12,
                               ring_bits=32).program):
        back = m.program_from_json(m.program_to_json(prog))
        assert back == prog and back.fingerprint() == prog.fingerprint()
    tampered = m.program_to_json(compiled.program).replace('"frac_bits": 12', '"frac_bits": 13')
    with pytest.raises(m.ProtocolError, match="fingerprint"):
        m.program_from_json(tampered)
    with pytest.raises(m.ProtocolError):
        m.program_from_json('{"ops": [["Evil", {}]]}')
