"""The experts' endpoints at run time: the entries of configs/endpoints/<profile>.yaml (``config.EndpointsFile``)
made into the servers the service calls, the local ones started here.

A ``local`` entry names a live expert of the profile; ``local_experts`` starts one ``transformers serve`` per
model (however many entries name it), each with its share of this machine's cores as torch threads and below
the service in CPU priority, and stops them all on exit, every one signalled at once so that stopping takes as
long as the slowest, not their sum.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from ..config import EndpointEntry, EndpointsFile, Profile
from ..experts.server import ExpertServer

LOCAL_API_KEY = "none"  # a local server checks no key; the OpenAI wire format still sends one


@dataclass(frozen=True)
class Endpoint:
    """Where one expert answers: an OpenAI-compatible server, the model id it serves, the endpoint it speaks
    (``chat``: /v1/chat/completions, or ``completions``: /v1/completions, a base model without a chat
    template; the service turns the chat into a prompt), the environment variable holding its API key (None:
    a local server without one), the longest prompt it is sent, the local process behind it, if any, and the
    requests it may have in flight (the rest go to another expert, or get a 429)."""

    base_url: str
    model: str
    api: str = "chat"
    api_key_env: str | None = None
    max_prompt_tokens: int = EndpointEntry.model_fields["max_prompt_tokens"].default
    server: ExpertServer | None = field(default=None, compare=False, repr=False)
    max_parallel_requests: int = EndpointEntry.model_fields["max_parallel_requests"].default

    def api_key(self) -> str:
        if self.api_key_env is None:
            return LOCAL_API_KEY
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RuntimeError(
                f"the API key of {self.base_url} is read from ${self.api_key_env}, which is not set: "
                f"export {self.api_key_env}=... before starting the service"
            )
        return key


def stand_ins(settings: EndpointsFile, experts) -> list[str]:
    """The experts of ``experts`` that only the stand-in answers for."""
    return [e for e in experts if e not in settings.experts] if settings.stand_in is not None else []


def entries_for(settings: EndpointsFile, experts) -> dict[str, EndpointEntry]:
    """The entry of each expert (the stand-in's where it has none of its own)."""
    missing = [e for e in experts if e not in settings.experts and settings.stand_in is None]
    if missing:
        raise ValueError(
            f"no endpoint for {missing}, which pool '{settings.service.pool}' serves: add an entry per expert "
            "under experts in configs/endpoints/<profile>.yaml (base_url, model, api) or a local one"
        )
    return {e: settings.experts.get(e, settings.stand_in) for e in experts}


@contextlib.contextmanager
def local_experts(cfg: Profile, entries: dict[str, EndpointEntry], free_ports: bool = False):
    """Start ``transformers serve`` for every local entry (one server per live expert) and yield every
    entry as an ``Endpoint``; the servers stop on exit. ``free_ports`` ignores the configured ports (a
    notebook or benchmark beside ``make serve``)."""
    from ..experts.live_models import fp32_folder

    ports: dict[str, int | None] = {}
    for expert, entry in entries.items():
        if entry.local is None:
            continue
        name, port = entry.local.expert, entry.local.port
        if cfg.live_expert(name).gguf is None:
            raise ValueError(f"live expert '{name}' has no 'gguf' entry to serve locally; give '{expert}' a base_url")
        if ports.get(name, port) != port:
            raise ValueError(f"local expert '{name}' is given two ports, {ports[name]} and {port}")
        ports[name] = port
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()  # Linux: ours
    threads = max(1, cores // max(1, len(ports)))  # the cores, shared out among the servers
    with contextlib.ExitStack() as stack:
        servers: dict[str, ExpertServer] = {}
        for name, port in ports.items():
            gguf = cfg.live_expert(name).gguf
            servers[name] = stack.enter_context(
                ExpertServer(fp32_folder(**gguf.model_dump()), port=None if free_ports else port, threads=threads)
            )
        # runs first on exit: every server gets its signal before any stop() waits on one
        stack.callback(lambda: [server.terminate() for server in servers.values()])
        yield {expert: _endpoint(entry, servers) for expert, entry in entries.items()}


def _endpoint(entry: EndpointEntry, servers: dict[str, ExpertServer]) -> Endpoint:
    limits = {"max_prompt_tokens": entry.max_prompt_tokens, "max_parallel_requests": entry.max_parallel_requests}
    if entry.local is None:
        return Endpoint(entry.base_url, entry.model, entry.api, entry.api_key_env, **limits)
    server = servers[entry.local.expert]
    return Endpoint(server.base_url, server.model_id, entry.api, None, server=server, **limits)
