"""The messages between the sandbox's processes (sandbox/messages.py): every one survives its
trip through JSON; a timing reply from the worker (candidate code runs in that process) that
does not validate ends the parent's timing as `forged_result`, never as a traceback; the
verifier refuses a job it does not know and the parent calls a verifier reply it cannot read
kagent's own failure."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time

import pytest
from pydantic import BaseModel, ValidationError

from conftest import ROOT, TASKS
from kagent import errors
from kagent.sandbox import blocks
from kagent.sandbox import messages as msg
from kagent.sandbox.models import EvalRequest, OutputCheck, Verdict
from kagent.sandbox.processes import _Messages
from kagent.sandbox.supervisor import Sandbox, worker_env
from kagent.sandbox.zygote import sign

REQUEST = EvalRequest(task_path=str(TASKS / "01_relu.py"), candidate_path=str(ROOT / "tests" / "candidates" / "01_relu.py"),
                      backend="triton", device="cpu")

ROUND_TRIPS = [
    (msg.WORKER_REQUEST, msg.Warmup(calls=5)), (msg.WORKER_REQUEST, msg.Prepare(calls=3)),
    (msg.WORKER_REQUEST, msg.Block(calls=3)), (msg.WORKER_REQUEST, msg.End()),
    (msg.WORKER_REPLY, msg.Hello(meaningful=True)), (msg.WORKER_REPLY, msg.Warmed(warm_ms=0.25)),
    (msg.WORKER_REPLY, msg.Prepared(prepared=3)), (msg.WORKER_REPLY, msg.Timed(times_ms=[0.5, 1.0, 0.75])),
    (msg.WORKER_REPLY, msg.Aborted()),
    (msg.VERIFIER_JOB, msg.CompileJob(id="j", request=REQUEST)), (msg.VERIFIER_JOB, msg.RingJob(id="j", request=REQUEST)),
    (msg.VERIFIER_JOB, msg.WarmupJob(id="j", calls=5, side="compiled")),
    (msg.VERIFIER_JOB, msg.PrepareJob(id="j", calls=2)), (msg.VERIFIER_JOB, msg.BlockJob(id="j", calls=2)),
    (msg.VERIFIER_JOB, msg.CheckJob(id="j", request=REQUEST, outputs="/x/outputs.pt", timed_blocks=[(0, 2), (2, 4)])),
    (msg.VERIFIER_REPLY, msg.Compiled(compiled=msg.CompileResult(ok=False, compile_s=1.5, error="inductor failed"))),
    (msg.VERIFIER_REPLY, msg.Ring(ring=4, batch=8, sol=None, sol_note="no speed of light", compiled=True)),
    (msg.VERIFIER_REPLY, msg.VerifierWarmed(warm_ms=0.5)), (msg.VERIFIER_REPLY, msg.VerifierPrepared(prepared=2)),
    (msg.VERIFIER_REPLY, msg.VerifierTimed(times_ms=[0.1, 0.2])),
    (msg.VERIFIER_REPLY, msg.Checked(check=OutputCheck(ok=False, detail="wrong", max_rel_error=float("inf")))),
    (msg.VERIFIER_REPLY, msg.Failed(error="CompileError", message="g++ failed", log="x.cpp:3: error")),
    (msg.Ready, msg.Ready(confined=True)),
    (msg.ForkJob, msg.ForkJob(id="j", request=REQUEST, workdir="/w", key="ab" * 32, memory_mb=512)),
    (msg.Forked, msg.Forked(id="j", pid=12)), (msg.Exited, msg.Exited(id="j", signal=9)),
    (msg.Result, msg.Result(verdict=Verdict(status="correct", reason="ok", message="ok", backend="triton", device="cpu", max_rel_error=float("inf")))),
    (msg.Result, msg.Result(error=errors.ErrorMessage(error="TaskError", message="no Model"))),
    (msg.Signed, msg.Signed(body="{}", mac="00")),
]


@pytest.mark.parametrize("check, message", ROUND_TRIPS, ids=lambda m: type(m).__name__ if isinstance(m, BaseModel) else "")
def test_every_message_round_trips(check, message):
    line = msg.dumps(message)
    back = (check.validate_python if hasattr(check, "validate_python") else check.model_validate)(json.loads(line))
    assert type(back) is type(message) and back == message


def test_a_job_the_verifier_does_not_know_is_refused():
    for job in ({"id": "j", "op": "end"}, {"id": "j", "op": "exec", "code": "print(1)"},
                {"id": "j", "op": "block", "calls": 2, "side": "candidate"}, {"op": "ring", "request": {}}):
        with pytest.raises(ValidationError):
            msg.VERIFIER_JOB.validate_python(job)


def test_the_verifier_answers_an_unknown_job_with_an_error():
    """The real verifier process: an unknown op gets a SandboxError reply, and it goes on serving."""
    proc = subprocess.Popen([sys.executable, "-I", "-m", "kagent.sandbox.verifier"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, env=worker_env("cpu"), cwd="/", bufsize=0)
    try:
        lines = _Messages(proc.stdout.fileno())
        assert msg.Ready.model_validate(lines.read(300))
        for job_id in ("a", "b"):
            proc.stdin.write((json.dumps({"id": job_id, "op": "exec"}) + "\n").encode())
            reply = lines.about(job_id, 60)
            failed = msg.VERIFIER_REPLY.validate_python({k: v for k, v in reply.items() if k != "id"})
            assert isinstance(failed, msg.Failed) and failed.error == "SandboxError", reply
            assert "exec" in failed.message
    finally:
        proc.stdin.close()
        proc.wait(timeout=30)


def test_a_malformed_verifier_reply_is_kagents_own_failure(tmp_path):
    sandbox = Sandbox("cpu", root=tmp_path)
    read, write = os.pipe()
    sandbox._verifier_messages = _Messages(read)
    os.write(write, (json.dumps({"id": "j", "op": "block", "times_ms": "fast"}) + "\n").encode())
    with pytest.raises(errors.SandboxError, match="malformed reply"):
        sandbox._ask_verifier(msg.BlockJob(id="j", calls=2), 5, sent=True)
    os.close(write)
    os.close(read)


# -- the parent's timing session, with the test as the worker ------------------------------------


def _verifier(job: BaseModel, wait_s: float = 0, sent: bool = False) -> BaseModel:
    """The verifier's side of the timing, well-formed (this test is about the worker's)."""
    if isinstance(job, msg.RingJob):
        return msg.Ring(ring=1, batch=8)
    if isinstance(job, msg.WarmupJob):
        return msg.VerifierWarmed(warm_ms=0.01)
    if isinstance(job, msg.PrepareJob):
        return msg.VerifierPrepared(prepared=job.calls)
    return msg.VerifierTimed(times_ms=[0.001] * job.calls)


class RawBody(str):
    """A reply body written as it is and signed with the evaluation's key (a forger holding it)."""


def _run_session(tmp_path, lines: list) -> blocks.Session:
    """A timing session driven by blocks.Session (the parent's code) over its FIFOs, the worker's
    replies being `lines`: a BaseModel is signed with the evaluation's key as the harness
    signs it, a RawBody is signed as it is, a dict is written as it is (a forger's)."""
    sleeper = subprocess.Popen(["sleep", "60"])  # a quiet stand-in for the candidate's and the verifier's processes
    key = secrets.token_bytes(32)
    session = blocks.Session(str(tmp_path), key, sign, REQUEST, "eval-1", lambda job: None, _verifier,
                             lambda: [sleeper.pid], sleeper.pid)
    session.open()
    try:
        out = os.open(tmp_path / blocks.FROM_WORKER, os.O_WRONLY | os.O_NONBLOCK)
        for line in lines:
            if isinstance(line, BaseModel):
                line = msg.Signed.of(line, lambda body: sign(key, body)).model_dump()
            elif isinstance(line, RawBody):
                line = {"body": str(line), "mac": sign(key, str(line))}
            if isinstance(line, dict):
                line = json.dumps(line)
            os.write(out, (line + "\n").encode())
        os.close(out)
        session.poll(time.monotonic() + 30)
    finally:
        session.close()
        sleeper.kill()
        sleeper.wait()
    return session


def _good_worker(times: list[list] | None = None) -> list:
    """The worker's replies to a whole non-meaningful timing: hello, warm-up, 3 blocks of 1 call."""
    replies = [msg.Hello(meaningful=False), msg.Warmed(warm_ms=0.01)]
    for k in range(3):
        replies += [msg.Prepared(prepared=1), msg.Timed(times_ms=[0.001])]
    return replies


def test_well_formed_worker_replies_finish_the_timing(tmp_path):
    session = _run_session(tmp_path, _good_worker())
    assert session.refused is None and session.finished and len(session.candidate) == 3


class _Forged(BaseModel):
    """Any JSON body, signed with the evaluation's key as a forger holding it would."""

    model_config = {"extra": "allow"}


def _body(**fields) -> BaseModel:
    return _Forged(**fields)


@pytest.mark.parametrize("where, forged", [
    (0, _body(op="hello", meaningful="yes")),                  # a hello that is not a bool
    (1, _body(op="warmup", warm_ms=-1.0)),                     # a negative warm-up time
    (1, _body(op="warmup", warm_ms="1.5")),                    # a number as text
    (3, _body(op="block", times_ms=[0.001, 0.001])),           # wrong number of times
    (3, _body(op="block", times_ms=[-0.001])),                 # a negative time
    (3, _body(op="block", times_ms=[True])),                   # not a number
    (3, _body(op="block", times_ms="0.001")),                  # not a list
    (3, _body(op="block", times_ms=[0.001], extra=1)),         # a field nobody sent
    (3, _body(op="prepare", prepared=1)),                      # the answer to another request
    (3, _body(op="block")),                                    # no times at all
])
def test_a_malformed_timing_reply_is_forged_result(tmp_path, where, forged):
    replies = _good_worker()
    replies[where] = forged
    session = _run_session(tmp_path, replies)
    assert session.refused is not None and session.refused.reason == "forged_result", session.refused
    assert not session.finished


@pytest.mark.parametrize("line", [
    {"body": json.dumps({"op": "hello", "meaningful": True})},              # no mac
    {"body": json.dumps({"op": "hello", "meaningful": True}), "mac": 7},    # a mac that is not text
    {"body": {"op": "hello", "meaningful": True}, "mac": "00"},            # a body that is not text
])
def test_an_unsigned_timing_reply_is_forged_result(tmp_path, line):
    session = _run_session(tmp_path, [line])
    assert session.refused is not None and session.refused.reason == "forged_result", session.refused


@pytest.mark.parametrize("body", ["[1, 2]", "null", "not json", '{"op": "hello", "meaningful": true'])
def test_a_signed_body_that_is_not_an_object_is_forged_result(tmp_path, body):
    session = _run_session(tmp_path, [RawBody(body)])
    assert session.refused is not None and session.refused.reason == "forged_result", session.refused


# -- the parent's clock against a worker claiming less than it took --------------------------------


def _slow_claiming_worker(tmp_path, key: bytes, block_s: float, claim_ms: float) -> None:
    """A worker answering the parent's requests as they come: each block takes `block_s` on
    any clock but claims `claim_ms` per call (a clock hooked inside its process)."""
    inbox = os.fdopen(os.open(tmp_path / blocks.TO_WORKER, os.O_RDONLY), "r")
    out = os.open(tmp_path / blocks.FROM_WORKER, os.O_WRONLY)

    def reply(model: BaseModel) -> None:
        os.write(out, (json.dumps(msg.Signed.of(model, lambda body: sign(key, body)).model_dump()) + "\n").encode())

    reply(msg.Hello(meaningful=True))
    for line in inbox:
        request = msg.WORKER_REQUEST.validate_json(line)
        if isinstance(request, msg.Warmup):
            reply(msg.Warmed(warm_ms=claim_ms))
        elif isinstance(request, msg.Prepare):
            reply(msg.Prepared(prepared=request.calls))
        elif isinstance(request, msg.Block):
            time.sleep(block_s)
            reply(msg.Timed(times_ms=[claim_ms] * request.calls))
        else:
            break
    os.close(out)


@pytest.mark.parametrize("other_load, verdict", [(0.0, "forged_result"), (0.6, "parent's clock")])
def test_a_short_clock_claim_is_forged_on_a_quiet_machine_and_replaced_on_a_loaded_one(tmp_path, monkeypatch, other_load, verdict):
    """Blocks of 40 ms claimed as 8 x 0.1 ms. With the CPUs quiet that is a forged clock; with
    other processes holding them (the machine's load is what is set here, read from
    /proc/stat otherwise) a short claim proves nothing, and the candidate's times become the
    parent's: never faster than the parent saw."""
    import threading

    from kagent.sandbox import noise

    monkeypatch.setattr(blocks.noise, "assess", lambda *a: noise.Noise(spread=0.0, other_load=other_load,
                                                                        noisy=other_load > noise.LOAD_LIMIT))
    request = REQUEST.model_copy(update={"min_runs": 16, "max_runs": 16})
    sleeper = subprocess.Popen(["sleep", "60"])  # a quiet stand-in for the candidate's and the verifier's processes
    key = secrets.token_bytes(32)
    session = blocks.Session(str(tmp_path), key, sign, request, "eval-1", lambda job: None, _verifier,
                             lambda: [sleeper.pid], sleeper.pid)
    session.open()
    worker = threading.Thread(target=_slow_claiming_worker, args=(tmp_path, key, 0.04, 0.1), daemon=True)
    worker.start()
    deadline = time.monotonic() + 60
    try:
        while not (session.started or session.refused) and time.monotonic() < deadline:
            session.poll(deadline)  # as the supervisor does: until the worker's hello comes
            time.sleep(0.01)
    finally:
        session.close()
        sleeper.kill()
        sleeper.wait()
    if verdict == "forged_result":
        assert session.refused is not None and session.refused.reason == "forged_result", session.refused
        assert "parent's clock" in session.refused.message
    else:
        assert session.refused is None and session.finished, session.refused
        ref, cand = session._stats()
        assert cand.median_ms > 3.0, cand  # 40 ms over 8 calls, not the 0.1 ms claimed
        assert blocks.clock_share(session.candidate[session.kept_from[0]:], session.reference[session.kept_from[1]:]) >= blocks.FORGED_SHARE
        assert any("parent's" in note for note in session.notes), session.notes
