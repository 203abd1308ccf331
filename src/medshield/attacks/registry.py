"""The registry every attack (evasion and privacy) registers in.

Evasion attacks use plain names (``fgsm``, ``pgd``, ``cw`` ...); privacy attacks will
register beside them under their own names (``dlg``, ``idlg`` ...).

Examples
--------
>>> import medshield, medshield.attacks
>>> import torch.nn as nn
>>> attack = medshield.create("attack", "pgd", model=nn.Linear(4, 2), eps=0.03)
"""

from __future__ import annotations

from typing import Any

from medshield.registry import Registry

__all__ = ["ATTACKS"]

ATTACKS: Registry[Any] = Registry("attack")
