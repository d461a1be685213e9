"""What crosses a process boundary inside the sandbox, as pydantic models, in one place: the
sender builds the model and writes its JSON, the receiver validates the JSON with it.

- The fork server (zygote.py): `Ready`, then per evaluation `ForkJob` -> `Forked`, `Exited`; the
  candidate's process leaves a `Result`, `Signed` with the evaluation's key, in its workdir.
- The worker's timing FIFO (blocks.py <-> timing.serve): `WorkerRequest` (`Warmup`, `Prepare`,
  `Block`, `End`) -> `WorkerReply` (`Hello` first, then `Warmed`, `Prepared`, `Timed`, or
  `Aborted`), each reply `Signed`. The worker runs candidate code: its replies are validated
  strictly, and one that does not validate is a forged result, not an error.
- The verifier (verifier.py): `VerifierJob` (compile, ring, warmup, prepare, block, check) ->
  `VerifierReply` (or `Failed`: the error it raised), each reply with the job's `id` beside its
  fields (`envelope`). The verifier is trusted: a reply that does not validate is kagent's bug.

The outputs a `correct` verdict was judged on go from the worker to the verifier on disk: the
worker writes each entry's output leaves to OUTPUTS_DIR/K.pt (K: the entry's position) the
moment it has judged it, and the fork server saves the list of entry names (zygote.OUTPUTS_FILE,
beside that folder) once the verdict is `correct`. The verifier loads one entry at a time, so
neither process ever holds every output at once (issue 9: the sandbox holds about 3x the task's
own inputs and outputs).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Annotated, Callable, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from kagent.errors import ErrorMessage
from kagent.sandbox.models import EvalRequest, OutputCheck, Verdict

OUTPUTS_DIR = "outputs"  # beside zygote.OUTPUTS_FILE, in the evaluation's workdir


class SavedOutputs(BaseModel):
    """The worker's index of saved outputs: input set names (e.g. `seed:0`) and sampled timed
    calls (`timed:G`, blocks.TIMED_PREFIX), in the order they were written."""

    entries: list[str]

    @staticmethod
    def entry_path(directory: str | Path, position: int) -> Path:
        """The file holding entry number `position` (its output leaves, torch.save'd)."""
        return Path(directory) / OUTPUTS_DIR / f"{position}.pt"


def dumps(message: BaseModel) -> str:
    """`message` as one line of JSON text. Through json.dumps, not pydantic's own JSON: an
    infinite error (`max_rel_error`) stays `Infinity`, where pydantic would write null."""
    return json.dumps(message.model_dump(mode="json"))


# -- the timing requests: parent -> worker (the FIFO) and parent -> verifier ----------------------

Side = Literal["reference", "compiled"]  # which of the verifier's timers a timing job runs


class _Message(BaseModel):
    """Every message: unknown fields are refused, not ignored (a reply from the worker is
    untrusted, and a field one end sends that the other never reads is a bug)."""

    model_config = ConfigDict(extra="forbid")


class Warmup(_Message):
    """Warm up: at least `calls` calls (timing.Timer.warm_up); answered by `Warmed`."""

    op: Literal["warmup"] = "warmup"
    calls: int = Field(ge=0)


class Prepare(_Message):
    """Settle the last block's sample and draw the next block's `calls` input sets, between
    blocks (outside any block's wall time); answered by `Prepared`."""

    op: Literal["prepare"] = "prepare"
    calls: int = Field(ge=1)


class Block(_Message):
    """One block of `calls` timed calls; answered by `Timed`."""

    op: Literal["block"] = "block"
    calls: int = Field(ge=1)


class End(_Message):
    """Timing is over (also what the worker reads once the parent is gone); no answer."""

    op: Literal["end"] = "end"


WorkerRequest = Annotated[Union[Warmup, Prepare, Block, End], Field(discriminator="op")]
WORKER_REQUEST: TypeAdapter[WorkerRequest] = TypeAdapter(WorkerRequest)


# -- the timing replies: worker -> parent (signed, untrusted) and verifier -> parent ---------------
# Strict: a reply from the worker comes from the candidate's process, so nothing is coerced (no
# "1.5" for 1.5, no true for 1), and no time is negative, NaN or infinite.

_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Hello(_Message):
    """The worker's first message: it is ready to be timed; `meaningful` where its backend's
    timer measures the kernel (not the Triton interpreter)."""

    model_config = _STRICT
    op: Literal["hello"] = "hello"
    meaningful: bool


class Warmed(_Message):
    """The fastest warm-up call, in milliseconds."""

    model_config = _STRICT
    op: Literal["warmup"] = "warmup"
    warm_ms: float = Field(ge=0)


class Prepared(_Message):
    """How many input sets are ready for the next block."""

    model_config = _STRICT
    op: Literal["prepare"] = "prepare"
    prepared: int = Field(ge=0)


class Timed(_Message):
    """A block's per-call times in milliseconds, in call order (the parent checks their number
    against the calls it asked for)."""

    model_config = _STRICT
    op: Literal["block"] = "block"
    times_ms: list[Annotated[float, Field(ge=0)]]


class Aborted(_Message):
    """The worker stopped timing (its candidate failed); the parent stops asking."""

    model_config = _STRICT
    op: Literal["aborted"] = "aborted"


WorkerReply = Annotated[Union[Hello, Warmed, Prepared, Timed, Aborted], Field(discriminator="op")]
WORKER_REPLY: TypeAdapter[WorkerReply] = TypeAdapter(WorkerReply)


class Signed(_Message):
    """A message from the candidate's process, signed with the evaluation's key (zygote.sign,
    HMAC-SHA256, hex): a timing reply on the FIFO, the result file. `body` is the message's
    JSON text."""

    model_config = ConfigDict(extra="forbid", strict=True)
    body: str
    mac: str

    @classmethod
    def of(cls, message: BaseModel, sign: Callable[[str], str]) -> "Signed":
        """`message` as JSON text, signed by `sign` (body -> mac)."""
        body = dumps(message)
        return cls(body=body, mac=sign(body))

    def valid(self, key: bytes, sign: Callable[[bytes, str], str]) -> bool:
        """Whether `mac` is `sign(key, body)` (compared in constant time)."""
        return secrets.compare_digest(self.mac, sign(key, self.body))


# -- the verifier's jobs and replies -------------------------------------------------------------


class _Job(_Message):
    """A job for the verifier; `id` names the evaluation (its reply carries it back)."""

    id: str


class CompileJob(_Job):
    """Compile the task's reference with torch.compile (kept per task); answered by `Compiled`."""

    op: Literal["compile"] = "compile"
    request: EvalRequest


class RingJob(_Job):
    """Build the evaluation's reference and draw its warm-up ring; answered by `Ring`."""

    op: Literal["ring"] = "ring"
    request: EvalRequest


class WarmupJob(Warmup, _Job):
    """`Warmup` for the verifier's timer of `side`."""

    side: Side = "reference"


class PrepareJob(Prepare, _Job):
    """`Prepare` for the verifier's timer of `side`."""

    side: Side = "reference"


class BlockJob(Block, _Job):
    """`Block` for the verifier's timer of `side`."""

    side: Side = "reference"


class CheckJob(_Job):
    """Judge the outputs the worker saved (`outputs`: its SavedOutputs file) against the
    reference, and the sampled timed calls of `timed_blocks` (global call ranges [first, end),
    blocks.Session.timed_blocks); answered by `Checked`."""

    op: Literal["check"] = "check"
    request: EvalRequest
    outputs: str
    timed_blocks: list[tuple[int, int]] = []


VerifierJob = Annotated[Union[CompileJob, RingJob, WarmupJob, PrepareJob, BlockJob, CheckJob], Field(discriminator="op")]
VERIFIER_JOB: TypeAdapter[VerifierJob] = TypeAdapter(VerifierJob)


class CompileResult(_Message):
    """How the reference's torch.compile went: `ok`, seconds it took, and why not."""

    ok: bool
    compile_s: float
    error: str | None = None


class Compiled(_Message):
    """The reply to `CompileJob`."""

    op: Literal["compile"] = "compile"
    compiled: CompileResult


class Ring(_Message):
    """The reply to `RingJob`: the warm-up ring's length, how many timed calls' input sets a
    block may hold (timing.batch_calls), the task's speed of light (sol.SpeedOfLight's fields:
    validated by the parent, this module imports no torch) or why none, and whether a
    compiled reference is timed too (or why not)."""

    op: Literal["ring"] = "ring"
    ring: int
    batch: int = Field(ge=1)
    sol: dict | None = None
    sol_note: str | None = None
    compiled: bool = False
    compile_note: str | None = None


class Checked(_Message):
    """The reply to `CheckJob`: the verifier's judgement of the saved outputs."""

    op: Literal["check"] = "check"
    check: OutputCheck


class Failed(ErrorMessage):
    """The verifier's reply when a job raised: the error (kagent.errors.ErrorMessage)."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["error"] = "error"


_TRUSTED = ConfigDict(extra="forbid", strict=False, allow_inf_nan=True)


class VerifierWarmed(Warmed):
    """`Warmed`, from the verifier (trusted: not strict)."""

    model_config = _TRUSTED


class VerifierPrepared(Prepared):
    """`Prepared`, from the verifier."""

    model_config = _TRUSTED


class VerifierTimed(Timed):
    """`Timed`, from the verifier."""

    model_config = _TRUSTED


VerifierReply = Annotated[Union[Compiled, Ring, VerifierWarmed, VerifierPrepared, VerifierTimed, Checked, Failed],
                          Field(discriminator="op")]
VERIFIER_REPLY: TypeAdapter[VerifierReply] = TypeAdapter(VerifierReply)


def envelope(job_id: str, message: BaseModel) -> dict:
    """A reply as a server sends it: the job's `id` beside the message's fields (processes._Messages
    matches replies to jobs by it)."""
    return {"id": job_id, **message.model_dump(mode="json")}


# -- the fork server (zygote.py) -----------------------------------------------------------------


class Ready(_Message):
    """A server's first line: it imported torch and is ready. `confined`: the fork server
    locked the filesystem (confine.py); the verifier leaves it False."""

    ready: Literal[True] = True
    confined: bool = False


class ForkJob(_Message):
    """One evaluation for the fork server: the request, its workdir, the key its verdict and
    timing replies are signed with (hex) and its memory limit in MB."""

    id: str
    request: EvalRequest
    workdir: str
    key: str
    memory_mb: int = Field(gt=0)


class Forked(_Message):
    """The fork server started job `id` in process `pid` (as the fork server's namespace sees it)."""

    id: str
    pid: int


class Exited(_Message):
    """Job `id`'s process ended: its exit code, or the signal that killed it."""

    id: str
    exit_code: int | None = None
    signal: int | None = None


class Result(_Message):
    """What the candidate's process leaves in its result file (signed, `Signed`): a verdict,
    or the KagentError that ended the evaluation (`error`)."""

    model_config = ConfigDict(extra="forbid", strict=False)
    verdict: Verdict | None = None
    error: ErrorMessage | None = None
