"""The provider interface: messages in, one Completion out. Kept apart from the registry in
`agent.providers` so that each adapter file can import it without a cycle."""

from __future__ import annotations

import os
import threading
from typing import Any, Callable, ClassVar, Literal, TypeVar

from pydantic import BaseModel

from kagent.errors import ConfigError, ProviderError, one_line

Role = Literal["coder", "judge"]


T = TypeVar("T")
CANCEL_POLL_S = 0.1  # how soon a cancelled SDK call gives its caller back

class Message(BaseModel):
    """One chat message: role (system, user, assistant) and text."""

    role: Literal["system", "user", "assistant"]
    content: str


class Completion(BaseModel):
    """One reply: its text, the provider and model, input and output token counts (estimates when
    tokens_estimated), latency in seconds, and whether the model stopped at its output limit."""

    text: str
    provider: str
    model: str
    input_tokens: int
    output_tokens: int
    tokens_estimated: bool  # True where the counts are estimates (cmd:, replay:)
    latency_s: float
    truncated: bool = False  # the model stopped at its output token limit, mid-reply


class Provider:
    """One LLM behind `complete`. Constructing a provider validates its configuration (API key,
    archive path...) and raises ConfigError; `complete` raises ProviderError once its retries
    are spent. Neither ever lets an SDK exception or traceback through.

    The seam: a provider is a subclass in its own file under agent/providers/ that sets `name`
    (the part of --model before the first colon), `form` and `summary` (help text), takes
    `(model, *, base_url, timeout_s, max_retries)` and implements `complete(role, messages) ->
    Completion` (token counts as the provider reports them, else `estimate_tokens` with
    tokens_estimated=True; latency in seconds); one line in PROVIDERS registers it. A provider
    that blocks in an SDK wraps the call in `interruptible` so cancel() (Ctrl-C, --time-limit)
    takes effect. See docs/architecture.md for a worked example."""

    name: ClassVar[str]  # registry key: the part of --model before the first colon
    form: ClassVar[str]  # for help text: how its --model is written, e.g. "openai:MODEL"
    summary: ClassVar[str]  # for help text: what it is and what it needs, in one line
    takes_base_url: ClassVar[bool] = False  # whether make_provider hands it --base-url

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4):
        self.model = model
        self.base_url = base_url
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.cancelled = False  # set by cancel(): every call from then on fails at once

    @property
    def spec(self) -> str:
        """The provider's --model spec, `name:model`."""
        return f"{self.name}:{self.model}"

    def complete(self, role: Role, messages: list[Message]) -> Completion:
        """Send `messages` for `role` (coder or judge) and return the reply. Raises ProviderError (one
        line, no SDK exception) when no reply can be had, or once cancel() was called."""
        raise NotImplementedError

    def cancel(self) -> None:
        """End the calls in flight as far as the provider can (Ctrl-C, --time-limit) and make
        every later call raise ProviderError. Callable from any thread; idempotent."""
        self.cancelled = True

    def interruptible(self, request: Callable[[], T]) -> T:
        """`request()` (a blocking SDK call) on a daemon thread: its result or its exception,
        or ProviderError as soon as cancel() is called. An SDK request cannot be aborted from
        another thread; the abandoned one ends with its timeout, or with the process."""
        outcome: dict = {}
        done = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = request()
            except BaseException as err:  # handed to the caller, as if raised there
                outcome["error"] = err
            finally:
                done.set()

        threading.Thread(target=run, name=f"{self.name}-request", daemon=True).start()
        while not done.wait(CANCEL_POLL_S):
            self.check_cancelled()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]

    def check_cancelled(self) -> None:
        """Raise ProviderError if cancel() was called: no new request after a stop."""
        if self.cancelled:
            raise ProviderError(f"{self.name}: cancelled (the run is stopping)")

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec}>"


def estimate_tokens(text: str) -> int:
    """About four characters a token: good enough for budgets where no real count exists."""
    return (len(text) + 3) // 4


def require_env(var: str, spec: str) -> str:
    """The value of environment variable `var`; ConfigError naming the --model spec that needs it when
    unset or blank."""
    value = os.environ.get(var, "").strip()
    if not value:
        raise ConfigError(f"{var} is not set (needed by --model {spec})")
    return value


def attempts(request: Any) -> int:
    """How many times the SDK sent a request, read from the retry counter both SDKs add to it."""
    try:
        return int(request.headers.get("x-stainless-retry-count", "0")) + 1
    except (AttributeError, ValueError):
        return 1


def after(tries: int) -> str:
    """` after N attempts` for an error message, empty for one attempt."""
    return f" after {tries} attempts" if tries > 1 else ""


def status_message(provider: str, status: int, detail: str, tries: int) -> str:
    """The one line a ProviderError carries for an HTTP error that survived the SDK's retries."""
    what = {401: "authentication failed (401)", 429: "rate limited (429)"}.get(status, f"HTTP {status}")
    what += after(tries)
    return f"{provider}: {what}: {one_line(detail) or 'no message'}"


def error_detail(err: Any) -> str:
    """The human message of an SDK status error: the body's {"error": {"message"}}, {"message"}
    or {"detail"} (OpenAI, Anthropic, vLLM, FastAPI servers), else the raw text of the reply."""
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        for candidate in (inner.get("message") if isinstance(inner, dict) else inner, body.get("message"),
                          body.get("detail")):
            if isinstance(candidate, str) and candidate.strip():
                return candidate
    if isinstance(body, str) and body.strip():
        return body
    return err.response.text or err.message


def sdk_failure(provider: str, sdk: Any, err: Exception, timeout_s: float, base_url: Any) -> ProviderError:
    """Turn whatever the openai/anthropic SDK raised after its own retries into one ProviderError
    line: status code and server message, a timeout, or a connection failure."""
    if isinstance(err, sdk.APIStatusError):
        return ProviderError(status_message(provider, err.status_code, error_detail(err), attempts(err.request)))
    if isinstance(err, sdk.APITimeoutError):
        return ProviderError(f"{provider}: no reply within {timeout_s:g}s{after(attempts(err.request))}")
    if isinstance(err, sdk.APIConnectionError):
        cause = one_line(err.__cause__ or err, 200)
        return ProviderError(f"{provider}: cannot reach {base_url}{after(attempts(err.request))}: {cause}")
    return ProviderError(f"{provider}: {one_line(err) or type(err).__name__}")


def not_understood(provider: str, base_url: Any, response: Any) -> ProviderError:
    """A 200 whose body the SDK could not parse (it then hands back the raw text)."""
    return ProviderError(f"{provider}: {base_url} sent a reply the SDK cannot read: {one_line(response, 120)}")
