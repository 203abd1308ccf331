"""Attacks used to judge medshield's defences.

* :mod:`medshield.attacks.evasion`: test-time evasion attacks (FGSM, BIM, PGD, C&W, JSMA,
  the one-pixel attack, DeepFool).

All of them register in :data:`ATTACKS` (kind ``"attack"``), so
``medshield.create("attack", "pgd", model=m, eps=0.03)`` builds one by name.
"""

from medshield.attacks.evasion import (
    BIM,
    CW,
    FGSM,
    JSMA,
    PGD,
    PGDL2,
    DeepFool,
    EvasionAttack,
    OnePixel,
)
from medshield.attacks.registry import ATTACKS

__all__ = [
    "ATTACKS",
    "EvasionAttack",
    "FGSM",
    "BIM",
    "PGD",
    "PGDL2",
    "CW",
    "DeepFool",
    "JSMA",
    "OnePixel",
]
