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

from kagent.errors import ConfigError, one_line
from kagent.registry import load_entry

from .base import Completion, Message, Provider, Role, estimate_tokens

# The registry: provider name (the part of --model before the first colon) -> "module:Class",
# imported when that provider is chosen or described (or the class itself). Its order is the
# order help lists them in. Adding a provider is one file under agent/providers/ plus one line.
PROVIDERS: dict[str, type[Provider] | str] = {
    "openai": "kagent.agent.providers.openai:OpenAIProvider",
    "anthropic": "kagent.agent.providers.anthropic:AnthropicProvider",
    "cmd": "kagent.agent.providers.command:CommandProvider",
    "replay": "kagent.agent.providers.replay:ReplayProvider",
}

PRICES_HELP = 'JSON file {"provider:model": \\[usd_per_M_in, usd_per_M_out]}.'  # \\[: not rich markup

__all__ = ["PRICES_HELP", "Completion", "Message", "Provider", "Role", "PROVIDERS", "estimate_tokens", "make_provider",
           "parse_model_spec", "provider_class", "providers_help"]


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


def provider_class(name: str) -> type[Provider]:
    """The class registered as `name`, its module imported now. ConfigError, naming --model, for
    an unknown name or one whose module cannot be imported."""
    if name not in PROVIDERS:
        raise ConfigError(f"unknown provider {name!r} in --model: choose one of {', '.join(PROVIDERS)}")
    try:
        return load_entry(PROVIDERS[name])
    except ImportError as err:
        raise ConfigError(f"--model {name}:...: provider {PROVIDERS[name]} cannot be loaded ({one_line(err, 200)})") from None


def make_provider(spec: str, *, base_url: str | None = None, **kw) -> Provider:
    """Parse `spec` and construct its provider, validating everything that can be checked without
    a request (API key, archive path): a ConfigError comes now. `base_url` (--base-url) goes to
    openai: only, the one provider that speaks to self-hosted servers; the others ignore it, so
    one --base-url can serve a local Coder beside, say, an anthropic: Judge."""
    provider, model = parse_model_spec(spec)
    cls = provider_class(provider)
    return cls(model, base_url=base_url if cls.takes_base_url else None, **kw)


def providers_help() -> str:
    """One line per provider, for --help and error messages."""
    classes = [provider_class(name) for name in PROVIDERS]
    width = max(len(cls.form) for cls in classes)
    return "\n".join(f"{cls.form:<{width}}  {cls.summary}" for cls in classes)
