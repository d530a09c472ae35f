"""The routing service over HTTP: an OpenAI-compatible API (FastAPI), running it, and ``leeroo serve``.

``POST /v1/chat/completions`` (streaming or not), ``GET /v1/models``, ``GET /v1/leeroo/stats`` (the
decisions and the ledger's spend) take ``Authorization: Bearer <key>`` when the service has client keys
(``keys``); ``/health`` is open. The answer comes back as the expert wrote it, with the expert's name in
``model`` and the decision in ``x-leeroo-*`` headers. Every refusal is an OpenAI-style error body
(``errors``); a body over ``service.max_body_bytes`` is refused as it arrives (``request_limits.BodyLimit``).
When every expert a request may go to is full, it gets 429 with Retry-After (``service``). A client that
hangs up has its call to the expert closed (``unless_client_leaves``; Starlette does so for a stream).

The request names its fields: the sampling fields below go to the expert, ``max_tokens`` within the
service's limits, ``budget`` and ``subject`` are the service's own (``extra_body``), and any other field
is refused, since a field LiteLLM reads (``api_base``, ``api_key``, ``mock_response``, ...) would
otherwise redirect the call, with the expert's key, wherever the client likes.

Shutdown (Ctrl-C, SIGTERM, or leaving ``running``) is bounded: the service's calls in flight are cut at
once (503, or an error event in a stream), uvicorn cancels what is left after ``SHUTDOWN_GRACE_S``, and
every expert server the service started gets SIGTERM together, SIGKILL after ``STOP_TIMEOUT_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Annotated, Literal

import anyio
import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from ..config import EndpointsFile, Profile, load_endpoints, load_profile
from ..experts.server import free_port
from ..routing.orchestrator import Orchestrator
from .endpoints import entries_for, local_experts, stand_ins
from .errors import ClientGone, InvalidRequest, ServiceError, Unavailable, error_response, reason
from .keys import ClientKeys
from .ledger import LEDGER_PATH
from .request_limits import BodyLimit
from .service import Routed, RoutingService

SHUTDOWN_GRACE_S = 5  # after the calls in flight are cut, what uvicorn still waits before cancelling the rest
SAMPLING = ("temperature", "top_p", "stop", "seed", "presence_penalty", "frequency_penalty", "user")


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """An OpenAI chat request, with the fields this service takes; any other is refused (see the module's
    docstring). ``budget`` (mean USD per 1M tokens) and ``subject`` are the service's own."""

    model_config = ConfigDict(extra="forbid")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    stop: str | Annotated[list[str], Field(max_length=4)] | None = None
    seed: Annotated[int, Field(ge=-(2**63), lt=2**63)] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2)] | None = None
    n: Literal[1] | None = None  # one answer per request: one expert, one price
    user: str | None = None
    budget: float | None = None
    subject: str | None = None


def _client_key(
    request: Request,
    credentials: Annotated[
        HTTPAuthorizationCredentials | None,
        Depends(HTTPBearer(auto_error=False, description="a client key of the service (service.client_keys_*)")),
    ],
) -> str:
    return request.app.state.keys.identify(credentials.credentials if credentials else None)


ClientKey = Annotated[str, Depends(_client_key)]  # the id of the request's client key (401 without a good one)


async def unless_client_leaves(request: Request, work):
    """The result of ``work``, unless the client hangs up first: then ``work`` is cancelled, which closes its
    call to the expert (uvicorn cancels no handler whose client left; a stream's is Starlette's to watch)."""
    task = asyncio.ensure_future(work)

    async def hung_up():
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hung_up())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
    if task not in done:
        request.app.state.service.stats.clients_gone += 1
        raise ClientGone("the client hung up before its answer", "client_gone")
    return task.result()


def _written(answer: dict) -> str:
    """The text of a non-streamed answer (to count its tokens when the expert reports none)."""
    return "".join((c.get("message") or {}).get("content") or "" for c in answer.get("choices") or [])


async def _events(service: RoutingService, routed: Routed, wants_usage: bool):
    """A streamed answer as server-sent events. However it ends (done, the expert broke off, the service
    shut down, the client went away: then this generator is cancelled or closed), the expert's stream is
    closed and the spend recorded, once."""
    usage, written, outcome = None, [], "cancelled"
    try:
        async with contextlib.aclosing(service.chunks(routed)) as chunks:
            async for chunk in chunks:
                data = chunk.model_dump(exclude_none=True)
                data["model"] = routed.expert
                usage = data.get("usage") or usage
                written += [(c.get("delta") or {}).get("content") or "" for c in data.get("choices") or []]
                if not wants_usage:
                    data.pop("usage", None)
                    if not data.get("choices"):
                        continue
                yield f"data: {json.dumps(data)}\n\n"
        outcome = "answered"
    except Unavailable as error:  # the service is shutting down: say so in the stream
        outcome = "shutdown"
        yield f"data: {json.dumps({'error': {'message': str(error), 'type': error.kind, 'code': error.code}})}\n\n"
    except Exception as error:  # the expert broke off mid-answer: say so in the stream, never fake a reply
        outcome = "broken"
        service.stats.broken_streams += 1
        broken = {"message": f"{routed.expert} broke off: {reason(error)}", "type": "expert_error", "code": "broken"}
        yield f"data: {json.dumps({'error': broken})}\n\n"
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled request still closes the expert's stream
            await routed.response.aclose()
        service.record(routed, usage, "".join(written), outcome)
    yield "data: [DONE]\n\n"


def create_app(service: RoutingService, keys: ClientKeys | None = None) -> FastAPI:
    """The FastAPI app of ``service``; ``keys`` None: no client keys (an open service, for loopback only)."""
    keys = keys or ClientKeys()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await service.aclose()

    app = FastAPI(title="Leeroo orchestrator", lifespan=lifespan)
    app.add_middleware(BodyLimit, max_bytes=service.settings.max_body_bytes)
    app.state.service, app.state.keys = service, keys  # read by _Server (shutdown) and running (exposure)

    @app.exception_handler(RequestValidationError)
    async def malformed(request, error: RequestValidationError):
        service.stats.rejected += 1
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        if any(e["type"] == "extra_forbidden" for e in error.errors()):
            problems += f" (the fields taken: {', '.join(ChatRequest.model_fields)})"
        return error_response(400, f"malformed request: {problems}", "invalid_request_error", "invalid_request")

    @app.exception_handler(ServiceError)
    async def refused(request, error: ServiceError):
        service.stats.rejected += error.status < 500
        return error.response()

    @app.exception_handler(HTTPException)
    async def http_error(request, error: HTTPException):
        service.stats.rejected += 1
        code = "max_body_bytes" if error.status_code == 413 else "http_error"
        return error_response(error.status_code, str(error.detail), "invalid_request_error", code)

    @app.exception_handler(Exception)
    async def unexpected(request, error: Exception):
        return error_response(500, f"internal error: {reason(error)}", "internal_error", "internal_error")

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": service.model_id, "experts": service.experts}

    @app.get("/v1/models")
    async def models(key: ClientKey):
        return {
            "object": "list",
            "data": [{"id": service.model_id, "object": "model", "owned_by": "leeroo", "created": 0}],
        }

    @app.get("/v1/leeroo/stats")
    async def stats(key: ClientKey):
        return service.report(key)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatRequest, key: ClientKey, request: Request):
        service.stats.requests += 1
        if body.model != service.model_id:
            raise InvalidRequest(
                f"unknown model '{body.model}': this service routes as '{service.model_id}' (GET /v1/models)",
                "model_not_found",
            )
        params = body.model_dump(include=set(SAMPLING), exclude_none=True)
        params["max_tokens"] = service.limits.max_tokens(body.max_tokens, body.max_completion_tokens)
        # the service asks every expert for its usage, for the ledger; passed on only to a client that asked for it
        wants_usage = body.stream_options is not None and body.stream_options.include_usage
        messages = [m.model_dump(exclude_none=True) for m in body.messages]
        routed = await unless_client_leaves(
            request, service.route(key, messages, params, body.budget, body.subject, body.stream)
        )
        headers = routed.headers(service.rolling.window_mean(routed.budget))
        if body.stream:
            events = _events(service, routed, wants_usage)
            return StreamingResponse(events, media_type="text/event-stream", headers=headers)
        answer = routed.response.model_dump()
        answer["model"] = routed.expert
        service.record(routed, answer.get("usage"), _written(answer), "answered")
        return JSONResponse(answer, headers=headers)

    return app


class _Server(uvicorn.Server):
    """uvicorn, whose shutdown first closes the routing service of its app: the requests in flight are
    answered 503 at once, rather than the shutdown waiting until their experts answer."""

    async def shutdown(self, sockets=None):
        service = getattr(self.config.app.state, "service", None)
        if service is not None:
            service.close()
        await super().shutdown(sockets)


def _server(app: FastAPI, host: str, port: int) -> _Server:
    keys = getattr(app.state, "keys", None)
    if keys is not None:
        keys.check_exposure(host)
    return _Server(
        uvicorn.Config(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=SHUTDOWN_GRACE_S)
    )


@contextlib.contextmanager
def running(app: FastAPI, host: str = "127.0.0.1", port: int | None = None, ready_timeout_s: float = 30.0):
    """Serve ``app`` with uvicorn in a background thread (notebooks, tests, benchmarks); yields the
    base URL (http://host:port/v1) and stops the server on exit."""
    port = port or free_port(host)
    server = _server(app, host, port)
    thread = threading.Thread(target=server.run, name=f"leeroo-service-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + ready_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the service did not start on {host}:{port} (port taken?)")
        time.sleep(0.05)
    try:
        yield f"http://{host}:{port}/v1"
    finally:
        server.should_exit = True
        thread.join(timeout=SHUTDOWN_GRACE_S + 5)


def single_torch_thread() -> None:
    """One torch thread for this process: the policy reads one question per request, which more threads
    do not speed up, and on a few shared cores they fight the experts' own (2 cores, encoder policy:
    one-question forward pass p50 41 ms on one thread, 647 ms on two while the experts worked)."""
    import torch

    torch.set_num_threads(1)


def _stop_on_sigterm(signum, frame):
    raise KeyboardInterrupt  # runs the finally blocks that stop the local experts


@contextlib.contextmanager
def local_service(
    profile: Profile, settings: EndpointsFile, orchestrator: Orchestrator, ledger_path: Path, keys: ClientKeys
):
    """The service in a background thread on a free loopback port, over the experts ``settings`` give the
    served pool (the local ones started here, on free ports): yields the service, its base URL and the expert
    endpoints, and stops the service and every expert it started on exit (notebook 07)."""
    experts = orchestrator.served(settings.service.pool)
    with local_experts(profile, entries_for(settings, experts), free_ports=True) as endpoints:
        service = RoutingService(orchestrator, endpoints, settings.service, ledger_path)
        with running(create_app(service, keys)) as base_url:
            yield service, base_url, endpoints


def serve_orchestrator(
    cfg: Profile, settings: EndpointsFile, orchestrator_dir: Path, ledger_path: Path, port: int | None = None
) -> None:
    """Serve the orchestrator saved in ``orchestrator_dir`` over the experts of ``settings`` (the local ones
    started here) until Ctrl-C or SIGTERM, then stop everything: returns within ``SHUTDOWN_GRACE_S`` +
    ``STOP_TIMEOUT_S`` of the signal (tests/test_serving_faults.py holds it to that)."""
    service_settings = settings.service
    keys = ClientKeys.from_settings(service_settings)
    keys.check_exposure(service_settings.host)  # before anything starts
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    single_torch_thread()
    orchestrator = Orchestrator.load(orchestrator_dir)
    experts = orchestrator.served(service_settings.pool)
    if stand_ins(settings, experts):
        print(f"a stand-in endpoint answers for {stand_ins(settings, experts)}", flush=True)
    try:
        with local_experts(cfg, entries_for(settings, experts)) as endpoints:
            service = RoutingService(orchestrator, endpoints, service_settings, ledger_path)
            port = port or service_settings.port
            print(
                f"routing '{service.model_id}' over {service.experts} at http://{service_settings.host}:{port}/v1 "
                f"(budget {service.budget:g} USD per 1M tokens over the last {service_settings.window} requests; "
                f"{'client keys required' if keys.required else 'no client keys: open to this machine'}; "
                f"spend in {ledger_path}); Ctrl-C stops the service and its experts",
                flush=True,
            )
            _server(create_app(service, keys), service_settings.host, port).run()
    except KeyboardInterrupt:
        pass
    print("stopped the service and the expert servers it started", flush=True)


def exit_at_once() -> None:
    """End the process once the service and its experts have stopped. The interpreter's own exit then waited
    8-10 s more when the experts had been mid-answer (in a native thread, no Python frame: LiteLLM's HTTP
    bridge is the native client here), past the shutdown bound; everything the service holds is closed by now."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve(profile: str | None = None, port: int | None = None) -> None:
    """``leeroo serve --profile cpu`` (``make serve``): the profile's saved orchestrator over the experts of
    configs/endpoints/<profile>.yaml, its spend in the profile's ledger."""
    cfg = load_profile(profile)
    serve_orchestrator(cfg, load_endpoints(cfg.name), cfg.require("orchestrator"), cfg.output_path(LEDGER_PATH), port)
    exit_at_once()
