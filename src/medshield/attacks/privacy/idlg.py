"""Improved Deep Leakage from Gradients (Zhao, Mopuri and Bilen, arXiv:2001.02610, 2020).

iDLG first reads the label off the gradient of the last fully connected layer, then runs DLG
with that label fixed. For one example with cross-entropy loss, logits :math:`z = W h + b`
and non-negative features :math:`h` (after ReLU or sigmoid), the gradient of row :math:`i`
of :math:`W` is

.. math:: \\nabla_{W_i} \\ell = (p_i - \\mathbb{1}[i = c])\\, h ,

so the row of the true class :math:`c` is the only one with non-positive entries
(:math:`p_c - 1 < 0`) and every other row is non-negative. iDLG takes
:math:`c = \\arg\\min_i \\sum_j \\nabla_{W_{ij}} \\ell` (exact for a batch of one). For a batch
of ``N`` examples the gradient is the mean of such terms; we return the ``N`` rows with the
most negative sums (a heuristic, in the spirit of Wainakh et al. 2021; exact only when the
``N`` labels are distinct and the positive terms are small).

Threat model: :data:`~medshield.attacks.privacy.threat.GRADIENT_LEAKAGE` (labels not observed).
"""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import Tensor, nn

from medshield.attacks.privacy.dlg import GradientInversion
from medshield.attacks.privacy.result import InversionResult
from medshield.attacks.privacy.threat import (
    GRADIENT_LEAKAGE,
    Knowledge,
    Observation,
    ThreatModelError,
)
from medshield.attacks.registry import ATTACKS

__all__ = ["IDLG", "recover_labels", "last_linear_weight"]


def last_linear_weight(model: nn.Module, among: Collection[str] | None = None) -> str:
    """The parameter name of the weight of ``model``'s last ``nn.Linear`` layer.

    With ``among`` (e.g. the observed gradients' names), the last one whose weight is listed
    (a model may hold layers the observed loss does not use).
    """
    name = None
    for mod_name, mod in model.named_modules():
        full = f"{mod_name}.weight" if mod_name else "weight"
        if isinstance(mod, nn.Linear) and (among is None or full in among):
            name = full
    if name is None:
        raise ValueError(
            "iDLG reads the label off the last fully connected layer, but the model has no "
            "nn.Linear; use DLG (which optimises the labels) instead"
        )
    return name


def recover_labels(last_weight_grad: Tensor, batch_size: int = 1) -> Tensor:
    """Labels from the gradient ``(K, F)`` of the last linear layer's weight (iDLG).

    Returns ``(batch_size,)`` class indices: the rows with the smallest sums, most negative first.
    """
    if last_weight_grad.dim() != 2:
        raise ValueError(
            f"expected the (K, F) gradient of a linear layer's weight, got shape "
            f"{tuple(last_weight_grad.shape)}"
        )
    sums = last_weight_grad.sum(1)
    k = min(batch_size, sums.numel())
    order = torch.argsort(sums)[:k]
    if k < batch_size:  # more examples than classes: repeat the most negative rows
        order = order.repeat((batch_size + k - 1) // k)[:batch_size]
    return order


@ATTACKS.register("idlg", aliases=("improved-dlg",))
class IDLG(GradientInversion):
    """iDLG: recover the labels analytically, then match gradients with DLG on the images only.

    Parameters are those of :class:`~medshield.attacks.privacy.dlg.DLG`.

    Examples
    --------
    >>> import torch, torch.nn as nn
    >>> from medshield.attacks.privacy import IDLG, Knowledge, Observation, observe_gradients
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 5))
    >>> x, y = torch.rand(1, 1, 2, 2), torch.tensor([3])
    >>> obs = Observation(gradients=observe_gradients(model, x, y))
    >>> IDLG(iterations=20).run(obs, Knowledge(model=model, input_shape=(1, 2, 2))).labels
    tensor([3])
    """

    threat_model = GRADIENT_LEAKAGE

    def run(self, observation: Observation, knowledge: Knowledge) -> InversionResult:
        """Recover labels then images from ``observation.gradients``."""
        if observation.labels is not None:
            raise ThreatModelError(
                "iDLG's threat model does not give the adversary the labels (it recovers "
                "them); drop Observation.labels, or use DLG, which accepts known labels"
            )
        model, shape, grads = self._checked(observation, knowledge)
        try:
            name = last_linear_weight(model, among=grads)
        except ValueError:
            raise ThreatModelError(
                "iDLG needs the gradient of the last linear layer, which is not among the "
                "observed gradients; observe the whole model, or use DLG"
            ) from None
        labels = recover_labels(grads[name], self.batch_size)
        result = self._run(model, shape, grads, labels, num_classes=grads[name].shape[0])
        result.info["threat_model"] = self.threat_model.name
        return result
