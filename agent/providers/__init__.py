"""The LLM provider seam. `--model PROVIDER:MODEL` picks one entry of PROVIDERS, the one registry
that the CLI, config validation and help text all read:

    openai:gpt-5                          OpenAI (or --base-url http://host:8000/v1 for vLLM, ...)
    anthropic:claude-sonnet-4-6           Anthropic
    cmd:python my_llm.py --temp 0.2       any program: JSON request on stdin, reply on stdout
    replay:runs/2024-06-01-1234           the replies an earlier run recorded

    provider = make_provider("openai:gpt-5")      # ConfigError now, not at the first call
    completion = provider.complete("coder", [Message(role="user", content="...")])

Importing this package is cheap: the SDKs are imported when their provider is constructed."""

from __future__ import annotations

from kagent.errors import ConfigError

from .anthropic import AnthropicProvider
from .base import Completion, Message, Provider, Role, estimate_tokens
from .command import CommandProvider
from .openai import OpenAIProvider
from .replay import ReplayProvider

PROVIDERS: dict[str, type[Provider]] = {
    cls.name: cls for cls in (OpenAIProvider, AnthropicProvider, CommandProvider, ReplayProvider)
}

PRICES_HELP = 'JSON file {"provider:model": \\[usd_per_M_in, usd_per_M_out]}.'  # \\[: not rich markup

__all__ = ["PRICES_HELP", "Completion", "Message", "Provider", "Role", "PROVIDERS", "estimate_tokens", "make_provider",
           "parse_model_spec", "providers_help"]


def parse_model_spec(spec: str) -> tuple[str, str]:
    """"openai:gpt-5" -> ("openai", "gpt-5"). Only the first colon splits: model names and
    commands keep theirs ("cmd:ssh gpu:22 run" -> ("cmd", "ssh gpu:22 run"))."""
    provider, colon, model = spec.strip().partition(":")
    if not colon or not provider or not model.strip():
        raise ConfigError(f"malformed model spec {spec!r} in --model: expected PROVIDER:MODEL, e.g. openai:gpt-5")
    if provider not in PROVIDERS:
        raise ConfigError(f"unknown provider {provider!r} in --model {spec.strip()}: "
                          f"choose one of {', '.join(PROVIDERS)}")
    return provider, model.strip()


def make_provider(spec: str, *, base_url: str | None = None, **kw) -> Provider:
    """Parse `spec` and construct its provider, validating everything that can be checked without
    a request (API key, archive path): a ConfigError comes now. `base_url` (--base-url) goes to
    openai: only, the one provider that speaks to self-hosted servers; the others ignore it, so
    one --base-url can serve a local Coder beside, say, an anthropic: Judge."""
    provider, model = parse_model_spec(spec)
    cls = PROVIDERS[provider]
    return cls(model, base_url=base_url if cls.takes_base_url else None, **kw)


def providers_help() -> str:
    """One line per provider, for --help and error messages."""
    width = max(len(cls.form) for cls in PROVIDERS.values())
    return "\n".join(f"{cls.form:<{width}}  {cls.summary}" for cls in PROVIDERS.values())
