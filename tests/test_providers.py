"""The LLM providers, without a network: the openai/anthropic adapters run their real SDKs against
recorded HTTP exchanges (tests/recordings/) served by a mock transport; cmd: runs real
subprocesses; replay: reads a real SQLite archive."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import httpx2  # the HTTP library both installed SDKs are built on (not httpx)
import pytest

from kagent.agent.providers import PROVIDERS, Message, estimate_tokens, make_provider, parse_model_spec, providers_help
from kagent.errors import ConfigError, ProviderError

RECORDINGS = Path(__file__).resolve().parent / "recordings"


def recording(name: str) -> dict:
    return json.loads((RECORDINGS / name).read_text())


class Server:
    """Answers the SDK's requests with the given replies in turn (the last one repeats) and
    keeps every request it saw. A reply is (status, headers, body) or an exception to raise."""

    def __init__(self, *replies):
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        status, headers, body = reply
        return httpx2.Response(status, headers=headers, json=body)

    def client(self) -> httpx2.Client:
        return httpx2.Client(transport=httpx2.MockTransport(self))

    def sent(self, i: int = -1) -> dict:
        return json.loads(self.requests[i].content)


def ok(rec: dict):
    return 200, rec["response"]["headers"], rec["response"]["body"]


def error(errors: dict, status: int):
    # retry-after-ms makes the SDK's backoff 1 ms instead of 0.5 s and up. It must be > 0:
    # both SDKs ignore 0 and fall back to their exponential backoff.
    return status, {**errors[str(status)]["headers"], "retry-after-ms": "1"}, errors[str(status)]["body"]


def messages_of(rec: dict) -> list[Message]:
    body = rec["request"]["body"]
    system = [Message(role="system", content=body["system"])] if "system" in body else []
    return system + [Message(**m) for m in body["messages"]]


@pytest.fixture
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)


# --- openai ---------------------------------------------------------------------------------

def test_openai_sends_the_recorded_request_and_reads_the_reply(keys):
    rec = recording("openai_chat.json")
    server = Server(ok(rec))
    model = rec["request"]["body"]["model"]
    provider = make_provider(f"openai:{model}", http_client=server.client())

    completion = provider.complete("coder", messages_of(rec))

    (request,) = server.requests
    assert str(request.url) == rec["request"]["url"]
    assert request.method == "POST"
    for header, value in rec["request"]["headers"].items():
        assert request.headers[header] == value
    assert server.sent() == rec["request"]["body"]
    reply = rec["response"]["body"]
    assert completion.text == reply["choices"][0]["message"]["content"]
    assert (completion.input_tokens, completion.output_tokens) == (61, 164)
    assert not completion.tokens_estimated
    assert (completion.provider, completion.model) == ("openai", model)
    assert completion.latency_s >= 0


def test_openai_compatible_server_needs_no_key_and_may_omit_usage(keys, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    rec = recording("openai_chat.json")
    body = {k: v for k, v in rec["response"]["body"].items() if k != "usage"}
    server = Server((200, {}, body))
    provider = make_provider("openai:Qwen/Qwen2.5-Coder-32B-Instruct", base_url="http://127.0.0.1:8000/v1",
                             http_client=server.client())

    completion = provider.complete("judge", messages_of(rec))

    assert str(server.requests[0].url) == "http://127.0.0.1:8000/v1/chat/completions"
    assert server.requests[0].headers["authorization"] == "Bearer EMPTY"
    assert server.sent()["model"] == "Qwen/Qwen2.5-Coder-32B-Instruct"
    assert completion.tokens_estimated
    assert completion.output_tokens == estimate_tokens(completion.text)


def test_openai_retries_a_rate_limit_then_succeeds(keys):
    rec, errors = recording("openai_chat.json"), recording("openai_errors.json")
    server = Server(error(errors, 429), ok(rec))
    provider = make_provider("openai:gpt-4o", max_retries=2, http_client=server.client())

    completion = provider.complete("coder", messages_of(rec))

    assert len(server.requests) == 2
    assert server.sent(0) == server.sent(1)
    assert completion.text == rec["response"]["body"]["choices"][0]["message"]["content"]


def test_openai_gives_up_after_max_retries_with_one_line(keys):
    rec, errors = recording("openai_chat.json"), recording("openai_errors.json")
    server = Server(error(errors, 500))
    provider = make_provider("openai:gpt-4o", max_retries=2, http_client=server.client())

    with pytest.raises(ProviderError) as info:
        provider.complete("coder", messages_of(rec))

    assert len(server.requests) == 3
    assert str(info.value) == ("openai: HTTP 500 after 3 attempts: The server had an error while processing "
                               "your request. Sorry about that!")
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_openai_authentication_failure_is_not_retried(keys):
    rec, errors = recording("openai_chat.json"), recording("openai_errors.json")
    server = Server(error(errors, 401))
    provider = make_provider("openai:gpt-4o", max_retries=3, http_client=server.client())

    with pytest.raises(ProviderError, match=r"^openai: authentication failed \(401\): Incorrect API key") as info:
        provider.complete("coder", messages_of(rec))

    assert len(server.requests) == 1
    assert "\n" not in str(info.value)


def test_openai_timeout_becomes_provider_error(keys):
    rec = recording("openai_chat.json")
    server = Server(httpx2.ReadTimeout("timed out"))
    provider = make_provider("openai:gpt-4o", max_retries=1, timeout_s=30, http_client=server.client())

    with pytest.raises(ProviderError, match=r"^openai: no reply within 30s after 2 attempts$"):
        provider.complete("coder", messages_of(rec))
    assert len(server.requests) == 2


# --- anthropic ------------------------------------------------------------------------------

def test_anthropic_sends_system_apart_and_reads_the_reply(keys):
    rec = recording("anthropic_messages.json")
    server = Server(ok(rec))
    model = rec["request"]["body"]["model"]
    provider = make_provider(f"anthropic:{model}", http_client=server.client())

    completion = provider.complete("judge", messages_of(rec))

    (request,) = server.requests
    assert str(request.url) == rec["request"]["url"]
    for header, value in rec["request"]["headers"].items():
        assert request.headers[header] == value
    assert server.sent() == rec["request"]["body"]  # system split out, max_tokens 16000
    assert completion.text == "".join(block["text"] for block in rec["response"]["body"]["content"])
    assert (completion.input_tokens, completion.output_tokens) == (118, 79)
    assert not completion.tokens_estimated
    assert (completion.provider, completion.model) == ("anthropic", model)


def test_anthropic_joins_several_system_messages_and_omits_none(keys):
    rec = recording("anthropic_messages.json")
    server = Server(ok(rec))
    provider = make_provider("anthropic:claude-sonnet-4-6", http_client=server.client())

    provider.complete("coder", [Message(role="system", content="A."), Message(role="system", content="B."),
                                Message(role="user", content="hi")])
    provider.complete("coder", [Message(role="user", content="hi")])

    assert server.sent(0)["system"] == "A.\n\nB."
    assert server.sent(0)["messages"] == [{"role": "user", "content": "hi"}]
    assert "system" not in server.sent(1)


@pytest.mark.parametrize("status", [429, 529])
def test_anthropic_retries_rate_limit_and_overload_then_succeeds(keys, status):
    rec, errors = recording("anthropic_messages.json"), recording("anthropic_errors.json")
    server = Server(error(errors, status), ok(rec))
    provider = make_provider("anthropic:claude-sonnet-4-6", max_retries=2, http_client=server.client())

    completion = provider.complete("judge", messages_of(rec))

    assert len(server.requests) == 2
    assert completion.output_tokens == 79


def test_anthropic_gives_up_after_max_retries_with_one_line(keys):
    rec, errors = recording("anthropic_messages.json"), recording("anthropic_errors.json")
    server = Server(error(errors, 500))
    provider = make_provider("anthropic:claude-sonnet-4-6", max_retries=1, http_client=server.client())

    with pytest.raises(ProviderError) as info:
        provider.complete("judge", messages_of(rec))

    assert len(server.requests) == 2
    assert str(info.value) == "anthropic: HTTP 500 after 2 attempts: Internal server error"


def test_anthropic_authentication_failure(keys):
    rec, errors = recording("anthropic_messages.json"), recording("anthropic_errors.json")
    server = Server(error(errors, 401))
    provider = make_provider("anthropic:claude-sonnet-4-6", http_client=server.client())

    with pytest.raises(ProviderError) as info:
        provider.complete("judge", messages_of(rec))

    assert str(info.value) == "anthropic: authentication failed (401): invalid x-api-key"
    assert len(server.requests) == 1


# --- both SDK adapters -----------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["openai:qwen2.5-coder", "anthropic:claude-sonnet-4-6"])
@pytest.mark.parametrize("status,headers,body,message", [
    (404, {}, {"object": "error", "message": "The model `qwen2.5-coder` does not exist.", "type": "NotFoundError",
               "code": 404}, "HTTP 404: The model `qwen2.5-coder` does not exist."),  # vLLM's error shape
    (502, {"content-type": "text/html"}, "<html><body><h1>502 Bad Gateway</h1>\n</body></html>",
     "HTTP 502: <html><body><h1>502 Bad Gateway</h1> </body></html>"),  # a proxy in front
    (200, {"content-type": "text/plain"}, "Hello from llama.cpp", "http://127.0.0.1:8080/v1/ sent a reply the SDK"
                                                                   " cannot read: Hello from llama.cpp"),
])
def test_odd_servers_give_one_line_provider_errors(keys, monkeypatch, spec, status, headers, body, message):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:8080/v1")  # anthropic: takes no --base-url
    def serve(request):
        if isinstance(body, str):
            return httpx2.Response(status, headers=headers, text=body)
        return httpx2.Response(status, headers=headers, json=body)

    provider = make_provider(spec, base_url="http://127.0.0.1:8080/v1", max_retries=0,
                             http_client=httpx2.Client(transport=httpx2.MockTransport(serve)))
    with pytest.raises(ProviderError) as info:
        provider.complete("coder", [Message(role="user", content="hi")])
    assert str(info.value) == f"{spec.split(':')[0]}: {message}"


# --- cmd: -----------------------------------------------------------------------------------

ECHO = """
import json, sys
request = json.load(sys.stdin)
assert sys.stdin.read() == ""
sys.stdout.write(json.dumps(request) + "\\n" + request["role"] + ": " + request["messages"][-1]["content"])
"""


def python_command(code: str) -> str:
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}"


def test_cmd_writes_one_json_request_and_returns_stdout():
    command = python_command(ECHO)
    provider = make_provider(f"cmd:{command}")
    conversation = [Message(role="system", content="Be brief."), Message(role="user", content='say "hi": now')]

    completion = provider.complete("judge", conversation)

    request_line, reply = completion.text.split("\n", 1)
    assert json.loads(request_line) == {
        "role": "judge", "model": command,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": 'say "hi": now'}],
    }
    assert reply == 'judge: say "hi": now'
    assert (completion.provider, completion.model) == ("cmd", command)
    assert completion.tokens_estimated
    assert completion.output_tokens == estimate_tokens(completion.text)


def test_cmd_nonzero_exit_names_code_and_last_stderr_line():
    code = "import sys; sys.stderr.write('loading\\nout of credits\\n\\n'); sys.exit(3)"
    provider = make_provider(f"cmd:{python_command(code)}")

    with pytest.raises(ProviderError, match=r"exited with code 3: out of credits$"):
        provider.complete("coder", [Message(role="user", content="hi")])


def test_cmd_timeout_kills_the_command(tmp_path):
    marker = tmp_path / "survived"
    code = f"import time, pathlib; time.sleep(1.5); pathlib.Path({str(marker)!r}).write_text('x')"
    # `; true` keeps the shell from exec-ing python: the kill must reach the shell's child too.
    provider = make_provider(f"cmd:{python_command(code)}; true", timeout_s=0.5)

    with pytest.raises(ProviderError, match=r"gave no reply within 0.5s"):
        provider.complete("coder", [Message(role="user", content="hi")])
    time.sleep(2)
    assert not marker.exists()


# --- replay: --------------------------------------------------------------------------------

def make_archive(run_dir: Path, rows: list[tuple]) -> Path:
    """A real run archive whose llm_calls are `rows` (role, reply, error, input, output tokens),
    written through the Archive API in that order."""
    from kagent.agent.archive import Archive, LLMCallRecord

    with Archive.open(run_dir, create=True) as archive:
        for role, reply, error, tokens_in, tokens_out in rows:
            archive.add_llm_call(LLMCallRecord(role=role, provider="openai", model="openai:gpt-5", reply=reply,
                                               error=error, input_tokens=tokens_in, output_tokens=tokens_out))
    return run_dir


def test_replay_returns_recorded_replies_in_order_per_role(tmp_path):
    run = make_archive(tmp_path / "run", [
        ("coder", "kernel v1", None, 100, 800),
        ("judge", "too slow", None, 50, 20),
        ("coder", None, "HTTP 500", 100, 0),  # a failed call: skipped
        ("coder", "kernel v2", None, 300, 900),
    ])
    provider = make_provider(f"replay:{run}")
    ask = [Message(role="user", content="anything")]

    first = provider.complete("coder", ask)
    assert (first.text, first.input_tokens, first.output_tokens) == ("kernel v1", 100, 800)
    assert provider.complete("judge", ask).text == "too slow"
    assert provider.complete("coder", ask).text == "kernel v2"
    assert first.tokens_estimated and first.provider == "replay"

    with pytest.raises(ProviderError, match=rf"^replay: {run} has no more coder replies \(2 recorded\)$"):
        provider.complete("coder", ask)
    with pytest.raises(ProviderError, match=r"no more judge replies \(1 recorded\)"):
        provider.complete("judge", ask)


def test_replay_takes_a_run_id_under_runs(tmp_path, monkeypatch):
    """`replay:RUN` resolves RUN as every command does: a run id (or its start) under ./runs."""
    make_archive(tmp_path / "runs" / "20250101-000000-relu-ab12", [("coder", "kernel v1", None, 1, 2)])
    monkeypatch.chdir(tmp_path)
    provider = make_provider("replay:20250101-000000")
    assert provider.complete("coder", [Message(role="user", content="x")]).text == "kernel v1"


def test_replay_missing_or_unreadable_archive_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=rf"^replay: no run archive at {tmp_path / 'nope' / 'archive.db'}$"):
        make_provider(f"replay:{tmp_path / 'nope'}")
    (tmp_path / "archive.db").write_bytes(b"not sqlite at all, but long enough to be read as a header....")
    with pytest.raises(ConfigError, match=r"^replay: cannot read llm_calls from"):
        make_provider(f"replay:{tmp_path}")


# --- specs and the registry -----------------------------------------------------------------

def test_parse_model_spec_splits_at_the_first_colon_only():
    assert parse_model_spec("openai:gpt-5") == ("openai", "gpt-5")
    assert parse_model_spec("cmd:ssh gpu-box:2222 'llm --json'") == ("cmd", "ssh gpu-box:2222 'llm --json'")
    assert parse_model_spec("openai:ollama/qwen2.5-coder:32b") == ("openai", "ollama/qwen2.5-coder:32b")


@pytest.mark.parametrize("spec,message", [
    ("x:y", "unknown provider 'x' in --model x:y: choose one of openai, anthropic, cmd, replay"),
    ("gpt-5", "malformed model spec 'gpt-5' in --model: expected PROVIDER:MODEL, e.g. openai:gpt-5"),
    ("openai:", "malformed model spec 'openai:' in --model: expected PROVIDER:MODEL, e.g. openai:gpt-5"),
    (":gpt-5", "malformed model spec ':gpt-5' in --model: expected PROVIDER:MODEL, e.g. openai:gpt-5"),
])
def test_bad_specs_are_one_line_config_errors(spec, message):
    with pytest.raises(ConfigError) as info:
        make_provider(spec)
    assert str(info.value) == message


@pytest.mark.parametrize("spec,var", [("openai:gpt-5", "OPENAI_API_KEY"),
                                      ("anthropic:claude-sonnet-4-6", "ANTHROPIC_API_KEY")])
def test_missing_api_key_fails_at_construction(monkeypatch, spec, var):
    monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError) as info:
        make_provider(spec)
    assert str(info.value) == f"{var} is not set (needed by --model {spec})"


def test_base_url_goes_to_openai_only(keys):
    local = "http://127.0.0.1:8000/v1"
    assert make_provider("openai:qwen", base_url=local).base_url == local
    assert make_provider("anthropic:claude-sonnet-4-6", base_url=local).base_url is None
    assert make_provider("cmd:echo hi", base_url=local).base_url is None


def test_registry_drives_the_help_text():
    assert list(PROVIDERS) == ["openai", "anthropic", "cmd", "replay"]
    lines = providers_help().splitlines()
    assert [line.split()[0] for line in lines] == ["openai:MODEL", "anthropic:MODEL", "cmd:COMMAND", "replay:RUN_DIR"]


def test_importing_the_registry_does_not_import_the_sdks():
    code = "import sys, kagent.agent.providers; print('openai' in sys.modules, 'anthropic' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent.parent).stdout
    assert out.split() == ["False", "False"]


def test_a_reply_cut_off_at_the_token_limit_is_flagged(keys):
    """Both APIs say why the model stopped: at the output token limit, the reply (and any
    kernel in it) is incomplete, and the loop reports that rather than a missing kernel."""
    rec = recording("openai_chat.json")
    for reason, truncated in (("length", True), ("stop", False)):
        body = json.loads(json.dumps(rec["response"]["body"]))
        body["choices"][0]["finish_reason"] = reason
        server = Server((200, rec["response"]["headers"], body))
        provider = make_provider(f"openai:{rec['request']['body']['model']}", http_client=server.client())
        assert provider.complete("coder", messages_of(rec)).truncated is truncated
    rec = recording("anthropic_messages.json")
    for reason, truncated in (("max_tokens", True), ("end_turn", False)):
        body = json.loads(json.dumps(rec["response"]["body"]))
        body["stop_reason"] = reason
        server = Server((200, rec["response"]["headers"], body))
        provider = make_provider(f"anthropic:{rec['request']['body']['model']}", http_client=server.client())
        assert provider.complete("coder", messages_of(rec)).truncated is truncated


@pytest.mark.parametrize("provider_name", ["openai", "anthropic"])
def test_cancel_ends_a_hung_sdk_call_at_once(provider_name):
    """A server that accepts the connection and never answers: cancel() (Ctrl-C,
    --time-limit) gives the caller back within a fraction of a second with a ProviderError,
    not after --llm-timeout (here 60 s) and the SDK's retries."""
    import socket
    import threading
    import time

    from kagent.agent.providers.anthropic import AnthropicProvider
    from kagent.agent.providers.base import Message
    from kagent.agent.providers.openai import OpenAIProvider
    from kagent.errors import ProviderError

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    url = f"http://127.0.0.1:{server.getsockname()[1]}"
    provider = (OpenAIProvider("m", base_url=f"{url}/v1", timeout_s=60, api_key="k") if provider_name == "openai"
                else AnthropicProvider("m", base_url=url, timeout_s=60, api_key="k"))
    outcome = {}

    def call():
        try:
            provider.complete("coder", [Message(role="user", content="hello")])
        except ProviderError as err:
            outcome["error"] = str(err)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.5)
    assert caller.is_alive()  # hung, as the server never answers
    cancelled_at = time.monotonic()
    provider.cancel()
    caller.join(5)
    assert not caller.is_alive() and time.monotonic() - cancelled_at < 2
    assert "cancelled" in outcome["error"]
    server.close()
