"""The parties of PE-HEALTH secure inference and an in-process run of all of them.

Roles (PE-HEALTH section III-A, threat model in ``docs/threat-models.md``):

* **sensor** (HMS): encodes and secret-shares its readings, one share per server
  (:func:`medshield.secure.sharing.share_input`; numpy only);
* **healthcare centre** (:class:`HealthcareCentre`): owns the model; compiles it, sends each
  server an additive share of every weight (:meth:`~HealthcareCentre.share_model`), deals
  the correlated randomness offline (:meth:`~HealthcareCentre.deal`) and is the only party
  that reconstructs the result (:meth:`~HealthcareCentre.reconstruct`);
* two **compute servers** (:class:`ComputeServer`), semi-honest and non-colluding: each
  holds its weight shares, its material and its input share, and runs the program with the
  other server over a channel, ending with a share of the output.

Neither server learns the input, the weights or the output: everything it receives is
uniformly distributed given what it already knows (module docstrings of :mod:`.beaver`,
:mod:`.comparison`, :mod:`.gates`). This holds only while the servers do not collude and
follow the protocol, and only with a secure :class:`RandomSource`.

:func:`run_in_process` plays every role in one process (two server threads joined by an
:class:`~medshield.transport.InProcessChannel`) and reports the costs.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from medshield.secure.comm import MessageChannel, Peer
from medshield.secure.dealer import Dealer, Material
from medshield.secure.layers import (
    affine_online,
    avgpool_local,
    gate_op_online,
    maxpool_online,
    weight_matrix,
)
from medshield.secure.program import (
    AvgPoolOp,
    CompiledModel,
    ConvOp,
    GateOp,
    LinearOp,
    MaxPoolOp,
    Program,
    ReshapeOp,
)
from medshield.secure.randomness import RandomSource
from medshield.secure.ring import U64, Ring
from medshield.secure.sharing import reconstruct, share, share_input

__all__ = ["ModelShare", "ComputeServer", "HealthcareCentre", "SecureRun", "run_in_process"]


@dataclass
class ModelShare:
    """One server's additive shares of the weights: ``op name -> {"w": ..., "b": ...}``."""

    fingerprint: str
    party: int
    layers: dict[str, dict[str, U64]]

    @property
    def nbytes(self) -> int:
        """Bytes of the share arrays in memory (the ring's dtype per element)."""
        return sum(int(a.nbytes) for layer in self.layers.values() for a in layer.values())


class HealthcareCentre:
    """The model owner, offline dealer and result recipient.

    Parameters
    ----------
    compiled
        The compiled model (:func:`medshield.secure.compiler.compile_model`).
    rng
        Randomness for the weight shares and the material; ``None`` is secure (OS entropy).
    """

    def __init__(self, compiled: CompiledModel, rng: RandomSource | None = None) -> None:
        self.compiled = compiled
        self.rng = rng if rng is not None else RandomSource()
        self._dealer = Dealer(compiled, self.rng)

    @classmethod
    def from_model(
        cls,
        model: Any,
        input_shape: tuple[int, ...],
        *,
        frac_bits: int = 16,
        ring_bits: int = 64,
        rng: RandomSource | None = None,
    ) -> HealthcareCentre:
        """Compile a torch ``nn.Sequential`` (see :func:`~medshield.secure.compiler.compile_model`)."""
        from medshield.secure.compiler import compile_model

        return cls(compile_model(model, input_shape, frac_bits=frac_bits, ring_bits=ring_bits), rng)

    @property
    def program(self) -> Program:
        """The public structure to send to the servers."""
        return self.compiled.program

    def share_model(self) -> tuple[ModelShare, ModelShare]:
        """Additive shares of every weight and bias, one :class:`ModelShare` per server."""
        ring = self.compiled.ring
        fp = self.program.fingerprint()
        s0: dict[str, dict[str, U64]] = {}
        s1: dict[str, dict[str, U64]] = {}
        for name, arrays in self.compiled.weights.items():
            s0[name], s1[name] = {}, {}
            for key, value in arrays.items():
                s0[name][key], s1[name][key] = share(value, ring, self.rng)
        return ModelShare(fp, 0, s0), ModelShare(fp, 1, s1)

    def deal(self, batch_size: int) -> tuple[Material, Material]:
        """Offline material for one batch (see :class:`~medshield.secure.dealer.Dealer`)."""
        return self._dealer.deal(batch_size)

    def reconstruct(self, y0: ArrayLike, y1: ArrayLike) -> NDArray[np.float64]:
        """The result from the two servers' output shares, decoded to floats."""
        ring = self.compiled.ring
        return ring.decode(reconstruct(y0, y1, ring), self.program.output_scale)


class ComputeServer:
    """One of the two compute servers.

    Parameters
    ----------
    party
        0 or 1.
    program
        The public program (from the centre).
    model_share
        This server's weight shares (from :meth:`HealthcareCentre.share_model`).
    channel
        The channel to the other server.
    timeout
        Seconds to wait for the other server in any round.
    """

    def __init__(
        self,
        *,
        party: int,
        program: Program,
        model_share: ModelShare,
        channel: MessageChannel,
        timeout: float | None = 120.0,
    ) -> None:
        fp = program.fingerprint()
        if model_share.fingerprint != fp or model_share.party != party:
            raise ValueError(
                f"server {party} got the weight shares of server {model_share.party} for "
                f"program {model_share.fingerprint} but runs program {fp}; give each server "
                "its own share of the same compiled model"
            )
        self.party = party
        self.program = program
        self.ring = Ring(program.ring_bits)
        self.peer = Peer(channel, party, timeout=timeout)
        #: wall seconds per program step of the last :meth:`run` (key ``"name (kind)"``)
        self.layer_seconds: dict[str, float] = {}
        self._layers: dict[str, dict[str, Any]] = {}
        for op in program.ops:
            if isinstance(op, LinearOp | ConvOp):
                shares = model_share.layers[op.name]
                layer: dict[str, Any] = {"wmat": weight_matrix(op, shares["w"], self.ring)}
                if "b" in shares:
                    layer["b"] = shares["b"]
                self._layers[op.name] = layer
        self._material: Material | None = None

    def load_material(self, material: Material) -> None:
        """Install the dealer's material for the next :meth:`run` (offline step)."""
        fp = self.program.fingerprint()
        if material.fingerprint != fp or material.party != self.party:
            raise ValueError(
                f"server {self.party} got material for server {material.party} / program "
                f"{material.fingerprint}, but runs program {fp}: deal material for this program "
                "and hand each server its own part"
            )
        self._material = material

    def run(self, x_share: ArrayLike) -> U64:
        """Evaluate the program on this server's input share (online step).

        Consumes the loaded material (it must never be reused: reusing masks leaks).

        Parameters
        ----------
        x_share
            Ring array ``(batch, *program.input_shape)``, this server's share from the sensor.

        Returns
        -------
        Ring array ``(batch, *program.output_shape)``: this server's output share,
        to be sent to the healthcare centre only.
        """
        if self._material is None:
            raise RuntimeError(
                "no dealer material loaded: call load_material() with fresh material from "
                "HealthcareCentre.deal() before every run"
            )
        mat, self._material = self._material, None
        x = self.ring.reduce(np.asarray(x_share))
        if tuple(x.shape[1:]) != self.program.input_shape or x.shape[0] != mat.batch_size:
            raise ValueError(
                f"input share has shape {x.shape}, the material is for "
                f"{(mat.batch_size, *self.program.input_shape)}"
            )
        ring, peer = self.ring, self.peer
        self.layer_seconds = {}
        for op, m in zip(self.program.ops, mat.ops, strict=True):
            t0 = time.perf_counter()
            if isinstance(op, LinearOp | ConvOp):
                x = affine_online(op, peer, ring, x, self._layers[op.name], m)
            elif isinstance(op, GateOp):
                x = gate_op_online(op, peer, ring, x, m)
            elif isinstance(op, MaxPoolOp):
                x = maxpool_online(op, peer, ring, x, m)
            elif isinstance(op, AvgPoolOp):
                x = avgpool_local(op, x, ring)
            elif isinstance(op, ReshapeOp):
                x = x.reshape((x.shape[0], *op.out_shape))
            else:  # pragma: no cover - the compiler emits only the types above
                raise TypeError(f"unknown program step {op!r}")
            key = f"{op.name} ({op.kind})"
            self.layer_seconds[key] = self.layer_seconds.get(key, 0.0) + time.perf_counter() - t0
        return x


@dataclass
class SecureRun:
    """The outcome and costs of one in-process secure inference.

    Byte counts are frame bytes as counted by the channels (payload plus the transport's
    small per-message header). ``online_*`` covers only server-to-server traffic during
    :meth:`ComputeServer.run`; ``offline_bytes`` is the serialised dealer material of both
    servers; ``upload_bytes`` the sensor's two shares; ``result_bytes`` the two output shares
    sent to the centre; ``setup_bytes`` the weight shares (once per deployment).
    """

    output: NDArray[np.float64]
    batch_size: int
    online_seconds: float
    offline_seconds: float
    online_bytes: tuple[int, int]
    online_rounds: tuple[int, int]
    offline_bytes: tuple[int, int]
    upload_bytes: int
    result_bytes: int
    setup_bytes: int
    extra: dict[str, Any] = field(default_factory=dict)

    def per_image(self) -> dict[str, float]:
        """Costs per image: ms, MB (both servers and the mean of the two), rounds."""
        b = self.batch_size
        return {
            "online_ms": 1e3 * self.online_seconds / b,
            "offline_ms": 1e3 * self.offline_seconds / b,
            "online_MB_both": sum(self.online_bytes) / 1e6 / b,
            "online_MB_mean": sum(self.online_bytes) / 2e6 / b,
            "offline_MB_both": sum(self.offline_bytes) / 1e6 / b,
            "upload_MB": self.upload_bytes / 1e6 / b,
            "rounds": float(max(self.online_rounds)),
        }


def run_in_process(
    compiled: CompiledModel,
    x: ArrayLike,
    *,
    rng: RandomSource | None = None,
    timeout: float | None = 120.0,
    capture: list[tuple[int, str, Any]] | None = None,
) -> SecureRun:
    """Play every party in this process: share, deal, run both servers in threads, reconstruct.

    Parameters
    ----------
    compiled
        The compiled model.
    x
        Real inputs ``(batch, *input_shape)`` (the sensor's readings).
    rng
        Randomness for everything (``None``: secure). A seeded source warns.
    timeout
        Per-round wait of each server.
    capture
        If a list is given, everything a server receives is appended to it as
        ``(party, what, value)`` (``what`` in ``"program"``, ``"weights"``, ``"material"``,
        ``"input"``, ``"message"``), for tests of what a server can see.

    Returns
    -------
    SecureRun
    """
    rng = rng if rng is not None else RandomSource()
    prog = compiled.program
    xa = np.asarray(x, dtype=np.float64)
    if tuple(xa.shape[1:]) != prog.input_shape:
        raise ValueError(
            f"input has per-sample shape {tuple(xa.shape[1:])}, the program expects "
            f"{prog.input_shape} (put the batch axis first)"
        )
    with _single_threaded_blas():
        return _run(compiled, xa, rng, timeout, capture)


def _run(
    compiled: CompiledModel,
    xa: NDArray[np.float64],
    rng: RandomSource,
    timeout: float | None,
    capture: list[tuple[int, str, Any]] | None,
) -> SecureRun:
    from medshield.transport import InProcessChannel

    prog = compiled.program
    batch = xa.shape[0]
    centre = HealthcareCentre(compiled, rng)
    t0 = time.perf_counter()
    w0, w1 = centre.share_model()
    m0, m1 = centre.deal(batch)
    blobs = (m0.to_bytes(), m1.to_bytes())
    mats = (Material.from_bytes(blobs[0]), Material.from_bytes(blobs[1]))
    c0, c1 = InProcessChannel.pair()
    chans = (c0, c1)
    servers = [
        ComputeServer(party=p, program=prog, model_share=(w0, w1)[p], channel=chans[p],
                      timeout=timeout)
        for p in (0, 1)
    ]
    for p in (0, 1):
        servers[p].load_material(mats[p])
    offline = time.perf_counter() - t0
    x0, x1 = share_input(xa, frac_bits=prog.frac_bits, ring_bits=prog.ring_bits, rng=rng)
    ring = compiled.ring
    if capture is not None:
        _record_setup(capture, prog, (w0, w1), mats, (x0, x1))
        for p in (0, 1):
            _tap(chans[p], p, capture)
    outs: list[U64 | None] = [None, None]
    cpu = [0.0, 0.0]
    errors: list[BaseException] = []
    start = threading.Barrier(3)

    def work(p: int, xs: U64) -> None:
        try:
            start.wait()
            c = time.thread_time()
            outs[p] = servers[p].run(xs)
            cpu[p] = time.thread_time() - c
        except BaseException as err:  # surfaced in the caller
            errors.append(err)
            chans[1 - p].close()

    threads = [threading.Thread(target=work, args=(p, xs), daemon=True)
               for p, xs in ((0, x0), (1, x1))]
    for t in threads:
        t.start()
    start.wait()
    t1 = time.perf_counter()
    for t in threads:
        t.join()
    online = time.perf_counter() - t1
    if errors:
        raise errors[0]
    y0, y1 = outs
    assert y0 is not None and y1 is not None
    result = centre.reconstruct(y0, y1)
    stats = (c0.stats.snapshot(), c1.stats.snapshot())
    for c in chans:
        c.close()
    return SecureRun(
        output=result,
        batch_size=batch,
        online_seconds=online,
        offline_seconds=offline,
        online_bytes=(stats[0].bytes_sent, stats[1].bytes_sent),
        online_rounds=(stats[0].rounds, stats[1].rounds),
        offline_bytes=(len(blobs[0]), len(blobs[1])),
        upload_bytes=2 * x0.size * ring.nbytes,
        result_bytes=2 * y0.size * ring.nbytes,
        setup_bytes=(w0.nbytes + w1.nbytes) * ring.nbytes // ring.dtype.itemsize,
        extra={"program": prog.fingerprint(), "ring_bits": prog.ring_bits,
               "frac_bits": prog.frac_bits, "cpu_seconds": tuple(cpu),
               "layer_seconds": slower_server_layers(servers)},
    )


def slower_server_layers(servers: Any) -> dict[str, float]:
    """Per program step, the time of the slower of the two servers (``layer_seconds``)."""
    first, second = servers
    return {k: max(v, second.layer_seconds[k]) for k, v in first.layer_seconds.items()}


def _single_threaded_blas() -> Any:
    """Limit BLAS to one thread while two server threads share this machine's cores.

    Both servers call BLAS at the same time; a multi-threaded BLAS would oversubscribe the
    cores (OpenBLAS threads busy-wait) and slow both down several times.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _record_setup(
    capture: list[tuple[int, str, Any]],
    prog: Program,
    weights: tuple[ModelShare, ModelShare],
    mats: tuple[Material, Material],
    inputs: tuple[U64, U64],
) -> None:
    for p in (0, 1):
        capture.append((p, "program", prog))
        capture.append((p, "weights", weights[p]))
        capture.append((p, "material", mats[p]))
        capture.append((p, "input", inputs[p]))


def _tap(channel: Any, party: int, capture: list[tuple[int, str, Any]]) -> None:
    """Record every message ``channel`` receives (test hook)."""
    recv = channel.recv

    def recording_recv(timeout: float | None = None) -> dict[str, Any]:
        msg = recv(timeout)
        capture.append((party, "message", msg))
        return msg

    channel.recv = recording_recv
