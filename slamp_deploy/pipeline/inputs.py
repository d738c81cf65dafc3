"""The input files a run names (``--model``, ``--weights``, ``--data``, ``--eval-data``, a
``--target`` path), checked before any work starts: each must exist, be a file rather than a
folder, be readable and not be empty. What is inside each file is checked by its loader
(``model.loader``, ``data``, ``datasets``, ``chips.toml``), which the run calls next.
"""

from __future__ import annotations

import os
from pathlib import Path

from slamp_deploy.config import PipelineConfig
from slamp_deploy.errors import DataError, ModelError, ProfileError, SlampError
from slamp_deploy.model.loader import BUILTIN

__all__ = ["check_paths"]


def check_paths(cfg: PipelineConfig) -> None:
    """Refuse a named input file that is missing, a folder, unreadable or empty.

    Raises:
        ModelError: ``--model`` (its file part) or ``--weights``.
        DataError: ``--data`` (an .npz path) or ``--eval-data``.
        ProfileError: ``--target`` given as a path.
    """
    if cfg.model is not None and cfg.model != BUILTIN:
        where = cfg.model if cfg.model.endswith(".nir") else cfg.model.rpartition(":")[0]
        if where.endswith((".py", ".nir")) or "/" in where or "\\" in where:
            _check_file("--model", where, ModelError, "pass path/to/file.py:factory")
    if cfg.weights is not None:
        _check_file("--weights", cfg.weights, ModelError,
                    "pass the .pt file written by torch.save(model.state_dict(), path)")
    if cfg.data is not None:
        from slamp_deploy.datasets import parse_spec

        spec = parse_spec(cfg.data)
        if spec.kind == "npz":
            _check_file("--data", str(spec.path), DataError,
                        "pass an .npz file (or cifar10:PATH etc. for a data set folder)")
    if cfg.eval_data is not None:
        _check_file("--eval-data", cfg.eval_data, DataError, "pass an .npz file")
    if cfg.target.endswith(".toml") or "/" in cfg.target or "\\" in cfg.target:
        _check_file("--target", cfg.target, ProfileError,
                    "pass a profile name (see `slamp-deploy targets`) or a .toml file")


def _check_file(opt: str, name: str, error: type[SlampError], remedy: str) -> None:
    p = Path(name).expanduser()
    try:
        if p.is_dir():
            raise error(f"{opt} {name}: is a folder, not a file; {remedy}")
        if not p.exists():
            raise error(f"{opt} {name}: file not found; {remedy}")
        if not p.is_file():
            raise error(f"{opt} {name}: is not a regular file; {remedy}")
        if not os.access(p, os.R_OK):
            raise error(f"{opt} {name}: cannot be read (permission denied); fix its "
                        f"permissions or copy it")
        if p.stat().st_size == 0:
            raise error(f"{opt} {name}: the file is empty; {remedy}")
    except OSError as e:  # a name too long, a loop of links, ...
        raise error(f"{opt} {name}: cannot be checked ({e.strerror or e}); {remedy}") from None
