"""The six PE-HEALTH evaluation networks (a)-(f), reconstructed from the text.

Liu, Yang, Ma, Liu, Wang, Ma, "PE-HEALTH: Enabling Fully Encrypted CNN for Health Monitor
with Optimized Communication", section VI: "We utilize six kinds of CNN architectures ...
shown in Fig. 5. Network (a) and Network (b) are used to process the Post-operative
Patient Dataset. Batteryless Wearable Sensor Dataset is evaluated with Network (c) and
Network (d). The last two networks are used to process MNIST."

Reconstruction note
-------------------
Fig. 5 is missing from the text we have, so the layer lists below are *our
reconstruction*. The evidence used:

* Table IV (runtime per layer type) says which layer types each net has:
  (a) ReLU, max-pool, FC (no conv); (b) conv, ReLU, FC (no pool); (c) like (a) and (d)
  like (b) (near-identical runtimes, so the same topologies on a same-size input);
  (e) conv, ReLU, mean-pool, FC; (f) conv, ReLU, FC. (a) spends ~18x more time in FC than
  (b), so (a) has the wide dense layer.
* Tables I and III: network (e) is compared with CryptoNets on MNIST at CryptoNets'
  accuracy (98.95 %), network (f) with SecureML / MiniONN / Chameleon at 99 %. Both are
  therefore the CryptoNets-family MNIST net of Gilad-Bachrach et al. (ICML 2016, section
  4.1, after collapsing its linear layers): conv 5x5 stride 2 with 5 maps on the padded
  image (5 x 13 x 13 = 845 values), activation, dense 845 -> 100, activation, dense
  100 -> 10; Chameleon's MNIST net is exactly this topology with ReLU.
* Table IV lists no "square" row and the protocols of section IV implement ReLU only
  (SecReLU), while (e) has a mean-pooling row. We keep CryptoNets' square activation for
  (e) by default (``activation="square"``) because (e) is compared with CryptoNets and
  the square is what CryptoNets computes; ``activation="relu", mean_pool=True`` gives the
  variant that matches Table IV's layer types exactly (the mean pool is CryptoNets'
  "scaled mean pool", 3x3 windows, stride 1, kept as a linear, share-local layer).
  (f) is the same topology with ReLU.
* The tabular sets have 8 attributes (Post-operative: 8 plus the decision, classes
  I / S / A; Wearable: time, 3 accelerations, antenna id, RSSI, phase, frequency, 4
  activities), so (a)-(d) take ``(N, 8)`` and, where they convolve, treat the row as a
  one-channel signal of length 8 (Conv1d). The widths are ours.

Only layers an additive secret-sharing protocol evaluates are used: convolutions and dense
layers (local, linear), ReLU and max-pool (secure comparison), :class:`Square` (one
multiplication), average pool (local), and reshapes (flatten / unflatten).
:func:`assert_secure_evaluable` checks that.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

from torch import nn

from medshield.models.base import MODELS, Staged, check_positive, seeded_init
from medshield.models.layers import Square

__all__ = [
    "SECURE_LAYERS",
    "assert_secure_evaluable",
    "PEHealthA",
    "PEHealthB",
    "PEHealthC",
    "PEHealthD",
    "PEHealthE",
    "PEHealthF",
]

Activation = Literal["relu", "square"]

#: Leaf layer types a secret-sharing inference protocol can evaluate.
SECURE_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Linear,
    nn.ReLU,
    Square,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.Flatten,
    nn.Unflatten,
)


def assert_secure_evaluable(model: nn.Module) -> None:
    """Raise ``TypeError`` naming every leaf layer outside :data:`SECURE_LAYERS`."""
    bad = [
        f"{name} ({type(mod).__name__})"
        for name, mod in model.named_modules()
        if not list(mod.children()) and not isinstance(mod, SECURE_LAYERS)
    ]
    if bad:
        allowed = ", ".join(t.__name__ for t in SECURE_LAYERS)
        raise TypeError(
            f"layers a secret-sharing protocol cannot evaluate: {', '.join(bad)}. "
            f"Use only {allowed}."
        )


def _activation(kind: str) -> nn.Module:
    if kind == "relu":
        return nn.ReLU()
    if kind == "square":
        return Square()
    raise ValueError(f"activation must be 'relu' or 'square', got {kind!r}")


class _DensePoolNet(Staged):
    """Networks (a) and (c): dense -> ReLU -> max-pool 2 -> dense."""

    def __init__(
        self, *, in_features: int, num_classes: int, hidden: int, seed: int | None
    ) -> None:
        check_positive(in_features=in_features, num_classes=num_classes, hidden=hidden)
        if hidden < 2:
            raise ValueError(f"hidden must be at least 2 (it is max-pooled by 2), got {hidden}")
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                fc1=nn.Linear(in_features, hidden),
                relu1=nn.ReLU(),
                unflatten=nn.Unflatten(1, (1, hidden)),
                pool1=nn.MaxPool1d(2),
                flatten=nn.Flatten(),
                fc2=nn.Linear(hidden // 2, num_classes),
            )
        super().__init__(stages)
        self.in_features = in_features
        self.num_classes = num_classes


class _ConvDenseNet(Staged):
    """Networks (b) and (d): the row as a 1-channel signal -> conv1d 3 -> ReLU -> dense."""

    def __init__(
        self, *, in_features: int, num_classes: int, channels: int, seed: int | None
    ) -> None:
        check_positive(in_features=in_features, num_classes=num_classes, channels=channels)
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                unflatten=nn.Unflatten(1, (1, in_features)),
                conv1=nn.Conv1d(1, channels, kernel_size=3, padding=1),
                relu1=nn.ReLU(),
                flatten=nn.Flatten(),
                fc1=nn.Linear(channels * in_features, num_classes),
            )
        super().__init__(stages)
        self.in_features = in_features
        self.num_classes = num_classes


class _CryptoNetsMNIST(Staged):
    """Networks (e) and (f): conv 5x5/2 (5 maps) -> act [-> mean pool] -> 100 -> act -> 10."""

    def __init__(
        self,
        *,
        num_classes: int,
        in_channels: int,
        input_size: int,
        activation: Activation,
        mean_pool: bool,
        seed: int | None,
    ) -> None:
        check_positive(num_classes=num_classes, in_channels=in_channels, input_size=input_size)
        side = (input_size + 2 - 5) // 2 + 1
        if input_size < 3:
            raise ValueError(f"input_size must be at least 3, got {input_size}")
        with seeded_init(seed):
            stages: OrderedDict[str, nn.Module] = OrderedDict(
                conv1=nn.Conv2d(in_channels, 5, kernel_size=5, stride=2, padding=1),
                act1=_activation(activation),
            )
            if mean_pool:
                stages["pool1"] = nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=True)
            stages["flatten"] = nn.Flatten()
            stages["fc1"] = nn.Linear(5 * side * side, 100)
            stages["act2"] = _activation(activation)
            stages["fc2"] = nn.Linear(100, num_classes)
        super().__init__(stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.activation = activation


@MODELS.register("pehealth-a")
class PEHealthA(_DensePoolNet):
    """PE-HEALTH network (a), Post-operative Patient (8 attributes, 3 classes).

    Reconstruction (see the module note): ``fc1`` dense ``in_features -> hidden``,
    ``relu1``, ``unflatten`` to one channel, ``pool1`` max-pool 2, ``flatten``, ``fc2``
    dense ``hidden/2 -> num_classes``. Table IV: ReLU, max-pool and FC layers, no conv.

    Parameters
    ----------
    in_features
        Attributes per record (8).
    num_classes
        Output logits (3: I, S, A).
    hidden
        Width of the first dense layer (ours; at least 2).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_features)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, in_features: int = 8, num_classes: int = 3, hidden: int = 128,
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features=in_features, num_classes=num_classes, hidden=hidden,
                         seed=seed)


@MODELS.register("pehealth-b")
class PEHealthB(_ConvDenseNet):
    """PE-HEALTH network (b), Post-operative Patient (8 attributes, 3 classes).

    Reconstruction (see the module note): ``unflatten`` the row to ``(1, in_features)``,
    ``conv1`` Conv1d 1 -> ``channels``, kernel 3, padding 1, ``relu1``, ``flatten``,
    ``fc1`` dense ``channels * in_features -> num_classes``. Table IV: conv, ReLU, FC.

    Parameters
    ----------
    in_features
        Attributes per record (8).
    num_classes
        Output logits (3: I, S, A).
    channels
        Conv output channels (ours).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_features)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, in_features: int = 8, num_classes: int = 3, channels: int = 16,
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features=in_features, num_classes=num_classes, channels=channels,
                         seed=seed)


@MODELS.register("pehealth-c")
class PEHealthC(_DensePoolNet):
    """PE-HEALTH network (c), batteryless wearable sensor (8 attributes, 4 activities).

    Same topology as :class:`PEHealthA` (Table IV gives (a) and (c) the same layer types and
    near-identical runtimes): dense -> ReLU -> max-pool 2 -> dense.

    Parameters
    ----------
    in_features
        Attributes per reading (8: time, three accelerations, antenna, RSSI, phase,
        frequency).
    num_classes
        Output logits (4: sit on bed, sit on chair, lying, ambulating).
    hidden
        Width of the first dense layer (ours; at least 2).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_features)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, in_features: int = 8, num_classes: int = 4, hidden: int = 128,
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features=in_features, num_classes=num_classes, hidden=hidden,
                         seed=seed)


@MODELS.register("pehealth-d")
class PEHealthD(_ConvDenseNet):
    """PE-HEALTH network (d), batteryless wearable sensor (8 attributes, 4 activities).

    Same topology as :class:`PEHealthB`: Conv1d 3 over the row -> ReLU -> dense.

    Parameters
    ----------
    in_features
        Attributes per reading (8).
    num_classes
        Output logits (4 activities).
    channels
        Conv output channels (ours).
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_features)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, in_features: int = 8, num_classes: int = 4, channels: int = 16,
        seed: int | None = None,
    ) -> None:
        super().__init__(in_features=in_features, num_classes=num_classes, channels=channels,
                         seed=seed)


@MODELS.register("pehealth-e", aliases=("cryptonets",))
class PEHealthE(_CryptoNetsMNIST):
    """PE-HEALTH network (e), MNIST: the CryptoNets network (Table I compares with it).

    ``conv1`` conv 5x5, stride 2, padding 1, 5 maps (28x28 -> 5 x 13 x 13 = 845), ``act1``,
    [``pool1`` mean pool 3x3 / stride 1 when ``mean_pool``], ``flatten``, ``fc1`` dense
    845 -> 100, ``act2``, ``fc2`` dense 100 -> ``num_classes``. 85,740 parameters for 10
    classes. See the module note for why the square is the default and which options
    reproduce Table IV's layer types.

    Parameters
    ----------
    num_classes
        Output logits (10).
    in_channels
        Image channels (1).
    input_size
        Height = width of the input (28).
    activation
        ``"square"`` (CryptoNets) or ``"relu"`` (PE-HEALTH's SecReLU).
    mean_pool
        Insert CryptoNets' scaled mean pool after the first activation.
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, input_size, input_size)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
        activation: Activation = "square", mean_pool: bool = False, seed: int | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         input_size=input_size, activation=activation, mean_pool=mean_pool,
                         seed=seed)


@MODELS.register("pehealth-f")
class PEHealthF(_CryptoNetsMNIST):
    """PE-HEALTH network (f), MNIST: the CryptoNets topology with ReLU (Chameleon's net).

    Table III compares (f) with SecureML, MiniONN and Chameleon at 99 % accuracy; Table IV
    gives it conv, ReLU and FC layers only. Stages ``conv1`` (5x5 / 2, 5 maps), ``act1``
    (ReLU), ``flatten``, ``fc1`` (845 -> 100), ``act2`` (ReLU), ``fc2`` (100 -> 10).

    Parameters
    ----------
    num_classes
        Output logits (10).
    in_channels
        Image channels (1).
    input_size
        Height = width of the input (28).
    activation
        ``"relu"`` (default) or ``"square"``.
    seed
        Seed for the weight initialisation (``None``: the global torch RNG).

    Shapes
    ------
    ``(N, in_channels, input_size, input_size)`` -> ``(N, num_classes)``.
    """

    def __init__(
        self, *, num_classes: int = 10, in_channels: int = 1, input_size: int = 28,
        activation: Activation = "relu", seed: int | None = None,
    ) -> None:
        super().__init__(num_classes=num_classes, in_channels=in_channels,
                         input_size=input_size, activation=activation, mean_pool=False,
                         seed=seed)
