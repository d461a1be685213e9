"""The trusted side of an evaluation: a `correct` verdict is checked against a reference
computed outside the sandbox.

The harness runs in the candidate's process, so native code in a candidate can do whatever the
harness can: read the verdict's signing key from memory, switch checks off, sign a verdict of
its own. It cannot change what another process computes. The verifier is a long-lived process
that kagent starts beside the fork server, outside the candidates' PID namespace (a candidate
cannot name it), and that makes itself non-dumpable (a process of the same user cannot ptrace
it or read its memory). For each verdict that claims `correct`, once the candidate's processes
are dead, it rebuilds the task's reference from the request's seeds, draws the same input sets,
and compares its own results with the outputs the worker saved beside the verdict (loaded as
plain tensors: `weights_only`, no code runs).

Protocol on stdin/stdout, one JSON object per line:
  <- {"ready": true}
  -> {"id": ID, "request": {...EvalRequest}, "outputs": PATH}
  <- {"id": ID, "check": {...OutputCheck}}  or  {"id": ID, "error": NAME, "message": TEXT}
"""

from __future__ import annotations

import json
import sys

import torch

from kagent.sandbox import compare as cmp
from kagent.sandbox.confine import PR_SET_DUMPABLE, prctl
from kagent.sandbox.errors import KagentError, one_line
from kagent.sandbox.harness import TIMED_OUTPUT, build_reference
from kagent.sandbox.models import EvalRequest, OutputCheck


def verify(request: EvalRequest, outputs_path: str) -> OutputCheck:
    """Recompute the reference on every input set (one at a time: never every set's answer at
    once) and compare the saved outputs with it, against the float64 answer where the task has
    one, exactly as the harness judges."""
    reference = build_reference(request, validate=False)  # the worker validated the task
    try:
        saved = torch.load(outputs_path, map_location="cpu", weights_only=True, mmap=True)
    except FileNotFoundError:
        return OutputCheck(ok=False, detail="no outputs were saved with the verdict")
    except Exception as err:  # anything a forger could write: a truncated zip, a pickle with code, odd objects
        return OutputCheck(ok=False, detail=f"the saved outputs cannot be read: {one_line(err)}")
    names = list(reference.sets)
    if not isinstance(saved, dict) or set(saved) != {*names, TIMED_OUTPUT}:
        return OutputCheck(ok=False, detail=f"the saved outputs are not one entry per input set ({', '.join(names)}) and the timed call")
    worst_abs = worst_rel = 0.0
    for name in names:
        expected = reference.expect(reference.sets[name])
        for entry in [name, TIMED_OUTPUT] if name == names[0] else [name]:
            try:
                result = cmp.compare(saved[entry], expected.ref, reference.tolerance_dtype, request.allow_tf32, gold=expected.gold)
            except Exception as err:  # odd objects a forger could save
                return OutputCheck(ok=False, input_sets=names, failed_input_set=entry,
                                   detail=f"the saved outputs cannot be compared: {one_line(err)}")
            if not result.ok:
                return OutputCheck(ok=False, input_sets=names, failed_input_set=entry, detail=result.detail,
                                   max_abs_error=result.max_abs_error, max_rel_error=result.max_rel_error)
            worst_abs, worst_rel = max(worst_abs, result.max_abs_error or 0.0), max(worst_rel, result.max_rel_error or 0.0)
        del expected
    return OutputCheck(ok=True, input_sets=names, max_abs_error=worst_abs, max_rel_error=worst_rel)


def _send(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    prctl(PR_SET_DUMPABLE, 0)  # no ptrace, no /proc/PID/mem for other processes of this user
    _send({"ready": True})
    for line in sys.stdin:
        job = json.loads(line)
        try:
            check = verify(EvalRequest(**job["request"]), job["outputs"])
            _send({"id": job["id"], "check": check.model_dump(mode="json")})
        except KagentError as err:
            _send({"id": job["id"], "error": type(err).__name__, "message": str(err)})
        except Exception as err:
            _send({"id": job["id"], "error": "SandboxError", "message": f"the verifier failed: {one_line(err)}"})
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
