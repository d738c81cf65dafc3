"""``--fit`` with the structure step (fit/structured.py): models that start over a count or a
shape limit (Xylo's hidden neurons, Speck's kernel memory, Loihi 2's core count for ResNet-19)
fit after the smallest removal of whole neurons and channels plus unstructured pruning, and the
fit check passes on the compact export (the NIR file, read back); a target whose count limit
one neuron per layer cannot meet is refused with the numbers."""

from __future__ import annotations

import pytest
import snntorch as snn
import torch
from slamp_deploy.examples import cifar_resnet
from slamp_deploy.exporters.nir_export import to_nir, write_nir
from torch import nn

from slamp_deploy.chips.toml import load_profile
from slamp_deploy.errors import InfeasibleTargetError
from slamp_deploy.fit.check import check_fit
from slamp_deploy.fit.from_graph import geometries
from slamp_deploy.fit.search import check_masks, find_fit_keep, fit_keep, place_neurons
from slamp_deploy.fit.structured import fit_structure, relieved_rules
from slamp_deploy.model.graph import trace
from slamp_deploy.model.nir_import import read_nir
from slamp_deploy.prune.allocate import score_arrays
from slamp_deploy.prune.compact import compact_graph
from slamp_deploy.prune.masks import alive_masks, apply_masks
from slamp_deploy.prune.structure import plan_structure


def _if(**kw: object) -> snn.Leaky:
    return snn.Leaky(beta=1.0, threshold=1.0, init_hidden=True, reset_mechanism="subtract", **kw)


def _lif(**kw: object) -> snn.Leaky:
    return snn.Leaky(beta=0.9, threshold=1.0, init_hidden=True, reset_mechanism="subtract", **kw)


def xylo_mlp() -> nn.Module:
    """1,200 hidden neurons: over Xylo Audio 2's 1,000 and Xylo IMU's 496."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 600, bias=False), _lif(), nn.Linear(600, 600, bias=False),
                         _lif(), nn.Linear(600, 8, bias=False), _lif(output=True))


def speck_cnn() -> nn.Module:
    """conv2's kernel memory is 64 * 2**(4 + 7) = 131,072 words, over Speck's largest core
    (65,536)."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 64, 3, padding=1), _if(),
                         nn.Conv2d(64, 128, 3, stride=2, padding=1), _if(), nn.AvgPool2d(4),
                         nn.Flatten(), nn.Linear(128 * 4 * 4, 10), _if(output=True))


def _fit_compact(graph, target, method="slamp", **kw):
    """The structure step, then the synapse search on the compact model, masks applied."""
    profile = load_profile(target)
    sf = fit_structure(graph, method, {}, profile, **kw)
    assert sf is not None
    g = sf.graph
    alive = alive_masks(g)
    keep, plan, rep = fit_keep(g, "slamp", {}, alive, profile, kw.get("chips"), kw.get("cores"))
    assert keep <= g.n_weights
    masks = {la.name: torch.from_numpy(plan.masks[la.name].copy()) for la in g.layers}
    apply_masks(g, masks)
    place_neurons(g, masks, profile)  # as the run does before it exports (Xylo's positions)
    assert rep.fits, rep.summary()
    return sf, g, masks, profile


def _check_export(g, shape, profile, tmp_path, **kw):
    """The compact model's NIR export, read back and traced, fits the target."""
    path = write_nir(to_nir(g, timesteps=4, encoding="direct", readout="spikes"),
                     tmp_path / "compact.nir")
    back = trace(read_nir(path).model, shape)
    rep = check_fit(geometries(back, alive_masks(back)), profile, **kw)
    assert rep.fits, rep.summary()
    return back, rep


@pytest.mark.parametrize(("target", "limit"), [("xylo-audio2", 1000), ("xylo-imu", 496)])
def test_model_over_xylo_hidden_neuron_limit_fits_after_the_structure_step(target, limit,
                                                                           tmp_path):
    g = trace(xylo_mlp(), (16,))
    profile = load_profile(target)
    with pytest.raises(InfeasibleTargetError, match="hidden neurons 1,200"):
        fit_keep(g, "slamp", {}, alive_masks(g), profile, None, None)
    sf, cg, masks, _ = _fit_compact(g, target)
    # both bind: the neuron count (structure) and then the synapse rules (fan-out 64, the
    # recurrent weight memory), so unstructured pruning removes weights of the compact model too
    assert sum(int(m.sum()) for m in masks.values()) < cg.n_weights
    hidden = [op.out_shape[0] for op in cg.neuron_ops[:-1]]
    assert sum(hidden) <= limit
    # the smallest removal: one more hidden neuron back no longer fits (nested plans)
    smaller = plan_structure(g, "slamp", (sf.plan.removed - 1) / 1200, lambdas={})
    assert sum(len(smaller.keep[n]) for n in ("0", "2")) > limit
    _back, rep = _check_export(cg, (16,), profile, tmp_path)
    assert sum(lf.neurons for lf in rep.layers[:-1]) == sum(hidden)
    relieved = relieved_rules(sf.blockers, rep)
    assert [(r.rule, r.before, r.after, r.limit) for r in relieved] == [
        ("xylo.hidden_neurons_max", 1200, sum(hidden), limit)]


@pytest.mark.parametrize("method", ["slamp", "lamp", "uniform"])
def test_model_over_speck_kernel_memory_fits_after_the_structure_step(method, tmp_path):
    g = trace(speck_cnn(), (2, 32, 32))
    profile = load_profile("speck")
    with pytest.raises(InfeasibleTargetError, match="kernel memory"):
        fit_keep(g, "slamp", {}, alive_masks(g), profile, None, None)
    sf, cg, _masks, _ = _fit_compact(g, "speck", method=method)
    assert sf.plan.removed > 0
    _back, rep = _check_export(cg, (2, 32, 32), profile, tmp_path)
    relieved = {r.rule: r for r in relieved_rules(sf.blockers, rep)}
    assert relieved["speck.kernel_memory"].before == 131072
    assert relieved["speck.kernel_memory"].after <= 65536


@pytest.mark.slow
def test_resnet19_fits_loihi2_core_count_after_the_structure_step(tmp_path):
    """Full-width ResNet-19 (CIFAR-10) needs 178 of Loihi 2's 120 cores dense."""
    torch.manual_seed(0)
    g = trace(cifar_resnet.resnet19_cifar10().eval(), (3, 32, 32))
    profile = load_profile("loihi2")
    dense = check_masks(g, alive_masks(g), profile, None, None)
    assert dense.cores_used == 178 and not dense.fits
    sf = fit_structure(g, "lamp", {}, profile)
    assert sf is not None
    rep = check_masks(sf.graph, alive_masks(sf.graph), profile, None, None)
    assert rep.fits and rep.cores_used <= 120
    _back, rep = _check_export(sf.graph, (3, 32, 32), profile, tmp_path)  # the compact NIR
    assert rep.cores_used <= 120
    # smallest: one channel fewer removed does not fit
    groups_total = round(sf.plan.removed / sf.fraction)
    less = plan_structure(g, "lamp", (sf.plan.removed - 1) / groups_total, lambdas={})
    assert not check_masks(compact_graph(g, less), alive_masks(compact_graph(g, less)),
                           profile, None, None).fits


def test_quarter_width_resnet19_on_a_24_core_loihi2_budget_fits_after_the_structure_step(
        tmp_path):
    """ResNet-19 at a quarter of its width against 24 Loihi 2 cores (the fast twin of the slow
    full-width test): the structure step fits the neuron counts, and the synapse search then
    runs on the compact model."""
    torch.manual_seed(0)
    net = cifar_resnet.SpikingResNet(32, ((32, 3, 1), (64, 3, 2), (128, 2, 2)), 64,
                                     n_classes=10).eval()
    g = trace(net, (3, 32, 32))
    profile = load_profile("loihi2")
    assert check_masks(g, alive_masks(g), profile, None, 24).cores_used > 24
    sf = fit_structure(g, "slamp", {}, profile, cores=24)
    assert sf is not None
    cg = sf.graph
    scores = score_arrays("slamp", {la.name: la.weight for la in cg.layers}, alive_masks(cg), {})
    _keep, _plan, rep = find_fit_keep(scores, geometries(cg, alive_masks(cg)), profile, None, 24)
    assert rep.fits and rep.cores_used <= 24
    # the compact NIR export, read back, fits the same 24 cores
    _back, rep = _check_export(cg, (3, 32, 32), profile, tmp_path, cores=24)
    assert rep.cores_used <= 24


def test_a_count_limit_one_neuron_per_layer_cannot_meet_is_refused_with_the_numbers():
    g = trace(cifar_resnet.resnet_tiny(), (1, 8, 8))
    with pytest.raises(InfeasibleTargetError,
                       match=r"cores \d+ > 3 .* even with one neuron or channel per layer "
                             r"\(\d+ of \d+ kept in \d+ layer group\(s\); fixed: head.1 drives "
                             r"the model's outputs \(10\)\)"):
        fit_structure(g, "slamp", {}, load_profile("loihi2"), cores=3)


def test_a_floor_on_the_removal_is_kept_and_still_the_smallest_that_fits():
    g = trace(xylo_mlp(), (16,))
    profile = load_profile("xylo-audio2")
    free = fit_structure(g, "lamp", {}, profile)
    floor = fit_structure(g, "lamp", {}, profile, at_least=0.5)
    assert free is not None and floor is not None
    assert free.plan.removed == 200 and floor.plan.removed == 600  # the floor fits already
    assert floor.attempts == 2  # one neuron per layer, then the floor


def test_no_structure_needed_returns_none():
    g = trace(xylo_mlp(), (16,))
    assert fit_structure(g, "slamp", {}, load_profile("loihi2")) is None
