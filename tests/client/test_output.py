"""The client commands' tables, JSON, generation parameters and loss-curve plot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click
import pytest

from dqbart_client.cli import _parameters
from dqbart_client.output import Output, metric_series
from dqbart_client.plot import plot_metrics
from dqbart_client.types import Job, MetricPoint, Model

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def points(name: str, values: list[float]) -> list[MetricPoint]:
    return [MetricPoint(name=name, step=step, value=v, created_at=NOW) for step, v in enumerate(values, 1)]


def test_metric_series_keep_the_last_value_and_the_range() -> None:
    (series,) = metric_series(points("loss/total", [3.0, 1.0, 2.0]))
    assert (series.points, series.last_step, series.last, series.low, series.high) == (3, 3, 2.0, 1.0, 3.0)


def test_json_output_is_the_objects_as_the_api_sent_them(capsys: pytest.CaptureFixture[str]) -> None:
    Output(as_json=True).items([Job(id="job_1", status="queued", created_at=NOW)], Job)
    (item,) = json.loads(capsys.readouterr().out)
    assert (item["id"], item["status"], item["progress"]["step"]) == ("job_1", "queued", 0)


def test_generation_parameters_parse_numbers_and_keep_text() -> None:
    assert _parameters(("num_beams=4", "early_stopping=true", "lang=de")) == {
        "num_beams": 4, "early_stopping": True, "lang": "de"}


def test_a_parameter_without_a_value_is_a_usage_error() -> None:
    with pytest.raises(click.BadParameter):
        _parameters(("num_beams",))


def test_the_plot_is_a_png_of_losses_and_evaluations(tmp_path: Path) -> None:
    series = points("loss/total", [3.0, 2.0]) + points("loss/task", [2.0, 1.5]) + points("eval/rouge1", [5.0])
    out = plot_metrics(series, tmp_path / "curves.png", title="job_1")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_table_written_to_a_pipe_keeps_whole_ids(capsys: pytest.CaptureFixture[str]) -> None:
    model = Model(id="mdl_01M96T5JDYA7RFJCCP9HGBDYRT", name="a-rather-long-teacher-name", source="upload",
                  architecture="BartForConditionalGeneration", layers={"encoder": 6, "decoder": 6},
                  parameters=139_420_416, bytes=557_681_664, sha256="0" * 64, created_at=NOW)
    Output(as_json=False).items([model], Model)
    out = capsys.readouterr().out
    assert model.id in out and model.name in out and "557.7 MB" in out
