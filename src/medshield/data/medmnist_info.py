"""Metadata of the MedMNIST v2 2D datasets (from ``medmnist/info.py`` of MedMNIST v2).

Class names, channels, task and official split sizes ``(train, val, test)`` of the 28x28
files; the source-data paper of each subset is quoted because the MedMNIST authors ask
users to cite it too.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MedMNISTSpec", "MEDMNIST_2D"]


@dataclass(frozen=True)
class MedMNISTSpec:
    """One MedMNIST 2D dataset.

    Attributes
    ----------
    name : file stem and registry name (``"breastmnist"``)
    python_class : class name in the ``medmnist`` package (for download instructions)
    classes : label names, index = label
    channels : 1 (grey, stored ``(N, H, W)``) or 3 (RGB, stored ``(N, H, W, 3)``)
    n_samples : official ``(train, val, test)`` sizes
    task : MedMNIST task type
    source : the source dataset's paper
    """

    name: str
    python_class: str
    classes: tuple[str, ...]
    channels: int
    n_samples: tuple[int, int, int]
    task: str
    source: str

    @property
    def multilabel(self) -> bool:
        return self.task.startswith("multi-label")


_ORGANS = (
    "bladder", "femur-left", "femur-right", "heart", "kidney-left", "kidney-right",
    "liver", "lung-left", "lung-right", "pancreas", "spleen",
)  # fmt: skip
_LITS = (
    "P. Bilic et al., The Liver Tumor Segmentation Benchmark (LiTS), Medical Image Analysis 84 "
    "(2023); X. Xu et al., Efficient multiple organ localization in CT image using 3D region "
    "proposal network, IEEE TMI 38(8) (2019)"
)
_KERMANY = (
    "D. S. Kermany et al., Identifying medical diagnoses and treatable diseases by image-based "
    "deep learning, Cell 172(5) (2018)"
)

_SPECS = (
    MedMNISTSpec(
        "pathmnist", "PathMNIST",
        ("adipose", "background", "debris", "lymphocytes", "mucus", "smooth muscle",
         "normal colon mucosa", "cancer-associated stroma",
         "colorectal adenocarcinoma epithelium"),
        3, (89996, 10004, 7180), "multi-class",
        "J. N. Kather et al., Predicting survival from colorectal cancer histology slides using "
        "deep learning, PLOS Medicine 16(1) (2019)",
    ),
    MedMNISTSpec(
        "chestmnist", "ChestMNIST",
        ("atelectasis", "cardiomegaly", "effusion", "infiltration", "mass", "nodule",
         "pneumonia", "pneumothorax", "consolidation", "edema", "emphysema", "fibrosis",
         "pleural", "hernia"),
        1, (78468, 11219, 22433), "multi-label, binary-class",
        "X. Wang et al., ChestX-ray8: Hospital-scale chest X-ray database and benchmarks, "
        "CVPR 2017",
    ),
    MedMNISTSpec(
        "dermamnist", "DermaMNIST",
        ("actinic keratoses and intraepithelial carcinoma", "basal cell carcinoma",
         "benign keratosis-like lesions", "dermatofibroma", "melanoma", "melanocytic nevi",
         "vascular lesions"),
        3, (7007, 1003, 2005), "multi-class",
        "P. Tschandl, C. Rosendahl, H. Kittler, The HAM10000 dataset, Scientific Data 5 (2018); "
        "N. Codella et al., Skin lesion analysis toward melanoma detection 2018, arXiv:1902.03368",
    ),
    MedMNISTSpec(
        "octmnist", "OCTMNIST",
        ("choroidal neovascularization", "diabetic macular edema", "drusen", "normal"),
        1, (97477, 10832, 1000), "multi-class", _KERMANY,
    ),
    MedMNISTSpec(
        "pneumoniamnist", "PneumoniaMNIST", ("normal", "pneumonia"),
        1, (4708, 524, 624), "binary-class", _KERMANY,
    ),
    MedMNISTSpec(
        "retinamnist", "RetinaMNIST", ("0", "1", "2", "3", "4"),
        3, (1080, 120, 400), "ordinal-regression",
        "R. Liu et al., DeepDRiD: Diabetic retinopathy - grading and image quality estimation "
        "challenge, Patterns 3(6) (2022)",
    ),
    MedMNISTSpec(
        "breastmnist", "BreastMNIST", ("malignant", "normal, benign"),
        1, (546, 78, 156), "binary-class",
        "W. Al-Dhabyani, M. Gomaa, H. Khaled, A. Fahmy, Dataset of breast ultrasound images, "
        "Data in Brief 28 (2020)",
    ),
    MedMNISTSpec(
        "bloodmnist", "BloodMNIST",
        ("basophil", "eosinophil", "erythroblast",
         "immature granulocytes(myelocytes, metamyelocytes and promyelocytes)", "lymphocyte",
         "monocyte", "neutrophil", "platelet"),
        3, (11959, 1712, 3421), "multi-class",
        "A. Acevedo et al., A dataset of microscopic peripheral blood cell images for "
        "development of automatic recognition systems, Data in Brief 30 (2020)",
    ),
    MedMNISTSpec(
        "tissuemnist", "TissueMNIST",
        ("Collecting Duct, Connecting Tubule", "Distal Convoluted Tubule",
         "Glomerular endothelial cells", "Interstitial endothelial cells", "Leukocytes",
         "Podocytes", "Proximal Tubule Segments", "Thick Ascending Limb"),
        1, (165466, 23640, 47280), "multi-class",
        "V. Ljosa, K. L. Sokolnicki, A. E. Carpenter, Annotated high-throughput microscopy image "
        "sets for validation, Nature Methods 9(7) (2012) (BBBC051)",
    ),
    MedMNISTSpec("organamnist", "OrganAMNIST", _ORGANS, 1, (34581, 6491, 17778), "multi-class", _LITS),
    MedMNISTSpec("organcmnist", "OrganCMNIST", _ORGANS, 1, (13000, 2392, 8268), "multi-class", _LITS),
    MedMNISTSpec("organsmnist", "OrganSMNIST", _ORGANS, 1, (13940, 2452, 8829), "multi-class", _LITS),
)  # fmt: skip

#: The 2D MedMNIST v2 datasets by name.
MEDMNIST_2D: dict[str, MedMNISTSpec] = {s.name: s for s in _SPECS}
