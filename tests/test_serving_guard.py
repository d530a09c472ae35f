"""The routing service attacked: client keys, the spend ledger and its caps across a restart, the limits of a
request, a client that goes away mid-stream, and a property-based fuzz of the HTTP API from its own OpenAPI
schema. The experts are tiny in-process fakes (serving_fakes.py): nothing here needs a model."""

import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from serving_fakes import (
    CHEAP,
    DEAR,
    KEY,
    MODEL,
    dear_subject,
    fake_expert,
    ledger_consistent,
    ledger_rows,
    pair_orchestrator,
    serving,
    wait_for,
)

from leeroo_lib.config import ROOT, EndpointsFile, ServiceSettings, load_profile
from leeroo_lib.serving.app import serve_orchestrator
from leeroo_lib.serving.endpoints import Endpoint
from leeroo_lib.serving.keys import ClientKeys, key_id

OTHER = "sk-test-other-fedcba9876543210"
FUZZ_EXAMPLES = 120
FUZZ_SEED = 0


@pytest.fixture(scope="module")
def orchestrator(questions, recorded):
    return pair_orchestrator(questions, recorded)


@pytest.fixture(scope="module")
def expert():
    with fake_expert() as (fake, endpoint):
        yield fake, endpoint


def ask(url, key=KEY, content="What is 2+2?", **fields) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    body = {"model": MODEL, "messages": [{"role": "user", "content": content}], **fields}
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=30)


def error_of(response: httpx.Response) -> dict:
    """The OpenAI-style error of a response, checked for its shape."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code"} and all(isinstance(v, str) for v in error.values())
    return error


@pytest.mark.server
def test_without_a_good_key_every_v1_route_is_a_401_and_health_stays_open(orchestrator, expert):
    fake, endpoint = expert
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, keys=[KEY, OTHER]) as (routing, base_url):
        received = fake.received
        for headers in ({}, {"authorization": "Bearer sk-wrong-0000000000000000"}, {"authorization": f"Basic {KEY}"}):
            for method, route in (("GET", "models"), ("GET", "leeroo/stats"), ("POST", "chat/completions")):
                response = httpx.request(method, f"{base_url}/{route}", headers=headers, json={})
                assert response.status_code == 401, (headers, route)
                error = error_of(response)
                assert error["type"] == "authentication_error"
                assert error["code"] == ("invalid_api_key" if "sk-wrong" in str(headers) else "missing_api_key")
        assert fake.received == received  # no expert was called for them
        assert httpx.get(f"{base_url.removesuffix('/v1')}/health").json()["status"] == "ok"
        assert ask(base_url).status_code == 200
        stats = httpx.get(f"{base_url}/leeroo/stats", headers={"authorization": f"Bearer {OTHER}"}).json()
        assert stats["today"]["key"] == key_id(OTHER) and stats["by_expert"]
        assert KEY not in str(stats) and {row["key"] for row in ledger_rows(routing.ledger.path)} == {key_id(KEY)}


def test_keys_come_from_the_environment_or_a_file_outside_the_repository(monkeypatch, tmp_path):
    monkeypatch.setenv("LEEROO_TEST_KEYS", f" {KEY}, ")
    (tmp_path / "keys").write_text(f"# the team's keys\n{OTHER}  # ci\n\n")
    base = {"pool": "pair", "budget": 0.6, "window": 4}
    keys = ClientKeys.from_settings(
        ServiceSettings(**base, client_keys_env="LEEROO_TEST_KEYS", client_keys_file=str(tmp_path / "keys"))
    )
    assert keys.identify(KEY) == key_id(KEY) and keys.identify(OTHER) == key_id(OTHER)
    assert not ClientKeys.from_settings(ServiceSettings(**base, client_keys_env="LEEROO_UNSET_KEYS")).required
    with pytest.raises(ValueError, match="outside the repository"):
        ServiceSettings(**base, client_keys_file=str(ROOT / "configs" / "keys"))
    with pytest.raises(ValueError, match="shorter than 16 characters.*secrets.token_urlsafe"):
        ClientKeys(["sk-short"])


def test_listening_beyond_this_machine_without_keys_is_refused_before_anything_starts(tmp_path):
    for host in ("127.0.0.1", "::1", "localhost"):
        ClientKeys().check_exposure(host)
    ClientKeys([KEY]).check_exposure("0.0.0.0")
    settings_ = EndpointsFile.model_validate(
        {"service": {"pool": "live", "budget": 0.2, "window": 4, "host": "0.0.0.0"}}
    )
    # no orchestrator in tmp_path: had it been loaded first, this would be a FileNotFoundError
    with pytest.raises(ValueError, match=r"refusing to listen on 0\.0\.0\.0 without client keys.*client_keys_env"):
        serve_orchestrator(load_profile("smoke"), settings_, tmp_path, tmp_path / "ledger.sqlite3")


@pytest.mark.server
def test_a_key_over_its_daily_cap_and_the_service_over_its_own_get_429_with_the_cap_and_the_reset(orchestrator, expert):
    fake, endpoint = expert
    caps = {"key_daily_cap_usd": 1e-9, "daily_cap_usd": 1e-9}
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, keys=[KEY, OTHER], **caps) as (routing, base_url):
        assert ask(base_url).status_code == 200  # under the cap when admitted; its cost then passes it
        for key, setting, who in ((KEY, "key_daily_cap_usd", key_id(KEY)), (OTHER, "daily_cap_usd", "over all keys")):
            response = ask(base_url, key=key)
            assert response.status_code == 429
            error = error_of(response)
            assert error["code"] == setting and error["type"] == "budget_exceeded"
            assert who in error["message"] and "daily cap of 1e-09 USD" in error["message"]
            assert "T00:00:00+00:00 (midnight UTC)" in error["message"]
            assert 0 < int(response.headers["retry-after"]) <= 86_401
        assert len(ledger_rows(routing.ledger.path)) == 1


@pytest.mark.server
def test_a_restart_keeps_the_spend_and_its_caps(orchestrator, expert, tmp_path):
    fake, endpoint = expert
    ledger, endpoints = tmp_path / "ledger.sqlite3", {CHEAP: endpoint, DEAR: endpoint}
    with serving(orchestrator, endpoints, ledger, keys=[KEY], key_daily_cap_usd=2e-5) as (routing, base_url):
        statuses = [ask(base_url).status_code for _ in range(12)]  # each costs 2.6e-6 to 7.8e-6 USD
        assert statuses[:3] == [200] * 3 and statuses[-1] == 429
        before = routing.report(key_id(KEY))
    with serving(orchestrator, endpoints, ledger, keys=[KEY], key_daily_cap_usd=2e-5) as (routing, base_url):
        after = routing.report(key_id(KEY))
        assert ask(base_url).status_code == 429  # the cap still holds: the spend survived
    kept = ("answered", "by_expert", "prompt_tokens", "completion_tokens", "spend_usd", "today")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept} and before["answered"] >= 2
    assert ledger_consistent(ledger)


@pytest.mark.server
def test_a_body_over_the_limit_is_a_413_naming_it_whether_its_length_is_declared_or_not(orchestrator, expert):
    fake, endpoint = expert
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, max_body_bytes=2000) as (routing, base_url):
        received = fake.received
        declared = ask(base_url, content="x" * 3000)

        def chunks():  # no content-length: the limit counts what arrives
            yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
            for _ in range(30):
                yield b"x" * 100
            yield b'"}]}'

        chunked = httpx.post(
            f"{base_url}/chat/completions", content=chunks(), headers={"content-type": "application/json"}
        )
        for response in (declared, chunked):
            assert response.status_code == 413
            assert (
                error_of(response)["code"] == "max_body_bytes"
                and "over 2000 bytes" in response.json()["error"]["message"]
            )
        assert fake.received == received
        assert ask(base_url, content="x" * 1000).status_code == 200


@pytest.mark.server
def test_max_tokens_gets_a_default_a_cap_and_a_400_when_not_positive(orchestrator, expert):
    fake, endpoint = expert
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, max_tokens_default=5, max_tokens_cap=7) as (
        routing,
        base_url,
    ):
        for fields, sent in (({}, 5), ({"max_tokens": 100}, 7), ({"max_completion_tokens": 6}, 6)):
            response = ask(base_url, **fields)
            assert response.status_code == 200 and response.headers["x-leeroo-max-tokens"] == str(sent)
            assert fake.last["max_tokens"] == sent and "max_completion_tokens" not in fake.last
        for fields in ({"max_tokens": 0}, {"max_tokens": -3}, {"max_tokens": 4, "max_completion_tokens": 5}):
            response = ask(base_url, **fields)
            assert response.status_code == 400 and error_of(response)["code"] == "max_tokens", fields


@pytest.mark.server
def test_a_prompt_over_an_experts_limit_goes_to_one_that_takes_it_else_a_400(orchestrator, expert, questions):
    fake, endpoint = expert
    short = Endpoint(endpoint.base_url, endpoint.model, max_prompt_tokens=50)
    long_prompt = "Which of these is a mammal? " * 10  # 280 bytes: over 50 tokens by the conservative count
    subject = dear_subject(orchestrator, questions)
    with serving(orchestrator, {CHEAP: endpoint, DEAR: short}) as (routing, base_url):
        response = ask(base_url, content=long_prompt, budget=0.9, subject=subject)
        assert response.status_code == 200 and response.headers["x-leeroo-expert"] == CHEAP
        assert response.headers["x-leeroo-fallbacks"] == "0"
        assert ask(base_url, content="Short?", budget=0.9, subject=subject).headers["x-leeroo-expert"] == DEAR
    with serving(orchestrator, {CHEAP: short, DEAR: short}) as (routing, base_url):
        received = fake.received
        response = ask(base_url, content=long_prompt)
        assert response.status_code == 400 and error_of(response)["code"] == "max_prompt_tokens"
        assert "over its limit of 50 (max_prompt_tokens)" in response.json()["error"]["message"]
        assert fake.received == received


@pytest.mark.server
def test_a_key_over_its_rate_gets_429_naming_the_limit_and_the_others_do_not(orchestrator, expert):
    fake, endpoint = expert
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, keys=[KEY, OTHER], key_requests_per_minute=2) as (
        routing,
        base_url,
    ):
        assert [ask(base_url).status_code for _ in range(2)] == [200, 200]
        response = ask(base_url)
        assert response.status_code == 429 and error_of(response)["code"] == "key_requests_per_minute"
        assert "2 requests in the last minute" in response.json()["error"]["message"]
        assert 0 < int(response.headers["retry-after"]) <= 60
        assert ask(base_url, key=OTHER).status_code == 200


@pytest.mark.server
def test_fields_that_would_steer_the_expert_call_are_refused(orchestrator, expert):
    fake, endpoint = expert
    with (
        fake_expert() as (evil, evil_endpoint),
        serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}) as (
            routing,
            base_url,
        ),
    ):
        for fields in (
            {"api_base": evil_endpoint.base_url},
            {"base_url": evil_endpoint.base_url, "api_key": "sk-mine"},
            {"mock_response": "free answer"},
            {"n": 5},
        ):
            response = ask(base_url, **fields)
            assert response.status_code == 400 and error_of(response)["code"] == "invalid_request", fields
        assert evil.received == 0
        assert "the fields taken: model, messages" in ask(base_url, api_base="x").json()["error"]["message"]


@pytest.mark.server
def test_a_client_gone_mid_stream_cuts_the_expert_call_and_is_counted_once(orchestrator):
    with (
        fake_expert(words=60, delay_s=0.05) as (slow, endpoint),
        serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}) as (routing, base_url),
    ):
        body = {"model": MODEL, "stream": True, "messages": [{"role": "user", "content": "Tell a long story."}]}
        with httpx.stream("POST", f"{base_url}/chat/completions", json=body, timeout=30) as response:
            request_id = response.headers["x-leeroo-request-id"]
            lines = response.iter_lines()
            assert [next(lines) for _ in range(3)]  # a few words, then the client goes away
        wait_for(lambda: slow.cut == 1, what="the expert's stream to be cut")
        wait_for(lambda: len(ledger_rows(routing.ledger.path)) == 1, what="the ledger to count the request")
        time.sleep(0.5)  # nothing more comes
        (row,) = ledger_rows(routing.ledger.path)
        assert row["id"] == request_id and row["outcome"] == "cancelled" and not row["reported"]
        assert 1 <= row["completion_tokens"] < 60 * 2 and row["prompt_tokens"] > 0
        assert slow.usage == [] and ledger_consistent(routing.ledger.path)


@pytest.mark.server
def test_the_api_fuzzed_from_its_openapi_schema_gives_no_5xx_and_keeps_the_ledger_consistent(
    orchestrator, expert, questions
):
    fake, endpoint = expert
    with serving(orchestrator, {CHEAP: endpoint, DEAR: endpoint}, keys=[KEY], key_requests_per_minute=10_000) as (
        routing,
        base_url,
    ):
        root, path = base_url.removesuffix("/v1"), routing.ledger.path
        schema = schemathesis.openapi.from_url(f"{root}/openapi.json")
        chat = schema["/v1/chat/completions"]["POST"]
        subjects = st.none() | st.sampled_from(sorted(questions["subject"].unique())) | st.text(max_size=30)
        stops = st.none() | st.text(max_size=5) | st.lists(st.text(min_size=1, max_size=5), max_size=4)
        stream_options = st.none() | st.fixed_dictionaries({"include_usage": st.booleans()})
        optional = {  # None: left out
            "subject": subjects,
            "stop": stops,
            "stream": st.none() | st.booleans(),
            "stream_options": stream_options,
            "temperature": st.none() | st.floats(0, 2),
            "seed": st.none() | st.integers(0, 2**31),
            "user": st.none() | st.text(max_size=10),
        }
        system = st.lists(
            st.fixed_dictionaries({"role": st.just("system"), "content": st.text(max_size=50)}), max_size=1
        )

        def aimed(drawn):  # a well-formed chat request for this service's model, with a user message to route
            earlier, text, fields = drawn
            body = {"model": MODEL, "messages": [*earlier, {"role": "user", "content": text or "?"}]}
            return chat.Case(body={**body, **{name: value for name, value in fields.items() if value is not None}})

        aimed_chat = st.tuples(system, st.text(max_size=200), st.fixed_dictionaries(optional)).map(aimed)
        strategy = st.sampled_from(  # three cases in four are chat requests the service routes
            [
                schema.as_strategy(schemathesis.GenerationMode.POSITIVE),  # every route, well-formed or not
                schema.as_strategy(schemathesis.GenerationMode.NEGATIVE),
                *[aimed_chat] * 6,
            ]
        ).flatmap(lambda drawn: drawn)
        usage_before, seen = list(fake.usage), {"cases": 0, "answered": 0, "streamed": 0}

        @settings(
            max_examples=FUZZ_EXAMPLES,
            deadline=None,  # each call is bounded by its timeout instead: a busy machine is no failure
            database=None,  # the same cases on every run (``seed``): a failure here is never luck
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
        )
        @seed(FUZZ_SEED)  # not derandomize: it seeds from the test's repr, which holds memory addresses here
        @given(case=strategy)
        def check(case):
            response = case.call(base_url=root, headers={"authorization": f"Bearer {KEY}"}, timeout=20)
            assert response.status_code < 500, (case.path, case.body, response.text[:500])
            assert ledger_consistent(path)
            reported = [(r["prompt_tokens"], r["completion_tokens"]) for r in ledger_rows(path) if r["reported"]]
            assert sorted(reported) == sorted(fake.usage[len(usage_before) :])
            answered = response.status_code == 200 and case.path.endswith("chat/completions")
            seen["cases"] += 1
            seen["answered"] += answered
            seen["streamed"] += answered and bool(case.body.get("stream"))

        check()
        print(f"fuzz: {seen['cases']} cases, {seen['answered']} answered by an expert, {seen['streamed']} streamed")
        assert seen["cases"] >= FUZZ_EXAMPLES // 2 and seen["answered"] >= FUZZ_EXAMPLES // 2 and seen["streamed"] >= 15
        rows = ledger_rows(path)  # every answer the fake expert finished is in the ledger, with the tokens it counted
        assert len(rows) == seen["answered"] and all(r["reported"] for r in rows)
        assert sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) == sum(
            p + c for p, c in fake.usage[len(usage_before) :]
        )
