"""The README's first command: `kagent optimize` on a real task, replaying the recorded run shipped
under examples/, exactly as the README spells it (the command is read from the README itself),
from the root of a fresh copy of the repository with default flags. Every recorded kernel is
evaluated again by the real sandbox; nothing of the recorded verdicts is reused."""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from contextlib import closing
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kagent.sandbox.supervisor import gpu_available

from conftest import ROOT
from conftest import archive_rows as rows
from test_package import NOT_SOURCE


def readme_first_command() -> list[str]:
    """The `kagent optimize ...` part of the README's first command line (the first line of the
    first bash block that runs kagent), as argv."""
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    line = next(line for line in block.splitlines() if "kagent " in line and not line.startswith("#"))
    steps = [shlex.split(step) for step in line.split("&&")]
    assert steps[0] == ["python3", "-m", "venv", ".venv"]  # it installs first, then runs the main job
    assert steps[1][:2] == [".venv/bin/pip", "install"] and "-e" in steps[1]
    (optimize,) = [step for step in steps if step[:2] == [".venv/bin/kagent", "optimize"]]
    return optimize


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under `folder`, by relative path."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# The first command is the CPU install: with a GPU the default backend is Triton, and the recorded
# C++ kernels need --backend cpp (examples/README.md says so).
@pytest.mark.skipif(gpu_available(), reason="the README's first command is the CPU one; this machine has a GPU")
def test_readme_first_command_replays_the_example_and_evaluates_every_kernel_again(tmp_path):
    argv = readme_first_command()
    replay = next(arg for arg in argv if arg.startswith("replay:")).removeprefix("replay:")
    assert "--model" in argv and not Path(replay).is_absolute() and not Path(argv[2]).is_absolute()
    example = ROOT / replay
    recorded = {h: json.loads(v) for h, v in rows(example, "SELECT source_hash, verdict_json FROM candidates"
                                                            " WHERE status = 'evaluated'")}
    assert len(recorded) >= 5
    before = digests(example)

    # A fresh clone, run from its root: relative paths as written, runs/ (the default) inside it.
    clone = tmp_path / "kagent"
    shutil.copytree(ROOT, clone, ignore=NOT_SOURCE)
    started = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
    # .venv/bin/kagent is this environment's entry point (the test runs where kagent is installed).
    kagent = str(Path(sys.executable).parent / "kagent")
    proc = subprocess.run([kagent, *argv[1:]], cwd=clone, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert re.search(r"stopped by max_iters: \d+/10 correct, best \d+\.\d\dx", proc.stdout), proc.stdout

    (run_dir,) = (clone / "runs").iterdir()
    now = rows(run_dir, "SELECT source_hash, status, verdict_json, evaluated_at FROM candidates ORDER BY id")
    assert len(now) == 10 and all(status == "evaluated" for _, status, _, _ in now)
    assert {h for h, *_ in now} == set(recorded)  # every recorded kernel, and only those
    for source_hash, _, verdict_json, evaluated_at in now:
        verdict, old = json.loads(verdict_json), recorded[source_hash]
        assert evaluated_at >= started  # judged in this run...
        assert verdict["status"] == old["status"]
        if verdict["status"] == "correct":  # ...and timed again: no two timing runs agree to the ns
            assert verdict["ref_timing"] != old["ref_timing"] and verdict["candidate_timing"] != old["candidate_timing"]
    best = (run_dir / "best.py").read_text()
    assert "from kagent.sandbox.backends.cpp import load_cpp" in best
    assert rows(run_dir, "SELECT count(*) FROM llm_calls WHERE error IS NOT NULL")[0][0] == 0
    # Replaying reads the example; it leaves it as shipped (no journal files, no writes).
    assert digests(example) == before
    with closing(sqlite3.connect(example / "archive.db")) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
