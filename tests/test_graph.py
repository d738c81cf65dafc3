"""Tracing a model into a SpikingGraph, and running it exactly as snnTorch does."""

from __future__ import annotations

import pytest
import snntorch as snn
import snntorch.utils
import torch
from slamp_deploy.examples.digits import build_model
from torch import nn

from slamp_deploy.errors import ModelError
from slamp_deploy.model.graph import INPUT, reset_state, trace
from slamp_deploy.model.runner import run

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


def test_residual_add_is_traced_as_an_add_op():
    g = trace(Residual(), (4,))
    assert [(op.name, op.kind) for op in g.ops] == [
        ("a", "linear"), ("lif", "leaky"), ("lif+input", "add"), ("b", "linear")]
    assert g.sources(2) == (1, INPUT) and g.sources(3) == (2,)
    assert not g.is_chain and g.consumers[1] == (2,)
    assert g.describe()[2]["inputs"] == ["lif", "@input"]
    assert "inputs" not in g.describe()[1]  # ops that read the op before them stay implicit


class InPlaceResidual(nn.Module):
    """``out += shortcut(x)`` on a BatchNorm output, joined before the neuron (ResNet style)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 6)
        self.bn = nn.BatchNorm1d(6)
        self.short = nn.Linear(4, 6, bias=False)
        self.lif = snn.Leaky(beta=0.7, init_hidden=True)
        self.fc2 = nn.Linear(6, 3)
        self.out = snn.Leaky(beta=0.7, init_hidden=True)

    def forward(self, x):
        h = self.bn(self.fc1(x))
        h += self.short(x)
        return self.out(self.fc2(self.lif(h)))


def test_in_place_residual_joins_before_the_neuron_and_runs_exactly():
    torch.manual_seed(3)
    net = InPlaceResidual().eval()
    with torch.no_grad():
        net.fc1.weight.mul_(4)
        net.short.weight.mul_(4)
        net.fc2.weight.mul_(4)
    g = trace(net, (4,))
    add = next(i for i, op in enumerate(g.ops) if op.kind == "add")
    assert [g.ops[j].name for j in g.sources(add)] == ["bn", "short"]
    # both synaptic layers feed the same neurons; BN sits between fc1 and the join
    assert {la.name: la.neuron.name for la in g.layers} == {"fc1": "lif", "short": "lif",
                                                            "fc2": "out"}
    x = torch.rand(7, 5, 4)
    ours = run(g, x)
    reset_state(net)
    with torch.no_grad():
        theirs = torch.stack([net(x[t]) for t in range(7)])
    assert torch.equal(ours.spikes, theirs) and theirs.sum() > 0


class Gated(nn.Module):
    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op
        self.a = nn.Linear(4, 4)
        self.lif = snn.Leaky(beta=0.5, init_hidden=True)
        self.b = nn.Linear(8 if op == "cat" else 4, 4)

    def forward(self, x):
        h = self.lif(self.a(x))
        if self.op == "cat":
            return self.b(torch.cat([h, x], dim=1))
        if self.op == "mul":
            return self.b(h * 2.0)
        return self.b(h[:, :4].clone())


@pytest.mark.parametrize("op, what", [("cat", "torch.cat"), ("mul", "Tensor.mul"),
                                      ("clone", "Tensor.clone")])
def test_dataflow_that_cannot_be_represented_is_refused_naming_the_function(op, what):
    with pytest.raises(ModelError, match=rf"layer 'b' takes its input from the result of "
                                         rf"{what.replace('.', '[.]')}; between layers "
                                         rf"slamp-deploy supports reshapes"):
        trace(Gated(op), (4,))


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


class DropsTheBatch(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(4, 4)
        self.fc2 = nn.Linear(4, 2)
        self.lif = snn.Leaky(beta=0.5, init_hidden=True)

    def forward(self, x):
        return self.lif(self.fc2(self.fc1(x)[0]))


def test_a_layer_fed_without_the_batch_dimension_is_named():
    with pytest.raises(ModelError, match=r"layer 'fc2': its input has shape \(4,\), which has no "
                                         r"batch dimension; the model's forward must process "
                                         r"one time step \[N, \.\.\.\]"):
        trace(DropsTheBatch(), (4,))
