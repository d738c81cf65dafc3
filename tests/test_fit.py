"""Fit checking: exact fan-in/fan-out, hand-computed fits per profile, goldens, reporting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from slamp_deploy.chips import available_targets, load_profile
from slamp_deploy.chips.speck import speck_memory
from slamp_deploy.chips.verdict import raise_if_not_fit
from slamp_deploy.errors import ConstraintViolation, ModelError
from slamp_deploy.fit.check import check_fit
from slamp_deploy.geometry import LayerGeometry, core_starts, layer_stats
from tests.golden.regenerate import GOLDEN, fit_golden, fit_models

# ---- exact counting


def _brute_conv(mask, in_hw, out_hw, stride, pad, dil, groups):  # type: ignore[no-untyped-def]
    cout, cin_g, kh, kw = mask.shape
    cin = cin_g * groups
    fi = np.zeros((cout, *out_hw), int)
    fo = np.zeros((cin, *in_hw), int)
    for co in range(cout):
        g = co // (cout // groups)
        for oy in range(out_hw[0]):
            for ox in range(out_hw[1]):
                for cl in range(cin_g):
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * stride[0] - pad[0] + ky * dil[0]
                            ix = ox * stride[1] - pad[1] + kx * dil[1]
                            if mask[co, cl, ky, kx] and 0 <= iy < in_hw[0] and 0 <= ix < in_hw[1]:
                                fi[co, oy, ox] += 1
                                fo[g * cin_g + cl, iy, ix] += 1
    return fi.ravel(), fo.ravel()


@pytest.mark.parametrize(
    ("cin", "cout", "hw", "k", "stride", "pad", "dil", "groups"),
    [
        (3, 4, (7, 6), 3, (2, 1), (1, 0), (1, 1), 1),
        (4, 6, (6, 6), 3, (1, 1), (2, 2), (2, 1), 2),
        (2, 2, (5, 5), 2, (3, 3), (1, 1), (1, 1), 1),
    ],
)
def test_conv_fan_in_fan_out_exact(cin, cout, hw, k, stride, pad, dil, groups) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(cin * 10 + cout)
    mask = rng.random((cout, cin // groups, k, k)) < 0.6
    out_hw = tuple((hw[i] + 2 * pad[i] - dil[i] * (k - 1) - 1) // stride[i] + 1 for i in range(2))
    lay = LayerGeometry(
        name="c",
        kind="conv2d",
        in_shape=(cin, *hw),
        out_shape=(cout, *out_hw),
        mask=mask,
        neuron_shape=(cout, *out_hw),
        stride=stride,
        padding=pad,
        dilation=dil,
        groups=groups,
    )
    st = layer_stats(lay)
    fi, fo = _brute_conv(mask, hw, out_hw, stride, pad, dil, groups)
    np.testing.assert_array_equal(st.fan_in, fi)
    np.testing.assert_array_equal(st.fan_out, fo)
    starts = core_starts(st.n_out, 3)
    inc = st.incidence(starts)
    np.testing.assert_array_equal(inc.sum(axis=1), st.fan_out)  # every synapse counted once
    np.testing.assert_array_equal(inc.sum(axis=0), np.add.reduceat(st.fan_in, starts))
    # the groups taken a chunk at a time (how check_fit streams large layers) give the same
    k = min(7, st.n_out)
    starts = core_starts(st.n_out, k)
    whole = st.incidence(starts)
    parts = [st.incidence(starts[a:a + 2], int(starts[a + 2]) if a + 2 < k else st.n_out)
             for a in range(0, k, 2)]
    np.testing.assert_array_equal(np.hstack(parts), whole)


def test_conv1d_fan_in_at_borders() -> None:
    # Conv1d k=3, pad=1 on length 5, one kept tap per output channel... all 3 kept here:
    # interior outputs read 3 inputs, the two border outputs read 2 (one tap lands in padding).
    lay = LayerGeometry(
        name="c",
        kind="conv1d",
        in_shape=(1, 5),
        out_shape=(1, 5),
        mask=np.ones((1, 1, 3), bool),
        neuron_shape=(1, 5),
        padding=(1,),
    )
    st = layer_stats(lay)
    assert st.fan_in.tolist() == [2, 3, 3, 3, 2]
    assert st.fan_out.tolist() == [2, 3, 3, 3, 2]


def test_bad_geometry_is_named() -> None:
    lay = LayerGeometry(
        name="fc",
        kind="linear",
        in_shape=(4,),
        out_shape=(3,),
        mask=np.ones((4, 3), bool),
        neuron_shape=(3,),
    )
    with pytest.raises(ModelError, match=r"layer 'fc': mask shape \(4, 3\) != \(out, in\)"):
        check_fit([lay], load_profile("loihi"))


# ---- hand-computed fits (the arithmetic is in the comments)


def _report(target: str, **kw):  # type: ignore[no-untyped-def]
    return check_fit(fit_models()[target], load_profile(target), **kw)


def _check(report, layer: str, rule: str):  # type: ignore[no-untyped-def]
    found = [c for lf in report.layers if lf.name == layer for c in lf.checks if c.rule == rule]
    assert len(found) == 1, (layer, rule)
    return found[0]


def test_loihi_hand_computed() -> None:
    r = _report("loihi")
    fc1 = r.layers[0]
    # fc1: dense 256 -> 512. One core by neurons (512 <= 1024). On one core each of the 256
    # axons reaches 512 units = 8 blocks of 64; a dense block is ceil((64*8 + 10)/64)*64 = 576
    # bits, so 256 * 8 * 576 = 1,179,648 > 1,048,576. On two cores (256 units each) an axon needs
    # 4 blocks: 256 * 4 * 576 = 589,824 bits per core -> 2 cores, margin 458,752.
    assert dict(fc1.cores_by_rule)["core.synapse_memory_bits"] == 2 and fc1.cores == 2
    mem = _check(r, "fc1", "core.synapse_memory_bits")
    assert mem.value == 589_824 and mem.margin == 458_752
    assert fc1.binding_rule == "core.synapse_memory_bits"
    # fc2: 512 axons x 10 dense targets: ceil((10*8 + 10)/64)*64 = 128 bits each = 65,536.
    assert _check(r, "fc2", "core.synapse_memory_bits").value == 65_536
    assert r.fits and r.cores_used == 3 and r.cores_available == 128 and r.chips_used == 1
    assert _check(r, "fc1", "neuron.fan_in_max").status == "no_limit"


def test_loihi2_unknowns_are_reported_not_passed() -> None:
    r = _report("loihi2")
    assert r.fits and r.cores_used == 2  # 512 and 10 neurons, 8192 per core (S)
    rules = {c.rule for c in r.not_checked}
    assert {"core.synapse_memory_bits", "core.in_axons_max", "neuron.fan_in_max"} <= rules
    assert all(c.reason.startswith("not checked (") for c in r.not_checked)


def test_truenorth_fan_in_violation_message() -> None:
    r = _report("truenorth")
    assert not r.fits
    # fc1 is dense 288 -> 64: every neuron has fan-in 288 > 256 axons per core.
    assert r.violations[0].message == "layer fc1: fan-in 288 > 256 (truenorth per-neuron limit)"
    assert r.violations[0].relievable
    assert _check(r, "fc1", "neuron.fan_in_max").margin == -32
    with pytest.raises(ConstraintViolation, match=r"^layer fc1: fan-in 288 > 256 .*prune to at"):
        raise_if_not_fit(r)
    # fan-out (one target axon per neuron) is only U: reported, not enforced.
    assert _check(r, "fc1", "neuron.fan_out_max").status == "not_checked"


def test_spinnaker_hand_computed() -> None:
    r = _report("spinnaker")
    # fc1 has 600 neurons at 256 per core -> ceil(600/256) = 3 cores; fc2 10 -> 1; 4 of 17.
    assert [lf.cores for lf in r.layers] == [3, 1] and r.cores_used == 4 and r.fits


def test_spinnaker2_synapse_budget_sets_cores() -> None:
    r = _report("spinnaker2")
    fc1 = r.layers[0]
    # 1500 neurons at 1000 per PE -> 2 PEs, but 750 * 2000 = 1.5 M synapses > 1 M per PE;
    # 3 PEs hold 500 * 2000 = 1,000,000 each (margin 0).
    assert dict(fc1.cores_by_rule) == {"core.neurons_max": 2, "core.synapses_max": 3}
    assert _check(r, "fc1", "core.synapses_max").value == 1_000_000


def test_speck_memory_formulas() -> None:
    conv1, conv2, fc = fit_models()["speck"]
    # conv1 2->8, 3x3, out 8x32x32: kernel 2 * 2**(ceil log2 9 + ceil log2 8) = 2 * 2**7 = 256,
    # neuron 8 * 2**(5 + 5) = 8192.
    assert speck_memory(conv1) == (256, 8192)
    # conv2 8->16, 3x3 stride 2, out 16x16x16: kernel 8 * 2**(4 + 4) = 2048; neuron 16 * 2**8.
    assert speck_memory(conv2) == (2048, 4096)
    # fc 4096 -> 10 as a 1x1 conv: kernel 4096 * 2**ceil(log2 10) = 65,536; neuron 10.
    assert speck_memory(fc) == (65_536, 10)
    r = _report("speck")
    assert r.fits and r.cores_used == 3
    # Only cores 5 and 6 have 64 Ki kernel words, so fc must land on one of them.
    assert {c.rule for c in r.layers[2].checks} & {
        "speck.core5.kernel_memory",
        "speck.core6.kernel_memory",
    }


def test_speck_docs_example_cannot_deploy() -> None:
    # sinabs docs: Conv2d(16 -> 32, 3x3, p=1) on 64x64: neuron memory 32 * 64 * 64 = 128 Ki words.
    lay = fit_models()["speck"][0]
    big = LayerGeometry(
        name="big",
        kind="conv2d",
        in_shape=(16, 64, 64),
        out_shape=(32, 64, 64),
        mask=np.ones((32, 16, 3, 3), bool),
        neuron_shape=(32, 64, 64),
        padding=(1, 1),
    )
    r = check_fit([lay, big], load_profile("speck"))
    v = {x.rule: x for x in r.violations}
    assert v["speck.neuron_memory"].value == 131_072 and not v["speck.neuron_memory"].relievable
    assert "speck.mapping" in v


def test_xylo_design_rules() -> None:
    r = _report("xylo-audio2")
    # hidden = 64 + 64 = 128 <= 1000; hidden fan-out in the recurrent layer = 64 <= 64.
    net = {c.rule: c for c in r.network_checks}
    assert net["xylo.hidden_neurons_max"].value == 128
    assert net["xylo.recurrent_weights_max"].value == 64 * 64
    assert _check(r, "hid", "neuron.fan_out_max").margin == 0
    assert r.fits and r.cores_used == 1
    # More than 16 input channels breaks a rule pruning cannot relieve.
    wide = [
        LayerGeometry(
            name="inp",
            kind="linear",
            in_shape=(20,),
            out_shape=(8,),
            mask=np.ones((8, 20), bool),
            neuron_shape=(8,),
        ),
        *fit_models()["xylo-imu"][1:],
    ]
    r = check_fit(wide, load_profile("xylo-imu"))
    bad = [v for v in r.violations if v.rule == "xylo.input_channels_max"]
    assert bad and not bad[0].relievable


def test_dynapse2_fan_in_and_tags() -> None:
    r = _report("dynapse2")
    # fc2 neurons have 100 inputs > 64 CAM entries; tags 16 + 2 * 110 = 236 <= 2048.
    assert [v.message for v in r.violations] == [
        "layer fc2: fan-in 100 > 64 (dynapse2 per-neuron limit)"
    ]
    assert {c.rule: c.value for c in r.network_checks}["dynapse.tags_max"] == 236


def test_akida_cores_not_modelled() -> None:
    r = _report("akida")
    assert r.fits and r.cores_used is None
    assert "chip.cores" in {c.rule for c in r.not_checked}
    assert _check(r, "fc", "akida.fc_inputs_max").value == 16 * 32 * 32


@pytest.mark.parametrize("target", available_targets())
def test_fit_golden(target: str) -> None:
    path = GOLDEN / "fit" / f"{target}.json"
    assert path.exists(), "run: python -m tests.golden.regenerate fit"
    expected = json.loads(path.read_text())
    assert json.loads(json.dumps(fit_golden(target), sort_keys=True)) == expected


@pytest.mark.parametrize("target", available_targets())
def test_report_json_deterministic(target: str) -> None:
    a = json.dumps(_report(target).to_dict())
    b = json.dumps(_report(target).to_dict())
    assert a == b and json.loads(a)["target"] == target


def test_chips_and_cores_arguments() -> None:
    models = fit_models()["loihi"]
    assert check_fit(models, load_profile("loihi"), chips=2).cores_available == 256
    r = check_fit(models, load_profile("loihi"), cores=2)
    assert not r.fits and r.violations[0].rule == "chip.cores" and r.violations[0].relievable
    with pytest.raises(ModelError, match="chips = 0"):
        check_fit(models, load_profile("loihi"), chips=0)


def test_golden_dir_matches_targets() -> None:
    assert sorted(p.stem for p in (Path(GOLDEN) / "fit").glob("*.json")) == available_targets()


def test_every_family_has_a_golden_model() -> None:
    """A new chip in an existing family needs no golden row: its family's model is used."""
    from slamp_deploy.chips.family import mapper_names
    from tests.golden.regenerate import FAMILY_MODELS

    assert set(mapper_names()) <= set(FAMILY_MODELS)


def test_string_conv_padding_reaches_the_fit_check_as_numbers() -> None:
    """padding="same"/"valid" are turned into numbers once, for the fit check and the activity
    counts alike (the fit check used to get the characters of the string)."""
    import snntorch as snn
    import torch
    from torch import nn

    from slamp_deploy.fit.from_graph import geometries
    from slamp_deploy.geometry import layer_stats
    from slamp_deploy.measure.activity import connectivity
    from slamp_deploy.model.graph import trace
    from slamp_deploy.prune.masks import alive_masks

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), snn.Leaky(beta=0.5, init_hidden=True),
                          nn.Conv2d(2, 2, 3, padding="valid"),
                          snn.Leaky(beta=0.5, init_hidden=True))
    g = trace(model, (1, 6, 6))
    same, valid = geometries(g, alive_masks(g))
    assert same.padding == (1, 1) and valid.padding == (0, 0)
    fan_in, _, _ = connectivity(g.layers[0], (1, 6, 6))
    assert torch.equal(fan_in, torch.from_numpy(layer_stats(same).fan_in))
    assert int(fan_in.max()) == 9 and int(fan_in.min()) == 4  # corners see 2x2 of the kernel
