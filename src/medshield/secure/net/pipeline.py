"""The request pipeline of a compute server: scheduling, the server-to-server run, delivery.

Mixed into :class:`~medshield.secure.net.server.SecureServer` (which owns the listener, the
connections and the state these methods use). Server 0 schedules: it takes the longest
first-in-first-out run of queued requests whose images exactly fill one dealer-material slot
(several requests then share one protocol run: PE-HEALTH's online phase is batched over
images, with the same number of rounds), announces it to server 1 (``run``: slot and
``[sensor, rid, patient, batch]`` per request), and both servers evaluate the program over
the link and send each request's rows of their output share to the centre. Server 1 waits
(at most ``input_wait``) for its own shares, and refuses a group whose requests it does not
hold with the same patient and batch size; requests it does hold go back to the front of
server 0's queue.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from medshield.secure.comm import Peer
from medshield.secure.dealer import Material
from medshield.secure.engine import ComputeServer
from medshield.secure.net.credentials import AccessDenied, PartyCredentials, client_ssl_context
from medshield.secure.net.messages import ProtocolError, SeqGuard, error_reply
from medshield.secure.net.server_util import channel_party
from medshield.secure.program import Program
from medshield.secure.ring import Ring
from medshield.transport import ChannelTimeout, TcpChannel, TransportError

__all__ = ["RequestPipeline"]

log = logging.getLogger("medshield.secure.net.server")
_POLL = 0.5
_Item = tuple[str, str, str, np.ndarray]  # sensor, rid, patient, input share


@dataclass
class _Deployment:
    program: Program
    server: ComputeServer
    centre: tuple[str, int]
    ring: Ring
    slots: dict[int, tuple[int, bytes]] = field(default_factory=dict)  # id -> (batch, blob)


class RequestPipeline:
    """Scheduling and execution of requests (see the module docstring)."""

    party: int
    creds: PartyCredentials
    peer: tuple[str, int] | None
    timeout: float
    input_wait: float
    completed: int
    failed: int
    _cond: threading.Condition
    _dep: _Deployment | None
    _inputs: dict[tuple[str, str], tuple[str, np.ndarray]]
    _queue: collections.deque[tuple[str, str]]
    _stop: threading.Event
    _link: TcpChannel | None
    _link_out: SeqGuard
    _link_in: SeqGuard
    _centre: TcpChannel | None
    _centre_guard: SeqGuard

    # ------------------------------------------------------------------ scheduling (party 0)
    def _next_group(self, dep: _Deployment) -> tuple[list[_Item], int | None]:
        """Pop the longest FIFO prefix of queued requests that exactly fills a material slot.

        Called with the lock held. Returns the requests and the slot id (``None``: the first
        request fits no slot; it is returned alone, to be failed).
        """
        sizes = {b for b, _ in dep.slots.values()}
        cap = max(sizes, default=0)
        total, best, n_items = 0, 0, 0
        for key in self._queue:
            item = self._inputs.get(key)
            n = item[1].shape[0] if item is not None else 0
            if item is None or total + n > cap:
                break
            total += n
            n_items += 1
            if total in sizes:
                best = n_items
        take = max(best, 1)
        group: list[_Item] = []
        for _ in range(take):
            key = self._queue.popleft()
            item = self._inputs.pop(key, None)
            if item is not None:
                group.append((key[0], key[1], item[0], item[1]))
        if not best or not group:
            return group, None
        batch = sum(g[3].shape[0] for g in group)
        slot = min(s for s, (b, _) in dep.slots.items() if b == batch)
        return group, slot

    def _scheduler(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                if not self._queue:
                    self._cond.wait(_POLL)
                    continue
                dep = self._dep
                if dep is None:
                    self._queue.clear()
                    continue
                group, slot = self._next_group(dep)
                blob = dep.slots.pop(slot)[1] if slot is not None else None
            if slot is None or blob is None:
                for item in group:
                    self._fail(dep, item, "no dealer material left for this batch size")
                continue
            self._run_group(dep, group, slot, blob)

    def _ensure_link(self) -> TcpChannel:
        if self._link is None or self._link.closed:
            assert self.peer is not None
            ch = TcpChannel.connect(*self.peer, ssl_context=client_ssl_context(self.creds),
                                    timeout=self.timeout)
            if channel_party(ch) != "server1":
                ch.close()
                raise AccessDenied(f"{self.peer} is not server1; check --peer")
            self._link, self._link_out, self._link_in = ch, SeqGuard(), SeqGuard()
            log.info("server 0: link to server 1 at %s:%d open", *self.peer)
        return self._link

    def _run_group(self, dep: _Deployment, group: list[_Item], slot: int, blob: bytes) -> None:
        batch = sum(g[3].shape[0] for g in group)
        try:
            link = self._ensure_link()
            link.send(self._link_out.stamp({
                "op": "run", "slot": slot,
                "items": [[s, r, p, int(x.shape[0])] for s, r, p, x in group]}))
            reply = self._link_in.check(link.recv(timeout=self.timeout + self.input_wait))
        except (TransportError, AccessDenied, ProtocolError) as exc:
            self._drop_link()
            with self._cond:  # nothing was computed: the slot is still fresh
                dep.slots[slot] = (batch, blob)
            for item in group:
                self._fail(dep, item, f"cannot reach server 1 ({exc})")
            return
        if reply["op"] != "ok":
            missing = {tuple(k) for k in reply.get("missing", []) if isinstance(k, list)}
            with self._cond:  # server 1 did not use the slot: it is still fresh
                dep.slots[slot] = (batch, blob)
                for item in reversed(group):  # requests server 1 has go back to the queue
                    if (item[0], item[1]) not in missing:
                        self._inputs[(item[0], item[1])] = (item[2], item[3])
                        self._queue.appendleft((item[0], item[1]))
            for item in group:
                if (item[0], item[1]) in missing:
                    self._fail(dep, item, f"server 1 refused: {reply.get('message', '?')}")
            return
        try:
            y = self._compute(dep, link, blob, np.concatenate([g[3] for g in group]))
        except (TransportError, ValueError) as exc:
            self._drop_link()
            for item in group:
                self._fail(dep, item, f"link to server 1 failed mid-request ({exc})")
            return
        self._deliver_group(dep, group, y)

    def _drop_link(self) -> None:
        if self._link is not None:
            self._link.close()
            self._link = None

    # ------------------------------------------------------------------ link (party 1)
    def _gather(self, msg: dict[str, Any]) -> tuple[_Deployment | None, list[_Item], Any, str]:
        """Wait for this server's shares of a scheduled group; take them if all are here."""
        items, slot = msg.get("items"), msg.get("slot")
        if not isinstance(items, list) or not items:
            return None, [], [], "run message without items"
        keys = [(str(it[0]), str(it[1])) for it in items if isinstance(it, list) and len(it) == 4]
        deadline = time.monotonic() + self.input_wait
        with self._cond:
            while (any(k not in self._inputs for k in keys)
                   and time.monotonic() < deadline and not self._stop.is_set()):
                self._cond.wait(min(_POLL, max(0.0, deadline - time.monotonic())))
            dep = self._dep
            if dep is None:
                return None, [], [], "no model deployed on server 1"
            missing = []
            for it, key in zip(items, keys, strict=True):
                have = self._inputs.get(key)
                if have is None or have[0] != it[2] or have[1].shape[0] != it[3]:
                    missing.append(list(key))
                    self._inputs.pop(key, None)  # inconsistent with server 0: drop it
            if missing:
                return dep, [], missing, (f"server 1 never received (or holds a different "
                                          f"patient/batch for) {len(missing)} of the requests")
            batch = sum(int(it[3]) for it in items)
            if slot not in dep.slots or dep.slots[slot][0] != batch:
                return dep, [], [], f"server 1 has no material slot {slot} for a batch of {batch}"
            group = [(k[0], k[1], *self._inputs.pop(k)) for k in keys]
            return dep, group, [], ""

    def _serve_link(self, ch: TcpChannel) -> None:
        guard, out = SeqGuard(), SeqGuard()
        log.info("server 1: link from server 0 (%s) open", ch.peer)
        while not self._stop.is_set():
            try:
                msg = guard.check(ch.recv(timeout=_POLL), "run")
            except ChannelTimeout:
                continue
            except (TransportError, ProtocolError) as exc:
                log.warning("server 1: link from server 0 closed (%s)", exc)
                return
            dep, group, missing, problem = self._gather(msg)
            if problem:
                log.warning("server 1: cannot run a group of requests: %s", problem)
                ch.send(out.stamp(dict(error_reply("run", problem), missing=missing)))
                continue
            assert dep is not None
            with self._cond:
                blob = dep.slots.pop(msg["slot"])[1]
            ch.send(out.stamp({"op": "ok"}))
            try:
                y = self._compute(dep, ch, blob, np.concatenate([g[3] for g in group]))
            except (TransportError, ValueError) as exc:
                for item in group:
                    self._fail(dep, item, f"link to server 0 failed mid-request ({exc})")
                return
            self._deliver_group(dep, group, y)

    # ------------------------------------------------------------------ compute and deliver
    def _compute(self, dep: _Deployment, link: TcpChannel, blob: bytes, x: np.ndarray) -> Any:
        cs = dep.server
        cs.peer = Peer(link, self.party, timeout=self.timeout)
        cs.load_material(Material.from_bytes(blob))
        return cs.run(x)

    def _centre_link(self, dep: _Deployment) -> TcpChannel:
        if self._centre is None or self._centre.closed:
            ch = TcpChannel.connect(*dep.centre, ssl_context=client_ssl_context(self.creds),
                                    timeout=self.timeout)
            if channel_party(ch) != "centre":
                ch.close()
                raise AccessDenied(f"{dep.centre} is not the healthcare centre")
            self._centre, self._centre_guard = ch, SeqGuard()
        return self._centre

    def _send_centre(self, dep: _Deployment, msg: dict[str, Any]) -> None:
        for attempt in (0, 1):  # one reconnect if the centre restarted
            try:
                ch = self._centre_link(dep)
                ch.send(self._centre_guard.stamp(dict(msg)))
                reply = ch.recv(timeout=self.timeout)
                if reply.get("op") != "ok":
                    log.warning("server %d: the centre refused %s of request %s: %s",
                                self.party, msg["op"], msg["rid"], reply.get("message"))
                return
            except (TransportError, AccessDenied) as exc:
                if self._centre is not None:
                    self._centre.close()
                    self._centre = None
                if attempt:
                    log.error("server %d: cannot reach the centre for request %s: %s",
                              self.party, msg["rid"], exc)

    def _deliver_group(self, dep: _Deployment, group: list[_Item], y: Any) -> None:
        start = 0
        for sensor, rid, patient, x in group:
            n = x.shape[0]
            self._send_centre(dep, {"op": "result", "rid": rid, "sensor": sensor,
                                    "patient": patient, "party": self.party,
                                    "y": y[start : start + n],
                                    "program": dep.program.fingerprint()})
            start += n
            log.info("server %d: request %s of %s done (group of %d), output share sent to "
                     "the centre", self.party, rid, sensor, len(group))
        with self._cond:
            self.completed += len(group)

    def _fail(self, dep: _Deployment | None, item: _Item, reason: str) -> None:
        sensor, rid, patient, _ = item
        with self._cond:
            self.failed += 1
        log.error("server %d: request %s of %s failed: %s", self.party, rid, sensor, reason)
        if dep is not None:
            self._send_centre(dep, {"op": "failed", "rid": rid, "sensor": sensor,
                                    "patient": patient, "party": self.party, "reason": reason,
                                    "program": dep.program.fingerprint()})


