"""Models: every network medshield trains, attacks, splits or evaluates securely.

Importing this package registers every model in :data:`MODELS`, so
``medshield.create("model", "lenet5", num_classes=10)`` works. All models are
:class:`Staged` networks (an ``nn.Sequential`` of named stages) and can be cut for split
learning with :func:`cut_model` at any of :func:`cut_points`.

=============================== ====================================================
name                            model
=============================== ====================================================
``lenet5``                      LeNet-5, ObfNet's inference model (1x28x28)
``obfnet1``, ``obfnet2``        ObfNet obfuscation nets (image in, same shape out)
``pgsl-cnn``                    PGSL's 7-conv CNN (``4*ch+1`` channels in)
``densenet121``, ``mobilenetv2``,
``resnet50``                    torchvision backbones for 28-32 px MedMNIST
``student-cnn``                 small distillation student
``mlp``, ``eicpp-mlp``          dense nets for tables (EICPP: breast cancer)
``pehealth-a`` ... ``-f``       PE-HEALTH secure-inference nets (a)-(f)
=============================== ====================================================
"""

from medshield.models.backbones import DenseNet121, MobileNetV2, ResNet50
from medshield.models.base import MODELS, Staged, WeightsError, count_parameters, seeded_init
from medshield.models.cut import CutError, cut_model, cut_points
from medshield.models.layers import Square
from medshield.models.lenet import LeNet5
from medshield.models.mlp import EICPP_HIDDEN, EICPPMLP, MLP
from medshield.models.obfnet import ObfNet1, ObfNet2
from medshield.models.pehealth import (
    SECURE_LAYERS,
    PEHealthA,
    PEHealthB,
    PEHealthC,
    PEHealthD,
    PEHealthE,
    PEHealthF,
    assert_secure_evaluable,
)
from medshield.models.pgsl_cnn import PGSLCNN
from medshield.models.student import StudentCNN
from medshield.models.weights import read_state_dict

__all__ = [
    "MODELS",
    "Staged",
    "WeightsError",
    "CutError",
    "count_parameters",
    "seeded_init",
    "cut_model",
    "cut_points",
    "read_state_dict",
    "Square",
    "SECURE_LAYERS",
    "assert_secure_evaluable",
    "LeNet5",
    "ObfNet1",
    "ObfNet2",
    "PGSLCNN",
    "ResNet50",
    "DenseNet121",
    "MobileNetV2",
    "StudentCNN",
    "MLP",
    "EICPPMLP",
    "EICPP_HIDDEN",
    "PEHealthA",
    "PEHealthB",
    "PEHealthC",
    "PEHealthD",
    "PEHealthE",
    "PEHealthF",
]
