"""The demo's final table: teacher against students, from report.json and measured latency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Row:
    name: str
    rouge1: float | None
    rouge2: float | None
    rouge_lsum: float | None
    bytes: int | None
    ratio: float | None
    generate_ms: float | None  # per document, in the worker, same batch and settings for every model
    api_ms: float | None  # per document, through POST /v1/models/{id}/summarize


def _metric(metrics: dict[str, Any], name: str) -> float | None:
    for key in (name, f"eval/{name}"):
        if isinstance(metrics.get(key), int | float):
            return float(metrics[key])
    return None


def _generate_ms(report: dict[str, Any], who: str) -> float | None:
    latency = report.get("latency") or {}
    seconds, batch = latency.get(f"{who}_seconds"), latency.get("batch_size")
    return 1000.0 * seconds / batch if isinstance(seconds, int | float) and batch else None


def teacher_row(report: dict[str, Any], api_ms: float | None) -> Row:
    metrics = report.get("teacher_metrics") or {}
    return Row("teacher (fp32)", _metric(metrics, "rouge1"), _metric(metrics, "rouge2"),
               _metric(metrics, "rougeLsum"), report.get("teacher_bytes"), 1.0,
               _generate_ms(report, "teacher"), api_ms)


def student_row(name: str, report: dict[str, Any], api_ms: float | None) -> Row:
    metrics = report.get("student_metrics") or {}
    return Row(name, _metric(metrics, "rouge1"), _metric(metrics, "rouge2"), _metric(metrics, "rougeLsum"),
               report.get("student_bytes"), report.get("compression_ratio"), _generate_ms(report, "student"),
               api_ms)


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def render(rows: list[Row]) -> str:
    header = ("model", "ROUGE-1", "ROUGE-2", "ROUGE-Lsum", "bytes", "ratio", "generate ms/doc", "API ms/doc")
    lines = [[r.name, _fmt(r.rouge1, ".2f"), _fmt(r.rouge2, ".2f"), _fmt(r.rouge_lsum, ".2f"),
              _fmt(r.bytes, ",d"), _fmt(r.ratio, ".1f") + ("x" if r.ratio else ""),
              _fmt(r.generate_ms, ".1f"), _fmt(r.api_ms, ".1f")]
             for r in rows]
    widths = [max(len(header[i]), *(len(line[i]) for line in lines)) for i in range(len(header))]
    out = [_line(header, widths), "  ".join("-" * w for w in widths)]
    out += [_line(line, widths) for line in lines]
    return "\n".join(out)


def _line(cells: list[str] | tuple[str, ...], widths: list[int]) -> str:
    """The name column left-aligned, numbers right-aligned."""
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)
