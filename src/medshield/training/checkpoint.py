"""Training checkpoints: model, optimizer, epoch, history and every RNG state in one file.

A checkpoint is a ``dict`` of tensors and plain Python values written by :func:`torch.save`
(atomically: to a temporary file in the same directory, then renamed). Everything in it --
including the NumPy and Python RNG states, which are converted to lists -- is accepted by
``torch.load(weights_only=True)``, so :func:`load_checkpoint` always loads with
``weights_only=True`` and never unpickles arbitrary objects: a checkpoint from an untrusted
source cannot run code. There is no unsafe fallback; an optimizer whose state holds exotic
Python objects cannot be checkpointed (the error says so).

Layout (``FORMAT``, version ``VERSION``)::

    {"format": "medshield.checkpoint", "version": 1, "epoch": int (completed epochs),
     "model": state_dict, "optimizer": state_dict | None, "history": dict | None,
     "rng": {"torch": ByteTensor, "cuda": [ByteTensor, ...], "numpy": [...], "python": [...]},
     "extra": dict}
"""

from __future__ import annotations

import os
import random
import re
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = [
    "FORMAT",
    "VERSION",
    "LAST",
    "CheckpointError",
    "Checkpoint",
    "get_rng_state",
    "set_rng_state",
    "save_checkpoint",
    "load_checkpoint",
    "save_atomic",
    "load_safe",
]

FORMAT = "medshield.checkpoint"
VERSION = 1
LAST = "last.pt"  # file name fit() writes inside its checkpoint_dir
_KEYS = ("epoch", "model", "optimizer", "history", "rng", "extra")


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, corrupt, truncated or does not fit the model."""


def get_rng_state() -> dict[str, Any]:
    """The states of torch (CPU and every CUDA device), NumPy's global and Python's ``random``
    generators, as tensors and lists (safe for ``torch.load(weights_only=True)``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
        "numpy": [
            str(kind),
            torch.from_numpy(keys.astype(np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ],
        "python": [int(version), list(internal), gauss_next],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`get_rng_state`.

    CUDA states are restored for as many devices as both the checkpoint and this machine
    have (none when resuming a GPU run on a CPU machine, where they do not matter).
    """
    torch.set_rng_state(state["torch"].cpu())
    cuda = state.get("cuda") or []
    if cuda and torch.cuda.is_available():
        for i in range(min(len(cuda), torch.cuda.device_count())):
            torch.cuda.set_rng_state(cuda[i].cpu(), device=i)
    kind, keys, pos, has_gauss, cached = state["numpy"]
    keys_np = (
        keys.numpy().astype(np.uint32)
        if isinstance(keys, torch.Tensor)
        else np.asarray(keys, dtype=np.uint32)
    )
    np.random.set_state((kind, keys_np, pos, has_gauss, cached))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


@dataclass
class Checkpoint:
    """The contents of a checkpoint file (see the module docstring).

    Attributes
    ----------
    path : where it was read from
    epoch : number of completed epochs
    model : the model's ``state_dict``
    optimizer : the optimizer's ``state_dict`` (``None`` if none was saved)
    history : :meth:`History.to_dict` output (``None`` if none was saved)
    rng : RNG states (:func:`get_rng_state`)
    extra : free-form JSON-like metadata
    """

    path: Path
    epoch: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any] | None
    history: dict[str, Any] | None
    rng: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def restore(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        rng: bool = True,
    ) -> None:
        """Load the saved states into ``model`` (and ``optimizer``, and the global RNGs).

        Raises
        ------
        CheckpointError
            If the saved weights do not fit ``model`` (another architecture or class count),
            or an optimizer is given but none was saved.
        """
        try:
            model.load_state_dict(self.model)
        except RuntimeError as exc:
            raise CheckpointError(
                f"checkpoint {self.path} does not fit this model ({exc}); build the model with "
                "the same architecture and number of classes as when it was saved"
            ) from exc
        if optimizer is not None:
            if self.optimizer is None:
                raise CheckpointError(
                    f"checkpoint {self.path} holds no optimizer state; resume without an "
                    "optimizer or use a checkpoint written by fit()"
                )
            try:
                optimizer.load_state_dict(self.optimizer)
            except (ValueError, KeyError) as exc:
                raise CheckpointError(
                    f"checkpoint {self.path} has optimizer state that does not fit this "
                    f"optimizer ({exc}); use the same optimizer type and parameter groups"
                ) from exc
        if rng:
            set_rng_state(self.rng)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    epoch: int,
    history: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically (a crash mid-write leaves the old file intact).

    Parameters
    ----------
    path : target file (parent directories are created)
    model, optimizer : whose ``state_dict`` to save
    epoch : number of completed epochs
    history : JSON-like training history (e.g. ``History.to_dict()``)
    extra : other JSON-like metadata (ints, floats, strings, lists, dicts)

    Returns
    -------
    Path : the file written
    """
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "epoch": int(epoch),
        "model": model.state_dict(),
        "optimizer": None if optimizer is None else optimizer.state_dict(),
        "history": history,
        "rng": get_rng_state(),
        "extra": dict(extra or {}),
    }
    return save_atomic(payload, path)


def save_atomic(payload: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save(payload)`` to ``path`` atomically: written to a temporary file beside it
    and renamed, so a crash mid-write leaves the old file (or none), never half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(payload, fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_safe(path: str | os.PathLike[str], *,
              map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers only, never
    arbitrary pickled objects.

    Raises
    ------
    CheckpointError
        Naming the file, if it does not exist, is truncated or corrupt, or holds objects that
        are not plain tensors/containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint {path} does not exist; check the path or train without resume"
        )
    try:
        with warnings.catch_warnings():  # torch's note on a foreign pickle protocol
            warnings.simplefilter("ignore", UserWarning)
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise CheckpointError(
                f"checkpoint {path} contains Python objects ({found.group(1)}) other than "
                "tensors and plain containers, which safe (weights_only) loading refuses; "
                "re-save it with save_checkpoint, which stores only tensors and plain values"
            ) from exc
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); delete it "
            "and train again (or resume from an older copy)"
        ) from exc


def load_checkpoint(
    path: str | os.PathLike[str], *, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Read a checkpoint with ``torch.load(weights_only=True)``.

    Parameters
    ----------
    path : the file
    map_location : where to put the tensors (default CPU; ``restore`` moves them to the
        model's and optimizer's device)

    Raises
    ------
    CheckpointError
        Naming the file, if it does not exist, is truncated or corrupt, holds objects that
        are not plain tensors/containers, or is not a medshield checkpoint.
    """
    path = Path(path)
    payload = load_safe(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a medshield checkpoint (no 'format': {FORMAT!r} entry); "
            "use a file written by save_checkpoint or fit(checkpoint_dir=...)"
        )
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {payload.get('version')!r}, this medshield "
            f"reads version {VERSION}; re-create it with this version"
        )
    missing = [k for k in _KEYS if k not in payload]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks the entries {missing}; it is incomplete")
    return Checkpoint(
        path=path,
        epoch=int(payload["epoch"]),
        model=payload["model"],
        optimizer=payload["optimizer"],
        history=payload["history"],
        rng=payload["rng"],
        extra=payload["extra"],
    )
