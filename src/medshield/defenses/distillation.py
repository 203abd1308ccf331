"""Knowledge distillation of a teacher into a smaller student (Hinton et al. 2015) as a
defence (Papernot et al. 2016; Yenumala et al.).

Threat model: the student is meant to resist a white-box, test-time evasion attacker
(``docs/threat-models.md``). Distillation at a high temperature makes the student's softmax
saturate at temperature 1, which shrinks the gradients of the cross-entropy that FGSM and
PGD follow without moving the decision boundary: Carlini and Wagner (2016, "Defensive
distillation is not robust to adversarial examples") break it by attacking the logits. A
flat FGSM curve of a distilled model is therefore evidence of gradient masking until an
attack on the logits (C&W, PGD on the margin loss) says otherwise.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from medshield.defenses.base import DEFENSES, check_unit, preserve_modes, two_logits
from medshield.models import MODELS
from medshield.runtime import get_device
from medshield.training import History, fit
from medshield.training.trainer import OptimizerSpec

__all__ = ["Distillation", "kd_loss"]


def kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    y: Tensor | None = None,
    *,
    temperature: float = 10.0,
    alpha: float = 0.9,
) -> Tensor:
    r"""Hinton et al.'s distillation loss, averaged over the batch.

    .. math:: L = \alpha\,T^2\,\mathrm{KL}\big(\sigma(t / T)\,\|\,\sigma(s / T)\big)
              + (1 - \alpha)\,\mathrm{CE}(\sigma(s), y)

    with :math:`\sigma` the softmax, ``s`` the student's and ``t`` the teacher's logits and
    :math:`\mathrm{KL}(p \| q) = \sum_k p_k (\log p_k - \log q_k)`. The :math:`T^2` factor
    keeps the soft term's gradients on the scale of the hard term's (Hinton et al. 2015,
    section 2). ``alpha=1`` is pure distillation on soft labels (Papernot et al. 2016).

    Parameters
    ----------
    student_logits, teacher_logits
        ``(N, K)`` logits (a single logit ``(N,)``/``(N, 1)`` is a binary model, read as
        ``[0, z]``).
    y
        True labels ``(N,)``; needed unless ``alpha == 1``.
    temperature
        ``T > 0``.
    alpha
        Weight of the soft (teacher) term, in ``[0, 1]``.

    Returns
    -------
    Tensor : the scalar loss.
    """
    check_unit("alpha", alpha)
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    s, t = two_logits(student_logits), two_logits(teacher_logits).detach()
    if s.shape != t.shape:
        raise ValueError(
            f"student logits {tuple(s.shape)} and teacher logits {tuple(t.shape)} differ; the "
            "student needs as many classes as the teacher (num_classes=)"
        )
    log_q = F.log_softmax(s / temperature, dim=1)
    log_p = F.log_softmax(t / temperature, dim=1)
    soft = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True) * temperature**2
    if alpha == 1.0:
        return alpha * soft
    if y is None:
        raise ValueError("kd_loss needs the true labels y unless alpha == 1")
    return alpha * soft + (1 - alpha) * F.cross_entropy(s, y.long())


@DEFENSES.register("distillation", aliases=("kd", "knowledge-distillation",
                                            "defensive-distillation"))
class Distillation:
    r"""Distil a trained teacher into a (smaller) student with :func:`kd_loss`.

    Yenumala et al. (section III, defences) distil their DenseNet121 teachers into "a new,
    smaller custom model" trained "with a Kullback-Leibler Divergence loss" on the
    teacher's class probabilities of the training data. They give neither the temperature
    nor the loss mix; the defaults ``temperature=10, alpha=0.9`` are those of Keras'
    distillation example (soft weight 0.9, hard weight 0.1), which a Keras study most
    likely followed. Papernot et al.'s defensive distillation also trains the *teacher* at
    temperature ``T``; here the teacher is the given, already-trained model (as in the
    paper) and is never modified. The student is deployed at temperature 1 (it returns
    plain logits).

    Calling the defence trains a new student and returns it (in the mode the teacher was
    in); the teacher's weights and its submodules' train/eval flags are unchanged. The
    teacher runs in eval mode under ``torch.no_grad`` for every batch. The training
    :class:`~medshield.training.History` is kept in ``history_``.

    Parameters
    ----------
    student
        A :data:`~medshield.models.MODELS` name (default ``"student-cnn"``), built with
        ``num_classes`` (from the teacher's output), ``in_channels`` (from the data) and
        ``seed`` unless ``student_options`` sets them; or an ``nn.Module``, of which each
        call trains a fresh deep copy.
    student_options
        Extra keyword options of the student model.
    temperature, alpha
        See :func:`kd_loss`.
    epochs, lr, optimizer, seed, progress
        Training settings (see :func:`medshield.training.fit`).

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> teacher = nn.Sequential(nn.Flatten(), nn.Linear(48, 3))
    >>> data = DataLoader(TensorDataset(torch.rand(8, 3, 4, 4), torch.tensor([0, 1, 2, 0] * 2)), batch_size=4)
    >>> student = Distillation(epochs=1, student_options={"width": 4})(teacher, data)
    >>> student(torch.rand(2, 3, 4, 4)).shape
    torch.Size([2, 3])
    """

    def __init__(
        self,
        *,
        student: str | nn.Module = "student-cnn",
        student_options: dict[str, Any] | None = None,
        temperature: float = 10.0,
        alpha: float = 0.9,
        epochs: int = 5,
        lr: float = 1e-3,
        optimizer: OptimizerSpec = "adam",
        seed: int = 0,
        progress: bool = False,
    ) -> None:
        check_unit("alpha", alpha)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if isinstance(student, str):
            MODELS.canonical(student)  # an unknown name fails here, listing the models
        self.student = student
        self.student_options = dict(student_options or {})
        self.temperature = temperature
        self.alpha = alpha
        self.epochs = epochs
        self.lr = lr
        self.optimizer = optimizer
        self.seed = seed
        self.progress = progress
        self.history_: History | None = None

    def __repr__(self) -> str:
        items = {k: v for k, v in vars(self).items() if not k.endswith("_")}
        return f"Distillation({', '.join(f'{k}={v!r}' for k, v in items.items())})"

    def build_student(self, num_classes: int, in_channels: int) -> nn.Module:
        """A fresh student for ``num_classes`` outputs and ``in_channels`` input channels."""
        if isinstance(self.student, nn.Module):
            return copy.deepcopy(self.student)
        options = {"num_classes": num_classes, "in_channels": in_channels, "seed": self.seed}
        options.update(self.student_options)
        return MODELS.create(self.student, **options)  # type: ignore[no-any-return]

    def __call__(
        self,
        teacher: nn.Module,
        train_loader: Iterable[Any],
        *,
        device: str | torch.device | None = None,
        val_loader: Iterable[Any] | None = None,
    ) -> nn.Module:
        """Train and return a student of ``teacher`` on ``train_loader``'s ``(x, y)`` batches.

        ``x`` ``(N, C, H, W)`` (any input the teacher accepts), ``y`` ``(N,)`` class indices.
        """
        dev = get_device(device)
        teacher_was_training = teacher.training
        teacher.to(dev)
        with preserve_modes(teacher):
            teacher.eval()
            first = next(iter(train_loader), None)
            if first is None:
                raise ValueError("train_loader yielded no batches; nothing to distil")
            x0 = first["x"] if isinstance(first, dict) else first[0]
            with torch.no_grad():
                k = two_logits(teacher(x0[:2].to(dev))).shape[1]
            student = self.build_student(k, int(x0.shape[1]))
            temperature, alpha = self.temperature, self.alpha

            def loss(net: nn.Module, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
                with torch.no_grad():
                    t = teacher(x)
                out = net(x)
                return kd_loss(out, t, y, temperature=temperature, alpha=alpha), out

            self.history_ = fit(
                student,
                train_loader,
                epochs=self.epochs,
                lr=self.lr,
                optimizer=self.optimizer,
                device=dev,
                val_loader=val_loader,
                seed=self.seed,
                progress=self.progress,
                batch_loss=loss,
            )
            self.history_.meta["defense"] = repr(self)
        student.train(teacher_was_training)
        return student
