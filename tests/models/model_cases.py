"""The documented input of every registered model (imported by the model tests)."""

from __future__ import annotations

from typing import Any

# name -> (options, input shape for a batch of 2, output shape)
CASES: dict[str, tuple[dict[str, Any], tuple[int, ...], tuple[int, ...]]] = {
    "lenet5": ({"num_classes": 10}, (2, 1, 28, 28), (2, 10)),
    "obfnet1": ({}, (2, 1, 28, 28), (2, 1, 28, 28)),
    "obfnet2": ({}, (2, 1, 28, 28), (2, 1, 28, 28)),
    "pgsl-cnn": ({"num_classes": 10, "in_channels": 5, "input_size": 14}, (2, 5, 14, 14), (2, 10)),
    "densenet121": ({"num_classes": 4, "in_channels": 3}, (2, 3, 32, 32), (2, 4)),
    "mobilenetv2": ({"num_classes": 4, "in_channels": 3}, (2, 3, 32, 32), (2, 4)),
    "resnet50": ({"num_classes": 4, "in_channels": 3}, (2, 3, 32, 32), (2, 4)),
    "student-cnn": ({"num_classes": 7, "in_channels": 3}, (2, 3, 28, 28), (2, 7)),
    "mlp": ({"in_features": 30, "hidden": (16, 8), "num_classes": 2}, (2, 30), (2, 2)),
    "eicpp-mlp": ({}, (2, 30), (2, 2)),
    "pehealth-a": ({}, (2, 8), (2, 3)),
    "pehealth-b": ({}, (2, 8), (2, 3)),
    "pehealth-c": ({}, (2, 8), (2, 4)),
    "pehealth-d": ({}, (2, 8), (2, 4)),
    "pehealth-e": ({}, (2, 1, 28, 28), (2, 10)),
    "pehealth-f": ({}, (2, 1, 28, 28), (2, 10)),
}
