"""Tracing a model into a SpikingGraph, and running it exactly as snnTorch does."""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.utils
import torch
from slamp_deploy.examples.digits import build_model
from torch import nn

from slamp_deploy.errors import ModelError
from slamp_deploy.graph import trace
from slamp_deploy.runner import run

from .conftest import tiny_mlp


class CustomNet(nn.Module):
    """The snnTorch tutorial style: explicit states, a view() between layers, a time loop."""

    def __init__(self, steps: int = 4) -> None:
        super().__init__()
        self.steps = steps
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.lif1 = snn.Synaptic(alpha=0.6, beta=0.8, reset_mechanism="subtract")
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 10)
        self.drop = nn.Dropout(0.1)
        self.lif2 = snn.Leaky(beta=torch.linspace(0.5, 0.9, 10), reset_mechanism="none")

    def forward(self, x):
        syn, mem1 = self.lif1.reset_mem()
        mem2 = self.lif2.reset_mem()
        out = []
        for _ in range(self.steps):
            spk1, syn, mem1 = self.lif1(self.bn(self.conv(x)), syn, mem1)
            cur = self.fc(self.pool(spk1).view(x.shape[0], -1))
            spk2, mem2 = self.lif2(self.drop(cur), mem2)
            out.append(spk2)
        return torch.stack(out)


def test_trace_sequential_example():
    g = trace(build_model(), (1, 8, 8))
    assert [op.kind for op in g.ops] == ["conv2d", "leaky", "conv2d", "leaky", "flatten",
                                         "linear", "leaky", "linear", "leaky"]
    assert [la.name for la in g.layers] == ["0", "2", "5", "7"]
    assert [la.neuron.name for la in g.layers] == ["1", "3", "6", "8"]
    assert g.ops[2].out_shape == (32, 4, 4)
    assert g.n_weights == 144 + 4608 + 65536 + 1280


def test_trace_custom_module_with_time_loop_and_view():
    g = trace(CustomNet(), (1, 8, 8))
    kinds = [op.kind for op in g.ops]
    assert kinds == ["conv2d", "batchnorm", "synaptic", "avgpool", "reshape", "linear",
                     "dropout", "leaky"]
    assert g.ops[4].in_shape == (4, 4, 4) and g.ops[4].out_shape == (64,)
    assert [la.neuron.name for la in g.layers] == ["lif1", "lif2"]


def test_unsupported_layer_is_named():
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), snn.Leaky(beta=0.5, init_hidden=True))
    with pytest.raises(ModelError, match=r"layer '1' has unsupported type .*ReLU; supported: .*"
                                         r"snn.Leaky"):
        trace(model, (4,))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.lif = snn.Leaky(beta=0.5, init_hidden=True)
        self.b = nn.Linear(4, 4)

    def forward(self, x):
        return self.b(self.lif(self.a(x)) + x)


def test_non_chain_dataflow_is_refused():
    with pytest.raises(ModelError, match="layer 'b' does not take its input from the layer "
                                         "called before it \\('lif'\\)"):
        trace(Residual(), (4,))


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ModelError, match=r"one time step of shape \[N, 5\].*mat1 and mat2"):
        trace(tiny_mlp(), (5,))


@pytest.mark.parametrize("reset", ["zero", "subtract", "none"])
def test_runner_matches_the_models_own_forward(reset):
    torch.manual_seed(0)
    model = tiny_mlp(reset=reset)
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Linear):
                m.weight.mul_(4)
    x = torch.rand(6, 5, 64)
    g = trace(model, (64,))
    ours = run(g, x)
    snntorch.utils.reset(model)
    theirs = torch.stack([model(x[t])[0] for t in range(6)])
    assert torch.equal(ours.spikes, theirs)
    assert ours.spikes.sum() > 0


def test_runner_on_custom_module_matches_its_forward():
    torch.manual_seed(1)
    net = CustomNet(steps=5).eval()
    with torch.no_grad():
        net.conv.weight.mul_(3)
        net.fc.weight.mul_(5)
    x = torch.rand(3, 1, 8, 8)
    g = trace(net, (1, 8, 8))
    ours = run(g, x.unsqueeze(0).expand(5, *x.shape))
    with torch.no_grad():
        theirs = net(x)
    assert torch.equal(ours.spikes, theirs)
