"""Scratch temporaries: the sweep removes exactly those whose owner is gone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from store.scratch import scratch_dir, scratch_file, sweep

LONG_AGO = (0, 0)


def _orphan(tmp: Path, name: str, size: int) -> Path:
    """An entry as a killed process leaves it: old, and nobody holds its lock."""
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / name
    path.write_bytes(b"x" * size)
    os.utime(path, LONG_AGO)
    return path


def test_an_entry_nobody_holds_is_removed_and_counted(tmp_path: Path) -> None:
    orphan = _orphan(tmp_path, "upload-1", 100)
    swept = sweep(tmp_path)
    assert not orphan.exists()
    assert (swept.entries, swept.bytes) == (1, 100)


def test_an_entry_a_live_process_holds_is_kept(tmp_path: Path) -> None:
    held = scratch_file(tmp_path, "upload-")
    os.utime(held.path, LONG_AGO)
    assert sweep(tmp_path).entries == 0
    assert held.path.exists()
    held.remove()


def test_a_folder_being_unpacked_is_kept_and_removed_after_its_block(tmp_path: Path) -> None:
    with scratch_dir(tmp_path, "model-") as work:
        (work / "config.json").write_text("{}")
        os.utime(work, LONG_AGO)
        assert sweep(tmp_path).entries == 0
    assert list(tmp_path.iterdir()) == []


def test_a_young_entry_is_spared_even_unlocked(tmp_path: Path) -> None:
    tmp_path.joinpath("upload-just-made").write_bytes(b"x")
    assert sweep(tmp_path).entries == 0


def test_the_lock_of_a_killed_process_is_released(tmp_path: Path) -> None:
    script = ("import os, sys; from pathlib import Path; from store.scratch import scratch_file; "
              "s = scratch_file(Path(sys.argv[1]), 'upload-'); os.utime(s.path, (0, 0)); os._exit(0)")
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True)  # exits without removing
    assert sweep(tmp_path).entries == 1
    assert list(tmp_path.iterdir()) == []
