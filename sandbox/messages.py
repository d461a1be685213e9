"""What crosses a process boundary inside the sandbox, as pydantic models, in one place.

The outputs a `correct` verdict was judged on go from the worker to the verifier on disk: the
worker writes each entry's output leaves to OUTPUTS_DIR/K.pt (K: the entry's position) the
moment it has judged it, and the fork server saves the list of entry names (zygote.OUTPUTS_FILE,
beside that folder) once the verdict is `correct`. The verifier loads one entry at a time, so
neither process ever holds every output at once (issue 9: the sandbox holds about 3x the task's
own inputs and outputs).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

OUTPUTS_DIR = "outputs"  # beside zygote.OUTPUTS_FILE, in the evaluation's workdir


class SavedOutputs(BaseModel):
    """The worker's index of saved outputs: input set names (e.g. `seed:0`) and sampled timed
    calls (`timed:G`, blocks.TIMED_PREFIX), in the order they were written."""

    entries: list[str]

    @staticmethod
    def entry_path(directory: str | Path, position: int) -> Path:
        """The file holding entry number `position` (its output leaves, torch.save'd)."""
        return Path(directory) / OUTPUTS_DIR / f"{position}.pt"
