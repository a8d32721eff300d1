"""`make demo`: a real compression through the service, from a teacher of our own to a table.

Starts `dqbart serve` (embedded: SQLite, filesystem broker, one worker) on a free local port,
creates a key, uploads the bundled debian-desc sample, trains the teacher from scratch as a job
(or re-uploads the one cached by an earlier run), runs two compression jobs with a live
progress bar, downloads and checks each artifact, summarizes a few validation documents, times
every model through the summarize endpoint, prints a table, and stops everything it started,
also on Ctrl-C or error.
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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from demo.cache import TeacherCache, teacher_key
from demo.client import ApiError, DqbartClient, extract_tar, tar_directory
from demo.plan import DEMO_PLAN, QUICK_PLAN, DemoPlan, StudentPlan
from demo.progress_view import follow_job
from demo.service import EmbeddedService
from demo.table import Row, Served, render, student_row, teacher_row
from demo.teacher import build_teacher

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DIR = REPO / "data" / "debian-desc-sample"
# Requests timed per model: enough for a steady median, few enough for the quick demo.
TIMED_DOCUMENTS = 8


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


def run_job(client: DqbartClient, recipe: dict[str, Any], title: str) -> dict[str, Any]:
    job = client.create_job(recipe)
    say(f"submitted {title}: {job['id']}")
    try:
        job = follow_job(client, job["id"], title)
    except BaseException:
        client.cancel(job["id"])  # leave nothing running behind an interrupted demo
        raise
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise JobFailed(f"{title} ended {job['status']}: {error.get('code')}: {error.get('message')}")
    return job


def obtain_teacher(client: DqbartClient, plan: DemoPlan, dataset_ids: dict[str, str], work: Path,
                   data_files: list[Path]) -> str:
    """The trained teacher's model id: from the user cache when possible, else trained by a job."""
    cache = TeacherCache()
    key = teacher_key(plan.teacher_spec(), data_files)
    cached = cache.lookup(key)
    if cached is not None:
        say(f"reusing the trained teacher cached at {cached}")
        return str(client.upload_model(cached, name="demo-teacher")["id"])
    say("building an untrained teacher (BPE tokenizer trained on the sample, random BART weights)")
    initial = build_teacher(work / "teacher-init", plan.teacher_shape)
    archive = tar_directory(initial, work / "teacher-init.tar")
    initial_model = client.upload_model(archive, name="demo-teacher-init")
    job = run_job(client, plan.teacher_recipe(initial_model["id"], dataset_ids), "teacher training")
    trained_id = str(job["result_model"])
    archive = client.download(trained_id, work / "teacher.tar")
    report = json.loads((extract_tar(archive.path, work / "teacher") / "report.json").read_text())
    say_input_check(report.get("input_check"))
    stored = cache.store(key, archive.path, {"model_sha256": archive.sha256, "plan": plan.teacher_spec()})
    say(f"trained teacher cached at {stored}")
    return trained_id


def say_input_check(check: dict[str, float] | None) -> None:
    """Whether the teacher reads its input: a teacher that ignores it writes one text for all."""
    if check:
        say(f"teacher input check: validation loss {check['matched_loss']:.3f} with the right documents, "
            f"{check['shuffled_loss']:.3f} with shuffled ones (gap {check['gap']:.3f} nats; "
            "near 0 means it ignores its input)")


def compress_student(client: DqbartClient, plan: DemoPlan, student: StudentPlan, teacher_id: str,
                     dataset_ids: dict[str, str], work: Path) -> tuple[str, dict[str, Any]]:
    job = run_job(client, plan.student_recipe(student, teacher_id, dataset_ids), student.name)
    model_id = str(job["result_model"])
    download = client.download(model_id, work / f"{student.name}.tar")
    say(f"downloaded {download.path.name}: {download.bytes:,} bytes, "
        f"sha256 {download.sha256[:16]}... matches X-Checksum-SHA256")
    report = json.loads((extract_tar(download.path, work / student.name) / "report.json").read_text())
    return model_id, report


def show_summaries(client: DqbartClient, models: dict[str, str], docs: list[dict[str, str]],
                   examples: list[dict[str, str]]) -> None:
    """Summaries next to the references, with each model's default settings.

    A model the endpoint does not serve is shown from `examples`, the outputs the worker wrote
    into report.json for the first validation records."""
    inputs = [d["document"] for d in docs]
    texts: dict[str, list[str]] = {}
    for name, model_id in models.items():
        try:
            texts[name] = client.summarize(model_id, inputs).texts
        except ApiError as exc:
            say(f"({name} is not served by the summarize endpoint (HTTP {exc.status}); "
                "its outputs below come from report.json)")
            by_source = {e["source"]: e.get(name, "") for e in examples}
            texts[f"{name} (report)"] = [by_source.get(text, "-") for text in inputs]
    for index, doc in enumerate(docs):
        text = doc["document"]
        say(f"\n--- document {index + 1}: {text[:200]}{'...' if len(text) > 200 else ''}")
        say(f"    {'reference':<17}: {doc['summary']}")
        for name, outputs in texts.items():
            say(f"    {name:<17}: {outputs[index]}")


def timing_inputs(plan: DemoPlan, validation: Path) -> tuple[list[str], dict[str, Any]]:
    """Documents and settings that time every model on the same work: each document cut to
    words that fit every model's source limit (the teacher's is longer than its students'), the
    plan's beams, and as many new tokens for every model (a model that stops early is not faster)."""
    words = plan.max_source_length // 3  # BPE pieces per word stay under 3 on the sample
    documents = [" ".join(d["document"].split()[:words]) for d in read_jsonl(validation, TIMED_DOCUMENTS)]
    tokens = plan.max_target_length
    return documents, {"num_beams": plan.evaluation["num_beams"], "min_new_tokens": tokens,
                       "max_new_tokens": tokens}


def time_served(client: DqbartClient, model_id: str, documents: list[str],
                parameters: dict[str, Any]) -> Served | None:
    """The model as a user gets it from the API: one document a request, one request at a time,
    after a warm-up (the first call loads the model); the median request time, and the runtime
    form the service chose. None where the endpoint does not serve the model."""
    try:
        client.summarize(model_id, documents[:1], parameters)
    except ApiError:
        return None
    seconds = [client.summarize(model_id, [document], parameters).seconds for document in documents]
    form = client.http.get(f"/v1/models/{model_id}/info").json()["runtime"]["form"]
    return Served(form, 1000.0 * statistics.median(seconds))


def demo(plan: DemoPlan, work: Path, service: EmbeddedService) -> list[Row]:
    say(f"starting the service (embedded, data in {service.data_dir}) ...")
    service.start()
    say(f"service up at {service.base_url}")
    client = DqbartClient(service.base_url, service.create_key("demo"))
    try:
        train = gunzip_to(SAMPLE_DIR / "train.jsonl.gz", work / "train.jsonl", plan.train_rows)
        validation = gunzip_to(SAMPLE_DIR / "validation.jsonl.gz", work / "validation.jsonl")
        dataset_ids = {"train": client.upload_dataset(train, "debian-desc-train")["id"],
                       "validation": client.upload_dataset(validation, "debian-desc-validation")["id"]}
        say(f"uploaded datasets: {dataset_ids}")
        teacher_id = obtain_teacher(client, plan, dataset_ids, work, [train, validation])
        reports = {}
        models = {"teacher": teacher_id}
        for student in plan.students:
            models[student.name], reports[student.name] = compress_student(
                client, plan, student, teacher_id, dataset_ids, work)
        first = next(iter(reports.values()))
        docs = read_jsonl(validation, plan.shown_documents)
        show_summaries(client, models, docs, first.get("examples") or [])
        documents, parameters = timing_inputs(plan, validation)
        say(f"\ntiming each model through the API: {len(documents)} documents, one a request, {parameters}")
        served = {name: time_served(client, model_id, documents, parameters)
                  for name, model_id in models.items()}
    finally:
        client.close()
    return [teacher_row(first, served["teacher"]),
            *(student_row(name, report, served[name]) for name, report in reports.items())]


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Compress a BART teacher through the service, end to end.")
    parser.add_argument("--quick", action="store_true",
                        help="tiny teacher and a few steps (tests, smoke runs)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the service's DATA_DIR (default: a temporary folder, removed afterwards)")
    args = parser.parse_args(argv)
    plan = QUICK_PLAN if args.quick else DEMO_PLAN
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dqbart-demo-") as tmp, terminate_as_interrupt():
        work = Path(tmp)
        data_dir = args.data_dir or work / "service"
        service = EmbeddedService(data_dir=data_dir, log_path=work / "service.log")
        try:
            rows = demo(plan, work, service)
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
    say("\n" + render(rows))
    say(f"\ndemo finished in {time.monotonic() - start:.0f} s; the service is stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
