"""The accountants against Opacus' RDP accountant (the reference implementation)."""

from __future__ import annotations

import math

import pytest

from medshield.federated.accounting import (
    DEFAULT_ORDERS,
    HospitalAccountant,
    activation_epsilon,
    calibrate_noise_multiplier,
    gaussian_rdp_epsilon,
)

opacus_rdp = pytest.importorskip("opacus.accountants", reason="Opacus is not installed")


def opacus_epsilon(sigma: float, q: float, steps: int, delta: float) -> float:
    acc = opacus_rdp.RDPAccountant()
    for _ in range(steps):
        acc.step(noise_multiplier=sigma, sample_rate=q)
    return float(acc.get_epsilon(delta, alphas=list(DEFAULT_ORDERS)))


@pytest.mark.parametrize(("population", "sample", "sampling", "sigma", "rounds"), [
    (2, 2, "fixed", 5.0, 30),       # the paper's two hospitals, all of them every round
    (10, 10, "fixed", 1.3, 12),
    (10, 3, "poisson", 1.1, 30),    # Poisson sampling: amplification by sub-sampling
    (20, 2, "poisson", 0.9, 50),
])
def test_hospital_accountant_matches_opacus(population: int, sample: int, sampling: str,
                                            sigma: float, rounds: int) -> None:
    acc = HospitalAccountant(population=population, sample_size=sample, sampling=sampling,
                             delta=1e-5)
    for _ in range(rounds):
        acc.step(sigma)
    q = sample / population if sampling == "poisson" else 1.0
    assert acc.rounds == rounds
    assert acc.epsilon() == pytest.approx(opacus_epsilon(sigma, q, rounds, 1e-5), rel=1e-9)


def test_fixed_sampling_claims_no_amplification() -> None:
    fixed = HospitalAccountant(population=10, sample_size=3, sampling="fixed")
    poisson = HospitalAccountant(population=10, sample_size=3, sampling="poisson")
    fixed.step(1.5, 20)
    poisson.step(1.5, 20)
    assert fixed.epsilon() == pytest.approx(opacus_epsilon(1.5, 1.0, 20, 1e-5), rel=1e-9)
    assert poisson.epsilon() < fixed.epsilon() / 2


def test_epsilon_grows_with_rounds_and_shrinks_with_noise() -> None:
    acc = HospitalAccountant(population=5, sample_size=5)
    assert acc.epsilon() == 0.0
    eps = []
    for _ in range(4):
        acc.step(2.0)
        eps.append(acc.epsilon())
    assert eps == sorted(eps) and eps[0] > 0
    assert gaussian_rdp_epsilon(4.0, 4, 1e-5) < eps[-1]


def test_state_dict_round_trip() -> None:
    a = HospitalAccountant(population=10, sample_size=3, sampling="poisson")
    a.step(1.2, 7)
    b = HospitalAccountant(population=10, sample_size=3, sampling="poisson")
    b.load_state_dict(a.state_dict())
    assert b.rounds == 7 and b.epsilon() == a.epsilon()
    other = HospitalAccountant(population=9, sample_size=3, sampling="poisson")
    with pytest.raises(ValueError):
        other.load_state_dict(a.state_dict())


@pytest.mark.parametrize("target", [0.5, 1.0, 2.0, 4.0])
def test_calibration_reaches_the_target(target: float) -> None:
    sigma = calibrate_noise_multiplier(target, rounds=30, population=2, sample_size=2)
    acc = HospitalAccountant(population=2, sample_size=2)
    acc.step(sigma, 30)
    assert acc.epsilon() == pytest.approx(target, rel=1e-3)
    assert acc.epsilon() <= target * (1 + 1e-6)
    # and Opacus agrees on the calibrated mechanism
    assert opacus_epsilon(sigma, 1.0, 30, 1e-5) == pytest.approx(target, rel=1e-3)


def test_calibration_poisson_and_infinity() -> None:
    assert calibrate_noise_multiplier(math.inf, rounds=5, population=3, sample_size=3) == 0.0
    sigma = calibrate_noise_multiplier(2.0, rounds=20, population=10, sample_size=3,
                                       sampling="poisson")
    assert opacus_epsilon(sigma, 0.3, 20, 1e-5) == pytest.approx(2.0, rel=1e-3)


def test_activation_epsilon_is_a_gaussian_with_half_the_multiplier() -> None:
    # sensitivity 2C under replacing a record: multiplier sigma_a / 2, no sampling
    assert activation_epsilon(4.0, releases=30, delta=1e-5) == pytest.approx(
        opacus_epsilon(2.0, 1.0, 30, 1e-5), rel=1e-9)
    assert activation_epsilon(0.0, releases=3, delta=1e-5) == math.inf
    assert activation_epsilon(1.0, releases=0, delta=1e-5) == 0.0
