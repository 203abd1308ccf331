"""Privacy accounting of EICPP's two Gaussian mechanisms (RDP, via dp-accounting).

Cloud side (hospital-level DP)
    Algorithm 4 clips each sampled hospital's update ``W_hospital - W_cloud`` to L2 norm
    ``C`` and adds ``N(0, sigma^2 C^2)`` to their sum before dividing by the expected number
    of sampled hospitals. Adding or removing one hospital changes the sum by at most ``C``,
    so each round is a (sub-sampled) Gaussian mechanism with noise multiplier ``sigma``
    whose unit is **a hospital's whole update, i.e. its whole dataset** (hospital-level
    DP, McMahan et al., "Learning differentially private recurrent language models", ICLR
    2018). It says nothing finer about one patient beyond what follows from it. Rounds are
    composed with Flower's :class:`flwr.serverapp.RdpAccountant` (a wrapper of Google's
    dp-accounting RDP accountant, Mironov 2017; Mironov, Talwar, Zhang 2019): Poisson
    sampling is accounted with amplification, fixed-size sampling without it.

Device side (per-record activation DP, towards the hospital)
    Each activation row is clipped to norm ``C_a`` and gets ``N(0, sigma_a^2 C_a^2)``.
    Replacing a record moves its clipped row by at most ``2 C_a``: one release is a
    Gaussian mechanism with noise multiplier ``sigma_a / 2``. A record is released once per
    local epoch of every round its hospital trains, at most ``rounds * local_epochs`` times,
    composed by the same RDP machinery without sampling. Labels (sent in clear by
    Algorithm 2) and the device-part weights returned to the hospital are not covered.

Every epsilon reported by medshield comes from these accountants, never from a
hand-written formula; the tests check them against Opacus' RDP accountant.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = [
    "DEFAULT_ORDERS",
    "HospitalAccountant",
    "calibrate_noise_multiplier",
    "activation_epsilon",
    "gaussian_rdp_epsilon",
]

#: RDP orders used everywhere (integers, so Opacus' accountant can be compared exactly).
DEFAULT_ORDERS: tuple[float, ...] = tuple(
    float(a) for a in [*range(2, 65), 72, 80, 96, 112, 128, 160, 192, 256])


def _flwr() -> Any:
    try:
        from flwr.serverapp import (
            GaussianPrivacyEvent,
            NeighboringRelation,
            PrivacyConfig,
            RdpAccountant,
            SamplingMethod,
        )
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError(
            "privacy accounting needs Flower and dp-accounting: "
            "pip install 'medshield[federated]' (flwr[simulation]==1.41.0, dp-accounting)"
        ) from exc
    return GaussianPrivacyEvent, NeighboringRelation, PrivacyConfig, RdpAccountant, SamplingMethod


class HospitalAccountant:
    """Cumulative (epsilon, delta) of the cloud's Gaussian mechanism, unit = one hospital.

    Parameters
    ----------
    population : ``q``, the number of hospitals
    sample_size : hospitals sampled per round (expected number under Poisson sampling)
    sampling : ``"fixed"`` (no amplification is claimed) or ``"poisson"``
    delta : the delta of :meth:`epsilon`

    Notes
    -----
    The state (:meth:`state_dict`) is the ledger of composed rounds, so a checkpointed
    accountant resumes exactly.
    """

    def __init__(self, *, population: int, sample_size: int, sampling: str = "fixed",
                 delta: float = 1e-5) -> None:
        event_cls, relation, config_cls, accountant_cls, method = _flwr()
        if sampling not in ("fixed", "poisson"):
            raise ValueError(f"sampling must be 'fixed' or 'poisson', got {sampling!r}")
        self.population = population
        self.sample_size = min(max(1, sample_size), population)
        self.sampling = sampling
        self.delta = delta
        poisson = sampling == "poisson" and self.sample_size < population
        self._event_cls = event_cls
        self._acc = accountant_cls(
            config_cls(target_delta=delta, population_size=population,
                       neighboring_relation=relation.ADD_OR_REMOVE_ONE,
                       sampling_method=method.POISSON if poisson else method.NO_AMPLIFICATION),
            orders=DEFAULT_ORDERS,
        )

    @property
    def rounds(self) -> int:
        """Number of noisy releases composed so far."""
        return int(self._acc.num_releases)

    def step(self, noise_multiplier: float, count: int = 1) -> None:
        """Compose ``count`` rounds released with ``noise_multiplier``."""
        if not noise_multiplier > 0:
            raise ValueError("only noisy rounds can be accounted (noise_multiplier > 0); a "
                             "round without noise has epsilon = inf")
        self._acc.compose(self._event_cls(noise_multiplier=float(noise_multiplier),
                                          sample_size=self.sample_size,
                                          population_size=self.population), count)

    def epsilon(self, delta: float | None = None) -> float:
        """Epsilon spent so far at ``delta`` (default: the accountant's); 0 before any round."""
        if self.rounds == 0:
            return 0.0
        return float(self._acc.get_epsilon(self.delta if delta is None else delta))

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable ledger (Flower's accountant state)."""
        return dict(self._acc.state_dict())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ledger written by :meth:`state_dict` (same configuration only)."""
        self._acc.load_state_dict(state)


def calibrate_noise_multiplier(target_epsilon: float, *, rounds: int, population: int,
                               sample_size: int, sampling: str = "fixed",
                               delta: float = 1e-5, tol: float = 1e-4) -> float:
    """The smallest noise multiplier that spends at most ``target_epsilon`` in ``rounds``.

    Searched with dp-accounting's ``calibrate_dp_mechanism`` (Brent's method) over the
    same RDP accountant and events as :class:`HospitalAccountant`, so the calibrated run
    reports an epsilon equal to the target (up to ``tol`` in sigma). ``inf`` gives 0.
    """
    if math.isinf(target_epsilon):
        return 0.0
    if not target_epsilon > 0:
        raise ValueError(f"target_epsilon must be positive, got {target_epsilon}")
    import dp_accounting
    from dp_accounting import rdp

    sample_size = min(max(1, sample_size), population)
    poisson = sampling == "poisson" and sample_size < population

    def fresh() -> Any:
        return rdp.RdpAccountant(orders=list(DEFAULT_ORDERS))

    def event(sigma: float) -> Any:
        gauss = dp_accounting.GaussianDpEvent(sigma)
        inner = (dp_accounting.PoissonSampledDpEvent(sample_size / population, gauss)
                 if poisson else gauss)
        return dp_accounting.SelfComposedDpEvent(inner, rounds)

    return float(dp_accounting.calibrate_dp_mechanism(
        fresh, event, target_epsilon, delta,
        bracket_interval=dp_accounting.LowerEndpointAndGuess(1e-3, 1.0), tol=tol))


def gaussian_rdp_epsilon(noise_multiplier: float, releases: int, delta: float) -> float:
    """Epsilon of ``releases`` adaptive Gaussian releases (noise multiplier relative to the
    sensitivity), via the RDP accountant without sampling. ``inf`` when there is no noise."""
    if releases <= 0:
        return 0.0
    if not noise_multiplier > 0:
        return math.inf
    import dp_accounting
    from dp_accounting import rdp

    acc = rdp.RdpAccountant(orders=list(DEFAULT_ORDERS))
    acc.compose(dp_accounting.GaussianDpEvent(noise_multiplier), releases)
    return float(acc.get_epsilon(delta))


def activation_epsilon(noise: float, *, releases: int, delta: float) -> float:
    """Per-record epsilon of the device's activation mechanism towards the hospital.

    ``noise`` is the multiplier ``sigma_a`` of :func:`~medshield.federated.exchange.privatize_activations`
    (std ``sigma_a * C_a``); the replace-one-record sensitivity is ``2 C_a``, so each
    release is a Gaussian mechanism with multiplier ``sigma_a / 2``; ``releases`` (at most
    ``rounds * local_epochs``) are composed.
    """
    return gaussian_rdp_epsilon(noise / 2.0, releases, delta)
