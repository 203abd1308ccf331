"""PE-HEALTH's published numbers, as data (Liu et al., section VI; pe-health-secure-inference.txt).

Figures 5-7 are missing from our copy of the paper; only the values quoted in the text are
known for Fig. 6 and Fig. 7. ``None`` marks a number the paper does not give.
"""

from __future__ import annotations

#: Precision degrees d (decimal digits) evaluated in Figs. 6-7; d = 4 is the recommended one.
PRECISIONS: tuple[int, ...] = (1, 2, 3, 4, 5)
RECOMMENDED_D = 4

#: Fig. 6 (text): accuracy at d = 4, "as high as the CNN models in plaintext".
FIG6_ACCURACY_D4: dict[str, float | None] = {
    "a": 0.7428, "b": 0.7142, "c": None, "d": None, "e": 0.9895, "f": 0.99,
}

#: Fig. 7 (text): "the computation error can reach as low as 10^-3 as d is set to 4".
FIG7_ERROR_D4 = 1e-3

#: Table I: one MNIST image, network (e).
TABLE_I: dict[str, dict[str, float]] = {
    "CryptoNets": {"runtime_s": 297.5, "message_MB": 372.2, "accuracy": 0.9895},
    "PE-HEALTH": {"runtime_s": 0.86, "message_MB": 0.035, "accuracy": 0.9895},
}

#: Table II: a batch of 4096 MNIST images; sensor (HMS) encryption and centre (HC) decryption.
TABLE_II: dict[str, dict[str, float]] = {
    "CryptoNets": {"encrypt_s": 609.748, "decrypt_s": 52.152, "upload_MB": 367.5,
                   "result_MB": 4.7},
    "PE-HEALTH": {"encrypt_s": 0.64, "decrypt_s": 0.053, "upload_MB": 24.5, "result_MB": 0.16},
}
TABLE_II_BATCH = 4096

#: Table III: one MNIST image, network (f).
TABLE_III: dict[str, dict[str, float | None]] = {
    "SecureML": {"runtime_s": 4.88, "message_MB": None, "accuracy": 0.931},
    "MiniONN": {"runtime_s": 9.32, "message_MB": 657.5, "accuracy": 0.99},
    "Chameleon": {"runtime_s": 2.24, "message_MB": 10.5, "accuracy": 0.99},
    "PE-HEALTH": {"runtime_s": 1.02, "message_MB": 0.014, "accuracy": 0.99},
}

#: Table IV: runtime (ms) per layer type to process one instance.
TABLE_IV: dict[str, dict[str, float | None]] = {
    "conv": {"a": None, "b": 26.64, "c": None, "d": 19.62, "e": 769.0, "f": 866.0},
    "relu": {"a": 0.52, "b": 0.36, "c": 0.53, "d": 0.29, "e": 8.24, "f": 10.31},
    "maxpool": {"a": 0.78, "b": None, "c": 0.77, "d": None, "e": None, "f": None},
    "avgpool": {"a": None, "b": None, "c": None, "d": None, "e": 0.35, "f": None},
    "linear": {"a": 60.3, "b": 3.28, "c": 61.3, "d": 4.1, "e": 9.37, "f": 103.5},
}

#: Which dataset each network is evaluated on (section VI).
NETWORK_DATA: dict[str, str] = {
    "a": "post-operative", "b": "post-operative", "c": "wearable", "d": "wearable",
    "e": "mnist", "f": "mnist",
}

#: Test machine: two desktops, Intel Core i7-9700 @ 3.0 GHz, 16 GB; times averaged over 10 runs.
MACHINE = "2 x Intel Core i7-9700 @ 3.00 GHz, 16 GB RAM (two desktops)"
