"""The one script that regenerates golden files: ``python -m tests.golden.regenerate [family...]``.

Each golden family has one function writing its files under ``tests/golden/<family>/``; review the
diff before committing. Families: fit (one hand-checkable model per hardware profile).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from slamp_deploy.fit import LayerGeometry, check_fit
from slamp_deploy.hardware import available_targets, load_profile

GOLDEN = Path(__file__).resolve().parent


def _linear(name: str, n_in: int, n_out: int, mask: np.ndarray | None = None) -> LayerGeometry:
    m = np.ones((n_out, n_in), dtype=bool) if mask is None else mask
    return LayerGeometry(
        name=name,
        kind="linear",
        in_shape=(n_in,),
        out_shape=(n_out,),
        mask=m,
        neuron_shape=(n_out,),
    )


def _conv(name: str, cin: int, cout: int, hw: int, k: int, stride: int, pad: int) -> LayerGeometry:
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
    )


def fit_models() -> dict[str, list[LayerGeometry]]:
    """One small dense model per shipped profile; the tests assert hand-computed numbers on them."""
    xylo = [_linear("inp", 16, 64), _linear("hid", 64, 64), _linear("out", 64, 8)]
    models = {
        "loihi": [_linear("fc1", 256, 512), _linear("fc2", 512, 10)],
        "loihi2": [_linear("fc1", 256, 512), _linear("fc2", 512, 10)],
        "truenorth": [_linear("fc1", 288, 64), _linear("fc2", 64, 10)],
        "spinnaker": [_linear("fc1", 100, 600), _linear("fc2", 600, 10)],
        "spinnaker2": [_linear("fc1", 2000, 1500), _linear("fc2", 1500, 10)],
        "speck": [
            _conv("conv1", 2, 8, 32, 3, 1, 1),
            _conv("conv2", 8, 16, 32, 3, 2, 1),
            _linear("fc", 16 * 16 * 16, 10),
        ],
        "xylo-audio2": xylo,
        "xylo-audio3": xylo,
        "xylo-imu": xylo,
        "dynapse2": [_linear("fc1", 16, 100), _linear("fc2", 100, 10)],
        "akida": [_conv("conv1", 3, 16, 32, 3, 1, 1), _linear("fc", 16 * 32 * 32, 10)],
    }
    return models


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


FAMILIES: dict[str, Callable[[], list[Path]]] = {"fit": regenerate_fit}


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
