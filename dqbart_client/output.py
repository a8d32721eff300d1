"""How the commands print: rich tables for people, JSON (--json) for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import click
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from dqbart_client.types import Dataset, Event, Job, MetricPoint, Model, Sweep, SweepPoint

Column = tuple[str, Callable[[Any], object]]


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB"):
        if value < 1000:
            return f"{value:,.0f} B" if unit == "B" else f"{value:,.1f} {unit}"
        value /= 1000
    return f"{value:,.1f} GB"


def _progress(job: Job) -> str:
    p = job.progress
    return f"{p.step}/{p.total_steps}" if p.total_steps else "-"


def _gate(item: Job | Model) -> str:
    """A gated job's or model's verdict (passed, flagged, rejected); "-" without a gate."""
    return str(item.quality_gate["verdict"]) if item.quality_gate else "-"


def _loss(job: Job) -> str:
    value = job.metrics.get("loss/total", job.metrics.get("loss"))
    return f"{value:.4f}" if isinstance(value, int | float) else "-"


MODEL_COLUMNS: list[Column] = [
    ("id", lambda m: m.id), ("name", lambda m: m.name), ("source", lambda m: m.source),
    ("layers", lambda m: f"{m.layers.get('encoder')}-{m.layers.get('decoder')}"),
    ("parameters", lambda m: f"{m.parameters:,}"), ("size", lambda m: _size(m.bytes)), ("gate", _gate),
    ("created", lambda m: f"{m.created_at:%Y-%m-%d %H:%M}"),
]
DATASET_COLUMNS: list[Column] = [
    ("id", lambda d: d.id), ("name", lambda d: d.name), ("rows", lambda d: f"{d.rows:,}"),
    ("columns", lambda d: ", ".join(d.columns)), ("size", lambda d: _size(d.bytes)),
    ("created", lambda d: f"{d.created_at:%Y-%m-%d %H:%M}"),
]
JOB_COLUMNS: list[Column] = [
    ("id", lambda j: j.id), ("status", lambda j: j.status), ("stage", lambda j: j.stage or "-"),
    ("step", _progress), ("loss", _loss), ("result", lambda j: j.result_model or "-"), ("gate", _gate),
    ("created", lambda j: f"{j.created_at:%Y-%m-%d %H:%M}"),
]
EVENT_COLUMNS: list[Column] = [
    ("id", lambda e: e.id), ("time", lambda e: f"{e.created_at:%H:%M:%S}"), ("type", lambda e: e.type),
    ("stage", lambda e: e.stage or "-"),
    ("message", lambda e: e.message or json.dumps(e.data.get("metrics", e.data), sort_keys=True)),
]
SWEEP_COLUMNS: list[Column] = [
    ("id", lambda s: s.id), ("status", lambda s: s.status), ("strategy", lambda s: s.strategy),
    ("points", lambda s: " ".join(f"{k} {v}" for k, v in s.progress.items() if v)),
    ("recommended", lambda s: s.recommended["model_id"] if s.recommended else "-"),
    ("created", lambda s: f"{s.created_at:%Y-%m-%d %H:%M}"),
]


def _score(value: float | None) -> str:
    return f"{value:.2f}" if value is not None else "-"


POINT_COLUMNS: list[Column] = [
    ("#", lambda p: p.index), ("method", lambda p: p.method), ("bits", lambda p: p.bits),
    ("layers", lambda p: p.layers), ("status", lambda p: p.status),
    ("size", lambda p: _size(p.bytes) if p.bytes is not None else "-"),
    ("ratio", lambda p: f"{p.compression_ratio:.1f}x" if p.compression_ratio else "-"),
    ("metric", lambda p: _score(p.metric)), ("gate", lambda p: p.gate or "-"),
    ("front", lambda p: "*" if p.on_front else ""), ("model", lambda p: p.model_id or "-"),
]
COLUMNS: dict[type, list[Column]] = {Model: MODEL_COLUMNS, Dataset: DATASET_COLUMNS, Job: JOB_COLUMNS,
                                     Event: EVENT_COLUMNS, Sweep: SWEEP_COLUMNS, SweepPoint: POINT_COLUMNS}


@dataclass(frozen=True)
class MetricSeries:
    name: str
    points: int
    last_step: int
    last: float
    low: float
    high: float


def metric_series(points: Sequence[MetricPoint]) -> list[MetricSeries]:
    by_name: dict[str, list[MetricPoint]] = {}
    for point in points:
        by_name.setdefault(point.name, []).append(point)
    return [MetricSeries(name, len(series), series[-1].step, series[-1].value,
                         min(p.value for p in series), max(p.value for p in series))
            for name, series in sorted(by_name.items())]


PIPE_WIDTH = 240  # a pipe or a file has no width: squeezed to rich's 80 columns, ids would be cut


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else PIPE_WIDTH)


@dataclass
class Output:
    as_json: bool
    console: Console = field(default_factory=lambda: _console())

    def json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, default=str))

    def items(self, items: Sequence[BaseModel], kind: type, title: str = "") -> None:
        if self.as_json:
            self.json([item.model_dump(mode="json") for item in items])
            return
        table = Table(title=title or None, title_justify="left")
        for header, _ in COLUMNS[kind]:
            table.add_column(header, no_wrap=header == "id", overflow="fold")
        for item in items:
            table.add_row(*(str(cell(item)) for _, cell in COLUMNS[kind]))
        self.console.print(table)

    def row(self, item: BaseModel, kind: type) -> None:
        """A new or changed object: one table row, or the object itself in JSON."""
        if self.as_json:
            self.json(item.model_dump(mode="json"))
        else:
            self.items([item], kind)

    def one(self, item: BaseModel) -> None:
        """Every field of one object, a row each (nested values as compact JSON)."""
        if self.as_json:
            self.json(item.model_dump(mode="json"))
            return
        table = Table(show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column(overflow="fold")
        for key, value in item.model_dump(mode="json").items():
            shown = json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else str(value)
            table.add_row(key, shown)
        self.console.print(table)

    def sweep(self, sweep: Sweep) -> None:
        """A sweep's points as a table, then its recommendation (or why there is none)."""
        if self.as_json:
            self.json(sweep.model_dump(mode="json"))
            return
        self.items(sweep.points, SweepPoint, title=f"{sweep.id}: {sweep.status}, {sweep.strategy}, "
                                                   f"scored on {sweep.metric}")
        if sweep.recommended:
            self.console.print(f"recommended: point {sweep.recommended['index']}, model "
                               f"{sweep.recommended['model_id']} ({_size(sweep.recommended['bytes'])})")
        else:
            self.console.print(f"no recommendation: {sweep.reason}")
        if sweep.steps.get("saved") is not None:
            self.console.print(f"steps: {sweep.steps['used']} of a grid's {sweep.steps['grid']}")

    def series(self, points: Sequence[MetricPoint]) -> None:
        if self.as_json:
            self.json([p.model_dump(mode="json") for p in points])
            return
        table = Table()
        for header in ("name", "points", "last step", "last", "min", "max"):
            table.add_column(header, no_wrap=header == "name")
        for s in metric_series(points):
            table.add_row(s.name, str(s.points), str(s.last_step), f"{s.last:.4g}", f"{s.low:.4g}",
                          f"{s.high:.4g}")
        self.console.print(table)
