"""The response microcache in the outer middleware, on a small app behind the real middleware."""

from __future__ import annotations

import asyncio
import itertools

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient

from api.core import security
from api.core.config import get_settings
from api.core.middleware import Metrics, RateLimiter, RequestContextMiddleware, VerifiedApiKeys, route_list
from api.core.response_cache import CachedAnswer, ResponseCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_app(cache: ResponseCache, **limits: int) -> tuple[FastAPI, dict[str, int]]:
    calls = {"list": 0, "other": 0}
    counter = itertools.count(1)
    app = FastAPI()

    @app.get("/api/v1/pipelines")
    def pipelines(request: Request) -> JSONResponse:
        calls["list"] += 1
        auth = request.headers.get("authorization", "")
        claims = security.peek_access_claims(auth[7:]) if auth else None
        if claims is None:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        request.scope["state"]["user_id"] = claims["sub"]
        if request.query_params.get("fail"):
            return JSONResponse({"error": "boom"}, status_code=503)
        if request.query_params.get("running"):
            request.state.cache_seconds = 0.25  # as the run lists do while a run is unfinished
        return JSONResponse({"user": claims["sub"], "answer": next(counter), "q": str(request.query_params)})

    @app.post("/api/v1/pipelines")
    def create() -> dict[str, bool]:
        return {"created": True}

    @app.get("/api/v1/pipelines/{pipeline_id}/runs")
    async def slow(request: Request, pipeline_id: str) -> JSONResponse:
        calls["slow"] = calls.get("slow", 0) + 1
        await asyncio.sleep(0.3)
        return JSONResponse({"answer": next(counter)}, status_code=200 if pipeline_id == "p1" else 404)

    @app.get("/api/v1/other")
    def other() -> dict[str, int]:
        calls["other"] += 1
        return {"answer": next(counter)}

    settings = get_settings().model_copy(update=limits)
    app.add_middleware(
        RequestContextMiddleware,
        settings=settings,
        limiter=RateLimiter(settings),
        metrics=Metrics(),
        routes=route_list(app),
        verified_keys=VerifiedApiKeys(),
        cache=cache,
    )
    return app, calls


def token(user: str, role: str = "engineer") -> dict[str, str]:
    issued = security.create_access_token(user_id=user, role=role, token_version=0, session_id=None)
    return {"Authorization": f"Bearer {issued.token}"}


def test_same_caller_same_url_is_answered_once_per_ttl() -> None:
    clock = Clock()
    cache = ResponseCache(1.0, clock=clock)
    app, calls = make_app(cache)
    alice = token("alice")
    with TestClient(app) as client:
        first = client.get("/api/v1/pipelines", headers=alice)
        second = client.get("/api/v1/pipelines", headers=alice)
        assert first.status_code == second.status_code == 200
        assert first.json() == second.json() and calls["list"] == 1 and cache.hits == 1
        # per-request headers are fresh on a hit; the rate limit still counts it
        assert first.headers["X-Request-ID"] != second.headers["X-Request-ID"]
        assert int(second.headers["X-RateLimit-Remaining"]) < int(first.headers["X-RateLimit-Remaining"])
        assert second.headers["content-type"] == first.headers["content-type"]
        # a client may ask for a fresh answer
        fresh = client.get("/api/v1/pipelines", headers={**alice, "Cache-Control": "no-cache"})
        assert fresh.json()["answer"] != first.json()["answer"] and calls["list"] == 2
        # another query string is another answer
        assert client.get("/api/v1/pipelines?limit=5", headers=alice).json()["q"] == "limit=5"
        assert calls["list"] == 3
        # after the TTL the app answers again
        clock.now += 1.0
        third = client.get("/api/v1/pipelines", headers=alice)
        assert third.json()["answer"] != fresh.json()["answer"] and calls["list"] == 4


def test_answers_never_cross_callers_and_only_listed_200s_are_kept() -> None:
    cache = ResponseCache(30.0, clock=Clock())
    app, calls = make_app(cache)
    with TestClient(app) as client:
        alice = client.get("/api/v1/pipelines", headers=token("alice")).json()
        bob = client.get("/api/v1/pipelines", headers=token("bob")).json()
        assert (alice["user"], bob["user"]) == ("alice", "bob") and calls["list"] == 2
        # another token of the same user (another session, a narrower API key, a changed role) is
        # another key
        as_viewer = client.get("/api/v1/pipelines", headers=token("alice", "viewer")).json()
        other_session = client.get("/api/v1/pipelines", headers=token("alice")).json()
        assert len({as_viewer["answer"], other_session["answer"], alice["answer"]}) == 3
        # anonymous: never served from, nor stored in, the cache
        assert client.get("/api/v1/pipelines").status_code == 401
        assert client.get("/api/v1/pipelines").status_code == 401
        assert calls["list"] == 6
        # errors are not kept
        carol = token("carol")
        assert client.get("/api/v1/pipelines?fail=1", headers=carol).status_code == 503
        assert client.get("/api/v1/pipelines?fail=1", headers=carol).status_code == 503
        assert calls["list"] == 8
        # a route that is not listed is never cached
        client.get("/api/v1/other", headers=carol)
        client.get("/api/v1/other", headers=carol)
        assert calls["other"] == 2


def test_a_write_drops_every_answer() -> None:
    cache = ResponseCache(30.0, clock=Clock())
    app, calls = make_app(cache)
    alice = token("alice")
    with TestClient(app) as client:
        before = client.get("/api/v1/pipelines", headers=alice).json()
        assert client.get("/api/v1/pipelines", headers=alice).json() == before
        assert client.post("/api/v1/pipelines", headers=token("bob")).status_code == 200
        after = client.get("/api/v1/pipelines", headers=alice).json()
        assert after["answer"] != before["answer"] and calls["list"] == 2


def test_writes_refused_by_the_rate_limit_drop_nothing() -> None:
    """Anonymous spam beyond its limit must not keep emptying everybody's cache."""
    cache = ResponseCache(30.0, clock=Clock())
    app, calls = make_app(cache, rate_limit_anonymous=1)
    alice = token("alice")
    with TestClient(app) as client:
        assert client.post("/api/v1/pipelines").status_code == 200  # within the limit: drops
        before = client.get("/api/v1/pipelines", headers=alice).json()
        refused = [client.post("/api/v1/pipelines").status_code for _ in range(5)]
        assert refused == [429] * 5
        assert client.get("/api/v1/pipelines", headers=alice).json() == before
        assert calls["list"] == 1 and cache.hits == 1


def test_an_answer_computed_during_a_write_is_not_kept() -> None:
    clock = Clock()
    cache = ResponseCache(30.0, clock=clock)
    key = ("user:alice", "credential-digest", "/api/v1/pipelines", b"")
    answer = CachedAnswer(200, (), b"{}", "alice", clock())
    generation = cache.generation
    cache.written()  # a write began (or ended) while the answer was being computed
    assert not cache.put(key, generation, answer) and cache.get(key) is None
    assert cache.put(key, cache.generation, answer) and cache.get(key) == answer
    assert not cache.put(key, cache.generation, CachedAnswer(404, (), b"{}", "alice", clock()))
    assert not ResponseCache(0).applies("GET", "/api/v1/pipelines", "user:alice")


def test_a_burst_of_the_same_request_runs_the_app_once() -> None:
    # 20 clients asking at once when nothing is cached (an entry just expired): one computes
    cache = ResponseCache(30.0, clock=Clock())
    app, calls = make_app(cache)
    alice = token("alice")

    async def burst(path: str) -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await asyncio.gather(*(client.get(path, headers=alice) for _ in range(20)))

    answers = asyncio.run(burst("/api/v1/pipelines/p1/runs"))
    assert {r.status_code for r in answers} == {200} and len({r.text for r in answers}) == 1
    assert calls["slow"] == 1
    # only a 200 is shared: each of a burst of 404s is answered by the app
    answers = asyncio.run(burst("/api/v1/pipelines/p2/runs"))
    assert {r.status_code for r in answers} == {404} and calls["slow"] == 21


def test_an_expired_answer_goes_to_the_burst_while_one_request_computes_the_next() -> None:
    clock = Clock()
    cache = ResponseCache(1.0, clock=clock)
    app, calls = make_app(cache)
    alice = token("alice")

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            first = asyncio.create_task(client.get("/api/v1/pipelines/p1/runs", headers=alice))
            await asyncio.sleep(0.1)  # the first is computing (0.3 s)
            rest = await asyncio.gather(
                *(client.get("/api/v1/pipelines/p1/runs", headers=alice) for _ in range(9))
            )
            return [await first, *rest]

    old = asyncio.run(burst())[0].json()["answer"]
    assert calls["slow"] == 1
    clock.now += 1.5  # expired, not yet twice the TTL: stale-while-revalidate
    answers = [r.json()["answer"] for r in asyncio.run(burst())]
    assert calls["slow"] == 2 and answers[0] != old and answers[1:] == [old] * 9
    clock.now += 2.5  # older than twice the TTL: nobody gets it, the burst waits for the new one
    answers = [r.json()["answer"] for r in asyncio.run(burst())]
    assert calls["slow"] == 3 and len(set(answers)) == 1 and answers[0] != old


def test_an_answer_may_ask_for_a_shorter_life() -> None:
    """The run lists keep an answer that shows an unfinished run for a quarter of a second only."""
    clock = Clock()
    cache = ResponseCache(1.0, clock=clock)
    app, calls = make_app(cache)
    alice = token("alice")
    with TestClient(app) as client:
        running = client.get("/api/v1/pipelines?running=1", headers=alice).json()
        settled = client.get("/api/v1/pipelines", headers=alice).json()
        assert calls["list"] == 2
        clock.now += 0.2
        assert client.get("/api/v1/pipelines?running=1", headers=alice).json() == running
        assert calls["list"] == 2
        clock.now += 0.1  # 0.3 s: past the short life, well within the cache's own second
        assert client.get("/api/v1/pipelines?running=1", headers=alice).json() != running
        assert client.get("/api/v1/pipelines", headers=alice).json() == settled
        assert calls["list"] == 3
