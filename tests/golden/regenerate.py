"""The one script that regenerates golden files: ``python -m tests.golden.regenerate [family...]``.

Each golden family has one function writing its files under ``tests/golden/<family>/``; review the
diff before committing. Families: fit (one hand-checkable model per hardware profile); report (the
activity and energy sections of one tiny fixed model, dense and pruned, on every profile); run (the
whole ``report.json`` and ``report.md`` of the built-in run, less wall times and the environment).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slamp_deploy.chips import available_targets, load_profile
from slamp_deploy.fit.check import check_fit
from slamp_deploy.geometry import LayerGeometry, LayerTraits, NeuronTraits

GOLDEN = Path(__file__).resolve().parent


#: the neurons of the golden models that carry traits: integrate-and-fire (Speck's only kind)
#: and a bit-shift decay 1 - 2**-3 with subtractive reset (Xylo runs it exactly)
IF = LayerTraits(neuron=NeuronTraits(kind="leaky", betas=(1.0,)))
XYLO_LIF = LayerTraits(neuron=NeuronTraits(kind="leaky", betas=(0.875,)))


def _linear(name: str, n_in: int, n_out: int, mask: np.ndarray | None = None,
            traits: LayerTraits | None = None) -> LayerGeometry:
    m = np.ones((n_out, n_in), dtype=bool) if mask is None else mask
    return LayerGeometry(
        name=name,
        kind="linear",
        in_shape=(n_in,),
        out_shape=(n_out,),
        mask=m,
        neuron_shape=(n_out,),
        traits=traits,
    )


def _conv(name: str, cin: int, cout: int, hw: int, k: int, stride: int, pad: int,
          traits: LayerTraits | None = None) -> LayerGeometry:
    out = (hw + 2 * pad - k) // stride + 1
    return LayerGeometry(
        name=name,
        kind="conv2d",
        in_shape=(cin, hw, hw),
        out_shape=(cout, out, out),
        mask=np.ones((cout, cin, k, k), dtype=bool),
        neuron_shape=(cout, out, out),
        stride=(stride, stride),
        padding=(pad, pad),
        traits=traits,
    )


#: one small dense model per chip family (the profile's ``mapper``), and per target where a chip
#: needs its own numbers; the tests assert hand-computed numbers on them. A new chip in an
#: existing family gets its family's model: ``python -m tests.golden.regenerate fit`` writes its
#: golden, with no row here.
FAMILY_MODELS: dict[str, Callable[[], list[LayerGeometry]]] = {
    "loihi": lambda: [_linear("fc1", 256, 512), _linear("fc2", 512, 10)],
    "truenorth": lambda: [_linear("fc1", 288, 64), _linear("fc2", 64, 10)],
    "spinnaker": lambda: [_linear("fc1", 100, 600), _linear("fc2", 600, 10)],
    # fc reads conv2's (16, 16, 16) map through a Flatten: sinabs maps it as a 16x16 kernel
    "speck": lambda: [
        _conv("conv1", 2, 8, 32, 3, 1, 1, IF),
        _conv("conv2", 8, 16, 32, 3, 2, 1, IF),
        _linear("fc", 16 * 16 * 16, 10, traits=LayerTraits(
            flat_from=(16, 16, 16), neuron=IF.neuron)),
    ],
    "xylo": lambda: [_linear("inp", 16, 64, traits=XYLO_LIF),
                     _linear("hid", 64, 64, traits=XYLO_LIF),
                     _linear("out", 64, 8, traits=XYLO_LIF)],
    "dynapse2": lambda: [_linear("fc1", 16, 100), _linear("fc2", 100, 10)],
    "akida": lambda: [_conv("conv1", 3, 16, 32, 3, 1, 1), _linear("fc", 16 * 32 * 32, 10)],
}
TARGET_MODELS: dict[str, Callable[[], list[LayerGeometry]]] = {
    # SpiNNaker 2's PEs hold more neurons: a wider model makes its core count non-trivial
    "spinnaker2": lambda: [_linear("fc1", 2000, 1500), _linear("fc2", 1500, 10)],
}


def fit_models() -> dict[str, list[LayerGeometry]]:
    """The golden model of every shipped profile: its own, or its family's."""
    return {t: (TARGET_MODELS.get(t) or FAMILY_MODELS[load_profile(t).mapper])()
            for t in available_targets()}


def fit_golden(target: str) -> dict[str, Any]:
    """The golden content for one target (the profile hash is left out: it is not a result)."""
    report = check_fit(fit_models()[target], load_profile(target)).to_dict()
    report.pop("profile_sha256")
    return report


def regenerate_fit() -> list[Path]:
    out = GOLDEN / "fit"
    out.mkdir(exist_ok=True)
    written = []
    for target in available_targets():
        path = out / f"{target}.json"
        path.write_text(json.dumps(fit_golden(target), indent=1, sort_keys=True) + "\n")
        written.append(path)
    return written


def report_model() -> tuple[Any, Any, Any, dict[str, Any]]:
    """A tiny conv + linear SNN with dyadic weights and binary input spikes, so every membrane
    value is exact in float32 and the spikes are the same on every machine.

    Returns ``(graph, data, dense_weights, pruned_masks)``; the graph holds the pruned weights.
    """
    import snntorch as snn
    import torch
    from torch import nn

    from slamp_deploy.data import Dataset
    from slamp_deploy.model.graph import trace

    def lif() -> snn.Leaky:
        return snn.Leaky(beta=0.5, threshold=1.0, init_hidden=True, reset_mechanism="zero")

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), lif(), nn.Flatten(),
                          nn.Linear(32, 3), lif())
    conv, fc = model[0], model[3]
    c, ky, kx = torch.meshgrid(torch.arange(2), torch.arange(3), torch.arange(3), indexing="ij")
    conv_w = (((c * 5 + ky * 3 + kx) % 6).float() - 2.5) * 0.5  # +-0.25, +-0.75, +-1.25
    o, i = torch.meshgrid(torch.arange(3), torch.arange(32), indexing="ij")
    fc_w = (((o * 5 + i * 3) % 6).float() - 2.5) * 0.25  # +-0.125, +-0.375, +-0.625
    masks = {"0": ((c * 9 + ky * 3 + kx) % 3 != 0).unsqueeze(1),
             "3": ((o * 32 + i) % 4 == 0)}
    dense = {"0": conv_w.unsqueeze(1), "3": fc_w}
    with torch.no_grad():
        conv.weight.copy_(dense["0"] * masks["0"])
        conv.bias.fill_(0.25)
        fc.weight.copy_(dense["3"] * masks["3"])
        fc.bias.fill_(0.5)
    t, n, y, x = torch.meshgrid(torch.arange(3), torch.arange(4), torch.arange(4),
                                torch.arange(4), indexing="ij")
    spikes = ((t * 7 + n * 3 + y * 5 + x * 11) % 4 == 0).float().unsqueeze(2)  # [T, N, 1, 4, 4]
    data = Dataset(x=spikes, y=torch.arange(4) % 3, source="golden spikes", sequence=True)
    return trace(model, (1, 4, 4)), data, dense, masks


def report_golden() -> dict[str, Any]:
    """The activity and energy sections of :func:`report_model` (profile hashes left out)."""
    from slamp_deploy.measure.activity import dense_weights, measure
    from slamp_deploy.report.model import (
        ActivityData,
        activity_section,
        energy_section,
        target_profiles,
    )

    graph, data, dense, _ = report_model()
    pruned = measure(graph, data, timesteps=3, encoding="direct", label="pruned")
    with dense_weights(graph, dense):
        dense_act = measure(graph, data, timesteps=3, encoding="direct", label="dense")
    info = ActivityData(part="evaluation", source=data.source, samples=len(data), timesteps=3,
                        encoding="sequence")
    energy = energy_section(dense_act, pruned, target_profiles(load_profile("loihi"))).to_dict()
    for t in energy["targets"].values():
        t.pop("profile_sha256")
    return {"activity": activity_section(dense_act, pruned, info).to_dict(), "energy": energy}


def regenerate_report() -> list[Path]:
    out = GOLDEN / "report"
    out.mkdir(exist_ok=True)
    path = out / "sections.json"
    path.write_text(json.dumps(report_golden(), indent=1, sort_keys=True) + "\n")
    return [path]


#: what a built-in run writes that is not a result: wall times, the machine, the output folder
RUN_VOLATILE = ("timings_s", "environment")
RUN_OUT = "<out>"
RUN_REPO = "<repo>"


def run_outputs(out: Path) -> tuple[str, str]:
    """``(report.json, report.md)`` of the built-in ``--target loihi2`` run written into ``out``,
    with what differs between runs of the same code taken out: the wall times, the environment,
    the output folder (replaced by ``<out>``), the checkout's folder in the built-in weights' path
    (replaced by ``<repo>``) and the time-per-stage table of report.md."""
    from slamp_deploy.cli import main

    if main(["--target", "loihi2", "--out", str(out)]) != 0:
        raise RuntimeError("the built-in run failed")
    report = json.loads((out / "report.json").read_text())
    for key in RUN_VOLATILE:
        report.pop(key)
    report["config"]["out"] = RUN_OUT
    text = json.dumps(report, indent=2, sort_keys=True) + "\n"
    md_lines, skipping = [], False
    for line in (out / "report.md").read_text().splitlines(keepends=True):
        if line.startswith("## "):
            skipping = line.startswith("## Time per stage")
        if not skipping:
            md_lines.append(line)
    repo = str(Path(__file__).resolve().parent.parent.parent)
    return text.replace(repo, RUN_REPO), "".join(md_lines).replace(repo, RUN_REPO)


def regenerate_run() -> list[Path]:
    import tempfile

    out = GOLDEN / "run"
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        report_json, report_md = run_outputs(Path(tmp) / "slamp-out")
    (out / "report.json").write_text(report_json)
    (out / "report.md").write_text(report_md)
    return [out / "report.json", out / "report.md"]


FAMILIES: dict[str, Callable[[], list[Path]]] = {"fit": regenerate_fit,
                                                 "report": regenerate_report,
                                                 "run": regenerate_run}


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or sorted(FAMILIES)
    for name in names:
        if name not in FAMILIES:
            sys.stderr.write(f"unknown golden family {name!r}; known: {', '.join(FAMILIES)}\n")
            return 2
        for path in FAMILIES[name]():
            sys.stdout.write(f"wrote {path.relative_to(GOLDEN.parent.parent)}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
