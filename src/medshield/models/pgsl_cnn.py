"""The CNN of Proximal Gradient Split Learning (Khowaja et al., IEEE TNSE 2022)."""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init

__all__ = ["PGSLCNN"]


@MODELS.register("pgsl-cnn", aliases=("pgsl",))
class PGSLCNN(Staged):
    """Seven 3x3x64 conv layers and two dense layers, the network PGSL splits.

    Khowaja, Lee, Dev, Jarwar, Qureshi, "Get Your Foes Fooled: Proximal Gradient Split
    Learning for Defense Against Model Inversion Attacks on IoMT Data", IEEE TNSE 2022,
    section V: "a simple CNN with 7 conv and 2 fully connected (FC) layers ... Each of the
    convolutional layer comprises conv, ReLU, and batch normalization (BN) layer with 3x3
    kernel size and 64 channels. The drop-out layer is used after every three conv layers.
    We employ the split layer after 2nd conv layer" (cut at ``"conv2"``). Its input is the
    reversible down-sampled tensor of section IV-B: four half-size sub-images plus the
    saliency map, ``4 * ch + 1`` channels of ``i/2 x j/2`` (5 x 14 x 14 for MNIST).

    Interpretation where the text is silent (figures are missing):

    * each conv block is conv 3x3 (padding 1, so the size is kept) -> BN -> ReLU, the
      usual order; ``bn_after_relu=True`` gives the order the sentence lists (conv, ReLU,
      BN);
    * dropout (p = 0.25) after conv3 and conv6 (stages ``drop1``, ``drop2``);
    * no pooling is mentioned, so by default the 64 maps keep the input size and ``fc1``
      sees ``64 * input_size**2`` features; ``pooled_size=k`` inserts an adaptive average
      pool to ``k x k`` (stage ``pool``) for large inputs;
    * ``fc1`` is a linear layer to ``hidden`` units followed by ReLU; ``fc2`` gives logits.

    Stages: ``conv1`` ... ``conv7`` (each a conv/BN/ReLU block), ``drop1`` after ``conv3``,
    ``drop2`` after ``conv6``, [``pool``], ``flatten``, ``fc1``, ``fc2``.

    Parameters
    ----------
    num_classes
        Number of output logits.
    in_channels
        Input channels; ``4 * ch + 1`` for PGSL's down-sampled input (5 for grey images).
    input_size
        Height = width of the input (14 for down-sampled 28x28 images).
    width
        Channels of every conv layer (64 in the paper).
    hidden
        Units of the first dense layer (not given in the paper).
    dropout
        Dropout probability after every third conv layer.
    pooled_size
        If given, adaptive average pooling to ``pooled_size x pooled_size`` before ``fc1``.
    bn_after_relu
        ``False``: conv -> BN -> ReLU; ``True``: conv -> ReLU -> BN.
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
        in_channels: int = 5,
        input_size: int = 14,
        width: int = 64,
        hidden: int = 128,
        dropout: float = 0.25,
        pooled_size: int | None = None,
        bn_after_relu: bool = False,
        seed: int | None = None,
    ) -> None:
        check_positive(
            num_classes=num_classes, in_channels=in_channels, input_size=input_size,
            width=width, hidden=hidden,
        )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if pooled_size is not None:
            check_positive(pooled_size=pooled_size)
        side = pooled_size if pooled_size is not None else input_size
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        with seeded_init(seed):
            channels = in_channels
            for i in range(1, 8):
                conv = nn.Conv2d(channels, width, kernel_size=3, padding=1)
                norm = nn.BatchNorm2d(width)
                act = nn.ReLU()
                layers = [conv, act, norm] if bn_after_relu else [conv, norm, act]
                stages[f"conv{i}"] = nn.Sequential(*layers)
                channels = width
                if i % 3 == 0:
                    stages[f"drop{i // 3}"] = nn.Dropout(dropout)
            if pooled_size is not None:
                stages["pool"] = nn.AdaptiveAvgPool2d(pooled_size)
            stages["flatten"] = nn.Flatten()
            stages["fc1"] = nn.Sequential(nn.Linear(width * side * side, hidden), nn.ReLU())
            stages["fc2"] = nn.Linear(hidden, num_classes)
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
