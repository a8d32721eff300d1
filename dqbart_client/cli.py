"""`dqbart models|datasets|jobs|summarize|translate`: the service from a terminal, through `Client`.

Every command reads the service's URL and key from --api-url/--api-key or DQB_API_URL/DQB_API_KEY,
prints a table (or JSON with --json), and turns an API error into one line on stderr and exit 1.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from dqbart_client._client import Client
from dqbart_client.errors import APIStatusError, DqbartError
from dqbart_client.output import Output
from dqbart_client.plot import plot_metrics
from dqbart_client.progress import ProgressView
from dqbart_client.types import Dataset, Event, Job, Model, Sweep

Command = Callable[..., None]


def api_command(group: click.Group, name: str) -> Callable[[Command], click.Command]:
    """A subcommand of `group` that gets (client, out, **its arguments)."""
    def decorate(fn: Command) -> click.Command:
        @group.command(name, help=fn.__doc__)
        @click.option("--api-url", envvar="DQB_API_URL", default=None,
                      help="the service (env DQB_API_URL; default http://127.0.0.1:8000)")
        @click.option("--api-key", envvar="DQB_API_KEY", default=None, help="your key (env DQB_API_KEY)")
        @click.option("--json", "as_json", is_flag=True, help="print JSON for scripts instead of a table")
        @functools.wraps(fn)
        def run(api_url: str | None, api_key: str | None, as_json: bool, **kwargs: Any) -> None:
            try:
                with Client(api_url, api_key) as client:
                    fn(client, Output(as_json), **kwargs)
            except APIStatusError as exc:
                param = f" [{exc.param}]" if exc.param else ""
                raise click.ClickException(f"{exc.status_code} {exc.code}{param}: {exc.message}") from exc
            except DqbartError as exc:
                raise click.ClickException(str(exc)) from exc
        return run
    return decorate


@click.group(name="client")
def client_cli() -> None:
    """The dqbart service's client commands."""


@client_cli.group()
def models() -> None:
    """Teachers you uploaded and the compressed models your jobs made."""


@api_command(models, "upload")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--name", help="a display name (default: the file or folder name)")
def models_upload(client: Client, out: Output, path: Path, name: str | None) -> None:
    """Upload a teacher: a Hugging Face BART/mBART folder, or a .tar/.tar.gz/.zip of one."""
    out.row(client.models.upload(path, name), Model)


@api_command(models, "list")
def models_list(client: Client, out: Output) -> None:
    """Every model, newest first."""
    out.items(list(client.models.list()), Model)


@api_command(models, "get")
@click.argument("model_id")
def models_get(client: Client, out: Output, model_id: str) -> None:
    """One model's details."""
    out.one(client.models.get(model_id))


@api_command(models, "download")
@click.argument("model_id")
@click.argument("dest", required=False, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["artifact", "ctranslate2"]), default="artifact",
              show_default=True)
@click.option("--no-verify", is_flag=True, help="skip the SHA-256 check")
def models_download(client: Client, out: Output, model_id: str, dest: Path | None, fmt: str,
                    no_verify: bool) -> None:
    """Download a model as one .tar (default ./MODEL_ID.tar); an interrupted download resumes."""
    done = client.models.download(model_id, dest or Path(f"{model_id}.tar"), verify=not no_verify, format=fmt)
    if out.as_json:
        out.json({"path": str(done.path), "bytes": done.bytes, "sha256": done.sha256,
                  "resumed_from": done.resumed_from})
    else:
        check = "not checked" if no_verify else "matches the service's"
        click.echo(f"{done.path}: {done.bytes:,} bytes, sha256 {done.sha256} ({check})")


@client_cli.group()
def datasets() -> None:
    """Training and validation data (JSONL or CSV)."""


@api_command(datasets, "upload")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", help="a display name (default: the file name)")
def datasets_upload(client: Client, out: Output, path: Path, name: str | None) -> None:
    """Upload a .jsonl (one JSON object per line) or .csv (with a header) file."""
    out.row(client.datasets.upload(path, name), Dataset)


@api_command(datasets, "list")
def datasets_list(client: Client, out: Output) -> None:
    """Every dataset, newest first."""
    out.items(list(client.datasets.list()), Dataset)


@client_cli.group()
def jobs() -> None:
    """Compression jobs: submit a recipe, follow it, read its metrics."""


def load_recipe(path: Path) -> dict[str, Any]:
    try:
        recipe = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise click.BadParameter(f"not YAML or JSON: {exc}", param_hint="RECIPE") from exc
    if not isinstance(recipe, dict):
        raise click.BadParameter("the recipe must be a mapping (task, teacher, dataset...)",
                                 param_hint="RECIPE")
    return recipe


@api_command(jobs, "create")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="follow the job with a progress bar until it ends")
@click.option("--idempotency-key", help="a replay with the same key returns the first job")
def jobs_create(client: Client, out: Output, recipe: Path, wait: bool, idempotency_key: str | None) -> None:
    """Submit RECIPE.yaml (or .json): teacher {model: ID}, dataset {dataset: ID, ...}."""
    job = client.jobs.create(load_recipe(recipe), idempotency_key=idempotency_key)
    if wait:
        click.echo(f"submitted {job.id}", err=True)
        job = _follow(client, job.id)
    out.row(job, Job)
    if wait and job.status != "succeeded":
        sys.exit(1)


def _follow(client: Client, job_id: str) -> Job:
    view = ProgressView(job_id)
    try:
        return client.jobs.wait(job_id, on_progress=view)
    finally:
        view.close()


@api_command(jobs, "list")
def jobs_list(client: Client, out: Output) -> None:
    """Every job, newest first."""
    out.items(list(client.jobs.list()), Job)


@api_command(jobs, "get")
@click.argument("job_id")
def jobs_get(client: Client, out: Output, job_id: str) -> None:
    """One job: status, stage, progress, metrics, error, result model."""
    out.one(client.jobs.get(job_id))


@api_command(jobs, "events")
@click.argument("job_id")
def jobs_events(client: Client, out: Output, job_id: str) -> None:
    """The job's events, oldest first."""
    out.items(client.jobs.events(job_id), Event)


@api_command(jobs, "cancel")
@click.argument("job_id")
def jobs_cancel(client: Client, out: Output, job_id: str) -> None:
    """Cancel a job (a running one stops within seconds)."""
    out.row(client.jobs.cancel(job_id), Job)


@api_command(jobs, "metrics")
@click.argument("job_id")
@click.option("--name", help="one series only (e.g. loss/total)")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the loss curves and evaluation scores to this PNG")
def jobs_metrics(client: Client, out: Output, job_id: str, name: str | None, plot: Path | None) -> None:
    """Every logged series (loss components, eval metrics): its last value, min and max."""
    points = client.jobs.metrics(job_id, name=name)
    out.series(points)
    if plot is not None:
        plot_metrics(points, plot, title=f"job {job_id}")
        click.echo(f"wrote {plot}", err=True)


@client_cli.group()
def sweeps() -> None:
    """Sweeps: one recipe over bit widths and layer plans; the smallest model that passes a gate."""


@api_command(sweeps, "create")
@click.argument("sweep", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--wait", is_flag=True, help="poll until the sweep ends, then print its points")
@click.option("--idempotency-key", help="a replay with the same key returns the first sweep")
def sweeps_create(client: Client, out: Output, sweep: Path, wait: bool, idempotency_key: str | None) -> None:
    """Submit SWEEP.yaml (or .json): recipe, axes {bits, layers}, gate, objective, strategy, budget."""
    made = client.sweeps.create(load_recipe(sweep), idempotency_key=idempotency_key)
    if wait:
        click.echo(f"submitted {made.id}", err=True)
        made = client.sweeps.wait(made.id)
    out.sweep(made)


@api_command(sweeps, "list")
def sweeps_list(client: Client, out: Output) -> None:
    """Every sweep, newest first."""
    out.items(list(client.sweeps.list()), Sweep)


@api_command(sweeps, "get")
@click.argument("sweep_id")
def sweeps_get(client: Client, out: Output, sweep_id: str) -> None:
    """One sweep: every point, the front, the recommendation."""
    out.sweep(client.sweeps.get(sweep_id))


@api_command(sweeps, "cancel")
@click.argument("sweep_id")
def sweeps_cancel(client: Client, out: Output, sweep_id: str) -> None:
    """Cancel a sweep and its children still queued or running."""
    out.sweep(client.sweeps.cancel(sweep_id))


def _parameters(pairs: tuple[str, ...]) -> dict[str, Any]:
    """KEY=VALUE pairs; values parse as JSON where they can (numbers, booleans), else stay text."""
    parameters: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--param")
        try:
            parameters[key] = json.loads(value)
        except json.JSONDecodeError:
            parameters[key] = value
    return parameters


PARAM_OPTION = click.option("-p", "--param", "params", multiple=True,
                            help="a generation setting KEY=VALUE (num_beams=4, max_length=60...)")


@api_command(client_cli, "summarize")
@click.argument("model_id")
@click.argument("texts", nargs=-1, required=True)
@PARAM_OPTION
def summarize(client: Client, out: Output, model_id: str, texts: tuple[str, ...],
              params: tuple[str, ...]) -> None:
    """Summarize each TEXT with a compressed model, one summary a line."""
    _print_texts(out, client.summarize(model_id, texts, **_parameters(params)))


@api_command(client_cli, "translate")
@click.argument("model_id")
@click.argument("texts", nargs=-1, required=True)
@PARAM_OPTION
def translate(client: Client, out: Output, model_id: str, texts: tuple[str, ...],
              params: tuple[str, ...]) -> None:
    """Translate each TEXT with a compressed model, one translation a line."""
    _print_texts(out, client.translate(model_id, texts, **_parameters(params)))


def _print_texts(out: Output, texts: list[str]) -> None:
    if out.as_json:
        out.json(texts)
    else:
        for text in texts:
            click.echo(text)
