"""ObfNet1 and ObfNet2: the device-side obfuscation networks of Zheng et al. (2019).

Zheng, Xu, Jiang, Gu, Tan, Cheng, "Challenges of Privacy-Preserving Machine Learning in
IoT", AIChallengeIoT 2019, sections 3.2-3.3. An ObfNet is a small dense network whose
output has the shape of its input, trained (by the coordinator) in front of a frozen
inference model such as :class:`~medshield.models.lenet.LeNet5`; the IoT object runs it to
obfuscate a sample before sending it. Its ReLUs map many inputs to one output, so the
coordinator cannot invert it exactly. Both nets here take an image batch, flatten it, and
reshape the result back, so ``lenet(obfnet(x))`` works unchanged.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init

__all__ = ["ObfNet1", "ObfNet2"]


def _features(input_shape: tuple[int, ...]) -> int:
    if not input_shape or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise ValueError(
            f"input_shape must be a tuple of positive integers such as (1, 28, 28), "
            f"got {input_shape!r}"
        )
    return math.prod(input_shape)


@MODELS.register("obfnet1")
class ObfNet1(Staged):
    """ObfNet1: one dense layer 784 -> 784 with ReLU (Zheng et al. 2019, section 3.3).

    "One input layer of 784 neurons fully connected to an output layer of 784 neurons with
    ReLU as the activation function. It has 615,440 learnable parameters" (784 * 784
    weights + 784 biases). The ReLU is on the output, as the text says, so the obfuscated
    image is non-negative like a pixel image.

    Stages: ``flatten``, ``fc1``, ``relu1``, ``unflatten``.

    Parameters
    ----------
    input_shape
        Shape of one sample, ``(C, H, W)``; ``(1, 28, 28)`` (MNIST, MedMNIST) by default.
        The dense layer has ``prod(input_shape)`` inputs and outputs.
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, *input_shape)`` -> ``(N, *input_shape)``.
    """

    def __init__(
        self, *, input_shape: tuple[int, ...] = (1, 28, 28), seed: int | None = None
    ) -> None:
        input_shape = tuple(input_shape)
        n = _features(input_shape)
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(n, n),
                relu1=nn.ReLU(),
                unflatten=nn.Unflatten(1, input_shape),
            )
        super().__init__(stages)
        self.input_shape = input_shape


@MODELS.register("obfnet2")
class ObfNet2(Staged):
    """ObfNet2: 784 -> 1000 -> 784, ReLU after both layers (Zheng et al. 2019, section 3.3).

    ObfNet1 with "one more hidden layer of 1,000 neurons"; "each has 1,569,784 learnable
    parameters" = (784 * 1000 + 1000) + (1000 * 784 + 784). The paper trains ten of them
    individually (ObfNet2-0 ... ObfNet2-9): build them with ten different ``seed`` values.
    ReLU follows the hidden and the output layer (the text names ReLU as *the* activation).

    Stages: ``flatten``, ``fc1``, ``relu1``, ``fc2``, ``relu2``, ``unflatten``.

    Parameters
    ----------
    input_shape
        Shape of one sample, ``(C, H, W)``; ``(1, 28, 28)`` by default.
    hidden
        Width of the hidden layer (1000 in the paper).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, *input_shape)`` -> ``(N, *input_shape)``.
    """

    def __init__(
        self,
        *,
        input_shape: tuple[int, ...] = (1, 28, 28),
        hidden: int = 1000,
        seed: int | None = None,
    ) -> None:
        check_positive(hidden=hidden)
        input_shape = tuple(input_shape)
        n = _features(input_shape)
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                flatten=nn.Flatten(),
                fc1=nn.Linear(n, hidden),
                relu1=nn.ReLU(),
                fc2=nn.Linear(hidden, n),
                relu2=nn.ReLU(),
                unflatten=nn.Unflatten(1, input_shape),
            )
        super().__init__(stages)
        self.input_shape = input_shape
        self.hidden = hidden
