"""DenseNet121, MobileNetV2 and ResNet50 from torchvision, staged and sized for MedMNIST.

Yenumala, Zhang, Lo, "Towards More Robust and Scalable Deep Learning Systems for Medical
Image Analysis", section III: the three ImageNet-pretrained CNNs are fine-tuned on
MedMNIST images replicated to 3 channels and resized to 3 x 32 x 32, with a new N-class
head, then attacked with FGSM and defended.

Each backbone here is the torchvision network re-expressed as a :class:`Staged` sequence
(so it can be cut by name), with

* ``num_classes`` outputs: the classifier head is replaced (freshly initialised) when its
  size differs from the loaded or default one;
* ``in_channels`` 1 or 3 (any positive number without pretrained weights): with
  pretrained weights and one channel, the first conv's kernel is the sum of its RGB
  kernels, which gives exactly what the grey image replicated to RGB (the paper's
  preprocessing) gives, for a third of the first conv's work;
* ``weights``: a *local* torchvision ImageNet ``state_dict`` file (see
  :mod:`medshield.models.weights`); nothing is ever downloaded and torchvision's
  ``weights=`` enums are never used;
* ``small_input_stem``: the stem adaptation for 28-32 px inputs. ImageNet stems shrink the
  image before the first block (ResNet, DenseNet: 7x7 stride-2 conv + 3x3 stride-2
  max-pool, 4x; MobileNetV2: 3x3 stride-2 conv, 2x), leaving 1x1 maps at the end of a
  32 px input. ``True`` uses the usual CIFAR stem instead: ResNet50 and DenseNet121 get a
  3x3 stride-1 conv and no max-pool (final maps 4x4), MobileNetV2 keeps its 3x3 conv with
  stride 1 (final maps 2x2). The default ``None`` means "``True`` when training from
  scratch, ``False`` when ``weights`` are given", i.e. the paper's ImageNet stem for
  transfer learning and the sound small-input stem otherwise. Pretrained 7x7 kernels
  cannot load into a 3x3 conv: with ``weights`` and ``small_input_stem=True`` ResNet50 and
  DenseNet121 keep every pretrained tensor except the stem conv, which is freshly
  initialised (a warning says so); MobileNetV2 loads fully (only its stride changes).

Stages
------
* ResNet50: ``stem``, ``layer1`` ... ``layer4``, ``pool``, ``flatten``, ``fc``.
* DenseNet121: ``stem``, ``denseblock1``, ``transition1``, ..., ``denseblock4``,
  ``norm5``, ``relu`` (torchvision applies it functionally after ``features``), ``pool``,
  ``flatten``, ``classifier``.
* MobileNetV2: ``stem``, ``block1`` ... ``block17`` (the inverted residuals),
  ``conv_last`` (1x1 conv to 1280), ``pool``, ``flatten``, ``classifier`` (dropout 0.2 +
  linear).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable

import torchvision.models as tvm
from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init
from medshield.models.weights import adapt_in_channels, load_checked, read_state_dict

__all__ = ["ResNet50", "DenseNet121", "MobileNetV2"]

WeightsPath = str | os.PathLike[str]


def _resolve(
    arch: str, in_channels: int, weights: WeightsPath | None, small_input_stem: bool | None
) -> bool:
    check_positive(in_channels=in_channels)
    if weights is not None and in_channels not in (1, 3):
        raise ValueError(
            f"{arch}: pretrained weights need in_channels 1 or 3, got {in_channels}; "
            "drop weights= to train from scratch with other channel counts"
        )
    return weights is None if small_input_stem is None else bool(small_input_stem)


def _build(
    arch: str,
    factory: Callable[..., nn.Module],
    head_key: str,
    num_classes: int,
    weights: WeightsPath | None,
) -> nn.Module:
    """The torchvision model, with the file's weights (and head size) when given."""
    if weights is None:
        return factory(weights=None, num_classes=num_classes)
    state = read_state_dict(weights)
    head = state.get(head_key)
    file_classes = int(head.shape[0]) if head is not None and head.dim() == 2 else 1000
    net = factory(weights=None, num_classes=file_classes)
    load_checked(net, state, weights, arch)
    return net


def _stem_warning(arch: str, weights: WeightsPath | None, small: bool) -> None:
    if weights is not None and small:
        warnings.warn(
            f"{arch}: small_input_stem=True replaces the pretrained 7x7 stem conv by a freshly "
            "initialised 3x3 conv; every other pretrained tensor from "
            f"{str(weights)!r} is kept. Pass small_input_stem=False to keep the ImageNet stem.",
            stacklevel=3,
        )


@MODELS.register("resnet50")
class ResNet50(Staged):
    """ResNet50 (He et al., CVPR 2016) from torchvision, as used by Yenumala et al.

    See the module docstring for ``small_input_stem``, ``weights`` and the stages.
    ``stem`` is conv 7x7/2 -> BN -> ReLU -> max-pool 3x3/2, or with the small stem conv
    3x3/1 -> BN -> ReLU. About 23.5 M parameters for a few classes.

    Parameters
    ----------
    num_classes
        Output logits.
    in_channels
        Image channels: 1 or 3 with ``weights``, any positive number without.
    weights
        Path of a local torchvision ``resnet50`` ``state_dict`` (``None``: random init).
    small_input_stem
        CIFAR-style stem for 28-32 px inputs; ``None``: ``weights is None``.
    seed
        Seed for the random initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; 32x32 is the paper's input.

    Raises
    ------
    FileNotFoundError, WeightsError
        ``weights`` is missing, unreadable, or not a torchvision ResNet50 ``state_dict``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        weights: WeightsPath | None = None,
        small_input_stem: bool | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive(num_classes=num_classes)
        small = _resolve("resnet50", in_channels, weights, small_input_stem)
        _stem_warning("resnet50", weights, small)
        with seeded_init(seed):
            net: tvm.ResNet = _build("resnet50", tvm.resnet50, "fc.weight", num_classes, weights)  # type: ignore[assignment]
            fc = net.fc  # the head first: its init does not depend on the stem choice
            if fc.out_features != num_classes:
                fc = nn.Linear(fc.in_features, num_classes)
            if small:
                conv = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
                nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
                stem = nn.Sequential(conv, net.bn1, net.relu)
            else:
                conv = adapt_in_channels(net.conv1, in_channels, pretrained=weights is not None)
                stem = nn.Sequential(conv, net.bn1, net.relu, net.maxpool)
        super().__init__(
            OrderedDict(
                stem=stem,
                layer1=net.layer1,
                layer2=net.layer2,
                layer3=net.layer3,
                layer4=net.layer4,
                pool=nn.AdaptiveAvgPool2d(1),
                flatten=nn.Flatten(),
                fc=fc,
            )
        )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.small_input_stem = small


@MODELS.register("densenet121", aliases=("densenet",))
class DenseNet121(Staged):
    """DenseNet121 (Huang et al., CVPR 2017) from torchvision, as used by Yenumala et al.

    See the module docstring for ``small_input_stem``, ``weights`` and the stages.
    ``stem`` is conv 7x7/2 -> BN -> ReLU -> max-pool 3x3/2, or with the small stem conv
    3x3/1 -> BN -> ReLU. torchvision's ``forward`` applies ``F.relu`` after ``features``;
    here that is the explicit ``relu`` stage. About 7 M parameters for a few classes.

    Parameters
    ----------
    num_classes
        Output logits.
    in_channels
        Image channels: 1 or 3 with ``weights``, any positive number without.
    weights
        Path of a local torchvision ``densenet121`` ``state_dict`` (old-style
        ``norm.1`` keys of the original ImageNet file are renamed as torchvision does).
    small_input_stem
        CIFAR-style stem for 28-32 px inputs; ``None``: ``weights is None``.
    seed
        Seed for the random initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; 32x32 is the paper's input.

    Raises
    ------
    FileNotFoundError, WeightsError
        ``weights`` is missing, unreadable, or not a torchvision DenseNet121 ``state_dict``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        weights: WeightsPath | None = None,
        small_input_stem: bool | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive(num_classes=num_classes)
        small = _resolve("densenet121", in_channels, weights, small_input_stem)
        _stem_warning("densenet121", weights, small)
        with seeded_init(seed):
            net: tvm.DenseNet = _build(  # type: ignore[assignment]
                "densenet121", tvm.densenet121, "classifier.weight", num_classes, weights
            )
            classifier = net.classifier  # the head first, as for ResNet50
            if classifier.out_features != num_classes:
                classifier = nn.Linear(classifier.in_features, num_classes)
                nn.init.zeros_(classifier.bias)
            f = net.features
            if small:
                conv = nn.Conv2d(in_channels, f.conv0.out_channels, kernel_size=3, stride=1,
                                 padding=1, bias=False)
                nn.init.kaiming_normal_(conv.weight)
                stem = nn.Sequential(conv, f.norm0, f.relu0)
            else:
                conv = adapt_in_channels(f.conv0, in_channels, pretrained=weights is not None,
                                         init="fan_in")
                stem = nn.Sequential(conv, f.norm0, f.relu0, f.pool0)
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
        for i in range(1, 5):
            stages[f"denseblock{i}"] = getattr(f, f"denseblock{i}")
            if i < 4:
                stages[f"transition{i}"] = getattr(f, f"transition{i}")
        stages["norm5"] = f.norm5
        stages["relu"] = nn.ReLU()
        stages["pool"] = nn.AdaptiveAvgPool2d(1)
        stages["flatten"] = nn.Flatten()
        stages["classifier"] = classifier
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.small_input_stem = small


@MODELS.register("mobilenetv2", aliases=("mobilenet-v2", "mobilenet"))
class MobileNetV2(Staged):
    """MobileNetV2 (Sandler et al., CVPR 2018) from torchvision, as used by Yenumala et al.

    See the module docstring for ``small_input_stem``, ``weights`` and the stages.
    ``stem`` is conv 3x3 (32 maps) -> BN -> ReLU6 with stride 2, or stride 1 with the small
    stem (same kernel, so pretrained stem weights still load). About 2.2 M parameters for
    a few classes.

    Parameters
    ----------
    num_classes
        Output logits.
    in_channels
        Image channels: 1 or 3 with ``weights``, any positive number without.
    weights
        Path of a local torchvision ``mobilenet_v2`` ``state_dict``.
    small_input_stem
        Stride-1 stem for 28-32 px inputs; ``None``: ``weights is None``.
    seed
        Seed for the random initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, H, W)`` -> ``(N, num_classes)``; 32x32 is the paper's input.

    Raises
    ------
    FileNotFoundError, WeightsError
        ``weights`` is missing, unreadable, or not a torchvision MobileNetV2 ``state_dict``.
    """

    def __init__(
        self,
        *,
        num_classes: int = 10,
        in_channels: int = 3,
        weights: WeightsPath | None = None,
        small_input_stem: bool | None = None,
        seed: int | None = None,
    ) -> None:
        check_positive(num_classes=num_classes)
        small = _resolve("mobilenet_v2", in_channels, weights, small_input_stem)
        with seeded_init(seed):
            net: tvm.MobileNetV2 = _build(  # type: ignore[assignment]
                "mobilenet_v2", tvm.mobilenet_v2, "classifier.1.weight", num_classes, weights
            )
            linear = net.classifier[1]  # the head first, as for ResNet50
            if linear.out_features != num_classes:
                linear = nn.Linear(linear.in_features, num_classes)
                nn.init.normal_(linear.weight, 0.0, 0.01)
                nn.init.zeros_(linear.bias)
                net.classifier[1] = linear
            stem = net.features[0]
            stem[0] = adapt_in_channels(stem[0], in_channels, pretrained=weights is not None)
            if small:
                stem[0].stride = (1, 1)
        stages: OrderedDict[str, nn.Module] = OrderedDict(stem=stem)
        for i in range(1, len(net.features) - 1):
            stages[f"block{i}"] = net.features[i]
        stages["conv_last"] = net.features[-1]
        stages["pool"] = nn.AdaptiveAvgPool2d(1)
        stages["flatten"] = nn.Flatten()
        stages["classifier"] = net.classifier
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.small_input_stem = small

