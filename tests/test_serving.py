"""The routing service, for real: one `transformers serve` expert (SmolLM2) on a free local port, the
service on another, the `openai` client in front. Two recorded experts are routed between (a subject
policy fitted on their recorded MMLU results, their catalog prices); both endpoints point at the one
local SmolLM2 server, one of them through /v1/completions."""

import json
import math

import httpx
import numpy as np
import openai
import pandas as pd
import pytest
from serving_fakes import CHEAP, DEAR, MODEL, POOL, dead, pair_orchestrator, serving

from leeroo_lib.config import load_endpoints, load_profile
from leeroo_lib.data.benchmarks import question_texts
from leeroo_lib.experts.live_models import SMOLLM2_GGUF, SMOLLM2_PACKAGE, fp32_folder
from leeroo_lib.experts.server import ExpertServer
from leeroo_lib.routing.budget import MICRO, RollingBudget, budget_units
from leeroo_lib.serving.chat import chat_question
from leeroo_lib.serving.endpoints import Endpoint
from leeroo_lib.serving.keys import is_loopback


@pytest.fixture(scope="module")
def expert():
    with ExpertServer(fp32_folder(package=SMOLLM2_PACKAGE, file=SMOLLM2_GGUF)) as server:
        yield server


@pytest.fixture(scope="module")
def orchestrator(questions, recorded):
    return pair_orchestrator(questions, recorded)


@pytest.fixture(scope="module")
def no_experts(orchestrator):
    """The service over two endpoints where nothing listens: every request it routes fails."""
    with serving(orchestrator, {CHEAP: dead(), DEAR: dead()}) as (routing, base_url):
        yield routing, base_url


@pytest.fixture(scope="module")
def asked(questions):
    """Two MMLU questions as a user would send them, with their subjects."""
    return questions.sample(2, random_state=0)


def client(base_url):
    return openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0)


def live(expert, api="chat"):
    return Endpoint(expert.base_url, expert.model_id, api)


def ask(client, row, **extra):
    return client.chat.completions.with_raw_response.create(
        model=MODEL,
        messages=[{"role": "user", "content": question_texts(row)[0]}],
        max_tokens=1,
        extra_body={"subject": row["subject"].iloc[0], **extra},
    )


def test_rolling_budget_keeps_every_window_within_the_budget():
    for seed in range(30):
        rng = np.random.default_rng(seed)
        costs = pd.Series(rng.choice([0.01, 0.2, 0.26, 0.6, 0.9, 20.0], size=4, replace=False), index=list("wxyz"))
        window, budget = int(rng.integers(1, 12)), float(rng.uniform(costs.min(), costs.max()))
        rolling, held = RollingBudget(costs, window), []
        for _ in range(50):
            ticket = rolling.take(pd.Series(rng.random(4), index=costs.index), budget)
            held.append(ticket)
            if rng.random() < 0.1:  # a failed call gives its place back
                rolling.release(held.pop())
            recent = [np.rint(costs[t.expert] * MICRO) for t in held[-window:]]
            assert sum(recent) <= budget_units(budget) * len(recent)


def test_rolling_budget_at_extremes_takes_the_best_or_the_cheapest():
    costs = pd.Series({"cheap": 0.2, "mid": 0.6, "dear": 0.9})
    proba = pd.Series({"cheap": 0.1, "mid": 0.9, "dear": 0.5})
    assert RollingBudget(costs, 5).take(proba, budget=0.9).expert == "mid"
    assert RollingBudget(costs, 5).take(proba, budget=1e15).expert is not None  # far above the dearest: no overflow
    assert {RollingBudget(costs, 5).take(proba, budget=0.2).expert for _ in range(3)} == {"cheap"}
    rolling = RollingBudget(costs, 5)
    assert rolling.take(proba, 0.9, exclude={"mid"}).expert == "dear"
    assert rolling.take(proba, 0.9, exclude={"mid", "dear", "cheap"}) is None
    # requests with a budget of their own neither spend nor save for those at another budget
    assert [rolling.take(proba, 0.4).expert for _ in range(4)] == ["cheap", "mid", "cheap", "mid"]
    assert rolling.window_mean(0.4) == pytest.approx(0.4) and rolling.window_mean(0.9) == pytest.approx(0.9)


def test_a_written_question_is_read_back_as_the_policy_reads_it(questions):
    rows = questions.sample(20, random_state=1)
    for text, (_, row) in zip(question_texts(rows), rows.iterrows()):
        read = chat_question([{"role": "user", "content": text}], row["subject"])
        assert read["qkey"].iloc[0] == row["qkey"]
        assert question_texts(read) == [text]
    free = chat_question(
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "Why is the sky blue?"}]
    )
    assert free["question"].iloc[0] == "Why is the sky blue?" and free["choices"].iloc[0] == []


def test_the_shipped_endpoint_files_listen_on_this_machine_and_serve_a_pool_of_their_profile():
    for profile in ("smoke", "cpu"):
        settings = load_endpoints(profile).service
        assert settings.pool in load_profile(profile).pools
        assert is_loopback(settings.host)


@pytest.mark.server
def test_a_routed_answer_names_its_expert_and_matches_offline_routing(expert, orchestrator, asked):
    endpoints = {CHEAP: live(expert, "completions"), DEAR: live(expert)}
    with serving(orchestrator, endpoints) as (routing, base_url):
        for i in range(len(asked)):
            row = asked.iloc[[i]]
            raw = ask(client(base_url), row, budget=0.9)  # at least the dearest price: the budget binds nothing
            answer = raw.parse()
            offline = orchestrator.route(row, budget=0.9, pool=POOL).iloc[0]
            assert answer.model == raw.headers["x-leeroo-expert"] == offline
            assert answer.choices[0].message.content is not None
            assert float(raw.headers["x-leeroo-price-per-1m-usd"]) == orchestrator.costs[offline]
        stats = httpx.get(f"{base_url}/leeroo/stats").json()
        assert stats["answered"] == len(asked) and stats["spend_usd"] > 0 and stats["completion_tokens"] >= len(asked)


@pytest.mark.server
def test_a_streamed_answer_comes_in_chunks_from_the_chosen_expert(expert, orchestrator, asked):
    with serving(orchestrator, {CHEAP: live(expert), DEAR: live(expert)}) as (routing, base_url):
        stream = client(base_url).chat.completions.create(
            model=MODEL, stream=True, max_tokens=2, messages=[{"role": "user", "content": "Say hello."}]
        )
        chunks = list(stream)
        stats = routing.report("no-key")
        assert {c.model for c in chunks} == set(stats["by_expert"])
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert stats["completion_tokens"] >= 1


@pytest.mark.server
def test_a_chosen_expert_that_is_down_gives_way_to_the_next_affordable(expert, orchestrator, asked):
    with serving(orchestrator, {CHEAP: live(expert), DEAR: dead()}) as (routing, base_url):
        raw = ask(client(base_url), asked.iloc[[0]], budget=0.9)
        assert raw.parse().model == CHEAP
        assert raw.headers["x-leeroo-first-choice"] == DEAR and raw.headers["x-leeroo-fallbacks"] == "1"
        assert DEAR in raw.headers["x-leeroo-failed"]


@pytest.mark.server
def test_all_experts_down_is_a_503_that_names_them(no_experts, asked):
    routing, base_url = no_experts
    with pytest.raises(openai.InternalServerError, match="no expert answered") as error:
        ask(client(base_url), asked.iloc[[0]])
    assert error.value.status_code == 503
    assert CHEAP in str(error.value) and DEAR in str(error.value)


@pytest.mark.server
@pytest.mark.parametrize(
    "body, problem",
    [
        ({"budget": math.nan}, "must be a finite number"),
        ({"budget": -1}, "below the cheapest allowed expert"),
        ({"budget": 0.1}, "below the cheapest allowed expert"),
        ({"budget": "cheap"}, "malformed request: body.budget"),
        ({"model": "gpt-4"}, "unknown model 'gpt-4'"),
        ({"messages": [{"role": "system", "content": "hi"}]}, "no user message"),
        ({"messages": []}, "malformed request: body.messages"),
        ({"messages": [{"role": "user", "content": "\ud800?"}]}, "not valid Unicode (surrogates not allowed"),
        ({"budget": 1e300}, "the largest this service takes"),
    ],
)
def test_a_bad_request_is_a_400_that_names_the_problem(no_experts, body, problem):
    routing, base_url = no_experts
    request = {"model": MODEL, "messages": [{"role": "user", "content": "2+2?"}], **body}
    # json.dumps writes NaN as the bare token a careless client sends
    response = httpx.post(
        f"{base_url}/chat/completions", content=json.dumps(request), headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert problem in response.json()["error"]["message"]
    assert httpx.get(f"{base_url.removesuffix('/v1')}/health").json()["status"] == "ok"


@pytest.mark.server
def test_the_budget_holds_over_a_short_stream(expert, orchestrator, questions):
    budget, window = 0.4, 4
    with serving(orchestrator, {CHEAP: live(expert), DEAR: live(expert)}, budget=budget, window=window) as (
        routing,
        base_url,
    ):
        prices = []
        for i in range(4):
            raw = ask(client(base_url), questions.iloc[[100 * i]])
            prices.append(float(raw.headers["x-leeroo-price-per-1m-usd"]))
            assert float(raw.headers["x-leeroo-window-mean-price"]) <= budget + 1e-9
            assert np.mean(prices[-window:]) <= budget + 1e-9
        assert set(prices) == {0.2, 0.6}  # the dearer, more likely expert whenever the window affords it
        assert routing.report("no-key")["mean_price_per_1m_usd"] <= budget + 1e-9
