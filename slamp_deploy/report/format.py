"""Display formatting shared by every rendering of the report (report.md, report.html, the
terminal): counts with k/M/G and percent changes. Energies are formatted by
:func:`slamp_deploy.measure.energy.format_energy`, which stays beside the estimate because the
estimate's own ``display()``/``short()`` use it and ``measure`` must not import ``report``."""

from __future__ import annotations

__all__ = ["format_count", "pct_change"]


def format_count(x: float) -> str:
    """3 significant digits with k/M/G, e.g. ``1.23M`` (display only)."""
    a = abs(x)
    for scale, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if a >= scale:
            return f"{x / scale:.3g}{unit}"
    return f"{x:.3g}" if x != int(x) else f"{int(x)}"


def pct_change(a: float, b: float, *, none: str = "-") -> str:
    """``b`` against ``a`` as a signed whole percent, e.g. ``-67%`` (``none`` when ``a`` is 0)."""
    if a == 0:
        return none
    return f"{(b - a) / a * 100:+.0f}%"
