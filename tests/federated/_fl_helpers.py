"""Drive one strategy round over the in-process grid with scripted clients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Strategy

from medshield.federated.driver import run_inprocess


def scripted_round(strategy: Strategy, arrays: dict[str, np.ndarray],
                   deltas: Sequence[dict[str, np.ndarray]], *, fail: set[int] = frozenset(),
                   weights: Sequence[float] | None = None, server_round: int = 1
                   ) -> tuple[ArrayRecord | None, Any, list[Message]]:
    """Client ``i`` replies ``arrays + deltas[i]`` (or raises when ``i in fail``)."""
    client = ClientApp()

    @client.train()
    def train(msg: Message, context: Context) -> Message:
        pid = int(context.node_config["partition-id"])
        if pid in fail:
            raise RuntimeError(f"hospital {pid} crashed mid-round")
        got = msg.content["arrays"]
        new = {k: Array(got[k].numpy() + deltas[pid][k]) for k in got.keys()}
        w = 1.0 if weights is None else float(weights[pid])
        metrics = MetricRecord({"num-examples": w, "dp-weight": 1.0, "train_loss": float(pid)})
        return Message(RecordDict({"arrays": ArrayRecord(new), "metrics": metrics}),
                       reply_to=msg)

    out: dict[str, Any] = {}
    server = ServerApp()

    @server.main()
    def main(grid: Grid, context: Context) -> None:
        record = ArrayRecord({k: Array(v) for k, v in arrays.items()})
        msgs = strategy.configure_train(server_round, record, ConfigRecord(), grid)
        replies = list(grid.send_and_receive(msgs))
        out["agg"] = strategy.aggregate_train(server_round, replies)
        out["replies"] = replies

    run_inprocess(server, client, num_nodes=len(deltas))
    agg, metrics = out["agg"]
    return agg, metrics, out["replies"]
