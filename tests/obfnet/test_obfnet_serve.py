"""The inference service on a real loopback server: auth, bad input, correct answers."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from medshield.defenses.obfnet import Participant  # noqa: E402
from medshield.models import LeNet5, ObfNet2  # noqa: E402
from medshield.serve import (  # noqa: E402
    DeviceClient,
    InferenceClient,
    ServerThread,
    ServiceError,
    create_app,
    load_model,
)
from medshield.serve.server import _resolve_key  # noqa: E402

pytestmark = pytest.mark.timeout(60)

KEY = "test-key-" + "x" * 24
MARK = 0.123456789  # a sample value that must never show up in logs or error messages


@pytest.fixture(scope="module")
def model() -> LeNet5:
    return LeNet5(seed=0).eval()


@pytest.fixture(scope="module")
def server(model):
    app = create_app(model, api_key=KEY, max_batch=8, max_body_bytes=300_000)
    with ServerThread(app, timeout=20) as srv:
        yield srv


def _post(
    server,
    body: bytes | str,
    *,
    ctype: str = "application/json",
    headers: dict[str, str] | None = None,
    auth: bool = True,
) -> httpx.Response:
    h = {"Content-Type": ctype, **(headers or {})}
    if auth:
        h["Authorization"] = f"Bearer {KEY}"
    return httpx.post(server.url + "/v1/predict", content=body, headers=h, timeout=10)


def _samples(n: int, value: float | None = None) -> np.ndarray:
    x = np.random.default_rng(n).random((n, 1, 28, 28), dtype=np.float32)
    if value is not None:
        x[:] = value
    return x


def _local(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).argmax(1).numpy()


def test_requests_without_valid_credentials_are_refused(server):
    body = json.dumps({"samples": _samples(1).tolist()})
    r = _post(server, body, auth=False)
    assert r.status_code == 401 and "Bearer" in r.json()["detail"]
    assert r.headers["www-authenticate"] == "Bearer"
    for headers in (
        {"Authorization": "Bearer wrong"},
        {"X-API-Key": KEY[:-1]},
        {"Authorization": f"Basic {KEY}"},
    ):
        r = _post(server, body, headers=headers, auth=False)
        assert r.status_code in (401, 403), headers
    assert _post(server, body, headers={"X-API-Key": KEY}, auth=False).status_code == 200
    assert httpx.get(server.url + "/v1/info").status_code == 401
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}


def test_predictions_match_the_local_model(server, model):
    x = _samples(5)
    with InferenceClient(server.url, KEY) as client:
        labels, probs = client.predict(x)
        assert client.info()["input_shape"] == [1, 28, 28]
    assert np.array_equal(labels, _local(model, x))
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    with InferenceClient(server.url, KEY, binary=True) as client:
        assert np.array_equal(client.predict(x)[0], labels)


def test_device_client_obfuscates_before_sending(server, model):
    obf = ObfNet2(seed=1).eval()
    x = _samples(6)
    with InferenceClient(server.url, KEY) as client:
        labels, _ = DeviceClient(client, Participant([obf])).predict(x)
    with torch.no_grad():
        expected = model(obf(torch.from_numpy(x))).argmax(1).numpy()
    assert np.array_equal(labels, expected)


BAD = [
    ("malformed json", b'{"samples": [1, 2', "application/json", 400, "malformed JSON"),
    ("not an object", b"[1, 2, 3]", "application/json", 422, '"samples"'),
    (
        "wrong size",
        json.dumps({"samples": np.full((2, 1, 27, 28), MARK).tolist()}),
        "application/json",
        422,
        "expected (N, 1, 28, 28)",
    ),
    (
        "no batch axis",
        json.dumps({"samples": np.full((1, 28, 28), MARK).tolist()}),
        "application/json",
        422,
        "wrap a single sample",
    ),
    ("strings", json.dumps({"samples": [[["a"] * 28] * 28]}), "application/json", 422, "strings"),
    (
        "booleans",
        json.dumps({"samples": [[[[True] * 28] * 28]]}),
        "application/json",
        422,
        "booleans",
    ),
    ("null", json.dumps({"samples": [[[[None] * 28] * 28]]}), "application/json", 422, "numbers"),
    (
        "ragged",
        json.dumps({"samples": [[[[0.5] * 28] * 27 + [[0.5] * 3]]]}),
        "application/json",
        422,
        "ragged",
    ),
    (
        "nan",
        json.dumps({"samples": np.full((1, 1, 28, 28), np.nan).tolist()}),
        "application/json",
        422,
        "NaN",
    ),
    (
        "inf",
        json.dumps({"samples": np.full((1, 1, 28, 28), np.inf).tolist()}),
        "application/json",
        422,
        "infinity",
    ),
    (
        "float32 overflow",
        json.dumps({"samples": np.full((1, 1, 28, 28), 1e300).tolist()}),
        "application/json",
        422,
        "float32",
    ),
    ("empty batch", json.dumps({"samples": []}), "application/json", 422, "shape"),
    (
        "batch too large",
        json.dumps({"samples": np.zeros((9, 1, 28, 28)).tolist()}),
        "application/json",
        413,
        "limit of 8",
    ),
    ("body too large", b"0" * 400_000, "application/json", 413, "exceeds"),
    ("content type", b"hello", "text/plain", 415, "Content-Type"),
    ("binary length", b"\x00" * 100, "application/octet-stream", 422, "float32 samples"),
]


@pytest.mark.parametrize("name,body,ctype,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_a_clear_4xx_and_the_server_keeps_serving(
    server, model, name, body, ctype, status, message
):
    r = _post(server, body, ctype=ctype)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert message in detail
    assert str(MARK)[:8] not in r.text  # samples are never echoed
    x = _samples(2)
    ok = _post(server, json.dumps({"samples": x.tolist()}))
    assert ok.status_code == 200 and ok.json()["labels"] == _local(model, x).tolist()


def test_wrong_binary_dtype(server):
    body = _samples(1).astype(np.float64).tobytes()
    r = _post(server, body, ctype="application/octet-stream", headers={"X-Dtype": "float64"})
    assert r.status_code == 415 and "float32" in r.json()["detail"]


def test_samples_are_never_logged(server, caplog):
    caplog.set_level(logging.DEBUG)
    x = _samples(3, value=MARK)
    assert _post(server, json.dumps({"samples": x.tolist()})).status_code == 200
    assert _post(server, json.dumps({"samples": x[:, :, :27].tolist()})).status_code == 422
    assert str(MARK)[:8] not in caplog.text


def test_client_raises_service_errors(server):
    with InferenceClient(server.url, "not-the-key") as client:
        with pytest.raises(ServiceError) as err:
            client.predict(_samples(1))
    assert err.value.status == 403


def test_app_and_serve_setup_errors(tmp_path, model, monkeypatch):
    with pytest.raises(ValueError, match="16 characters"):
        create_app(model, api_key="short")
    monkeypatch.delenv("MEDSHIELD_API_KEY", raising=False)
    with pytest.raises(ValueError, match="MEDSHIELD_API_KEY"):
        _resolve_key(None)
    path = tmp_path / "lenet.pt"
    torch.save(model.state_dict(), path)
    loaded = load_model(path)
    x = torch.from_numpy(_samples(2))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
