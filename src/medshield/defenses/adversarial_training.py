"""Adversarial training: FGSM-AT (Goodfellow et al. 2015; Yenumala et al.) and PGD-AT (Madry et al. 2018).

Both train the given model with :func:`medshield.training.fit` through its ``batch_loss``
hook: each training batch is replaced by adversarial examples of itself (optionally mixed
with the clean batch), so the loop, the optimiser options, checkpoints and progress are
those of every other training run in medshield.

Threat model: the training is meant to resist a white-box, test-time evasion attacker who
knows the weights and the defence (``docs/threat-models.md``). FGSM-AT at a tiny budget
mainly teaches the model to resist FGSM itself; only PGD-AT targets the strongest
first-order attacker of its budget (Madry et al., section 2). Evaluate both with PGD and
C&W, not only with FGSM.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from medshield.attacks import FGSM, PGD, EvasionAttack
from medshield.defenses.base import (
    DEFENSES,
    check_unit,
    classification_loss,
    loader_batch_size,
    preserve_modes,
)
from medshield.runtime import get_device
from medshield.training import History, fit
from medshield.training.trainer import OptimizerSpec

__all__ = ["AdversarialTraining", "FGSMAdversarialTraining", "PGDAdversarialTraining"]


class AdversarialTraining:
    r"""Train a model on adversarial examples of its training data (base class).

    Each step minimises (Goodfellow et al. 2015, eq. 7, with :math:`\alpha` = ``clean_weight``)

    .. math:: \tilde J(\theta, x, y) = \alpha\,J(\theta, x, y)
              + (1 - \alpha)\,J(\theta, x_{adv}, y)

    where :math:`x_{adv}` is made by :meth:`make_attack` and ``J`` is the cross-entropy.
    ``clean_weight=0`` trains on adversarial examples only (Madry et al.'s min-max and the
    robust-medical-imaging paper's "further training on adversarially perturbed data").

    ``regenerate`` chooses against which weights :math:`x_{adv}` is made:

    * ``True`` (online): every batch is attacked against the current weights, so the
      examples follow the model as it learns (Goodfellow et al.; Madry et al.);
    * ``False`` (static): the whole training set is perturbed once, against the model as
      given, and the model is then trained on that fixed perturbed set, the literal reading
      of Yenumala et al. ("further training the transfer learning CNNs on adversarially
      perturbed data").

    Subclasses implement :meth:`make_attack`. Calling the defence trains the model in place
    and returns it, with every submodule's train/eval flag as it was; the training
    :class:`~medshield.training.History` is kept in ``history_``.

    Parameters
    ----------
    epochs
        Training epochs on the adversarial data.
    lr
        Learning rate of optimisers built by name.
    optimizer
        ``"adam"`` (the paper's), ``"sgd"``, ``"adamw"`` or a factory (see :func:`fit`).
    clean_weight
        :math:`\alpha` above, in ``[0, 1]`` (``1`` would be plain training and is refused).
    regenerate
        Online (``True``) or static (``False``) adversarial examples.
    seed
        Seeds the data order and, per batch, the attack's random start.
    progress
        Show rich progress bars.
    """

    def __init__(
        self,
        *,
        epochs: int = 5,
        lr: float = 1e-3,
        optimizer: OptimizerSpec = "adam",
        clean_weight: float = 0.0,
        regenerate: bool = True,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        check_unit("clean_weight", clean_weight)
        if clean_weight >= 1.0:
            raise ValueError("clean_weight=1 trains on clean data only; use medshield.training.fit")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.clean_weight = clean_weight
        self.regenerate = regenerate
        self.seed = seed
        self.progress = progress
        self.history_: History | None = None

    # ------------------------------------------------------------------ to override
    def make_attack(self, model: nn.Module) -> EvasionAttack:
        """The attack that makes the training examples (on ``model``'s device)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ public API
    def __call__(
        self,
        model: nn.Module,
        train_loader: Iterable[Any],
        *,
        device: str | torch.device | None = None,
        val_loader: Iterable[Any] | None = None,
    ) -> nn.Module:
        """Adversarially train ``model`` on ``train_loader``'s ``(x, y)`` batches; return it.

        ``x`` must lie in ``[0, 1]`` (the model normalises internally), ``(N, C, H, W)``;
        ``y`` holds class indices ``(N,)``. ``val_loader`` (clean data) is evaluated after
        every epoch.
        """
        dev = get_device(device)
        model.to(dev)
        with preserve_modes(model):
            if self.regenerate:
                loader: Iterable[Any] = train_loader
            else:
                loader = self._static_loader(model, train_loader, dev)
            self.history_ = fit(
                model,
                loader,
                epochs=self.epochs,
                lr=self.lr,
                optimizer=self.optimizer,
                device=dev,
                val_loader=val_loader,
                seed=self.seed,
                progress=self.progress,
                batch_loss=self._batch_loss(model),
            )
            self.history_.meta["defense"] = repr(self)
        return model

    def __repr__(self) -> str:
        items = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in items.items())})"

    # ------------------------------------------------------------------ internals
    def _batch_loss(self, model: nn.Module) -> Any:
        attack = self.make_attack(model)
        step = [0]

        def loss(net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
            if self.regenerate:
                attack.seed = self.seed * 1_000_003 + step[0]  # a fresh random start per batch
                step[0] += 1
                x_clean, x_adv = x, attack(x, y)
            else:
                x_clean, x_adv = x[:, 0], x[:, 1]  # the static loader pairs them
            out = net(x_adv)
            value = classification_loss(out, y)
            if self.clean_weight > 0:
                value = (1 - self.clean_weight) * value + self.clean_weight * classification_loss(
                    net(x_clean), y
                )
            return value, out

        return loss

    def _static_loader(
        self, model: nn.Module, train_loader: Iterable[Any], dev: torch.device
    ) -> DataLoader[tuple[Tensor, ...]]:
        """The training set and its adversarial examples against the model as given, paired
        as ``x[:, 0]`` (clean) and ``x[:, 1]`` (adversarial), reshuffled every epoch."""
        attack = self.make_attack(model)
        xs, ys = [], []
        for i, batch in enumerate(train_loader):
            x, y = (batch["x"], batch["y"]) if isinstance(batch, dict) else (batch[0], batch[1])
            y = y.view(-1) if y.dim() == 2 and y.shape[1] == 1 else y
            attack.seed = self.seed * 1_000_003 + i
            x_adv = attack(x.to(dev), y.to(dev)).to(x.device)
            xs.append(torch.stack([x, x_adv], dim=1))
            ys.append(y)
        if not xs:
            raise ValueError("train_loader yielded no batches; nothing to train on")
        data = TensorDataset(torch.cat(xs), torch.cat(ys))
        gen = torch.Generator().manual_seed(self.seed)
        return DataLoader(data, batch_size=loader_batch_size(train_loader), shuffle=True,
                          generator=gen)


@DEFENSES.register("fgsm-at", aliases=("adversarial-training", "at"))
class FGSMAdversarialTraining(AdversarialTraining):
    r"""FGSM adversarial training, as in Yenumala et al. (section III, defences).

    The paper makes "weaker adversarial samples" with FGSM at :math:`\epsilon = 0.001`
    (eq. 1) and further trains the already-trained CNN on them; its defaults are kept here:
    ``eps=0.001``, adversarial examples only (``clean_weight=0``), made once against the
    trained model (``regenerate=False``). The paper does not give the number of further
    epochs or the learning rate; ``epochs=5`` and Adam at ``1e-3`` (Keras' default) repeat
    its training settings. ``clean_weight=0.5, regenerate=True`` is Goodfellow et al.'s
    original scheme (ICLR 2015, eq. 7).

    FGSM-AT is known to teach single-step robustness that a multi-step attack breaks
    (Tramèr et al., ICLR 2018; "catastrophic overfitting", Wong et al., ICLR 2020): judge it
    with PGD and C&W.

    Parameters
    ----------
    eps
        L-inf budget of the training examples (images in ``[0, 1]``).
    **options
        See :class:`AdversarialTraining` (``epochs``, ``lr``, ``optimizer``,
        ``clean_weight``, ``regenerate``, ``seed``, ``progress``).

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> data = DataLoader(TensorDataset(torch.rand(8, 1, 2, 2), torch.tensor([0, 1] * 4)), batch_size=4)
    >>> FGSMAdversarialTraining(eps=0.01, epochs=1)(model, data) is model
    True
    """

    def __init__(
        self,
        *,
        eps: float = 0.001,
        epochs: int = 5,
        lr: float = 1e-3,
        optimizer: OptimizerSpec = "adam",
        clean_weight: float = 0.0,
        regenerate: bool = False,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if eps < 0:
            raise ValueError(f"eps must be >= 0, got {eps}")
        self.eps = eps
        super().__init__(epochs=epochs, lr=lr, optimizer=optimizer, clean_weight=clean_weight,
                         regenerate=regenerate, seed=seed, progress=progress)

    def make_attack(self, model: nn.Module) -> EvasionAttack:
        return FGSM(model, eps=self.eps)


@DEFENSES.register("pgd-at", aliases=("madry", "pgd-adversarial-training"))
class PGDAdversarialTraining(AdversarialTraining):
    r"""PGD adversarial training (Madry et al., "Towards deep learning models resistant to
    adversarial attacks", ICLR 2018, eq. 2.1).

    Solves :math:`\min_\theta \mathbb{E}\,\max_{\|\delta\|_\infty \le \epsilon}
    J(\theta, x + \delta, y)` approximately: the inner maximum is ``steps`` PGD steps of
    size ``alpha`` from a uniform random start in the ball, made against the current weights
    for every batch (``regenerate=True``). Madry et al. use ``eps=8/255``, ``alpha=2/255``,
    7 steps on CIFAR-10 and ``eps=0.3``, ``alpha=0.01``, 40 steps on MNIST. Each step costs
    ``steps + 1`` forward/backward passes instead of one.

    Parameters
    ----------
    eps, alpha, steps, random_start
        The PGD attack of the inner maximum (see :class:`medshield.attacks.PGD`).
    **options
        See :class:`AdversarialTraining`.
    """

    def __init__(
        self,
        *,
        eps: float = 8 / 255,
        alpha: float = 2 / 255,
        steps: int = 7,
        random_start: bool = True,
        epochs: int = 5,
        lr: float = 1e-3,
        optimizer: OptimizerSpec = "adam",
        clean_weight: float = 0.0,
        regenerate: bool = True,
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        if eps < 0 or alpha <= 0 or steps < 1:
            raise ValueError(f"need eps >= 0, alpha > 0, steps >= 1; got {eps}, {alpha}, {steps}")
        self.eps = eps
        self.alpha = alpha
        self.steps = steps
        self.random_start = random_start
        super().__init__(epochs=epochs, lr=lr, optimizer=optimizer, clean_weight=clean_weight,
                         regenerate=regenerate, seed=seed, progress=progress)

    def make_attack(self, model: nn.Module) -> EvasionAttack:
        return PGD(model, eps=self.eps, alpha=self.alpha, steps=self.steps,
                   random_start=self.random_start, seed=self.seed)
