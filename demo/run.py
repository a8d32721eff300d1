"""`make demo`: a real compression through the service, from a teacher of our own to a table.

Starts `dqbart serve` (embedded: SQLite, filesystem broker, one worker) on a free local port,
creates a key, uploads the bundled debian-desc sample, trains the teacher from scratch as a job
(or re-uploads the one cached by an earlier run, or resumes the training an interrupted run left),
runs two compression jobs with a live progress bar, downloads and checks each artifact, summarizes
(or, with `--task translation`, translates English into German) a few validation records, times
every model through the task's endpoint, prints a table, and stops everything it started, also on
Ctrl-C or error.
"""

from __future__ import annotations

import argparse
import gzip
import json
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.cache import TeacherCache, built_benchmark_teacher, teacher_key
from demo.plan import PLANS, DemoPlan, DemoTask, StudentPlan, plan_for
from demo.resume import FAST_RECOVERY, TeacherJobNote, clean_up, default_data_dir, prepare_data_dir
from demo.service import EmbeddedService
from demo.table import Row, Served, render, student_row, teacher_row
from dqbart_client import APIStatusError, Client, Job
from dqbart_client.archives import extract_tar
from dqbart_client.plot import plot_metrics
from dqbart_client.progress import ProgressView

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "debian-desc-sample"
# Requests timed per model: enough for a steady median, few enough for the quick demo.
TIMED_DOCUMENTS = 8
# Each task's inference endpoint: /summarize or /translate.
INFER: dict[str, Callable[..., list[str]]] = {"summarization": Client.summarize,
                                              "translation": Client.translate}


class JobFailed(RuntimeError):
    pass


def say(text: str = "") -> None:
    print(text, flush=True)


def gunzip_to(src: Path, dest: Path, limit: int | None = None) -> Path:
    """The API takes plain .jsonl; `limit` keeps the first rows (quick runs)."""
    with gzip.open(src, "rt", encoding="utf-8") as f, dest.open("w", encoding="utf-8") as out:
        for number, line in enumerate(f):
            if limit is not None and number >= limit:
                break
            out.write(line)
    return dest


def read_jsonl(path: Path, limit: int) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(limit), f, strict=False)]


def run_job(client: Client, recipe: dict[str, Any], title: str) -> Job:
    job = client.jobs.create(recipe)
    say(f"submitted {title}: {job.id}")
    return follow_job(client, job.id, title)


def follow_job(client: Client, job_id: str, title: str, *, cancel_on_interrupt: bool = True) -> Job:
    """The job to its end, with a progress bar; an interrupt cancels it unless it is to be resumed."""
    view = ProgressView(title, out=sys.stdout)
    try:
        job = client.jobs.wait(job_id, on_progress=view)
    except BaseException:
        if cancel_on_interrupt:
            client.jobs.cancel(job_id)  # leave nothing running behind an interrupted demo
        raise
    finally:
        view.close()
    if job.status != "succeeded":
        error = job.error
        raise JobFailed(f"{title} ended {job.status}: {error.code if error else ''}: "
                        f"{error.message if error else ''}")
    return job


def obtain_teacher(client: Client, plan: DemoPlan, dataset_ids: dict[str, str], work: Path,
                   data_files: list[Path], note: TeacherJobNote) -> str:
    """The trained teacher's model id: the benchmark teacher once built, else the demo's own
    (from the user cache when possible, else trained by a job, resumed if a run was interrupted)."""
    task = plan.task
    if plan.use_benchmark_teacher:
        command = f"`python -m bench.teacher --task {task.name}`"
        built = built_benchmark_teacher(task.benchmark_data)
        if built is not None:
            say(f"using the benchmark teacher built by {command} [--cycles N] ({built})")
            say_input_check(json.loads((built / "report.json").read_text()).get("input_check"))
            return client.models.upload(built, name=f"{task.data}-teacher").id
        say(f"no benchmark teacher yet: {command} builds a much stronger one (6-6, d_model 256, the "
            "full data set; hours on CPU, resumable; `--cycles N` then trains it N-1 further "
            "learning-rate cycles); using the small demo teacher")
    cache = TeacherCache()
    key = teacher_key(plan.teacher_spec(), data_files)
    cached = cache.lookup(key)
    if cached is not None:
        say(f"reusing the trained teacher cached at {cached}")
        return client.models.upload(cached, name="demo-teacher").id
    job = train_teacher(client, plan, dataset_ids, work, note, key)
    trained_id = str(job.result_model)
    archive = client.models.download(trained_id, work / "teacher.tar")
    report = json.loads((extract_tar(archive.path, work / "teacher") / "report.json").read_text())
    say_input_check(report.get("input_check"))
    stored = cache.store(key, archive.path, {"model_sha256": archive.sha256, "plan": plan.teacher_spec()})
    say(f"trained teacher cached at {stored}")
    return trained_id


def resumable_teacher_job(client: Client, note: TeacherJobNote, key: str) -> str | None:
    """The teacher job an interrupted run left for this plan, while it can still succeed."""
    job_id = note.pending(key)
    if job_id is None:
        return None
    try:
        job = client.jobs.get(job_id)
    except APIStatusError:  # the note outlived the service's database
        job = None
    if job is None or job.status in ("failed", "cancelled", "user_error"):
        note.forget()
        return None
    say(f"resuming the teacher's training (job {job_id}, interrupted at step {job.progress.step} of "
        f"{job.progress.total_steps}) from its last checkpoint")
    return job_id


def train_teacher(client: Client, plan: DemoPlan, dataset_ids: dict[str, str], work: Path,
                  note: TeacherJobNote, key: str) -> Job:
    """The teacher-training job to its end. An interrupt leaves it unfinished, and noted, for the
    next run to resume instead of starting over from step 0."""
    job_id = resumable_teacher_job(client, note, key)
    if job_id is None:
        model = "mBART" if plan.task.languages else "BART"
        say(f"building an untrained teacher (tokenizer trained on the sample, random {model} weights)")
        initial = plan.task.build(work / "teacher-init", plan.teacher_shape)
        initial_model = client.models.upload(initial, name="demo-teacher-init")
        job_id = client.jobs.create(plan.teacher_recipe(initial_model.id, dataset_ids)).id
        note.remember(key, job_id)
        say(f"submitted teacher training: {job_id}")
    try:
        job = follow_job(client, job_id, "teacher training", cancel_on_interrupt=False)
    except JobFailed:
        note.forget()  # nothing to resume: the next run trains afresh
        raise
    note.forget()
    return job


def say_input_check(check: dict[str, float] | None) -> None:
    """Whether the teacher reads its input: a teacher that ignores it writes one text for all."""
    if check:
        say(f"teacher input check: validation loss {check['matched_loss']:.3f} with the right documents, "
            f"{check['shuffled_loss']:.3f} with shuffled ones (gap {check['gap']:.3f} nats; "
            "near 0 means it ignores its input)")


def compress_student(client: Client, plan: DemoPlan, student: StudentPlan, teacher_id: str,
                     dataset_ids: dict[str, str], work: Path, results: Path) -> tuple[str, dict[str, Any]]:
    job = run_job(client, plan.student_recipe(student, teacher_id, dataset_ids), student.name)
    model_id = str(job.result_model)
    curves = results / f"{student.name.replace(' ', '_')}-curves.png"
    plot_metrics(client.jobs.metrics(job.id), curves, title=f"{student.name} ({job.id})")
    download = client.models.download(model_id, work / f"{student.name}.tar")
    say(f"downloaded {download.path.name}: {download.bytes:,} bytes, "
        f"sha256 {download.sha256[:16]}... matches X-Checksum-SHA256")
    report = json.loads((extract_tar(download.path, work / student.name) / "report.json").read_text())
    return model_id, report


def infer(client: Client, task: DemoTask, model_id: str, texts: Sequence[str],
          **parameters: Any) -> list[str]:
    return INFER[task.name](client, model_id, texts, **parameters)


def show_outputs(client: Client, task: DemoTask, models: dict[str, str], records: list[dict[str, str]],
                 examples: list[dict[str, str]]) -> None:
    """Summaries or translations next to the references, with each model's default settings.

    A model the endpoint does not serve is shown from `examples`, the outputs the worker wrote
    into report.json for the first validation records."""
    source, target = task.fields
    inputs = [r[source] for r in records]
    texts: dict[str, list[str]] = {}
    for name, model_id in models.items():
        try:
            texts[name] = infer(client, task, model_id, inputs)
        except APIStatusError as exc:
            say(f"({name} is not served by the {task.name} endpoint (HTTP {exc.status_code}); "
                "its outputs below come from report.json)")
            by_source = {e["source"]: e.get(name, "") for e in examples}
            texts[f"{name} (report)"] = [by_source.get(text, "-") for text in inputs]
    for index, record in enumerate(records):
        text = record[source]
        say(f"\n--- {source} {index + 1}: {text[:200]}{'...' if len(text) > 200 else ''}")
        say(f"    {'reference':<17}: {record[target]}")
        for name, outputs in texts.items():
            say(f"    {name:<17}: {outputs[index]}")


def timing_inputs(plan: DemoPlan, validation: Path) -> tuple[list[str], dict[str, Any]]:
    """Documents and settings that time every model on the same work: each document cut to
    words that fit every model's source limit (the teacher's is longer than its students'), the
    plan's beams, and as many new tokens for every model (a model that stops early is not faster)."""
    words = plan.max_source_length // 3  # subword pieces per word stay under 3 on the samples
    source = plan.task.fields[0]
    documents = [" ".join(r[source].split()[:words]) for r in read_jsonl(validation, TIMED_DOCUMENTS)]
    tokens = plan.max_target_length
    return documents, {"num_beams": plan.evaluation["num_beams"], "min_new_tokens": tokens,
                       "max_new_tokens": tokens}


def time_served(client: Client, task: DemoTask, model_id: str, documents: list[str],
                parameters: dict[str, Any]) -> Served | None:
    """The model as a user gets it from the API: one document a request, one request at a time,
    after a warm-up (the first call loads the model); the median request time, and the runtime
    form the service chose. None where the endpoint does not serve the model."""
    try:
        infer(client, task, model_id, documents[:1], **parameters)
    except APIStatusError:
        return None
    seconds = [_request_seconds(client, task, model_id, document, parameters) for document in documents]
    form = client.request("GET", f"/v1/models/{model_id}/info").json()["runtime"]["form"]
    return Served(form, 1000.0 * statistics.median(seconds))


def _request_seconds(client: Client, task: DemoTask, model_id: str, document: str,
                     parameters: dict[str, Any]) -> float:
    start = time.perf_counter()
    infer(client, task, model_id, [document], **parameters)
    return time.perf_counter() - start


def demo(plan: DemoPlan, work: Path, service: EmbeddedService, results: Path) -> list[Row]:
    say(f"starting the service (embedded, data in {service.data_dir}) ...")
    service.start()
    say(f"service up at {service.base_url}")
    client = Client(service.base_url, service.create_key("demo"))
    task = plan.task
    try:
        train_file, validation_file = task.files
        train = gunzip_to(SAMPLE_DIR / train_file, work / "train.jsonl", plan.train_rows)
        validation = gunzip_to(SAMPLE_DIR / validation_file, work / "validation.jsonl")
        dataset_ids = {"train": client.datasets.upload(train, f"{task.data}-train").id,
                       "validation": client.datasets.upload(validation, f"{task.data}-validation").id}
        say(f"uploaded datasets: {dataset_ids}")
        teacher_id = obtain_teacher(client, plan, dataset_ids, work, [train, validation],
                                    TeacherJobNote(service.data_dir))
        reports = {}
        models = {"teacher": teacher_id}
        for student in plan.students:
            models[student.name], reports[student.name] = compress_student(
                client, plan, student, teacher_id, dataset_ids, work, results)
        first = next(iter(reports.values()))
        shown = read_jsonl(validation, plan.shown_documents)
        show_outputs(client, task, models, shown, first.get("examples") or [])
        documents, parameters = timing_inputs(plan, validation)
        say(f"\ntiming each model through the API: {len(documents)} documents, one a request, {parameters}")
        served = {name: time_served(client, task, model_id, documents, parameters)
                  for name, model_id in models.items()}
    finally:
        client.close()
    return [teacher_row(first, served["teacher"], task.metrics),
            *(student_row(name, report, served[name], task.metrics) for name, report in reports.items())]


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the `finally` blocks stop the service either way."""
    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _raise)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compress a BART teacher through the service, end to end.")
    parser.add_argument("--task", choices=sorted(PLANS), default="summarization",
                        help="summarization (BART) or translation (mBART, English to German)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny teacher and a few steps (tests, smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the service's DATA_DIR (default: demo-service in the user cache, removed "
                             "afterwards unless an interrupted teacher training waits there to resume)")
    parser.add_argument("--results", type=Path, default=Path("demo-results"),
                        help="where the table and the loss-curve plots are written (default: ./demo-results)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    plan = plan_for(args.task, args.quick)
    start = time.monotonic()
    data_dir, owned = (args.data_dir, False) if args.data_dir else (default_data_dir(), True)
    prepare_data_dir(data_dir, owned=owned)
    with tempfile.TemporaryDirectory(prefix="dqbart-demo-") as tmp, terminate_as_interrupt():
        work = Path(tmp)
        service = EmbeddedService(data_dir=data_dir, log_path=work / "service.log",
                                  env_defaults=FAST_RECOVERY)
        try:
            rows = demo(plan, work, service, args.results)
        except KeyboardInterrupt:
            say("\ninterrupted: stopping the service")
            return 130
        except Exception:
            log = work / "service.log"
            if log.exists():
                shutil.copyfile(log, Path.cwd() / "demo-service.log")
                say("the service's log was copied to ./demo-service.log")
            raise
        finally:
            service.stop()
            if clean_up(data_dir, owned=owned):
                say(f"the teacher's unfinished training is kept in {data_dir}: the next run resumes it "
                    "from its last checkpoint")
    table = render(rows, plan.task.metrics)
    say("\n" + table)
    (args.results / "table.txt").write_text(table + "\n", encoding="utf-8")
    say(f"\nresults (the table and each student's loss curves) are in {args.results.resolve()}/")
    say(f"\ndemo finished in {time.monotonic() - start:.0f} s; the service is stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
