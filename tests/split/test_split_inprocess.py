"""Split learning in one process: equals centralised training, counts bytes and rounds."""

from __future__ import annotations

import copy

import pytest
import torch
from _split_fixtures import CUT, centralised, device_batches, halves

from medshield.models import MODELS, cut_model
from medshield.split import (
    HandoffSeal,
    SplitDevice,
    SplitProtocolError,
    SplitServer,
    run_in_process,
)
from medshield.transport import InProcessChannel

pytestmark = pytest.mark.timeout(60)


def _split_run(n_devices: int, epochs: int, optimizer: str, lr: float, **device_kw):
    dev_half, srv_half = halves(0)
    devices = [
        SplitDevice(copy.deepcopy(dev_half), device_batches(k), eval_data=device_batches(k, 1),
                    optimizer=optimizer, lr=lr, device="cpu", **device_kw)
        for k in range(n_devices)
    ]
    server = SplitServer(srv_half, optimizer=optimizer, lr=lr, device="cpu")
    return server, run_in_process(server, devices, epochs=epochs)


@pytest.mark.parametrize(("n_devices", "optimizer", "lr"), [(1, "sgd", 0.1), (3, "adam", 0.01)])
def test_split_training_equals_centralised_training(n_devices: int, optimizer: str, lr: float):
    server, run = _split_run(n_devices, epochs=2, optimizer=optimizer, lr=lr)
    ref = centralised(0, n_devices, epochs=2, optimizer=optimizer, lr=lr)
    ref_state = ref.state_dict()
    got = {**run.history.device_state, **server.head.model.state_dict()}
    assert set(got) == set(ref_state)
    for name, value in ref_state.items():
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)
    # and the weights did move (the test would be void otherwise)
    init = halves(0)[1].state_dict()
    assert any(not torch.equal(init[k], v) for k, v in server.head.model.state_dict().items())


def test_split_counts_bytes_rounds_and_samples():
    server, run = _split_run(2, epochs=1, optimizer="sgd", lr=0.05)
    hist = run.history
    assert hist.samples == 2 * 3 * 5
    assert len(hist.train_loss) == 1 and 0.0 <= hist.train_accuracy[0] <= 1.0
    assert set(hist.eval_accuracy) == {0, 1}
    for rank, report in enumerate(run.devices):
        assert report.rank == rank and report.batches == 3 and report.samples == 15
        srv, dev = hist.channels[rank], report.channel
        # what one end sent, the other received, byte for byte
        assert srv["bytes_sent"] == dev["bytes_received"] > 0
        assert srv["bytes_received"] == dev["bytes_sent"] > 0
        # device flights: hello, 3 forwards, end_turn, infer, report;
        # server flights: turn, 3 grads, evaluate, logits, stop
        assert dev["rounds"] == 1 + 3 + 1 + 1 + 1
        assert srv["rounds"] == 1 + 3 + 1 + 1 + 1
    # activations dominate: 5 samples x 4 channels x 8 x 8 float32 per forward and per grad
    act_bytes = 5 * 4 * 8 * 8 * 4
    assert hist.bytes_total() > 2 * 2 * 3 * act_bytes
    assert run.bytes_per_sample() == hist.bytes_total() / 30


def test_device_error_surfaces_in_caller():
    dev_half, srv_half = halves(0)
    bad = [(torch.rand(2, 1, 8, 8), torch.tensor([0, 7]))]  # label 7 of 3 classes
    server = SplitServer(srv_half, optimizer="sgd", lr=0.1, device="cpu")
    with pytest.raises(SplitProtocolError, match=r"labels 0\.\.7.*same network"):
        run_in_process(server, [SplitDevice(dev_half, bad, optimizer="sgd", device="cpu")],
                       epochs=1, timeout=10)


def test_activations_of_another_network_or_malformed_batches_are_clear_errors():
    """A device built from another configuration (wider cut layer), and hand-made malformed
    forward messages: the server names the problem instead of failing inside a layer."""
    _, srv_half = halves(0)
    wider, _ = cut_model(MODELS.create("pgsl-cnn", in_channels=1, input_size=8, width=6,
                                       hidden=8, num_classes=3, dropout=0.0, seed=0), CUT)
    server = SplitServer(srv_half, device="cpu")
    with pytest.raises(SplitProtocolError, match=r"shape \(2, 6, 8, 8\).*same network"):
        run_in_process(server, [SplitDevice(wider, device_batches(0, 1, 2), device="cpu")],
                       epochs=1, timeout=10)
    for bad, match in (({"act": [1.0, 2.0], "y": torch.zeros(1)}, "'act' is list"),
                       ({"act": torch.zeros(2, 4, 8, 8)}, "'y' is NoneType"),
                       ({"act": torch.zeros(2, 4, 8, 8), "y": torch.zeros(3)}, "N labels"),
                       ({"act": torch.zeros(2, 4, 8, 8, dtype=torch.long),
                         "y": torch.zeros(2)}, "floating-point")):
        a, b = InProcessChannel.pair()
        b.send({"op": "hello", "rank": 0})
        b.send({"op": "forward", **bad})
        with pytest.raises(SplitProtocolError, match=match):
            SplitServer(halves(0)[1], device="cpu").run([a], epochs=1, timeout=5)


def test_unexpected_message_is_a_clear_protocol_error():
    _, srv_half = halves(0)
    server = SplitServer(srv_half, device="cpu")
    a, b = InProcessChannel.pair()
    b.send({"op": "forward", "act": torch.zeros(1), "y": torch.zeros(1)})
    with pytest.raises(SplitProtocolError, match="hello"):
        server.run([a], epochs=1, timeout=5)


def test_regularizer_and_transform_hooks_are_used():
    calls = {"transform": 0, "reg": 0}

    def transform(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        calls["transform"] += 1
        return x * 0.5

    def reg(x: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        calls["reg"] += 1
        assert x.shape[1:] == (1, 8, 8) and act.requires_grad
        return act.pow(2).mean()

    _, run = _split_run(1, epochs=1, optimizer="sgd", lr=0.1, transform=transform,
                        regularizer=reg)
    assert calls == {"transform": 3 + 1, "reg": 3}


def test_sealed_handoff_trains_the_same_model_without_the_server_holding_it():
    """With a hand-off key shared by the devices, the run is the same (same weights on every
    device at the end), but the server only ever relays opaque, authenticated blobs."""
    dev_half, srv_half = halves(0)

    def run(seal_for):
        devices = [SplitDevice(copy.deepcopy(dev_half), device_batches(k), optimizer="adam",
                               lr=0.01, device="cpu", handoff_seal=seal_for(k))
                   for k in range(3)]
        server = SplitServer(copy.deepcopy(srv_half), optimizer="adam", lr=0.01, device="cpu")
        return devices, server, run_in_process(server, devices, epochs=2)

    shared = bytes(32)  # a test key; real keys come from HandoffSeal.generate / write_key

    plain_devices, plain_server, plain = run(lambda k: None)
    sealed_devices, sealed_server, sealed = run(lambda k: HandoffSeal(shared))
    assert plain.history.device_state is not None and not plain.history.sealed_handoff
    assert sealed.history.device_state is None and sealed.history.sealed_handoff
    torch.testing.assert_close(sealed_server.head.model.state_dict(),
                               plain_server.head.model.state_dict())
    for d in sealed_devices:  # every device holds the final device half after the evaluation
        torch.testing.assert_close(d.model.state_dict(), plain.history.device_state)


def test_handoff_seal_refuses_other_keys_tampering_rollback_and_plaintext(tmp_path):
    a, b = HandoffSeal(bytes(32)), HandoffSeal(bytes(range(32)))
    first = a.seal({"model": {"w": torch.ones(3)}}, counter=1)
    assert isinstance(first["sealed"], bytes) and b"\x00\x00\x80?" not in first["sealed"]
    with pytest.raises(SplitProtocolError, match="another key"):
        b.open(first)
    forged = dict(first, sealed=first["sealed"][:-1] + bytes([first["sealed"][-1] ^ 1]))
    with pytest.raises(SplitProtocolError, match="another key or altered"):
        a.open(forged)
    with pytest.raises(SplitProtocolError, match="another key or altered"):
        a.open(dict(first, counter=2))  # the counter is authenticated
    reader = HandoffSeal(bytes(32))
    second = a.seal({"model": {"w": torch.zeros(3)}}, counter=2)
    assert reader.open(second)[1] == 2
    with pytest.raises(SplitProtocolError, match="rollback"):
        reader.open(first)
    with pytest.raises(SplitProtocolError, match="plaintext or malformed"):
        reader.open({"model": {}})
    keyless = SplitDevice(halves(0)[0], [], device="cpu")
    with pytest.raises(SplitProtocolError, match="holds no hand-off key"):
        keyless.load_state(second)
    path = HandoffSeal.write_key(tmp_path / "handoff.key")
    assert (path.stat().st_mode & 0o777) == 0o600 and len(path.read_bytes()) == 32
    assert HandoffSeal.load(path).open(HandoffSeal.load(path).seal({"x": 1}, 1))[0] == {"x": 1}
    with pytest.raises(FileExistsError):
        HandoffSeal.write_key(path)
    (tmp_path / "short.key").write_bytes(b"123")
    with pytest.raises(ValueError, match="not a 32-byte"):
        HandoffSeal.load(tmp_path / "short.key")
    with pytest.raises(ValueError, match="keygen"):
        HandoffSeal.load(tmp_path / "missing.key")
    assert repr(b) == "HandoffSeal(highest_seen=0)"  # the key never reaches a repr or a log
