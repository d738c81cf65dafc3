"""Current matching: the one-sweep implementation computes exactly what the layer-by-layer
definition computes (factors, weights and re-estimated BatchNorm statistics, bit for bit), on
chains and residual networks, with each encoding; and it costs one pass, not one per layer."""

from __future__ import annotations

import copy

import pytest
import snntorch as snn
import torch
from slamp_deploy.examples import cifar_resnet
from torch import nn

from slamp_deploy.data import Dataset
from slamp_deploy.model import runner
from slamp_deploy.model.graph import trace
from slamp_deploy.prune import recover
from slamp_deploy.prune.masks import apply_masks, magnitude_mask
from slamp_deploy.prune.recover import match_currents, match_currents_per_layer


def _lif(**kw):
    return snn.Leaky(beta=0.8, threshold=0.5, init_hidden=True, reset_mechanism="zero", **kw)


def conv_chain() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6), _lif(),
        nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), _lif(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 16), _lif(), nn.Dropout(0.2),
        nn.Linear(16, 10), _lif(output=True))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 24), _lif(), nn.Linear(24, 24), nn.BatchNorm1d(24), _lif(),
                         nn.Linear(24, 10), _lif(output=True))


def _data(n: int, shape: tuple[int, ...], seed: int = 0) -> Dataset:
    g = torch.Generator().manual_seed(seed)
    return Dataset(x=torch.rand(n, *shape, generator=g), y=torch.randint(0, 10, (n,), generator=g),
                   source="random")


def _pruned_pair(factory, shape):
    """Two identical pruned graphs with BatchNorm statistics away from their defaults."""
    torch.manual_seed(3)
    model = factory()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    graphs = [trace(copy.deepcopy(model).eval(), shape) for _ in range(2)]
    dense = {la.name: la.weight.detach().clone() for la in graphs[0].layers}
    masks = {la.name: magnitude_mask(la.weight, la.n_weights // 3) for la in graphs[0].layers}
    for g in graphs:
        apply_masks(g, masks)
    return graphs, dense, masks


@pytest.mark.parametrize(("factory", "shape", "encoding", "batch"), [
    (mlp, (64,), "rate", 7),
    (conv_chain, (1, 8, 8), "direct", 16),
    (conv_chain, (1, 8, 8), "latency", 9),
    (cifar_resnet.resnet_tiny, (1, 8, 8), "direct", 10),
    (cifar_resnet.resnet_tiny, (1, 8, 8), "rate", 16),
])
def test_one_sweep_equals_the_layer_by_layer_definition(factory, shape, encoding, batch):
    (a, b), dense, masks = _pruned_pair(factory, shape)
    data = _data(37, shape)
    kw = dict(timesteps=4, encoding=encoding, batch_size=batch, seed=5)
    fa = match_currents(a, dense, masks, data, **kw)
    fb = match_currents_per_layer(b, dense, masks, data, **kw)
    assert fa == fb
    assert any(f != 1.0 for fs in fa.values() for f in fs)  # the factors did something
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    moved = [k for k in sa if k.endswith("running_mean")]
    assert moved and all(not torch.equal(sa[k], _pruned_pair(factory, shape)[0][0]
                                         .model.state_dict()[k]) for k in moved)
    assert not a.model.training


def test_the_sweep_runs_the_network_once_not_once_per_layer(monkeypatch):
    (a, b), dense, masks = _pruned_pair(cifar_resnet.resnet_tiny, (1, 8, 8))
    calls = {"run": 0}
    real = runner.run

    def counting(*args, **kw):
        calls["run"] += 1
        return real(*args, **kw)

    monkeypatch.setattr(recover, "run", counting)
    data = _data(20, (1, 8, 8))
    match_currents(a, dense, masks, data, timesteps=2, encoding="direct", batch_size=8)
    assert calls["run"] == 0  # no whole-network passes at all: one op-by-op sweep
    match_currents_per_layer(b, dense, masks, data, timesteps=2, encoding="direct", batch_size=8)
    assert calls["run"] >= len(b.layers) * 3  # 3 batches per layer, plus the BatchNorm passes


def test_chained_batchnorms_use_the_definition():
    model = nn.Sequential(nn.Linear(8, 8), nn.BatchNorm1d(8), _lif(), nn.BatchNorm1d(8),
                          nn.Linear(8, 4), _lif(output=True))
    g = trace(model.eval(), (8,))
    assert recover._chained_batchnorms(g)
    assert not recover._chained_batchnorms(trace(mlp().eval(), (64,)))


@torch.no_grad()
def test_spikes_are_held_as_bool_and_restored_exactly():
    g = trace(mlp().eval(), (64,))
    s = recover._Stream.encoded(_data(5, (64,)), torch.device("cpu"), 3, "rate", 4, 0)
    out = recover._forward(g, 0, s)
    s.put(0, g.ops[0], out)
    assert s.vals[0][0][0].dtype == torch.float32  # currents stay float
    spikes = recover._forward(g, 1, s)
    s.put(1, g.ops[1], spikes)
    assert s.vals[1][0][0].dtype == torch.bool
    assert torch.equal(s.get(1, 1, 2), spikes[1][2])
