"""DDH groups and ElGamal: fast paths against Python's pow, round trips, density of phi."""

from __future__ import annotations

import numpy as np
import pytest

from medshield.secure.elgamal import (
    MODP_2048,
    TOY_GROUP,
    decrypt_small,
    encrypt,
    get_group,
    keygen,
)


def test_toy_group_is_a_prime_order_subgroup() -> None:
    g = TOY_GROUP
    assert g.p == 2 * g.q + 1 and g.p < 2**32 and g.small
    assert pow(g.g, g.q, g.p) == 1 and pow(g.g, 2, g.p) != 1
    # q prime: Fermat to several bases
    assert all(pow(a, g.q - 1, g.q) == 1 for a in (2, 3, 5, 7, 11))


def test_secure_group_is_rfc3526_size() -> None:
    assert MODP_2048.p.bit_length() == 2048 and MODP_2048.secure and not MODP_2048.small
    assert pow(MODP_2048.g, MODP_2048.q, MODP_2048.p) == 1


def test_power_and_fixed_base_match_python_pow(rng) -> None:
    g = TOY_GROUP
    base = g.g_pow(g.random_exponents((5, 3), rng))
    e = g.random_exponents((5, 3), rng)
    slow = np.array([[pow(int(b), int(x), g.p) for b, x in zip(rb, rx, strict=True)]
                     for rb, rx in zip(base, e, strict=True)], dtype=np.uint64)
    assert np.array_equal(g.power(base, e), slow)
    assert np.array_equal(g.fixed_base_power(g.fixed_base_table(base), e), slow)


def test_object_path_matches_pow_in_2048_bit_group(rng) -> None:
    g = MODP_2048
    e = g.random_exponents((2,), rng)
    got = g.g_pow(e)
    assert [int(v) for v in got] == [pow(g.g, int(x), g.p) for x in e]
    assert int(g.prod(got, axis=0)) == pow(g.g, int(e[0]) + int(e[1]), g.p)


def test_distinguished_points_have_the_stated_density(rng) -> None:
    h = TOY_GROUP.g_pow(TOY_GROUP.random_exponents((20000,), rng))
    frac = TOY_GROUP.distinguished(h, 4).mean()
    assert abs(frac - 1 / 16) < 0.01


@pytest.mark.parametrize("group", [TOY_GROUP, MODP_2048], ids=["toy", "modp2048"])
def test_encrypt_decrypt_round_trip(group, rng) -> None:
    key = keygen(group, rng)
    w = np.array([[-3, 0], [5, 17]]) if group.small else np.array([-2, 9])
    ct = encrypt(key, w, rng)
    assert np.array_equal(decrypt_small(key, ct, 20), w)
    again = encrypt(key, w, rng)
    assert not np.array_equal(np.asarray(again.alpha), np.asarray(ct.alpha))  # fresh r


def test_unknown_group_names_the_choices() -> None:
    with pytest.raises(ValueError, match="toy-32.*modp-2048"):
        get_group("p256")
