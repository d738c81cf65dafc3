"""A published chip figure and its provenance: value, unit, source and confidence tag.

A profile is data, never code (style rule 5). Every number is a :class:`Figure` carrying its
value, unit, source and confidence tag, so a report can say how much to trust a verdict:

========  ==============================================================================
``V``       verbatim in the cited source (vendor code, docs, official abstract)
``V-code``  verbatim constant or formula in a vendor or tool repository
``D``       derived by simple arithmetic from cited figures
``S``       secondary (third-party summary or transcription)
``U``       unverified: widely quoted but not found in the sources; never used by a check
``unknown`` no public figure; ``value`` is ``None`` and stays ``None``
========  ==============================================================================

This module imports the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CONFIDENCES", "USABLE_CONFIDENCES", "Alternative", "Figure", "Value", "render_value"]

#: Confidence tags, strongest first. ``U`` figures are recorded but never enforced.
CONFIDENCES: tuple[str, ...] = ("V", "V-code", "D", "S", "U", "unknown")
#: Confidence tags a fit rule may rely on.
USABLE_CONFIDENCES: frozenset[str] = frozenset({"V", "V-code", "D", "S"})

Value = int | float | str | bool | tuple[int | float | str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alternative:
    """A conflicting published value that the profile did not pick."""

    value: Value
    confidence: str
    source: str
    note: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One published figure: value (``None`` when unknown), unit and provenance.

    ``unlimited`` marks a limit that does not exist (for example Loihi's per-neuron fan-in, which
    only the core's axons and memory bound); ``value`` is then ``None`` but the figure is known.
    """

    value: Value | None
    unit: str
    source: str
    confidence: str
    note: str = ""
    unlimited: bool = False
    alternatives: tuple[Alternative, ...] = ()
    # bounds of a numeric figure (energy and timing): ``None`` when the source gives none, and
    # then the figure counts as exact (low = high = value); the loader keeps low <= value <= high
    low: float | None = None
    high: float | None = None

    @property
    def known(self) -> bool:
        """True when a number is published (any confidence, ``U`` included)."""
        return self.value is not None

    @property
    def usable(self) -> bool:
        """True when a fit rule may enforce this figure (known and not ``U``)."""
        return self.value is not None and self.confidence in USABLE_CONFIDENCES

    def as_int(self) -> int | None:
        """The value as an int when usable, else ``None``."""
        if not self.usable or isinstance(self.value, (tuple, str, bool)):
            return None
        return int(self.value)  # type: ignore[arg-type]

    def as_float(self) -> float | None:
        """The value as a float when known (energy figures: ``U`` included), else ``None``."""
        if self.value is None or isinstance(self.value, (tuple, str, bool)):
            return None
        return float(self.value)

    def bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` of a known numeric figure (the value itself where no bound is
        published), else ``None``."""
        v = self.as_float()
        if v is None:
            return None
        return (v if self.low is None else self.low, v if self.high is None else self.high)

    def describe(self) -> str:
        """Short rendering, e.g. ``"128 count (V-code)"`` or ``"unknown"``."""
        if self.unlimited:
            return f"no limit ({self.confidence})"
        if self.value is None:
            return "unknown"
        b = self.bounds()
        rng = ("" if b is None or (self.low is None and self.high is None) else
               f" [{render_value(b[0])}-{render_value(b[1])}]")
        return f"{render_value(self.value)}{rng} {self.unit} ({self.confidence})"



def render_value(v: Value | None) -> str:
    if isinstance(v, tuple):
        return "[" + ", ".join(render_value(x) for x in v) + "]"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)

