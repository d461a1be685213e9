"""One error hierarchy for kagent. Each error knows its CLI exit code; the sandbox maps the
ones raised inside a candidate evaluation to verdict statuses. `ErrorMessage` is the one way an
error crosses a process boundary (fork server, verifier, Ray worker)."""

from __future__ import annotations

from pydantic import BaseModel


def one_line(text: object, limit: int = 300) -> str:
    """Any text as one line of at most `limit` characters, for error messages."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


class KagentError(Exception):
    """Base of every error kagent raises on purpose. `str(err)` is one line for the user."""

    exit_code = 1


class UsageError(KagentError):
    """The user asked for something that cannot work (bad flag value, unknown backend)."""

    exit_code = 2


class TaskError(UsageError):
    """A task file is missing or malformed. The message names the file."""


class CandidateError(UsageError):
    """A candidate file is missing or unreadable (not: wrong, slow or cheating)."""


class CompileError(KagentError):
    """A candidate's kernel source failed to compile. Carries the compiler output."""

    def __init__(self, message: str, log: str = ""):
        super().__init__(message)
        self.log = log


class SandboxError(KagentError):
    """The sandbox itself failed (could not start a worker), not the candidate."""


class ConfigError(UsageError):
    """A bad option or config value: unknown provider, malformed model spec, missing API key."""


class ProviderError(KagentError):
    """An LLM provider failed after its retries (HTTP error, timeout, command exited non-zero)."""


class TaskTooLarge(TaskError):
    """A task needs more memory than the evaluation's limit. The message says how to raise it."""


class ErrorMessage(BaseModel):
    """A KagentError on the wire: its class name, its one-line message and, for a CompileError,
    the compiler's log. Decoding never trusts the name: anything that is not one of this
    module's KagentError classes (a forged or unknown name) becomes a SandboxError."""

    error: str
    message: str
    log: str = ""

    @classmethod
    def of(cls, err: BaseException) -> "ErrorMessage":
        """Encode `err`; an exception that is not a KagentError is kagent's own failure."""
        if isinstance(err, KagentError):
            return cls(error=type(err).__name__, message=str(err), log=getattr(err, "log", "") or "")
        return cls(error="SandboxError", message=f"{type(err).__name__}: {err}")

    def to_error(self) -> KagentError:
        """The error this message stands for, ready to raise."""
        found = globals().get(self.error)
        error_class = found if isinstance(found, type) and issubclass(found, KagentError) else SandboxError
        if issubclass(error_class, CompileError):
            return error_class(self.message, self.log)
        return error_class(self.message)
