"""PE-HEALTH secure inference: two non-colluding servers evaluate a CNN on shared data.

Liu et al., "PE-HEALTH: Enabling Fully Encrypted CNN for Health Monitor with Optimized
Communication". Parties: a sensor that secret-shares its readings, a healthcare centre that
owns the model (shares the weights, deals correlated randomness offline, reconstructs the
result) and two semi-honest, non-colluding compute servers. Neither server learns the
input, the weights or the output.

Quick start::

    import medshield
    from medshield.models.pehealth import PEHealthF
    proto = medshield.create("protocol", "beaver-2pc", frac_bits=12, ring_bits=32)
    run = proto.infer(PEHealthF(seed=0).eval(), images)   # images: (N, 1, 28, 28)
    run.output, run.per_image()

Modules: :mod:`.ring` (Z_2^l, fixed point), :mod:`.randomness`, :mod:`.sharing`,
:mod:`.beaver`, :mod:`.comparison`, :mod:`.gates`, :mod:`.layers`, :mod:`.dealer`,
:mod:`.program`, :mod:`.compiler` (needs torch), :mod:`.engine`, :mod:`.reference`,
:mod:`.protocols`. Only :mod:`.compiler` imports torch; the sensor needs
:mod:`.sharing` (numpy only) and the servers :mod:`.engine` (numpy only).
"""

from __future__ import annotations

from typing import Any

from medshield.secure.protocols import PROTOCOLS, Beaver2PC, SecureInferenceProtocol
from medshield.secure.randomness import RandomSource, SecurityWarning
from medshield.secure.ring import FixedPointOverflow, Ring
from medshield.secure.sharing import reconstruct, share, share_input

__all__ = [
    "PROTOCOLS",
    "Beaver2PC",
    "SecureInferenceProtocol",
    "RandomSource",
    "SecurityWarning",
    "Ring",
    "FixedPointOverflow",
    "share",
    "reconstruct",
    "share_input",
    "compile_model",
    "CompiledModel",
    "HealthcareCentre",
    "ComputeServer",
    "run_in_process",
    "SecureRun",
    "Program",
]

_LAZY = {
    "compile_model": "medshield.secure.compiler",
    "CompiledModel": "medshield.secure.compiler",
    "HealthcareCentre": "medshield.secure.engine",
    "ComputeServer": "medshield.secure.engine",
    "run_in_process": "medshield.secure.engine",
    "SecureRun": "medshield.secure.engine",
    "Program": "medshield.secure.program",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'medshield.secure' has no attribute {name!r}")
