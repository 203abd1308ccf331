"""The one configuration object of a federated run (EICPP, FedAvg, FedMA, centralised).

A :class:`FLConfig` fixes everything a run depends on: the data and its two-level
hospital -> device partition, the model and its cut, local training, the device-side
activation noise and the cloud-side Gaussian mechanism. It converts to and from a flat
``dict`` of ``str``/``int``/``float``/``bool`` (:meth:`FLConfig.to_flat`,
:meth:`FLConfig.from_flat`), which is what Flower carries in a ``ConfigRecord`` and in the
``run_config`` of a deployed app, so the ServerApp, every ClientApp and a resumed run all
rebuild the same configuration.
"""

from __future__ import annotations

import math
import secrets
import warnings
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import numpy as np

from medshield.secure.randomness import SecurityWarning

__all__ = ["FLConfig", "SAMPLINGS", "PARTITIONS", "NOISE_SOURCES"]

SAMPLINGS = ("fixed", "poisson")
NOISE_SOURCES = ("seeded", "os")
PARTITIONS = ("iid", "dirichlet")


@dataclass(frozen=True, kw_only=True)
class FLConfig:
    """Hyperparameters of a hierarchical (device -> hospital -> cloud) federated run.

    Attributes
    ----------
    dataset, source, data_root
        Dataset name for :func:`medshield.data.load_dataset`, its ``source`` and data
        directory (``""``: ``$MEDSHIELD_DATA``).
    max_train
        Use at most this many training samples (stratified prefix of a seeded
        permutation; ``0`` = all).
    model, hidden
        Registered model name and, for MLPs, comma-separated hidden widths (``""`` = the
        model's default). Image data is flattened for MLPs.
    cut
        Last stage the device runs (EICPP, section 4.1: "the first layer of the model" =
        ``"fc1"`` of the MLP).
    hospitals, devices_per_hospital
        ``q`` hospitals (Algorithm 4) and the medical devices of each.
    partition, alpha
        Hospital-level scheme (``"iid"`` or ``"dirichlet"`` label skew with concentration
        ``alpha``); devices split IID within their hospital.
    rounds, local_epochs, batch_size, lr, momentum
        ``p`` cloud rounds (Algorithm 4) and the local SGD of each round (one epoch = every
        device of a hospital passes once over its data, Algorithms 2-3).
    activation_clip, activation_noise
        Device-side mechanism (Algorithm 2, step 6): each activation row is clipped to L2
        norm ``activation_clip`` and ``N(0, (activation_noise * activation_clip)^2)`` noise
        is added. ``activation_noise = 0`` sends clean (clipped) activations;
        ``activation_clip = 0`` disables clipping (and then noise must be 0).
    update_clip, noise_multiplier
        Cloud-side Gaussian mechanism (Algorithm 4, steps 9-13): each hospital's update
        ``W_hospital - W_cloud`` is clipped to L2 norm ``update_clip`` and the sum gets
        ``N(0, (noise_multiplier * update_clip)^2)`` noise before dividing by the expected
        number of sampled hospitals. ``update_clip = 0`` disables clipping (then
        ``noise_multiplier`` must be 0: no DP).
    target_epsilon
        When finite, ``noise_multiplier`` is calibrated (by the RDP accountant) so that
        the run spends exactly this epsilon at ``delta`` after ``rounds`` rounds; ``inf``
        keeps ``noise_multiplier`` as given.
    delta
        The delta of every reported (epsilon, delta).
    sample_rate, sampling
        Algorithm 4, step 3: ``"fixed"`` samples ``max(1, round(sample_rate * q))``
        hospitals without replacement (accounted without amplification);
        ``"poisson"`` includes each hospital independently with probability
        ``sample_rate`` (accounted with Poisson amplification).
    min_hospitals
        Fewest successful hospital replies with which a round is still aggregated (a
        crashed hospital does not lose the round if the others suffice).
    seed
        Seed of every random choice (model init, partitions, sampling, shuffles and, with
        ``noise_source="seeded"``, the DP noise).
    noise_source
        Where the DP noise (cloud and device side) comes from. ``"seeded"`` (default for
        experiments): generators seeded by ``(seed, round, ...)``, so runs are reproducible
        and a resumed run equals an uninterrupted one, but anyone who knows the seed can
        subtract the noise, and the (epsilon, delta) guarantee then holds only while the
        seed stays secret; a :class:`~medshield.secure.SecurityWarning` says so whenever
        noise is drawn this way. ``"os"`` (secure mode, the deployment default): every
        round's generators are seeded from OS entropy (:func:`secrets.randbits`); runs are
        no longer reproducible. Floating-point Gaussian sampling leaks in its low-order
        bits (Mironov, CCS 2012); neither mode defends against that.
    """

    dataset: str = "breast-cancer"
    source: str = "auto"
    data_root: str = ""
    max_train: int = 0
    model: str = "eicpp-mlp"
    hidden: str = ""
    cut: str = "fc1"
    hospitals: int = 2
    devices_per_hospital: int = 2
    partition: str = "iid"
    alpha: float = 0.5
    rounds: int = 30
    local_epochs: int = 1
    batch_size: int = 16
    lr: float = 0.05
    momentum: float = 0.0
    activation_clip: float = 0.0
    activation_noise: float = 0.0
    update_clip: float = 0.0
    noise_multiplier: float = 0.0
    target_epsilon: float = math.inf
    delta: float = 1e-5
    sample_rate: float = 1.0
    sampling: str = "fixed"
    min_hospitals: int = 1
    seed: int = 0
    noise_source: str = "seeded"

    def __post_init__(self) -> None:
        def need(ok: bool, msg: str) -> None:
            if not ok:
                raise ValueError(f"FLConfig: {msg}")

        for name in ("hospitals", "devices_per_hospital", "rounds", "local_epochs",
                     "batch_size", "min_hospitals"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        need(self.lr > 0, f"lr must be positive, got {self.lr}")
        need(self.partition in PARTITIONS, f"partition must be one of {PARTITIONS}, "
             f"got {self.partition!r}")
        need(self.sampling in SAMPLINGS, f"sampling must be one of {SAMPLINGS}, "
             f"got {self.sampling!r}")
        need(self.noise_source in NOISE_SOURCES, f"noise_source must be one of "
             f"{NOISE_SOURCES}, got {self.noise_source!r}")
        need(0 < self.sample_rate <= 1, f"sample_rate must be in (0, 1], got {self.sample_rate}")
        need(0 < self.delta < 1, f"delta must be in (0, 1), got {self.delta}")
        need(self.activation_clip >= 0 and self.activation_noise >= 0,
             "activation_clip and activation_noise must be >= 0")
        need(self.activation_noise == 0 or self.activation_clip > 0,
             "activation noise needs a clipping bound: set activation_clip > 0 "
             "(the noise scale is activation_noise * activation_clip)")
        need(self.update_clip >= 0 and self.noise_multiplier >= 0,
             "update_clip and noise_multiplier must be >= 0")
        need(self.noise_multiplier == 0 or self.update_clip > 0,
             "cloud noise needs a clipping bound: set update_clip > 0 "
             "(the noise scale is noise_multiplier * update_clip)")
        need(self.target_epsilon > 0, f"target_epsilon must be > 0 (inf = no target), "
             f"got {self.target_epsilon}")
        need(math.isinf(self.target_epsilon) or self.update_clip > 0,
             "a finite target_epsilon needs update_clip > 0 (the sensitivity of a hospital "
             "update)")

    # ------------------------------------------------------------------ derived values
    def noise_rng(self, *parts: int) -> np.random.Generator:
        """The generator of one cloud DP-noise draw: seeded by ``(seed, *parts)``, or the OS.

        Call it only when noise is drawn. With ``noise_source="seeded"`` it warns with
        :class:`~medshield.secure.SecurityWarning` (a known seed reveals the noise).
        """
        if self.noise_source == "os":
            return np.random.default_rng(secrets.randbits(128))
        warnings.warn("DP noise drawn from a generator seeded by the run's seed "
                      "(noise_source='seeded'): whoever knows the seed can remove the noise, "
                      "so (epsilon, delta) holds only while the seed is secret; use "
                      "noise_source='os' in deployment", SecurityWarning, stacklevel=2)
        return np.random.default_rng([self.seed, *parts])

    @property
    def hidden_widths(self) -> tuple[int, ...] | None:
        """``hidden`` parsed into ints (``None`` when empty: the model's default)."""
        if not self.hidden.strip():
            return None
        return tuple(int(h) for h in self.hidden.split(","))

    @property
    def sample_size(self) -> int:
        """Hospitals sampled per round under ``"fixed"`` sampling (the expected number under
        ``"poisson"``, rounded, at least 1)."""
        return max(1, round(self.sample_rate * self.hospitals))

    @property
    def expected_sampled(self) -> float:
        """Expected hospitals per round: the fixed denominator of the noisy average."""
        if self.sampling == "poisson":
            return self.sample_rate * self.hospitals
        return float(self.sample_size)

    @property
    def private(self) -> bool:
        """Whether the cloud adds noise (after calibration, if a target is set)."""
        return self.noise_multiplier > 0 or not math.isinf(self.target_epsilon)

    def with_(self, **changes: Any) -> FLConfig:
        """A copy with ``changes`` applied (validated again)."""
        return replace(self, **changes)

    # ------------------------------------------------------------------ flat form
    def to_flat(self) -> dict[str, str | int | float | bool]:
        """The configuration as a flat dict (``inf`` as the string ``"inf"``)."""
        out: dict[str, str | int | float | bool] = {}
        for key, value in asdict(self).items():
            out[key] = "inf" if isinstance(value, float) and math.isinf(value) else value
        return out

    @classmethod
    def from_flat(cls, flat: Any) -> FLConfig:
        """Rebuild from :meth:`to_flat` output (or a Flower ``run_config``/``ConfigRecord``).

        Keys may use ``-`` for ``_`` (Flower's TOML style); unknown keys are ignored,
        missing keys take their defaults.
        """
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in dict(flat).items():
            key = str(raw_key).replace("-", "_")
            if key not in known:
                continue
            default = known[key].default
            if isinstance(default, bool):
                kwargs[key] = bool(value)
            elif isinstance(default, int):
                kwargs[key] = int(value)
            elif isinstance(default, float):
                kwargs[key] = float(value)
            else:
                kwargs[key] = str(value)
        return cls(**kwargs)
