"""The limits of one request, so that no client decides alone what the experts do: its ``max_tokens``, the
length of the prompt each expert is sent, how often one key may ask, and the size of its body.

Every breach is a 4xx whose ``code`` names the setting of configs/endpoints/<profile>.yaml it hit.
"""

from __future__ import annotations

import functools
import math
import time
from pathlib import Path

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException

from ..config import ServiceSettings
from .chat import chat_prompt, message_text
from .endpoints import Endpoint
from .errors import InvalidRequest, RateLimited

MESSAGE_OVERHEAD = 8  # tokens a chat template adds per message (role markers), counted on top of the text


class RequestLimits:
    """``max_tokens`` within the service's cap, and at most ``key_requests_per_minute`` requests per key
    over any minute (a moving window of the ``limits`` library, kept in memory: a restart forgets it)."""

    def __init__(self, settings: ServiceSettings):
        self.settings = settings
        self.rate = RateLimitItemPerMinute(settings.key_requests_per_minute)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def max_tokens(self, max_tokens: int | None, max_completion_tokens: int | None) -> int:
        """The tokens the expert may write: the request's (either name), lowered to the cap; the
        default when it gives none; 400 when it is not positive, or the two names disagree."""
        given = {"max_tokens": max_tokens, "max_completion_tokens": max_completion_tokens}
        given = {name: value for name, value in given.items() if value is not None}
        if len(set(given.values())) > 1:
            raise InvalidRequest(f"max_tokens and max_completion_tokens differ ({given}): give one", "max_tokens")
        for name, value in given.items():
            if value < 1:
                raise InvalidRequest(f"{name} is {value}: ask for at least one token", "max_tokens")
        return min(next(iter(given.values()), self.settings.max_tokens_default), self.settings.max_tokens_cap)

    async def admit(self, key: str) -> None:
        """Count one request of ``key``; 429 with the time to wait once it is over its rate."""
        if not await self._limiter.hit(self.rate, key):
            window = await self._limiter.get_window_stats(self.rate, key)
            wait = max(1, math.ceil(window.reset_time - time.time()))
            raise RateLimited(
                f"{key} sent {self.settings.key_requests_per_minute} requests in the last minute, the limit per key "
                f"(service.key_requests_per_minute): retry in {wait} s",
                "key_requests_per_minute",
                retry_after_s=wait,
            )


@functools.cache
def _tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


class TokenCounter:
    """The tokens one expert is sent or writes: by its own tokenizer when its model folder is on this
    machine (a local expert), else conservatively, one token per UTF-8 byte (a byte-level BPE or
    SentencePiece token covers at least one byte), so a remote expert is never sent more than it takes.
    A chat counts ``MESSAGE_OVERHEAD`` more per message for the template's role markers."""

    def __init__(self, endpoint: Endpoint):
        self.api = endpoint.api
        self.tokenizer = _tokenizer(endpoint.server.model_dir) if endpoint.server is not None else None

    def text(self, text: str) -> int:
        if self.tokenizer is None:
            return len(text.encode("utf-8"))
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def prompt(self, messages: list[dict]) -> int:
        if self.api == "completions":
            return self.text(chat_prompt(messages))
        return sum(self.text(message_text(m.get("content"))) + MESSAGE_OVERHEAD for m in messages)


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is refused as it is read, at the first read when its
    Content-Length says so, else as soon as what arrived passes the limit. The refusal is a 413
    ``HTTPException``, which FastAPI passes on to the app's error handler (Starlette's own
    RequestBodyLimitMiddleware answers a declared length with a plain-text body of its own)."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = int(Headers(scope=scope).get("content-length") or 0)  # the HTTP server refuses a malformed one
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if max(declared, received) > self.max_bytes:
                raise HTTPException(
                    413, f"the request body is over {self.max_bytes} bytes (service.max_body_bytes): send a shorter one"
                )
            return message

        await self.app(scope, limited_receive, send)
