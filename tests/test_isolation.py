"""What the operating system enforces around a candidate, beyond the checks inside its
process: the servers that judge it cannot be made to run its code, native code cannot create
processes or reach into libtorch, and every verdict says how isolated the candidate was. Real
workers, real candidates, nothing about a verdict faked."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from conftest import CANDIDATES, TASKS
from kagent.sandbox.executor import Sandbox
from kagent.sandbox.models import EvalRequest, Verdict

RELU_TASK = TASKS / "01_relu.py"
HONEST = CANDIDATES / "01_relu" / "cpp.py"


def run(sandbox: Sandbox, source_or_path: str | Path, tmp_path: Path, backend: str = "cpp", timeout: float = 60,
        task: Path = RELU_TASK) -> Verdict:
    path = Path(source_or_path) if isinstance(source_or_path, Path) else tmp_path / f"candidate_{uuid.uuid4().hex[:8]}.py"
    if not isinstance(source_or_path, Path):
        path.write_text(source_or_path)
    request = EvalRequest(task_path=str(task), candidate_path=str(path), backend=backend, device="cpu")
    return sandbox.evaluate(request, timeout_s=timeout)


def assert_correct(verdict: Verdict) -> None:
    assert verdict.status == "correct", f"{verdict.status} ({verdict.reason}): {verdict.message}"


# -- the servers' module path -----------------------------------------------------------------

PLANT = '''import os
import torch
from kagent.sandbox.backends.cpp import load_cpp

PLANTED = """import pathlib
pathlib.Path(MARKER).write_text(__name__)
"""


class ModelNew(torch.nn.Module):
    def forward(self, x):
        root = os.path.abspath("..")  # the sandbox's root: the candidate's workdir is below it
        for package in ("kagent", "kagent/sandbox", "sandbox"):
            os.makedirs(os.path.join(root, package), exist_ok=True)
            open(os.path.join(root, package, "__init__.py"), "w").write(PLANTED)
        for package in ("kagent/sandbox", "sandbox"):
            for module in ("verifier", "zygote", "harness"):
                open(os.path.join(root, package, module + ".py"), "w").write(PLANTED)
        return x.clone()
'''


def test_code_planted_in_the_sandbox_root_never_runs(tmp_path):
    """A candidate writes `kagent/sandbox/verifier.py` (and the fork server, and the old
    `sandbox/` layout) into its sandbox root, the one directory above its workdir it can write.
    Neither a restarted verifier nor a new sandbox on that root (a `--resume`) imports it: the
    servers start outside the root, in Python's isolated mode."""
    marker = tmp_path / "planted-code-ran"
    source = PLANT.replace("MARKER", repr(str(marker)))
    root = tmp_path / "sandbox"
    with Sandbox("cpu", root=root) as sandbox:
        run(sandbox, source, tmp_path)
        assert (root / "kagent" / "sandbox" / "verifier.py").exists(), "the candidate could not plant its code"
        sandbox._stop_verifier()  # as if it died: the next `correct` verdict starts a new one
        assert_correct(run(sandbox, HONEST, tmp_path))
    with Sandbox("cpu", root=root) as resumed:
        assert_correct(run(resumed, HONEST, tmp_path))
    assert not marker.exists(), f"planted code ran as {marker.read_text()}"
