"""Running the inference service: :func:`serve` (blocking), in a thread, or in a subprocess.

The thread and subprocess runners bind ``127.0.0.1`` on a free port (port 0) and wait, with
a bounded timeout, until the server accepts connections; tests and the load benchmark use
them. The API key reaches a subprocess through its environment (``MEDSHIELD_API_KEY``),
never its command line (which other users of the machine can read).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import subprocess
import sys
import threading
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import torch
from torch import nn

from medshield.models import MODELS, read_state_dict
from medshield.serve.app import create_app

__all__ = ["API_KEY_ENV", "load_model", "serve", "ServerThread", "ServerProcess"]

#: Environment variable holding the service's API key.
API_KEY_ENV = "MEDSHIELD_API_KEY"


def load_model(model_path: str | os.PathLike[str], model_name: str = "lenet5") -> nn.Module:
    """Build ``model_name`` and load a saved ``state_dict`` (or training checkpoint) into it.

    For LeNet-5 the number of classes and input channels are read from the weights.
    """
    state = read_state_dict(model_path)
    opts: dict[str, Any] = {}
    if model_name in ("lenet5", "lenet") and "fc3.weight" in state:
        opts = {
            "num_classes": int(state["fc3.weight"].shape[0]),
            "in_channels": int(state["conv1.weight"].shape[1]),
        }
    model = MODELS.create(model_name, **opts)
    model.load_state_dict(state)
    return model.eval()


def _resolve_key(api_key: str | None) -> str:
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    if not key:
        raise ValueError(
            f"no API key: pass api_key= or set ${API_KEY_ENV}; generate one with "
            "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return key


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    model_path: str | os.PathLike[str] | None = None,
    api_key: str | None = None,
    *,
    model_name: str = "lenet5",
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    max_batch: int = 256,
    log_level: str = "info",
    ready: Any = None,
) -> None:
    """Serve the coordinator's model over HTTP(S) until interrupted (blocking).

    Parameters
    ----------
    host, port
        Where to listen (port 0: a free port, printed on start).
    model_path
        A ``state_dict`` saved with ``torch.save(model.state_dict(), path)`` (or a medshield
        checkpoint) of ``model_name``.
    api_key
        The clients' shared secret (default: ``$MEDSHIELD_API_KEY``; required).
    ssl_certfile, ssl_keyfile
        Serve HTTPS. Without them on a non-loopback address, a loud warning: the API key and
        the samples would cross the network in clear.
    max_batch, log_level
        Request limit; uvicorn's log level (the access log carries paths, never samples).
    ready
        Optional callable ``ready(url)`` invoked once the socket is bound.
    """
    import uvicorn

    if model_path is None:
        raise ValueError("model_path is required: the state_dict of the model to serve")
    key = _resolve_key(api_key)
    tls = ssl_certfile is not None
    if not tls and not _is_loopback(host):
        warnings.warn(
            f"serving on {host} without TLS: API keys and samples cross the network in clear; "
            "pass ssl_certfile= and ssl_keyfile=",
            stacklevel=2,
        )
    app = create_app(
        load_model(model_path, model_name), api_key=key, max_batch=max_batch, model_name=model_name
    )
    sock = _bind(host, port)
    url = f"{'https' if tls else 'http'}://{host}:{sock.getsockname()[1]}"
    if ready is not None:
        ready(url)
    config = uvicorn.Config(
        app,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        timeout_keep_alive=30,
        ws="none",
    )
    uvicorn.Server(config).run(sockets=[sock])


class ServerThread:
    """Run an ASGI app with uvicorn in a daemon thread on ``127.0.0.1:<free port>``.

    Use as a context manager; ``url`` is the base URL. Startup and shutdown waits are
    bounded by ``timeout`` seconds.

    Examples
    --------
    >>> # with ServerThread(create_app(model, api_key=key)) as srv: httpx.get(srv.url + "/healthz")
    """

    def __init__(self, app: Any, *, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.app = app
        self.host = host
        self.timeout = timeout
        self.url = ""
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> ServerThread:
        import uvicorn

        sock = _bind(self.host, 0)
        self.url = f"http://{self.host}:{sock.getsockname()[1]}"
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, ws="none", timeout_keep_alive=30
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [sock]}, name="medshield-serve", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + self.timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the server did not start within {self.timeout} s")
            time.sleep(0.01)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self.timeout)


class ServerProcess:
    """Run :func:`serve` in a child process on ``127.0.0.1:<free port>`` (for load tests).

    Parameters
    ----------
    model_path
        The ``state_dict`` to serve.
    api_key
        Passed to the child in its environment, not on its command line.
    threads
        torch threads of the child.
    timeout
        Seconds to wait for the child to listen (and to exit on close).
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        api_key: str,
        *,
        threads: int = 1,
        timeout: float = 60.0,
        max_batch: int = 256,
    ) -> None:
        self.model_path = Path(model_path)
        self.api_key = api_key
        self.threads = threads
        self.timeout = timeout
        self.max_batch = max_batch
        self.url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> ServerProcess:
        env = dict(os.environ, **{API_KEY_ENV: self.api_key, "OMP_NUM_THREADS": str(self.threads)})
        cmd = [
            sys.executable,
            "-m",
            "medshield.serve",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--model",
            str(self.model_path),
            "--threads",
            str(self.threads),
            "--max-batch",
            str(self.max_batch),
            "--log-level",
            "warning",
        ]
        self._proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        line: list[str] = []
        reader = threading.Thread(
            target=lambda: line.append(self._proc.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(self.timeout)
        if not line or not line[0].startswith("listening on "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"the server process did not start within {self.timeout} s")
        self.url = line[0].split("listening on ", 1)[1].strip()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(self.timeout)
        if self._proc.stdout is not None:
            self._proc.stdout.close()


def _main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m medshield.serve",
        description=f"Serve the coordinator's model (API key in ${API_KEY_ENV}).",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model", required=True, help="state_dict file of the model")
    parser.add_argument("--model-name", default="lenet5")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument("--ssl-certfile", default=None)
    parser.add_argument("--ssl-keyfile", default=None)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    serve(
        args.host,
        args.port,
        args.model,
        None,
        model_name=args.model_name,
        ssl_certfile=args.ssl_certfile,
        ssl_keyfile=args.ssl_keyfile,
        max_batch=args.max_batch,
        log_level=args.log_level,
        ready=lambda url: print(f"listening on {url}", flush=True),
    )
