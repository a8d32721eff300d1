"""Serving benchmark: the fp32 teacher with plain transformers against our served compressed model.

On the same inputs in one run, for each teacher shape:
- the teacher (fp32, `generate`, batched as well as a user could: batch size = concurrency), in
  its own process;
- a 6-3, 8-8-8 PTQ student (build_student + quantize_model + pack, untrained: the output length
  is fixed, so timing does not depend on training) served by `serving.app` under uvicorn on
  127.0.0.1, queried over HTTP with the given concurrency.
Each side gets `--cores` cores: the teacher as that many torch threads, the server as that many
torch threads shared by as many inference streams (its default on a CPU host), one each.
Each scenario runs on the teacher and then on the server, in turn, so both sides see the same
machine load. Greedy decoding with min_new_tokens = max_new_tokens = 32. Scenarios: natural validation inputs
at concurrency 1 and 16, and an input-length sweep (64/256/512 tokens) at concurrency 16.
Reports p50/p95 latency, throughput (inputs/s) and each side's peak memory; prints a table and
writes JSON.

    python -m bench.serve --quick                  # smoke run, small shapes, < 2 min
    python -m bench.serve                          # bart-base-shaped and d256 teachers
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "debian-desc-sample"
NEW_TOKENS = 32
PARAMETERS = {"num_beams": 1, "min_new_tokens": NEW_TOKENS, "max_new_tokens": NEW_TOKENS, "truncation": True}


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


SHAPES = {
    "base": Shape("bart-base-shaped 6-6 d768", 768, 3072, 12, 8000),
    "small": Shape("small 6-6 d256", 256, 1024, 4, 8000),
    "tiny": Shape("tiny 6-6 d128", 128, 512, 4, 2000),
}


# ---------------------------------------------------------------- models and inputs

def build_models(shape: Shape, root: Path) -> tuple[Path, Path]:
    """A random teacher of the shape (with a tokenizer trained on the sample) and its packed student."""
    import torch
    from transformers import BartConfig, BartForConditionalGeneration

    from compression.artifact import pack
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
    teacher_dir, student_dir = root / "teacher", root / "student"
    teacher.save_pretrained(teacher_dir)
    tokenizer.save_pretrained(teacher_dir)
    student, layer_map = build_student(teacher, StudentSpec(encoder_layers=6, decoder_layers=3))
    spec = QuantizationSpec(weight_bits=8, embedding_bits=8, activation_bits=8)
    quantize_model(student, spec)
    recipe = Recipe.from_dict({"teacher": {"path": str(teacher_dir)}, "dataset": {"train": "unused.jsonl"},
                               "quantization": spec.model_dump()})
    pack(student.eval(), tokenizer, student_dir, spec=spec, layer_map=layer_map, recipe=recipe.to_dict(),
         teacher_identity={"path": str(teacher_dir)})
    return teacher_dir, student_dir


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
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    documents = validation_documents()
    n1, n16, sweep_n = (4, 16, 16) if quick else (16, 64, 16)
    lengths = (64, 256) if quick else (64, 256, 512)
    result = [Scenario("natural c=1", 1, documents[:n1]), Scenario("natural c=16", 16, documents[:n16])]
    for length in lengths:
        texts = texts_of_length(tokenizer, documents, length, sweep_n)
        result.append(Scenario(f"{length} tok c=16", 16, texts))
    return result


# ---------------------------------------------------------------- the teacher side (own process)

def teacher_worker(teacher_dir: Path, threads: int) -> None:
    """Serve scenarios from stdin (one JSON line each) through the fp32 teacher, in batches of the
    scenario's concurrency; answer each with one JSON line, and the memory figures at the end."""
    import torch
    from transformers import AutoTokenizer, BartForConditionalGeneration

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    model = BartForConditionalGeneration.from_pretrained(teacher_dir).eval()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        scenario = json.loads(line)
        texts, size = scenario["texts"], scenario["concurrency"]
        _teacher_batch(model, tokenizer, texts[:size])  # warm-up
        latencies, started = [], time.perf_counter()
        for start in range(0, len(texts), size):
            t0 = time.perf_counter()
            _teacher_batch(model, tokenizer, texts[start:start + size])
            latencies += [time.perf_counter() - t0] * len(texts[start:start + size])
        print(json.dumps({"latencies": latencies, "wall": time.perf_counter() - started}), flush=True)
    print(json.dumps(_memory(os.getpid())), flush=True)


def _teacher_batch(model: Any, tokenizer: Any, texts: list[str]) -> None:
    import torch

    batch = tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
    with torch.inference_mode():
        model.generate(**batch, num_beams=1, min_new_tokens=NEW_TOKENS, max_new_tokens=NEW_TOKENS)


class TeacherProcess:
    """The teacher in its own process, so that its memory and threads are its own."""

    def __init__(self, teacher_dir: Path, threads: int) -> None:
        command = [sys.executable, "-m", "bench.serve", "--teacher-worker", str(teacher_dir), str(threads)]
        self.process = subprocess.Popen(command, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True)
        self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError("the teacher process ended early")

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


# ---------------------------------------------------------------- the served side (uvicorn + HTTP)

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


def start_server(data_dir: Path, cores: int, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DQB_DATA_DIR": str(data_dir), "DQB_SERVING_MAX_BATCH_SIZE": "16",
           "DQB_SERVING_STREAMS": str(cores), "OMP_NUM_THREADS": str(cores), "DQB_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "--factory", "serving.app:create_app", "--host", "127.0.0.1",
               "--port", str(port), "--log-level", "warning", "--no-access-log"]
    return subprocess.Popen(command, cwd=REPO, env=env)


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
    pending = list(enumerate(scenario.texts))
    latencies: list[float] = []
    server_batches: list[int] = []

    async def client_loop(client: httpx.AsyncClient) -> None:
        while pending:
            _, text = pending.pop(0)
            t0 = time.perf_counter()
            body = {"inputs": text, "parameters": PARAMETERS}
            response = await client.post(url, headers=headers, json=body)
            response.raise_for_status()
            latencies.append(time.perf_counter() - t0)
            server_batches.append(int(response.headers["X-Batch-Size"]))

    async with httpx.AsyncClient(timeout=600) as client:
        warm = scenario.texts[: scenario.concurrency]
        await asyncio.gather(*(client.post(url, headers=headers, json={"inputs": t, "parameters": PARAMETERS})
                               for t in warm))
        started = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(scenario.concurrency)))
        wall = time.perf_counter() - started
    return {"latencies": latencies, "wall": wall, "mean_batch": statistics.fmean(server_batches)}


def run_both(teacher_dir: Path, student_dir: Path, plan: list[Scenario], cores: int,
             work: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Each scenario on the teacher, then on the server, in turn: both sides see the same load."""
    data_dir = work / "service"
    data_dir.mkdir()
    model_id, key = store_student(student_dir, data_dir)
    port = _free_port()
    server = start_server(data_dir, cores, port)
    teacher = TeacherProcess(teacher_dir, cores)
    base = f"http://127.0.0.1:{port}"
    try:
        asyncio.run(_wait_healthy(base, server))
        info = _info(base, model_id, key)
        teacher_runs, served_runs = {}, {}
        for scenario in plan:
            teacher_runs[scenario.name] = teacher.run(scenario)
            served_runs[scenario.name] = asyncio.run(_drive(base, model_id, key, scenario))
        served = {"scenarios": served_runs, "memory": _memory(server.pid), "runtime": info["runtime"],
                  "batching": info["batching"]}
        return {"scenarios": teacher_runs, "memory": teacher.finish()}, served
    finally:
        server.terminate()
        server.wait(timeout=30)
        teacher.process.kill()


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


# ---------------------------------------------------------------- report

def summarize(raw: dict[str, Any]) -> dict[str, float]:
    latencies = sorted(raw["latencies"])
    p95_index = min(len(latencies) - 1, max(0, round(0.95 * len(latencies)) - 1))
    return {"p50_s": round(statistics.median(latencies), 4), "p95_s": round(latencies[p95_index], 4),
            "throughput": round(len(latencies) / raw["wall"], 3)}


def compare(teacher: dict[str, Any], served: dict[str, Any], plan: list[Scenario]) -> list[dict[str, Any]]:
    rows = []
    for scenario in plan:
        t, s = summarize(teacher["scenarios"][scenario.name]), summarize(served["scenarios"][scenario.name])
        rows.append({"scenario": scenario.name, "inputs": len(scenario.texts), "teacher": t, "served": s,
                     "served_mean_batch": round(served["scenarios"][scenario.name]["mean_batch"], 2),
                     "p50_speedup": round(t["p50_s"] / s["p50_s"], 2),
                     "throughput_speedup": round(s["throughput"] / t["throughput"], 2)})
    return rows


def print_table(shape: Shape, rows: list[dict[str, Any]], teacher_mem: dict[str, float],
                served_mem: dict[str, float], kernel: str) -> None:
    print(f"\n## {shape.name} (vocab {shape.vocab}): teacher fp32 6-6 vs served 6-3 8-8-8 ({kernel})")
    print("| scenario | teacher p50 / p95 s | served p50 / p95 s | teacher in/s | served in/s "
          "| p50 x | throughput x | served batch |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        t, s = r["teacher"], r["served"]
        print(f"| {r['scenario']} | {t['p50_s']:.3f} / {t['p95_s']:.3f} "
              f"| {s['p50_s']:.3f} / {s['p95_s']:.3f} "
              f"| {t['throughput']:.2f} | {s['throughput']:.2f} | {r['p50_speedup']:.2f} "
              f"| {r['throughput_speedup']:.2f} | {r['served_mean_batch']:.1f} |")
    print(f"peak memory: teacher process {teacher_mem['peak_mib']:.0f} MiB "
          f"(rss {teacher_mem['rss_mib']:.0f}), "
          f"server process {served_mem['peak_mib']:.0f} MiB (rss {served_mem['rss_mib']:.0f})")


def bench_shape(shape: Shape, quick: bool, cores: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        teacher_dir, student_dir = build_models(shape, work)
        plan = scenarios(teacher_dir, quick)
        build_s = time.perf_counter() - t0
        teacher, served = run_both(teacher_dir, student_dir, plan, cores, work)
    rows = compare(teacher, served, plan)
    print_table(shape, rows, teacher["memory"], served["memory"], served["runtime"]["kernel"])
    return {"shape": asdict(shape), "rows": rows, "teacher_memory": teacher["memory"],
            "served_memory": served["memory"], "runtime": served["runtime"],
            "streams": served["batching"]["streams"],
            "build_seconds": round(build_s, 1), "load_average": os.getloadavg()}


def _cpu_capability() -> str:
    """The widest vector ISA torch dispatches to here (AVX2, AVX512, ...): it decides the int8 kernels."""
    import torch

    return torch.backends.cpu.get_cpu_capability()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small shapes and few requests (smoke run)")
    parser.add_argument("--shapes", default=None, help="comma-separated, from: " + ", ".join(SHAPES))
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)),
                        help="cores of each side: teacher torch threads, server inference streams")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "serve.json")
    parser.add_argument("--teacher-worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.teacher_worker:
        teacher_worker(Path(args.teacher_worker[0]), int(args.teacher_worker[1]))
        return
    names = args.shapes.split(",") if args.shapes else (["tiny"] if args.quick else ["base", "small"])
    started = time.perf_counter()
    results = [bench_shape(SHAPES[name], args.quick, args.cores) for name in names]
    report = {"quick": args.quick, "cores": args.cores, "new_tokens": NEW_TOKENS,
              "cpu_count": os.cpu_count(), "cpu_capability": _cpu_capability(),
              "seconds": round(time.perf_counter() - started, 1),
              "shapes": results}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwritten {args.out} in {report['seconds']} s")


if __name__ == "__main__":
    main()
