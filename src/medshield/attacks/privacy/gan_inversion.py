"""Gradient inversion with a DCGAN prior (after Hitaj, Ateniese and Perez-Cruz, CCS 2017).

Hitaj et al. show that a participant of collaborative learning can train a GAN whose samples
reproduce a victim's class. Here the adversary holds public images of the same kind, trains a
DCGAN (Radford, Metz and Chintala, ICLR 2016) on them as an image prior, and then searches
the generator's latent space for the image whose gradient matches the observed one:

.. math:: z^\\star = \\arg\\min_z \\sum_W \\| \\nabla_W \\ell(F(G(z)), c) - \\nabla_W \\|_2^2,
          \\qquad \\hat x = G(z^\\star)

(labels :math:`c` observed, or recovered as in iDLG). The prior keeps the reconstruction on
the image manifold, where DLG's free pixels may wander off.

Threat model: :data:`~medshield.attacks.privacy.threat.GAN_PRIOR`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.attacks.privacy.dlg import gradient_distance
from medshield.attacks.privacy.idlg import last_linear_weight, recover_labels
from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import (
    GAN_PRIOR,
    Knowledge,
    Observation,
    ThreatModelError,
    model_device,
)
from medshield.attacks.registry import ATTACKS
from medshield.models.base import eval_mode
from medshield.runtime import get_device

__all__ = ["GANInversion", "DCGANGenerator", "DCGANDiscriminator", "train_dcgan"]


class DCGANGenerator(nn.Module):
    """DCGAN generator ``z (N, z_dim) -> images (N, C, H, W)`` in ``[0, 1]``; ``H = W``, 4 | H.

    linear -> BN -> ReLU -> (2w, H/4, W/4) -> convT 4x4/2 -> BN -> ReLU -> convT 4x4/2 -> sigmoid.
    """

    def __init__(self, z_dim: int, image_shape: tuple[int, int, int], width: int = 32) -> None:
        super().__init__()
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(
                f"the DCGAN prior needs image sides divisible by 4, got {h}x{w}; resize or pad "
                "the images (28x28 works)"
            )
        self.z_dim = z_dim
        self.net = nn.Sequential(
            nn.Linear(z_dim, 2 * width * (h // 4) * (w // 4)),
            nn.BatchNorm1d(2 * width * (h // 4) * (w // 4)),
            nn.ReLU(),
            nn.Unflatten(1, (2 * width, h // 4, w // 4)),
            nn.ConvTranspose2d(2 * width, width, 4, 2, 1),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.ConvTranspose2d(width, c, 4, 2, 1),
            nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)  # type: ignore[no-any-return]


class DCGANDiscriminator(nn.Module):
    """DCGAN discriminator ``images (N, C, H, W) -> logits (N,)``."""

    def __init__(self, image_shape: tuple[int, int, int], width: int = 32) -> None:
        super().__init__()
        c, h, w = image_shape
        self.net = nn.Sequential(
            nn.Conv2d(c, width, 4, 2, 1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(width, 2 * width, 4, 2, 1),
            nn.BatchNorm2d(2 * width),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).view(-1)  # type: ignore[no-any-return]


def train_dcgan(
    images: Tensor,
    *,
    z_dim: int = 32,
    width: int = 32,
    epochs: int = 5,
    batch_size: int = 64,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
) -> tuple[DCGANGenerator, list[float]]:
    """Train a DCGAN on ``images`` ``(M, C, H, W)`` in [0, 1]; return the generator (eval mode).

    Non-saturating GAN loss, Adam with betas 0.5/0.999 as in Radford et al.; the default ``lr``
    is 1e-3 rather than their 2e-4, which converges in the few epochs a CPU run affords on
    28x28 images (2e-4 gives the same result with about twice the epochs). Also returns the
    generator loss per epoch.
    """
    dev = get_device(device)
    shape = tuple(images.shape[1:])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gen_net = DCGANGenerator(z_dim, shape, width).to(dev)  # type: ignore[arg-type]
        disc = DCGANDiscriminator(shape, width).to(dev)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(seed)
    opt_g = torch.optim.Adam(gen_net.parameters(), lr=lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr, betas=(0.5, 0.999))
    losses: list[float] = []
    for _ in range(epochs):
        perm = torch.randperm(len(images), generator=g)
        total, count = 0.0, 0
        for i in range(0, len(images) - 1, batch_size):
            real = images[perm[i : i + batch_size]].float().to(dev)
            n = real.shape[0]
            if n < 2:
                continue
            z = torch.randn(n, z_dim, generator=g).to(dev)
            fake = gen_net(z)
            d_loss = F.binary_cross_entropy_with_logits(
                disc(real), torch.ones(n, device=dev)
            ) + F.binary_cross_entropy_with_logits(disc(fake.detach()), torch.zeros(n, device=dev))
            opt_d.zero_grad()
            d_loss.backward()
            opt_d.step()
            g_loss = F.binary_cross_entropy_with_logits(disc(fake), torch.ones(n, device=dev))
            opt_g.zero_grad()
            g_loss.backward()
            opt_g.step()
            total += float(g_loss.detach()) * n
            count += n
        losses.append(total / max(count, 1))
    return gen_net.eval(), losses


@ATTACKS.register("gan-inversion", aliases=("dcgan", "gan-prior"))
class GANInversion:
    """Search a DCGAN's latent space for the image that reproduces the observed gradients.

    Parameters
    ----------
    batch_size
        Images in the attacked batch.
    z_dim, width, gan_epochs, gan_batch_size, gan_lr
        The DCGAN prior and its training on the auxiliary images.
    candidates
        Latent codes drawn at random; the ``restarts`` with the smallest gradient distance
        are optimised.
    restarts
        Latent codes optimised per image batch; the best is kept.
    iterations, lr
        Adam steps and step size in latent space.
    device
        Where the GAN trains (default: CUDA when present).
    seed
        Seed of the GAN training and the latent draws.
    """

    threat_model = GAN_PRIOR

    def __init__(
        self,
        *,
        batch_size: int = 1,
        z_dim: int = 32,
        width: int = 32,
        gan_epochs: int = 5,
        gan_batch_size: int = 64,
        gan_lr: float = 1e-3,
        candidates: int = 64,
        restarts: int = 2,
        iterations: int = 200,
        lr: float = 0.05,
        device: str | torch.device | None = None,
        seed: int = 0,
    ) -> None:
        if min(batch_size, candidates, restarts, iterations) < 1:
            raise ValueError("batch_size, candidates, restarts and iterations must be >= 1")
        self.batch_size = batch_size
        self.z_dim = z_dim
        self.width = width
        self.gan_epochs = gan_epochs
        self.gan_batch_size = gan_batch_size
        self.gan_lr = gan_lr
        self.candidates = candidates
        self.restarts = min(restarts, candidates)
        self.iterations = iterations
        self.lr = lr
        self.device = device
        self.seed = seed
        self.generator: DCGANGenerator | None = None
        self.gan_loss: list[float] = []

    def __repr__(self) -> str:
        return (
            f"GANInversion(batch_size={self.batch_size}, z_dim={self.z_dim}, "
            f"gan_epochs={self.gan_epochs}, iterations={self.iterations}, seed={self.seed})"
        )

    def fit_prior(self, knowledge: Knowledge) -> DCGANGenerator:
        """Train the DCGAN prior on ``knowledge.aux_images``."""
        if knowledge.aux_images is None:
            raise ThreatModelError("the GAN prior needs Knowledge.aux_images (public images)")
        self.generator, self.gan_loss = train_dcgan(
            knowledge.aux_images,
            z_dim=self.z_dim,
            width=self.width,
            epochs=self.gan_epochs,
            batch_size=self.gan_batch_size,
            lr=self.gan_lr,
            device=self.device,
            seed=self.seed,
        )
        return self.generator

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Reconstruct the batch behind ``observation.gradients`` through the GAN prior."""
        self.threat_model.check(observation, knowledge)
        model = knowledge.model
        assert model is not None and observation.gradients is not None
        if self.generator is None:
            self.fit_prior(knowledge)
        assert self.generator is not None
        dev = model_device(model)
        gen_net = self.generator.to(dev).eval()
        grads = {n: g.detach().to(dev) for n, g in observation.gradients.items()}
        if observation.labels is not None:
            labels = observation.labels.to(dev)
        else:
            try:
                name = last_linear_weight(model, among=grads)
            except ValueError:
                raise ThreatModelError(
                    "without observed labels the attack reads them off the gradient of the "
                    "last linear layer, which is not among the observed gradients"
                ) from None
            labels = recover_labels(grads[name], self.batch_size).to(dev)
        g = torch.Generator().manual_seed(self.seed + 1)
        with eval_mode(model):
            return self._search(model, gen_net, grads, labels, g)

    def _search(
        self,
        model: nn.Module,
        gen_net: DCGANGenerator,
        grads: dict[str, Tensor],
        labels: Tensor,
        g: torch.Generator,
    ) -> InversionResult:
        dev = labels.device
        n = self.batch_size
        # rank random candidates (whole batches of n codes) by their gradient distance
        cands = torch.randn(self.candidates, n, self.z_dim, generator=g).to(dev)
        scores = []
        for z in cands:
            with torch.enable_grad():
                scores.append(
                    float(gradient_distance(model, gen_net(z), labels, grads, soft=False).detach())
                )
        starts = cands[torch.tensor(scores).argsort()[: self.restarts]]
        best: tuple[float, Tensor] = (math.inf, gen_net(starts[0]).detach())
        for z0 in starts:
            z = z0.clone().requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.lr)
            for _ in range(self.iterations):
                loss = gradient_distance(model, gen_net(z), labels, grads, soft=False)
                opt.zero_grad()
                loss.backward()
                opt.step()
            with torch.enable_grad():
                final = float(
                    gradient_distance(model, gen_net(z), labels, grads, soft=False).detach()
                )
            if final < best[0]:
                best = (final, gen_net(z).detach())
        return InversionResult(
            reconstruction=best[1].cpu(),
            labels=labels.cpu(),
            info={
                "gradient_distance": best[0],
                "threat_model": self.threat_model.name,
                "gan_loss": self.gan_loss[-1] if self.gan_loss else None,
            },
        )
