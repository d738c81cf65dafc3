"""Exact connectivity and SynOps counts: hand-computed layers, NeuroBench's definitions
re-implemented independently on the built-in example, the dense/pruned swap, goldens."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import snntorch as snn
import torch
from torch import nn

from slamp_deploy.data import Dataset, encode, load_digits, split
from slamp_deploy.fit.from_graph import geometries
from slamp_deploy.geometry import layer_stats
from slamp_deploy.measure.activity import connectivity, dense_weights, measure
from slamp_deploy.model.graph import trace
from slamp_deploy.model.loader import load_model
from tests.golden.regenerate import GOLDEN, report_golden, report_model


def _lif() -> snn.Leaky:
    return snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True, reset_mechanism="zero")


def _seq(x: list) -> Dataset:
    """Ready-made input sequences [T, N, ...]."""
    t = torch.tensor(x, dtype=torch.float32)
    return Dataset(x=t, y=torch.zeros(t.shape[1], dtype=torch.long), source="test",
                   sequence=True)


def test_linear_synops_by_hand() -> None:
    model = nn.Sequential(nn.Linear(3, 2), _lif())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 2.0],
                                            [0.0, 0.0, 3.0]]))
    # kept synapses per input (column counts of W != 0): input0 -> 1, input1 -> 0, input2 -> 2
    g = trace(model, (3,))
    data = _seq([[[1, 1, 0], [1, 0, 1]],    # t=0: sample0 spikes on 0,1; sample1 on 0,2
                 [[0, 0, 1], [0, 1, 0]]])   # t=1: sample0 on 2;      sample1 on 1
    r = measure(g, data, timesteps=2, encoding="direct")
    la = r.layers[0]
    # t=0: sample0 1*1 + 1*0 = 1, sample1 1*1 + 1*2 = 3  -> 4
    # t=1: sample0 1*2 = 2,        sample1 1*0 = 0       -> 2
    assert la.synops_ac == (4, 2)
    assert la.synops_mac == (0, 0)
    assert la.input_events == (4, 2)
    assert la.effective_acs == 3.0  # (4 + 2) / 2 samples
    assert la.dense == 3 * 2 * 2  # every connection at both steps
    assert (la.weights_total, la.weights_kept) == (6, 3)
    assert la.connection_sparsity == pytest.approx(0.5)
    assert (la.fan_in_max, la.fan_out_max, la.synapses_kept) == (2, 2, 3)
    assert la.fan_in_mean == 1.5 and la.fan_out_mean == 1.0
    assert r.ann_macs == 6


def test_graded_input_counts_macs_per_sample() -> None:
    model = nn.Sequential(nn.Linear(3, 2), _lif())
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 3.0]]))
    g = trace(model, (3,))
    # sample0 is graded (0.5): its non-zero inputs 0 and 2 cost 1 + 2 = 3 MACs per step;
    # sample1 is binary: input 1 costs 0 ACs, input 2 costs 2 ACs per step. Two steps.
    data = Dataset(x=torch.tensor([[0.5, 0.0, 1.0], [0.0, 1.0, 1.0]]), y=torch.zeros(2).long(),
                   source="test")
    r = measure(g, data, timesteps=2, encoding="direct")
    la = r.layers[0]
    assert la.synops_mac == (3, 3)
    assert la.synops_ac == (2, 2)
    assert la.effective_macs == 3.0 and la.effective_acs == 2.0


def test_conv_synops_by_hand() -> None:
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 0.5  # centre tap: output (y, x) reads input (y, x)
        conv.weight[0, 0, 1, 2] = -1.0  # right tap: output (y, x) reads input (y, x + 1)
    g = trace(nn.Sequential(conv, _lif()), (1, 3, 3))
    x = torch.zeros(1, 1, 1, 3, 3)
    x[0, 0, 0, 0, 0] = 1  # read by output (0,0) (centre) only: x - 1 = -1 is padding -> 1
    x[0, 0, 0, 1, 2] = 1  # read by output (1,2) (centre) and output (1,1) (right) -> 2
    r = measure(g, Dataset(x=x, y=torch.zeros(1).long(), source="t", sequence=True),
                timesteps=1, encoding="direct")
    la = r.layers[0]
    assert la.synops_ac == (3,)
    # fan-in: outputs in the last column lose the right tap to padding: 6 outputs with 2, 3 with 1
    assert la.synapses_kept == 6 * 2 + 3 * 1
    assert la.fan_in_max == 2
    # dense: 3x3 kernel over a 3x3 input with padding 1: corners 4 taps, edges 6, centre 9
    assert la.synapses_total == 4 * 4 + 4 * 6 + 9
    assert la.dense == la.synapses_total


def test_strided_conv_synops_by_hand() -> None:
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0, 1, 1] = 1.0  # output (i, j) reads input (2i, 2j)
        conv.weight[0, 0, 1, 2] = 1.0  # and input (2i, 2j + 1)
    g = trace(nn.Sequential(conv, _lif()), (1, 4, 4))
    x = torch.zeros(1, 1, 1, 4, 4)
    for yy, xx in ((0, 1), (1, 1), (2, 2), (3, 3)):
        x[0, 0, 0, yy, xx] = 1
    # (0,1): right tap of output (0,0) -> 1; (1,1): odd row, read by nobody -> 0
    # (2,2): centre tap of output (1,1) -> 1; (3,3): odd row -> 0. Total 2.
    r = measure(g, Dataset(x=x, y=torch.zeros(1).long(), source="t", sequence=True),
                timesteps=1, encoding="direct")
    assert r.layers[0].synops_ac == (2,)
    assert r.layers[0].synapses_kept == 4 * 2  # 2x2 outputs, both taps always inside


def test_grouped_dilated_conv1d_matches_direct_count() -> None:
    torch.manual_seed(0)
    conv = nn.Conv1d(4, 6, 3, stride=2, padding=2, dilation=2, groups=2)
    with torch.no_grad():
        conv.weight.mul_((torch.rand_like(conv.weight) > 0.5).float())
    g = trace(nn.Sequential(conv, _lif()), (4, 11))
    x = (torch.rand(2, 5, 4, 11) > 0.6).float()
    r = measure(g, Dataset(x=x, y=torch.zeros(5).long(), source="t", sequence=True),
                timesteps=2, encoding="direct")
    mask = (conv.weight != 0).float()
    for t in range(2):
        direct = nn.functional.conv1d(x[t], mask, stride=2, padding=2, dilation=2, groups=2)
        assert r.layers[0].synops_ac[t] == int(direct.sum())


@pytest.fixture(scope="module")
def example() -> tuple:
    """The built-in example, 80% magnitude-pruned with the zeros written into the weights
    (masks permanent), and its evaluation split."""
    loaded = load_model(None, None)
    ds = load_digits()
    g = trace(loaded.model, ds.sample_shape)
    dense = {la.name: la.weight.detach().clone() for la in g.layers}
    with torch.no_grad():
        for la in g.layers:
            w = la.weight
            k = int(w.numel() * 0.8)
            thr = w.abs().flatten().kthvalue(k).values
            w.mul_((w.abs() > thr).float())
    parts = split(ds, eval_fraction=0.2, calib_samples=256, seed=0)
    return g, parts.eval, dense


def _neurobench(model: nn.Module, x: torch.Tensor) -> dict:
    """NeuroBench 2.3's definitions (ecosystem.md 6.2), re-implemented from the text: hooks on
    every snnTorch neuron (outputs) and every Linear/Conv (inputs, one per step); SynOps from a
    copy of each layer with binarised weights and zero bias applied to the binarised input; AC if
    every input value is in {-1, 0, 1}, else MAC; Dense with all-ones inputs and weights."""
    acts: list[torch.Tensor] = []
    inputs: dict[nn.Module, list[torch.Tensor]] = {}
    conn = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    hooks = []
    for m in model.modules():
        if isinstance(m, snn.SpikingNeuron):
            hooks.append(m.register_forward_hook(
                lambda mod, i, o: acts.append(o[0] if isinstance(o, tuple) else o)))
    for m in conn:
        hooks.append(m.register_forward_pre_hook(
            lambda mod, i: inputs.setdefault(mod, []).append(i[0].detach().clone())))
    from snntorch import utils as snn_utils

    n = x.shape[1]
    with torch.no_grad():
        for b in range(0, n, 128):  # a NeuroBench dataloader batch
            snn_utils.reset(model)
            for t in range(x.shape[0]):
                model(x[t, b:b + 128])
    for h in hooks:
        h.remove()
    mac = ac = dense = 0.0
    for m, recs in inputs.items():
        binm = copy.deepcopy(m)
        ones = copy.deepcopy(m)
        with torch.no_grad():
            binm.weight.copy_((m.weight != 0).float())
            binm.bias.zero_()
            ones.weight.fill_(1.0)
            ones.bias.zero_()
            for inp in recs:
                ops = float(binm((inp != 0).float()).sum())
                spiking = bool(((inp == 0) | (inp.abs() == 1)).all())
                if spiking:
                    ac += ops
                else:
                    mac += ops
                dense += float(ones(torch.ones_like(inp)).sum())
    zeros = sum(int((m.weight == 0).sum()) for m in conn)
    total = sum(m.weight.numel() for m in conn)
    n_act = sum(a.numel() for a in acts)
    nz_act = sum(int((a != 0).sum()) for a in acts)
    return {
        "ConnectionSparsity": round(zeros / total, 4),
        "ActivationSparsity": (n_act - nz_act) / n_act,
        "Effective_MACs": mac / n, "Effective_ACs": ac / n, "Dense": dense / n,
        "ParameterCount": sum(p.numel() for p in model.parameters()),
    }


@pytest.mark.parametrize("encoding", ["direct", "rate"])
def test_neurobench_definitions_on_builtin_example(example: tuple, encoding: str) -> None:
    g, ev, _ = example
    r = measure(g, ev, timesteps=8, encoding=encoding, seed=3, batch_size=len(ev))  # one draw
    x = encode(ev.x, 8, encoding, generator=torch.Generator().manual_seed(3))
    nb = _neurobench(g.model, x)
    mine = r.neurobench()
    assert round(mine["ConnectionSparsity"], 4) == nb["ConnectionSparsity"]
    assert mine["ConnectionSparsity"] == pytest.approx(0.8, abs=1e-3)
    assert mine["ActivationSparsity"] == pytest.approx(nb["ActivationSparsity"], abs=1e-12)
    so = mine["SynapticOperations"]
    # the counts are integers: per-sample values agree to float rounding
    assert so["Effective_ACs"] * r.samples == pytest.approx(nb["Effective_ACs"] * r.samples,
                                                             abs=1e-6)
    assert so["Effective_MACs"] * r.samples == pytest.approx(nb["Effective_MACs"] * r.samples,
                                                              abs=1e-6)
    assert so["Dense"] == nb["Dense"]
    assert mine["ParameterCount"] == nb["ParameterCount"]
    if encoding == "direct":
        assert so["Effective_MACs"] > 0  # the analog first layer
    else:
        assert so["Effective_MACs"] == 0  # Bernoulli spikes everywhere


def test_fan_in_out_agree_with_fit_checker(example: tuple) -> None:
    g, _, _ = example
    masks = {la.name: la.weight.detach() != 0 for la in g.layers}
    for la, geom in zip(g.layers, geometries(g, masks), strict=True):
        fan_in, fan_out, _ = connectivity(la, g.ops[la.op_index].in_shape)
        st = layer_stats(geom)
        assert np.array_equal(fan_in.numpy(), st.fan_in), la.name
        assert np.array_equal(fan_out.numpy(), st.fan_out), la.name


def test_layer_input_events_are_the_previous_layers_spikes(example: tuple) -> None:
    g, ev, _ = example
    r = measure(g, ev, timesteps=8, encoding="direct")
    for la in r.layers[1:]:
        prev = r.layers[r.layers.index(la) - 1]
        assert la.input_events == r.neuron_layer(prev.neuron).spikes
    n = r.neuron_layers[0]
    assert n.neuron_updates == 16 * 8 * 8 * 8
    assert n.firing_rate == pytest.approx(sum(n.spikes) / (n.neurons * r.samples * 8))


def test_dense_swap_restores_bit_for_bit(example: tuple) -> None:
    g, ev, dense = example
    before = {la.name: la.weight.detach().clone() for la in g.layers}
    state = copy.deepcopy(g.model.state_dict())
    with dense_weights(g, dense):
        for la in g.layers:
            assert torch.equal(la.weight.detach(), dense[la.name])
        d = measure(g, ev, timesteps=8, encoding="direct", label="dense")
    for la in g.layers:
        assert torch.equal(la.weight.detach(), before[la.name])
    for k, v in g.model.state_dict().items():
        if k.rsplit(".", 1)[-1] not in ("mem", "syn"):
            assert torch.equal(v, state[k]), k
    assert d.connection_sparsity == pytest.approx(0.0)
    p = measure(g, ev, timesteps=8, encoding="direct")
    assert p.synops < d.synops
    assert p.dense == d.dense and p.ann_macs == d.ann_macs


def test_dense_swap_restores_after_an_error(example: tuple) -> None:
    g, _, dense = example
    before = {la.name: la.weight.detach().clone() for la in g.layers}
    with pytest.raises(RuntimeError), dense_weights(g, dense):
        raise RuntimeError("boom")
    for la in g.layers:
        assert torch.equal(la.weight.detach(), before[la.name])


def test_footprint_does_not_depend_on_history(example: tuple) -> None:
    from slamp_deploy.measure.activity import footprint_bytes

    g, ev, _ = example
    a = footprint_bytes(g.model)
    measure(g, ev, timesteps=2, encoding="direct")
    g.model(torch.zeros(5, 1, 8, 8))  # leaves batch-shaped mem buffers behind
    assert footprint_bytes(g.model) == a


def test_report_golden() -> None:
    path = GOLDEN / "report" / "sections.json"
    assert path.exists(), "run: python -m tests.golden.regenerate report"
    expected = json.loads(path.read_text())
    assert json.loads(json.dumps(report_golden(), sort_keys=True)) == expected


def test_golden_model_hand_checks() -> None:
    """A few numbers of the golden model worked out by hand, so the golden is not just 'what the
    code printed'."""
    g, data, _, masks = report_model()
    r = measure(g, data, timesteps=3, encoding="direct")
    conv, fc = r.layers
    # conv mask keeps taps k = 1, 2, 4, 5, 7, 8 of each 3x3 kernel (k % 3 != 0): 12 of 18
    assert (conv.weights_kept, conv.weights_total) == (12, 18)
    # fc mask keeps every 4th weight of 3 x 32: 24 of 96
    assert (fc.weights_kept, fc.weights_total) == (24, 96)
    # every (t, n) input frame holds 4 spikes ((7t + 3n + 5y + 11x) % 4 == 0 has 4 solutions)
    assert conv.input_events == (16, 16, 16)
    assert int(masks["0"].sum()) == 12
