"""The sensor of a networked deployment: share readings, send one share to each server.

Needs numpy only (no torch): it uses :mod:`medshield.secure.sharing` and the numpy-only
wire client :mod:`.wire`. PE-HEALTH section IV-B: the sensor encodes its readings in fixed
point, splits them into two additive shares over ``Z_2^l`` and sends share ``i`` to server
``i`` over mutual TLS. Each request carries an id (``rid``, unique for this sensor) and the
patient id; the result goes to the healthcare centre only -- the sensor just learns whether
both servers accepted its shares.
"""

from __future__ import annotations

import ssl
import uuid
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from medshield.secure.net.credentials import (
    AccessDenied,
    PartyCredentials,
    client_ssl_context,
    peer_name,
)
from medshield.secure.net.wire import WireConnection, WireError
from medshield.secure.randomness import RandomSource
from medshield.secure.sharing import share_input

__all__ = ["Sensor", "SensorError"]


class SensorError(RuntimeError):
    """A server refused the sensor's request (the message carries the server's reason)."""

    def __init__(self, message: str, code: str = "error") -> None:
        super().__init__(message)
        self.code = code


class Sensor:
    """A registered sensor holding connections to both compute servers.

    Parameters
    ----------
    creds
        The sensor's credentials (CN ``sensor-<id>``, issued by the centre).
    servers
        ``((host, port) of server 0, (host, port) of server 1)``.
    timeout
        Seconds for connecting and for each reply.
    rng
        Randomness of the shares (``None``: secure; a seeded source is for tests only).
    """

    def __init__(
        self,
        *,
        creds: PartyCredentials,
        servers: tuple[tuple[str, int], tuple[str, int]],
        timeout: float = 30.0,
        rng: RandomSource | None = None,
    ) -> None:
        self.name = creds.name
        self.servers = servers
        self.timeout = timeout
        self.rng = rng
        self._ctx: ssl.SSLContext = client_ssl_context(creds)
        self._conns: list[WireConnection] = []
        self._seq = [0, 0]
        self._expect = [0, 0]
        self.params: dict[str, Any] | None = None

    def _connect(self) -> None:
        if self._conns:
            return
        conns = [WireConnection(h, p, ssl_context=self._ctx, timeout=self.timeout)
                 for h, p in self.servers]
        for party, conn in enumerate(conns):  # share i must reach server i and nobody else
            try:
                name = peer_name(conn.sock)
            except AccessDenied:
                name = "?"
            if name != f"server{party}":
                for c in conns:
                    c.close()
                host, port = self.servers[party]
                raise SensorError(
                    f"{host}:{port} is {name!r}, not server{party}: refusing to send it a "
                    "share (check the order of --servers: server 0 first)", "identity")
        self._conns = conns
        self._seq, self._expect = [0, 0], [0, 0]

    def _call(self, party: int, msg: dict[str, Any]) -> dict[str, Any]:
        conn = self._conns[party]
        msg = dict(msg, seq=self._seq[party])
        self._seq[party] += 1
        conn.send(msg)
        return self._reply(party)

    def _reply(self, party: int) -> dict[str, Any]:
        reply = self._conns[party].recv()
        if reply.get("seq") != self._expect[party]:
            raise SensorError(f"server {party} answered out of sequence; reconnect", "seq")
        self._expect[party] += 1
        if reply.get("op") == "error":
            raise SensorError(f"server {party} refused: {reply.get('message')}",
                              str(reply.get("code")))
        return reply

    def fetch_params(self) -> dict[str, Any]:
        """The deployed program's public parameters (both servers must agree)."""
        self._connect()
        got = [self._call(p, {"op": "params"}) for p in (0, 1)]
        if got[0].get("program") != got[1].get("program"):
            raise SensorError("the two servers run different programs; ask the centre to "
                              "redeploy", "program")
        self.params = got[0]
        return got[0]

    def submit(self, x: ArrayLike, *, patient: str, rid: str | None = None) -> str:
        """Share ``x`` (``(batch, *input_shape)`` readings) and send it; returns the request id.

        Raises
        ------
        SensorError
            If a server refused the request (replayed id, wrong shape, no material, ...).
        WireError
            If a server cannot be reached.
        """
        try:
            self._connect()
            if self.params is None:
                self.fetch_params()
            assert self.params is not None
            xa = np.asarray(x, dtype=np.float64)
            if tuple(xa.shape[1:]) != tuple(self.params["input_shape"]):
                raise SensorError(
                    f"readings have per-sample shape {xa.shape[1:]}, the deployed model takes "
                    f"{tuple(self.params['input_shape'])} (put the batch axis first)", "shape")
            rid = rid if rid is not None else uuid.uuid4().hex
            shares = share_input(xa, frac_bits=int(self.params["frac_bits"]),
                                 ring_bits=int(self.params["ring_bits"]), rng=self.rng)
            for p in (0, 1):  # send both first, then read both acknowledgements
                self._conns[p].send({"op": "input", "rid": rid, "patient": patient,
                                     "x": shares[p], "seq": self._seq[p]})
                self._seq[p] += 1
            errors = []
            for p in (0, 1):
                try:
                    self._reply(p)
                except SensorError as exc:
                    errors.append(exc)
            if errors:
                raise errors[0]
            return rid
        except WireError:
            self.close()
            raise

    def close(self) -> None:
        """Close both connections."""
        for c in self._conns:
            c.close()
        self._conns = []

    def __enter__(self) -> Sensor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
