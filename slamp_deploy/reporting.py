"""Activity, SynOps and energy sections of the report (issue 5 fills this in)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline import PipelineContext


def add_activity_and_energy(ctx: PipelineContext) -> None:
    """Measure activity on the evaluation data and add the report's activity/energy sections."""
