"""Split learning: a device half and a server half trained over a channel.

* :class:`SplitDevice`: the layers up to the cut, on the data owner's side; sends activations
  and labels, receives the activation gradient.
* :class:`SplitServer`: the rest of the network; orchestrates several devices taking turns
  (vanilla split learning), relaying the device-half weights between them (sealed by the
  devices with a :class:`HandoffSeal`, the server relays them without being able to read them).
* :func:`run_in_process` (threads + :class:`~medshield.transport.InProcessChannel`),
  :func:`serve_tcp` / :func:`device_tcp` (separate processes over TCP).
* :class:`SplitInterrupted`: a device's link failed mid-run; it carries the server's state
  after the last completed epoch, which :meth:`SplitServer.run` resumes from.

The wire protocol and the threat model are described in :mod:`medshield.split.protocol`;
PGSL (:mod:`medshield.defenses.pgsl`) plugs in as a device transform and a server head.
"""

from medshield.split.device import Regularizer, SplitDevice, Transform
from medshield.split.handoff import HandoffSeal
from medshield.split.protocol import (
    OPS,
    ClassifierHead,
    DeviceReport,
    HeadOutput,
    ServerHead,
    SplitHistory,
    SplitProtocolError,
    as_head,
    make_optimizer,
)
from medshield.split.runner import SplitRun, device_tcp, run_in_process, serve_tcp
from medshield.split.server import SplitInterrupted, SplitServer

__all__ = [
    "SplitDevice",
    "HandoffSeal",
    "SplitServer",
    "SplitRun",
    "SplitHistory",
    "DeviceReport",
    "HeadOutput",
    "ServerHead",
    "ClassifierHead",
    "SplitProtocolError",
    "SplitInterrupted",
    "Transform",
    "Regularizer",
    "OPS",
    "as_head",
    "make_optimizer",
    "run_in_process",
    "serve_tcp",
    "device_tcp",
]
