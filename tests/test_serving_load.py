"""The routing service under load, against fake experts on 127.0.0.1 (serving_fakes.py): each expert holds at most
its ``max_parallel_requests``; a full one gives way to the next affordable expert with room, none with room is a
fast 429, a client that leaves frees its slot, and the budget window holds while requests run concurrently."""

import asyncio
import dataclasses
import threading
import time

import httpx
import pytest
from serving_fakes import CHEAP, DEAR, MODEL, dead, dear_subject, fake_expert, ledger_rows, pair_orchestrator, serving
from serving_fakes import wait_for as wait_until

from leeroo_lib.serving.service import RETRY_AFTER_S

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def orchestrator(questions, recorded):
    return pair_orchestrator(questions, recorded)


@pytest.fixture(scope="module")
def subject(orchestrator, questions):
    return dear_subject(orchestrator, questions)


def slots(endpoint, n: int = 1):
    return dataclasses.replace(endpoint, max_parallel_requests=n)


def body(subject: str, **fields) -> dict:
    return {
        "model": MODEL,
        "budget": 0.9,  # the dearer expert whenever the policy prefers it
        "subject": subject,
        "messages": [{"role": "user", "content": "Which organ filters the blood?"}],
        **fields,
    }


async def post_all(url: str, bodies: list[dict], timeout: float = 30) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=timeout) as client:
        return await asyncio.gather(*(client.post(f"{url}/chat/completions", json=b) for b in bodies))


def occupy(url: str, bodies: list[dict]):
    """Send ``bodies`` at once in a background thread; join the returned thread for their responses."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(responses=asyncio.run(post_all(url, bodies))), daemon=True)
    thread.start()
    return thread, out


def test_a_full_expert_gives_way_to_the_next_affordable_one_with_room(orchestrator, subject):
    with (
        fake_expert(words=20, delay_s=0.1) as (slow, endpoint),  # 2 s an answer
        serving(orchestrator, {CHEAP: slots(endpoint), DEAR: slots(endpoint)}) as (routing, url),
    ):
        thread, held = occupy(url, [body(subject)])
        wait_until(lambda: slow.received == 1, 10, "the first request to reach the dearer expert")
        shed = httpx.post(f"{url}/chat/completions", json=body(subject), timeout=30)
        thread.join(30)
        (first,) = held["responses"]
        assert first.headers["x-leeroo-expert"] == DEAR and first.headers["x-leeroo-full"] == ""
        assert shed.status_code == 200 and shed.headers["x-leeroo-expert"] == CHEAP
        assert shed.headers["x-leeroo-first-choice"] == DEAR and shed.headers["x-leeroo-full"] == DEAR
        assert shed.headers["x-leeroo-fallbacks"] == "0" and routing.stats.shed == 1


def test_every_expert_full_is_a_429_with_retry_after_in_under_a_second(orchestrator, subject):
    with (
        fake_expert(words=30, delay_s=0.1) as (slow, endpoint),  # 3 s an answer
        serving(orchestrator, {CHEAP: slots(endpoint), DEAR: slots(endpoint)}, slot_wait_s=0.3) as (routing, url),
    ):
        thread, held = occupy(url, [body(subject), body(subject)])
        wait_until(lambda: slow.received == 2, 10, "both experts to be busy")
        started = time.perf_counter()
        busy = httpx.post(f"{url}/chat/completions", json=body(subject), timeout=30)
        took = time.perf_counter() - started
        thread.join(30)
        assert busy.status_code == 429 and took < 1, (busy.status_code, took)
        assert busy.headers["retry-after"] == str(RETRY_AFTER_S)
        error = busy.json()["error"]
        assert error["code"] == "experts_busy" and error["type"] == "rate_limit_error"
        assert CHEAP in error["message"] and DEAR in error["message"] and "slot_wait_s" in error["message"]
        assert sorted(r.status_code for r in held["responses"]) == [200, 200] and slow.received == 2
        assert routing.stats.busy == 1


async def timed_posts(url: str, bodies: list[dict]) -> list[tuple[int, float]]:
    """``bodies`` sent at once: each one's status and seconds."""
    async with httpx.AsyncClient(timeout=30) as client:

        async def one(b):
            started = time.perf_counter()
            reply = await client.post(f"{url}/chat/completions", json=b)
            return reply.status_code, time.perf_counter() - started

        return await asyncio.gather(*(one(b) for b in bodies))


def test_a_burst_beyond_the_experts_slots_is_shed_at_once_not_after_the_policy_read_every_request(
    orchestrator, subject
):
    with (
        fake_expert(words=30, delay_s=0.1) as (slow, endpoint),  # 3 s an answer
        serving(orchestrator, {CHEAP: slots(endpoint), DEAR: slots(endpoint)}, slot_wait_s=0.3) as (routing, url),
    ):
        read = routing.read

        def slow_read(*args):  # a 0.2 s policy: 12 requests read one after another would take 2.4 s
            time.sleep(0.2)
            return read(*args)

        routing.read = slow_read
        replies = asyncio.run(timed_posts(url, [body(subject)] * 12))
        shed = [seconds for status, seconds in replies if status == 429]
        assert sorted(status for status, _ in replies) == [200] * 2 + [429] * 10 and slow.received == 2
        assert max(shed) < 1, shed  # the two places went to the first two; the rest never waited on the policy
        assert routing.stats.busy == 10


def test_as_many_requests_wait_for_a_place_as_there_are_places_and_the_rest_are_told_at_once(orchestrator, subject):
    with (
        fake_expert(words=30, delay_s=0.1) as (slow, endpoint),  # 3 s an answer
        serving(orchestrator, {CHEAP: slots(endpoint), DEAR: slots(endpoint)}, slot_wait_s=1.5) as (routing, url),
    ):
        replies = asyncio.run(timed_posts(url, [body(subject)] * 12))
        shed = sorted(seconds for status, seconds in replies if status == 429)
        assert sorted(status for status, _ in replies) == [200] * 2 + [429] * 10 and slow.received == 2
        # two places, so two wait out slot_wait_s (no call ends within it); the other eight are told at once
        assert max(shed[:8]) < 1 and min(shed[8:]) >= 1.5, shed
        assert routing.stats.busy == 10


def test_a_request_waits_for_a_slot_that_frees_within_slot_wait_s(orchestrator, subject):
    with (
        fake_expert(words=5, delay_s=0.1) as (slow, endpoint),  # 0.5 s an answer
        serving(orchestrator, {CHEAP: slots(endpoint), DEAR: slots(endpoint)}, slot_wait_s=5) as (routing, url),
    ):
        responses = asyncio.run(post_all(url, [body(subject)] * 4))
        assert [r.status_code for r in responses] == [200] * 4 and routing.stats.busy == 0


def test_a_client_that_leaves_has_its_expert_call_closed_and_frees_the_slot(orchestrator, subject):
    with (
        fake_expert(words=100, delay_s=0.05) as (slow, endpoint),  # 5 s an answer
        serving(orchestrator, {CHEAP: dead(), DEAR: slots(endpoint)}) as (routing, url),
    ):
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and hangs up mid-answer
            httpx.post(f"{url}/chat/completions", json=body(subject), timeout=0.5)
        wait_until(lambda: slow.cut == 1, 5, "the expert to see its call closed")
        assert routing.stats.clients_gone == 1
        slow.words = 3
        after = httpx.post(f"{url}/chat/completions", json=body(subject), timeout=30)
        assert after.status_code == 200 and after.headers["x-leeroo-expert"] == DEAR  # its slot is free again
        assert [r["expert"] for r in ledger_rows(routing.ledger.path)] == [DEAR]  # the gone one spent nothing counted


def test_the_budget_window_holds_while_requests_run_concurrently(orchestrator, questions):
    budget = 0.4
    asked = questions.sample(24, random_state=3)
    with (
        fake_expert(words=3, delay_s=0.02) as (fake, endpoint),
        serving(orchestrator, {CHEAP: slots(endpoint, 24), DEAR: slots(endpoint, 24)}, budget=budget, window=4) as (
            routing,
            url,
        ),
    ):
        bodies = [
            {"model": MODEL, "subject": s, "messages": [{"role": "user", "content": "A question?"}]}
            for s in asked["subject"]
        ]
        responses = asyncio.run(post_all(url, bodies))
        assert [r.status_code for r in responses] == [200] * len(bodies)
        assert all(float(r.headers["x-leeroo-window-mean-price"]) <= budget + 1e-9 for r in responses)
        prices = [float(r.headers["x-leeroo-price-per-1m-usd"]) for r in responses]
        assert set(prices) == {0.2, 0.6} and sum(prices) / len(prices) <= budget + 1e-9  # the budget binds
        assert routing.report("no-key")["mean_price_per_1m_usd"] <= budget + 1e-9
