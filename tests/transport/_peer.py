"""A peer process for tests/transport/test_transport_processes.py (not a test module).

Usage: python _peer.py serve|partial

Prints ``PORT <n>`` once listening on 127.0.0.1 (OS-assigned port), then:

* ``serve``: accepts connections one after the other (until ``{"op": "exit"}`` or 120 s
  without a client; the tests simply kill it). Requests: ``affine`` (reply ``a * x + b`` and
  ``x.sum()``), ``stats`` (reply this end's counters, snapshotted before the reply is sent),
  ``last_error`` (reply the type and message of the last transport error this server saw),
  ``silent`` (no reply), ``bye`` (close the connection), ``exit``.
* ``partial``: answers one request, then writes only the first bytes of a frame and sleeps
  (the test kills it mid-frame).
"""

from __future__ import annotations

import sys
import time

import torch

from medshield.transport import TcpListener, TransportError, encode_frame


def serve(listener: TcpListener) -> None:
    last_error = {"error": None, "message": None}
    while True:
        ch = listener.accept(timeout=120)
        with ch:
            while not ch.closed:
                try:
                    msg = ch.recv(timeout=30)
                except TransportError as exc:
                    last_error = {"error": type(exc).__name__, "message": str(exc)}
                    continue  # MalformedMessage keeps the channel open; others closed it
                op = msg.get("op")
                if op == "affine":
                    x = msg["x"]
                    ch.send({"y": msg["a"] * x + msg["b"], "sum": x.sum(), "echo": msg["extra"]})
                elif op == "stats":
                    ch.send({"stats": ch.stats.as_dict()})
                elif op == "last_error":
                    ch.send(last_error)
                elif op == "bye":
                    break
                elif op == "exit":
                    return


def partial(listener: TcpListener) -> None:
    ch = listener.accept(timeout=120)
    msg = ch.recv(timeout=30)
    ch.send({"y": msg["x"] + 1})
    frame = encode_frame({"y": torch.zeros(1000)})
    ch._sock.setblocking(True)  # test helper: write a raw partial frame on purpose
    ch._sock.sendall(frame[:100])
    print("PARTIAL", flush=True)
    time.sleep(60)


if __name__ == "__main__":
    with TcpListener("127.0.0.1", 0) as lst:
        print(f"PORT {lst.port}", flush=True)
        {"serve": serve, "partial": partial}[sys.argv[1]](lst)
