"""Faithfulness of the served fast path to the reference path (issue 4), on packed artifacts.

For each artifact directory, two models decode the same validation documents greedily:

- the reference path: `compression.artifact.load`, the model exactly as trained (fake-quantized);
- the served path: the directory tarred into a local blob store and loaded by the inference app's
  own `serving.loading.load_model` on the engine `--engine` names (auto: the app's choice, by
  default CTranslate2 int8; int8: our own int8 form), so the checksum, the engine, the source
  limit and the generation defaults are the app's.

Both go through the app's `serving.generation` (`encode` with truncation, `run_batch`) with the
same batches and the same resolved parameters, so the only difference is the model form. Per
artifact: the share of identical texts, ROUGE-Lsum of each path against the reference summaries,
their difference with its paired bootstrap interval, pass/fail against issue 4 (>= 95% identical,
|delta ROUGE-Lsum| <= 0.3), and the runtime form chosen. Writes a JSON file and a markdown table next to it.

    python -m bench.faithfulness /tmp/q3/artifacts/* --validation /tmp/q3/val300.jsonl.gz --max-val 150
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tarfile
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from compression.artifact import QUANTIZATION_FILE, load
from compression.bootstrap import paired_difference
from compression.data import read_records
from compression.evaluate import rouge
from compression.runtime import Form
from serving.engines import Engine
from serving.generation import GenerationItem, batch_key, encode, run_batch
from serving.loading import EngineSettings, LoadedModel, ModelRecord, load_model
from serving.schemas import GenerateParams, GenerationParameters, resolve_params
from store.blobs import LocalBlobStore

REPO = Path(__file__).resolve().parent.parent
MIN_IDENTICAL_PERCENT = 95.0  # issue 4: identical greedy text on at least 95% of the sample
MAX_ROUGE_LSUM_DELTA = 0.3  # issue 4: ROUGE-Lsum within 0.3 points of the reference path


@dataclass(frozen=True)
class Settings:
    validation: Path
    max_val: int = 150
    max_new_tokens: int = 32
    min_new_tokens: int | None = None  # for untrained models, which would stop at once
    # 1: each document decoded alone, as a single request is served. With more, both paths get
    # the same batches (a per-tensor activation range spans the whole padded batch).
    batch_size: int = 1
    device: str = "cpu"
    form: Form = "auto"
    engine: Engine = "auto"
    threads: int = 1


@dataclass(frozen=True)
class Mismatch:
    index: int
    reference: str
    fast: str


@dataclass(frozen=True)
class Agreement:
    """How far the served path's texts agree with the reference path's."""

    records: int
    identical: int
    identical_percent: float
    distinct_reference_texts: int  # a model that writes one text for every input proves little
    rouge_reference: dict[str, float]
    rouge_fast: dict[str, float]
    rouge_lsum_delta: float  # fast - reference
    rouge_lsum_delta_interval: tuple[float, float]  # its paired bootstrap interval (90%)
    identical_ok: bool
    rouge_ok: bool
    passed: bool
    mismatches: list[Mismatch]


@dataclass(frozen=True)
class ArtifactResult:
    name: str
    path: str
    agreement: Agreement
    runtime: dict[str, Any]  # the served form's RuntimeInfo
    params: dict[str, Any]  # the resolved generate parameters, the same on both paths
    max_source_length: int
    truncated_inputs: int
    seconds_reference: float
    seconds_fast: float
    # The reference path in float64 against itself in float32: how often rounding alone changes
    # a greedy text. Products of codes are exact in both, but the float operations around them
    # (layer norm, softmax, scaling) round differently, and a code flips by a whole step near a
    # rounding boundary. A form that rounds as the reference does (the CPU int8 form) agrees on
    # every text; one that does not (fp16) can be expected near this figure at best.
    noise_floor_percent: float


def served_model(artifact: Path, work: Path, s: Settings) -> LoadedModel:
    """The artifact loaded the way the inference app loads a stored model row."""
    tar_path = work / f"{artifact.name}.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(artifact, arcname="model")
    blobs = LocalBlobStore(work / "blobs")
    blob = blobs.put_file(f"bench/{artifact.name}.tar", tar_path)
    record = ModelRecord(id=artifact.name, tenant_id="bench", source="compression", task="summarization",
                         blob_key=blob.key, sha256=blob.sha256)
    engines = EngineSettings(s.engine, streams=1, cores=s.threads)
    return load_model(record, blobs, work / "cache" / "serving", device=s.device, form=s.form,
                      engines=engines)


def reference_model(artifact: Path, served: LoadedModel) -> LoadedModel:
    """The fake-quantized model as trained, in the served model's place (same tokenizer, limits
    and defaults), so that `run_batch` decodes both alike."""
    model, _ = load(artifact, device=served.runtime.device)
    runtime = dataclasses.replace(served.runtime, form="fake_quantized", int8_layers=0,
                                  kernel="artifact.load (fp32, fake-quantized)")
    return dataclasses.replace(served, model=model, runtime=runtime, ct2=None)


def generate_params(loaded: LoadedModel, s: Settings) -> GenerateParams:
    """Greedy with fixed bounds on new tokens; the rest from the model's defaults, as a request
    that sets only these parameters gets them."""
    requested = GenerationParameters(num_beams=1, max_new_tokens=s.max_new_tokens,
                                     min_new_tokens=s.min_new_tokens)
    return resolve_params(requested, loaded.generation_defaults)


def decode(loaded: LoadedModel, inputs: list[tuple[int, ...]], params: GenerateParams,
           batch_size: int) -> tuple[list[str], float]:
    """Texts generated for `inputs` by the app's batch runner, and the seconds it took."""
    started = time.perf_counter()
    key = batch_key(loaded, params)
    texts: list[str] = []
    for start in range(0, len(inputs), batch_size):
        items = [GenerationItem(loaded, params, ids) for ids in inputs[start:start + batch_size]]
        texts += [generated.text for generated in run_batch(key, items)]
    return texts, time.perf_counter() - started


def truncated_count(loaded: LoadedModel, documents: list[str]) -> int:
    lengths = [len(ids) for ids in loaded.tokenizer(documents, truncation=False)["input_ids"]]
    return sum(length > loaded.max_source_length for length in lengths)


def compare(reference: list[str], fast: list[str], summaries: list[str]) -> Agreement:
    mismatches = [Mismatch(i, ref, got) for i, (ref, got) in enumerate(zip(reference, fast, strict=True))
                  if ref != got]
    identical = len(reference) - len(mismatches)
    percent = 100.0 * identical / len(reference)
    rouge_reference, rouge_fast = rouge(reference, summaries), rouge(fast, summaries)
    delta = rouge_fast["rougeLsum"] - rouge_reference["rougeLsum"]
    interval = paired_difference("summarization", fast, reference, summaries)
    identical_ok = percent >= MIN_IDENTICAL_PERCENT
    rouge_ok = abs(delta) <= MAX_ROUGE_LSUM_DELTA
    return Agreement(
        records=len(reference), identical=identical, identical_percent=percent,
        distinct_reference_texts=len(set(reference)), rouge_reference=rouge_reference,
        rouge_fast=rouge_fast, rouge_lsum_delta=delta,
        rouge_lsum_delta_interval=(interval.low, interval.high), identical_ok=identical_ok, rouge_ok=rouge_ok,
        passed=identical_ok and rouge_ok, mismatches=mismatches,
    )


def run_artifact(artifact: Path, documents: list[str], summaries: list[str], s: Settings) -> ArtifactResult:
    with tempfile.TemporaryDirectory(prefix="faithfulness-") as work:
        served = served_model(artifact, Path(work), s)
    reference = reference_model(artifact, served)
    params = generate_params(served, s)
    inputs = encode(served, documents, truncate=True)
    reference_texts, reference_seconds = decode(reference, inputs, params, s.batch_size)
    fast_texts, fast_seconds = decode(served, inputs, params, s.batch_size)
    reference.torch_model.double()
    float64_texts, _ = decode(reference, inputs, params, s.batch_size)
    return ArtifactResult(
        name=artifact.name, path=str(artifact), agreement=compare(reference_texts, fast_texts, summaries),
        runtime=served.runtime.to_dict(), params=asdict(params), max_source_length=served.max_source_length,
        truncated_inputs=truncated_count(served, documents), seconds_reference=reference_seconds,
        seconds_fast=fast_seconds, noise_floor_percent=identical_percent(reference_texts, float64_texts),
    )


def identical_percent(a: list[str], b: list[str]) -> float:
    return 100.0 * sum(x == y for x, y in zip(a, b, strict=True)) / len(a)


def verdict(a: Agreement) -> str:
    if a.passed:
        return "PASS"
    failed = [name for name, ok in (("identical", a.identical_ok), ("rouge", a.rouge_ok)) if not ok]
    return f"FAIL ({', '.join(failed)})"


def table_rows(results: list[ArtifactResult]) -> list[list[str]]:
    rows = [["artifact", "n", "identical %", "fp64 ref %", "distinct", "R-Lsum ref", "R-Lsum fast", "delta",
             "90% interval", "pass", "form (int8/float linears)", "s ref/fast"]]
    for r in results:
        a, rt = r.agreement, r.runtime
        rows.append([
            r.name, str(a.records), f"{a.identical_percent:.1f}", f"{r.noise_floor_percent:.1f}",
            str(a.distinct_reference_texts),
            f"{a.rouge_reference['rougeLsum']:.2f}", f"{a.rouge_fast['rougeLsum']:.2f}",
            f"{a.rouge_lsum_delta:+.2f}", "{:+.2f} to {:+.2f}".format(*a.rouge_lsum_delta_interval),
            verdict(a),
            f"{rt['form']} ({rt['int8_layers']}/{rt['float_layers']})",
            f"{r.seconds_reference:.1f}/{r.seconds_fast:.1f}",
        ])
    return rows


def print_table(results: list[ArtifactResult]) -> None:
    rows = table_rows(results)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def markdown(results: list[ArtifactResult], s: Settings, command: str) -> str:
    rows = table_rows(results)
    lines = ["# Served fast path vs reference path (issue 4)", "",
             f"Command: `{command}`", "",
             f"Greedy decoding, new tokens {s.min_new_tokens or 0}-{s.max_new_tokens}, "
             f"batch size {s.batch_size}, {s.threads} thread(s), device {s.device}, engine {s.engine}, "
             f"form {s.form}; "
             f"validation {s.validation} "
             f"(first {s.max_val} records). Thresholds: identical >= {MIN_IDENTICAL_PERCENT:g}%, "
             f"|delta ROUGE-Lsum| <= {MAX_ROUGE_LSUM_DELTA:g}. `distinct`: different reference-path "
             "texts in the sample. `fp64 ref %`: the reference path computed in float64 against itself "
             "in float32, identical texts: the agreement that a form rounding differently from the "
             "reference could expect (the CPU int8 form rounds as it does).", "",
             "| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    lines += ["| " + " | ".join(row) + " |" for row in rows[1:]]
    uninformative = [r.name for r in results
                     if r.agreement.distinct_reference_texts * 4 < r.agreement.records]
    if uninformative:
        lines += ["", f"The reference path of {', '.join(uninformative)} writes fewer distinct texts than a "
                  "quarter of the inputs: agreement there says little about faithfulness."]
    return "\n".join(lines) + "\n"


def write_outputs(results: list[ArtifactResult], s: Settings, out: Path, command: str) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"command": command, "settings": {k: str(v) if isinstance(v, Path) else v
                                               for k, v in asdict(s).items()},
              "thresholds": {"min_identical_percent": MIN_IDENTICAL_PERCENT,
                             "max_rouge_lsum_delta": MAX_ROUGE_LSUM_DELTA},
              "torch": torch.__version__, "artifacts": [asdict(r) for r in results]}
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(markdown(results, s, command), encoding="utf-8")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifacts", type=Path, nargs="+", help="packed artifact directories")
    p.add_argument("--validation", type=Path, required=True, help="jsonl[.gz] with document/summary")
    p.add_argument("--max-val", type=int, default=150, help="validation records decoded (the first N)")
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--min-new-tokens", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto (as the app's setting)")
    p.add_argument("--form", choices=["auto", "int8", "fp16", "reference"], default="auto",
                   help="the served form (auto: the app's choice)")
    p.add_argument("--engine", choices=["auto", "ctranslate2", "int8", "reference"], default="auto",
                   help="the served engine (auto: the app's choice)")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "faithfulness.json")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> list[ArtifactResult]:
    args = parse_args(argv)
    s = Settings(validation=args.validation, max_val=args.max_val, max_new_tokens=args.max_new_tokens,
                 min_new_tokens=args.min_new_tokens, batch_size=args.batch_size, device=args.device,
                 form=args.form, engine=args.engine, threads=args.threads)
    torch.set_num_threads(s.threads)
    records = read_records(s.validation, "document", "summary", param="--validation")[: s.max_val]
    documents, summaries = [r.source for r in records], [r.target for r in records]
    command = " ".join(["python -m bench.faithfulness", *(argv if argv is not None else sys.argv[1:])])
    results = []
    for artifact in args.artifacts:
        if not (artifact / QUANTIZATION_FILE).is_file():  # a plain HF model has no reference path to match
            print(f"{artifact}: skipped, no {QUANTIZATION_FILE} (not a packed artifact)")
            continue
        print(f"{artifact.name}: {len(documents)} records ...", flush=True)
        results.append(run_artifact(artifact, documents, summaries, s))
        write_outputs(results, s, args.out, command)  # a partial table survives an interruption
    print_table(results)
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return results


if __name__ == "__main__":
    main()
