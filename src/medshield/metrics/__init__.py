"""Evaluation metrics: classification (NumPy, sklearn-compatible) and image quality (torch).

Classification functions take label vectors of shape ``(N,)`` and return plain floats;
:func:`classification_report` bundles them into a JSON-serialisable ``dict``. Image metrics
take batches ``(N, C, H, W)`` and return tensors.
"""

from medshield.metrics.classification import (
    accuracy,
    classification_report,
    confusion_matrix,
    f1,
    precision,
    precision_recall_f1,
    recall,
    roc_auc,
)
from medshield.metrics.image import gaussian_window, mse, psnr, ssim

__all__ = [
    "accuracy",
    "precision",
    "recall",
    "f1",
    "precision_recall_f1",
    "roc_auc",
    "confusion_matrix",
    "classification_report",
    "mse",
    "psnr",
    "ssim",
    "gaussian_window",
]
