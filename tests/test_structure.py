"""Structured pruning (prune/structure.py, prune/compact.py): groups, scores, allocation, and the
proof that the compact model spikes exactly as the masked full-size model at every kept neuron
(chains and residual nets, Leaky and Synaptic, per-neuron parameters learnable or not)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import snntorch as snn
import torch
from slamp_deploy.examples import cifar_resnet
from torch import nn

from slamp_deploy.errors import ModelError, UsageError
from slamp_deploy.model.graph import NEURON_KINDS, trace
from slamp_deploy.model.runner import run
from slamp_deploy.prune.compact import (
    compact_graph,
    compact_model,
    row_masks,
    shrink_table,
    structured_masks,
    zero_removed_biases,
)
from slamp_deploy.prune.masks import apply_masks
from slamp_deploy.prune.structure import (
    channel_groups,
    check_keep,
    group_scores,
    plan_structure,
)


def _lif(n: int | None, *, learn: bool = False, shape: tuple[int, ...] | None = None,
         **kw: object) -> snn.Leaky:
    g = torch.Generator().manual_seed(n or 0)
    if n is None:
        beta, thr = 0.8, 1.0
    else:
        sh = shape or (n,)
        beta = 0.5 + 0.45 * torch.rand(sh, generator=g)
        thr = 0.5 + torch.rand(sh, generator=g)
    return snn.Leaky(beta=beta, threshold=thr, learn_beta=learn, learn_threshold=learn,
                     init_hidden=True, reset_mechanism="subtract", **kw)


def _syn(n: int) -> snn.Synaptic:
    g = torch.Generator().manual_seed(n + 1)
    return snn.Synaptic(alpha=0.3 + 0.6 * torch.rand(n, generator=g),
                        beta=0.5 + 0.4 * torch.rand(n, generator=g),
                        threshold=0.5 + torch.rand(n, generator=g), learn_alpha=True,
                        init_hidden=True, reset_mechanism="zero")


def mlp_leaky_synaptic() -> nn.Module:
    return nn.Sequential(nn.Linear(12, 20), _lif(20, learn=True), nn.Linear(20, 16), _syn(16),
                         nn.Linear(16, 14, bias=False), _lif(None), nn.Linear(14, 5),
                         _lif(5, output=True))


def conv_chain() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), _lif(8, shape=(8, 1, 1)),
        nn.Conv2d(8, 12, 3, stride=2, padding=1), _lif(12, shape=(12, 4, 4), learn=True),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(12 * 2 * 2, 10), _syn(10), nn.Linear(10, 4),
        _lif(None, output=True))


def resnet() -> nn.Module:
    return cifar_resnet.resnet_tiny(n_classes=4, in_channels=2, size=8)


CASES = {"mlp": (mlp_leaky_synaptic, (12,)), "conv": (conv_chain, (2, 8, 8)),
         "resnet": (resnet, (2, 8, 8))}


WEIGHT_GAIN = 15.0  # default inits are quiet; louder weights make every layer spike


def _randomised(factory) -> nn.Module:
    """The model with BatchNorm statistics and affine parameters that are not the
    defaults (so a slicing mistake there changes the spikes)."""
    torch.manual_seed(3)
    m = factory().eval()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.running_mean.uniform_(-0.3, 0.3)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.4)
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.weight.mul_(WEIGHT_GAIN)
    return m


def _record(graph, x):
    vals: dict[int, list[torch.Tensor]] = {}

    def obs(i, op, t, inp, out):
        vals.setdefault(i, []).append(out.detach().clone())

    run(graph, x, observers=(obs,))
    return vals


def compare(full_graph, plan, compact, x) -> dict[str, int]:
    """Run the masked full-size model and the compact one on ``x``; every op's output at the
    kept rows must agree: spikes exactly, currents to float32 rounding (a sum over fewer
    columns may round differently in the last bit). Returns the spikes seen per op."""
    masked = copy.deepcopy(full_graph.model)
    mg = trace(masked, full_graph.input_shape)
    apply_masks(mg, structured_masks(mg, plan))
    zero_removed_biases(mg, plan)
    cg = trace(compact, full_graph.input_shape)
    rows = row_masks(full_graph, plan)
    a, b = _record(mg, x), _record(cg, x)
    assert len(mg.ops) == len(cg.ops)
    spikes = {}
    for i, op in enumerate(mg.ops):
        for t in range(x.shape[0]):
            full = a[i][t]
            keep = torch.from_numpy(rows[i])
            sel = full[:, keep].reshape(full.shape[0], -1)
            got = b[i][t].reshape(full.shape[0], -1)
            assert sel.shape == got.shape, op.name
            if op.kind in NEURON_KINDS:
                assert torch.equal(sel, got), f"{op.name} step {t}: spikes differ"
                spikes[op.name] = spikes.get(op.name, 0) + int(got.sum())
            else:
                assert torch.allclose(sel, got, atol=1e-5, rtol=1e-5), f"{op.name} step {t}"
    # the readout keeps every class: its membranes agree too
    assert torch.allclose(run(mg, x).mem, run(cg, x).mem, atol=1e-5, rtol=1e-5)
    return spikes


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("method", ["slamp", "lamp", "uniform"])
def test_compact_model_spikes_exactly_as_the_masked_full_size_model(case, method):
    factory, shape = CASES[case]
    model = _randomised(factory)
    g = trace(model, shape)
    lambdas = {la.name: 1.0 + i for i, la in enumerate(g.layers)}
    plan = plan_structure(g, method, 0.3, lambdas=lambdas)
    assert plan.removed > 0
    compact = compact_model(g, plan)
    x = torch.rand(6, 5, *shape, dtype=torch.float32) * 1.5
    spikes = compare(g, plan, compact, x)
    # the comparison saw real activity in every hidden neuron layer
    hidden = [op.name for op in g.neuron_ops[:-1]]
    assert all(spikes[n] > 0 for n in hidden), spikes
    # the compact model is smaller: fewer parameters and fewer neurons per neuron op
    n_full = sum(p.numel() for p in model.parameters())
    assert sum(p.numel() for p in compact.parameters()) < n_full
    # the original model is untouched
    assert trace(model, shape).layers[0].weight.shape == g.layers[0].weight.shape


def test_a_wrongly_sliced_per_neuron_beta_is_caught():
    """The comparison can fail: slice the first Leaky's per-neuron beta at the wrong rows (the
    first k instead of the kept ones) and the spikes differ."""
    model = _randomised(mlp_leaky_synaptic)
    g = trace(model, (12,))
    plan = plan_structure(g, "lamp", 0.5)
    compact = compact_model(g, plan)
    lif = compact[1]
    k = lif.beta.shape[0]
    assert plan.layer_keep["0"] != tuple(range(k))
    with torch.no_grad():
        lif.beta.copy_(model[1].beta[:k])
    with pytest.raises(AssertionError, match=r"spikes differ|step"):
        compare(g, plan, compact, torch.rand(6, 5, 12, dtype=torch.float32) * 1.5)


def test_a_wrongly_sliced_batchnorm_is_caught():
    model = _randomised(conv_chain)
    g = trace(model, (2, 8, 8))
    plan = plan_structure(g, "lamp", 0.5)
    compact = compact_model(g, plan)
    bn = compact[1]
    with torch.no_grad():
        bn.running_mean.copy_(model[1].running_mean[:bn.num_features])
    with pytest.raises(AssertionError):
        compare(g, plan, compact, torch.rand(6, 5, 2, 8, 8, dtype=torch.float32) * 1.5)


def test_resnet_groups_tie_joined_branches_and_fix_the_readout():
    g = trace(resnet(), (2, 8, 8))
    groups = {gr.name: gr for gr in channel_groups(g)}
    # stem, block 0 (identity shortcut) share one group; block 1's conv2 and its 1x1 shortcut
    tied = groups["stem.0"].layers
    assert set(tied) == {"stem.0", "layers.0.conv2"}
    assert set(groups["layers.1.conv2"].layers) == {"layers.1.conv2", "layers.1.shortcut.0"}
    assert groups["layers.0.conv1"].layers == ("layers.0.conv1",)
    readout = next(gr for gr in groups.values() if "head.1" in gr.layers)
    assert readout.fixed == "drives the model's outputs"
    assert all(gr.fixed is None for gr in groups.values() if gr is not readout)


def test_readout_classes_are_refused_by_layer_name():
    g = trace(mlp_leaky_synaptic(), (12,))
    groups = channel_groups(g)
    with pytest.raises(ModelError, match=r"layer '6' cannot lose outputs: it drives the "
                                         r"model's outputs \(5 classes\)"):
        check_keep(groups, {"6": [0, 1, 2]})
    with pytest.raises(ModelError, match="no layer named 'nope'"):
        check_keep(groups, {"nope": [0]})
    with pytest.raises(ModelError, match="at least one"):
        check_keep(groups, {"0": []})


def test_identity_shortcut_from_the_input_fixes_its_group():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(6, 6)
            self.la = _lif(None)
            self.b = nn.Linear(6, 3)
            self.lb = _lif(None)

        def forward(self, x):
            return self.lb(self.b(self.la(self.a(x) + x)))

    g = trace(Net(), (6,))
    groups = {gr.name: gr for gr in channel_groups(g)}
    assert groups["a"].fixed == "is joined with the network input"
    assert plan_structure(g, "lamp", 0.9).keep["a"] == tuple(range(6))


def test_group_scores_are_lamp_on_group_magnitudes():
    m = np.array([4.0, 1.0, 9.0, 1.0])
    s = group_scores(m, lam=2.0)
    # ascending: 1, 1, 4, 9 -> 1/15, 1/14, 4/13, 9/9
    assert np.allclose(s, 2.0 * np.array([4 / 13, 1 / 15, 1.0, 1 / 14]))


def test_allocation_is_nested_keeps_one_per_group_and_hits_the_count():
    g = trace(_randomised(conv_chain), (2, 8, 8))
    prunable = [gr for gr in channel_groups(g) if gr.fixed is None]
    total = sum(gr.channels for gr in prunable)
    prev = None
    for f in np.linspace(0, 1, 11):
        plan = plan_structure(g, "slamp", float(f), lambdas={"0": 3.0})
        kept = sum(len(plan.keep[gr.name]) for gr in prunable)
        assert kept == max(len(prunable), round((1 - f) * total))
        assert all(len(plan.keep[gr.name]) >= 1 for gr in prunable)
        if prev is not None:
            assert all(set(plan.keep[n]) <= set(prev.keep[n]) for n in plan.keep)
        prev = plan


def test_slamp_group_moves_removal_away_from_high_lambda_layers():
    g = trace(_randomised(mlp_leaky_synaptic), (12,))
    low = plan_structure(g, "slamp", 0.5, lambdas={"0": 1.0, "2": 1.0, "4": 1.0})
    high = plan_structure(g, "slamp", 0.5, lambdas={"0": 8.0, "2": 1.0, "4": 1.0})
    assert len(high.keep["0"]) > len(low.keep["0"])


def test_uniform_removes_the_same_fraction_by_l1_norm():
    model = _randomised(mlp_leaky_synaptic)
    g = trace(model, (12,))
    plan = plan_structure(g, "uniform", 0.25)
    assert [len(plan.keep[n]) for n in ("0", "2", "4", "6")] == [15, 12, 10, 5]
    l1 = model[0].weight.detach().abs().sum(1)
    dropped = sorted(set(range(20)) - set(plan.keep["0"]))
    assert float(l1[dropped].max()) <= float(l1[list(plan.keep["0"])].min())


def test_shrink_table_counts_outputs_and_inputs():
    g = trace(_randomised(conv_chain), (2, 8, 8))
    plan = plan_structure(g, "lamp", 0.5)
    rows = {r.name: r for r in shrink_table(g, plan)}
    k1 = len(plan.keep["3"])
    assert rows["7"].inputs_before == 48 and rows["7"].inputs_after == 4 * k1
    assert rows["9"].outputs_before == rows["9"].outputs_after == 4
    assert rows["0"].inputs_after == 2


def test_methods_without_a_structured_form_and_bad_fractions_are_refused():
    g = trace(mlp_leaky_synaptic(), (12,))
    with pytest.raises(UsageError, match="--method erk"):
        plan_structure(g, "erk", 0.5)
    with pytest.raises(UsageError, match="must be in"):
        plan_structure(g, "lamp", 1.5)


@pytest.mark.parametrize("case", sorted(CASES))
def test_compact_graph_is_what_tracing_the_compact_model_gives(case):
    factory, shape = CASES[case]
    g = trace(_randomised(factory), shape)
    plan = plan_structure(g, "lamp", 0.5)
    cg = compact_graph(g, plan)
    traced = trace(cg.model, shape)
    assert [(op.name, op.kind, op.in_shape, op.out_shape, op.inputs) for op in cg.ops] == \
        [(op.name, op.kind, op.in_shape, op.out_shape, op.inputs) for op in traced.ops]
    assert all(a.module is b.module for a, b in zip(cg.ops, traced.ops, strict=True))


def test_a_saved_keep_set_for_the_readout_is_refused_by_layer_name(tmp_path):
    import json

    from slamp_deploy.prune.compact import load_compact

    rec = {"model": "slamp_deploy.examples.cifar_resnet:resnet_tiny_digits",
           "input_shape": [1, 8, 8], "method": "lamp-group",
           "keep": {"layers.0.conv1": [0, 1, 2], "head.1": [0, 1]}, "no_bias": []}
    path = tmp_path / "structure.json"
    path.write_text(json.dumps(rec))
    with pytest.raises(ModelError, match=r"layer 'head.1' cannot lose outputs: it drives the "
                                         r"model's outputs \(10 classes\)"):
        load_compact(path)
    rec["keep"].pop("head.1")
    path.write_text(json.dumps(rec))
    model = load_compact(path)
    assert model.layers[0].conv1.out_channels == 3 and model.layers[0].bn1.num_features == 3


def test_a_model_no_layer_of_which_can_lose_outputs_is_refused_naming_them():
    from slamp_deploy.fit.structured import check_structure_target

    g = trace(nn.Sequential(nn.Linear(4, 3), _lif(None, output=True)), (4,))
    with pytest.raises(ModelError, match=r"layer '0' drives the model's outputs"):
        check_structure_target(g)
