"""Run rockpool 3.1.0's own Xylo mappers (XyloAudio 2 ``syns61201``, XyloAudio 3 ``syns65302``,
XyloIMU ``syns63300``) on small networks given as JSON (stdin) and print, as JSON, what they do:
the error they raise, the DRC warnings, and the integer bit-shift decays ``dash`` that
``config_from_specification`` would write (``round`` of the mapper's float dash). Run by
``.venv-interop``'s Python from tests/test_vendor_rules.py; samna is replaced by
tests/vendor/samna_standin.py (the mapper never uses it).

A network: ``{"chip": "syns61201", "n_in": 16, "hidden": [n, ...], "n_out": 4, "tau_over_dt":
x, "bias": false}``: Linear -> LIF per layer, every LIF with ``tau_mem = tau_syn = x * dt``.
"""

from __future__ import annotations

import importlib
import itertools
import json
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import samna_standin

samna_standin.install()

import numpy as np  # noqa: E402
from rockpool.nn.combinators import Sequential  # noqa: E402
from rockpool.nn.modules import LIFTorch, LinearTorch  # noqa: E402

DT = 1e-3


def probe(spec: dict) -> dict:
    tau = spec["tau_over_dt"] * DT
    sizes = [spec["n_in"], *spec["hidden"], spec["n_out"]]
    mods = []
    for a, b in itertools.pairwise(sizes):
        mods += [LinearTorch((a, b), has_bias=spec.get("bias", False)),
                 LIFTorch(b, tau_mem=tau, tau_syn=tau, dt=DT)]
    net = Sequential(*mods)
    mapper = importlib.import_module(f"rockpool.devices.xylo.{spec['chip']}.xylo_mapper").mapper
    out: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            m = mapper(net.as_graph(), weight_dtype="float", threshold_dtype="float",
                       dash_dtype="float")
            out["dash_mem"] = [int(x) for x in np.round(np.asarray(m["dash_mem"], float))]
        except Exception as e:
            cause = e.__cause__ or e
            out["error"] = f"{type(e).__name__}: {e} / {type(cause).__name__}: {cause}"
    out["warnings"] = [str(w.message) for w in caught]
    return out


if __name__ == "__main__":
    print(json.dumps([probe(s) for s in json.load(sys.stdin)]))
