"""The dataset registry, the loader base class and the two module-level helpers.

Every dataset is a *loader class* registered in :data:`DATASETS`. Following scikit-learn,
the constructor only stores keyword options (``root=None, seed=0`` and loader-specific
ones); :meth:`DatasetLoader.probe` says cheaply (file existence only) whether the data can
be loaded, and :meth:`DatasetLoader.load` reads it into a :class:`~medshield.data.base.SplitDataset`.

Examples
--------
>>> from medshield.data import load_dataset
>>> ds = load_dataset("breast-cancer", seed=0)
>>> ds.train.x.shape[1], ds.info.classes
(30, ('malignant', 'benign'))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from medshield.data.base import DataError, DatasetInfo, Source, SplitDataset
from medshield.registry import Registry
from medshield.runtime import DATA_ENV, data_dir

__all__ = [
    "DATASETS",
    "Availability",
    "DatasetLoader",
    "PathLike",
    "SourceOption",
    "available_datasets",
    "load_dataset",
    "register_dataset",
]

PathLike = str | os.PathLike[str]

DATASETS: Registry[type[DatasetLoader]] = Registry("dataset")

Status = Literal["full", "embedded", "missing"]
SourceOption = Literal["auto", "full", "embedded"]


@dataclass(frozen=True)
class Availability:
    """What :meth:`DatasetLoader.probe` found.

    Attributes
    ----------
    name : registry name of the dataset
    status : ``"full"`` (the complete public files are present), ``"embedded"`` (a subset
        shipped inside a dependency will be used) or ``"missing"`` (``load`` will fail)
    where : the path that would be read, or the package that ships the data
    hint : how to obtain the full data when it is not there (empty when nothing is missing)
    """

    name: str
    status: Status
    where: str
    hint: str = ""


class DatasetLoader:
    """Base class of every registered dataset loader.

    Parameters
    ----------
    root
        Data directory; ``None`` means ``$MEDSHIELD_DATA`` (see :func:`medshield.runtime.data_dir`).
    seed
        Seed of every random choice the loader makes (train/val/test splits). Loaders with
        official splits ignore it.
    source
        ``"auto"`` (the full data when present, else an embedded copy where one exists),
        ``"full"`` (only the complete public files) or ``"embedded"`` (only the copy
        shipped inside a dependency). Asking for a source a dataset does not have raises
        :class:`~medshield.data.base.DataError` at :meth:`load`.

    Notes
    -----
    Subclasses set the class-level metadata ``name``, ``classes``, ``modality`` and
    ``citation`` and implement :meth:`probe` and :meth:`_load`; :meth:`load` checks the
    probe (missing data or a wrong source raise a :class:`DataError` carrying the hint) and
    then calls ``_load``. ``listed = False`` hides a loader from :func:`available_datasets`
    (used for the path-based generic ``npz`` loader).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    classes: ClassVar[tuple[str, ...]] = ()
    modality: ClassVar[str] = "image"
    citation: ClassVar[str] = ""
    listed: ClassVar[bool] = True

    def __init__(
        self, *, root: PathLike | None = None, seed: int = 0, source: SourceOption = "auto"
    ) -> None:
        self.root = root
        self.seed = seed
        self.source = source

    # -- to override --------------------------------------------------------------------
    def probe(self) -> Availability:
        """Cheap availability check (file existence only, never a full load)."""
        raise NotImplementedError

    def _load(self, availability: Availability) -> SplitDataset:
        """Read the data found by :meth:`probe` (status ``"full"`` or ``"embedded"``)."""
        raise NotImplementedError

    # -- public -------------------------------------------------------------------------
    def load(self) -> SplitDataset:
        """Read the data and return train/val/test splits.

        Raises
        ------
        DataError
            The data is missing (the message says where it was expected and how to get
            it), corrupt, or not available from the requested ``source``.
        """
        if self.source not in ("auto", "full", "embedded"):
            raise ValueError(f"source must be 'auto', 'full' or 'embedded', got {self.source!r}")
        av = self.probe()
        if av.status == "missing":
            raise DataError(f"{self.name}: data not found at {av.where}; to fix: {av.hint}")
        if self.source != "auto" and av.status != self.source:
            other = "an embedded copy" if self.source == "embedded" else "the full data files"
            raise DataError(
                f"{self.name}: source={self.source!r} requested but this dataset has no "
                f"{other} here (it would load {av.status} data from {av.where}); "
                "use source='auto'"
            )
        return self._load(av)

    # -- helpers for subclasses ---------------------------------------------------------
    def data_dir(self) -> Path | None:
        """The data directory in force (``root``, else ``$MEDSHIELD_DATA``, else ``None``)."""
        return data_dir(self.root)

    def expected(self, *parts: str) -> Path | None:
        """``<data>/<parts...>``, or ``None`` when no data directory is configured."""
        base = self.data_dir()
        return None if base is None else base.joinpath(*parts)

    def make_info(
        self,
        *,
        source: Source,
        origin: str,
        shape: tuple[int, ...],
        notes: tuple[str, ...] = (),
        classes: tuple[str, ...] | None = None,
        name: str | None = None,
    ) -> DatasetInfo:
        """A :class:`DatasetInfo` filled from the class metadata."""
        return DatasetInfo(
            name=name or self.name,
            classes=tuple(classes if classes is not None else self.classes),
            modality=self.modality,
            citation=self.citation,
            source=source,
            origin=origin,
            shape=tuple(int(s) for s in shape),
            notes=tuple(notes),
        )

    def _params(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self._params().items())
        return f"{type(self).__name__}({args})"


def no_data_dir_hint() -> str:
    """The sentence telling a user how to point medshield at a data directory."""
    return f"set ${DATA_ENV} to your data directory (or pass root=...)"


def register_dataset(cls: type[DatasetLoader]) -> type[DatasetLoader]:
    """Class decorator: register ``cls`` in :data:`DATASETS` under ``cls.name``/``cls.aliases``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no class attribute 'name'")
    DATASETS.register(cls.name, aliases=cls.aliases)(cls)
    return cls


def load_dataset(name: str, root: PathLike | None = None, **opts: Any) -> SplitDataset:
    """Load a registered dataset, or an official-format MedMNIST ``.npz`` given by path.

    Parameters
    ----------
    name
        A registry name (``"mnist"``, ``"breastmnist"`` ...) or a path ending in ``.npz``
        (loaded by the generic ``npz`` loader).
    root
        Data directory (default ``$MEDSHIELD_DATA``).
    **opts
        Loader options (``seed``, ``size`` ...).
    """
    if name.lower().endswith(".npz") and name not in DATASETS:
        return DATASETS.create("npz", path=name, root=root, **opts).load()  # type: ignore[no-any-return]
    return DATASETS.create(name, root=root, **opts).load()  # type: ignore[no-any-return]


def available_datasets(root: PathLike | None = None) -> list[Availability]:
    """Probe every listed dataset (cheap: file existence only), sorted by name."""
    out = []
    for _, cls in DATASETS.items():
        if cls.listed:
            out.append(cls(root=root).probe())
    return out
