"""The numbers Yenumala et al. report (robust-medical-imaging.txt, Tables I-III), as data.

Accuracies are fractions. ``None`` marks a cell the paper left out (ResNet50 on BreastMNIST,
"excluded" for overfitting; ResNet50 AT on OCTMNIST, "—").
"""

from __future__ import annotations

__all__ = ["EPSILONS", "TABLE_I", "TABLE_III", "MEDMNIST_BENCHMARK"]

#: FGSM budgets of Tables II-III (L-inf, images in [0, 1]).
EPSILONS: tuple[float, ...] = (0.001, 0.002, 0.003, 0.004, 0.005)

#: Table I: clean test accuracy after 5 epochs of fine-tuning.
TABLE_I: dict[str, dict[str, float | None]] = {
    "breastmnist": {"densenet121": 0.8397, "mobilenetv2": 0.7885, "resnet50": None},
    "pneumoniamnist": {"densenet121": 0.8862, "mobilenetv2": 0.8429, "resnet50": 0.8670},
    "dermamnist": {"densenet121": 0.7282, "mobilenetv2": 0.6808, "resnet50": 0.7177},
    "octmnist": {"densenet121": 0.7778, "mobilenetv2": 0.6925, "resnet50": 0.7556},
}

# Table III holds Table II (the "Original" rows) and the defended rows:
# (dataset, model, defence) -> [clean, eps=0.001, ..., eps=0.005]
_T3 = """
breastmnist densenet121 original 83.97 71.15 56.41 50.00 43.59 38.46
breastmnist densenet121 at 78.85 75.00 71.15 67.31 61.54 58.97
breastmnist mobilenetv2 original 78.85 62.82 57.05 54.49 48.72 44.87
breastmnist mobilenetv2 at 71.79 73.08 75.00 75.00 74.36 74.36
pneumoniamnist densenet121 original 88.62 80.61 71.96 66.51 59.29 54.01
pneumoniamnist densenet121 at 86.86 81.41 77.88 71.96 67.63 64.10
pneumoniamnist mobilenetv2 original 84.29 67.95 58.65 54.01 51.60 50.64
pneumoniamnist mobilenetv2 at 77.08 74.68 70.67 67.79 65.06 62.02
pneumoniamnist resnet50 original 86.70 82.69 79.33 76.76 72.92 70.83
pneumoniamnist resnet50 at 84.94 83.01 80.77 78.85 76.44 74.84
dermamnist densenet121 original 72.82 65.64 60.25 56.41 53.67 51.07
dermamnist densenet121 at 72.92 70.02 68.78 67.58 65.59 63.44
dermamnist densenet121 kd 68.98 68.98 68.93 68.83 68.83 68.73
dermamnist mobilenetv2 original 68.08 62.29 60.15 58.50 57.91 58.00
dermamnist mobilenetv2 at 65.54 67.03 66.98 67.13 66.78 66.33
dermamnist resnet50 original 71.77 68.33 65.39 62.04 59.20 57.11
dermamnist resnet50 at 70.97 70.12 69.58 69.03 68.53 67.83
octmnist densenet121 original 77.78 65.52 55.21 46.39 39.49 34.40
octmnist densenet121 at 75.29 71.79 68.45 64.98 61.84 58.07
octmnist densenet121 kd 78.69 78.36 78.16 77.81 77.46 77.13
octmnist mobilenetv2 original 69.25 52.21 42.16 36.26 32.27 29.54
octmnist mobilenetv2 at 61.79 61.48 58.87 55.09 51.37 48.50
octmnist resnet50 original 75.56 69.55 62.61 55.96 48.74 41.74
"""

#: Tables II-III: (dataset, model, defence) -> accuracies at clean, then each of EPSILONS.
TABLE_III: dict[tuple[str, str, str], tuple[float, ...]] = {
    (d, m, k): tuple(float(v) / 100 for v in vals)
    for d, m, k, *vals in (line.split() for line in _T3.strip().splitlines())
}

#: Official MedMNIST v2 benchmark test accuracy, ResNet-18 at 28x28 (Yang et al. 2023).
MEDMNIST_BENCHMARK: dict[str, float] = {
    "breastmnist": 0.863,
    "pneumoniamnist": 0.854,
    "dermamnist": 0.735,
    "octmnist": 0.743,
}
