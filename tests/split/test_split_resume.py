"""A device that drops out mid-run loses nothing: the server keeps its state after the last
completed epoch, and a resumed run trains exactly what an uninterrupted one does."""

from __future__ import annotations

import copy
import threading
from pathlib import Path

import pytest
import torch
from _split_fixtures import device_batches, halves

from medshield.split import SplitDevice, SplitInterrupted, SplitServer, run_in_process
from medshield.split.deploy import DeployConfig, load_resume, run_device, run_server
from medshield.split.server import CHECKPOINT_FORMAT
from medshield.transport import InProcessChannel, TcpListener

pytestmark = pytest.mark.timeout(120)


class _PowerCut:
    """A device's batches; in its ``fail_on``-th pass the device loses power after one batch."""

    def __init__(self, batches: list, fail_on: int) -> None:
        self.batches, self.fail_on, self.passes = batches, fail_on, 0

    def __iter__(self):
        self.passes += 1
        for i, batch in enumerate(self.batches):
            if self.passes == self.fail_on and i == 1:
                raise ConnectionResetError("the device lost power")
            yield batch


def _devices(dev_half, n: int, fail: int | None = None) -> list[SplitDevice]:
    return [SplitDevice(copy.deepcopy(dev_half),
                        _PowerCut(device_batches(k), 2) if k == fail else device_batches(k),
                        eval_data=device_batches(k, 1), optimizer="adam", lr=0.01,
                        device="cpu")
            for k in range(n)]


def test_interrupted_run_resumes_to_the_uninterrupted_model():
    dev_half, srv_half = halves(0)
    # reference: three epochs without interruption
    ref_server = SplitServer(copy.deepcopy(srv_half), optimizer="adam", lr=0.01, device="cpu")
    ref = run_in_process(ref_server, _devices(dev_half, 2), epochs=3)

    # device 1 loses power one batch into its turn of epoch 2 (after the server trained on
    # device 0's whole turn and device 1's first batch of that epoch)
    server = SplitServer(copy.deepcopy(srv_half), optimizer="adam", lr=0.01, device="cpu")
    pairs = [InProcessChannel.pair() for _ in range(2)]
    devices = _devices(dev_half, 2, fail=1)

    def work(k: int) -> None:
        try:
            devices[k].run(pairs[k][1], rank=k, timeout=10, turn_timeout=10)
        except Exception:  # noqa: BLE001 - the power cut (and the others' closed links)
            pass
        finally:
            pairs[k][1].close()

    threads = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    with pytest.raises(SplitInterrupted, match=r"device 1 failed during epoch 2 of 3") as info:
        server.run([a for a, _ in pairs], epochs=3, timeout=10)
    for a, _ in pairs:
        a.close()
    for t in threads:
        t.join(timeout=10)
    exc = info.value
    assert exc.rank == 1 and exc.epoch == 2 and "after 1 completed epoch " in str(exc)
    ckpt = exc.checkpoint
    assert ckpt["format"] == CHECKPOINT_FORMAT and ckpt["epochs_done"] == 1
    assert len(ckpt["history"]["train_loss"]) == 1 and ckpt["history"]["samples"] == 30
    # the server half moved on in epoch 2 before the cut; the checkpoint did not
    assert any(not torch.equal(ckpt["head"][k], v)
               for k, v in server.head.state_dict().items())

    # resume with fresh parties (new processes would start from nothing but the checkpoint)
    fresh = SplitServer(copy.deepcopy(srv_half), optimizer="adam", lr=0.01, device="cpu")
    run = run_in_process(fresh, _devices(halves(7)[0], 2), epochs=3, resume=ckpt)
    assert len(run.history.train_loss) == 3 and run.history.samples == 90
    assert run.history.train_loss[0] == ref.history.train_loss[0]
    torch.testing.assert_close(fresh.head.state_dict(), ref_server.head.state_dict())
    torch.testing.assert_close(run.history.device_state, ref.history.device_state)
    assert run.history.eval_accuracy == ref.history.eval_accuracy


def test_resume_refuses_a_foreign_or_exhausted_checkpoint():
    dev_half, srv_half = halves(0)
    server = SplitServer(copy.deepcopy(srv_half), device="cpu")
    run = run_in_process(server, _devices(dev_half, 1), epochs=1, evaluate=False)
    ckpt = server.checkpoint(1, None, run.history)
    with pytest.raises(ValueError, match="not a split-learning server checkpoint"):
        run_in_process(server, _devices(dev_half, 1), epochs=1, resume={"head": {}})
    with pytest.raises(ValueError, match="ask for at least 2 epochs"):
        run_in_process(server, _devices(dev_half, 1), epochs=1, resume={**ckpt,
                                                                       "epochs_done": 2})
    other = halves(0)[1]
    other.fc2 = torch.nn.Linear(8, 5)  # another number of classes
    with pytest.raises(ValueError, match="another server half"):
        run_in_process(SplitServer(other, device="cpu"), _devices(dev_half, 1), epochs=1,
                       resume=ckpt)


def test_server_process_writes_resume_file_and_resumes_over_tcp(tmp_path: Path, monkeypatch):
    """`medshield split serve`'s code path: a device's connection drops at its second turn;
    the server writes OUT/resume.pt and names the file and the command; a server started with
    it trains the remaining epoch with the reconnected devices."""
    monkeypatch.delenv("MEDSHIELD_DATA", raising=False)
    cfg = DeployConfig(defence="none", devices=2, n_train=64, n_test=16, epochs=2,
                       batch_size=16, width=4, hidden=8)
    out = tmp_path / "server"

    def serve(resume: Path | None, errors: list[BaseException]) -> tuple[threading.Thread, int]:
        listener = TcpListener("127.0.0.1", 0)

        def work() -> None:
            try:
                with listener:
                    run_server(cfg, listener, out, accept_timeout=30, timeout=30,
                               device="cpu", resume=resume)
            except BaseException as exc:  # noqa: BLE001 - inspected by the test
                errors.append(exc)

        t = threading.Thread(target=work, daemon=True)
        t.start()
        return t, listener.port

    def devices(port: int, fail_rank: int | None) -> None:
        real_run = SplitDevice.run

        def run(self, channel, *, rank=0, **kw):
            if rank == fail_rank:
                turns = 0
                real_turn = self._train_turn

                def turn(*a, **k):
                    nonlocal turns
                    turns += 1
                    if turns == 2:
                        raise ConnectionResetError("the device lost power")
                    return real_turn(*a, **k)

                self._train_turn = turn
            return real_run(self, channel, rank=rank, **kw)

        with monkeypatch.context() as m:
            m.setattr(SplitDevice, "run", run)
            threads = [threading.Thread(
                target=lambda r=r: _quietly(run_device, cfg, r, "127.0.0.1", port,
                                            timeout=30, turn_timeout=30, device="cpu"),
                daemon=True) for r in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(timeout=60)

    errors: list[BaseException] = []
    server, port = serve(None, errors)
    devices(port, fail_rank=1)
    server.join(timeout=60)
    assert len(errors) == 1 and isinstance(errors[0], SplitInterrupted), errors
    message = str(errors[0])
    resume = out / "resume.pt"
    assert "device 1 failed during epoch 2 of 2" in message
    assert f"--resume {resume}" in message and "1 of 2 epochs" in message
    assert resume.is_file() and not (out / "history.json").exists()
    assert load_resume(resume, cfg)["epochs_done"] == 1

    errors = []
    server, port = serve(resume, errors)
    devices(port, fail_rank=None)
    server.join(timeout=60)
    assert not errors, errors
    import json

    summary = json.loads((out / "history.json").read_text())
    assert summary["resumed_from_epoch"] == 1 and len(summary["train_loss"]) == 2
    assert summary["samples"] == 128 and set(summary["eval_accuracy"]) == {"0", "1"}
    assert not resume.exists()  # the run it belonged to is complete


def test_load_resume_errors_name_the_problem(tmp_path: Path):
    cfg = DeployConfig(defence="none", width=4, hidden=8)
    with pytest.raises(ValueError, match="no checkpoint at"):
        load_resume(tmp_path / "missing.pt", cfg)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ValueError, match="not a readable split-learning checkpoint"):
        load_resume(bad, cfg)
    torch.save({"weights": torch.zeros(1)}, bad)
    with pytest.raises(ValueError, match="written by `medshield split serve`"):
        load_resume(bad, cfg)
    good = tmp_path / "resume.pt"
    from dataclasses import asdict

    torch.save({"config": asdict(cfg), "server": {"epochs_done": 1}}, good)
    assert load_resume(good, DeployConfig(defence="none", width=4, hidden=8, epochs=5)) == {
        "epochs_done": 1}  # more epochs may be asked for
    with pytest.raises(ValueError, match="differs in lr, width"):
        load_resume(good, DeployConfig(defence="none", width=8, hidden=8, lr=0.1))


def _quietly(fn, *args, **kwargs) -> None:
    try:
        fn(*args, **kwargs)
    except Exception:  # noqa: BLE001 - a device that lost power (or its server) ends here
        pass
