"""Service settings: one `Settings` object, env vars with the prefix `DQB_` (DESIGN.md §6).

Everything the embedded mode keeps lives below DATA_DIR; the URLs and folders that are left
empty are derived from it, so setting DQB_DATA_DIR alone moves a whole installation.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

GIB = 1024**3
# The API's routes run on threads under one GIL: past a couple of requests per core, more in flight
# only queue (bench/api_load.py on 2 busy cores at 400 polls/s: accepted p99 77 ms with 4 in
# flight, 660 ms with 16, and with no bound 99 % of the requests lost).
IN_FLIGHT_PER_CORE = 2


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DQB_", extra="ignore")

    DATA_DIR: Path = Field(default_factory=lambda: Path.cwd() / ".dqbart")
    DATABASE_URL: str = ""  # default sqlite:///<DATA_DIR>/dqbart.db; production postgresql+psycopg://...
    BROKER_URL: str = "filesystem://"  # folders under <DATA_DIR>/broker; production redis://...
    ARTIFACT_DIR: Path | None = None  # default <DATA_DIR>/artifacts
    MAX_UPLOAD_BYTES: int = 2 * GIB
    HEARTBEAT_SECONDS: float = 5.0
    STALE_AFTER_SECONDS: float = 60.0  # a running job whose heartbeat is older is presumed dead
    REQUEUE_AFTER_SECONDS: float = 300.0  # a queued job not picked up by then is sent again
    RECONCILE_SECONDS: float = 30.0  # how often a worker looks for lost jobs
    DEVICE: str = "auto"
    LOG_LEVEL: str = "INFO"
    MAX_CONCURRENT_JOBS: int | None = None  # per tenant, unless the tenant row says otherwise
    STORAGE_LIMIT_BYTES: int | None = None
    # Overload (api/admission.py, web/ratelimit.py): requests answered at once per API process,
    # beyond which more are shed with 503; per-key rates ("" switches one off), kept in memory
    # or, for several API workers, in Redis (redis://...).
    MAX_IN_FLIGHT: int = Field(0, ge=0)  # 0: IN_FLIGHT_PER_CORE per usable core
    UPLOAD_RATE_LIMIT: str = "300/minute"
    INFERENCE_RATE_LIMIT: str = "100/second"
    RATE_LIMIT_STORAGE_URL: str = "memory://"
    TMP_SWEEP_SECONDS: float = Field(300.0, gt=0)  # how often the API removes temporaries of dead processes
    # Inference (serving/): dynamic batching and the in-memory model cache.
    SERVING_MAX_BATCH_SIZE: int = 16
    # Small against a CPU batch; requests being read extend it, an idle server does not wait.
    SERVING_MAX_WAIT_MS: float = 50.0
    SERVING_MAX_QUEUE: int = 256  # inputs waiting; beyond it requests get 429
    SERVING_CACHE_BYTES: int = 4 * GIB
    # Batches that run at once; 0: one per core on a CPU host (each on its share of the torch
    # threads), 1 on a GPU.
    SERVING_STREAMS: int = 0
    # The inference engine (serving/engines.py): auto = CTranslate2 where it loads the model and
    # its packing-time check lost at most SERVING_FAITHFULNESS_BUDGET task-metric points (ROUGE-Lsum
    # or BLEU), else our own int8 form; or ctranslate2 | int8 | reference for every model.
    SERVING_ENGINE: Literal["auto", "ctranslate2", "int8", "reference"] = "auto"
    SERVING_FAITHFULNESS_BUDGET: float = 0.5

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        self.DATA_DIR = self.DATA_DIR.expanduser().resolve()
        if not self.DATABASE_URL:
            self.DATABASE_URL = f"sqlite:///{self.DATA_DIR / 'dqbart.db'}"
        if self.ARTIFACT_DIR is None:
            self.ARTIFACT_DIR = self.DATA_DIR / "artifacts"
        if self.HEARTBEAT_SECONDS <= 0 or self.STALE_AFTER_SECONDS <= self.HEARTBEAT_SECONDS:
            raise ValueError("need 0 < HEARTBEAT_SECONDS < STALE_AFTER_SECONDS")
        return self

    @property
    def artifact_dir(self) -> Path:
        return self.ARTIFACT_DIR or self.DATA_DIR / "artifacts"

    @property
    def broker_dir(self) -> Path:
        return self.DATA_DIR / "broker"

    @property
    def checkpoint_dir(self) -> Path:
        return self.DATA_DIR / "checkpoints"

    @property
    def work_dir(self) -> Path:
        """Scratch space of running jobs (outputs before they are packed into the blob store)."""
        return self.DATA_DIR / "work"

    @property
    def max_in_flight(self) -> int:
        return self.MAX_IN_FLIGHT or IN_FLIGHT_PER_CORE * len(os.sched_getaffinity(0))

    @property
    def tmp_dir(self) -> Path:
        """Uploads being received and archives being unpacked (store/scratch.py)."""
        return self.DATA_DIR / "tmp"

    @property
    def cache_dir(self) -> Path:
        return self.DATA_DIR / "cache"

    @property
    def is_sqlite(self) -> bool:
        return self.DATABASE_URL.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
