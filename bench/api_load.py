"""API load benchmark: status polls and job lists at rising request rates against the real API.

The API runs as `dqbart api` (uvicorn) on 127.0.0.1 against its own scratch database on the
PostgreSQL server at 127.0.0.1:5432 (user postgres; created here, dropped at the end), seeded with
tenants, jobs and events. This process is the client, on loopback only: an open-loop generator
sends requests at a fixed rate for a bounded time per step (a slow answer does not slow the
sending), and records each latency from send to the last body byte.

    python -m bench.api_load                       # 50/100/200/400 req/s, 10 s each, both workloads
    python -m bench.api_load --rates 200 --seconds 5 --workloads status

Prints a table and writes bench/results/api_load.json. Target: p99 <= 25 ms at 200 req/s for
status polls on 2 cores.

Then the overload step: status polls at twice the target rate (`--overload-rate`). The service must
shed the excess quickly (503/429 in the error shape, with Retry-After) while the requests it
accepts keep p99 <= 100 ms, and lose nothing: every request gets an answer, either 200 or a shed
answer. Its table gives the shed share, the accepted requests' p99 and the lost count.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results" / "api_load.json"
ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DQBART = str(Path(sys.executable).with_name("dqbart"))
TARGET: dict[str, Any] = {"workload": "status", "rate": 200, "p99_ms": 25.0}
OVERLOAD_TARGET = {"accepted_p99_ms": 100.0, "lost": 0}
SHED_STATUSES = (429, 503)
REQUEST_TIMEOUT_S = 5.0
RECIPE = {
    "task": "summarization", "teacher": {"model": "mdl_01ARZ3NDEKTSV4RRFFQ69G5FAV"},
    "dataset": {"dataset": "ds_01ARZ3NDEKTSV4RRFFQ69G5FAV", "source_field": "document",
                "target_field": "summary"},
    "student": {"encoder_layers": 6, "decoder_layers": 3},
    "quantization": {"weight_bits": 2, "embedding_bits": 2, "activation_bits": 8},
    "training": {"epochs": 3, "batch_size": 16, "lr": 3.0e-5},
}


@dataclass(frozen=True)
class Step:
    workload: str  # status | list
    rate: int  # requests per second asked
    seconds: float
    sent: int
    achieved_rate: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    late_sends: int  # sends that left more than 5 ms after their slot (the client fell behind)
    load_average_1m: float


@contextmanager
def scratch_database() -> Iterator[str]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"dqb_apiload_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def seed(settings: Any, jobs_per_tenant: int, tenants_count: int) -> tuple[str, list[str]]:
    """Tenants with queued/running/finished jobs and a few events each; (a key, that tenant's job ids)."""
    from store import tenants
    from store.db import session_scope
    from store.ids import new_id
    from store.models import Job, JobEvent

    statuses = ["queued", "running", "succeeded", "failed", "cancelled"]
    key, job_ids = "", []
    for t in range(tenants_count):
        with session_scope(settings) as session:
            tenant = tenants.create_tenant(session, name=f"load-{t}")
            plaintext = tenants.create_key(session, tenant_id=tenant.id)[1]
            rows = [Job(id=new_id("job"), tenant_id=tenant.id, status=statuses[i % 5], recipe=RECIPE,
                        metrics={"loss": 1.5, "rouge1": 0.3}, progress_step=i, progress_total=1000)
                    for i in range(jobs_per_tenant)]
            session.add_all(rows)
            session.flush()
            session.add_all(JobEvent(job_id=r.id, type="stage", stage="distilling", message="distilling",
                                     data={}) for r in rows for _ in range(3))
        if t == 0:
            key, job_ids = plaintext, [r.id for r in rows]
    return key, job_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def api_server(database_url: str, data_dir: Path, workers: int,
               max_in_flight: int | None = None) -> Iterator[str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("DQB_")}
    env.update({"DQB_DATABASE_URL": database_url, "DQB_DATA_DIR": str(data_dir), "DQB_LOG_LEVEL": "WARNING"})
    if max_in_flight is not None:
        env["DQB_MAX_IN_FLIGHT"] = str(max_in_flight)
    log = open(data_dir / "api.log", "wb")  # noqa: SIM115 - closed below, after the process
    process = subprocess.Popen([DQBART, "api", "--host", "127.0.0.1", "--port", str(port),
                                "--workers", str(workers)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((data_dir / "api.log").read_text()[-3000:])
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class KeepAliveClient:
    """A minimal HTTP/1.1 GET client over a pool of keep-alive connections.

    A general client (httpx) spends about a millisecond of CPU per request; on two shared cores
    that time would be taken from the server being measured.
    """

    def __init__(self, port: int, key: str) -> None:
        self.port, self.key = port, key
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def get(self, path: str) -> int:
        return (await self.fetch(path))[0]

    async def fetch(self, path: str) -> tuple[int, bytes, bytes]:
        """(status, head, body)."""
        reader, writer = self.idle.pop() if self.idle else await self._open()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {self.key}\r\n\r\n"
                     .encode())
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        self.idle.append((reader, writer))
        return status, head, body

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.opened.append(writer)
        return reader, writer

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def _one(client: KeepAliveClient, path: str, latencies: list[float], errors: list[str]) -> None:
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(client.get(path), REQUEST_TIMEOUT_S)
        if status != 200:
            errors.append(str(status))
    except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration) as exc:
        errors.append(type(exc).__name__)
    latencies.append((time.perf_counter() - started) * 1000)


async def run_step(base: str, key: str, job_ids: list[str], workload: str, rate: int, seconds: float) -> Step:
    latencies: list[float] = []
    errors: list[str] = []
    late = 0
    rng = random.Random(rate)
    client = KeepAliveClient(int(base.rsplit(":", 1)[1]), key)
    try:
        for _ in range(8):  # warm connections (and the server's pool) before the clock starts
            await asyncio.wait_for(client.get("/v1/jobs?limit=1"), REQUEST_TIMEOUT_S)
        total = int(rate * seconds)
        tasks = []
        start = time.perf_counter()
        for i in range(total):
            slot = start + i / rate
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.005:
                late += 1
            path = f"/v1/jobs/{rng.choice(job_ids)}" if workload == "status" else "/v1/jobs?limit=20"
            tasks.append(asyncio.create_task(_one(client, path, latencies, errors)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    return Step(workload=workload, rate=rate, seconds=seconds, sent=total,
                achieved_rate=round(total / elapsed, 1), errors=len(errors),
                p50_ms=round(percentile(latencies, 0.50), 2), p90_ms=round(percentile(latencies, 0.90), 2),
                p99_ms=round(percentile(latencies, 0.99), 2), max_ms=round(max(latencies), 2),
                late_sends=late, load_average_1m=round(os.getloadavg()[0], 2))


@dataclass(frozen=True)
class Overload:
    rate: int
    seconds: float
    max_in_flight: int | None  # the API's DQB_MAX_IN_FLIGHT (None: its default)
    sent: int
    achieved_rate: float
    accepted: int
    shed: int
    shed_pct: float
    lost: int  # no answer in time, a broken connection, or any answer but 200 and a well-formed shed
    accepted_p50_ms: float
    accepted_p99_ms: float
    shed_p99_ms: float
    load_average_1m: float


def _well_formed_shed(status: int, head: bytes, body: bytes) -> bool:
    """503/429 in the error shape, with a Retry-After: what a client can act on."""
    try:
        error = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return False
    has_retry_after = b"\r\nretry-after:" in head.lower()
    return status in SHED_STATUSES and has_retry_after and {"code", "message"} <= set(error)


async def _answered(client: KeepAliveClient, path: str, outcomes: list[tuple[str, float]]) -> None:
    started = time.perf_counter()
    try:
        status, head, body = await asyncio.wait_for(client.fetch(path), REQUEST_TIMEOUT_S)
        outcome = "ok" if status == 200 else "shed" if _well_formed_shed(status, head, body) else "lost"
    except (TimeoutError, OSError, asyncio.IncompleteReadError, StopIteration):
        outcome = "lost"
    outcomes.append((outcome, (time.perf_counter() - started) * 1000))


async def run_overload(base: str, key: str, job_ids: list[str], rate: int, seconds: float,
                       max_in_flight: int | None) -> Overload:
    """Status polls at `rate`, open loop, each answer sorted into accepted, shed or lost."""
    outcomes: list[tuple[str, float]] = []
    rng = random.Random(rate)
    client = KeepAliveClient(int(base.rsplit(":", 1)[1]), key)
    try:
        total, tasks, start = int(rate * seconds), [], time.perf_counter()
        for i in range(total):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            path = f"/v1/jobs/{rng.choice(job_ids)}"
            tasks.append(asyncio.create_task(_answered(client, path, outcomes)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    finally:
        client.close()
    by = {kind: [ms for k, ms in outcomes if k == kind] for kind in ("ok", "shed", "lost")}
    return Overload(rate=rate, seconds=seconds, max_in_flight=max_in_flight, sent=total,
                    achieved_rate=round(total / elapsed, 1), accepted=len(by["ok"]), shed=len(by["shed"]),
                    shed_pct=round(100 * len(by["shed"]) / total, 1), lost=len(by["lost"]),
                    accepted_p50_ms=round(percentile(by["ok"], 0.50), 2),
                    accepted_p99_ms=round(percentile(by["ok"], 0.99), 2),
                    shed_p99_ms=round(percentile(by["shed"], 0.99), 2),
                    load_average_1m=round(os.getloadavg()[0], 2))


def print_overload(o: Overload) -> None:
    header = (f"{'overload':<9}{'rate':>6}{'achieved':>10}{'sent':>7}{'accepted':>10}{'shed %':>8}{'lost':>6}"
              f"{'acc p50':>9}{'acc p99':>9}{'shed p99':>10}{'load1m':>8}")
    print(header)
    print("-" * len(header))
    print(f"{'status':<9}{o.rate:>6}{o.achieved_rate:>10}{o.sent:>7}{o.accepted:>10}{o.shed_pct:>8}{o.lost:>6}"
          f"{o.accepted_p50_ms:>9}{o.accepted_p99_ms:>9}{o.shed_p99_ms:>10}{o.load_average_1m:>8}")


def overload_verdict(o: Overload) -> dict[str, Any]:
    met = o.accepted_p99_ms <= OVERLOAD_TARGET["accepted_p99_ms"] and o.lost == OVERLOAD_TARGET["lost"]
    return {**OVERLOAD_TARGET, "rate": o.rate, "measured_accepted_p99_ms": o.accepted_p99_ms,
            "measured_lost": o.lost, "shed_pct": o.shed_pct, "met": met}


def print_table(steps: list[Step]) -> None:
    header = (f"{'workload':<9}{'rate':>6}{'achieved':>10}{'sent':>7}{'errors':>8}{'p50 ms':>9}{'p90 ms':>9}"
              f"{'p99 ms':>9}{'max ms':>9}{'late':>6}{'load1m':>8}")
    print(header)
    print("-" * len(header))
    for s in steps:
        print(f"{s.workload:<9}{s.rate:>6}{s.achieved_rate:>10}{s.sent:>7}{s.errors:>8}{s.p50_ms:>9}{s.p90_ms:>9}"
              f"{s.p99_ms:>9}{s.max_ms:>9}{s.late_sends:>6}{s.load_average_1m:>8}")


def target_verdict(steps: list[Step]) -> dict[str, Any]:
    hit = [s for s in steps if s.workload == TARGET["workload"] and s.rate == TARGET["rate"]]
    if not hit:
        return {**TARGET, "measured_p99_ms": None, "met": None}
    return {**TARGET, "measured_p99_ms": hit[0].p99_ms, "met": hit[0].p99_ms <= TARGET["p99_ms"]
            and hit[0].errors == 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", type=int, nargs="+", default=[50, 100, 200, 400])
    parser.add_argument("--seconds", type=float, default=10.0, help="per step")
    parser.add_argument("--workloads", nargs="+", default=["status", "list"], choices=["status", "list"])
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--jobs", type=int, default=500, help="jobs per tenant")
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument("--overload-rate", type=int, default=2 * TARGET["rate"],
                        help="status polls per second of the overload step (0: skip it)")
    parser.add_argument("--max-in-flight", type=int, default=None, help="the API's DQB_MAX_IN_FLIGHT")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from store.db import forget_engines, upgrade_database
    from store.settings import Settings

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="dqb-apiload-") as tmp, scratch_database() as url:
        settings = Settings(DATA_DIR=Path(tmp), DATABASE_URL=url)
        upgrade_database(settings)
        key, job_ids = seed(settings, args.jobs, args.tenants)
        forget_engines(close=True)  # the scratch database is dropped at the end: no pooled connection stays
        with api_server(url, Path(tmp), args.workers, args.max_in_flight) as base:
            steps = []
            for workload in args.workloads:
                for rate in args.rates:
                    steps.append(asyncio.run(run_step(base, key, job_ids, workload, rate, args.seconds)))
                    print(f"{workload} at {rate}/s: p99 {steps[-1].p99_ms} ms", flush=True)
            overload = None
            if args.overload_rate:
                overload = asyncio.run(run_overload(base, key, job_ids, args.overload_rate, args.seconds,
                                                    args.max_in_flight))
    print_table(steps)
    verdict = target_verdict(steps)
    print(f"\ntarget: p99 <= {TARGET['p99_ms']} ms for {TARGET['workload']} polls at {TARGET['rate']} req/s: "
          f"measured {verdict['measured_p99_ms']} ms -> {'met' if verdict['met'] else 'NOT met'}")
    if overload is not None:
        print()
        print_overload(overload)
        shed_verdict = overload_verdict(overload)
        print(f"\noverload target: accepted p99 <= {OVERLOAD_TARGET['accepted_p99_ms']} ms and nothing lost "
              f"at {overload.rate} req/s: measured {overload.accepted_p99_ms} ms, {overload.lost} lost, "
              f"{overload.shed_pct} % shed -> {'met' if shed_verdict['met'] else 'NOT met'}")
    result = {
        "steps": [asdict(s) for s in steps], "target": verdict,
        "overload": None if overload is None else {**asdict(overload), "target": overload_verdict(overload)},
        "setup": {"uvicorn_workers": args.workers, "database": "PostgreSQL 127.0.0.1:5432, scratch database",
                  "jobs_per_tenant": args.jobs, "tenants": args.tenants,
                  "client": "open loop, raw HTTP/1.1 keep-alive, one process",
                  "cpus": os.cpu_count(), "load_average_before": [round(x, 2) for x in load_before],
                  "median_load_1m_during": statistics.median(s.load_average_1m for s in steps)},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
