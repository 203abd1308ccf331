"""ObfNet: lightweight, voluntary privacy-preserving inference (Zheng et al. 2019, section 3).

An IoT participant runs a small dense network (an ObfNet) on each sample before sending it;
the coordinator's pre-trained deep model classifies raw and obfuscated samples alike.

* :func:`train_obfnet`, :class:`ObfuscatedModel`, :func:`frozen`: the coordinator trains an
  ObfNet in front of its frozen inference model (loss: the model's cross-entropy on the
  ObfNet's outputs).
* :class:`Coordinator`: holds the frozen model, trains and releases K ObfNets, classifies.
* :class:`Participant`: picks one of the K ObfNets at random per sample (OS randomness by
  default), or sends the sample raw (voluntary).
* :class:`ObfNetDefense` (registered as ``"obfnet"`` in :data:`medshield.defenses.DEFENSES`):
  ``ObfNetDefense(k=10)(model, train_loader)`` trains the ObfNets and returns the deployed
  :class:`ObfNetPipeline`.

The networks themselves are :class:`medshield.models.ObfNet1` and
:class:`medshield.models.ObfNet2`; the attack that measures what the coordinator can recover
is :mod:`medshield.attacks.privacy.obfnet_inversion`.
"""

from medshield.defenses.obfnet.coordinator import Coordinator
from medshield.defenses.obfnet.defense import ObfNetDefense, ObfNetPipeline
from medshield.defenses.obfnet.participant import RAW, Obfuscator, Participant
from medshield.defenses.obfnet.training import (
    FrozenModelChanged,
    ObfuscatedModel,
    frozen,
    train_obfnet,
)

__all__ = [
    "Coordinator",
    "ObfNetDefense",
    "ObfNetPipeline",
    "Participant",
    "Obfuscator",
    "RAW",
    "FrozenModelChanged",
    "ObfuscatedModel",
    "frozen",
    "train_obfnet",
]
