"""Proximal Gradient Split Learning (Khowaja, Lee, Dev, Jarwar and Qureshi, IEEE TNSE 2022).

The device attacks its own images (untargeted JSMA, a few pixels), down-samples them
reversibly with the saliency map stacked on (``(4C+1) x H/2 x W/2``), and trains the first
layers of the network; the server recovers the activations by robust PCA (proximal gradient,
relaxation :math:`\\mu`), trains three streams (attacked, conv-sum fused, recovered) and
fuses their decisions by adaptive weighted averaging.

======================================= ===============================================
piece                                   where
======================================= ===============================================
pixel attack + saliency map (IV-A)      :class:`PGSLTransform`, :func:`saliency_map`
reversible down/up-sampling (IV-B)      :func:`downsample`, :func:`upsample`
proximal-gradient recovery (IV-C)       :func:`rpca` (APG and ADMM), :func:`svt`
conv-sum fusion, eqs. 7-8 (IV-D)        :class:`ConvSumFusion`
decision fusion, eqs. 9-11 (IV-E)       :func:`adaptive_weights`, :func:`fuse_scores`
the server head and the network         :class:`PGSLHead`, :func:`pgsl_network`
======================================= ===============================================

With :mod:`medshield.split`: ``SplitDevice(device_half, data, transform=PGSLTransform(...))``
and ``SplitServer(head)``.

Threat model (``docs/threat-models.md``): the paper's adversary is a black-box model-inversion
attacker on the cut-layer activations. The critic's attacker knows the defence (the pixel
attack, the down-sampling, :math:`\\mu`) and trains its decoder on PGSL's activations; the
experiments report both.
"""

from medshield.defenses.pgsl.fusion import (
    PAPER_WEIGHTS,
    ConvSumFusion,
    adaptive_weights,
    fuse_scores,
)
from medshield.defenses.pgsl.head import STREAMS, PGSLHead, pgsl_network
from medshield.defenses.pgsl.resample import downsample, pgsl_channels, upsample
from medshield.defenses.pgsl.rpca import (
    RPCAResult,
    default_lambda,
    matrix_scale,
    rpca,
    soft_threshold,
    svt,
)
from medshield.defenses.pgsl.saliency import PGSLTransform, saliency_map

__all__ = [
    "PGSLTransform",
    "saliency_map",
    "downsample",
    "upsample",
    "pgsl_channels",
    "rpca",
    "RPCAResult",
    "svt",
    "soft_threshold",
    "default_lambda",
    "matrix_scale",
    "ConvSumFusion",
    "adaptive_weights",
    "fuse_scores",
    "PAPER_WEIGHTS",
    "PGSLHead",
    "pgsl_network",
    "STREAMS",
]
