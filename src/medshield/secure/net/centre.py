"""The healthcare centre of a networked deployment: deploys the model and collects results.

:func:`deploy_model` compiles nothing itself: given a
:class:`~medshield.secure.program.CompiledModel` it sends each server the public program and
its additive share of the weights (PE-HEALTH section IV-A), then deals dealer material for
``slots`` future request batches ahead of time (offline phase) and ships each server its
part. :func:`add_material` deals more later.

:class:`ResultCollector` is the only place where results exist in the clear: it listens (mutual
TLS, only ``server0``/``server1`` may connect), pairs the two output shares of each
``(sensor, rid)``, checks that both name the same patient and program, reconstructs and
decodes, and stores one record per request (``results.jsonl`` when a directory is given). A
share arriving twice for the same request and server is refused (replay).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medshield.secure.engine import HealthcareCentre
from medshield.secure.net.credentials import (
    AccessDenied,
    PartyCredentials,
    client_ssl_context,
    role_of,
    server_ssl_context,
)
from medshield.secure.net.messages import (
    ProtocolError,
    SeqGuard,
    check_rid,
    error_reply,
    program_from_json,
    program_to_json,
)
from medshield.secure.net.server_util import channel_party
from medshield.secure.program import CompiledModel, Program
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import Ring
from medshield.secure.sharing import reconstruct
from medshield.transport import (
    ChannelClosed,
    ChannelTimeout,
    ConnectionFailed,
    MalformedMessage,
    TcpChannel,
    TcpListener,
    TransportError,
)

__all__ = ["deploy_model", "add_material", "server_status", "ResultCollector", "InferenceResult"]

log = logging.getLogger("medshield.secure.net.centre")
_POLL = 0.5


class DeploymentError(RuntimeError):
    """A server refused a deployment step (the message says which and why)."""


class _ServerSession:
    """The centre's request/reply connection to one compute server."""

    def __init__(self, creds: PartyCredentials, address: tuple[str, int], party: int,
                 timeout: float, connect_wait: float = 15.0) -> None:
        deadline = time.monotonic() + connect_wait
        while True:  # the server may still be starting
            try:
                self.ch = TcpChannel.connect(*address, ssl_context=client_ssl_context(creds),
                                             timeout=timeout)
                break
            except ConnectionFailed:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.timeout = timeout
        if channel_party(self.ch) != f"server{party}":
            self.ch.close()
            raise AccessDenied(f"{address[0]}:{address[1]} is not server{party}; check the address")
        self.out, self.inp = SeqGuard(), SeqGuard()

    def call(self, msg: dict[str, Any]) -> dict[str, Any]:
        self.ch.send(self.out.stamp(msg))
        reply = self.inp.check(self.ch.recv(timeout=self.timeout))
        if reply["op"] == "error":
            raise DeploymentError(f"{self.ch.peer} refused {msg['op']}: {reply.get('message')}")
        return reply

    def close(self) -> None:
        self.ch.close()


def _deal(centre: HealthcareCentre, sessions: list[_ServerSession], first: int, slots: int,
          batch_size: int, chunk: int) -> None:
    for start in range(first, first + slots, chunk):
        ids = list(range(start, min(first + slots, start + chunk)))
        blobs: tuple[list[bytes], list[bytes]] = ([], [])
        for _ in ids:
            m0, m1 = centre.deal(batch_size)
            blobs[0].append(m0.to_bytes())
            blobs[1].append(m1.to_bytes())
        for p in (0, 1):
            sessions[p].call({"op": "material", "slots": ids, "blobs": blobs[p]})


def deploy_model(
    compiled: CompiledModel,
    *,
    creds: PartyCredentials,
    servers: tuple[tuple[str, int], tuple[str, int]],
    centre_address: tuple[str, int],
    slots: int = 100,
    batch_size: int = 1,
    rng: RandomSource | None = None,
    timeout: float = 60.0,
    chunk: int = 64,
    state_dir: str | Path | None = None,
    merge_batch: int = 0,
) -> str:
    """Deploy ``compiled`` on both servers and deal material for ``slots`` batches.

    Parameters
    ----------
    compiled
        The model (:func:`medshield.secure.compiler.compile_model`); its weights never leave
        this process except as uniformly random additive shares.
    creds
        The centre's credentials (CN ``centre``).
    servers
        ``((host, port) of server 0, (host, port) of server 1)``.
    centre_address
        Where the servers deliver output shares (a running :class:`ResultCollector`).
    slots, batch_size
        Material for ``slots`` requests of ``batch_size`` images each.
    merge_batch
        If > 0, also deal ``ceil(slots * batch_size / merge_batch)`` slots of
        ``merge_batch`` images: server 0 then runs up to that many queued images of
        different requests as one batch (one protocol run, the same rounds), which raises
        throughput under load. Unused slots are simply never used.
    rng
        Randomness of the shares and material (``None``: secure).
    state_dir
        If given, the public program is written there as ``program-<fingerprint>.json`` for
        a :class:`ResultCollector` started from the command line.

    Returns
    -------
    The program fingerprint.
    """
    if creds.name != "centre":
        raise ValueError(f"deploying needs the centre's credentials, got {creds.name!r}")
    centre = HealthcareCentre(compiled, rng)
    w0, w1 = centre.share_model()
    prog_json = program_to_json(compiled.program)
    if state_dir is not None:
        save_program(compiled.program, state_dir)
    sessions = [_ServerSession(creds, servers[p], p, timeout) for p in (0, 1)]
    try:
        for p, ws in ((0, w0), (1, w1)):
            sessions[p].call({"op": "deploy", "program": prog_json, "party": p,
                              "weights": ws.layers,
                              "centre": f"{centre_address[0]}:{centre_address[1]}"})
        _deal(centre, sessions, 0, slots, batch_size, chunk)
        if merge_batch > batch_size:
            extra = -(-slots * batch_size // merge_batch)
            _deal(centre, sessions, slots, extra, merge_batch, max(1, chunk * batch_size
                                                                   // merge_batch))
    finally:
        for s in sessions:
            s.close()
    fp = compiled.program.fingerprint()
    log.info("deployed program %s with %d material slots of batch %d", fp, slots, batch_size)
    return fp


def add_material(
    compiled: CompiledModel,
    *,
    creds: PartyCredentials,
    servers: tuple[tuple[str, int], tuple[str, int]],
    slots: int,
    batch_size: int = 1,
    rng: RandomSource | None = None,
    timeout: float = 60.0,
    chunk: int = 64,
) -> int:
    """Deal ``slots`` more batches of material for the deployed program; returns the first id."""
    centre = HealthcareCentre(compiled, rng)
    sessions = [_ServerSession(creds, servers[p], p, timeout) for p in (0, 1)]
    try:
        first = max(int(s.call({"op": "status"})["next_slot"]) for s in sessions)
        _deal(centre, sessions, first, slots, batch_size, chunk)
    finally:
        for s in sessions:
            s.close()
    return first


def server_status(creds: PartyCredentials, address: tuple[str, int], party: int,
                  timeout: float = 10.0) -> dict[str, Any]:
    """A server's ``status`` (program, material slots left, pending/completed/failed)."""
    s = _ServerSession(creds, address, party, timeout)
    try:
        return {k: v for k, v in s.call({"op": "status"}).items() if k not in ("op", "seq")}
    finally:
        s.close()


def save_program(program: Program, state_dir: str | Path) -> Path:
    """Write the public program where :class:`ResultCollector` finds it."""
    d = Path(state_dir)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"program-{program.fingerprint()}.json"
    path.write_text(program_to_json(program))
    return path


@dataclass
class InferenceResult:
    """One request's outcome at the centre (``output``: decoded scores, ``None`` if failed)."""

    sensor: str
    rid: str
    patient: str
    status: str
    output: list[Any] | None = None
    label: list[int] | None = None
    reason: str | None = None


class ResultCollector:
    """The centre's result service: pairs output shares per request and reconstructs.

    Parameters
    ----------
    creds
        The centre's credentials.
    host, port
        Where to listen (the ``centre_address`` given to :func:`deploy_model`).
    programs
        Known programs; more are loaded from ``state_dir`` by fingerprint.
    state_dir
        Where :func:`deploy_model` saved programs and where ``results.jsonl`` is appended.
    on_result
        Called with every finished :class:`InferenceResult`.
    """

    def __init__(
        self,
        *,
        creds: PartyCredentials,
        host: str = "127.0.0.1",
        port: int = 0,
        programs: list[Program] | None = None,
        state_dir: str | Path | None = None,
        on_result: Callable[[InferenceResult], None] | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.creds = creds
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.on_result = on_result
        self._programs = {p.fingerprint(): p for p in programs or []}
        self._listener = TcpListener(host, port, server_ssl_context(creds),
                                     handshake_timeout=timeout)
        self._pending: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
        self.results: dict[tuple[str, str], InferenceResult] = {}
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._reported = 0  # finished requests whose on_result callback has returned

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` the collector listens on."""
        return self._listener.address

    def start(self) -> ResultCollector:
        """Accept the servers' connections in daemon threads."""
        threading.Thread(target=self._accept_loop, name="centre-accept", daemon=True).start()
        log.info("centre collecting results on %s:%d", *self.address)
        return self

    def stop(self) -> None:
        """Stop listening."""
        self._stop.set()
        self._listener.close()

    def wait_for(self, count: int, timeout: float) -> bool:
        """Block until ``count`` requests finished (or failed) and were reported to
        ``on_result``; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self._reported >= count, timeout)

    def _program(self, fp: Any) -> Program:
        if fp not in self._programs and self.state_dir is not None and isinstance(fp, str):
            path = self.state_dir / f"program-{check_rid(fp, 'program')}.json"
            if path.is_file():
                self._programs[fp] = program_from_json(path.read_text())
        if fp not in self._programs:
            raise ProtocolError("program", "result for a program this centre did not deploy")
        return self._programs[fp]

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                ch = self._listener.accept(timeout=_POLL)
            except ChannelTimeout:
                continue
            except ChannelClosed:
                return
            except TransportError as exc:
                log.warning("centre refused a connection: %s", exc)
                continue
            threading.Thread(target=self._serve, args=(ch,), daemon=True).start()

    def _serve(self, ch: TcpChannel) -> None:
        try:
            name = channel_party(ch)
            if role_of(name) != "server":
                raise AccessDenied(f"party {name!r} may not deliver results")
            guard, out = SeqGuard(), SeqGuard()
            while not self._stop.is_set():
                try:
                    msg = ch.recv(timeout=_POLL)
                except ChannelTimeout:
                    continue
                except MalformedMessage as exc:
                    ch.send(out.stamp(error_reply("malformed", str(exc))))
                    continue
                try:
                    self._on_message(name, guard.check(msg, "result", "failed"))
                except ProtocolError as exc:
                    log.warning("centre refused a message from %s: %s", name, exc)
                    ch.send(out.stamp(error_reply(exc.code, str(exc))))
                    if exc.code == "seq":
                        return
                    continue
                ch.send(out.stamp({"op": "ok"}))
        except AccessDenied as exc:
            log.warning("centre refused %s: %s", ch.peer, exc)
        except TransportError as exc:
            log.info("centre: connection from %s ended (%s)", ch.peer, type(exc).__name__)
        finally:
            ch.close()

    def _on_message(self, name: str, msg: dict[str, Any]) -> None:
        party = int(name[-1])
        if msg.get("party") != party:
            raise ProtocolError("party", f"{name} sent a share labelled for another server")
        sensor = check_rid(msg.get("sensor"), "sensor name")
        if not sensor.startswith("sensor-"):
            raise ProtocolError("id", "a result must name the sensor that sent the request")
        key = (sensor, check_rid(msg.get("rid")))
        patient = check_rid(msg.get("patient"), "patient id")
        with self._cond:
            if key in self.results:
                raise ProtocolError("replay", f"request {key[1]} of {key[0]} is already "
                                    "finished; a second share is refused as a replay")
            parts = self._pending.setdefault(key, {})
            if party in parts:
                raise ProtocolError("replay", f"{name} already delivered request {key[1]} of "
                                    f"{key[0]}; refused as a replay")
            parts[party] = msg
            if msg["op"] == "failed":
                done = self._finish(key, InferenceResult(key[0], key[1], patient, "failed",
                                                         reason=str(msg.get("reason"))[:300]))
            elif len(parts) == 2:
                done = self._combine(key, parts)
            else:
                return
        if done is not None:
            try:
                if self.on_result is not None:
                    self.on_result(done)
            finally:
                with self._cond:
                    self._reported += 1
                    self._cond.notify_all()

    def _combine(self, key: tuple[str, str], parts: dict[int, dict[str, Any]]
                 ) -> InferenceResult | None:
        a, b = parts[0], parts[1]
        if a["op"] == "failed" or b["op"] == "failed":  # pragma: no cover - handled earlier
            return None
        if a.get("patient") != b.get("patient") or a.get("program") != b.get("program"):
            return self._finish(key, InferenceResult(
                key[0], key[1], str(a.get("patient")), "failed",
                reason="the two servers' shares name different patients or programs"))
        prog = self._program(a.get("program"))
        ring = Ring(prog.ring_bits)
        y0, y1 = a.get("y"), b.get("y")
        if not (isinstance(y0, np.ndarray) and isinstance(y1, np.ndarray)
                and y0.shape == y1.shape and tuple(y0.shape[1:]) == prog.output_shape):
            raise ProtocolError("shape", "output shares do not have the program's output shape")
        out = ring.decode(reconstruct(y0, y1, ring), prog.output_scale)
        flat = out.reshape(out.shape[0], -1)
        return self._finish(key, InferenceResult(
            key[0], key[1], str(a["patient"]), "ok", output=out.tolist(),
            label=[int(i) for i in flat.argmax(axis=1)]))

    def _finish(self, key: tuple[str, str], res: InferenceResult) -> InferenceResult:
        self._pending.pop(key, None)
        self.results[key] = res
        if self.state_dir is not None:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            with open(self.state_dir / "results.jsonl", "a") as fh:
                fh.write(json.dumps(asdict(res)) + "\n")
        log.info("centre: request %s of %s (patient %s): %s", key[1], key[0], res.patient,
                 res.status)
        return res
