"""The quality gate's verdict: did the student keep close enough to its teacher?

A pure function of the recipe's gate and the two scores, so that the report, the worker and the
tests all judge alike.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from compression.recipe import GateSpec

Verdict = Literal["passed", "flagged", "rejected"]
# A student exactly on the bound passes: float rounding alone (30 - 29.4 = 0.6000000000000014)
# must not fail it.
TOLERANCE = 1e-9


@dataclass(frozen=True)
class GateResult:
    """The verdict with what it was judged on; `drop` is in metric points, `relative_drop` a
    fraction of the teacher's score (both negative where the student scores higher)."""

    verdict: Verdict
    metric: str
    teacher: float
    student: float
    drop: float
    relative_drop: float
    max_drop: float
    drop_kind: Literal["relative", "absolute"]
    on_fail: Literal["flag", "reject"]

    @property
    def passed(self) -> bool:
        return self.verdict == "passed"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed, "message": self.describe()}

    def describe(self) -> str:
        """One line for events and error messages."""
        bound = (f"{self.max_drop:.1%} of the teacher's" if self.drop_kind == "relative"
                 else f"{self.max_drop:g} points")
        return (f"quality gate {self.verdict}: student {self.metric} {self.student:.2f}, teacher "
                f"{self.teacher:.2f}, a drop of {self.drop:.2f} points ({self.relative_drop:.1%}); "
                f"allowed: {bound}")


def judge(gate: GateSpec, teacher_metrics: dict[str, float], student_metrics: dict[str, float]) -> GateResult:
    """The gate's verdict on the two scores of `gate.metric`."""
    metric = gate.metric
    if metric is None:
        raise ValueError("the gate's metric is filled in by its recipe: judge a recipe's gate")
    teacher, student = float(teacher_metrics[metric]), float(student_metrics[metric])
    drop = teacher - student
    # Scores are never negative: a teacher at 0 cannot be undercut, and no fraction of 0 exists.
    relative = drop / teacher if teacher > 0 else 0.0
    within = (relative if gate.drop == "relative" else drop) <= gate.max_drop + TOLERANCE
    verdict: Verdict = "passed" if within else ("flagged" if gate.on_fail == "flag" else "rejected")
    return GateResult(verdict=verdict, metric=metric, teacher=teacher, student=student, drop=drop,
                      relative_drop=relative, max_drop=gate.max_drop, drop_kind=gate.drop,
                      on_fail=gate.on_fail)
