"""The numbers Lai et al. report for EICPP (eicpp-hierarchical-fl.txt, section 4), as data.

Accuracies are fractions. The paper gives its curves (Figs. 4-9) only as images; the values
quoted in its text are the ones below. It states neither the network's widths, the
learning rate, the batch size, the partition, the clipping bound nor the noise scale, and
its testbed is two hospital PCs with four Raspberry Pi devices (section 4.1).
"""

from __future__ import annotations

__all__ = ["BREAST_CANCER", "CONVERGENCE_ROUNDS", "TABLE_1", "TABLE_2", "FIG_9", "TESTBED",
           "ROUNDS"]

#: Rounds of every breast-cancer experiment ("after 30 rounds of training").
ROUNDS = 30

#: Section 4.1: two hospital servers, four devices (two per hospital assumed).
TESTBED = {"hospitals": 2, "devices_per_hospital": 2}

#: Section 4.2 and Figs. 4-8: final values on Wisconsin breast cancer after 30 rounds.
BREAST_CANCER: dict[str, dict[str, float]] = {
    "eicpp": {"accuracy": 0.9547, "recall": 0.955, "precision": 0.959, "f1": 0.957},
    "fedma": {"accuracy": 0.8256},
    "fedavg": {"accuracy": 0.7035},
}

#: Section 4.2 (Fig. 8): round near which each scheme converges; EICPP passes 90 %
#: accuracy "around the 12th round".
CONVERGENCE_ROUNDS: dict[str, int] = {"eicpp": 14, "fedma": 20, "fedavg": 24}

#: Table 1: accuracy of EICPP and PPFLEC (Wang et al., IEEE JBHI 2022).
TABLE_1: dict[str, dict[str, float]] = {
    "mnist": {"eicpp": 0.9536, "ppflec": 0.9152},
    "cifar10": {"eicpp": 0.672, "ppflec": 0.655},
}

#: Table 2: convergence time in seconds ("on the same device").
TABLE_2: dict[str, float] = {"eicpp": 1050.0, "fedma": 1300.0, "fedavg": 1600.0}

#: Fig. 9 (text only): the accuracy at convergence is highest at budget 2 and lowest at
#: 0.5; no values, no delta, no accountant and no unit are given.
FIG_9 = {"budgets": (0.5, 1.0, 2.0, 4.0), "best": 2.0, "worst": 0.5}
