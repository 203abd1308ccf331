"""What an honest-but-curious coordinator recovers from ObfNet-obfuscated samples.

Zheng et al. 2019 (section 3.2) argue that because an ObfNet uses many-to-one activations
(ReLU), "the coordinator cannot estimate the exact original data samples", and that with
more ObfNets "the less likely the coordinator can figure out which ObfNet is used". Neither
claim is measured in the paper; this module measures both.

Threat model (docs/threat-models.md, ObfNet row; :data:`OBFNET_COORDINATOR`): the adversary
is the coordinator, honest but curious. It *observes* the obfuscated samples that arrive.
It *knows* the weights of every ObfNet (it trained and released them), the inference model,
and public data from the same distribution (e.g. its own training set). It does *not* know
which ObfNet a sample went through, nor the participant's raw samples. It wants the raw
form of the sample (not its label: it learns the label anyway).

Three attacks, all inside that model:

* **identification** (:class:`ObfNetIdentifier`): a classifier over the K ObfNets, trained on
  public images passed through each of them; chance is 1/K.
* **learned inversion** (``method="decoder"``): a decoder trained on ``(O_k(x), x)`` pairs
  of public images, with ``k`` drawn at random as the participant does (He et al., ACSAC
  2019, inverse network). An ObfNet mixes every pixel with every other, so the decoder is
  dense (:class:`DenseInverse`) rather than convolutional.
* **white-box inversion** (``method="optimize"``, and ``"hybrid"`` = decoder then optimise):
  with the ObfNet's weights known, solve ``min_x ||O_k(x) - y||^2`` over ``x in [0, 1]``
  (``x = sigmoid(z)``, Adam), where ``k`` is the identifier's guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import Knowledge, Observation, ThreatModel
from medshield.attacks.registry import ATTACKS
from medshield.runtime import get_device

__all__ = [
    "OBFNET_COORDINATOR",
    "ObfNetKnowledge",
    "ObfNetIdentifier",
    "DenseInverse",
    "ObfNetInversion",
    "mixture_query",
    "mean_image_baseline",
]

Method = Literal["decoder", "optimize", "hybrid"]


@dataclass
class ObfNetKnowledge(Knowledge):
    """What the coordinator holds: :class:`Knowledge` plus the released ObfNets.

    Attributes
    ----------
    obfnets : the K ObfNets (each maps ``(N, C, H, W)`` to the same shape), weights known
    aux_images : ``(M, C, H, W)`` public images in ``[0, 1]`` (never the participant's)
    model : the inference model (known; not needed by these attacks)
    """

    obfnets: list[nn.Module] | None = None


OBFNET_COORDINATOR = ThreatModel(
    name="obfnet-coordinator",
    adversary="the coordinator, honest but curious (it trained and released the ObfNets)",
    observes=frozenset({"activations"}),
    knows=frozenset({"obfnets", "model", "aux_images", "aux_labels", "input_shape"}),
    requires=frozenset({"activations", "obfnets", "aux_images"}),
    secret="the raw form of the participant's sample (not its label)",
    reference="docs/threat-models.md (ObfNet row); Zheng et al., AIChallengeIoT 2019, sec. 3.2",
)


def _apply(net: nn.Module, x: Tensor, batch: int = 512) -> Tensor:
    dev = next(iter(net.parameters()), torch.zeros(0)).device
    with torch.no_grad():
        return torch.cat(
            [net(x[i : i + batch].to(dev)).float().cpu() for i in range(0, len(x), batch)]
        )


def mixture_query(obfnets: list[nn.Module], seed: int = 0) -> Callable[[Tensor], Tensor]:
    """``x -> O_k(x)`` with ``k`` uniform per sample: the attacker's simulation of a participant.

    The attacker's own draws (seeded); it cannot see the participant's choices.
    """
    gen = torch.Generator().manual_seed(seed)

    def query(x: Tensor) -> Tensor:
        k = torch.randint(len(obfnets), (len(x),), generator=gen)
        out = torch.empty_like(x, dtype=torch.float32)
        for j in k.unique().tolist():
            idx = (k == j).nonzero().view(-1)
            out[idx] = _apply(obfnets[j], x[idx])
        return out

    return query


def mean_image_baseline(knowledge: Knowledge, n: int) -> Tensor:
    """The trivial attacker: the mean public image for every sample, ``(n, C, H, W)``.

    It ignores the observation entirely; an attack that does not beat it learned nothing.
    """
    if knowledge.aux_images is None:
        raise ValueError("the mean-image baseline needs public images (aux_images)")
    return (
        knowledge.aux_images.float()
        .mean(0, keepdim=True)
        .expand(n, *knowledge.aux_images.shape[1:])
    )


class DenseInverse(nn.Sequential):
    """The inverse decoder: ``D -> hidden -> hidden -> prod(image_shape)``, ReLU, sigmoid out.

    Input: obfuscated samples, standardised per sample (the ObfNet output's scale is
    arbitrary); output: images ``(N, C, H, W)`` in ``[0, 1]``.
    """

    def __init__(self, features: int, image_shape: tuple[int, ...], hidden: int = 1024) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, int(np.prod(image_shape))),
            nn.Sigmoid(),
            nn.Unflatten(1, tuple(image_shape)),
        )


def _standardise(y: Tensor) -> Tensor:
    f = y.float().flatten(1)
    return (f - f.mean(1, keepdim=True)) / (f.std(1, keepdim=True) + 1e-6)


def _train(
    net: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    device: torch.device,
    seed: int,
) -> list[float]:
    """Plain Adam mini-batch training; returns the mean loss per epoch."""
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    net.train()
    for _ in range(epochs):
        perm = torch.randperm(len(inputs), generator=gen)
        total = 0.0
        for i in range(0, len(inputs), batch_size):
            idx = perm[i : i + batch_size]
            loss = loss_fn(net(inputs[idx].to(device)), targets[idx].to(device))
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        losses.append(total / len(inputs))
    net.eval()
    return losses


class _IdentifierNet(nn.Sequential):
    def __init__(self, features: int, hidden: int, k: int) -> None:
        super().__init__(
            nn.Flatten(),
            nn.Linear(features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, k),
        )


class ObfNetIdentifier:
    """Which of the K ObfNets produced an obfuscated sample? A classifier over K.

    Trained on public images, each passed through every ObfNet (labels = ObfNet index);
    an MLP on the flattened, per-sample-standardised output. Chance level is ``1/K``.

    Parameters
    ----------
    epochs, batch_size, lr
        Adam training of the classifier.
    hidden
        Width of its two hidden layers.
    device
        Where it trains (default: CUDA when present).
    seed
        Seed of its initialisation and batch order.
    """

    threat_model = OBFNET_COORDINATOR

    def __init__(
        self,
        *,
        epochs: int = 5,
        batch_size: int = 128,
        lr: float = 1e-3,
        hidden: int = 256,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.device = device
        self.seed = seed
        self.net: nn.Module | None = None
        self.k = 0
        self.train_loss: list[float] = []

    def fit(self, knowledge: ObfNetKnowledge) -> ObfNetIdentifier:
        """Train on every public image through every ObfNet."""
        self.threat_model.check(Observation(activations=torch.zeros(0)), knowledge)
        assert knowledge.obfnets is not None and knowledge.aux_images is not None
        k = len(knowledge.obfnets)
        aux = knowledge.aux_images.float()
        feats = torch.cat([_standardise(_apply(o, aux)) for o in knowledge.obfnets])
        labels = torch.arange(k).repeat_interleave(len(aux))
        dev = get_device(self.device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = _IdentifierNet(feats.shape[1], self.hidden, max(k, 2)).to(dev)
        self.train_loss = _train(
            net,
            feats,
            labels,
            F.cross_entropy,
            epochs=self.epochs if k > 1 else 0,
            batch_size=self.batch_size,
            lr=self.lr,
            device=dev,
            seed=self.seed,
        )
        self.net = net.eval()
        self.k = k
        return self

    @torch.no_grad()
    def identify(self, observed: Tensor) -> np.ndarray:
        """The guessed ObfNet index per obfuscated sample, ``(N,)`` int64."""
        if self.net is None:
            raise RuntimeError("call fit(knowledge) before identify()")
        if self.k == 1:
            return np.zeros(len(observed), dtype=np.int64)
        dev = next(self.net.parameters()).device
        feats = _standardise(observed)
        out = [
            self.net(feats[i : i + 1024].to(dev)).argmax(1).cpu()
            for i in range(0, len(feats), 1024)
        ]
        return torch.cat(out).numpy().astype(np.int64)


@ATTACKS.register("obfnet-inversion", aliases=("obfnet-attack",))
class ObfNetInversion:
    """Reconstruct raw samples from ObfNet outputs, as the coordinator could.

    Parameters
    ----------
    method
        ``"decoder"`` (learned inverse only), ``"optimize"`` (white-box inversion of the
        identified ObfNet from a grey start) or ``"hybrid"`` (optimise from the decoder's
        reconstruction; the strongest).
    epochs, batch_size, lr, hidden
        Training (Adam, MSE) and width of the inverse decoder (:class:`DenseInverse`).
    steps, step_lr
        Adam steps and step size of the white-box optimisation.
    identify_epochs
        Training epochs of the :class:`ObfNetIdentifier` (used when K > 1).
    device, seed
        Where it runs; seed of every random choice of the attacker.

    Examples
    --------
    >>> import torch
    >>> from medshield.models import ObfNet1
    >>> nets = [ObfNet1(seed=0).eval()]
    >>> know = ObfNetKnowledge(obfnets=nets, aux_images=torch.rand(64, 1, 28, 28))
    >>> obs = Observation(activations=nets[0](torch.rand(2, 1, 28, 28)).detach())
    >>> res = ObfNetInversion(method="decoder", epochs=1, device="cpu").run(obs, know)
    >>> res.reconstruction.shape
    torch.Size([2, 1, 28, 28])
    """

    threat_model = OBFNET_COORDINATOR

    def __init__(
        self,
        *,
        method: Method = "hybrid",
        epochs: int = 10,
        batch_size: int = 64,
        lr: float = 1e-3,
        hidden: int = 1024,
        steps: int = 200,
        step_lr: float = 0.05,
        identify_epochs: int = 5,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        if method not in ("decoder", "optimize", "hybrid"):
            raise ValueError(f"method must be 'decoder', 'optimize' or 'hybrid', got {method!r}")
        self.method = method
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.hidden = hidden
        self.steps = steps
        self.step_lr = step_lr
        self.identify_epochs = identify_epochs
        self.device = device
        self.seed = seed
        self.decoder: DenseInverse | None = None
        self.train_loss: list[float] = []
        self.identifier: ObfNetIdentifier | None = None
        self._obfnets: list[nn.Module] = []

    def __repr__(self) -> str:
        return (
            f"ObfNetInversion(method={self.method!r}, epochs={self.epochs}, "
            f"steps={self.steps}, seed={self.seed})"
        )

    def fit(self, knowledge: ObfNetKnowledge) -> ObfNetInversion:
        """Train the decoder (and, with K > 1, the identifier) on public data only."""
        self.threat_model.check(Observation(activations=torch.zeros(0)), knowledge)
        assert knowledge.obfnets is not None and knowledge.aux_images is not None
        self._obfnets = list(knowledge.obfnets)
        if self.method in ("decoder", "hybrid"):
            aux = knowledge.aux_images.float()
            obf = _standardise(mixture_query(self._obfnets, self.seed)(aux))
            dev = get_device(self.device)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed)
                decoder = DenseInverse(obf.shape[1], tuple(aux.shape[1:]), self.hidden).to(dev)
            self.train_loss = _train(
                decoder,
                obf,
                aux,
                F.mse_loss,
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                device=dev,
                seed=self.seed,
            )
            self.decoder = decoder
        if self.method != "decoder":
            self.identifier = ObfNetIdentifier(
                epochs=self.identify_epochs, device=self.device, seed=self.seed
            ).fit(knowledge)
        return self

    def _optimize(self, y: Tensor, net: nn.Module, start: Tensor) -> tuple[Tensor, Tensor]:
        """``argmin_x ||net(x) - y||^2`` over ``x = sigmoid(z)``: (x, residual per sample)."""
        dev = next(iter(net.parameters()), torch.zeros(0)).device
        flags = [p.requires_grad for p in net.parameters()]
        for p in net.parameters():
            p.requires_grad_(False)
        z = torch.logit(start.clamp(0.02, 0.98)).to(dev).requires_grad_(True)
        target = y.to(dev).float()
        opt = torch.optim.Adam([z], lr=self.step_lr)
        try:
            for _ in range(self.steps):
                loss = (net(torch.sigmoid(z)) - target).pow(2).flatten(1).mean(1).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.no_grad():
                x = torch.sigmoid(z)
                res = (net(x) - target).pow(2).flatten(1).mean(1)
        finally:
            for p, f in zip(net.parameters(), flags, strict=True):
                p.requires_grad_(f)
        return x.detach().cpu(), res.cpu()

    def reconstruct(self, observed: Tensor) -> tuple[Tensor, np.ndarray | None]:
        """Reconstructions ``(N, C, H, W)`` and the identified ObfNet per sample (or ``None``)."""
        if not self._obfnets:
            raise RuntimeError("call fit(knowledge) (or run) before reconstruct()")
        observed = observed.float().cpu()
        if self.decoder is not None:
            dev = next(self.decoder.parameters()).device
            feats = _standardise(observed)
            with torch.no_grad():
                rec = torch.cat(
                    [
                        self.decoder(feats[i : i + 512].to(dev)).cpu()
                        for i in range(0, len(feats), 512)
                    ]
                )
        else:
            rec = torch.full_like(observed, 0.5)
        if self.method == "decoder":
            return rec, None
        assert self.identifier is not None
        which = self.identifier.identify(observed)
        out = rec.clone()
        for j in np.unique(which):
            idx = torch.from_numpy(np.flatnonzero(which == j))
            for i in range(0, len(idx), 256):
                part = idx[i : i + 256]
                out[part], _ = self._optimize(observed[part], self._obfnets[int(j)], rec[part])
        return out, which

    def run(self, observation: Observation, knowledge: ObfNetKnowledge) -> InversionResult:
        """Fit on the public data (unless fitted) and reconstruct ``observation.activations``.

        Score the result against the true images with ``result.score(truth)`` (MSE, PSNR,
        SSIM); the attack itself never sees them.
        """
        self.threat_model.check(observation, knowledge)
        assert observation.activations is not None
        if not self._obfnets:
            self.fit(knowledge)
        rec, which = self.reconstruct(observation.activations)
        return InversionResult(
            reconstruction=rec,
            info={
                "method": self.method,
                "k": len(self._obfnets),
                "decoder_train_mse": self.train_loss[-1] if self.train_loss else None,
                "identified": which,
                "threat_model": self.threat_model.name,
            },
        )
