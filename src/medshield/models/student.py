"""A small CNN student for defensive knowledge distillation (Yenumala et al., Robust MedIA)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init

__all__ = ["StudentCNN"]


def _block(cin: int, cout: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


@MODELS.register("student-cnn", aliases=("student",))
class StudentCNN(Staged):
    """Three conv blocks and a linear head: the distillation student.

    Yenumala, Zhang, Lo, "Towards More Robust and Scalable Deep Learning Systems for
    Medical Image Analysis" (section III, defenses): the DenseNet121
    teachers of DermaMNIST and OCTMNIST teach "a new, smaller custom model" trained with a
    Kullback-Leibler loss on the teacher's class probabilities. Its layers are not given;
    this one is the usual small CIFAR-style student, sized for 28-32 px MedMNIST images:

    ======= ===================================================== ==================
    stage   layers                                                output (32x32 in)
    ======= ===================================================== ==================
    block1  conv 3x3 (``width``) -> BN -> ReLU -> max-pool 2       w x 16 x 16
    block2  conv 3x3 (``2 width``) -> BN -> ReLU -> max-pool 2     2w x 8 x 8
    block3  conv 3x3 (``4 width``) -> BN -> ReLU                   4w x 8 x 8
    pool    global average pool                                    4w x 1 x 1
    flatten                                                        4w
    fc      linear ``4 width -> num_classes``                       logits
    ======= ===================================================== ==================

    With ``width=32`` and 3 input channels it has about 95 k parameters (less than 2 % of
    DenseNet121); the global pool makes it accept any input of at least 4x4.

    Parameters
    ----------
    num_classes
        Number of output logits.
    in_channels
        Image channels (1 or 3).
    width
        Channels of the first block; the next blocks have 2x and 4x.
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, H, W)`` with ``H, W >= 4`` -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        width: int = 32,
        seed: int | None = None,
    ) -> None:
        check_positive(num_classes=num_classes, in_channels=in_channels, width=width)
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                block1=_block(in_channels, width, pool=True),
                block2=_block(width, 2 * width, pool=True),
                block3=_block(2 * width, 4 * width, pool=False),
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=nn.Linear(4 * width, num_classes),
            )
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
