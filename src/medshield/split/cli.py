"""``medshield split ...``: split learning and PGSL across real processes.

* ``serve``: the server (the layers after the cut; PGSL's head with ``--defence pgsl``);
* ``device``: one device (its data shard and the layers up to the cut);
* ``local``: a server and ``--devices`` device processes on loopback, optionally over mutual
  TLS with a throw-away CA and with the device half sealed between devices, then a summary;
* ``keygen``: a hand-off key for the devices (never for the server).

Every party reads the same ``run.json`` (:class:`~medshield.split.deploy.DeployConfig`).
Wired into the main CLI with ``app.add_typer(split_app, name="split")``; also runs as
``python -m medshield.split.cli``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

__all__ = ["split_app"]

split_app = typer.Typer(
    name="split",
    help="Split learning and PGSL as real processes over TCP (optionally mutual TLS).",
    no_args_is_help=True,
    add_completion=False,
)

Config = Annotated[Path, typer.Option("--config", help="run.json shared by all parties.")]
Ca = Annotated[Path | None, typer.Option("--ca", help="PEM CA (mutual TLS).")]
Cert = Annotated[Path | None, typer.Option("--cert", help="This party's PEM certificate.")]
Key = Annotated[Path | None, typer.Option("--key", help="This party's PEM private key.")]


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _load(config: Path):  # noqa: ANN202 - DeployConfig, imported lazily
    from medshield.split.deploy import DeployConfig

    try:
        return DeployConfig.load(config)
    except (ValueError, TypeError) as exc:
        raise _fail(str(exc)) from None


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise _fail(f"--server must be HOST:PORT with a port in 1..65535, got {text!r}")
    return host, int(port)


@split_app.command("serve")
def serve_cmd(
    config: Config,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: a free one, printed as 'PORT n').")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write history.json.")] = Path(
        "runs/split-server"),
    ca: Ca = None, cert: Cert = None, key: Key = None,
    accept_timeout: Annotated[float, typer.Option(help="Seconds to wait for the devices.")] = 300.0,
    resume: Annotated[Path | None, typer.Option(
        help="Continue an interrupted run from the resume.pt it wrote to its --out.")] = None,
) -> None:
    """Run the server: wait for the devices, train, evaluate, write OUT/history.json.

    If a device drops out mid-run the server writes OUT/resume.pt and says how to resume."""
    from medshield.split.deploy import run_server, tls_contexts
    from medshield.split.protocol import SplitProtocolError
    from medshield.transport import TcpListener, TransportError

    cfg = _load(config)
    try:
        ctx = tls_contexts(ca, cert, key, server=True)
        with TcpListener(host, port, ctx) as listener:
            typer.echo(f"PORT {listener.port}", err=False)
            sys.stdout.flush()
            history = run_server(cfg, listener, out, accept_timeout=accept_timeout,
                                 resume=resume, config_path=config)
    except (ValueError, TransportError, SplitProtocolError) as exc:
        raise _fail(str(exc)) from None
    acc = {k: v for k, v in history.eval_accuracy.items()}
    typer.echo(f"DONE {json.dumps({'eval_accuracy': acc, 'bytes': history.bytes_total()})}")


@split_app.command("keygen")
def keygen_cmd(
    out: Annotated[Path, typer.Option(help="Where to write the 32-byte key (mode 0600).")],
) -> None:
    """Create a hand-off key: copy it to every device, never to the server."""
    from medshield.split.handoff import HandoffSeal

    try:
        path = HandoffSeal.write_key(out)
    except FileExistsError:
        raise _fail(f"{out} exists; a key is never overwritten (remove it first)") from None
    typer.echo(f"hand-off key: {path}")


@split_app.command("device")
def device_cmd(
    config: Config,
    rank: Annotated[int, typer.Option(help="This device's rank (0 .. devices - 1).")],
    server: Annotated[str, typer.Option(help="HOST:PORT of the server.")] = "127.0.0.1:9300",
    ca: Ca = None, cert: Cert = None, key: Key = None,
    handoff_key: Annotated[Path | None, typer.Option(
        help="The devices' shared hand-off key (medshield split keygen): the device half "
             "then passes through the server encrypted.")] = None,
) -> None:
    """Run one device: pre-process its shard, train its turns, evaluate when asked."""
    from medshield.split.deploy import run_device, tls_contexts
    from medshield.split.handoff import HandoffSeal
    from medshield.split.protocol import SplitProtocolError
    from medshield.transport import TransportError

    cfg = _load(config)
    host, port = _address(server)
    try:
        ctx = tls_contexts(ca, cert, key, server=False)
        seal = None if handoff_key is None else HandoffSeal.load(handoff_key)
        report = run_device(cfg, rank, host, port, ssl_context=ctx, handoff_seal=seal)
    except (ValueError, TransportError, SplitProtocolError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"DONE {json.dumps(report)}")


@split_app.command("local")
def local_cmd(
    defence: Annotated[str, typer.Option(help="none | pgsl")] = "pgsl",
    devices: Annotated[int, typer.Option(help="Device processes.")] = 2,
    epochs: Annotated[int, typer.Option(help="Epochs (every device trains once per epoch).")] = 2,
    n_train: Annotated[int, typer.Option(help="Training images over all devices.")] = 2000,
    n_test: Annotated[int, typer.Option(help="Test images over all devices.")] = 400,
    dataset: Annotated[str, typer.Option(help="Image dataset (medshield datasets).")] = "mnist",
    data: Annotated[Path | None, typer.Option(
        "--data", help="Data directory (default: $MEDSHIELD_DATA; embedded data when unset).")
    ] = None,
    tls: Annotated[bool, typer.Option("--tls/--no-tls", help="Mutual TLS, throw-away CA.")] = True,
    seal_handoff: Annotated[bool, typer.Option(
        "--seal-handoff/--plain-handoff",
        help="Encrypt the device half between devices (a fresh key, devices only).")] = True,
    out: Annotated[Path, typer.Option(help="Output directory.")] = Path("runs/split-local"),
    width: Annotated[int, typer.Option(help="Conv width of PGSL's CNN.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    timeout: Annotated[float, typer.Option(help="Seconds for the whole run.")] = 1800.0,
) -> None:
    """A server and DEVICES device processes on 127.0.0.1; logs in OUT/logs/."""
    from medshield.split.deploy import RESUME_FILE, DeployConfig

    try:
        cfg = DeployConfig(defence=defence, dataset=dataset,  # type: ignore[arg-type]
                           data_root=None if data is None else str(data), devices=devices,
                           epochs=epochs, n_train=n_train, n_test=n_test, width=width,
                           seed=seed)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    config = cfg.save(out / "run.json")
    (out / RESUME_FILE).unlink(missing_ok=True)  # a fresh run: an older run's checkpoint goes
    server_tls: list[str] = []
    device_args: list[str] = []
    if tls:
        from medshield.transport.tls import generate_local_pki

        pki = generate_local_pki(out / "pki")
        server_tls = ["--ca", str(pki.ca_cert), "--cert", str(pki.server_cert),
                      "--key", str(pki.server_key)]
        device_args = ["--ca", str(pki.ca_cert), "--cert", str(pki.client_cert),
                      "--key", str(pki.client_key)]
    if seal_handoff:
        from medshield.split.handoff import HandoffSeal

        key_file = out / "devices" / "handoff.key"
        if key_file.exists():
            key_file.unlink()
        device_args += ["--handoff-key", str(HandoffSeal.write_key(key_file))]
    me = [sys.executable, "-m", "medshield.split.cli"]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    deadline = time.monotonic() + timeout
    with open(logs / "server.log", "w") as server_log:
        srv = subprocess.Popen([*me, "serve", "--config", str(config), "--port", "0",
                                "--out", str(out), *server_tls],
                               stdout=subprocess.PIPE, stderr=server_log, text=True, env=env)
        procs: list[subprocess.Popen[str]] = []
        device_logs = []
        try:
            assert srv.stdout is not None
            line = srv.stdout.readline()
            if not line.startswith("PORT "):
                raise _fail(f"the server did not start; see {logs / 'server.log'}")
            port = int(line.split()[1])
            typer.echo(f"server on 127.0.0.1:{port} ({'mutual TLS' if tls else 'plain TCP'}), "
                       f"{devices} device processes, defence {defence}, device half "
                       f"{'sealed' if seal_handoff else 'relayed in clear'} between devices")
            for rank in range(devices):
                log = open(logs / f"device{rank}.log", "w")  # noqa: SIM115 - closed below
                device_logs.append(log)
                procs.append(subprocess.Popen(
                    [*me, "device", "--config", str(config), "--rank", str(rank),
                     "--server", f"127.0.0.1:{port}", *device_args],
                    stdout=log, stderr=subprocess.STDOUT, text=True, env=env))
            for proc in [*procs, srv]:
                left = max(deadline - time.monotonic(), 1.0)
                proc.wait(timeout=left)
            rest = srv.stdout.read()
        except subprocess.TimeoutExpired:
            raise _fail(f"the run took longer than --timeout {timeout} s; see {logs}") from None
        finally:
            for proc in [*procs, srv]:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            for log in device_logs:
                log.close()
    bad = [f"device {r}" for r, p in enumerate(procs) if p.returncode != 0]
    if srv.returncode != 0:
        bad.append("the server")
    if bad:
        kept = out / RESUME_FILE
        hint = (f"; the server kept its last completed epoch in {kept} (medshield split serve "
                f"--config {config} --resume {kept})" if kept.exists() else "")
        raise _fail(f"{', '.join(bad)} failed; see the logs in {logs}{hint}")
    summary = json.loads((out / "history.json").read_text())
    acc = summary["eval_accuracy"]
    typer.echo(f"test accuracy per device: {acc}; {summary['bytes_total']} bytes and "
               f"{summary['rounds_total']} rounds over all links; {summary['seconds']:.1f} s "
               f"of training; history in {out / 'history.json'}")
    if "DONE" not in rest:  # pragma: no cover - the server exits 0 only after DONE
        raise _fail("the server ended without its summary line")


if __name__ == "__main__":  # pragma: no cover
    split_app()
