"""An in-process Flower ``Grid``: the same ServerApp and ClientApps, without Ray or gRPC.

:func:`flwr.simulation.run_simulation` starts Ray, which takes ~20 s on a small machine;
the tests, the demo and the benchmarks instead run the *same* ``ServerApp``/``ClientApp``
objects over :class:`LocalGrid`, which delivers every message by calling the ClientApp of
its destination node synchronously (like Flower's ``InMemoryGrid`` + a SuperNode, minus the
processes). A ClientApp that raises is answered with an error reply, as a SuperNode does;
:meth:`LocalGrid.disconnect` makes a node vanish (its messages get no reply).
"""

from __future__ import annotations

import copy
import traceback
from collections.abc import Iterable, Mapping
from typing import Any
from uuid import uuid4

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import SUPERLINK_NODE_ID
from flwr.serverapp import Grid, ServerApp
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

__all__ = ["LocalGrid", "run_inprocess", "CLIENT_APP_ERROR"]

#: Error code of a reply whose ClientApp raised (Flower uses its own codes for the same).
CLIENT_APP_ERROR = 3


class LocalGrid(Grid):
    """A ``Grid`` whose nodes are ClientApps called in this process.

    Parameters
    ----------
    client_app : the ClientApp every node runs
    node_configs : one ``node_config`` per node (e.g. ``{"partition-id": i}``); node ids
        are ``1 .. len(node_configs)``
    run_config : the ``run_config`` every Context carries
    """

    def __init__(self, *, client_app: ClientApp, node_configs: list[Mapping[str, Any]],
                 run_config: Mapping[str, Any] | None = None) -> None:
        self.client_app = client_app
        self.run_config = dict(run_config or {})
        self.contexts = {
            i + 1: Context(run_id=1, node_id=i + 1, node_config=dict(cfg),
                           state=RecordDict(), run_config=dict(self.run_config))
            for i, cfg in enumerate(node_configs)
        }
        self.offline: set[int] = set()
        self._replies: dict[str, Message] = {}
        self._run = Run.create_empty(1)
        self.sent = 0

    # -- Grid ----------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return [n for n in self.contexts if n not in self.offline]

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        ids = []
        for msg in messages:
            msg_id = uuid4().hex
            # Flower's InMemoryGrid sets the id the same way (the SuperLink's job).
            msg.metadata.__dict__["_message_id"] = msg_id
            ids.append(msg_id)
            self.sent += 1
            node = msg.metadata.dst_node_id
            if node in self.offline or node not in self.contexts:
                continue  # lost: no reply will come
            delivered = Message(copy.deepcopy(msg.content), metadata=copy.deepcopy(msg.metadata))
            try:
                reply = self.client_app(delivered, self.contexts[node])
            except Exception as exc:  # a crashed ClientApp -> an error reply
                reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
                reply = Message(Error(code=CLIENT_APP_ERROR, reason=reason), reply_to=delivered)
            self._replies[msg_id] = reply
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *,
                         timeout: float | None = None) -> Iterable[Message]:
        return list(self.pull_messages(self.push_messages(messages)))

    # -- faults --------------------------------------------------------------------------
    def disconnect(self, node_id: int) -> None:
        """Take a node offline: it is not listed and its messages get no reply."""
        self.offline.add(node_id)

    def reconnect(self, node_id: int) -> None:
        self.offline.discard(node_id)


def run_inprocess(server_app: ServerApp, client_app: ClientApp, *, num_nodes: int,
                  run_config: Mapping[str, Any] | None = None,
                  grid: LocalGrid | None = None) -> LocalGrid:
    """Run ``server_app`` against ``num_nodes`` ClientApps over a :class:`LocalGrid`.

    Node ``i`` (id ``i + 1``) gets ``node_config = {"partition-id": i, "num-partitions":
    num_nodes}``, as in Flower's simulation. Returns the grid (its contexts keep the
    ClientApps' state).
    """
    grid = grid or LocalGrid(
        client_app=client_app,
        node_configs=[{"partition-id": i, "num-partitions": num_nodes} for i in range(num_nodes)],
        run_config=run_config,
    )
    context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(),
                      run_config=dict(run_config or {}))
    # Messages take their source identity from TaskIdentity; set it as Flower's own
    # compat runner does for a ServerApp (flwr.server.compat.app), and restore it after.
    saved = (TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id)
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = grid.run.run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    try:
        server_app(grid, context)
    finally:
        TaskIdentity._task_id, TaskIdentity._run_id, TaskIdentity._node_id = saved
    return grid
