"""The user cache for the demo's trained teacher, so that a second run skips the training."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from demo.snapshot import SNAPSHOT_ROOT, restore_snapshot

CACHE_FORMAT = 1


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dqbart"


def teacher_key(spec: dict[str, Any], data_files: list[Path]) -> str:
    """A digest of everything that decides the trained teacher: shape, training recipe, data."""
    digest = hashlib.sha256(json.dumps({"format": CACHE_FORMAT, "spec": spec}, sort_keys=True).encode())
    for path in data_files:
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


def benchmark_teacher_dir(d_model: int = 256, data: str = "debian", cycles: int = 1) -> Path:
    """Where `python -m bench.teacher [--cycles N]` builds its teacher (the full data set, hours of
    CPU); `data` is "en-de" for the translation teacher."""
    first = cache_root() / "teachers" / f"{data}-d{d_model}"
    return first.with_name(f"{first.name}-c{cycles}") if cycles > 1 else first


def built_benchmark_teacher(data: str = "debian", snapshots: Path | None = None) -> Path | None:
    """The most trained benchmark teacher's model directory (the most learning-rate cycles first),
    once its training has finished, or restored from the repository's snapshot of it (`snapshots`:
    data/teachers/) where one is carried."""
    snapshots = snapshots or SNAPSHOT_ROOT
    for cycles in _known_cycles(data, (snapshots, benchmark_teacher_dir(data=data).parent)):
        run_dir = benchmark_teacher_dir(data=data, cycles=cycles)
        restore_snapshot(snapshots / run_dir.name, run_dir)
        built = run_dir / "teacher"
        if (built / "model.safetensors").is_file():
            return built
    return None


def _known_cycles(data: str, roots: tuple[Path, ...]) -> list[int]:
    """The cycle counts that have a folder under any of `roots` (the first cycle always), most first."""
    pattern = re.compile(re.escape(benchmark_teacher_dir(data=data).name) + r"-c(\d+)")
    found = {int(match[1]) for root in roots if root.is_dir() for path in root.iterdir()
             if (match := pattern.fullmatch(path.name))}
    return sorted(found | {1}, reverse=True)


class TeacherCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "teachers"

    def archive(self, key: str) -> Path:
        return self.root / key / "teacher.tar"

    def lookup(self, key: str) -> Path | None:
        path = self.archive(key)
        return path if path.is_file() else None

    def store(self, key: str, archive: Path, info: dict[str, Any]) -> Path:
        """Copy the archive in under a temporary name first, so a half-written cache never counts."""
        dest = self.archive(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_suffix(".partial")
        shutil.copyfile(archive, partial)
        (dest.parent / "info.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
        partial.replace(dest)
        return dest
