"""Hardware profiles: every shipped profile loads, round-trips, and bad files fail clearly."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from slamp_deploy.chips import available_targets, describe_targets, load_profile
from slamp_deploy.chips.figure import CONFIDENCES, Figure
from slamp_deploy.chips.profile import HardwareProfile
from slamp_deploy.chips.toml import dump_profile
from slamp_deploy.errors import ProfileError, UnknownTargetError

BAD = Path(__file__).parent / "data" / "profiles"
REQUIRED = {
    "loihi2",
    "loihi",
    "truenorth",
    "spinnaker",
    "spinnaker2",
    "speck",
    "xylo-audio2",
    "xylo-audio3",
    "xylo-imu",
    "dynapse2",
    "akida",
}


def test_required_targets_ship() -> None:
    assert set(available_targets()) >= REQUIRED


@pytest.mark.parametrize("name", available_targets())
def test_profile_loads_and_is_consistent(name: str) -> None:
    p = load_profile(name)
    assert isinstance(p, HardwareProfile) and p.name == name and p.sha256
    for dotted, fig in p.figures():
        assert fig.confidence in CONFIDENCES, dotted
        assert fig.source.strip(), dotted
        # Unknown stays unknown: no number without a confidence, no confidence-less number.
        assert (fig.value is None) == (fig.confidence == "unknown" or fig.unlimited), dotted
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.name = "x"  # type: ignore[misc]


@pytest.mark.parametrize("name", available_targets())
def test_profile_toml_round_trip(name: str, tmp_path: Path) -> None:
    p = load_profile(name)
    path = tmp_path / f"{name}.toml"
    path.write_text(dump_profile(p))
    again = load_profile(path)
    assert again == p
    assert dump_profile(again) == dump_profile(p)


@pytest.mark.parametrize("name", available_targets())
def test_energy_figures_exposed(name: str) -> None:
    e = load_profile(name).energy
    for fig in (e.synop_pj, e.spike_pj, e.neuron_update_pj, e.static_w):
        assert isinstance(fig, Figure) and fig.unit in ("pJ", "W")


def test_energy_values_and_confidence() -> None:
    loihi = load_profile("loihi")
    assert loihi.energy.synop_pj.value == 23.6 and loihi.energy.synop_pj.confidence == "S"
    # Intel publishes no Loihi 2 per-op energy: fitted to measured PilotNet runs (energy.md 2.4)
    l2 = load_profile("loihi2").energy.synop_pj
    assert (l2.value, l2.low, l2.high, l2.confidence) == (24, 7, 38, "D")
    tn = load_profile("truenorth").energy.synop_pj
    # the marginal slope of Akopyan Fig. 17 (D); 1 / 400 GSOPS/W is the peak total efficiency,
    # and the published 26 pJ is a total-energy figure (S, energy.md 4.1)
    assert tn.value == 2.3 and tn.confidence == "D" and tn.high == 2.5
    assert any(a.value == 26.0 and a.confidence == "S" for a in tn.alternatives)


def test_loihi2_cores_conflict_recorded() -> None:
    cores = load_profile("loihi2").chip.cores
    assert cores.value == 120 and cores.confidence == "V-code"
    assert sorted(a.value for a in cores.alternatives) == [122, 128]  # type: ignore[type-var]
    assert "mapper" in cores.note


def test_unverified_figures_are_not_usable() -> None:
    fan_out = load_profile("truenorth").neuron.fan_out_max
    assert fan_out.known and not fan_out.usable and fan_out.as_int() is None


def test_describe_targets_one_line_each() -> None:
    rows = describe_targets()
    assert [n for n, _ in rows] == available_targets()
    assert all(line and "\n" not in line for _, line in rows)


@pytest.mark.parametrize(
    ("query", "match"),
    [
        ("lohi2", r"unknown target 'lohi2'; did you mean `loihi2`\?; known targets: akida, "),
        ("truenorht", r"did you mean `truenorth`\?"),
        ("gpu", r"unknown target 'gpu'; known targets: akida, dynapse2, loihi"),
    ],
)
def test_unknown_target(query: str, match: str) -> None:
    with pytest.raises(UnknownTargetError, match=match):
        load_profile(query)


@pytest.mark.parametrize(
    ("fname", "match"),
    [
        (
            "bad_negative_limit.toml",
            r"^bad_negative_limit\.toml: core\.neurons_max\.value = -1: "
            r"must be a positive integer$",
        ),
        ("bad_missing_limit.toml", r"^bad_missing_limit\.toml: missing core\.neurons_max \("),
        (
            "bad_typo_key.toml",
            r"^bad_typo_key\.toml: unknown key core\.neurons_mx; did you mean `neurons_max`\?$",
        ),
        (
            "bad_confidence.toml",
            r"core\.neurons_max\.confidence = 'Vcode': must be one of .*; did you mean `V-code`\?",
        ),
        (
            "bad_unknown_with_value.toml",
            r"core\.neurons_max\.value = 1024: must be absent when confidence = \"unknown\"",
        ),
        ("bad_bare_number.toml", r"core\.neurons_max = 1024: must be a table"),
        ("bad_mapper.toml", r"mapper = 'loihii': must be one of .*did you mean `loihi`\?"),
        (
            "bad_missing_mapper_section.toml",
            r"missing section \[loihi_synapse_encoding\] \(required by mapper loihi\)",
        ),
        ("bad_no_source.toml", r"core\.neurons_max\.source = '': must be a non-empty string"),
        ("bad_section_typo.toml", r"unknown key nueron; did you mean `neuron`\?"),
        ("bad_not_toml.toml", r"^bad_not_toml\.toml: not valid TOML"),
        ("bad_missing_value.toml", r"missing core\.neurons_max\.value \(confidence is 'V-code'"),
        ("bad_layer_kind.toml", r"layers\.supported\.value = .*conv3d.*did you mean `conv2d`\?"),
    ],
)
def test_bad_profiles(fname: str, match: str) -> None:
    with pytest.raises(ProfileError, match=match) as info:
        load_profile(BAD / fname)
    assert "\n" not in str(info.value)


def test_every_bad_fixture_is_in_the_table() -> None:
    files = {p.name for p in BAD.glob("bad_*.toml")}
    params = test_bad_profiles.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert files == {f for f, _ in params}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"nope\.toml: cannot read profile"):
        load_profile(tmp_path / "nope.toml")


def test_user_profile_by_path_string(tmp_path: Path) -> None:
    text = dump_profile(load_profile("truenorth")).replace('name = "truenorth"', 'name = "mychip"')
    path = tmp_path / "mychip.toml"
    path.write_text(text)
    p = load_profile(str(path))
    assert p.name == "mychip" and p.core.neurons_max.value == 256
