"""Defences against evasion attacks: adversarial training and knowledge distillation.

Every defence registers in :data:`DEFENSES` (kind ``"defense"``), so
``medshield.create("defense", "pgd-at", eps=0.1)`` builds one by name. A defence is called
with a model and a training loader and hands back the defended model, so defences stack
(see :mod:`medshield.defenses.base`).

================  ==========================================================  ===========
name              defence                                                     returns
================  ==========================================================  ===========
``fgsm-at``       FGSM adversarial training (Goodfellow 2015; Yenumala et al.)  the model
``pgd-at``        PGD adversarial training (Madry et al. 2018)                  the model
``distillation``  knowledge distillation (Hinton 2015; Papernot 2016)           a student
================  ==========================================================  ===========

Split-learning defences against model inversion (they plug into :mod:`medshield.split`
rather than wrap a trained model):

====================  ======================================================  ==============
name                  defence                                                 what it is
====================  ======================================================  ==============
``activation-noise``  Laplace/Gaussian noise on the cut activations           a layer
                      (Titcombe et al. 2021)
``nopeek``            distance-correlation loss (Vepakomma et al.)            a regularizer
``pgsl``              PGSL's device transform (:mod:`.pgsl`: the server       a transform
                      head, RPCA, fusion; Khowaja et al. 2022)
====================  ======================================================  ==============

ObfNet (Zheng et al. 2019; registered as ``obfnet``) is the subpackage :mod:`.obfnet`.
"""

from medshield.defenses import obfnet
from medshield.defenses.activation_noise import ActivationNoise
from medshield.defenses.adversarial_training import (
    AdversarialTraining,
    FGSMAdversarialTraining,
    PGDAdversarialTraining,
)
from medshield.defenses.base import DEFENSES, classification_loss, preserve_modes, two_logits
from medshield.defenses.distillation import Distillation, kd_loss
from medshield.defenses.nopeek import NoPeek, distance_correlation
from medshield.defenses.pgsl import PGSLHead, PGSLTransform, pgsl_network

__all__ = [
    "DEFENSES",
    "AdversarialTraining",
    "FGSMAdversarialTraining",
    "PGDAdversarialTraining",
    "Distillation",
    "kd_loss",
    "preserve_modes",
    "classification_loss",
    "two_logits",
    "ActivationNoise",
    "NoPeek",
    "distance_correlation",
    "PGSLTransform",
    "PGSLHead",
    "pgsl_network",
    "obfnet",
]
