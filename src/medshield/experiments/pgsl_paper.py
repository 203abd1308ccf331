"""The numbers and settings the PGSL paper reports (Khowaja et al., IEEE TNSE 2022, section V).

Kept apart from the experiment so that every ``"paper"`` value in the results is traceable to
one place. MIAS is the paper's medical set; when it is absent we run BreastMNIST and keep the
MIAS column as the paper's reference (the rows say which data ours used).
"""

from __future__ import annotations

__all__ = ["SETTINGS", "FIG3", "TABLE_I", "TABLE_II", "PAPER_DATASETS"]

PAPER_DATASETS = ("MIAS", "MNIST")

#: Section V-A and IV-F: the training settings and the network.
SETTINGS: dict[str, object] = {
    "optimizer": "adam",
    "lr": 1e-3,
    "lr_decay": 3e-4,
    "dropout": 0.25,
    "conv_layers": 7,
    "conv_width": 64,
    "cut": "after conv2",
    "mu": 0.55,
    "fusion_weights": (0.5, 0.3, 0.2),
    "mnist_split": "60,000 train / 10,000 test",
    "mias_split": "train 42/57/181, test 12/12/26 (malignant/benign/normal), 1024x1024",
}

#: Section V-B, figure 3: mu from 0.05 to 1.0 in steps of 0.1; the lowest recovery MSE at 0.55
#: on both datasets (the curve's values are not given in the text).
FIG3: dict[str, object] = {
    "mu_grid": [round(0.05 + 0.1 * i, 2) for i in range(10)],
    "best_mu": {"MIAS": 0.55, "MNIST": 0.55},
}

#: Table I: MSE of reconstructions (as printed; the paper does not state the image scale).
#: Keys: row label -> (MIAS, MNIST).
TABLE_I: dict[str, tuple[float, float]] = {
    "DLG": (3.14, 0.12),
    "iDLG": (2.63, 0.048),
    "DCGAN": (2.96, 0.056),
    "MIA": (2.925, 0.08),
    "JSMA + DLG": (4.362, 0.24),
    "JSMA + iDLG": (3.924, 0.22),
    "JSMA + DCGAN": (5.947, 0.29),
    "[8] + DLG": (2.543, 0.097),
    "[8] + iDLG": (1.349, 0.04),
    "[8] + DCGAN": (7.86, 2.34),
    "Ours (DLG)": (1.854, 0.046),
    "Ours (iDLG)": (1.126, 0.026),
    "Ours (DCGAN)": (2.372, 0.078),
}

#: Table II: accuracy (%) -> (MIAS, MNIST).
TABLE_II: dict[str, tuple[float, float]] = {
    "JSMA": (46.3, 65.4),
    "C&W": (51.2, 58.6),
    "BIM": (56.8, 81.2),
    "FGSM": (61.9, 83.8),
    "DLG": (65.7, 88.3),
    "iDLG": (69.2, 95.4),
    "DCGAN": (62.2, 84.8),
    "S_r": (78.5, 99.2),
    "S_f": (67.3, 86.6),
    "S_a": (46.3, 65.4),
    "PGSL": (83.2, 99.8),
}
