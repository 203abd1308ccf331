"""Training and evaluation of classifiers: :func:`fit`, :func:`evaluate`, :func:`predict`,
and checkpoints that resume bit-identically."""

from medshield.training.checkpoint import (
    Checkpoint,
    CheckpointError,
    get_rng_state,
    load_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from medshield.training.history import History
from medshield.training.trainer import epoch_seed, evaluate, fit, predict

__all__ = [
    "fit",
    "evaluate",
    "predict",
    "History",
    "epoch_seed",
    "Checkpoint",
    "CheckpointError",
    "save_checkpoint",
    "load_checkpoint",
    "get_rng_state",
    "set_rng_state",
]
