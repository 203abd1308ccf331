"""Breast Cancer Wisconsin (Diagnostic): 569 tumours x 30 features, shipped with scikit-learn.

Split stratified and seeded into 70/10/20 (398/57/114); features are standardised with the
mean and standard deviation of the *train* split only (statistics of val/test never touch
training), so train features have mean 0 and std 1 and val/test are close to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from medshield.data.base import ArraySplit, SplitDataset
from medshield.data.registry import (
    Availability,
    DatasetLoader,
    PathLike,
    SourceOption,
    register_dataset,
)
from medshield.data.splits import standardize, stratified_split

__all__ = ["BreastCancer"]


@register_dataset
class BreastCancer(DatasetLoader):
    """Wisconsin diagnostic breast-cancer table (Street, Wolberg and Mangasarian, 1993).

    ``x`` is float32 ``(N, 30)`` (standardised with train statistics), ``y`` is 0 = malignant,
    1 = benign (scikit-learn's coding). The mean/std used are in ``extra["mean"]``,
    ``extra["std"]`` and the column names in ``extra["feature_names"]``.

    Parameters
    ----------
    root
        Unused (the data is embedded in scikit-learn).
    seed
        Seed of the stratified split.
    fractions
        Train/val/test fractions.
    standardize
        Standardise features with train statistics (default) or keep raw values.
    """

    name = "breast-cancer"
    aliases = ("wdbc", "breast-cancer-wisconsin")
    classes = ("malignant", "benign")
    modality = "table"
    citation = (
        "W. N. Street, W. H. Wolberg, O. L. Mangasarian, Nuclear feature extraction for breast "
        "tumor diagnosis, IS&T/SPIE Electronic Imaging 1905 (1993); UCI ML Repository dataset 17"
    )

    def __init__(
        self,
        *,
        root: PathLike | None = None,
        seed: int = 0,
        source: SourceOption = "auto",
        fractions: Sequence[float] = (0.7, 0.1, 0.2),
        standardize: bool = True,
    ) -> None:
        super().__init__(root=root, seed=seed, source=source)
        self.fractions = fractions
        self.standardize = standardize

    def probe(self) -> Availability:
        return Availability(self.name, "embedded", "sklearn.datasets.load_breast_cancer")

    def _load(self, av: Availability) -> SplitDataset:
        from sklearn.datasets import load_breast_cancer

        bunch = load_breast_cancer()
        x = np.asarray(bunch.data, dtype=np.float64)
        y = np.asarray(bunch.target, dtype=np.int64)
        tr, va, te = stratified_split(y, tuple(self.fractions), self.seed)
        extra: dict[str, object] = {"feature_names": tuple(bunch.feature_names)}
        if self.standardize:
            (xtr, xva, xte), mean, std = standardize(x[tr], x[va], x[te])
            extra.update(mean=mean, std=std)
            note = "features standardised with the train split's mean and std"
        else:
            xtr, xva, xte = (x[i].astype(np.float32) for i in (tr, va, te))
            note = "raw (unscaled) features"
        return SplitDataset(
            info=self.make_info(
                source="embedded",
                origin="sklearn.datasets.load_breast_cancer",
                shape=(x.shape[1],),
                notes=(note,),
            ),
            train=ArraySplit(xtr, y[tr]),
            val=ArraySplit(xva, y[va]),
            test=ArraySplit(xte, y[te]),
            extra=extra,
        )
