"""PE-HEALTH's own secure-inference variant: ElGamal-encrypted weights over a DDH group.

Liu et al., PE-HEALTH, Protocols 1-3: the healthcare centre encrypts every weight with
ElGamal "in the exponent" (:mod:`.cipher`) in a DDH group (:mod:`.group`); the servers
evaluate Conv/FC layers locally by exponentiation (SecConv, :mod:`.secconv`) and turn the
resulting multiplicative shares into additive ones by distinguished-point walks
(:mod:`.walk`, error probability about ``|value| * 2^-dp_bits``); SecReLU and pooling use
the dealer-assisted comparison of :mod:`medshield.secure.gates`. :mod:`.engine` runs all
parties in one process. Registered as the ``"elgamal-2pc"`` protocol
(:class:`medshield.secure.protocols.ElGamal2PC`).

Sizes: :data:`.group.TOY_GROUP` (31-bit, numpy, **insecure**) for tests and timing of the
structure; :data:`.group.MODP_2048` (RFC 3526) is the secure size.
"""

from __future__ import annotations

from medshield.secure.elgamal.cipher import Ciphertext, KeyPair, decrypt_small, encrypt, keygen
from medshield.secure.elgamal.engine import (
    ElGamalCentre,
    ElGamalServer,
    WalkParams,
    run_elgamal_in_process,
    share_input_q,
)
from medshield.secure.elgamal.group import MODP_2048, TOY_GROUP, DDHGroup, get_group
from medshield.secure.elgamal.secconv import EncryptedWeights, secconv_party, secconv_reference
from medshield.secure.elgamal.walk import conversion_error, expected_steps, walk, walk_reference

__all__ = [
    "DDHGroup",
    "TOY_GROUP",
    "MODP_2048",
    "get_group",
    "KeyPair",
    "Ciphertext",
    "keygen",
    "encrypt",
    "decrypt_small",
    "walk",
    "walk_reference",
    "conversion_error",
    "expected_steps",
    "EncryptedWeights",
    "secconv_party",
    "secconv_reference",
    "WalkParams",
    "ElGamalCentre",
    "ElGamalServer",
    "share_input_q",
    "run_elgamal_in_process",
]
