"""The demo's final table: teacher against students, from report.json and timed through the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Served:
    """How the service serves a model, timed as a user gets it (see demo.run.time_served)."""

    form: str  # /info runtime.form: ctranslate2_int8, ctranslate2_float32, int8_dynamic, reference
    ms_per_doc: float


# Each score the table shows: its key in report.json's metrics, and its column title.
Metrics = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Row:
    name: str
    scores: tuple[float | None, ...]  # in the order of the task's metrics
    bytes: int | None
    ratio: float | None
    served: Served | None  # None where the endpoint does not serve the model


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    for key in (name, f"eval/{name}"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    return None


def _scores(metrics: dict[str, Any], shown: Metrics) -> tuple[float | None, ...]:
    return tuple(_metric(metrics, key) for key, _ in shown)


def teacher_row(report: dict[str, Any], served: Served | None, shown: Metrics) -> Row:
    scores = _scores(report.get("teacher_metrics") or {}, shown)
    return Row("teacher (fp32)", scores, report.get("teacher_bytes"), 1.0, served)


def student_row(name: str, report: dict[str, Any], served: Served | None, shown: Metrics) -> Row:
    scores = _scores(report.get("student_metrics") or {}, shown)
    return Row(name, scores, report.get("student_bytes"), report.get("compression_ratio"), served)


def _fmt(value: float | int | None, spec: str, suffix: str = "") -> str:
    return "-" if value is None else format(value, spec) + suffix


def speedup(row: Row, teacher: Row) -> float | None:
    """How many times faster than the teacher the row's model answers through the API."""
    if row.served is None or teacher.served is None:
        return None
    return teacher.served.ms_per_doc / row.served.ms_per_doc


def render(rows: list[Row], shown: Metrics) -> str:
    """The table; the first row is the teacher that sizes and speed-ups compare with."""
    header = ("model", *(title for _, title in shown), "bytes", "smaller", "served as", "API ms/doc",
              "faster")
    lines = [[r.name, *(_fmt(score, ".2f") for score in r.scores),
              _fmt(r.bytes, ",d"), _fmt(r.ratio, ".1f", "x"), r.served.form if r.served else "-",
              _fmt(r.served.ms_per_doc if r.served else None, ".1f"), _fmt(speedup(r, rows[0]), ".1f", "x")]
             for r in rows]
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    out = [_line(header, widths), "  ".join("-" * w for w in widths)]
    out += [_line(line, widths) for line in lines]
    return "\n".join(out)


def _line(cells: list[str] | tuple[str, ...], widths: list[int]) -> str:
    """The name column left-aligned, numbers right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
