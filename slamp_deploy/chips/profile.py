"""The chip profile: the sections every profile has, and :class:`HardwareProfile`, which also
holds the one section its chip family may add (``[speck]``, ``[xylo]``, ...).

Build it with :func:`slamp_deploy.chips.load_profile`; the field reference is
``hardware_profiles/SCHEMA.md``. This module imports the standard library only.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from slamp_deploy.chips.figure import Figure, render_value
from slamp_deploy.errors import ProfileError

__all__ = [
    "COMMON_SECTIONS",
    "SCHEMA_VERSION",
    "ChipLimits",
    "CoreLimits",
    "EnergyFigures",
    "HardwareProfile",
    "LayerSupport",
    "NeuronLimits",
    "Precision",
    "SystemLimits",
    "Timing",
    "did_you_mean",
    "field_error",
]

SCHEMA_VERSION = 1

# Value kinds: count (positive int), bits (positive int), number (positive int/float),
# energy (non-negative number), int_list (non-empty list of positive ints), str_list, str, bool.


@dataclass(frozen=True, slots=True, kw_only=True)
class SystemLimits:
    """Board or system level."""

    chips_per_board: Figure = field(metadata={"unit": "chip", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ChipLimits:
    """One chip."""

    cores: Figure = field(
        metadata={"unit": "core", "kind": "count"}
    )  # neuro cores / PEs / layer cores usable by a network
    neurons: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    synapses: Figure = field(metadata={"unit": "synapse", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class CoreLimits:
    """One core (neuro core, PE, crossbar, layer processor)."""

    neurons_max: Figure = field(metadata={"unit": "neuron", "kind": "count"})
    synapses_max: Figure = field(
        metadata={"unit": "synapse", "kind": "count"}
    )  # count-based synapse budget per core
    synapse_memory_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    synapse_encoding: Figure = field(
        metadata={"unit": "", "kind": "str"}
    )  # see SCHEMA.md: loihi1_blocks, crossbar, ...
    in_axons_max: Figure = field(metadata={"unit": "axon", "kind": "count"})
    out_axons_max: Figure = field(metadata={"unit": "axon", "kind": "count"})
    shared_between_layers: Figure = field(metadata={"unit": "", "kind": "bool"})


@dataclass(frozen=True, slots=True, kw_only=True)
class NeuronLimits:
    """One neuron."""

    fan_in_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})
    fan_out_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Precision:
    """Number formats."""

    weight_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    state_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerSupport:
    """Synaptic layer kinds the chip's toolchain maps."""

    supported: Figure = field(metadata={"unit": "", "kind": "str_list"})


@dataclass(frozen=True, slots=True, kw_only=True)
class Timing:
    """Time base: a fixed tick where the chip has one, else a step-time model (Loihi 2):
    ``max(step_floor_s, synop_time_s x SynOps per step on the busiest core)``."""

    timestep_s: Figure = field(metadata={"unit": "s", "kind": "number"})  # fixed tick
    # optional (a profile without them has no step-time model), so older profiles still load
    step_floor_s: Figure = field(metadata={"unit": "s", "kind": "number", "optional": True})
    synop_time_s: Figure = field(metadata={"unit": "s", "kind": "number", "optional": True})


@dataclass(frozen=True, slots=True, kw_only=True)
class EnergyFigures:
    """Energy per event and static power, for the energy report."""

    synop_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per synaptic operation
    spike_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per spike sent / routed
    neuron_update_pj: Figure = field(metadata={"unit": "pJ", "kind": "energy"})  # per neuron update
    static_w: Figure = field(metadata={"unit": "W", "kind": "energy"})  # static power per chip


COMMON_SECTIONS: dict[str, type] = {
    "system": SystemLimits,
    "chip": ChipLimits,
    "core": CoreLimits,
    "neuron": NeuronLimits,
    "precision": Precision,
    "layers": LayerSupport,
    "timing": Timing,
    "energy": EnergyFigures,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HardwareProfile:
    """A validated chip profile. Build it with :func:`slamp_deploy.chips.load_profile`."""

    schema_version: int
    name: str  # registry slug, identical to the file stem for shipped profiles
    description: str  # one line
    mapper: str  # the chip family (slamp_deploy.chips.family_of), one of mapper_names()
    sources: tuple[tuple[str, str], ...]  # (key, citation), in file order
    system: SystemLimits
    chip: ChipLimits
    core: CoreLimits
    neuron: NeuronLimits
    precision: Precision
    layers: LayerSupport
    timing: Timing
    energy: EnergyFigures
    # (name, section) of the family's own section, e.g. ("speck", SpeckRules(...)); None when the
    # family has none. Kept generic so a new family needs no field here.
    family_section: tuple[str, Any] | None = None
    path: str = field(default="", compare=False)  # file it was loaded from
    sha256: str = field(default="", compare=False)  # of the file's bytes, for report headers

    def section(self, name: str) -> Any:
        """The section called ``name`` (common or the family's), or ``None`` when absent."""
        if name in COMMON_SECTIONS:
            return getattr(self, name)
        if self.family_section is not None and self.family_section[0] == name:
            return self.family_section[1]
        return None

    def sections(self) -> list[tuple[str, Any]]:
        """``(name, section)`` of every section present, in schema order (common first)."""
        out = [(name, getattr(self, name)) for name in COMMON_SECTIONS]
        return out + ([self.family_section] if self.family_section is not None else [])

    def figures(self) -> list[tuple[str, Figure]]:
        """Every figure as ``(dotted_field, figure)``, in schema order."""
        out: list[tuple[str, Figure]] = []
        for section, obj in self.sections():
            for f in dataclasses.fields(obj):
                out.append((f"{section}.{f.name}", getattr(obj, f.name)))
        return out

    @property
    def cores_per_chip(self) -> int | None:
        """Usable cores per chip, or ``None`` when unknown."""
        return self.chip.cores.as_int()

    def one_line(self) -> str:
        """One line for ``slamp-deploy targets``."""
        cores = self.chip.cores
        neurons = self.core.neurons_max
        parts = [self.description]
        if cores.known:
            parts.append(f"{render_value(cores.value)} cores/chip ({cores.confidence})")
        if neurons.known:
            parts.append(f"{render_value(neurons.value)} neurons/core ({neurons.confidence})")
        return "; ".join(parts)



def field_error(fname: str, dotted: str, value: Any, expected: str) -> ProfileError:
    """The one-line error for a bad profile field: file, dotted field, value, what was expected."""
    return ProfileError(f"{fname}: {dotted} = {value!r}: {expected}")


def did_you_mean(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """``"; did you mean `x`?"`` for the nearest choice, or ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean `{match[0]}`?" if match else ""
