"""The endpoints schema: configs/endpoints/<profile>.yaml, the expert endpoints the routing service of a profile
forwards to, with the service's own settings (pool, budget, keys, caps, limits, admission)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from .base import ROOT, Count, _Block


class LocalServer(_Block):
    """An expert this machine serves itself (``transformers serve``): a live expert of the profile, on
    ``port`` (None: a free one)."""

    expert: str
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class EndpointEntry(_Block):
    """Where one expert answers: a running OpenAI-compatible server (``base_url``, the ``model`` id it
    serves, ``api_key_env``: the environment variable holding its key) or a ``local`` one; ``api``:
    ``chat`` (/v1/chat/completions) or ``completions`` (/v1/completions: a base model without a chat
    template)."""

    api: Literal["chat", "completions"] = "chat"
    base_url: str | None = None
    model: str | None = None
    api_key_env: str | None = None
    local: LocalServer | None = None
    # the longest prompt the service sends it, counted before the call (its tokenizer for a local expert,
    # else a conservative estimate: one token per UTF-8 byte)
    max_prompt_tokens: Count = 4096
    # the requests it may have in flight (LiteLLM's max_parallel_requests); 2 keeps a CPU expert's next request
    # ready while it answers one, and bounds what a burst leaves it to work off
    max_parallel_requests: Count = 2

    @model_validator(mode="after")
    def _server_or_local(self):
        running = self.base_url is not None and self.model is not None
        if running == (self.local is not None) or (self.local is not None and (self.base_url or self.model)):
            raise ValueError(
                "give base_url and model (a running server), or local (a live expert of the profile that this "
                "machine serves with transformers serve), not both"
            )
        return self


class ServiceSettings(_Block):
    """The pool the service routes over, its default budget (mean USD per 1M tokens, Eq. 1), the rolling
    window of requests the budget holds over, where it listens, how long an expert may take and how often
    a failed call is retried before the next best affordable expert is tried; who may call it, what they
    may spend a day, and the limits of one request (configs/endpoints/cpu.yaml explains each)."""

    pool: str
    budget: Annotated[float, Field(gt=0)]
    window: Count
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8100
    timeout_s: Annotated[float, Field(gt=0)] = 120.0
    retries: Annotated[int, Field(ge=0)] = 0
    client_keys_env: str | None = None  # an environment variable holding client keys, comma-separated
    client_keys_file: str | None = None  # a file outside the repository, one client key per line
    key_daily_cap_usd: Annotated[float, Field(gt=0)] = 1.0  # real spend per client key and UTC day
    daily_cap_usd: Annotated[float, Field(gt=0)] = 10.0  # real spend over all keys per UTC day
    key_requests_per_minute: Count = 60
    max_body_bytes: Count = 1_048_576
    max_tokens_default: Count = 256  # a request's max_tokens when it gives none
    max_tokens_cap: Count = 1024  # a larger max_tokens is lowered to this
    # how long a request waits for a slot when every expert it may go to is full, before its 429
    slot_wait_s: Annotated[float, Field(ge=0, le=60)] = 0.5

    @model_validator(mode="after")
    def _keys_file_outside_the_repository(self):
        if self.client_keys_file is not None:
            path = Path(self.client_keys_file).expanduser()
            if not path.is_absolute() or path.resolve().is_relative_to(ROOT):
                raise ValueError(
                    f"client_keys_file {self.client_keys_file!r} must be an absolute path outside the repository "
                    f"({ROOT}), e.g. ~/.config/leeroo/keys: keys in the working tree end up in commits"
                )
        return self

    @model_validator(mode="after")
    def _default_within_the_cap(self):
        if self.max_tokens_default > self.max_tokens_cap:
            raise ValueError(
                f"max_tokens_default {self.max_tokens_default} is over max_tokens_cap {self.max_tokens_cap}: "
                "lower the default or raise the cap"
            )
        return self


class EndpointsFile(_Block):
    """configs/endpoints/<profile>.yaml (configs/endpoints/cpu.yaml explains every key): one endpoint per
    served expert, and optionally a ``stand_in`` that answers for every served expert without one."""

    service: ServiceSettings
    experts: dict[str, EndpointEntry] = {}
    stand_in: EndpointEntry | None = None
