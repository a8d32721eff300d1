"""Serving benchmark: what a user gets without us against our served compressed model.

On the same inputs in one run, for each teacher shape, four sides:
- the teacher in fp32 with plain transformers (`generate`, batched as well as a user could:
  batch size = concurrency), in its own process;
- the teacher converted to CTranslate2 and run in int8 (what a user would do without us:
  `compression.ct2.convert` of a plain teacher runs CTranslate2's own loader and quantizer),
  `translate_batch` with batch size = concurrency, in its own process;
- a 6-3, 8-8-8 PTQ student (build_student + quantize_model + pack, untrained: the output length
  is fixed, so timing does not depend on training) served by `serving.app` under uvicorn on
  127.0.0.1 and queried over HTTP with the given concurrency, once per engine
  (DQB_SERVING_ENGINE=ctranslate2, the default, and int8, our own form).
Each side gets `--cores` cores: that many torch (or CTranslate2 intra-op) threads, the servers
as many inference streams (their default on a CPU host), one each. Each scenario runs on every
side in turn, so all sides see the same machine load. Greedy decoding with min_new_tokens =
max_new_tokens = 32. Scenarios: natural validation inputs and fixed input lengths (64/256/512
tokens), each at concurrency 1 and 16. Reports p50/p95 latency, throughput (inputs/s), each
side's peak memory, the CPU (lscpu) and the load average; prints a table, the targets met or
missed, and writes JSON.

    python -m bench.serve --quick                  # smoke run, tiny shape
    python -m bench.serve --shapes base --cores 1  # bart-base-shaped teacher, one core a side
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "debian-desc-sample"
NEW_TOKENS = 32
PARAMETERS = {"num_beams": 1, "min_new_tokens": NEW_TOKENS, "max_new_tokens": NEW_TOKENS, "truncation": True}
MAX_SOURCE = 512
FP32_TEACHER = "teacher fp32 (transformers)"
CT2_TEACHER = "teacher int8 (CTranslate2)"
# The served student's own CTranslate2 model, decoded in-process as the teachers are: the engine
# alone, so that the gap to the served row is what the serving path (HTTP, batcher) costs.
CT2_STUDENT = "student int8 (CTranslate2, in-process)"
SERVED = {"ctranslate2": "student served (ctranslate2)", "int8": "student served (int8)"}
# Issue 18's targets for the served student (default engine) on the bart-base-shaped teacher:
# (what, scenario, baseline side, measure, at least).
TARGETS = (("c=16 throughput", "natural c=16", CT2_TEACHER, "throughput", 1.5),
           ("c=16 throughput", "natural c=16", FP32_TEACHER, "throughput", 4.0),
           ("c=1 p50", "natural c=1", CT2_TEACHER, "p50", 1.7))
# The CPU's vector extensions: they decide which int8 kernels run.
_VECTOR_FLAGS = ("avx", "fma", "f16c", "amx", "vnni")


@dataclass(frozen=True)
class Shape:
    name: str
    d_model: int
    ffn: int
    heads: int
    vocab: int


@dataclass(frozen=True)
class Scenario:
    name: str
    concurrency: int
    texts: list[str]


@dataclass(frozen=True)
class Models:
    teacher: Path  # Hugging Face folder
    teacher_ct2: Path  # CTranslate2 int8, quantized by CTranslate2
    student: Path  # packed artifact
    student_ct2: Path  # CTranslate2 int8, converted from the artifact with its codes kept


SHAPES = {
    "base": Shape("bart-base-shaped 6-6 d768", 768, 3072, 12, 8000),
    "small": Shape("small 6-6 d256", 256, 1024, 4, 8000),
    "tiny": Shape("tiny 6-6 d128", 128, 512, 4, 2000),
}


# ---------------------------------------------------------------- models and inputs

def build_models(shape: Shape, root: Path) -> Models:
    """A random teacher of the shape (with a tokenizer trained on the sample), its CTranslate2 int8
    form, and its packed student."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from compression.artifact import pack
    from compression.ct2 import convert
    from compression.recipe import QuantizationSpec, Recipe, StudentSpec
    from compression.student import build_student
    from compression.swap import quantize_model
    from compression.tokenizer import train_bart_tokenizer

    tokenizer = train_bart_tokenizer(_sample_texts(), vocab_size=shape.vocab)
    config = BartConfig(vocab_size=len(tokenizer), d_model=shape.d_model, encoder_layers=6, decoder_layers=6,
                        encoder_attention_heads=shape.heads, decoder_attention_heads=shape.heads,
                        encoder_ffn_dim=shape.ffn, decoder_ffn_dim=shape.ffn, max_position_embeddings=1024,
                        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
                        forced_eos_token_id=2)
    torch.manual_seed(0)
    teacher = BartForConditionalGeneration(config).eval()
    models = Models(root / "teacher", root / "teacher-ct2-int8", root / "student", root / "student-ct2-int8")
    teacher.save_pretrained(models.teacher)
    tokenizer.save_pretrained(models.teacher)
    convert(models.teacher, models.teacher_ct2, quantization="int8")
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=6, decoder_layers=3))
    spec = QuantizationSpec(weight_bits=8, embedding_bits=8, activation_bits=8)
    quantize_model(student, spec)
    recipe = Recipe.from_dict({"teacher": {"path": str(models.teacher)}, "dataset": {"train": "unused.jsonl"},
                               "quantization": spec.model_dump()})
    pack(student.eval(), tokenizer, models.student, spec=spec, layer_map=layer_map, recipe=recipe.to_dict(),
         teacher_identity={"path": str(models.teacher)})
    convert(models.student, models.student_ct2, quantization="int8")
    return models


def _sample_texts() -> list[str]:
    with gzip.open(SAMPLE / "train.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    return [text for r in rows for text in (r["document"], r["summary"])]


def validation_documents() -> list[str]:
    with gzip.open(SAMPLE / "validation.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line)["document"] for line in f]


def texts_of_length(tokenizer: Any, documents: list[str], tokens: int, count: int) -> list[str]:
    """`count` texts of about `tokens` tokens each, cut from consecutive validation documents."""
    stream = [i for doc in documents for i in tokenizer(doc, add_special_tokens=False)["input_ids"]]
    body = tokens - 2  # <s> and </s>
    return [tokenizer.decode(stream[k * body:(k + 1) * body]) for k in range(count)]


def scenarios(teacher_dir: Path, quick: bool) -> list[Scenario]:
    """Natural inputs and each fixed length, at concurrency 1 and 16."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    documents = validation_documents()
    n1, n16, fixed1, fixed16 = (4, 16, 4, 16) if quick else (12, 48, 6, 16)
    lengths = (64,) if quick else (64, 256, 512)
    result = [Scenario("natural c=1", 1, documents[:n1]), Scenario("natural c=16", 16, documents[:n16])]
    for length in lengths:
        texts = texts_of_length(tokenizer, documents, length, fixed16)
        result += [Scenario(f"{length} tok c=1", 1, texts[:fixed1]),
                   Scenario(f"{length} tok c=16", 16, texts)]
    return result


# ---------------------------------------------------------------- the teacher sides (own processes)

Decode = Callable[[list[str]], None]


def worker(backend: str, model_dir: Path, threads: int) -> None:
    """Serve scenarios from stdin (one JSON line each) through the teacher on `backend`, in batches
    of the scenario's concurrency; answer each with one JSON line, and the memory figures at the end."""
    decode = _transformers_decoder(model_dir, threads) if backend == "transformers" \
        else _ctranslate2_decoder(model_dir, threads)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        scenario = json.loads(line)
        texts, size = scenario["texts"], scenario["concurrency"]
        decode(texts[:size])  # warm-up
        latencies, started = [], time.perf_counter()
        for start in range(0, len(texts), size):
            t0 = time.perf_counter()
            decode(texts[start:start + size])
            latencies += [time.perf_counter() - t0] * len(texts[start:start + size])
        print(json.dumps({"latencies": latencies, "wall": time.perf_counter() - started}), flush=True)
    print(json.dumps(_memory(os.getpid())), flush=True)


def _transformers_decoder(model_dir: Path, threads: int) -> Decode:
    import torch
    from transformers import AutoTokenizer, BartForConditionalGeneration

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = BartForConditionalGeneration.from_pretrained(model_dir).eval()

    def decode(texts: list[str]) -> None:
        batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=MAX_SOURCE)
        with torch.inference_mode():
            model.generate(**batch, num_beams=1, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS)

    return decode


def _ctranslate2_decoder(model_dir: Path, threads: int) -> Decode:
    """CTranslate2's int8 compute on one batch at a time, on all of the side's threads: the best
    a user without a batching server gets from it for a batch of that size."""
    import ctranslate2
    from transformers import AutoTokenizer

    from compression.ct2 import INFO_FILE, translate

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    translator = ctranslate2.Translator(str(model_dir), device="cpu", compute_type="int8", inter_threads=1,
                                        intra_threads=threads)
    decoding = json.loads((model_dir / INFO_FILE).read_text(encoding="utf-8"))["decoding"]

    def decode(texts: list[str]) -> None:
        ids = tokenizer(texts, truncation=True, max_length=MAX_SOURCE)["input_ids"]
        translate(translator, tokenizer, ids, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                  target_prefix=decoding["target_prefix"], forced_eos=decoding["forced_eos"])

    return decode


class WorkerSide:
    """A teacher in its own process, so that its memory and threads are its own."""

    def __init__(self, name: str, backend: str, model_dir: Path, threads: int) -> None:
        self.name = name
        command = [sys.executable, "-m", "bench.serve", "--worker", backend, str(model_dir), str(threads)]
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)

    def ready(self) -> dict[str, Any]:
        self._read()
        return {}

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"{self.name}: the worker process ended early")

    def run(self, scenario: Scenario) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(asdict(scenario)) + "\n")
        self.process.stdin.flush()
        return self._read()

    def finish(self) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.close()
        memory = self._read()
        self.process.wait(timeout=60)
        return memory

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)


# ---------------------------------------------------------------- the served sides (uvicorn + HTTP)

def store_student(student_dir: Path, data_dir: Path) -> tuple[str, str]:
    """A service database with one tenant, its key, and the student as a compressed model row."""
    import tarfile

    from store import catalog, tenants
    from store.blobs import LocalBlobStore
    from store.db import session_scope, upgrade_database
    from store.ids import new_id
    from store.settings import Settings

    settings = Settings(DATA_DIR=data_dir)
    upgrade_database(settings)
    tar_path = data_dir / "student.tar"
    with tarfile.open(tar_path, "w") as tar:
        tar.add(student_dir, arcname="model")
    with session_scope(settings) as session:
        tenant = tenants.create_tenant(session, name="bench")
        key = tenants.create_key(session, tenant_id=tenant.id)[1]
        model_id = new_id("mdl")
        blob = LocalBlobStore(settings.artifact_dir).put_file(f"{tenant.id}/models/{model_id}.tar", tar_path)
        catalog.create_model(session, model_id=model_id, tenant_id=tenant.id, name="student-6-3-888",
                             source="compression", architecture="BartForConditionalGeneration",
                             layers={"encoder": 6, "decoder": 3}, parameters=0, blob=blob,
                             task="summarization")
    return model_id, key


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServedSide:
    """The student behind `serving.app` on one engine, queried over HTTP."""

    def __init__(self, engine: str, data_dir: Path, model_id: str, key: str, cores: int) -> None:
        self.name = SERVED[engine]
        self.model_id, self.key = model_id, key
        port = _free_port()
        self.base = f"http://127.0.0.1:{port}"
        env = {**os.environ, "DQB_DATA_DIR": str(data_dir), "DQB_SERVING_MAX_BATCH_SIZE": "16",
               "DQB_SERVING_STREAMS": str(cores), "OMP_NUM_THREADS": str(cores), "DQB_LOG_LEVEL": "WARNING",
               "DQB_SERVING_ENGINE": engine}
        command = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host",
                   "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        self.process = subprocess.Popen(command, cwd=REPO, env=env)

    def ready(self) -> dict[str, Any]:
        """Waits for health and loads the model; returns its /info."""
        asyncio.run(_wait_healthy(self.base, self.process))
        return _info(self.base, self.model_id, self.key)

    def run(self, scenario: Scenario) -> dict[str, Any]:
        return asyncio.run(_drive(self.base, self.model_id, self.key, scenario))

    def finish(self) -> dict[str, float]:
        return _memory(self.process.pid)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


async def _wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    import httpx

    async with httpx.AsyncClient() as client:
        for _ in range(600):
            if server.poll() is not None:
                raise RuntimeError("the inference server exited during start-up")
            try:
                if (await client.get(f"{base}/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
    raise RuntimeError("the inference server did not become healthy")


async def _drive(base: str, model_id: str, key: str, scenario: Scenario) -> dict[str, Any]:
    """`concurrency` clients, each sending the next input as soon as its last answer came."""
    import httpx

    url = f"{base}/v1/models/{model_id}/summarize"
    headers = {"Authorization": f"Bearer {key}"}
    pending = list(scenario.texts)
    latencies: list[float] = []
    server_batches: list[int] = []
    queue_ms: list[float] = []  # before its batch started: waiting for company or for a stream
    inference_ms: list[float] = []  # its batch in the engine: the rest of the latency is the serving path

    async def client_loop(client: httpx.AsyncClient) -> None:
        while pending:
            text = pending.pop(0)
            t0 = time.perf_counter()
            body = {"inputs": text, "parameters": PARAMETERS}
            response = await client.post(url, headers=headers, json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - t0)
            server_batches.append(int(response.headers["X-Batch-Size"]))
            queue_ms.append(float(response.headers["X-Queue-Time-Ms"]))
            inference_ms.append(float(response.headers["X-Inference-Time-Ms"]))

    async with httpx.AsyncClient(timeout=600) as client:
        warm = scenario.texts[: scenario.concurrency]
        await asyncio.gather(*(client.post(url, headers=headers, json={"inputs": t, "parameters": PARAMETERS})
                               for t in warm))
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(scenario.concurrency)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "mean_batch": statistics.fmean(server_batches),
            "queue_ms_p50": statistics.median(queue_ms), "inference_ms_p50": statistics.median(inference_ms)}


def _info(base: str, model_id: str, key: str) -> dict[str, Any]:
    import httpx

    response = httpx.get(f"{base}/v1/models/{model_id}/info", headers={"Authorization": f"Bearer {key}"},
                         timeout=600)
    response.raise_for_status()
    return response.json()


def _memory(pid: int) -> dict[str, float]:
    """Peak and current resident memory of a process, MiB (Linux /proc)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            fields[name] = int(value.split()[0]) / 1024
    return {"peak_mib": round(fields.get("VmHWM", 0.0), 1), "rss_mib": round(fields.get("VmRSS", 0.0), 1)}


# ---------------------------------------------------------------- one run of every side

Side = WorkerSide | ServedSide


def run_sides(models: Models, plan: list[Scenario], cores: int, work: Path) -> dict[str, Any]:
    """Each scenario on every side in turn: all sides see the same load. Per side: its raw runs,
    peak memory and (served) /info."""
    data_dir = work / "service"
    data_dir.mkdir()
    model_id, key = store_student(models.student, data_dir)
    sides: list[Side] = [WorkerSide(FP32_TEACHER, "transformers", models.teacher, cores),
                         WorkerSide(CT2_TEACHER, "ctranslate2", models.teacher_ct2, cores),
                         WorkerSide(CT2_STUDENT, "ctranslate2", models.student_ct2, cores),
                         *(ServedSide(engine, data_dir, model_id, key, cores) for engine in SERVED)]
    try:
        # One after another: both servers would otherwise unpack the one artifact at once.
        info = {side.name: side.ready() for side in sides}
        runs: dict[str, dict[str, Any]] = {side.name: {} for side in sides}
        for scenario in plan:
            for side in sides:
                runs[side.name][scenario.name] = side.run(scenario)
        return {side.name: {"runs": runs[side.name], "memory": side.finish(), "info": info[side.name]}
                for side in sides}
    finally:
        for side in sides:
            side.stop()


# ---------------------------------------------------------------- report

def summarize(raw: dict[str, Any]) -> dict[str, float]:
    latencies = sorted(raw["latencies"])
    p95_index = min(len(latencies) - 1, max(0, round(0.95 * len(latencies)) - 1))
    summary = {"p50_s": round(statistics.median(latencies), 4), "p95_s": round(latencies[p95_index], 4),
               "throughput": round(len(latencies) / raw["wall"], 3)}
    if "mean_batch" in raw:
        summary |= {"mean_batch": round(raw["mean_batch"], 2), "queue_ms_p50": round(raw["queue_ms_p50"], 1),
                    "inference_ms_p50": round(raw["inference_ms_p50"], 1)}
    return summary


def ratios(served: dict[str, float], baseline: dict[str, float]) -> dict[str, float]:
    """How many times better the served side is: lower p50, higher throughput."""
    return {"p50": round(baseline["p50_s"] / served["p50_s"], 2),
            "throughput": round(served["throughput"] / baseline["throughput"], 2)}


def rows_of(sides: dict[str, Any], plan: list[Scenario]) -> list[dict[str, Any]]:
    rows = []
    for scenario in plan:
        results = {name: summarize(side["runs"][scenario.name]) for name, side in sides.items()}
        rows.append({"scenario": scenario.name, "concurrency": scenario.concurrency,
                     "inputs": len(scenario.texts), "results": results,
                     "served_vs": {served: {baseline: ratios(results[served], results[baseline])
                                            for baseline in (CT2_TEACHER, FP32_TEACHER, CT2_STUDENT)}
                                   for served in SERVED.values()}})
    return rows


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 18's targets for the student served on its default engine (ctranslate2)."""
    by_scenario = {row["scenario"]: row for row in rows}
    found = []
    for what, scenario, baseline, measure, least in TARGETS:
        ratio = by_scenario[scenario]["served_vs"][SERVED["ctranslate2"]][baseline][measure]
        found.append({"target": f"{what} ({scenario}) vs {baseline}", "at_least": least, "measured": ratio,
                      "met": ratio >= least})
    return found


def print_table(shape: Shape, rows: list[dict[str, Any]], sides: dict[str, Any], cores: int) -> None:
    served = SERVED["ctranslate2"]
    print(f"\n## {shape.name} (vocab {shape.vocab}), {cores} core(s) a side: p50 s / inputs per s "
          "(served: mean server batch, p50 queue time, p50 time in the engine)")
    names = list(sides)
    print("| scenario | " + " | ".join(names) + f" | {served}: p50 x / in/s x vs CTranslate2 int8 teacher "
          "| vs fp32 teacher | vs the same student in-process |")
    print("|---" * (len(names) + 4) + "|")
    for row in rows:
        cells = [_cell(row["results"][name]) for name in names]
        vs = row["served_vs"][served]
        print(f"| {row['scenario']} | " + " | ".join(cells)
              + f" | {vs[CT2_TEACHER]['p50']:.2f} / {vs[CT2_TEACHER]['throughput']:.2f} "
              f"| {vs[FP32_TEACHER]['p50']:.2f} / {vs[FP32_TEACHER]['throughput']:.2f} "
              f"| {vs[CT2_STUDENT]['p50']:.2f} / {vs[CT2_STUDENT]['throughput']:.2f} |")
    print("peak memory, MiB: " + ", ".join(f"{name} {side['memory']['peak_mib']:.0f}"
                                           for name, side in sides.items()))
    for name in SERVED.values():
        print(f"{name}: {sides[name]['info']['runtime']['kernel']}")


def _cell(result: dict[str, float]) -> str:
    cell = f"{result['p50_s']:.3f} / {result['throughput']:.2f}"
    if "mean_batch" in result:
        cell += (f" (b {result['mean_batch']:.1f}, q {result['queue_ms_p50']:.0f} ms, "
                 f"engine {result['inference_ms_p50']:.0f} ms)")
    return cell


def print_targets(found: list[dict[str, Any]]) -> None:
    for target in found:
        verdict = "met" if target["met"] else "MISSED"
        print(f"target {target['target']}: >= {target['at_least']}x, measured {target['measured']:.2f}x: "
              f"{verdict}")


def bench_shape(shape: Shape, quick: bool, cores: int) -> dict[str, Any]:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        models = build_models(shape, work)
        plan = scenarios(models.teacher, quick)
        build_s = time.perf_counter() - t0
        sides = run_sides(models, plan, cores, work)
    rows = rows_of(sides, plan)
    found = targets(rows)
    print_table(shape, rows, sides, cores)
    print_targets(found)
    return {"shape": asdict(shape), "rows": rows, "targets": found,
            "memory": {name: side["memory"] for name, side in sides.items()},
            "served": {name: _served_info(sides[name]["info"]) for name in SERVED.values()},
            "build_seconds": round(build_s, 1),
            "load_average": {"before": load_before, "after": os.getloadavg()}}


def _served_info(info: dict[str, Any]) -> dict[str, Any]:
    return {"runtime": info["runtime"], "engine": info["engine"], "streams": info["batching"]["streams"]}


def cpu_description() -> dict[str, Any]:
    """lscpu's model, counts, caches and flags, and the vector flags among them."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return {}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    info = {key.strip(): value.strip() for key, value in fields.items()}
    flags = info.get("Flags", "").split()
    return {"lscpu": info, "vector_flags": [f for f in flags if any(mark in f for mark in _VECTOR_FLAGS)]}


def _torch_capability() -> str:
    """The widest vector ISA torch dispatches to here (AVX2, AVX512, ...)."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny shape and few requests (smoke run)")
    parser.add_argument("--shapes", default=None, help="comma-separated, from: " + ", ".join(SHAPES))
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores of each side: torch or CTranslate2 threads, server inference streams")
    parser.add_argument("--note", default="", help="recorded with the results (say what else ran)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker[0], Path(args.worker[1]), int(args.worker[2]))
        return
    names = args.shapes.split(",") if args.shapes else (["tiny"] if args.quick else ["base", "small"])
    cpu = cpu_description()
    print(f"CPU: {cpu.get('lscpu', {}).get('Model name', '?')}; "
          f"vector flags: {' '.join(cpu.get('vector_flags', []))}")
    started = time.perf_counter()
    results = [bench_shape(SHAPES[name], args.quick, args.cores) for name in names]
    report = {"quick": args.quick, "cores_per_side": args.cores, "new_tokens": NEW_TOKENS, "note": args.note,
              "cpu_count": os.cpu_count(), "cpu": cpu, "torch_cpu_capability": _torch_capability(),
              "seconds": round(time.perf_counter() - started, 1), "shapes": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
