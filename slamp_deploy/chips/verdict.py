"""The verdict of a fit check: one :class:`RuleResult` per rule and layer, the violations
quantified, each layer's mapping, and the :class:`FitReport` that a run writes to report.json.

Values only (frozen); ``slamp_deploy.fit.check`` builds them and the chip families produce the
rule results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from slamp_deploy.errors import ConstraintViolation

__all__ = ["NOT_CHECKED_HELP", "FitReport", "LayerFit", "RuleResult", "Violation",
           "raise_if_not_fit"]

#: What a user with the missing figures does (check, report.md): a profile of their own.
NOT_CHECKED_HELP = ("a profile of your own fills them in: copy the target's TOML, give the "
                    "figures with value, confidence and source, and pass --target my-chip.toml "
                    "(hardware_profiles/SCHEMA.md; examples/my-loihi2.toml)")

SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleResult:
    """The outcome of one rule on one layer (``layer`` None: the whole network)."""

    rule: str  # dotted profile field or mapper rule, e.g. "neuron.fan_in_max"
    layer: str | None
    # "ok" | "violated" | "not_checked" | "no_limit" | "warning" (it maps, but the vendor's
    # toolchain warns or the chip runs it changed, e.g. Xylo's bit-shift decays; ``reason`` says)
    status: str
    value: int | None = None  # observed worst case (per core under the chosen mapping)
    limit: int | None = None
    comparison: str = "<="  # value <= limit; ">=" for minimums; "==" for yes/no rules (1 = ok)
    cores_needed: int | None = None  # per-core rules: fewest cores that satisfy this rule alone
    relievable: bool = False  # unstructured pruning can relieve a violation
    confidence: str = ""  # of the limiting figure
    reason: str = ""  # not_checked: why; violated: the remedy

    @property
    def margin(self) -> int | None:
        """Headroom: ``limit - value`` (``value - limit`` for minimums); negative = violated."""
        if self.value is None or self.limit is None or self.comparison == "==":
            return None
        return self.limit - self.value if self.comparison == "<=" else self.value - self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "status": self.status,
            "value": self.value,
            "limit": self.limit,
            "comparison": self.comparison,
            "margin": self.margin,
            "cores_needed": self.cores_needed,
            "relievable": self.relievable,
            "confidence": self.confidence,
            "reason": self.reason,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Violation:
    """A violated rule, quantified, with whether pruning helps and what to do otherwise."""

    rule: str
    layer: str | None
    value: int
    limit: int
    relievable: bool
    remedy: str
    message: str  # one line, e.g. "layer conv2: fan-in 288 > 256 (truenorth per-neuron limit)"

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "layer": self.layer,
            "value": self.value,
            "limit": self.limit,
            "relievable": self.relievable,
            "remedy": self.remedy,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LayerFit:
    """Per-layer mapping result."""

    name: str
    kind: str
    neurons: int  # units of the synaptic op (post-synaptic neurons)
    kept_weights: int
    kept_synapses: int  # exact synaptic connections (conv: weights x valid positions)
    max_fan_in: int
    max_fan_out: int  # over this layer's input units, all consumers of the same source summed
    cores: int | None  # cores assigned (None: the mapper does not model cores)
    cores_by_rule: tuple[tuple[str, int | None], ...]
    binding_rule: str | None  # checked rule with the least relative headroom
    binding_margin: int | None
    checks: tuple[RuleResult, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "neurons": self.neurons,
            "kept_weights": self.kept_weights,
            "kept_synapses": self.kept_synapses,
            "max_fan_in": self.max_fan_in,
            "max_fan_out": self.max_fan_out,
            "cores": self.cores,
            "cores_by_rule": {r: n for r, n in self.cores_by_rule},
            "binding_rule": self.binding_rule,
            "binding_margin": self.binding_margin,
            "checks": [c.to_dict() for c in self.checks],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class FitReport:
    """Everything :func:`check_fit` found. ``fits`` is the verdict."""

    target: str
    mapper: str
    fits: bool
    layers: tuple[LayerFit, ...]
    network_checks: tuple[RuleResult, ...]
    cores_used: int | None
    cores_available: int | None
    chips_used: int | None
    chips_available: int | None
    violations: tuple[Violation, ...]
    not_checked: tuple[RuleResult, ...]
    profile_sha256: str = field(default="", compare=False)

    def summary(self) -> str:
        """One line: verdict, cores and the first violation."""
        avail = "?" if self.cores_available is None else str(self.cores_available)
        cores = (
            "cores not modelled"
            if self.cores_used is None
            else f"{self.cores_used} of {avail} cores"
        )
        head = f"{self.target}: {'fits' if self.fits else 'does not fit'} ({cores}"
        head += f", {len(self.not_checked)} rules not checked"
        n_warn = len(self.warnings)
        head += f", {n_warn} warning{'s' if n_warn > 1 else ''})" if n_warn else ")"
        if self.violations:
            head += f"; {self.violations[0].message}"
            if len(self.violations) > 1:
                head += f" (+{len(self.violations) - 1} more)"
        return head

    def not_checked_lines(self) -> list[str]:
        """One line per unchecked rule: its reason and the layers it concerns."""
        by: dict[tuple[str, str], list[str]] = {}
        for r in self.not_checked:
            reason = r.reason.removeprefix("not checked (").removesuffix(")")
            by.setdefault((r.rule, reason), []).append(r.layer or "network")
        return [f"{rule} ({reason}; {', '.join(dict.fromkeys(where))})"
                for (rule, reason), where in sorted(by.items())]

    def tightest(self, n: int = 5) -> list[RuleResult]:
        """The ``n`` checked rules with the least relative headroom (violated ones first)."""
        pool = [c for lf in self.layers for c in lf.checks] + list(self.network_checks)
        ranked = [c for c in pool if c.status in ("ok", "violated") and c.margin is not None
                  and c.limit]
        ranked.sort(key=lambda c: (c.margin or 0) / max(c.limit or 1, 1))
        return ranked[:n]

    @property
    def warnings(self) -> tuple[RuleResult, ...]:
        """Rules that hold with a warning (status ``warning``), layers first."""
        return tuple(c for c in (*(c for lf in self.layers for c in lf.checks),
                                 *self.network_checks) if c.status == "warning")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, with a fixed key order."""
        return {
            "schema_version": SCHEMA_VERSION,
            "target": self.target,
            "mapper": self.mapper,
            "profile_sha256": self.profile_sha256,
            "fits": self.fits,
            "cores_used": self.cores_used,
            "cores_available": self.cores_available,
            "chips_used": self.chips_used,
            "chips_available": self.chips_available,
            "violations": [v.to_dict() for v in self.violations],
            "not_checked": [
                {"rule": r.rule, "layer": r.layer, "reason": r.reason} for r in self.not_checked
            ],
            "network_checks": [c.to_dict() for c in self.network_checks],
            "layers": [lf.to_dict() for lf in self.layers],
        }


def raise_if_not_fit(report: FitReport) -> None:
    """Raise :class:`ConstraintViolation` with the first violation when the model does not fit."""
    if report.fits:
        return
    first = report.violations[0]
    more = f" (+{len(report.violations) - 1} more violations)" if len(report.violations) > 1 else ""
    raise ConstraintViolation(f"{first.message}{more}; {first.remedy}")

