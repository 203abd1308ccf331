"""Threat models of the privacy attacks, as data: what the adversary observes and knows.

Every privacy attack in :mod:`medshield.attacks.privacy` declares a :class:`ThreatModel` and
receives its inputs as an :class:`Observation` (what crossed the wire) and a
:class:`Knowledge` (what the adversary holds beforehand). :meth:`ThreatModel.check` refuses
any field the model does not grant and names any missing one, so an attack cannot silently
use more than its threat model gives (``docs/threat-models.md``, rows "PGSL / split learning"
and "gradient leakage").

=================== ============================== ===========================================
threat model        observes                       knows
=================== ============================== ===========================================
``black-box-mia``   cut-layer activations          auxiliary images of the same distribution,
                                                   query access to the device half (including
                                                   any defence it runs: the critic's attacker
                                                   "who knows the defence")
``gradient-leakage`` parameter gradients of a batch architecture and weights at that step, the
                                                   input shape
``gradient-leakage`` + labels (DLG with known labels; split learning sends labels)
``gan-prior``        parameter gradients            as gradient leakage, plus auxiliary images
                                                   to train a generative prior
=================== ============================== ===========================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from torch import Tensor, nn

__all__ = [
    "ThreatModel",
    "Observation",
    "Knowledge",
    "ThreatModelError",
    "BLACK_BOX_MIA",
    "GRADIENT_LEAKAGE",
    "GRADIENT_LEAKAGE_WITH_LABELS",
    "GAN_PRIOR",
]


class ThreatModelError(ValueError):
    """An attack was given something its threat model does not grant, or lacks something it needs."""


@dataclass
class Observation:
    """What the adversary saw on the wire.

    Attributes
    ----------
    activations : ``(N, *A)`` cut-layer activations (split learning, server side)
    gradients : parameter name -> gradient of the batch's mean loss (same names as in
        ``Knowledge.model.named_parameters()``)
    labels : ``(N,)`` labels (split learning sends them to the server)
    """

    activations: Tensor | None = None
    gradients: dict[str, Tensor] | None = None
    labels: Tensor | None = None


@dataclass
class Knowledge:
    """What the adversary holds before the attack.

    Attributes
    ----------
    model : the attacked network with its weights at that step (white box)
    input_shape : shape of one input ``(C, H, W)`` (public: part of the architecture)
    aux_images : ``(M, C, H, W)`` auxiliary raw images from the same distribution
    aux_labels : ``(M,)`` their labels
    query : black-box access ``raw images (B, C, H, W) -> what the device sends (B, *A)``
        (the device half with its defence, e.g. noise or PGSL's transform)
    defence : a description of the defence the adversary assumes (for reports)
    """

    model: nn.Module | None = None
    input_shape: tuple[int, ...] | None = None
    aux_images: Tensor | None = None
    aux_labels: Tensor | None = None
    query: Callable[[Tensor], Tensor] | None = None
    defence: str | None = None


def _present(obj: Any) -> set[str]:
    return {f.name for f in fields(obj) if getattr(obj, f.name) is not None}


@dataclass(frozen=True)
class ThreatModel:
    """Who the adversary is, what it observes and what it knows.

    Parameters
    ----------
    name : short identifier
    adversary : who attacks (``"the server, or an eavesdropper on the device-server link"``)
    observes : :class:`Observation` fields the adversary may see
    knows : :class:`Knowledge` fields the adversary may hold
    requires : the fields (of either kind) the attack cannot run without
    secret : what the attack tries to recover
    reference : where the threat model comes from
    """

    name: str
    adversary: str
    observes: frozenset[str]
    knows: frozenset[str]
    requires: frozenset[str] = field(default_factory=frozenset)
    secret: str = "the device's raw images"
    reference: str = ""

    def check(self, observation: Observation, knowledge: Knowledge) -> None:
        """Raise :class:`ThreatModelError` if the inputs exceed or fall short of this model."""
        extra_obs = _present(observation) - self.observes
        extra_know = _present(knowledge) - self.knows - {"defence"}
        if extra_obs or extra_know:
            what = sorted(extra_obs | extra_know)
            raise ThreatModelError(
                f"threat model {self.name!r} does not give the adversary {', '.join(what)}; "
                f"it observes only {sorted(self.observes)} and knows only {sorted(self.knows)}. "
                "Remove those fields, or use an attack whose threat model grants them."
            )
        missing = self.requires - _present(observation) - _present(knowledge)
        if missing:
            raise ThreatModelError(
                f"threat model {self.name!r} needs {', '.join(sorted(missing))}; pass them in "
                "the Observation / Knowledge given to the attack"
            )

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable description (for results files)."""
        return {
            "name": self.name,
            "adversary": self.adversary,
            "observes": sorted(self.observes),
            "knows": sorted(self.knows),
            "secret": self.secret,
            "reference": self.reference,
        }


BLACK_BOX_MIA = ThreatModel(
    name="black-box-mia",
    adversary="the server, or an eavesdropper on the device-server link",
    observes=frozenset({"activations"}),
    knows=frozenset({"aux_images", "aux_labels", "query"}),
    requires=frozenset({"activations", "aux_images", "query"}),
    reference="He, Zhang and Lee, ACSAC 2019 (black-box inverse network); Titcombe et al. 2021",
)
GRADIENT_LEAKAGE = ThreatModel(
    name="gradient-leakage",
    adversary="the server (or a federated aggregator)",
    observes=frozenset({"gradients"}),
    knows=frozenset({"model", "input_shape"}),
    requires=frozenset({"gradients", "model", "input_shape"}),
    secret="the batch's images and labels",
    reference="Zhu and Han, NeurIPS 2019 (DLG); Zhao, Mopuri and Bilen 2020 (iDLG)",
)
GRADIENT_LEAKAGE_WITH_LABELS = ThreatModel(
    name="gradient-leakage+labels",
    adversary="the split-learning server (it receives the labels)",
    observes=frozenset({"gradients", "labels"}),
    knows=frozenset({"model", "input_shape"}),
    requires=frozenset({"gradients", "model", "input_shape"}),
    secret="the batch's images",
    reference="Zhu and Han, NeurIPS 2019 (DLG) with the labels given",
)
GAN_PRIOR = ThreatModel(
    name="gan-prior",
    adversary="the server (or a federated aggregator) holding public data of the same kind",
    observes=frozenset({"gradients", "labels"}),
    knows=frozenset({"model", "input_shape", "aux_images", "aux_labels"}),
    requires=frozenset({"gradients", "model", "input_shape", "aux_images"}),
    reference="Hitaj, Ateniese and Perez-Cruz, CCS 2017 (GAN as the adversary's prior)",
)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU for a parameter-free model)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")
