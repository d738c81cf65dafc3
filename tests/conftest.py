"""Shared fixtures: tiny fresh models and data sets (never shared mutable module-level state)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import numpy as np
import pytest
import snntorch as snn
import torch
from hypothesis import settings
from torch import nn

# CI runs the property tests with a fixed example sequence so a green main stays green; locally
# hypothesis explores new examples on every run.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

TINY_MODEL_SRC = textwrap.dedent('''
    import snntorch as snn
    from torch import nn

    def build():
        return nn.Sequential(
            nn.Linear(64, 32), snn.Leaky(beta=0.8, init_hidden=True, reset_mechanism="zero"),
            nn.Linear(32, 10), snn.Leaky(beta=0.9, init_hidden=True, reset_mechanism="zero",
                                          output=True))

    not_callable = 42

    def returns_int():
        return 3
''')


def tiny_mlp(beta1: float = 0.8, beta2: float = 0.9, reset: str = "zero") -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(64, 32), snn.Leaky(beta=beta1, init_hidden=True, reset_mechanism=reset),
        nn.Linear(32, 10), snn.Leaky(beta=beta2, init_hidden=True, reset_mechanism=reset,
                                     output=True))


@pytest.fixture
def tiny_model_file(tmp_path: Path) -> Path:
    p = tmp_path / "tiny_model.py"
    p.write_text(TINY_MODEL_SRC)
    return p


@pytest.fixture
def digits_npz(tmp_path: Path) -> Path:
    """scikit-learn digits, flattened to [N, 64], as an .npz the CLI reads."""
    from sklearn.datasets import load_digits

    d = load_digits()
    p = tmp_path / "digits_flat.npz"
    np.savez(p, x=(d.data / 16.0).astype(np.float32)[:600], y=d.target[:600])
    return p


@pytest.fixture
def tiny_weights(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    p = tmp_path / "tiny.pt"
    m = tiny_mlp()
    with torch.no_grad():
        for mod in m:
            if isinstance(mod, nn.Linear):
                mod.weight.mul_(3.0)
    torch.save(m.state_dict(), p)
    return p
