"""Privacy attacks: recover a device's raw data from what split or federated learning exposes.

Each attack declares its threat model as data (:class:`ThreatModel`: what the adversary
observes and knows; see :mod:`medshield.attacks.privacy.threat`) and receives exactly an
:class:`Observation` and a :class:`Knowledge`; it returns an :class:`InversionResult`
(reconstruction, recovered labels, and after ``score`` the MSE/PSNR/SSIM, label recovery and
the accuracy of a classifier on the reconstructions).

===================== ============================ ===========================================
name                  class                        paper
===================== ============================ ===========================================
decoder-inversion     :class:`DecoderInversion`    He et al., ACSAC 2019; Titcombe et al. 2021
dlg                   :class:`DLG`                 Zhu and Han, NeurIPS 2019
idlg                  :class:`IDLG`                Zhao, Mopuri and Bilen, 2020
inverting-gradients   :class:`InvertingGradients`  Geiping, Bauermeister, Dröge and Moeller,
                                                   NeurIPS 2020 (cosine matching, TV prior)
whitebox-inversion    :class:`WhiteBoxInversion`   He, Zhang and Lee, ACSAC 2019 (white-box
                                                   rMLE; threat model :data:`WHITE_BOX_MIA`)
gan-inversion         :class:`GANInversion`        Hitaj et al., CCS 2017 (DCGAN prior)
(ObfNet coordinator)  :class:`ObfNetInversion`,    Zheng et al. 2019 (ObfNet's claims, measured;
                      :class:`ObfNetIdentifier`    threat model :data:`OBFNET_COORDINATOR`)
===================== ============================ ===========================================
"""

from medshield.attacks.privacy.decoder_inversion import DecoderInversion, InversionDecoder
from medshield.attacks.privacy.dlg import DLG, gradient_distance, observe_gradients
from medshield.attacks.privacy.gan_inversion import (
    DCGANDiscriminator,
    DCGANGenerator,
    GANInversion,
    train_dcgan,
)
from medshield.attacks.privacy.idlg import IDLG, last_linear_weight, recover_labels
from medshield.attacks.privacy.inverting_gradients import (
    InvertingGradients,
    cosine_gradient_distance,
    total_variation,
)
from medshield.attacks.privacy.obfnet_inversion import (
    OBFNET_COORDINATOR,
    ObfNetIdentifier,
    ObfNetInversion,
    ObfNetKnowledge,
)
from medshield.attacks.privacy.result import InversionResult, reconstruction_metrics
from medshield.attacks.privacy.threat import (
    BLACK_BOX_MIA,
    GAN_PRIOR,
    GRADIENT_LEAKAGE,
    GRADIENT_LEAKAGE_WITH_LABELS,
    Knowledge,
    Observation,
    ThreatModel,
    ThreatModelError,
)
from medshield.attacks.privacy.whitebox_inversion import WHITE_BOX_MIA, WhiteBoxInversion

__all__ = [
    "ThreatModel",
    "ThreatModelError",
    "Observation",
    "Knowledge",
    "BLACK_BOX_MIA",
    "GRADIENT_LEAKAGE",
    "GRADIENT_LEAKAGE_WITH_LABELS",
    "GAN_PRIOR",
    "InversionResult",
    "reconstruction_metrics",
    "DecoderInversion",
    "InversionDecoder",
    "DLG",
    "IDLG",
    "InvertingGradients",
    "WhiteBoxInversion",
    "WHITE_BOX_MIA",
    "cosine_gradient_distance",
    "total_variation",
    "GANInversion",
    "DCGANGenerator",
    "DCGANDiscriminator",
    "train_dcgan",
    "observe_gradients",
    "gradient_distance",
    "recover_labels",
    "last_linear_weight",
    "OBFNET_COORDINATOR",
    "ObfNetKnowledge",
    "ObfNetIdentifier",
    "ObfNetInversion",
]
