"""``medshield secure ...``: run PE-HEALTH secure inference as network services.

Commands (see ``docs/secure-deployment.md`` for a loopback walk-through):

* ``init-ca`` / ``issue``: the healthcare centre creates the deployment CA and issues
  certificates to ``centre``, ``server0``, ``server1`` and each ``sensor-<id>``;
* ``serve --party 0|1``: a compute server;
* ``centre``: the centre's result service (reconstructs and prints/stores results);
* ``deploy-model``: share a model to both servers and deal material ahead of time;
* ``infer``: a sensor shares readings from a ``.npy`` file and sends them to the servers;
* ``status``: a server's material slots and request counters.

Wired into the main CLI with ``app.add_typer(secure_app, name="secure")``; also runs as
``python -m medshield.secure.cli``. Heavy imports (torch) happen inside the commands that need
them (``deploy-model``), so ``infer`` and ``serve`` start quickly.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from medshield.secure.net.credentials import PartyCredentials

__all__ = ["secure_app"]

secure_app = typer.Typer(
    name="secure",
    help="PE-HEALTH secure inference over the network (mutual TLS between all parties).",
    no_args_is_help=True,
    add_completion=False,
)

Creds = Annotated[Path, typer.Option("--creds", help="Directory with ca.pem, NAME.pem, NAME.key.")]
Servers = Annotated[str, typer.Option(
    "--servers", help="HOST:PORT of server 0 and server 1, comma separated.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _servers(text: str) -> tuple[tuple[str, int], tuple[str, int]]:
    from medshield.secure.net.server import parse_address

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) != 2:
        raise _fail(f"--servers needs two addresses 'HOST:PORT,HOST:PORT', got {text!r}")
    try:
        return parse_address(parts[0]), parse_address(parts[1])
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _addr(text: str) -> tuple[str, int]:
    from medshield.secure.net.server import parse_address

    try:
        return parse_address(text)
    except ValueError as exc:
        raise _fail(str(exc)) from None


def _creds(directory: Path, name: str) -> PartyCredentials:
    from medshield.secure.net.credentials import load_credentials

    try:
        return load_credentials(directory, name)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None


@secure_app.command("init-ca")
def init_ca_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="Where to create ca.pem/ca.key.")],
    days: Annotated[int, typer.Option(help="Validity in days.")] = 365,
) -> None:
    """Create the deployment CA (run on the healthcare centre; keep ca.key there)."""
    from medshield.secure.net.credentials import init_ca

    try:
        path = init_ca(directory, days=days)
    except FileExistsError as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"CA certificate: {path}")


@secure_app.command("issue")
def issue_cmd(
    directory: Annotated[Path, typer.Option("--dir", help="The CA directory (init-ca).")],
    name: Annotated[str, typer.Option(help="centre, server0, server1 or sensor-<id>.")],
    host: Annotated[list[str] | None, typer.Option(
        help="Host name/IP the party listens on (repeatable; default 127.0.0.1, localhost).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Where to write NAME.pem/NAME.key.")] = None,
    days: Annotated[int, typer.Option(help="Validity in days.")] = 90,
) -> None:
    """Issue a party certificate signed by the deployment CA."""
    from medshield.secure.net.credentials import issue

    try:
        creds = issue(directory, name, hosts=tuple(host or ("127.0.0.1", "localhost")),
                      days=days, out=out)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"issued {creds.name}: {creds.cert} (key {creds.key})")


@secure_app.command("serve")
def serve_cmd(
    party: Annotated[int, typer.Option(help="0 or 1.")],
    creds: Creds,
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:7301",
    peer: Annotated[str | None, typer.Option(
        help="HOST:PORT of server 1 (server 0 only: it opens the server-to-server link).")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds for any network wait.")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log connections.")] = False,
) -> None:
    """Run compute server PARTY until interrupted."""
    from medshield.secure.net.server import SecureServer

    _logging(verbose)
    if party not in (0, 1):
        raise _fail(f"--party must be 0 or 1, got {party}")
    if party == 0 and peer is None:
        raise _fail("server 0 needs --peer HOST:PORT of server 1")
    host, port = _addr(listen)
    try:
        server = SecureServer(party=party, creds=_creds(creds, f"server{party}"), host=host,
                              port=port, peer=_addr(peer) if peer else None, timeout=timeout)
    except Exception as exc:  # listener errors name the fix
        raise _fail(str(exc)) from None
    typer.echo(f"server {party} listening on {server.address[0]}:{server.address[1]}",
               err=True)
    server.serve_forever()


@secure_app.command("centre")
def centre_cmd(
    creds: Creds,
    state: Annotated[Path, typer.Option(help="Centre state dir (programs, results.jsonl).")],
    listen: Annotated[str, typer.Option(help="HOST:PORT to listen on.")] = "127.0.0.1:7300",
    count: Annotated[int, typer.Option(help="Exit after this many results (0: run forever).")
                     ] = 0,
    wait: Annotated[float, typer.Option(help="With --count: give up after this many s.")
                    ] = 600.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Collect output shares from the servers, reconstruct, print one JSON line per result."""
    import threading
    from dataclasses import asdict

    from medshield.secure.net.centre import ResultCollector

    _logging(verbose)
    host, port = _addr(listen)
    lock = threading.Lock()

    def show(res: object) -> None:
        with lock:
            typer.echo(json.dumps(asdict(res)))  # type: ignore[call-overload]

    collector = ResultCollector(creds=_creds(creds, "centre"), host=host, port=port,
                                state_dir=state, on_result=show).start()
    typer.echo(f"centre listening on {collector.address[0]}:{collector.address[1]}", err=True)
    try:
        if count > 0:
            if not collector.wait_for(count, wait):
                raise _fail(f"only {len(collector.results)} of {count} results in {wait} s")
        else:
            collector.wait_for(sys.maxsize, None)  # type: ignore[arg-type]
    except KeyboardInterrupt:
        pass
    finally:
        collector.stop()


@secure_app.command("deploy-model")
def deploy_cmd(
    creds: Creds,
    servers: Servers,
    centre: Annotated[str, typer.Option(help="HOST:PORT of the centre's result service.")],
    state: Annotated[Path, typer.Option(help="Centre state dir (same as `centre --state`).")],
    model: Annotated[str, typer.Option(help="Registered model name.")] = "pehealth-f",
    weights: Annotated[Path | None, typer.Option(help="State dict (.pt) to load.")] = None,
    input_shape: Annotated[str, typer.Option(help="Per-sample input shape.")] = "1,28,28",
    seed: Annotated[int, typer.Option(help="Weight-init seed when no --weights.")] = 0,
    slots: Annotated[int, typer.Option(help="Requests to deal material for.")] = 100,
    batch_size: Annotated[int, typer.Option(help="Images per request.")] = 1,
    frac_bits: Annotated[int, typer.Option(help="Fixed-point fractional bits.")] = 12,
    ring_bits: Annotated[int, typer.Option(help="Ring size l (32 or 64).")] = 32,
    merge_batch: Annotated[int, typer.Option(
        help="Also deal slots of this many images so server 0 can run queued requests "
             "together (0: off).")] = 0,
    more: Annotated[bool, typer.Option("--more", help="Only deal more material.")] = False,
) -> None:
    """Share MODEL's weights to both servers and deal material for SLOTS requests."""
    import torch

    import medshield
    from medshield.models import MODELS  # noqa: F401  (registers the models)
    from medshield.secure.compiler import compile_model
    from medshield.secure.net.centre import add_material, deploy_model

    shape = tuple(int(s) for s in input_shape.split(",") if s.strip())
    net = medshield.create("model", model, seed=seed)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    net.eval()
    compiled = compile_model(net, shape, frac_bits=frac_bits, ring_bits=ring_bits)
    cr = _creds(creds, "centre")
    try:
        if more:
            first = add_material(compiled, creds=cr, servers=_servers(servers), slots=slots,
                                 batch_size=batch_size)
            typer.echo(f"dealt {slots} more slots from id {first}")
            return
        fp = deploy_model(compiled, creds=cr, servers=_servers(servers),
                          centre_address=_addr(centre), slots=slots, batch_size=batch_size,
                          state_dir=state, merge_batch=merge_batch)
    except Exception as exc:  # transport and refusal errors say what to fix
        raise _fail(str(exc)) from None
    typer.echo(f"deployed {model} (program {fp}) with material for {slots} requests of "
               f"{batch_size} image(s)")


@secure_app.command("infer")
def infer_cmd(
    creds: Creds,
    name: Annotated[str, typer.Option(help="This sensor's name (sensor-<id>).")],
    servers: Servers,
    input: Annotated[Path, typer.Option(help=".npy readings, (batch, *input_shape).")],
    patient: Annotated[str, typer.Option(help="Patient id.")],
    rid: Annotated[str | None, typer.Option(help="Request id (default: generated).")] = None,
) -> None:
    """Share readings and send one share to each server (the result goes to the centre)."""
    import numpy as np

    from medshield.secure.net.sensor import Sensor, SensorError
    from medshield.secure.net.wire import WireError

    x = np.load(input, allow_pickle=False)
    try:
        with Sensor(creds=_creds(creds, name), servers=_servers(servers)) as sensor:
            got = sensor.submit(x, patient=patient, rid=rid)
    except (SensorError, WireError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"request {got} accepted by both servers; the result goes to the centre")


@secure_app.command("status")
def status_cmd(creds: Creds, servers: Servers) -> None:
    """Print both servers' status (run with the centre's credentials)."""
    from medshield.secure.net.centre import server_status

    addrs = _servers(servers)
    for p in (0, 1):
        try:
            typer.echo(json.dumps(server_status(_creds(creds, "centre"), addrs[p], p)))
        except Exception as exc:
            raise _fail(str(exc)) from None


if __name__ == "__main__":
    secure_app()
