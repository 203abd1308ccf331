"""Multi-layer perceptrons for tables, including EICPP's breast-cancer network."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init

__all__ = ["MLP", "EICPPMLP", "EICPP_HIDDEN"]

#: Hidden widths of the EICPP preset (our choice; the paper gives none, see :class:`EICPPMLP`).
EICPP_HIDDEN: tuple[int, ...] = (64, 32)


@MODELS.register("mlp")
class MLP(Staged):
    """A fully connected network for tabular data: ``in_features -> hidden... -> classes``.

    Each hidden stage ``fc<i>`` is linear -> ReLU (-> dropout when ``dropout > 0``); the
    last stage ``out`` is a linear layer giving logits. Cutting at ``"fc1"`` gives EICPP's
    split, where the device trains only the first layer (see :class:`EICPPMLP`).

    Parameters
    ----------
    in_features
        Number of input columns (30 for Wisconsin breast cancer).
    hidden
        Widths of the hidden layers, in order; ``()`` gives multinomial logistic regression.
    num_classes
        Number of output logits.
    dropout
        Dropout probability after every hidden ReLU (0 disables it).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_features)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self,
        *,
        in_features: int = 30,
        hidden: Sequence[int] = EICPP_HIDDEN,
        num_classes: int = 2,
        dropout: float = 0.0,
        seed: int | None = None,
    ) -> None:
        hidden = tuple(hidden)
        check_positive(in_features=in_features, num_classes=num_classes)
        check_positive(**{f"hidden[{i}]": h for i, h in enumerate(hidden)})
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        with seeded_init(seed):
            width = in_features
            for i, h in enumerate(hidden, start=1):
                layers: list[nn.Module] = [nn.Linear(width, h), nn.ReLU()]
                if dropout > 0:
                    layers.append(nn.Dropout(dropout))
                stages[f"fc{i}"] = nn.Sequential(*layers)
                width = h
            stages["out"] = nn.Linear(width, num_classes)
        super().__init__(stages)
        self.in_features = in_features
        self.hidden = hidden
        self.num_classes = num_classes


@MODELS.register("eicpp-mlp", aliases=("eicpp",))
class EICPPMLP(MLP):
    """EICPP's fully connected network for the Wisconsin breast-cancer table (preset of MLP).

    Lai, Song, Wang, Li, "Edge intelligent collaborative privacy protection solution for
    smart medical" (EICPP / KubeFL, 2022), section 4.1: "simulation tests on the fully connected
    network using the breast cancer dataset [12] ... we assign the first layer of the model
    to medical devices". The paper states neither the depth nor the widths; this preset
    fixes 30 -> 64 -> 32 -> 2 with ReLU (``EICPP_HIDDEN``), small enough for the Raspberry
    Pi devices of the paper, and the device part is ``cut_model(net, "fc1")``.

    Parameters
    ----------
    in_features, hidden, num_classes, dropout, seed
        As for :class:`MLP`; the defaults are the EICPP preset.
    """

    def __init__(
        self,
        *,
        in_features: int = 30,
        hidden: Sequence[int] = EICPP_HIDDEN,
        num_classes: int = 2,
        dropout: float = 0.0,
        seed: int | None = None,
    ) -> None:
        super().__init__(
            in_features=in_features, hidden=hidden, num_classes=num_classes,
            dropout=dropout, seed=seed,
        )
