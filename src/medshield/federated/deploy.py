"""Real deployment on loopback: a SuperLink, one SuperNode per hospital, device processes.

The same apps as the simulation (:data:`medshield.federated.apps.server_app`,
:data:`~medshield.federated.apps.client_app`) run under Flower's Deployment Runtime. By
hand, in separate terminals (Flower 1.41 serves its Fleet, Control and Runtime APIs over
HTTP on one port)::

    flower-superlink --insecure --host 127.0.0.1 --port 9091          # the cloud
    flower-supernode --insecure --superlink 127.0.0.1:9091 --port 9101 \
        --node-config "partition-id=0 num-partitions=2 device-port=9200"   # hospital 0
    flower-supernode --insecure --superlink 127.0.0.1:9091 --port 9102 \
        --node-config "partition-id=1 num-partitions=2 device-port=9201"   # hospital 1
    python -m medshield.federated.deploy device --config run.json \
        --hospital 0 --device 0 --port 9200                           # one per device
    python -m medshield.federated.deploy app APP_DIR --rounds 2       # the Flower App
    flwr run APP_DIR local     # with $FLWR_HOME/config.toml: [superlink.local]
                               # address = "127.0.0.1:9091", insecure = true

``run.json`` is ``FLConfig(...).to_flat()`` as JSON (the devices' data shards follow from
it). Because ``device-port`` is set, each hospital ClientApp listens on that port every
round until all its devices connected (:func:`accept_devices`); each device process
reconnects every round and runs Algorithm 2 on its own shard (:func:`device_main`). The
ServerApp (the cloud) runs inside the SuperLink's SuperExec.

One command does all of it and waits for the result (bounded by ``--timeout``)::

    python -m medshield.federated.deploy local --out runs/eicpp-deploy --rounds 2

It writes ``OUT/fl_run.json`` (the cloud's history) and every process's log to
``OUT/logs/``. Everything listens on 127.0.0.1 only and is plaintext (``--insecure``): a
real deployment adds TLS (Flower's certificates for SuperLink/SuperNode, and
:mod:`medshield.transport.tls` for the device links).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from medshield.federated.config import FLConfig
from medshield.transport import Channel, TcpChannel, TcpListener
from medshield.transport.errors import TransportError

__all__ = ["accept_devices", "device_main", "write_app", "launch_local", "free_port", "main"]


@contextlib.contextmanager
def accept_devices(port: int, n: int, *, timeout: float = 120.0,
                   host: str = "127.0.0.1") -> Iterator[list[Channel]]:
    """Listen on ``host:port`` until all ``n`` devices connected; yield their channels in
    device order; afterwards tell every device to ``stop`` and close.

    Each device introduces itself with ``{"op": "hello", "device": d}``.
    """
    links: dict[int, Channel] = {}
    listener = TcpListener(host, port, recv_timeout=timeout)
    try:
        deadline = time.monotonic() + timeout
        while len(links) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"only {len(links)} of {n} devices connected to port {port} "
                                   f"within {timeout} s; start the device processes")
            ch = listener.accept(timeout=left)
            hello = ch.recv(timeout=left)
            d = int(hello.get("device", -1))
            if hello.get("op") != "hello" or not 0 <= d < n or d in links:
                ch.close()
                continue
            links[d] = ch
        yield [links[d] for d in range(n)]
    finally:
        for ch in links.values():
            with contextlib.suppress(TransportError):
                ch.send({"op": "stop"})
            ch.close()
        listener.close()


def device_main(cfg: FLConfig, *, hospital: int, device: int, port: int,
                host: str = "127.0.0.1", idle_timeout: float = 300.0) -> int:
    """A device process: connect to the hospital each round, serve, reconnect; return the
    number of rounds served once the hospital has not listened for ``idle_timeout`` s."""
    import torch

    from medshield.federated.exchange import device_serve
    from medshield.federated.topology import build_federation, build_model
    from medshield.models import cut_model

    torch.set_num_threads(1)
    fed = build_federation(cfg)
    data = fed.devices[hospital][device]
    part = cut_model(build_model(cfg, fed, init=False), cfg.cut)[0]
    served, last = 0, time.monotonic()
    while time.monotonic() - last < idle_timeout:
        try:
            ch = TcpChannel.connect(host, port, timeout=2.0, recv_timeout=idle_timeout)
        except TransportError:
            time.sleep(0.2)
            continue
        try:
            ch.send({"op": "hello", "device": device})
            if device_serve(ch, part, data):
                served += 1
        except TransportError:
            pass  # the hospital went away mid-round (it crashed or the run ended)
        finally:
            ch.close()
            last = time.monotonic()
        time.sleep(0.2)  # the hospital's listener of this round is closing
    return served


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return json.dumps(str(v))


def write_app(app_dir: Path, cfg: FLConfig, *, method: str = "eicpp",
              out: Path | None = None, checkpoint_dir: Path | None = None) -> Path:
    """Write the Flower App directory (``pyproject.toml``) whose run config is ``cfg``."""
    app_dir.mkdir(parents=True, exist_ok=True)
    conf = {**cfg.to_flat(), "method": method}
    if out is not None:
        conf["out"] = str(out.resolve())
    if checkpoint_dir is not None:
        conf["checkpoint-dir"] = str(checkpoint_dir.resolve())
    lines = [
        '[build-system]', 'requires = ["hatchling"]', 'build-backend = "hatchling.build"', '',
        '[project]', 'name = "medshield-eicpp"', 'version = "1.0.0"',
        'description = "EICPP on the Flower Deployment Runtime (apps live in medshield)"',
        'license = "Apache-2.0"', 'dependencies = []', '',
        '[tool.hatch.build.targets.wheel]', 'packages = ["."]', '',
        '[tool.flwr.app]', 'publisher = "medshield"', '',
        '[tool.flwr.app.components]',
        'serverapp = "medshield.federated.apps:server_app"',
        'clientapp = "medshield.federated.apps:client_app"', '',
        '[tool.flwr.app.config]',
        *[f"{k} = {_toml_value(v)}" for k, v in conf.items()], '',
    ]
    path = app_dir / "pyproject.toml"
    path.write_text("\n".join(lines))
    return path


def _spawn(cmd: Sequence[str], log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    fh = log.open("wb")
    return subprocess.Popen(list(cmd), stdout=fh, stderr=subprocess.STDOUT, env=env,
                            start_new_session=True)


def _stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def _bin(name: str) -> str:
    here = Path(sys.executable).parent / name
    found = here if here.exists() else shutil.which(name)
    if not found:
        raise FileNotFoundError(f"{name} is not installed; pip install 'flwr[simulation]==1.41.0'")
    return str(found)


def launch_local(cfg: FLConfig, out: Path, *, method: str = "eicpp",
                 timeout: float = 300.0) -> dict[str, Any]:
    """Start SuperLink, SuperNodes and device processes on loopback, run, tear down.

    Returns the parsed ``out/fl_run.json``. Raises ``TimeoutError`` (with the log folder
    named) when the run does not finish within ``timeout`` seconds.
    """
    out = out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    result = out / "fl_run.json"
    result.unlink(missing_ok=True)
    # Flower's processes start their helpers (flower-superexec, flwr-serverapp ...) by name
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = {**os.environ, "PATH": path, "FLWR_HOME": str(out / "flwr-home"),
           "PYTHONUNBUFFERED": "1"}
    link = free_port()
    home = Path(env["FLWR_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        '[superlink]\ndefault = "local"\n\n[superlink.local]\n'
        f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    app_dir = write_app(out / "app", cfg, method=method, out=out).parent
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # Flower 1.41 serves the Fleet, Control and Runtime APIs over HTTP on one port
        procs.append(_spawn([_bin("flower-superlink"), "--insecure", "--host", "127.0.0.1",
                             "--port", str(link)],
                            logs / "superlink.log", env))
        clients = cfg.hospitals if method == "eicpp" else cfg.hospitals * cfg.devices_per_hospital
        run_json = out / "run.json"
        run_json.write_text(json.dumps(cfg.to_flat()))
        for i in range(clients):
            port = free_port()
            node_cfg = f"partition-id={i} num-partitions={clients}"
            if method == "eicpp":
                node_cfg += f" device-port={port}"
            procs.append(_spawn([_bin("flower-supernode"), "--insecure",
                                 "--superlink", f"127.0.0.1:{link}",
                                 "--node-config", node_cfg, "--port", str(free_port())],
                                logs / f"supernode-{i}.log", env))
            if method == "eicpp":
                for d in range(cfg.devices_per_hospital):
                    procs.append(_spawn(
                        [sys.executable, "-m", "medshield.federated.deploy", "device",
                         "--config", str(run_json), "--hospital", str(i), "--device", str(d),
                         "--port", str(port), "--idle-timeout", str(timeout)],
                        logs / f"device-{i}-{d}.log", env))
        deadline = time.monotonic() + timeout
        submitted = False
        tries = 0
        while time.monotonic() < deadline and not result.exists():
            if not submitted:  # retried until the SuperLink accepts the run
                tries += 1
                try:
                    rc = subprocess.run([_bin("flwr"), "run", str(app_dir), "local"], env=env,
                                        capture_output=True, check=False,
                                        timeout=max(5.0, deadline - time.monotonic()))
                    (logs / "flwr-run.log").write_bytes(rc.stdout + rc.stderr)
                    submitted = rc.returncode == 0
                except subprocess.TimeoutExpired:
                    break
            dead = [p for p in procs[:1] if p.poll() is not None]
            if dead:
                raise RuntimeError(f"the SuperLink exited early; see {logs / 'superlink.log'}")
            time.sleep(1.0)
        if not result.exists():
            raise TimeoutError(f"the deployed run did not finish within {timeout} s; logs in "
                               f"{logs}")
        time.sleep(0.5)  # the file is written at the end of the ServerApp
        return json.loads(result.read_text())
    finally:
        _stop(procs)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m medshield.federated.deploy {local,device,app} ...``"""
    ap = argparse.ArgumentParser(prog="python -m medshield.federated.deploy",
                                 description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    loc = sub.add_parser("local", help="SuperLink + SuperNodes + devices on loopback, run")
    loc.add_argument("--out", type=Path, default=Path("runs/eicpp-deploy"))
    loc.add_argument("--method", default="eicpp", choices=("eicpp", "fedavg", "fedma"))
    loc.add_argument("--rounds", type=int, default=2)
    loc.add_argument("--hospitals", type=int, default=2)
    loc.add_argument("--devices", type=int, default=2)
    loc.add_argument("--target-epsilon", type=float, default=float("inf"))
    loc.add_argument("--timeout", type=float, default=300.0)
    loc.add_argument("--noise-source", default="os", choices=("os", "seeded"),
                     help="DP noise from OS entropy (default) or from the seed (reproducible, "
                     "insecure)")
    dev = sub.add_parser("device", help="one device process (started by `local`)")
    dev.add_argument("--config", type=Path, required=True)
    dev.add_argument("--hospital", type=int, required=True)
    dev.add_argument("--device", type=int, required=True)
    dev.add_argument("--port", type=int, required=True)
    dev.add_argument("--idle-timeout", type=float, default=300.0)
    app = sub.add_parser("app", help="write a Flower App directory for `flwr run`")
    app.add_argument("dir", type=Path)
    app.add_argument("--rounds", type=int, default=2)
    app.add_argument("--out", type=Path, default=None, help="where the cloud writes fl_run.json")
    args = ap.parse_args(argv)
    if args.cmd == "device":
        cfg = FLConfig.from_flat(json.loads(args.config.read_text()))
        n = device_main(cfg, hospital=args.hospital, device=args.device, port=args.port,
                        idle_timeout=args.idle_timeout)
        print(f"device {args.hospital}/{args.device} served {n} rounds")
        return 0
    if args.cmd == "app":
        print(write_app(args.dir, FLConfig(rounds=args.rounds), out=args.out))
        return 0
    cfg = FLConfig(rounds=args.rounds, hospitals=args.hospitals,
                   devices_per_hospital=args.devices, target_epsilon=args.target_epsilon,
                   update_clip=0.3 if args.target_epsilon != float("inf") else 0.0,
                   noise_source=args.noise_source)
    res = launch_local(cfg, args.out, method=args.method, timeout=args.timeout)
    last = res["rounds"][-1] if res["rounds"] else {}
    print(f"{args.method}: {len(res['rounds'])} rounds, accuracy {last.get('accuracy')}, "
          f"results in {args.out / 'fl_run.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
