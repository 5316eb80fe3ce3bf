"""Metrics that tell the truth: names linted over the real registry, and every declared series
moving when its event happens, on a real server with real kernels (local sandbox) and Redis."""
from __future__ import annotations

import asyncio
import json
import time

import types

import pytest
import redis as sync_redis
import redis.asyncio
import rq
from prometheus_client.parser import text_string_to_metric_families

from server.cache.shared import RedisStore
from server.handlers.base import USER_COOKIE
from server.app import health_checks
from server.handlers.health import bearer_allowed, docker_address, docker_ping
from server.metrics import Metrics, name_problems
from tests.accounts_support import Client
from tests.test_exercise_ws import Page, serve_course
from workers import deps, job_metrics, queue as jobs_queue
from workers.worker import LessonWorker


def test_every_declared_series_is_named_by_the_rules():
    metrics = Metrics()
    declared = metrics.declared()
    assert [problem for series in declared for problem in name_problems(*series)] == []
    exposed = {family.name for family in metrics.registry.collect()}
    assert exposed == {name for name, _, _ in declared}, "a series escapes the lint"


@pytest.mark.parametrize("series, complaint", [
    (("http_requests", "counter", ()), "not prefixed"),
    (("lessonserver_start_ms", "histogram", ()), "'ms' is not a base unit"),
    (("lessonserver_start", "histogram", ()), "ends in its unit"),
    (("lessonserver_runs_total", "counter", ()), "_total"),
    (("lessonserver_runs", "counter", ("user_id",)), "label 'user_id'"),
    (("lessonserver_runs", "counter", ("owner",)), "label 'owner'"),
])
def test_the_lint_catches_each_rule(series, complaint):
    assert any(complaint in problem for problem in name_problems(*series))


def test_metrics_token_is_a_bearer_compared_whole():
    assert bearer_allowed(None, None) and bearer_allowed("Bearer x", None)
    assert bearer_allowed("Bearer s3cret", "s3cret") and bearer_allowed("bearer s3cret", "s3cret")
    assert not bearer_allowed(None, "s3cret")
    assert not bearer_allowed("Bearer s3cre", "s3cret")
    assert not bearer_allowed("token s3cret", "s3cret")
    assert not bearer_allowed("Bearer ", "s3cret")


def test_docker_address_follows_docker_host():
    assert docker_address(None) == ("unix", "/var/run/docker.sock")
    assert docker_address("unix:///run/user/1000/docker.sock") == ("unix", "/run/user/1000/docker.sock")
    assert docker_address("tcp://127.0.0.1:2376") == ("127.0.0.1", 2376)
    with pytest.raises(ValueError, match="ssh://"):
        docker_address("ssh://me@host")


async def test_docker_check_asks_the_real_engine_and_names_a_missing_one(make_settings):
    await docker_ping(None)()                      # the engine the lead installed answers
    with pytest.raises(OSError):
        await docker_ping("unix:///nonexistent/docker.sock")()
    docker = types.SimpleNamespace(settings=make_settings(LS_SANDBOX="docker"), redis=None,
                                   engine=None)
    assert set(health_checks(docker)) == {"database", "docker"}
    local = types.SimpleNamespace(settings=make_settings(LS_SANDBOX="local"), redis=None, engine=None)
    assert set(health_checks(local)) == {"database"}


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """family name -> {(sample name, labels): value}."""
    return {family.name: {(s.name, tuple(sorted(s.labels.items()))): s.value
                          for s in family.samples}
            for family in text_string_to_metric_families(text)}


async def scrape(site) -> dict[str, dict[tuple, float]]:
    response = await site.get("/metrics")
    assert response.code == 200
    return samples(response.body.decode())


async def until(site, family: str, wanted: dict, timeout: float = 30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = await scrape(site)
        if any(dict(labels) == wanted and value >= 1 for (name, labels), value
               in now.get(family, {}).items()):
            return now
        await asyncio.sleep(0.1)
    raise AssertionError(f"{family}{wanted} never reached 1: {now.get(family)}")


async def test_every_declared_series_moves_when_its_event_happens(tmp_path, make_settings,
                                                                  redis_url, instance_name):
    # Three warm kernels (python, bash, sql) fill the host: a second learner's run must queue.
    async with serve_course(tmp_path, make_settings, LS_REDIS_URL=redis_url, LS_POOL_SIZE="1",
                            LS_ANON_KERNELS="1", LS_MAX_KERNELS="3",
                            LS_RECONNECT_GRACE="0") as site:
        before = await scrape(site)          # the pools are still warming
        await until(site, "lessonserver_pool_ready", {"kernel": "python"})   # warm: pool levels
        # Another process holds the catalog's recompute lease: this one waits (lock wait).
        store = RedisStore(redis.asyncio.from_url(redis_url),
                           f"lessonserver:{instance_name}:cache:", tombstone_seconds=90)
        lease = await store.try_lease("catalog:anonymous", 5.0)
        assert lease is not None
        waiting = asyncio.ensure_future(site.get("/"))
        await asyncio.sleep(0.3)
        await store.release("catalog:anonymous", lease)
        assert (await waiting).code == 200       # requests, latency, cache look-ups, recomputes
        page = await Page.open(site)             # a kernel start, taken from the pool
        ok, _ = await page.run("hello", "print('hello')")
        limited, _ = await page.run("hello", "while True:\n    pass", run="r2")
        assert ok["status"] == "ok" and limited["limit"] == "timeout"
        cookie = page.cookie + "; _xsrf=x"
        refused = await site.get("/api/kernels", method="POST", body='{"name": "python"}',
                                 headers={"Cookie": cookie, "X-XSRFToken": "x"})
        assert refused.code == 429, refused.body     # the lesson's kernel is this learner's one
        other = await Page.open(site)                # the host is full: this run waits
        await other.send(type="run", run="q1", exercise="hello", code="print('hello')")
        await other.until("queued")
        during = await scrape(site)                  # a kernel alive, a request queued
        page.socket.close()                          # room again: the queued run goes ahead
        waited, _ = await other.until("result")
        assert waited["status"] == "ok"
        other.socket.close()
        after = await until(site, "lessonserver_pool_ready", {"kernel": "python"})

    declared = {name for name, _, _ in Metrics().declared()} - MOVED_ELSEWHERE
    assert set(during) | set(after) >= declared
    unmoved = sorted(name for name in declared
                     if during.get(name, {}) == before.get(name, {})
                     and after.get(name, {}) == before.get(name, {}))
    assert unmoved == [], f"declared but never recorded: {unmoved}"
    assert during["lessonserver_kernels"][("lessonserver_kernels", ())] >= 1
    assert during["lessonserver_kernel_queue"][("lessonserver_kernel_queue", ())] == 1
    starts = during["lessonserver_kernel_start_seconds"]
    assert starts[("lessonserver_kernel_start_seconds_count",
                   (("backend", "local"), ("pool_hit", "true")))] >= 1
    assert during["lessonserver_limit_hits"][("lessonserver_limit_hits_total",
                                              (("kernel", "python"), ("limit", "timeout")))] == 1
    assert during["lessonserver_admission_rejected"][(
        "lessonserver_admission_rejected_total", (("what", "owner_kernels"),))] == 1
    assert USER_COOKIE in page.cookie
    first = during["lessonserver_first_output_seconds"]
    assert first[("lessonserver_first_output_seconds_count", (("kernel", "python"),))] >= 2
    assert first[("lessonserver_first_output_seconds_sum", (("kernel", "python"),))] > 0


# Series whose events (a webhook, an email) this run does not make: each has its test below.
MOVED_ELSEWHERE = {"lessonserver_webhook_seconds", "lessonserver_emails",
                   "lessonserver_email_send_seconds"}
STRIPE = {"LS_STRIPE_SECRET_KEY": "sk_test_metrics", "LS_STRIPE_PRICE": "price_metrics",
          "LS_STRIPE_WEBHOOK_SECRET": "whsec_metrics",
          "LS_STRIPE_API_BASE": "http://127.0.0.1:9"}      # never reached: the signature is bad


def value(scraped: dict, family: str, sample: str, **labels) -> float:
    return scraped.get(family, {}).get((sample, tuple(sorted(labels.items()))), 0.0)


EMAILS = ("lessonserver_emails", "lessonserver_emails_total")


async def grown(site, series: tuple[str, str], timeout: float, before: dict, **labels) -> dict:
    """The first scrape where `series` with `labels` is above its value in `before`."""
    deadline = time.monotonic() + timeout
    while value(now := await scrape(site), *series, **labels) <= value(before, *series, **labels):
        assert time.monotonic() < deadline, (series, labels, now.get(series[0]))
        await asyncio.sleep(0.1)
    return now


def test_email_totals_parse_from_the_fields_one_delivery_adds():
    one = job_metrics.increments("verify", "sent", 0.3)
    assert one == {"sent:verify:sent": 1, "bucket:4": 1, "seconds_sum": 0.3}
    assert job_metrics.increments("verify", "skipped", None) == {"sent:verify:skipped": 1}
    tally = job_metrics.Tally()
    tally.add(one)
    tally.add(job_metrics.increments("reset", "failed", 100.0))
    stats = tally.stats()
    assert stats.sent == {("verify", "sent"): 1, ("reset", "failed"): 1}
    assert stats.buckets[4] == 1 and stats.buckets[-1] == 1 and sum(stats.buckets) == 2
    assert stats.seconds_sum == pytest.approx(100.3)
    raw = {k.encode(): str(v).encode() for k, v in {**one, "bucket:99": 1}.items()}
    assert job_metrics.stats_of(raw).buckets == job_metrics.EmailStats(
        {}, tuple(1 if i == 4 else 0 for i in range(len(job_metrics.SECONDS_BUCKETS) + 1)), 0).buckets


async def test_webhooks_and_in_process_emails_move_their_series(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, **STRIPE) as site:
        before = await scrape(site)
        forged = await site.get("/stripe/webhook", method="POST", body='{"id": "evt_1"}',
                                headers={"Stripe-Signature": "t=1,v1=00"})
        assert forged.code == 400
        signed_up = await Client(site.base).post("/signup", {"email": "m@example.org",
                                                             "password": "p" * 12})
        assert signed_up.code == 200              # embedded: the job thread delivers to the outbox
        after = await grown(site, EMAILS, 10, before, kind="verify", outcome="outbox")
    webhook = ("lessonserver_webhook_seconds", "lessonserver_webhook_seconds_count")
    assert value(after, *webhook, status="400") - value(before, *webhook, status="400") == 1
    assert value(after, *EMAILS, kind="verify", outcome="outbox") - \
        value(before, *EMAILS, kind="verify", outcome="outbox") == 1
    sends = ("lessonserver_email_send_seconds", "lessonserver_email_send_seconds_count")
    assert value(after, *sends) - value(before, *sends) == 1


async def test_emails_sent_by_a_worker_reach_the_servers_metrics(tmp_path, make_settings, redis_url):
    """A real RQ worker (another process in production) delivers; the server shows its counts."""
    async with serve_course(tmp_path, make_settings, LS_REDIS_URL=redis_url) as site:
        before = await scrape(site)
        signed_up = await Client(site.base).post("/signup", {"email": "w@example.org",
                                                             "password": "p" * 12})
        assert signed_up.code == 200              # queued on RQ's emails queue
        settings = make_settings(LS_REDIS_URL=redis_url)
        connection = sync_redis.Redis.from_url(redis_url)
        job_deps = deps.JobDeps(settings)
        emails = rq.Queue(jobs_queue.EMAILS, connection=connection)
        try:
            for _ in range(100):                  # queued just after the answer
                if emails.count:
                    break
                await asyncio.sleep(0.05)
            LessonWorker([emails],
                         connection=connection, job_deps=job_deps).work(burst=True)
        finally:
            job_deps.close()
            connection.close()
        after = await grown(site, EMAILS, job_metrics.REFRESH + 5, before, kind="verify",
                            outcome="outbox")
    sends = ("lessonserver_email_send_seconds", "lessonserver_email_send_seconds_count")
    assert value(after, *sends) > value(before, *sends)


async def test_metrics_asks_for_its_bearer_token_when_one_is_set(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, LS_METRICS_TOKEN="m" * 32) as site:
        assert (await site.get("/metrics")).code == 401
        assert (await site.get("/metrics", headers={"Authorization": "Bearer " + "m" * 31})).code == 401
        allowed = await site.get("/metrics", headers={"Authorization": "Bearer " + "m" * 32})
        assert allowed.code == 200 and b"lessonserver_kernels" in allowed.body


async def test_healthz_asks_the_docker_engine_in_docker_mode(tmp_path, make_settings):
    async with serve_course(tmp_path, make_settings, LS_SANDBOX="docker") as site:
        response = await site.get("/healthz")
        assert response.code == 200, response.body
        assert json.loads(response.body)["checks"] == {"database": "ok", "docker": "ok"}
