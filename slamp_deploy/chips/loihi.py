"""The Loihi family (Loihi 1 and Loihi 2): the core-grid mapper plus the Loihi 1 synapse memory
encoding (``[loihi_synapse_encoding]``), and the Lava simulator for its exports.

Loihi 1 synapse memory follows NengoLoihi's ``SynapseConfig.bits_per_axon``: per input axon and
core, kept synapses are stored in blocks of at most 64, each block costing
``ceil((n * (weight_bits + index_bits) + 10) / 64) * 64`` bits. Index bits are dropped (dense
format) only for a linear-layer axon that reaches every unit of the core; every synapse is stored
explicitly (no convolutional weight sharing), which is conservative for convolutions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from slamp_deploy.chips.core_grid import CoreGrid
from slamp_deploy.chips.family import register_family, section_of
from slamp_deploy.chips.figure import Figure
from slamp_deploy.chips.profile import HardwareProfile, field_error
from slamp_deploy.geometry import LayerGeometry

__all__ = ["Loihi", "LoihiBlocks", "LoihiSynapseEncoding"]


@dataclass(frozen=True, slots=True, kw_only=True)
class LoihiSynapseEncoding:
    """Loihi 1 synapse memory encoding (NengoLoihi ``SynapseConfig.bits_per_axon``)."""

    block_synapses_max: Figure = field(metadata={"unit": "synapse", "kind": "count"})
    block_header_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    word_bits: Figure = field(metadata={"unit": "bit", "kind": "bits"})
    weight_bits_map: Figure = field(metadata={"unit": "bit", "kind": "int_list"})
    index_bits_map: Figure = field(metadata={"unit": "bit", "kind": "int_list"})


@dataclass(frozen=True, slots=True, kw_only=True)
class LoihiBlocks:
    """NengoLoihi's block encoding of one layer's synapses at ``weight_bits`` per weight."""

    enc: LoihiSynapseEncoding
    weight_bits: int

    def bits(self, counts: np.ndarray, group_size: int, dense_axon: np.ndarray | None
             ) -> np.ndarray:
        """Synapse memory bits per (axon, group) with NengoLoihi's block encoding."""
        enc = self.enc
        blk = enc.block_synapses_max.as_int()
        hdr = enc.block_header_bits.as_int()
        word = enc.word_bits.as_int()
        idx_map = enc.index_bits_map.value
        assert blk and hdr is not None and word and isinstance(idx_map, tuple)
        need = max(int(group_size - 1).bit_length(), 1)
        fitting = [int(b) for b in idx_map if int(b) >= need]
        idx_bits = fitting[0] if fitting else 10**9  # group too large to index: never fits
        full, rem = np.divmod(counts, blk)

        def encoded(bpw: int) -> np.ndarray:
            # the bits of a block of n synapses, looked up for n < blk (0 bits for none)
            n = np.arange(blk + 1, dtype=np.int64)
            table = -(-(n * bpw + hdr) // word) * word
            table[0] = 0
            return full * table[blk] + table[rem]

        out = encoded(self.weight_bits + idx_bits)
        if dense_axon is not None and dense_axon.any():
            out = np.where(dense_axon, encoded(self.weight_bits), out)
        return out


def _weight_bits(lay: LayerGeometry, p: HardwareProfile, enc: LoihiSynapseEncoding) -> int:
    base = lay.weight_bits_hint or p.precision.weight_bits.as_int() or 8
    if isinstance(enc.weight_bits_map.value, tuple):
        allowed = sorted(int(b) for b in enc.weight_bits_map.value)
        fitting = [b for b in allowed if b >= base]
        return fitting[0] if fitting else allowed[-1]
    return base


@register_family
class Loihi(CoreGrid):
    """Intel Loihi 1 and 2: per-core mapping; Loihi 1 memory in NengoLoihi's blocks."""

    name = "loihi"
    section = ("loihi_synapse_encoding", LoihiSynapseEncoding)
    simulators = ("lava",)  # Lava's Loihi 2 simulator runs the exported NIR

    def synapse_memory(self, lay: LayerGeometry, profile: HardwareProfile) -> LoihiBlocks | None:
        if (profile.core.synapse_encoding.value != "loihi1_blocks"
                or not profile.core.synapse_memory_bits.usable):
            return None
        enc: LoihiSynapseEncoding = section_of(profile, Loihi)
        return LoihiBlocks(enc=enc, weight_bits=_weight_bits(lay, profile, enc))

    def cross_check(self, profile: HardwareProfile, fname: str) -> None:
        """The block encoding needs every one of its figures."""
        enc: LoihiSynapseEncoding = section_of(profile, Loihi)
        if profile.core.synapse_encoding.value != "loihi1_blocks":
            return
        for name in ("block_synapses_max", "block_header_bits", "word_bits", "weight_bits_map",
                     "index_bits_map"):
            if not getattr(enc, name).usable:
                raise field_error(
                    fname,
                    f"loihi_synapse_encoding.{name}.confidence",
                    getattr(enc, name).confidence,
                    "must be a usable figure when core.synapse_encoding = loihi1_blocks",
                )
