"""Finding runs on disk: the one resolver every command uses for a run argument.

Runs live directly under a runs directory (`runs/<run-id>/archive.db`), or in a batch directory
there: `kagent batch` puts each task's run in `batch-*/<task>/<run-id>/` (a run directly in
`batch-*/` is found too). A run argument (`kagent show RUN`, `kagent report RUN`,
`--model replay:RUN`, `kagent optimize --resume RUN`) is a directory path, a path under the
runs directory, or a run id (or a unique start of one) found anywhere under the runs directory,
batches included. A batch argument (`kagent batch --resume BATCH`) is resolved the same way
among the batch directories (`batch-*/batch.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from kagent.errors import UsageError

ARCHIVE_FILE = "archive.db"  # agent.archive.ARCHIVE_FILE (not imported: keep `kagent --help` light)
SUMMARY_FILE = "summary.json"  # a finished batch's summary (agent.batch_files)
BATCH_FILE = "batch.json"  # a batch's state, written from its start (agent.batch_files)
RUN_GLOBS = (f"*/{ARCHIVE_FILE}", f"batch-*/*/{ARCHIVE_FILE}", f"batch-*/*/*/{ARCHIVE_FILE}")


def find_run_dirs(runs_dir: Path) -> list[Path]:
    """Directories holding an archive, directly under runs_dir or in a batch directory there,
    sorted by path."""
    return sorted({path.parent for pattern in RUN_GLOBS for path in runs_dir.glob(pattern)})


def run_name(run_dir: Path, runs_dir: Path) -> str:
    """How a run is named to a person: its path relative to runs_dir, else its whole path."""
    try:
        return run_dir.relative_to(runs_dir).as_posix()
    except ValueError:
        return str(run_dir)


def resolve_run(target: str, runs_dir: Path, batches: bool = False) -> tuple[Literal["run", "batch"], Path]:
    """("run", run directory) for what the user named: a directory holding an archive, given as
    a path or a path under runs_dir, or a run id (or a unique start of one) under runs_dir. With
    batches=True a batch directory (it holds summary.json) is an answer too: ("batch", it).

    Raises UsageError naming `target` when it names nothing, a directory that is neither, or
    more than one run."""
    what = "a run or batch directory" if batches else "a run directory"
    paths = [Path(target).expanduser()] + ([] if Path(target).expanduser().is_absolute() else [runs_dir / target])
    for path in paths:
        if not path.is_dir():
            continue
        if (path / ARCHIVE_FILE).is_file():
            return "run", path
        if batches and (path / SUMMARY_FILE).is_file():
            return "batch", path
        missing = f"no {ARCHIVE_FILE}" + (f", no {SUMMARY_FILE}" if batches else "")
        hint = ": a batch writes it when it ends" if batches and (path / "batch.json").is_file() else ""
        raise UsageError(f"{path}: not {what} ({missing}{hint})")
    return "run", _by_id(target, find_run_dirs(runs_dir) if runs_dir.is_dir() else [], runs_dir, "run")


def resolve_batch(target: str, runs_dir: Path) -> Path:
    """The batch directory (it holds batch.json) the user named: a path, a path under runs_dir,
    or a batch id (or a unique start of one) directly under runs_dir. Raises UsageError naming
    `target` as `resolve_run` does."""
    paths = [Path(target).expanduser()] + ([] if Path(target).expanduser().is_absolute() else [runs_dir / target])
    for path in paths:
        if path.is_dir():
            if not (path / BATCH_FILE).is_file():
                raise UsageError(f"{path}: not a batch directory (no {BATCH_FILE})")
            return path
    dirs = sorted(path.parent for path in runs_dir.glob(f"batch-*/{BATCH_FILE}")) if runs_dir.is_dir() else []
    return _by_id(target, dirs, runs_dir, "batch")


def _by_id(target: str, dirs: list[Path], runs_dir: Path, what: Literal["run", "batch"]) -> Path:
    """The one of `dirs` named `target`, else the one whose name starts with it. UsageError
    when none or several do."""
    for matches in ([d for d in dirs if d.name == target], [d for d in dirs if d.name.startswith(target)]):
        if len(matches) == 1:
            return matches[0]
        if len(matches) > 1:
            names = ", ".join(run_name(d, runs_dir) for d in matches[:3]) + (", ..." if len(matches) > 3 else "")
            plural = "runs" if what == "run" else "batches"
            raise UsageError(f"{target!r} names {len(matches)} {plural} under {runs_dir} ({names}): "
                             "give more of the id, or a path")
    hint = f": see kagent runs --runs-dir {runs_dir}" if what == "run" else ""
    raise UsageError(f"{target}: no such {what} (not a directory, and no {what} {target!r} under {runs_dir}{hint})")
