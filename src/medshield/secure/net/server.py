"""A PE-HEALTH compute server as a network service.

One process per server (``medshield secure serve --party 0|1``). It listens on one mutual-TLS
port (certificates from the centre's CA, :mod:`.credentials`) and serves, by the identity of
the connecting party:

* ``centre``: ``deploy`` (public program + this server's weight shares + where to deliver
  results), ``material`` (dealer material, one *slot* per future request batch, made ahead
  of time), ``status``;
* ``sensor-*``: ``params`` (public fixed-point parameters) and ``input`` (this server's share
  of a batch of readings, tagged ``rid`` and ``patient``); answered ``ok`` or ``error``;
* ``server0`` (at server 1 only): the server-to-server link.

Server 0 schedules (:mod:`.pipeline`): it takes queued requests in arrival order -- as many
as exactly fill one material slot, so several requests can share one batched protocol run --
and sends ``run`` to server 1, which waits (briefly) for its own shares of them, checks
sensor, patient, batch and slot, and answers ``ok``. Both then run
:class:`~medshield.secure.engine.ComputeServer` over the link and send each request's rows
of their output share to the centre.
Material is consumed exactly once; a ``(sensor, rid)`` already accepted is refused, so a
replayed request can neither reuse masks nor yield a second result.

Robustness: a malformed frame, a message out of sequence, a bad shape or id is answered with
an ``error`` that names the problem and the fix, and only that connection is affected; a
party that disconnects mid-request costs that request only (it is reported to the centre as
``failed``) and every wait has a timeout. Logs name parties, request ids, shapes and sizes,
never shares, weights, material or keys.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

import numpy as np

from medshield.secure.engine import ComputeServer
from medshield.secure.net.credentials import (
    AccessDenied,
    PartyCredentials,
    role_of,
    server_ssl_context,
)
from medshield.secure.net.messages import (
    ProtocolError,
    SeqGuard,
    check_rid,
    error_reply,
    program_from_json,
)
from medshield.secure.net.pipeline import RequestPipeline, _Deployment
from medshield.secure.net.server_util import channel_party
from medshield.secure.ring import Ring
from medshield.transport import (
    ChannelClosed,
    ChannelTimeout,
    MalformedMessage,
    TcpChannel,
    TcpListener,
    TransportError,
)

__all__ = ["SecureServer", "parse_address"]

log = logging.getLogger("medshield.secure.net.server")
_POLL = 0.5  # seconds between checks of the stop flag while idle
MAX_BATCH = 4096


def parse_address(text: str) -> tuple[str, int]:
    """``"host:port"`` -> ``(host, port)`` with a clear error."""
    host, sep, port = str(text).rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"address {text!r} must look like HOST:PORT, e.g. 127.0.0.1:7301")
    return host, int(port)


class SecureServer(RequestPipeline):
    """Compute server ``party`` of a networked deployment.

    Parameters
    ----------
    party
        0 or 1.
    creds
        This server's credentials (CN ``server0`` / ``server1``).
    host, port
        Where to listen (``port=0``: any free port, see :attr:`address`).
    peer
        Server 1's ``(host, port)``; required for party 0 (it dials the link).
    timeout
        Seconds for any network wait of a request (link rounds, acknowledgements).
    input_wait
        Seconds server 1 waits for its share of a request that server 0 scheduled.
    """

    def __init__(
        self,
        *,
        party: int,
        creds: PartyCredentials,
        host: str = "127.0.0.1",
        port: int = 0,
        peer: tuple[str, int] | None = None,
        timeout: float = 30.0,
        input_wait: float = 10.0,
    ) -> None:
        if party not in (0, 1):
            raise ValueError(f"party must be 0 or 1, got {party!r}")
        if party == 0 and peer is None:
            raise ValueError("server 0 needs peer=(host, port) of server 1 (it opens the link)")
        if creds.name != f"server{party}":
            raise ValueError(
                f"server {party} must run with the credentials of 'server{party}', got "
                f"{creds.name!r}; issue them with `medshield secure issue --name server{party}`"
            )
        self.party = party
        self.creds = creds
        self.peer = peer
        self.timeout = timeout
        self.input_wait = input_wait
        self._listener = TcpListener(host, port, server_ssl_context(creds),
                                     handshake_timeout=timeout)
        self._cond = threading.Condition()
        self._dep: _Deployment | None = None
        self._inputs: dict[tuple[str, str], tuple[str, np.ndarray]] = {}
        self._seen: set[tuple[str, str]] = set()
        self._queue: collections.deque[tuple[str, str]] = collections.deque()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._link: TcpChannel | None = None
        self._link_out, self._link_in = SeqGuard(), SeqGuard()
        self._centre: TcpChannel | None = None
        self._centre_guard = SeqGuard()
        self.completed = 0
        self.failed = 0

    # ------------------------------------------------------------------ lifecycle
    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` this server listens on."""
        return self._listener.address

    def start(self) -> SecureServer:
        """Start accepting connections (and, for party 0, the scheduler) in daemon threads."""
        self._spawn(self._accept_loop, "accept")
        if self.party == 0:
            self._spawn(self._scheduler, "scheduler")
        log.info("server %d listening on %s:%d", self.party, *self.address)
        return self

    def serve_forever(self) -> None:
        """:meth:`start` and block until :meth:`stop` (or Ctrl-C)."""
        self.start()
        try:
            while not self._stop.wait(_POLL):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving and close every connection."""
        self._stop.set()
        self._listener.close()
        for ch in (self._link, self._centre):
            if ch is not None:
                ch.close()
        with self._cond:
            self._cond.notify_all()

    def _spawn(self, fn: Any, name: str, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, name=f"server{self.party}-{name}",
                             daemon=True)
        t.start()
        self._threads.append(t)

    def status(self) -> dict[str, Any]:
        """Deployment fingerprint, material slots left, requests pending/completed/failed."""
        with self._cond:
            dep = self._dep
            return {
                "party": self.party,
                "program": dep.program.fingerprint() if dep else None,
                "slots": len(dep.slots) if dep else 0,
                "next_slot": (max(dep.slots) + 1 if dep and dep.slots else 0),
                "pending": len(self._inputs),
                "completed": self.completed,
                "failed": self.failed,
            }

    # ------------------------------------------------------------------ connections
    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ch = self._listener.accept(timeout=_POLL)
            except ChannelTimeout:
                continue
            except ChannelClosed:
                return
            except TransportError as exc:  # failed handshake: unregistered party
                log.warning("server %d refused a connection: %s", self.party, exc)
                continue
            self._spawn(self._handle, "conn", ch)

    def _handle(self, ch: TcpChannel) -> None:
        try:
            name = channel_party(ch)
            role = role_of(name)
            if role == "sensor":
                self._serve(ch, name, ("params", "input"), self._on_sensor)
            elif role == "centre":
                self._serve(ch, name, ("deploy", "material", "status"), self._on_centre)
            elif name == "server0" and self.party == 1:
                self._serve_link(ch)
            else:
                raise AccessDenied(f"party {name!r} may not connect to server {self.party}")
        except AccessDenied as exc:
            log.warning("server %d refused %s: %s", self.party, ch.peer, exc)
            try:
                ch.send(error_reply("access", str(exc)))
            except TransportError:
                pass
        except TransportError as exc:
            log.info("server %d: connection from %s ended (%s)", self.party, ch.peer, exc)
        finally:
            ch.close()

    def _serve(self, ch: TcpChannel, name: str, ops: tuple[str, ...], handler: Any) -> None:
        """Request/reply loop of one connection; errors are answered, the loop goes on."""
        guard, out = SeqGuard(), SeqGuard()
        log.info("server %d: %s connected from %s", self.party, name, ch.peer)
        while not self._stop.is_set():
            try:
                msg = ch.recv(timeout=_POLL)
            except ChannelTimeout:
                continue
            except MalformedMessage as exc:
                log.warning("server %d: malformed message from %s: %s", self.party, name, exc)
                ch.send(out.stamp(error_reply("malformed", str(exc))))
                continue
            except TransportError as exc:
                log.info("server %d: %s left (%s)", self.party, name, type(exc).__name__)
                return
            try:
                reply = handler(name, guard.check(msg, *ops))
            except ProtocolError as exc:
                log.warning("server %d: refused a message from %s (%s): %s", self.party, name,
                            exc.code, exc)
                ch.send(out.stamp(error_reply(exc.code, str(exc))))
                if exc.code == "seq":
                    return
                continue
            except (ValueError, TypeError, KeyError) as exc:  # e.g. inconsistent deployment
                log.warning("server %d: invalid %s from %s: %s", self.party, msg.get("op"),
                            name, type(exc).__name__)
                ch.send(out.stamp(error_reply("invalid", f"invalid {msg.get('op')} message "
                                              f"({type(exc).__name__}: {exc})")))
                continue
            ch.send(out.stamp(reply))

    # ------------------------------------------------------------------ centre
    def _on_centre(self, name: str, msg: dict[str, Any]) -> dict[str, Any]:
        if msg["op"] == "status":
            return {"op": "status", **self.status()}
        if msg["op"] == "deploy":
            return self._deploy(msg)
        return self._add_material(msg)

    def _deploy(self, msg: dict[str, Any]) -> dict[str, Any]:
        prog = program_from_json(str(msg.get("program", "")))
        weights = msg.get("weights")
        if not isinstance(weights, dict) or msg.get("party") != self.party:
            raise ProtocolError("deploy", f"deploy message without weight shares for server "
                                          f"{self.party}; the centre must send each server its own")
        from medshield.secure.net.server_util import centre_address, model_share

        share = model_share(prog, self.party, weights)
        cs = ComputeServer(party=self.party, program=prog, model_share=share,
                           channel=_NO_CHANNEL, timeout=self.timeout)
        with self._cond:
            self._dep = _Deployment(prog, cs, centre_address(msg.get("centre")),
                                    Ring(prog.ring_bits))
            self._inputs.clear()
            self._queue.clear()
        if self._centre is not None:
            self._centre.close()
            self._centre = None
        log.info("server %d: deployed program %s (%d steps)", self.party, prog.fingerprint(),
                 len(prog.ops))
        return {"op": "ok", "program": prog.fingerprint()}

    def _add_material(self, msg: dict[str, Any]) -> dict[str, Any]:
        from medshield.secure.net.server_util import material_header

        slots, blobs = msg.get("slots"), msg.get("blobs")
        if not (isinstance(slots, list) and isinstance(blobs, list) and len(slots) == len(blobs)):
            raise ProtocolError("material", "material needs equal-length 'slots' and 'blobs'")
        with self._cond:
            dep = self._require_deployed()
            fp = dep.program.fingerprint()
            parsed = []
            for slot, blob in zip(slots, blobs, strict=True):
                mfp, party, batch = material_header(blob)
                if mfp != fp or party != self.party or not isinstance(slot, int) or slot < 0:
                    raise ProtocolError("material", f"material slot is for server {party} / "
                                        f"program {mfp}; this is server {self.party} running {fp}")
                if slot in dep.slots:
                    raise ProtocolError("material", f"material slot {slot} already exists; "
                                        "material may be used once only: deal new slot ids")
                parsed.append((slot, batch, bytes(blob)))
            for slot, batch, blob in parsed:
                dep.slots[slot] = (batch, blob)
            self._cond.notify_all()
        log.info("server %d: received %d material slots", self.party, len(parsed))
        return {"op": "ok", "slots": len(dep.slots)}

    def _require_deployed(self) -> _Deployment:
        if self._dep is None:
            raise ProtocolError("not-deployed", "no model deployed on this server yet; run "
                                "`medshield secure deploy-model` on the healthcare centre first")
        return self._dep

    # ------------------------------------------------------------------ sensors
    def _on_sensor(self, name: str, msg: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            dep = self._require_deployed()
        prog = dep.program
        if msg["op"] == "params":
            return {"op": "params", "program": prog.fingerprint(),
                    "input_shape": list(prog.input_shape), "frac_bits": prog.frac_bits,
                    "ring_bits": prog.ring_bits}
        rid = check_rid(msg.get("rid"))
        patient = check_rid(msg.get("patient"), "patient id")
        x = msg.get("x")
        if not isinstance(x, np.ndarray) or x.dtype != dep.ring.dtype:
            raise ProtocolError("share", f"'x' must be a {dep.ring.dtype} array of ring "
                                "elements (medshield.secure.sharing.share_input)")
        if tuple(x.shape[1:]) != prog.input_shape or not 1 <= x.shape[0] <= MAX_BATCH:
            raise ProtocolError("shape", f"input share has shape {x.shape}; the deployed model "
                                f"takes (batch <= {MAX_BATCH}, *{prog.input_shape})")
        key = (name, rid)
        with self._cond:
            if key in self._seen:
                raise ProtocolError("replay", f"request id {rid!r} of {name} was already "
                                    "used: refused as a replay; send every request with a new id")
            if not any(b == x.shape[0] for b, _ in dep.slots.values()):
                raise ProtocolError("no-material", f"no dealer material left for a batch of "
                                    f"{x.shape[0]}; the centre must deal more "
                                    "(medshield secure deploy-model --slots N)")
            self._seen.add(key)
            self._inputs[key] = (patient, x)
            if self.party == 0:
                self._queue.append(key)
            self._cond.notify_all()
        log.info("server %d: accepted request %s of %s (batch %d)", self.party, rid, name,
                 x.shape[0])
        return {"op": "ok", "rid": rid}

class _NoChannel:
    """Placeholder until a request runs (the link is attached per run)."""

    def send(self, msg: dict[str, Any]) -> None:  # pragma: no cover - never called
        raise RuntimeError("no server-to-server link attached")

    def recv(self, timeout: float | None = None) -> dict[str, Any]:  # pragma: no cover
        raise RuntimeError("no server-to-server link attached")


_NO_CHANNEL = _NoChannel()
