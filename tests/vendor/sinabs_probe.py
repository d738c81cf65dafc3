"""Run sinabs 3.1.3's own DYNAP-CNN memory summary and layer-to-core mapping on networks given
as JSON (stdin), print the results as JSON (stdout). Run by ``.venv-interop``'s Python from
tests/test_vendor_rules.py; samna is replaced by tests/vendor/samna_standin.py (see there).

A network: ``{"input": [C, H, W], "layers": [["conv", cin, cout, k, stride, pad] | ["pool", k]
| ["flatten"] | ["linear", n_in, n_out]]}``; every conv/linear is followed by an IAFSqueeze.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import samna_standin

samna_standin.install()

import sinabs.layers as sl  # noqa: E402
from sinabs.backend.dynapcnn import DynapcnnNetwork  # noqa: E402
from sinabs.backend.dynapcnn.chips.speck2f import Speck2FConfigBuilder  # noqa: E402
from sinabs.backend.dynapcnn.mapping import get_valid_mapping  # noqa: E402
from torch import nn  # noqa: E402


def build(spec: dict) -> nn.Sequential:
    mods: list[nn.Module] = []
    for kind, *a in spec["layers"]:
        if kind == "conv":
            cin, cout, k, s, p = a
            mods += [nn.Conv2d(cin, cout, k, stride=s, padding=p, bias=False),
                     sl.IAFSqueeze(batch_size=1)]
        elif kind == "linear":
            mods += [nn.Linear(a[0], a[1], bias=False), sl.IAFSqueeze(batch_size=1)]
        elif kind == "pool":
            mods.append(nn.AvgPool2d(a[0]))
        else:
            mods.append(nn.Flatten())
    return nn.Sequential(*mods)


def probe(spec: dict) -> dict:
    net = DynapcnnNetwork(build(spec), input_shape=tuple(spec["input"]), discretize=False)
    mem = net.memory_summary()
    out = {"kernel": [int(mem["kernel"][i]) for i in sorted(mem["kernel"])],
           "neuron": [int(mem["neuron"][i]) for i in sorted(mem["neuron"])]}
    try:
        layers = net._layer_dict if hasattr(net, "_layer_dict") else net.dynapcnn_layers
        out["mapping"] = get_valid_mapping(layers, Speck2FConfigBuilder.get_constraints())
        out["mapping"] = {str(k): int(v) for k, v in out["mapping"].items()}
    except Exception as e:  # sinabs' failure is the answer
        out["mapping_error"] = f"{type(e).__name__}: {e}"
    return out


if __name__ == "__main__":
    print(json.dumps([probe(s) for s in json.load(sys.stdin)]))
