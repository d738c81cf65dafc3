"""NIR export: every array round-trips, snnTorch's own importer reproduces the spikes, and a
NIR file is a model the pipeline can read."""

from __future__ import annotations

import nir
import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.examples.digits import build_model, weights_path
from slamp_deploy.exporters import nir_sim
from slamp_deploy.exporters.nir_export import DT, to_nir, write_nir
from torch import nn

from slamp_deploy.errors import ExportError, ModelError
from slamp_deploy.model.graph import NEURON_KINDS, reset_state, trace
from slamp_deploy.model.nir_import import from_nir, nir_order
from slamp_deploy.model.runner import run
from slamp_deploy.prune.masks import apply_masks, magnitude_mask


def pruned_example():
    model = build_model()
    model.load_state_dict(torch.load(weights_path(), weights_only=True), strict=False)
    g = trace(model, (1, 8, 8))
    apply_masks(g, {la.name: magnitude_mask(la.weight, la.n_weights // 5) for la in g.layers})
    return g


def digits_seq(n: int = 12, T: int = 8) -> torch.Tensor:
    from slamp_deploy.data import load_digits

    x = load_digits().x[:n]
    return x.unsqueeze(0).expand(T, *x.shape).contiguous()


def spikes_of(g, x):
    rec = {}

    def grab(i, op, t, inp, out):
        if op.kind in NEURON_KINDS:
            rec.setdefault(op.name, []).append(out.detach().numpy())

    with torch.no_grad():
        run(g, x, observers=(grab,))
    return {k: np.stack(v) for k, v in rec.items()}


def test_every_array_round_trips_through_the_file(tmp_path):
    g = pruned_example()
    graph = to_nir(g, timesteps=8, encoding="direct", readout="spikes")
    back = nir.read(str(write_nir(graph, tmp_path / "m.nir")))
    assert set(back.nodes) == {"input", "output", "0", "1", "2", "3", "4", "5", "6", "7", "8"}
    assert sorted(back.edges) == sorted([("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"),
                                         ("3", "4"), ("4", "5"), ("5", "6"), ("6", "7"),
                                         ("7", "8"), ("8", "output")])
    for la in g.layers:
        node = back.nodes[la.name]
        np.testing.assert_array_equal(node.weight, la.weight.detach().numpy())
        np.testing.assert_array_equal(node.bias, la.module.bias.detach().numpy())
        assert node.metadata["slamp.kept"] == int((la.weight != 0).sum())
        assert node.metadata["slamp.total"] == la.n_weights
        neuron = back.nodes[la.neuron.name]
        assert isinstance(neuron, nir.LIF)
        assert neuron.tau.shape == la.neuron.out_shape
        beta = np.float32(la.neuron.module.beta)
        assert np.all((1.0 - DT / neuron.tau).astype(np.float32) == beta)
        np.testing.assert_array_equal(neuron.r, neuron.tau / DT)
        assert np.all(neuron.v_threshold == 1.0) and np.all(neuron.v_leak == 0)
        assert neuron.metadata == {"slamp.reset_mechanism": "zero", "slamp.reset_delay": True}
    assert back.nodes["2"].stride.tolist() == [2, 2]
    assert back.metadata["slamp.dt"] == DT and back.metadata["slamp.timesteps"] == 8
    assert back.metadata["slamp.r_convention"] == "r = tau/dt (snnTorch)"


def test_snntorch_importer_reproduces_the_spikes(tmp_path):
    pytest.importorskip("nirtorch")

    g = pruned_example()
    path = write_nir(to_nir(g, timesteps=8, encoding="direct", readout="spikes"),
                     tmp_path / "m.nir")
    x = digits_seq(6)
    ours = spikes_of(g, x)["8"]
    np.testing.assert_array_equal(snntorch_import_spikes(path, x), ours)
    assert ours.sum() > 0


def snntorch_import_spikes(path, x: torch.Tensor) -> np.ndarray:
    """Output spikes [T, N, ...] of the NIR file as snnTorch's own ``import_from_nir`` runs it.

    snnTorch's importer maps NIR's per-sample Flatten(start_dim=0) to torch's Flatten(0), which
    would flatten the batch too, so its network runs one sample at a time (unbatched).
    """
    from snntorch.import_nir import import_from_nir

    net = import_from_nir(nir.read(str(path)))
    per_sample = []
    for n in range(x.shape[1]):
        reset_state(net)
        state, outs = None, []
        with torch.no_grad():
            for t in range(x.shape[0]):
                out, state = net(x[t, n], state)
                outs.append(out.numpy())
        per_sample.append(np.stack(outs))
    return np.stack(per_sample, axis=1)


class WithBatchNorm(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(6)
        self.lif1 = snn.Synaptic(alpha=0.5, beta=0.8, init_hidden=True, reset_mechanism="zero")
        self.pool = nn.AvgPool2d(2)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(96, 10, bias=False)
        self.lif2 = snn.Leaky(beta=torch.linspace(0.3, 0.9, 10), init_hidden=True,
                              reset_mechanism="subtract")

    def forward(self, x):
        return self.lif2(self.fc(self.flat(self.pool(self.lif1(self.bn(self.conv(x)))))))


def test_batchnorm_is_folded_and_the_graph_simulates_the_same():
    torch.manual_seed(0)
    m = WithBatchNorm()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.2, 0.2)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 2.0)
        m.conv.weight.mul_(4)
        m.fc.weight.mul_(6)
    m.eval()
    g = trace(m, (1, 8, 8))
    graph = to_nir(g, timesteps=6, encoding="direct", readout="spikes")
    assert "bn" not in graph.nodes and isinstance(graph.nodes["lif1"], nir.CubaLIF)
    assert isinstance(graph.nodes["conv"], nir.Conv2d)
    x = digits_seq(10, 6)
    ours = spikes_of(g, x)
    sim = nir_sim.simulate(graph, x.numpy())
    for name in ("lif1", "lif2"):
        agree = (ours[name] == sim[name]).mean()
        assert agree >= 0.999, (name, agree)  # BN folding changes float32 rounding only
    assert ours["lif2"].sum() > 0


def test_nir_file_is_a_model(tmp_path):
    g = pruned_example()
    path = write_nir(to_nir(g, timesteps=8, encoding="direct", readout="spikes"),
                     tmp_path / "m.nir")
    model, meta = from_nir(path)
    assert meta["slamp.timesteps"] == 8
    g2 = trace(model, (1, 8, 8))
    x = digits_seq(8)
    a, b = spikes_of(g, x), spikes_of(g2, x)
    np.testing.assert_array_equal(a["8"], b["8"])
    assert [la.n_weights for la in g2.layers] == [la.n_weights for la in g.layers]


def test_maxpool_cannot_be_exported():
    m = nn.Sequential(nn.Conv2d(1, 2, 3), snn.Leaky(beta=0.5, init_hidden=True),
                      nn.MaxPool2d(2), nn.Flatten(), nn.Linear(18, 2),
                      snn.Leaky(beta=0.5, init_hidden=True))
    g = trace(m, (1, 8, 8))
    with pytest.raises(ExportError, match=r"layer '2' \(MaxPool2d\) cannot be expressed in NIR"):
        to_nir(g, timesteps=4, encoding="direct", readout="spikes")


def _write(tmp_path, nodes, edges):
    p = tmp_path / "g.nir"
    nir.write(str(p), nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    return p


def test_unsupported_node_and_cycle_are_named(tmp_path):
    w = np.ones((3, 3), dtype=np.float32)
    p = _write(tmp_path, {"input": nir.Input(np.array([3])), "d": nir.Delay(np.ones(3)),
                          "output": nir.Output(np.array([3]))},
               [("input", "d"), ("d", "output")])
    with pytest.raises(ModelError, match="node 'd' has type Delay, which slamp-deploy does not "
                                         "read; supported: Affine"):
        from_nir(p)
    cyclic = nir.NIRGraph(nodes={"input": nir.Input(np.array([3])), "a": nir.Linear(w),
                                 "b": nir.Linear(w), "output": nir.Output(np.array([3]))},
                          edges=[("input", "a"), ("a", "b"), ("b", "a")], type_check=False)
    with pytest.raises(ModelError, match=r"g\.nir: node '[ab]' is part of a cycle"):
        nir_order(cyclic, "g.nir")
    with pytest.raises(ModelError, match="NIR file not found"):
        from_nir(tmp_path / "nope.nir")
