"""Reading pretrained backbone weights from a local file (never from the network).

medshield never downloads weights. To fine-tune from ImageNet as Yenumala et al. do, save
the torchvision ``state_dict`` once on a machine that has it, e.g.
``torch.save(torchvision.models.resnet50(weights="IMAGENET1K_V2").state_dict(), "r50.pt")``,
and pass ``weights="r50.pt"`` to the model.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
from torch import nn

from medshield.models.base import WeightsError

__all__ = ["read_state_dict", "load_checked", "adapt_in_channels"]

# Old torchvision DenseNet checkpoints (the ImageNet files themselves) name the dense-layer
# parts 'norm.1', 'conv.2' ...; torchvision renames them on load, and so do we.
_DENSENET_OLD_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var|num_batches_tracked))$"
)


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load a ``state_dict`` from ``path`` on the CPU, safely (``weights_only=True``).

    Accepts a plain ``state_dict``, or a checkpoint dict holding one under ``"state_dict"``
    or ``"model"``; strips a DataParallel ``"module."`` prefix and renames old DenseNet
    keys.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist (the message names it).
    WeightsError
        The file cannot be unpickled or holds no tensor dictionary.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file {str(path)!r} does not exist. Pass the path of a torchvision "
            "state_dict saved with torch.save(model.state_dict(), path); medshield never "
            "downloads weights."
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # any unpickling / zip error means a corrupt or foreign file
        raise WeightsError(
            f"weights file {str(path)!r} could not be read as a torch state_dict "
            f"({type(err).__name__}: {_short(str(err))}). Re-save it with "
            "torch.save(model.state_dict(), path)."
        ) from err
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if (
        not isinstance(obj, dict)
        or not obj
        or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        raise WeightsError(
            f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state_dict "
            "(a non-empty dict of name -> tensor). Save model.state_dict(), not the model."
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        key = key.removeprefix("module.")
        match = _DENSENET_OLD_KEY.match(key)
        if match:
            key = match.group(1) + match.group(2)
        state[key] = value
    return state


def load_checked(
    model: nn.Module, state: dict[str, torch.Tensor], path: str | os.PathLike[str], arch: str
) -> None:
    """``model.load_state_dict(state)`` with a short error naming the file and the misfit.

    Raises
    ------
    WeightsError
        Keys are missing or unexpected, or a tensor has the wrong shape.
    """
    expected = model.state_dict()
    # Files saved before PyTorch 0.4.1 (the original ImageNet ones among them) have no
    # BatchNorm 'num_batches_tracked'; BatchNorm itself fills it in on load.
    missing = [k for k in expected if k not in state and not k.endswith(".num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
    if wrong:
        problems.append(f"{len(wrong)} shape mismatches (e.g. {'; '.join(wrong[:3])})")
    if problems:
        raise WeightsError(
            f"weights file {str(path)!r} does not fit torchvision's {arch}: "
            f"{'; '.join(problems)}. Pass the state_dict of torchvision.models.{arch} "
            "(ImageNet layout, 3-channel stem)."
        )
    model.load_state_dict(state, strict=True)


def adapt_in_channels(
    conv: nn.Conv2d, in_channels: int, *, pretrained: bool, init: str = "fan_out"
) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs (``conv`` itself when they match).

    With ``pretrained=True`` and ``in_channels == 1`` the kernel is the sum of the RGB
    kernels, so a grey image gives exactly what its 3-channel replication gave before.
    Otherwise the new kernel is Kaiming-normal initialised (``init`` is the fan mode).
    """
    if conv.in_channels == in_channels:
        return conv
    if conv.groups != 1:
        raise ValueError("adapt_in_channels handles ordinary (groups=1) convolutions only")
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        if pretrained and in_channels == 1:
            new.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
            if conv.bias is not None and new.bias is not None:
                new.bias.copy_(conv.bias)
        else:
            nn.init.kaiming_normal_(new.weight, mode=init, nonlinearity="relu")  # type: ignore[arg-type]
            if new.bias is not None:
                nn.init.zeros_(new.bias)
    return new


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
