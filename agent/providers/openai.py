"""`openai:MODEL`: the OpenAI chat completions API through the official SDK, or, with --base-url,
any OpenAI-compatible server (vLLM, SGLang, Ollama, llama.cpp).

Retries are the SDK's own: up to `max_retries` more tries on 408/409/429, every 5xx, timeouts
and connection errors, with exponential backoff (0.5 s doubling, at most 8 s, with jitter) or the
delay the server asks for in `retry-after-ms` / `retry-after`. What fails after that becomes one
ProviderError line."""

from __future__ import annotations

import os
import time
from typing import Any

from .base import Completion, Message, Provider, Role, estimate_tokens, not_understood, require_env, sdk_failure


class OpenAIProvider(Provider):
    """`openai:MODEL` through the OpenAI SDK, or any OpenAI-compatible server with base_url. Needs
    OPENAI_API_KEY unless base_url is given (ConfigError at construction)."""

    name = "openai"
    form = "openai:MODEL"
    summary = "OpenAI, or any OpenAI-compatible server with --base-url (OPENAI_API_KEY)"
    takes_base_url = True

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4,
                 api_key: str | None = None, http_client: Any = None):
        super().__init__(model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        if api_key is None and base_url is None:
            api_key = require_env("OPENAI_API_KEY", self.spec)
        elif api_key is None:  # a self-hosted server usually wants no key, but the SDK insists on one
            api_key = os.environ.get("OPENAI_API_KEY", "").strip() or "EMPTY"
        import openai  # the SDK, imported late: `kagent --help` should not pay for it

        self._sdk = openai
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries,
                                     http_client=http_client)

    def complete(self, role: Role, messages: list[Message]) -> Completion:
        """One chat completion request; the SDK retries; ProviderError once they are spent."""
        self.check_cancelled()
        start = time.monotonic()
        try:
            response = self.interruptible(lambda: self._client.chat.completions.create(
                model=self.model, messages=[m.model_dump() for m in messages]))
        except self._sdk.OpenAIError as err:
            raise sdk_failure(self.name, self._sdk, err, self.timeout_s, self._client.base_url) from None
        latency = time.monotonic() - start
        if not hasattr(response, "choices"):
            raise not_understood(self.name, self._client.base_url, response)
        text = (response.choices[0].message.content or "") if response.choices else ""
        truncated = bool(response.choices) and response.choices[0].finish_reason == "length"
        usage = response.usage  # some compatible servers leave it out: then estimate
        return Completion(
            text=text, provider=self.name, model=self.model,
            input_tokens=usage.prompt_tokens if usage else sum(estimate_tokens(m.content) for m in messages),
            output_tokens=usage.completion_tokens if usage else estimate_tokens(text),
            tokens_estimated=usage is None, latency_s=latency, truncated=truncated,
        )
