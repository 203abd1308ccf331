"""Hierarchical device -> hospital -> cloud federated learning (EICPP) on Flower 1.41.

Lai, Song, Wang, Li, "Edge intelligent collaborative privacy protection solution for smart
medical", Cyber Security and Applications 1 (2023) 100010 (EICPP/KubeFL). Devices run the
first layers and send noisy activations to their hospital (Algorithm 2), which trains the
rest (Algorithm 3); the cloud aggregates the hospitals' models with clipping and Gaussian
noise (Algorithm 4).

=====================  ==========================================================
module                 what
=====================  ==========================================================
``config``             :class:`FLConfig`, the one configuration object
``topology``           data partition into hospitals/devices, the model
``exchange``           the device <-> hospital split exchange over a channel
``hospital``           a hospital's round with its devices; flat local training
``cloud``              :class:`EICPPCloud`, Algorithm 4 as a Flower strategy
``accounting``         RDP accounting, noise calibration (hospital-level DP)
``fedma``              FedMA matched averaging (baseline)
``apps``               Flower ClientApps and the ServerApp
``rounds``             the round loop, checkpoints, resumption
``driver``             :class:`LocalGrid`, an in-process Flower Grid
``runner``             :func:`run_federated`, :func:`train_centralised`
``deploy``             SuperLink/SuperNode/device processes on loopback
=====================  ==========================================================

Importing this package needs ``flwr`` (``pip install 'medshield[federated]'``).
"""

from medshield.federated.accounting import (
    HospitalAccountant,
    activation_epsilon,
    calibrate_noise_multiplier,
)
from medshield.federated.apps import device_app, hospital_app, make_server_app
from medshield.federated.cloud import EICPPCloud, clip_update
from medshield.federated.config import FLConfig
from medshield.federated.driver import LocalGrid, run_inprocess
from medshield.federated.exchange import privatize_activations
from medshield.federated.fedma import FedMA, match_layer, match_mlp
from medshield.federated.hospital import LocalResult, train_flat, train_hospital
from medshield.federated.rounds import FLRun, evaluate_arrays, make_strategy, run_rounds
from medshield.federated.runner import quiet_flower, run_federated, train_centralised
from medshield.federated.topology import Federation, build_federation, build_model

__all__ = [
    "FLConfig",
    "Federation",
    "build_federation",
    "build_model",
    "privatize_activations",
    "train_hospital",
    "train_flat",
    "LocalResult",
    "EICPPCloud",
    "clip_update",
    "HospitalAccountant",
    "calibrate_noise_multiplier",
    "activation_epsilon",
    "FedMA",
    "match_layer",
    "match_mlp",
    "hospital_app",
    "device_app",
    "make_server_app",
    "FLRun",
    "run_rounds",
    "make_strategy",
    "evaluate_arrays",
    "LocalGrid",
    "run_inprocess",
    "run_federated",
    "train_centralised",
    "quiet_flower",
]
