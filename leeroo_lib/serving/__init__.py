"""Serving: the saved orchestrator behind an OpenAI-compatible API over expert endpoints.

- ``app``: the HTTP API (FastAPI), its request model, ``running`` (a background server) and ``leeroo serve``;
- ``service``: ``RoutingService``, admitting a request, deciding its expert and forwarding it (LiteLLM);
- ``endpoints``: the experts' endpoints at run time, the local ones started here;
- ``chat``: the policy's question and a base model's prompt, read from a chat;
- ``keys``: client keys; ``ledger``: the spend per key and day (SQLite) and its caps;
- ``request_limits``: max_tokens, prompt length, rate per key, body size; ``errors``: the refusals.
"""
