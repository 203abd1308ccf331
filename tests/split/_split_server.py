"""A split-learning server process for tests/split/test_split_tcp.py (not a test module).

Usage: python _split_server.py DEVICES EPOCHS OPTIMIZER LR OUT.pt

Prints ``PORT <n>`` once listening on 127.0.0.1, serves one run, saves the server half's
state dict, the last device-half state and the history to ``OUT.pt``, prints ``DONE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from _split_fixtures import halves  # noqa: E402

from medshield.split import SplitServer, serve_tcp  # noqa: E402
from medshield.transport import TcpListener  # noqa: E402

if __name__ == "__main__":
    # one thread, as in the test process (tests/split/conftest.py): conv biases before
    # BatchNorm get pure rounding-noise gradients, which Adam scales up to lr-sized steps, so
    # the comparison with centralised training needs the same reduction order on both sides
    torch.set_num_threads(1)
    devices, epochs, optimizer, lr, out = (
        int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], float(sys.argv[4]), sys.argv[5]
    )
    _, server_half = halves(0)
    server = SplitServer(server_half, optimizer=optimizer, lr=lr, device="cpu")
    with TcpListener("127.0.0.1", 0) as listener:
        print(f"PORT {listener.port}", flush=True)
        hist = serve_tcp(server, listener, devices=devices, epochs=epochs, accept_timeout=30,
                         timeout=30)
    torch.save({"server": server.head.model.state_dict(), "device": hist.device_state,
                "history": hist.as_dict()}, out)
    print("DONE", flush=True)
