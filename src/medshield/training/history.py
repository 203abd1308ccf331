"""The per-epoch record of a training run, JSON-serialisable and checkpointable."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["History"]


@dataclass
class History:
    """What :func:`medshield.training.fit` measured, one entry per completed epoch.

    Attributes
    ----------
    epoch : 1-based epoch numbers
    train_loss : mean training loss over the epoch's samples (while the weights changed)
    train_accuracy : training accuracy over the epoch's samples (same caveat)
    val : :func:`medshield.training.evaluate` reports on the validation loader after each
        epoch (plus ``"loss"``); empty lists when no validation loader was given
    epoch_time_s : wall time of each epoch (training and validation), seconds
    meta : settings of the latest run (device, optimizer, learning rate, seed, and
        ``resumed_at_epoch`` when it continued from a checkpoint)
    """

    epoch: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    val: list[dict[str, Any]] = field(default_factory=list)
    epoch_time_s: list[float] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.epoch)

    @property
    def total_time_s(self) -> float:
        """Wall time of all epochs, including those before a resume."""
        return float(sum(self.epoch_time_s))

    def append(
        self,
        epoch: int,
        train_loss: float,
        train_accuracy: float,
        val: dict[str, Any] | None,
        epoch_time_s: float,
    ) -> None:
        """Record one completed epoch."""
        self.epoch.append(int(epoch))
        self.train_loss.append(float(train_loss))
        self.train_accuracy.append(float(train_accuracy))
        self.val.append(dict(val) if val is not None else {})
        self.epoch_time_s.append(float(epoch_time_s))

    def val_metric(self, name: str) -> list[Any]:
        """One validation metric over epochs, e.g. ``val_metric("accuracy")`` (``None`` for
        epochs without validation)."""
        return [v.get(name) for v in self.val]

    def to_dict(self) -> dict[str, Any]:
        """Plain lists, dicts, numbers and strings (``json.dumps`` and ``torch.load(
        weights_only=True)`` accept it)."""
        return {
            "epoch": list(self.epoch),
            "train_loss": list(self.train_loss),
            "train_accuracy": list(self.train_accuracy),
            "val": [dict(v) for v in self.val],
            "epoch_time_s": list(self.epoch_time_s),
            "total_time_s": self.total_time_s,
            "meta": dict(self.meta),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> History:
        """Inverse of :meth:`to_dict`."""
        try:
            return cls(
                epoch=[int(e) for e in d["epoch"]],
                train_loss=[float(v) for v in d["train_loss"]],
                train_accuracy=[float(v) for v in d["train_accuracy"]],
                val=[dict(v) for v in d["val"]],
                epoch_time_s=[float(v) for v in d["epoch_time_s"]],
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(
                f"not a History dictionary ({exc!r}); expected the output of History.to_dict()"
            ) from exc
