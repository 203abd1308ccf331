"""Round trips, the wire layout against a slow reference, and fuzzing of the decoder."""

from __future__ import annotations

import copy
import json
import math
import random
import struct
from typing import Any

import numpy as np
import pytest
import torch

from medshield.transport import MAX_DEPTH, MalformedMessage, UnsupportedValue, decode, encode
from medshield.transport.codec import DTYPES

pytestmark = pytest.mark.timeout(30)

NUMPY_DTYPES = sorted(DTYPES - {"bfloat16"})
SECRET = "TOP-SECRET-SHARE-VALUE"


def _values(dtype: str, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(math.prod(shape) * np.dtype(dtype).itemsize,), dtype=np.uint8)
    if dtype == "bool":
        return (raw % 2).astype(bool).reshape(shape)
    return raw.view(dtype).reshape(shape)  # arbitrary bit patterns, NaNs included


def _same_array(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def _payload(header: Any, buffers: bytes = b"") -> bytes:
    """A raw payload with a hand-written header (for malformed-input tests)."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<I", len(text)) + text + buffers


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("dtype", NUMPY_DTYPES)
@pytest.mark.parametrize("shape", [(), (0,), (3, 0, 2), (2, 3, 4)])
def test_ndarray_and_tensor_round_trip_bit_exactly(dtype: str, shape: tuple[int, ...]) -> None:
    arr = _values(dtype, shape)
    out = decode(encode({"a": arr, "t": torch.from_numpy(arr.copy())}))
    assert isinstance(out["a"], np.ndarray) and _same_array(out["a"], arr)
    assert isinstance(out["t"], torch.Tensor)
    assert out["t"].dtype == getattr(torch, dtype) and tuple(out["t"].shape) == shape
    assert _same_array(out["t"].numpy(), arr)


def test_bfloat16_tensor_round_trip() -> None:
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    for t in (x, x[0, 0], x[:, ::2], torch.empty(0, 2, dtype=torch.bfloat16)):
        y = decode(encode({"x": t}))["x"]
        assert y.dtype == torch.bfloat16 and y.shape == t.shape
        assert torch.equal(y.view(torch.int16), t.contiguous().view(torch.int16))


def test_non_contiguous_and_lazy_views_are_materialised() -> None:
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    z = torch.complex(torch.randn(3, 2), torch.randn(3, 2))
    cases = {
        "transpose": base.t(),
        "strided": base[::2, 1::3],
        "expand": torch.tensor([1, 2, 3]).expand(4, 3),
        "conj": z.conj(),  # lazy conjugate bit
        "neg": torch.neg(z.conj()).imag,  # negative bit
        "grad": torch.ones(3, requires_grad=True) * 2,
        "param": torch.nn.Parameter(torch.ones(2)),
        "np_view": np.arange(20).reshape(4, 5)[:, ::-2],
    }
    out = decode(encode(cases))
    for name, t in cases.items():
        ref = t if isinstance(t, np.ndarray) else t.detach().resolve_conj().resolve_neg()
        got = out[name]
        assert type(got) is (np.ndarray if isinstance(t, np.ndarray) else torch.Tensor), name
        assert got.shape == ref.shape and got.dtype == ref.dtype, name
        assert (got == ref).all(), name
    assert not out["grad"].requires_grad


def test_big_endian_arrays_arrive_in_native_order_with_equal_values() -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3)
    out = decode(encode({"a": arr}))["a"]
    assert out.dtype == np.dtype("int32") and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)


def test_decoded_arrays_are_writable_independent_copies() -> None:
    x = torch.zeros(5)
    a = np.zeros(3)
    out = decode(encode({"x": x, "a": a}))
    out["x"] += 1
    out["a"][0] = 7
    assert x.sum() == 0 and a.sum() == 0
    assert out["a"].flags.writeable and out["a"].flags.aligned
    root = out["a"]
    while isinstance(root.base, np.ndarray):
        root = root.base
    assert root.flags.owndata  # not a view of the receive buffer


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_are_moved_to_cpu_on_encode() -> None:
    x = torch.arange(6, device="cuda", dtype=torch.float16).reshape(2, 3)
    y = decode(encode({"x": x}))["x"]
    assert y.device.type == "cpu" and y.dtype == x.dtype
    assert torch.equal(y, x.cpu())


def test_plain_values_and_nested_containers_round_trip() -> None:
    msg = {
        "none": None,
        "t": True,
        "f": False,
        "int": -(2**70),
        "zero": 0,
        "floats": [0.1, -0.0, float("inf"), -float("inf"), 1e-320, math.pi],
        "text": "héllo ✓ 🩺 \u0000 \ud800",  # non-ASCII, NUL and a lone surrogate
        "bytes": b"\x00\xff" * 3,
        "empty": [(), [], {}, b"", ""],
        "tuple": (1, (2, [3, {"k": (4,)}])),
        "int_keys": {0: "a", -5: "b", "s": "c"},
        "scalars": [np.float32(1.5), np.int64(-3), np.bool_(True), np.uint8(250)],
    }
    out = decode(encode(msg))
    assert out.keys() == msg.keys() and list(out["int_keys"]) == [0, -5, "s"]
    assert out["floats"][:2] == [0.1, -0.0] and math.copysign(1, out["floats"][1]) == -1
    for key in ("none", "t", "f", "int", "zero", "text", "bytes", "empty", "tuple", "int_keys"):
        assert out[key] == msg[key] and type(out[key]) is type(msg[key]), key
    assert out["floats"][2:] == msg["floats"][2:]
    assert [type(v) for v in out["scalars"]] == [type(v) for v in msg["scalars"]]
    assert out["scalars"] == msg["scalars"]
    assert type(out["t"]) is bool and type(out["zero"]) is int  # bool and int stay distinct
    nan = decode(encode({"x": float("nan")}))["x"]
    assert math.isnan(nan)


def test_bytearray_and_memoryview_arrive_as_bytes() -> None:
    mv = memoryview(np.arange(4, dtype=np.int16))
    out = decode(encode({"ba": bytearray(b"ab"), "mv": mv, "strided": memoryview(b"abcdef")[::2]}))
    assert out == {"ba": b"ab", "mv": mv.tobytes(), "strided": b"ace"}


def test_wire_layout_matches_a_slow_reference() -> None:
    """Header length, ASCII JSON header, then the little-endian buffers in depth-first order."""
    a = np.arange(6, dtype=">f8").reshape(2, 3)  # big-endian on purpose
    t = torch.arange(5, dtype=torch.int32)[::2]
    payload = encode({"a": a, "inner": [b"xyz", {"t": t}], "n": 3})
    (hlen,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4 : 4 + hlen].decode("ascii"))
    assert header["root"]["v"][0] == ["a", {"t": "ndarray", "d": "float64", "s": [2, 3]}]
    assert header["root"]["v"][2] == ["n", {"t": "int", "v": 3}]
    reference = a.astype("<f8").tobytes() + b"xyz" + np.array([0, 2, 4], "<i4").tobytes()
    assert payload[4 + hlen :] == reference


# ----------------------------------------------------------------------------- encode errors


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        ([1, 2], "must be a dict"),
        ({1: "x"}, "message keys must be str"),
        ({"x": object()}, r"msg\['x'\].*type object"),
        ({"x": {1.5: 2}}, "dict key of type float"),
        ({"x": {True: 2}}, "dict key of type bool"),
        ({"x": {1, 2}}, "type set"),
        ({"x": 1 + 2j}, "type complex"),
        ({"x": np.array([object()])}, "numpy dtype"),
        ({"x": np.zeros(2, dtype="datetime64[s]")}, "numpy dtype"),
        ({"x": np.zeros(2, dtype=[("a", "<i4")])}, "numpy dtype"),
        ({"x": torch.zeros(2).to_sparse()}, "dense"),
        ({"x": torch.zeros(2, device="meta")}, "dense"),
        ({"x": torch.zeros(2).to(torch.float8_e4m3fn)}, "tensor dtype .* whitelist"),
        ({"x": 2**9000}, "send it as bytes"),
    ],
)
def test_unsupported_values_raise_unsupported_value(msg: Any, match: str) -> None:
    with pytest.raises(UnsupportedValue, match=match):
        encode(msg)


def test_nesting_limit_and_cycles() -> None:
    deep: Any = 0
    for _ in range(MAX_DEPTH - 1):
        deep = [deep]
    assert decode(encode({"x": deep}))["x"] == deep  # exactly at the limit
    with pytest.raises(UnsupportedValue, match="nesting deeper"):
        encode({"x": [deep]})
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(UnsupportedValue, match="cyclic"):
        encode({"x": cyclic})


def test_encode_errors_do_not_quote_values() -> None:
    with pytest.raises(UnsupportedValue) as info:
        encode({"share": SECRET, "bad": [SECRET, object()]})
    assert SECRET not in str(info.value)


# ----------------------------------------------------------------------------- decode errors

_T = {"t": "tensor", "d": "float32", "s": [2]}
_GOOD_BUF = np.zeros(2, "<f4").tobytes()


@pytest.mark.parametrize(
    ("payload", "match"),
    [
        (b"", "shorter than the 4-byte"),
        (b"\x01\x00", "shorter than the 4-byte"),
        (struct.pack("<I", 100) + b"{}", "declares 100 bytes"),
        (_payload(b"{not json"), "not valid ASCII JSON"),
        (_payload("caf\u00e9".encode()), "not valid ASCII JSON"),
        (_payload(b"[" * 100_000 + b"]" * 100_000), "not valid ASCII JSON|root"),
        (_payload(b'{"root": NaN}'), "not valid ASCII JSON"),
        (_payload(b'{"root": {"t":"dict","v":[]}, "root": 1}'), "not valid ASCII JSON"),
        (_payload([]), "header must be"),
        (_payload({"root": {"t": "list", "v": []}}), "root node must be a dict"),
        (_payload({"root": {"t": "dict", "v": [[1, {"t": "none"}]]}}), "keys must be str"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "pickle"}]]}}), "unknown node"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "none", "v": 1}]]}}), "exactly"),
        (_payload({"root": {"t": "dict", "v": [["x", 5]]}}), "JSON object"),
        (_payload({"root": {"t": "dict", "v": [["x"]]}}), r"\[key, node\]"),
        (_payload({"root": {"t": "dict", "v": [[1.5, {"t": "none"}]]}}), "str or int"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "none"}]] * 2}}), "duplicate"),
        (_payload({"root": {"t": "dict", "v": {}}}), "not a JSON array"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "int", "v": 1.0}]]}}), "integer"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "int", "v": True}]]}}), "integer"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "bool", "v": 1}]]}}), "boolean"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "float", "v": 1.5}]]}}), "hex"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "float", "v": "zz"}]]}}), "hex"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "str", "v": 3}]]}}), "JSON string"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "bytes", "n": -1}]]}}), "non-negative"),
        (_payload({"root": {"t": "dict", "v": [["x", {"t": "bytes", "n": 9}]]}}, b"abc"), "9-byte"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "d": "object"}]]}}), "dtype"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "d": "float128"}]]}}), "dtype"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "d": ["float32"]}]]}}), "dtype"),
        (
            _payload(
                {"root": {"t": "dict", "v": [["x", {**_T, "t": "ndarray", "d": "bfloat16"}]]}}
            ),
            "dtype",
        ),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "s": [-2]}]]}}), "non-negative"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "s": [True]}]]}}), "non-negative"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "s": 2}]]}}), "shape"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "s": [1] * 40}]]}}), "shape"),
        (_payload({"root": {"t": "dict", "v": [["x", {**_T, "s": [2**40]}]]}}), "remain"),
        (_payload({"root": {"t": "dict", "v": [["x", _T]]}}, _GOOD_BUF[:7]), "remain"),
        (_payload({"root": {"t": "dict", "v": [["x", _T]]}}, _GOOD_BUF + b"!"), "left over"),
        (
            _payload(
                {"root": {"t": "dict", "v": [["x", {"t": "ndarray", "d": "bool", "s": [2]}]]}},
                b"\x01\x02",
            ),
            "0 and 1",
        ),
    ],
)
def test_malformed_payloads_raise_malformed_message(payload: bytes, match: str) -> None:
    with pytest.raises(MalformedMessage, match=match):
        decode(payload)


def test_declared_depth_is_bounded() -> None:
    node: dict[str, Any] = {"t": "none"}
    for _ in range(MAX_DEPTH + 5):
        node = {"t": "list", "v": [node]}
    with pytest.raises(MalformedMessage, match="nesting deeper"):
        decode(_payload({"root": {"t": "dict", "v": [["x", node]]}}))


def _sample_payload() -> bytes:
    return encode(
        {
            "w": torch.arange(12, dtype=torch.float32).reshape(3, 4),
            "mask": np.array([True, False, True]),
            "meta": {"round": 3, "ids": [1, 2], "name": SECRET, "blob": b"\x00\x01"},
            "lr": 0.25,
        }
    )


def test_every_truncation_raises_malformed_message() -> None:
    payload = _sample_payload()
    for n in range(len(payload)):
        with pytest.raises(MalformedMessage) as info:
            decode(payload[:n])
        assert SECRET not in str(info.value)


def test_random_garbling_raises_only_malformed_message() -> None:
    payload = _sample_payload()
    (hlen,) = struct.unpack_from("<I", payload)
    rng = random.Random(1234)
    outcomes = {"decoded": 0, "malformed": 0}
    for trial in range(3000):
        data = bytearray(payload)
        for _ in range(rng.choice((1, 1, 2, 8))):
            # mostly hit the header, where the structure lives
            pos = rng.randrange(4 + hlen) if trial % 4 else rng.randrange(len(data))
            # half the time printable ASCII, so the header often stays decodable JSON text
            data[pos] = rng.randrange(32, 127) if trial % 2 else rng.randrange(256)
        if trial % 7 == 0:  # also insert or delete bytes
            pos = rng.randrange(len(data))
            data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 5)))
        try:
            decode(bytes(data))
            outcomes["decoded"] += 1
        except MalformedMessage as exc:
            assert SECRET not in str(exc)
            assert "decoding failed" not in str(exc), "validation gap caught by the catch-all"
            outcomes["malformed"] += 1
    assert outcomes["malformed"] > 1000  # the fuzzer really exercises the error paths


_JUNK: list[Any] = [None, True, 0, -1, 2**40, 1.5, "", "float32", "bfloat16", "tensor"]
_JUNK += [[], [1, 2], [-1], {}, {"t": "none"}, [["k", {"t": "none"}]]]


def _mutate(tree: Any, rng: random.Random) -> Any:
    """Copy of a JSON tree with one random location replaced, dropped or extended."""
    tree = copy.deepcopy(tree)
    spots: list[tuple[Any, Any]] = []  # (container, key or index), all depths

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            spots.append((node, key))
            if isinstance(child, dict | list):
                walk(child)

    walk(tree)
    parent, key = rng.choice(spots)
    roll = rng.random()
    if roll < 0.2:
        del parent[key]
    elif roll < 0.3 and isinstance(parent, dict):
        parent[rng.choice(["t", "v", "d", "s", "n", "x"])] = rng.choice(_JUNK)
    elif roll < 0.3:
        parent.append(rng.choice(_JUNK))
    else:
        parent[key] = rng.choice(_JUNK)
    return tree


def test_structural_header_mutations_raise_only_malformed_message() -> None:
    payload = _sample_payload()
    (hlen,) = struct.unpack_from("<I", payload)
    header = json.loads(payload[4 : 4 + hlen])
    buffers = payload[4 + hlen :]
    rng = random.Random(99)
    malformed = 0
    for _ in range(2000):
        mutated = _mutate(header, rng)
        cut = rng.choice((0, 0, 0, 1, 7))  # sometimes drop trailing buffer bytes too
        data = _payload(mutated, buffers[: len(buffers) - cut])
        try:
            decode(data)
        except MalformedMessage as exc:
            assert "decoding failed" not in str(exc), f"validation gap: {exc}"
            malformed += 1
    assert malformed > 1500


def test_random_bytes_raise_only_malformed_message() -> None:
    rng = np.random.default_rng(7)
    for n in [0, 1, 3, 4, 5, 16, 100, 1000]:
        for _ in range(50):
            data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
            with pytest.raises(MalformedMessage):
                decode(data)
