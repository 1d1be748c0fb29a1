"""Figures, their baselines and targets; the table and the JSON document of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for a figure's value, or for its ratio to the baseline."""

    op: Literal["<=", ">="]
    limit: float
    of_ratio: bool = False

    def text(self, unit: str) -> str:
        if self.of_ratio:
            return f"{self.op} {self.limit:.0%} of baseline"
        return f"{self.op} {number(self.limit)} {unit}"

    def met(self, value: float | None) -> bool | None:
        if value is None:
            return None
        return value <= self.limit if self.op == "<=" else value >= self.limit


@dataclass(slots=True)
class Figure:
    name: str
    value: float | None
    unit: str
    baseline: str = ""  # what the value is compared with
    baseline_value: float | None = None
    targets: tuple[Target, ...] = ()

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    @property
    def meets(self) -> bool | None:
        """Whether every target is met; None without targets or without a value."""
        results = [t.met(self.ratio if t.of_ratio else self.value) for t in self.targets]
        if not results or None in results:
            return None
        return all(results)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "baseline": self.baseline or None,
            "baseline_value": self.baseline_value,
            "ratio": self.ratio,
            "target": " and ".join(t.text(self.unit) for t in self.targets) or None,
            "meets_target": self.meets,
        }


@dataclass(slots=True)
class Case:
    name: str
    figures: list[Figure] = field(default_factory=list)
    status: str = "ok"  # or "skipped: why" / "failed: why"
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def figure(self, name: str) -> Figure:
        return next(f for f in self.figures if f.name == name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "figures": [f.as_dict() for f in self.figures],
            "notes": self.notes,
            "details": self.details,
        }


def number(value: float | None) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


COLUMNS = ["case", "figure", "value", "unit", "baseline", "ratio", "target", "meets"]


def rows(cases: list[Case]) -> list[dict[str, Any]]:
    """The report's table, one row per figure in ``COLUMNS`` (the CLI renders it)."""
    table: list[dict[str, Any]] = []
    for case in cases:
        if case.status != "ok":
            table.append(dict.fromkeys(COLUMNS, "") | {"case": case.name, "figure": case.status})
        for f in case.figures:
            table.append(
                {
                    "case": case.name,
                    "figure": f.name,
                    "value": number(f.value),
                    "unit": f.unit,
                    "baseline": f"{f.baseline} {number(f.baseline_value)}" if f.baseline else "",
                    "ratio": f"{f.ratio:.2f}x" if f.ratio is not None else "",
                    "target": " and ".join(t.text(f.unit) for t in f.targets),
                    "meets": {True: "yes", False: "NO", None: ""}[f.meets],
                }
            )
    return table
