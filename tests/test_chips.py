"""The chip-family seam: every shipped profile names a registered family, and a new family
plugs in through the registry alone (its TOML section, its rules, its words)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pytest

from slamp_deploy.chips import available_targets, family_of, load_profile
from slamp_deploy.chips import family as family_mod
from slamp_deploy.chips.family import (
    Family,
    FitContext,
    Rule,
    families,
    layer_kinds,
    limit,
    mapper_names,
    register_family,
    section_of,
)
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.toml import dump_profile
from slamp_deploy.chips.verdict import RuleResult
from slamp_deploy.errors import ProfileError
from slamp_deploy.fit.check import check_fit
from slamp_deploy.geometry import LayerGeometry


@pytest.mark.parametrize("target", available_targets())
def test_every_shipped_profile_names_a_registered_family(target: str) -> None:
    p = load_profile(target)
    fam = family_of(p)
    assert fam.name == p.mapper and p.mapper in mapper_names()
    if fam.section is None:
        assert p.family_section is None
    else:
        assert p.family_section is not None and p.family_section[0] == fam.section[0]
        assert isinstance(p.section(fam.section[0]), fam.section[1])


def test_shipped_families_and_their_simulators() -> None:
    assert mapper_names() == ("akida", "dynapse2", "loihi", "speck", "spinnaker", "truenorth",
                              "xylo")
    assert family_of(load_profile("loihi2")).simulators == ("lava",)
    assert family_of(load_profile("loihi")).simulators == ("lava",)
    assert family_of(load_profile("speck")).simulators == ()
    assert [f.name for f in families() if f.maps_joins] == ["loihi", "truenorth", "spinnaker"]


# ---- a toy family, defined here and nowhere else


@dataclass(frozen=True, slots=True, kw_only=True)
class ToyRules:
    """The toy chip's own section."""

    layers_max: Figure = field(metadata={"unit": "layer", "kind": "count"})


def layers_max(ctx: FitContext) -> Iterable[RuleResult]:
    sec: ToyRules = section_of(ctx.profile, Toy)
    yield limit(sec.layers_max, "toy.layers_max", None, len(ctx.layers), relievable=False,
                remedy="use at most {limit} layers")


class Toy(Family):
    name = "toy"
    section = ("toy", ToyRules)
    rule_words: ClassVar[Mapping[str, str]] = {"toy.layers_max": "layers"}
    rules: ClassVar[tuple[Rule, ...]] = (layer_kinds, layers_max)

    def cross_check(self, profile, fname):  # type: ignore[no-untyped-def]
        if profile.section("toy").layers_max.value == 13:
            raise ProfileError(f"{fname}: toy.layers_max.value = 13: unlucky")


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> type[Family]:
    families()  # the shipped ones first, then a private copy of the registry for this test
    monkeypatch.setattr(family_mod, "_REGISTRY", dict(family_mod._REGISTRY))
    return register_family(Toy)


def _toy_toml(tmp_path, layers_max: int, mapper: str = "toy"):  # type: ignore[no-untyped-def]
    base = dump_profile(load_profile("truenorth"))
    text = base.replace('name = "truenorth"', 'name = "toy"').replace(
        'mapper = "truenorth"', f'mapper = "{mapper}"')
    text += f'\n[toy]\nlayers_max = {{ value = {layers_max}, confidence = "V", source = "test" }}\n'
    path = tmp_path / "toy.toml"
    path.write_text(text)
    return path


def _fc(name: str, n_in: int, n_out: int) -> LayerGeometry:
    return LayerGeometry(name=name, kind="linear", in_shape=(n_in,), out_shape=(n_out,),
                         mask=np.ones((n_out, n_in), dtype=bool), neuron_shape=(n_out,))


def test_a_new_family_registers_through_the_registry_alone(toy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert "toy" in mapper_names()
    p = load_profile(_toy_toml(tmp_path, 1))
    assert family_of(p).name == "toy" and p.section("toy").layers_max.as_int() == 1
    assert load_profile(_write(tmp_path, dump_profile(p))) == p  # dump round trip

    one = check_fit([_fc("a", 4, 3)], p)
    assert one.fits and one.mapper == "toy"
    assert [c.rule for c in one.network_checks] == ["toy.layers_max", "chip.cores"]
    two = check_fit([_fc("a", 4, 3), _fc("b", 3, 2)], p)
    assert not two.fits
    assert two.violations[0].message == "network: layers 2 > 1 (toy toy.layers_max)"
    assert two.violations[0].remedy == "use at most 1 layers"


def test_a_new_family_section_and_cross_check_are_enforced(toy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ProfileError, match="unlucky"):
        load_profile(_toy_toml(tmp_path, 13))
    with pytest.raises(ProfileError, match=r"section \[toy\] is only allowed with mapper = 'toy'"):
        load_profile(_toy_toml(tmp_path, 1, mapper="truenorth"))


def test_a_family_name_is_registered_once(toy) -> None:  # type: ignore[no-untyped-def]
    class Other(Family):
        name = "toy"

    with pytest.raises(ProfileError, match="registered twice"):
        register_family(Other)


def _write(tmp_path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "again.toml"
    path.write_text(text)
    return path


# ---- rules are small named functions, testable one by one


def _ctx(target: str, layers: list[LayerGeometry]) -> FitContext:
    from slamp_deploy.geometry import layer_stats

    srcs = ["@input"] + [lay.name for lay in layers[:-1]]
    return FitContext(profile=load_profile(target), layers=layers,
                      stats=[layer_stats(lay) for lay in layers], sources=srcs,
                      all_layers=layers, all_sources=srcs, fan_out_by_source={})


def test_xylo_needs_two_neuron_layers() -> None:
    from slamp_deploy.chips.xylo import at_least_two_neuron_layers

    (r,) = at_least_two_neuron_layers(_ctx("xylo-imu", [_fc("a", 4, 3)]))
    assert (r.rule, r.status, r.value, r.limit, r.comparison) == ("xylo.depth", "violated", 1, 2,
                                                                  ">=")
    (r,) = at_least_two_neuron_layers(_ctx("xylo-imu", [_fc("a", 4, 3), _fc("b", 3, 2)]))
    assert r.status == "ok" and r.reason == ""


def test_akida_stride_two_only_with_a_3x3_kernel() -> None:
    from slamp_deploy.chips.akida import conv_strides

    def conv(k: int) -> LayerGeometry:
        out = (8 + 2 - k) // 2 + 1
        return LayerGeometry(name=f"c{k}", kind="conv2d", in_shape=(2, 8, 8),
                             out_shape=(4, out, out), mask=np.ones((4, 2, k, k), dtype=bool),
                             neuron_shape=(4, out, out), stride=(2, 2), padding=(1, 1))

    r3, r5 = conv_strides(_ctx("akida", [conv(3), conv(5)]))
    assert r3.status == "ok"
    assert r5.status == "violated"
    assert r5.reason == "stride (2, 2) must be 1, or 2 with a 3x3 kernel"


def test_dynapse_tags() -> None:
    from slamp_deploy.chips.dynapse import tags

    assert tags(3, 5) == 13
