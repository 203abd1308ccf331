"""Split learning and PGSL as real processes: one server, devices that connect to it over TCP.

Each party builds its half of the same network from one shared :class:`DeployConfig` (a JSON
file), so nothing but activations, gradients, labels and the device half's weights (relayed
between devices' turns, as in vanilla split learning) crosses the network:

* the **server** (:func:`run_server`) holds the layers after the cut; with
  ``defence="pgsl"`` PGSL's head (robust-PCA recovery, three streams, decision fusion);
* **device** ``k`` (:func:`run_device`) holds shard ``k`` of the training and test images,
  and the layers up to the cut; with ``defence="pgsl"`` it trains its own surrogate
  classifier on its shard and pixel-attacks and down-samples its images before training
  (PGSL's device side; the label is never used, as at inference).

By hand, in separate terminals (add ``--ca/--cert/--key`` on every party for mutual TLS, and
``--handoff-key`` on every device so that the device half passes through the server
encrypted; ``medshield split keygen --out handoff.key`` makes one)::

    medshield split serve --config run.json --port 9300 --out runs/split-server
    medshield split device --config run.json --rank 0 --server 127.0.0.1:9300
    medshield split device --config run.json --rank 1 --server 127.0.0.1:9300

or all of them on loopback, with a throw-away CA when ``--tls`` and a fresh hand-off key when
``--seal-handoff``::

    medshield split local --defence pgsl --devices 2 --tls --seal-handoff --out runs/split-local

The server writes ``OUT/history.json`` (losses, per-device test accuracy, bytes and rounds
per link) and ``OUT/server_head.pt``. If a device disconnects, times out or breaks the protocol
mid-run, the server writes ``OUT/resume.pt`` (its state after the last completed epoch, with
the configuration it belongs to) and exits with an error that says so; restarting the server
with ``--resume OUT/resume.pt`` and the devices as before trains the remaining epochs.

Threat model: ``docs/threat-models.md`` (row "PGSL / split learning"); the server is the adversary PGSL defends against, so TLS protects
the links from eavesdroppers, not the activations from the server; the sealed hand-off keeps
the device half's weights from the server (which could otherwise invert the activations
through them), not the activations themselves.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import ssl
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from medshield.data import DataError, load_dataset
from medshield.split.device import SplitDevice
from medshield.split.handoff import HandoffSeal
from medshield.split.protocol import ClassifierHead, SplitHistory
from medshield.split.runner import device_tcp, serve_tcp
from medshield.split.server import SplitInterrupted, SplitServer
from medshield.training.checkpoint import CheckpointError, load_safe, save_atomic
from medshield.transport import TcpListener
from medshield.transport.tls import client_context, server_context

__all__ = ["DeployConfig", "run_server", "run_device", "device_shard", "build_halves",
           "tls_contexts", "load_resume", "RESUME_FILE"]

#: What the server writes to its output directory when a run is interrupted.
RESUME_FILE = "resume.pt"

Defence = Literal["none", "pgsl"]


@dataclass(frozen=True)
class DeployConfig:
    """What every party of one deployment agrees on (``run.json``).

    Attributes
    ----------
    defence : ``"none"`` (vanilla split learning) or ``"pgsl"``
    dataset : a registered image dataset (``mnist``, ``breastmnist``, ...)
    data_root : its directory (``None``: ``$MEDSHIELD_DATA``, else embedded data)
    devices : number of devices taking turns
    n_train, n_test : training and test images, split evenly over the devices
    epochs, batch_size, lr : training (Adam on both sides)
    width, hidden : PGSL's CNN (7 conv of ``width`` channels, ``hidden`` dense units)
    rpca_iters, mu, max_pixels, surrogate_epochs : PGSL's recovery and device-side attack
    seed : initial weights and the data split
    """

    defence: Defence = "pgsl"
    dataset: str = "mnist"
    data_root: str | None = None
    devices: int = 2
    n_train: int = 2000
    n_test: int = 400
    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    width: int = 32
    hidden: int = 64
    rpca_iters: int = 20
    mu: float = 0.55
    max_pixels: int = 10
    surrogate_epochs: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.defence not in ("none", "pgsl"):
            raise ValueError(f"defence must be 'none' or 'pgsl', got {self.defence!r}")
        for name in ("devices", "n_train", "n_test", "epochs", "batch_size", "width",
                     "hidden", "rpca_iters", "surrogate_epochs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.n_train < self.devices or self.n_test < self.devices:
            raise ValueError(f"n_train ({self.n_train}) and n_test ({self.n_test}) must be at "
                             f"least the number of devices ({self.devices})")

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> DeployConfig:
        """Read ``run.json``; unknown keys and bad values give a clear :class:`ValueError`."""
        try:
            raw = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"no deployment config at {path}; write one with "
                             "DeployConfig(...).save(path) or 'medshield split local'") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path} must hold a JSON object of DeployConfig fields")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{path}: unknown field(s) {unknown}; valid: {sorted(known)}")
        return cls(**raw)


def build_halves(cfg: DeployConfig, image_shape: tuple[int, int, int],
                 num_classes: int) -> tuple[nn.Module, nn.Module]:
    """``(device_half, server_head)`` of the deployment's network, seeded by ``cfg.seed``
    (both parties build the same weights; each keeps only its half)."""
    from medshield.defenses.pgsl import pgsl_network

    c, h, w = image_shape
    if h != w:
        raise ValueError(f"PGSL's network needs square images, got {h}x{w}")
    device_half, head = pgsl_network(num_classes=num_classes, image_channels=c, image_size=h,
                                     width=cfg.width, hidden=cfg.hidden, seed=cfg.seed,
                                     rpca_iters=cfg.rpca_iters, mu=cfg.mu)
    if cfg.defence == "pgsl":
        return device_half, head
    return device_half, ClassifierHead(copy.deepcopy(head.streams["f"]))


def device_shard(cfg: DeployConfig, rank: int) -> tuple[Tensor, Tensor, Tensor, Tensor, int]:
    """Device ``rank``'s raw images: ``(x_train, y_train, x_test, y_test, num_classes)``.

    A seeded permutation of the dataset's training (and test) split, cut into
    ``cfg.devices`` near-equal shards: every device computes the same split without talking.
    """
    if not 0 <= rank < cfg.devices:
        raise ValueError(f"rank must be in 0..{cfg.devices - 1}, got {rank}")
    data = load_dataset(cfg.dataset, root=cfg.data_root, seed=cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    tr = rng.permutation(len(data.train))[: cfg.n_train]
    te = rng.permutation(len(data.test))[: cfg.n_test]
    mine_tr = np.array_split(tr, cfg.devices)[rank]
    mine_te = np.array_split(te, cfg.devices)[rank]

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return (t(data.train.x[mine_tr]).float(), t(data.train.y[mine_tr]).long(),
            t(data.test.x[mine_te]).float(), t(data.test.y[mine_te]).long(),
            data.info.num_classes)


def _device_inputs(cfg: DeployConfig, x_train: Tensor, y_train: Tensor, x_test: Tensor,
                   num_classes: int) -> tuple[Tensor, Tensor]:
    """The device's one-off pre-processing: PGSL's pixel attack, saliency map and
    down-sampling (with its own surrogate, trained on its shard), or the clean down-sampling."""
    from medshield.defenses.pgsl import PGSLTransform, downsample
    from medshield.defenses.pgsl.saliency import fit_surrogate

    if cfg.defence == "none":
        return (downsample(x_train, torch.zeros_like(x_train[:, :1])),
                downsample(x_test, torch.zeros_like(x_test[:, :1])))
    surrogate = fit_surrogate(x_train, y_train, num_classes=num_classes,
                              epochs=cfg.surrogate_epochs, batch_size=cfg.batch_size,
                              seed=cfg.seed)
    transform = PGSLTransform(surrogate, max_pixels=cfg.max_pixels)

    def attack(x: Tensor) -> Tensor:  # no label, as at inference
        return torch.cat([transform(part, None) for part in x.split(256)])

    return attack(x_train), attack(x_test)


def tls_contexts(ca: str | Path | None, cert: str | Path | None, key: str | Path | None, *,
                 server: bool) -> ssl.SSLContext | None:
    """Mutual-TLS context of a party, or ``None`` for plain TCP (all three paths, or none)."""
    given = [p is not None for p in (ca, cert, key)]
    if not any(given):
        return None
    if not all(given):
        raise ValueError("TLS needs all of --ca, --cert and --key (or none of them for plain "
                         "TCP on a trusted network)")
    if server:
        return server_context(cert, key, ca=ca, require_client_cert=True)  # type: ignore[arg-type]
    return client_context(ca, cert=cert, key=key)  # type: ignore[arg-type]


def load_resume(path: str | Path, cfg: DeployConfig) -> dict[str, Any]:
    """The server checkpoint at ``path`` (a ``resume.pt`` written by :func:`run_server`),
    checked to belong to the run configured by ``cfg``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no checkpoint at {path}; --resume takes the resume.pt that an "
                         "interrupted `medshield split serve` wrote to its --out directory")
    try:
        saved = load_safe(path)
    except CheckpointError as exc:
        raise ValueError(f"{path} is not a readable split-learning checkpoint: {exc}") from None
    if not isinstance(saved, dict) or "server" not in saved or "config" not in saved:
        raise ValueError(f"{path} is not a split-learning checkpoint written by "
                         "`medshield split serve`")
    now = asdict(cfg)
    # more (or as many) epochs may be asked for; anything else must be the interrupted run's
    changed = sorted(k for k in set(saved["config"]) | set(now)
                     if k != "epochs" and saved["config"].get(k) != now.get(k))
    if changed:
        raise ValueError(f"{path} belongs to another run configuration (differs in "
                         f"{', '.join(changed)}); resume with the run.json of the interrupted "
                         "run")
    return saved["server"]  # type: ignore[no-any-return]


def run_server(cfg: DeployConfig, listener: TcpListener, out: str | Path, *,
               accept_timeout: float | None = 120.0, timeout: float | None = 120.0,
               device: str | None = None, resume: str | Path | None = None,
               config_path: str | Path = "RUN.json") -> SplitHistory:
    """Serve one deployment on ``listener``: wait for ``cfg.devices`` devices, train, ask each
    to evaluate its test shard, write ``OUT/history.json`` and ``OUT/server_head.pt``.

    If a device's link fails mid-run, write ``OUT/resume.pt`` (the state after the last
    completed epoch) and raise :class:`~medshield.split.server.SplitInterrupted` saying so;
    ``resume`` (that file) continues such a run; ``config_path`` names the run's ``run.json``
    in that error's advice."""
    try:
        info = load_dataset(cfg.dataset, root=cfg.data_root, seed=cfg.seed).info
    except DataError as exc:
        raise ValueError(f"the server cannot size the network: {exc}") from None
    if len(info.shape) != 3:
        raise ValueError(f"split learning here needs an image dataset, and {cfg.dataset!r} "
                         f"has samples of shape {info.shape}")
    _, head = build_halves(cfg, info.shape, info.num_classes)  # type: ignore[arg-type]
    server = SplitServer(head, optimizer="adam", lr=cfg.lr, device=device)
    checkpoint = None if resume is None else load_resume(resume, cfg)
    out = Path(out)
    try:
        history = serve_tcp(server, listener, devices=cfg.devices, epochs=cfg.epochs,
                            accept_timeout=accept_timeout, timeout=timeout, resume=checkpoint)
    except SplitInterrupted as exc:
        path = save_atomic({"config": asdict(cfg), "server": exc.checkpoint}, out / RESUME_FILE)
        done = exc.checkpoint["epochs_done"]
        raise SplitInterrupted(
            f"{exc} in {path} ({done} of {cfg.epochs} epochs). Restart the server with "
            f"`medshield split serve --config {config_path} --resume {path}` and the devices "
            "as before to train the rest", rank=exc.rank, epoch=exc.epoch,
            checkpoint=exc.checkpoint) from exc.__cause__
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"config": asdict(cfg), **history.as_dict(),
                               "bytes_total": history.bytes_total(),
                               "rounds_total": history.rounds_total(),
                               "tls": listener.ssl_context is not None,
                               "resumed_from_epoch": (None if checkpoint is None
                                                      else checkpoint["epochs_done"])}
    (out / "history.json").write_text(json.dumps(summary, indent=2))
    if not history.sealed_handoff:
        torch.save(history.device_state, out / "device_half.pt")
    torch.save(server.head.state_dict(), out / "server_head.pt")
    (out / RESUME_FILE).unlink(missing_ok=True)  # the run it would resume is complete
    return history


def run_device(cfg: DeployConfig, rank: int, host: str, port: int, *,
               ssl_context: ssl.SSLContext | None = None, timeout: float | None = 120.0,
               turn_timeout: float | None = 3600.0, device: str | None = None,
               handoff_seal: HandoffSeal | None = None) -> dict[str, Any]:
    """Device ``rank``: pre-process its shard, connect to the server, train its turns, and
    evaluate its test shard when asked. Returns its report as a dict.

    ``handoff_seal`` (the devices' shared :class:`~medshield.split.handoff.HandoffSeal`):
    the device half then passes through the server encrypted."""
    x_tr, y_tr, x_te, y_te, k = device_shard(cfg, rank)
    t_tr, t_te = _device_inputs(cfg, x_tr, y_tr, x_te, k)
    device_half, _ = build_halves(cfg, tuple(x_tr.shape[1:]), k)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(cfg.seed + 1000 + rank)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(t_tr, y_tr),
                                         batch_size=cfg.batch_size, shuffle=True, generator=g)
    test = list(zip(t_te.split(256), y_te.split(256), strict=True))
    party = SplitDevice(device_half, loader, eval_data=test, optimizer="adam", lr=cfg.lr,
                        device=device, handoff_seal=handoff_seal)
    report = device_tcp(party, host, port, rank=rank, ssl_context=ssl_context,
                        connect_timeout=30.0, timeout=timeout, turn_timeout=turn_timeout)
    return report.as_dict()
