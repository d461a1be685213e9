"""One error hierarchy for kagent. Each error knows its CLI exit code; the sandbox maps the
ones raised inside a candidate evaluation to verdict statuses."""


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
