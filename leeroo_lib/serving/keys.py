"""Client keys: who may call the service, and the name its spend is kept under.

As vLLM's ``--api-key`` and LiteLLM's virtual keys: every ``/v1/*`` request carries ``Authorization:
Bearer <key>``. The keys come from the environment variable and/or the file that the endpoints profile
names (``service.client_keys_env``, ``service.client_keys_file``), never from the repository. A key is
known only by its SHA-256 digest, compared in constant time (``hmac.compare_digest``, every known key
compared, so the time says nothing about which matched); the ledger keeps a short id derived from it,
never the key. Without keys the service is open, which only a loopback address may be.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
from pathlib import Path

from ..config import ServiceSettings
from .errors import Unauthorized

MIN_KEY_CHARS = 16
NO_KEY = "no-key"  # the ledger's name for the requests of a service without keys
NEW_KEY_HINT = "python -c 'import secrets; print(\"sk-\" + secrets.token_urlsafe(24))'"
HOW_TO_SET = (
    "set service.client_keys_env (e.g. client_keys_env: LEEROO_API_KEYS, then export "
    "LEEROO_API_KEYS=sk-...,sk-...) or service.client_keys_file (a file outside the repository, one key per "
    f"line) in configs/endpoints/<profile>.yaml; make a key with {NEW_KEY_HINT}"
)


def key_id(key: str) -> str:
    """The name a key's spend is kept under: a prefix of its digest, which does not give the key away."""
    return "key-" + hashlib.sha256(key.encode()).hexdigest()[:12]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name other than localhost may resolve anywhere
        return False


class ClientKeys:
    """The keys that may call the service (none: an open service, for loopback only)."""

    def __init__(self, keys=()):
        keys = sorted(set(keys))
        bad = [k for k in keys if len(k) < MIN_KEY_CHARS or not k.isprintable() or any(c.isspace() for c in k)]
        if bad:
            raise ValueError(
                f"{len(bad)} of {len(keys)} client keys are shorter than {MIN_KEY_CHARS} characters or hold spaces "
                f"or control characters: make keys with {NEW_KEY_HINT}"
            )
        self._digests = [(hashlib.sha256(k.encode()).digest(), key_id(k)) for k in keys]

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> ClientKeys:
        """The keys of ``$client_keys_env`` (comma-separated) and of ``client_keys_file`` (one a line,
        ``#`` comments); an unset variable gives none, a named file that is missing is an error."""
        keys = []
        if settings.client_keys_env is not None:
            keys += [k.strip() for k in os.environ.get(settings.client_keys_env, "").split(",") if k.strip()]
        if settings.client_keys_file is not None:
            path = Path(settings.client_keys_file).expanduser()
            if not path.is_file():
                raise FileNotFoundError(f"client_keys_file {path} does not exist: write one key per line into it")
            lines = [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()]
            keys += [line for line in lines if line]
        return cls(keys)

    @property
    def required(self) -> bool:
        return bool(self._digests)

    def identify(self, presented: str | None) -> str:
        """The id of the key a request presents (``NO_KEY`` for an open service); 401 for none or a wrong one."""
        if not self.required:
            return NO_KEY
        if not presented:
            raise Unauthorized(
                "no client key: send the header 'Authorization: Bearer <key>' (the OpenAI client's api_key)",
                "missing_api_key",
            )
        digest = hashlib.sha256(presented.encode()).digest()
        found = None
        for known, name in self._digests:
            if hmac.compare_digest(digest, known):
                found = name
        if found is None:
            raise Unauthorized("the client key is not one of this service's keys", "invalid_api_key")
        return found

    def check_exposure(self, host: str) -> None:
        """Refuse to listen beyond this machine without keys: whoever reaches the port would spend the budget."""
        if not self.required and not is_loopback(host):
            raise ValueError(
                f"refusing to listen on {host} without client keys: anyone who reaches it could spend the "
                f"budget. Listen on 127.0.0.1 (service.host), or {HOW_TO_SET}"
            )
