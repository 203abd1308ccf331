"""Evasion attacks: white-box (and one black-box) attacks at test time.

Every attack subclasses :class:`EvasionAttack` and registers in
:data:`medshield.attacks.ATTACKS` under a plain name:

========== ===================== ====== =========================================
name       class                 norm   paper
========== ===================== ====== =========================================
fgsm       :class:`FGSM`         L-inf  Goodfellow et al., ICLR 2015
bim        :class:`BIM`          L-inf  Kurakin et al., ICLR 2017 (workshop)
pgd        :class:`PGD`          L-inf  Madry et al., ICLR 2018
pgd-l2     :class:`PGDL2`        L2     Madry et al., ICLR 2018
cw         :class:`CW`           L2     Carlini and Wagner, IEEE S&P 2017
deepfool   :class:`DeepFool`     L2     Moosavi-Dezfooli et al., CVPR 2016
jsma       :class:`JSMA`         L0     Papernot et al., EuroS&P 2016; PGSL, IV-A
pixel      :class:`OnePixel`     L0     Su et al., IEEE TEVC 2019
========== ===================== ====== =========================================

Examples
--------
>>> import medshield, medshield.attacks
>>> import torch, torch.nn as nn
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
>>> attack = medshield.create("attack", "pgd", model=model, eps=0.03)
>>> x_adv = attack(torch.rand(2, 1, 2, 2), torch.tensor([0, 1]))
"""

from medshield.attacks.evasion.base import EvasionAttack, Norm
from medshield.attacks.evasion.bim import BIM
from medshield.attacks.evasion.cw import CW
from medshield.attacks.evasion.deepfool import DeepFool
from medshield.attacks.evasion.fgsm import FGSM
from medshield.attacks.evasion.jsma import JSMA
from medshield.attacks.evasion.pgd import PGD
from medshield.attacks.evasion.pgd_l2 import PGDL2
from medshield.attacks.evasion.pixel import OnePixel

__all__ = [
    "EvasionAttack",
    "Norm",
    "FGSM",
    "BIM",
    "PGD",
    "PGDL2",
    "CW",
    "DeepFool",
    "JSMA",
    "OnePixel",
]
