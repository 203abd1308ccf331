"""Data and model of a federation: hospitals, their devices, and the network they train.

:func:`build_federation` loads the dataset, cuts its training split into the two-level
hospital -> device partition (:func:`medshield.data.hierarchical_partition`) and keeps the
test split for the cloud's evaluation. Loading is cached per process, so a ClientApp that
is called once per round (in simulation or on a SuperNode) reads the data once.
:func:`build_model` makes the network every party starts from (the same seeded weights
everywhere).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from medshield.data import ArraySplit, DataError, hierarchical_partition, load_dataset
from medshield.federated.config import FLConfig
from medshield.models import MODELS

__all__ = ["Federation", "build_federation", "build_model", "state_to_arrays",
           "arrays_to_state", "MLP_MODELS"]

#: Models that take flat feature vectors (image data is flattened for them).
MLP_MODELS = ("mlp", "eicpp-mlp", "eicpp")


@dataclass(frozen=True)
class Federation:
    """The data of a federation.

    Attributes
    ----------
    devices : ``devices[h][d]`` is the training data of device ``d`` of hospital ``h``
    test : the held-out test split (evaluated by the cloud)
    val : the validation split
    num_classes, in_shape : label count and the shape of one sample as the model sees it
    source : ``"full"`` or ``"embedded"`` (where the data came from)
    """

    devices: tuple[tuple[ArraySplit, ...], ...]
    test: ArraySplit
    val: ArraySplit
    num_classes: int
    in_shape: tuple[int, ...]
    source: str

    def hospital(self, h: int) -> ArraySplit:
        """All training data of hospital ``h`` pooled (what flat baselines train on)."""
        parts = self.devices[h]
        return ArraySplit(np.concatenate([p.x for p in parts]),
                          np.concatenate([p.y for p in parts]))

    def flat_clients(self) -> list[ArraySplit]:
        """Every device as one client, hospital-major order (flat FedAvg/FedMA)."""
        return [d for hosp in self.devices for d in hosp]

    def pooled(self) -> ArraySplit:
        """All training data (the centralised ceiling)."""
        parts = self.flat_clients()
        return ArraySplit(np.concatenate([p.x for p in parts]),
                          np.concatenate([p.y for p in parts]))

    @property
    def num_train(self) -> int:
        return sum(len(d) for hosp in self.devices for d in hosp)


def _flatten(split: ArraySplit) -> ArraySplit:
    return ArraySplit(split.x.reshape(len(split), -1).astype(np.float32, copy=False), split.y)


@functools.lru_cache(maxsize=8)
def _cached(key: tuple[tuple[str, object], ...]) -> Federation:
    cfg = FLConfig.from_flat(dict(key))
    try:
        data = load_dataset(cfg.dataset, root=cfg.data_root or None, seed=cfg.seed,
                            source=cfg.source)
    except TypeError:  # a loader without a source option
        data = load_dataset(cfg.dataset, root=cfg.data_root or None, seed=cfg.seed)
    train, val, test = data.train, data.val, data.test
    if cfg.max_train and len(train) > cfg.max_train:
        idx = np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_train]
        train = train.subset(np.sort(idx))
    if cfg.model in MLP_MODELS:
        train, val, test = _flatten(train), _flatten(val), _flatten(test)
    min_size = 1
    if len(train) < cfg.hospitals * cfg.devices_per_hospital * min_size:
        raise DataError(
            f"{cfg.dataset}: {len(train)} training samples cannot give "
            f"{cfg.hospitals} x {cfg.devices_per_hospital} devices one sample each; "
            "use fewer hospitals/devices or a larger max_train"
        )
    parts = hierarchical_partition(
        train.y, cfg.hospitals, cfg.devices_per_hospital, cfg.seed,
        hospital_scheme=cfg.partition, device_scheme="iid", hospital_alpha=cfg.alpha,
        min_size=min_size,
    )
    devices = tuple(tuple(train.subset(idx) for idx in hosp) for hosp in parts)
    return Federation(devices=devices, test=test, val=val,
                      num_classes=data.info.num_classes, in_shape=tuple(train.x.shape[1:]),
                      source=data.info.source)


_DATA_KEYS = ("dataset", "source", "data_root", "max_train", "model", "hospitals",
              "devices_per_hospital", "partition", "alpha", "seed")


def build_federation(cfg: FLConfig) -> Federation:
    """Load ``cfg.dataset`` and partition it into hospitals and devices (cached).

    The partition depends only on the data fields of ``cfg`` (dataset, sizes, scheme,
    seed), so every party that holds the same configuration sees the same devices.

    Raises
    ------
    DataError
        The dataset is missing, or too small for the number of devices.
    """
    flat = cfg.to_flat()
    return _cached(tuple((k, flat[k]) for k in _DATA_KEYS))


def build_model(cfg: FLConfig, fed: Federation, *, init: bool = True) -> nn.Module:
    """The network of the run.

    ``init=True`` initialises it from ``cfg.seed`` (identical on every party: the cloud's
    initial global model). ``init=False`` skips the seeding (~10 ms per model, which adds up
    over 1,000 simulated devices a round) for a model whose weights are loaded right after;
    it then draws its throw-away initial weights from torch's global generator.
    """
    options: dict[str, object] = {"num_classes": fed.num_classes,
                                  "seed": cfg.seed if init else None}
    if cfg.model in MLP_MODELS:
        options["in_features"] = int(np.prod(fed.in_shape))
        if cfg.hidden_widths is not None:
            options["hidden"] = cfg.hidden_widths
    elif len(fed.in_shape) == 3:
        options["in_channels"] = fed.in_shape[0]
    return MODELS.create(cfg.model, **options)


def state_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """The model's ``state_dict`` as float64-free NumPy copies (keys in module order)."""
    return {k: v.detach().cpu().numpy().copy() for k, v in model.state_dict().items()}


def arrays_to_state(model: nn.Module, arrays: dict[str, np.ndarray] | Sequence[np.ndarray]
                    ) -> nn.Module:
    """Load named (or ordered) arrays into ``model`` in place and return it."""
    keys = list(model.state_dict())
    if not isinstance(arrays, dict):
        arrays = dict(zip(keys, arrays, strict=True))
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ValueError(f"arrays lack the model's entries {missing}; they come from another "
                         "architecture (check model/hidden in the configuration)")
    state = {k: torch.as_tensor(np.asarray(arrays[k])) for k in keys}
    model.load_state_dict(state)
    return model
