"""LeNet-5, the frozen inference model behind ObfNet (Zheng et al., AIChallengeIoT 2019)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init

__all__ = ["LeNet5"]


@MODELS.register("lenet5", aliases=("lenet",))
class LeNet5(Staged):
    """LeNet-5 for 28x28 digits: the deep inference model of ObfNet.

    Zheng et al., "Challenges of Privacy-Preserving Machine Learning in IoT",
    AIChallengeIoT 2019, section 3.3, use "LeNet [27]" (LeCun et al., 1998) implemented
    in PyTorch on MNIST (98.98 % accuracy) and train ObfNets in front of it while it stays
    frozen. The paper gives no layer table, so this is the usual PyTorch LeNet-5:

    ====== ================================= ==================
    stage  layer                             output (28x28 in)
    ====== ================================= ==================
    conv1  conv 5x5, 6 maps, padding 2       6 x 28 x 28
    relu1  ReLU
    pool1  max-pool 2x2                      6 x 14 x 14
    conv2  conv 5x5, 16 maps                 16 x 10 x 10
    relu2  ReLU
    pool2  max-pool 2x2                      16 x 5 x 5
    flatten                                  400
    fc1    linear 400 -> 120, then ``relu3``
    fc2    linear 120 -> 84, then ``relu4``
    fc3    linear 84 -> ``num_classes``      logits
    ====== ================================= ==================

    The padding of 2 makes a 28x28 input play the role of LeNet's original 32x32 one. ReLU
    and max-pooling replace the original scaled tanh and trainable sub-sampling, as in
    every modern PyTorch LeNet (61,706 parameters for 10 classes).

    Parameters
    ----------
    num_classes
        Number of output logits.
    in_channels
        Image channels (1 for MNIST and the grey MedMNIST sets).
    input_size
        Height = width of the input; at least 12.
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, input_size, input_size)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 1,
        input_size: int = 28,
        seed: int | None = None,
    ) -> None:
        check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        side = (((input_size // 2) - 4) // 2) if input_size >= 12 else 0
        if side < 1:
            raise ValueError(f"LeNet5 needs input_size >= 12, got {input_size}")
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                conv1=nn.Conv2d(in_channels, 6, kernel_size=5, padding=2),
                relu1=nn.ReLU(),
                pool1=nn.MaxPool2d(2),
                conv2=nn.Conv2d(6, 16, kernel_size=5),
                relu2=nn.ReLU(),
                pool2=nn.MaxPool2d(2),
                flatten=nn.Flatten(),
                fc1=nn.Linear(16 * side * side, 120),
                relu3=nn.ReLU(),
                fc2=nn.Linear(120, 84),
                relu4=nn.ReLU(),
                fc3=nn.Linear(84, num_classes),
            )
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
