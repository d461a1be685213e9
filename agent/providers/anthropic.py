"""`anthropic:MODEL`: the Anthropic Messages API through the official SDK.

A proxy or gateway is set with ANTHROPIC_BASE_URL, which the SDK reads (make_provider keeps
--base-url for openai:). System messages go to the `system` parameter, the rest stay in order as `messages`. Retries are
the SDK's own: up to `max_retries` more tries on 408/409/429, every 5xx (529 "overloaded"
included), timeouts and connection errors, with exponential backoff (0.5 s doubling, at most
8 s, with jitter) or the delay the server asks for. What fails after that becomes one
ProviderError line."""

from __future__ import annotations

import time
from typing import Any

from .base import Completion, Message, Provider, Role, not_understood, require_env, sdk_failure

MAX_TOKENS = 16000  # room for a whole kernel file and its reasoning; the SDK needs a bound


class AnthropicProvider(Provider):
    """`anthropic:MODEL` through the Anthropic SDK. Needs ANTHROPIC_API_KEY (ConfigError at
    construction without it)."""

    name = "anthropic"
    form = "anthropic:MODEL"
    summary = "Anthropic's Messages API (ANTHROPIC_API_KEY)"

    def __init__(self, model: str, *, base_url: str | None = None, timeout_s: float = 600, max_retries: int = 4,
                 api_key: str | None = None, http_client: Any = None, max_tokens: int = MAX_TOKENS):
        super().__init__(model, base_url=base_url, timeout_s=timeout_s, max_retries=max_retries)
        api_key = api_key or require_env("ANTHROPIC_API_KEY", self.spec)
        self.max_tokens = max_tokens
        import anthropic  # the SDK, imported late: `kagent --help` should not pay for it

        self._sdk = anthropic
        # An explicit timeout also keeps the SDK from refusing long non-streaming requests up front.
        self._client = anthropic.Anthropic(api_key=api_key, base_url=base_url, timeout=timeout_s,
                                           max_retries=max_retries, http_client=http_client)

    def complete(self, role: Role, messages: list[Message]) -> Completion:
        """One Messages API request (the system message sent apart); the SDK retries; ProviderError
        once they are spent."""
        self.check_cancelled()
        system = "\n\n".join(m.content for m in messages if m.role == "system")
        chat = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
        extra = {"system": system} if system else {}
        start = time.monotonic()
        try:
            response = self.interruptible(lambda: self._client.messages.create(
                model=self.model, max_tokens=self.max_tokens, messages=chat, **extra))
        except self._sdk.AnthropicError as err:
            raise sdk_failure(self.name, self._sdk, err, self.timeout_s, self._client.base_url) from None
        latency = time.monotonic() - start
        if not hasattr(response, "content"):
            raise not_understood(self.name, self._client.base_url, response)
        text = "".join(block.text for block in response.content if block.type == "text")
        return Completion(
            text=text, provider=self.name, model=self.model,
            input_tokens=response.usage.input_tokens, output_tokens=response.usage.output_tokens,
            tokens_estimated=False, latency_s=latency, truncated=response.stop_reason == "max_tokens",
        )
