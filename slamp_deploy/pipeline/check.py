"""The library side of ``slamp-deploy check``: map a (pruned or dense) model onto a chip as it is,
its zero weights counted as pruned, and return the verdict of every rule."""

from __future__ import annotations

from slamp_deploy.chips.toml import load_profile
from slamp_deploy.chips.verdict import FitReport
from slamp_deploy.config import PipelineConfig
from slamp_deploy.fit.search import check_masks, refuse_unmappable
from slamp_deploy.model.graph import trace
from slamp_deploy.model.loader import load_model
from slamp_deploy.pipeline.inputs import check_paths
from slamp_deploy.pipeline.run import load_data
from slamp_deploy.prune.masks import alive_masks


def check_model(cfg: PipelineConfig) -> FitReport:
    """Check the current (non-zero) weights of the model ``cfg`` names on ``cfg.target``.

    The fit depends only on the weights and the per-sample input shape, so of the model and data
    options only ``model``, ``weights`` and ``data`` are read (with ``target``, ``chips`` and
    ``cores``).
    """
    cfg.validate()
    check_paths(cfg)
    profile = load_profile(cfg.target)
    loaded = load_model(cfg.model, cfg.weights, device="cpu", nir_dt=cfg.nir_dt)
    refuse_unmappable(loaded.model, profile)  # e.g. a recurrent layer on Speck: exit 3
    ds, _ = load_data(cfg)
    graph = trace(loaded.model, ds.sample_shape)
    rep = check_masks(graph, alive_masks(graph), profile, cfg.chips, cfg.cores)
    return rep


__all__ = ["check_model"]
