"""Emails end to end: the server's Mailer -> real Redis -> a real `lessonserver worker` process
-> a real SMTP server (aiosmtpd) -> the email log in real Postgres; and sign-up over HTTP in
production mode, with its link followed from the message the SMTP server received."""
from __future__ import annotations

import asyncio
import email
import email.policy
import os
import threading
import time

import pytest
import redis
from aiosmtpd.controller import Controller

from server import db
from server.mail.mailer import Mailer
from server.store import emails
from tests.accounts_support import LINK, Client, text
from tests.services import free_port
from tests.test_pages import start
from tests.test_trace_pipeline import WorkerProcess
from tests.test_trace_support import fresh_postgres, migrate
from workers.queue import open_jobs


class Inbox:
    """aiosmtpd handler: keeps what it accepts; answers RCPT with `refuse` codes first, if any."""

    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: list[str] = []
        self.rcpt_calls = 0
        self.hold = threading.Event()      # while set, RCPT waits: a delivery stuck mid-way

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_calls += 1
        while self.hold.is_set():
            await asyncio.sleep(0.05)
        if self.refuse:
            return self.refuse.pop(0)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    inbox.url = f"smtp://127.0.0.1:{controller.port}"
    yield inbox
    controller.stop()


class Workers:
    """`lessonserver worker` processes of one test, all stopped at its end."""

    def __init__(self, tmp_path) -> None:
        self.tmp_path, self.env, self.started = tmp_path, {}, []

    def new(self) -> WorkerProcess:
        worker = WorkerProcess({"PATH": os.environ.get("PATH", ""),
                                "LS_DATA_DIR": str(self.tmp_path / "w"), **self.env},
                               self.tmp_path / f"worker{len(self.started)}.log")
        self.started.append(worker)
        worker.start()
        return worker


@pytest.fixture
def workers(tmp_path):
    pool = Workers(tmp_path)
    yield pool
    for worker in pool.started:
        worker.stop()


@pytest.fixture
def production(pg_url, redis_server, make_settings, smtp, workers):
    """Settings on a fresh Postgres and an empty Redis, and one worker process sending to `smtp`."""
    if redis_server.proc is None:
        redis_server.start()
    redis.Redis.from_url(redis_server.url).flushdb()
    with fresh_postgres(pg_url, prefix="mail") as db_url:
        migrate(db_url, make_settings)
        workers.env = {"LS_REDIS_URL": redis_server.url, "LS_DATABASE_URL": db_url,
                       "LS_SMTP_URL": smtp.url, "LS_MAIL_FROM": "Lessons <lessons@example.org>",
                       "LS_COOKIE_SECRET": "s", "LS_PUBLIC_URL": "http://lessons.example.org"}
        workers.new()
        try:
            yield make_settings(**workers.env)
        finally:
            for worker in workers.started:
                worker.stop()


async def until(predicate, timeout: float = 30.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def logged(engine, kind: str) -> emails.LoggedEmail | None:
    found = [e for e in await emails.recent(engine) if e.kind == kind]
    return found[0] if found else None


@pytest.fixture
async def mailer(production):
    engine = db.create_engine(production)
    jobs = open_jobs(production)
    await jobs.start()
    yield Mailer(engine, jobs.send_email, "http://lessons.example.org"), engine, jobs
    await jobs.close()
    await engine.dispose()


async def test_an_email_goes_through_the_worker_to_smtp_once_per_trigger(mailer, smtp):
    send, engine, _ = mailer
    started = time.monotonic()
    assert await send.send("welcome", "ada@example.org", trigger="user-1", user_id="u1")
    queued_ms = (time.monotonic() - started) * 1000
    assert not await send.send("welcome", "ada@example.org", trigger="user-1", user_id="u1")
    sent = await until(lambda: _status(engine, "welcome", "sent"), what="the email to be sent")
    delivered_ms = (time.monotonic() - started) * 1000
    print(f"email: queued in {queued_ms:.1f} ms, delivered over SMTP in {delivered_ms:.0f} ms")
    assert (sent.attempts, sent.recipient, sent.outbox) == (1, "ada@example.org", None)
    await asyncio.sleep(1.5)
    assert len(smtp.messages) == 1
    [message] = smtp.messages
    assert message["To"] == "ada@example.org" and message["From"] == "Lessons <lessons@example.org>"
    assert message["Subject"] == "Welcome to the lessons"
    plain = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "http://lessons.example.org/" in plain and "<a href=\"http://lessons.example.org/\">" in html


async def _status(engine, kind, status):
    found = await logged(engine, kind)
    return found if found is not None and found.status == status else None


async def test_a_mail_server_that_says_try_later_gets_the_email_on_a_later_attempt(mailer, smtp):
    send, engine, _ = mailer
    smtp.refuse = ["451 4.3.0 try again later"]
    await send.send("magic", "ada@example.org", trigger="token-1", link="http://x/l?token=t",
                    minutes="30")
    failed = await until(lambda: _status(engine, "magic", "failed"), what="the first attempt")
    assert failed.attempts == 1 and "451" in failed.last_error
    sent = await until(lambda: _status(engine, "magic", "sent"), timeout=40, what="the retry")
    assert sent.attempts == 2 and sent.last_error is None
    assert len(smtp.messages) == 1


async def test_a_refused_address_is_recorded_and_not_retried(mailer, smtp):
    send, engine, _ = mailer
    smtp.refuse = ["550 5.1.1 no such mailbox"]
    await send.send("welcome", "nobody@example.org", trigger="user-2")
    failed = await until(lambda: _status(engine, "welcome", "failed"), what="the refusal")
    assert "550" in failed.last_error
    await asyncio.sleep(7)                       # past the first retry interval
    assert (await logged(engine, "welcome")).attempts == 1 and smtp.rcpt_calls == 1


async def test_a_job_queued_twice_sends_once(mailer, smtp):
    send, engine, jobs = mailer
    message = {"kind": "welcome", "to": "ada@example.org", "subject": "s", "text": "t", "html": "h"}
    email_id = emails.email_id("welcome", "user-3")
    await emails.record(engine, email_id, None, "welcome", "ada@example.org", "s")
    await jobs.send_email(email_id, message)
    await until(lambda: _status(engine, "welcome", "sent"), what="the first job")
    await jobs.send_email(email_id, message)     # a duplicate delivery of the job
    await asyncio.sleep(1.5)
    assert len(smtp.messages) == 1 and (await logged(engine, "welcome")).attempts == 1


async def test_sign_up_in_production_mode_sends_the_link_over_smtp(production, smtp):
    server, stop, task = await start(production.replace(port=0))
    try:
        client = Client(server.base)
        response = await client.post("/signup", {"email": "ada@example.org",
                                                 "password": "correct horse"})
        assert response.code == 200 and "Check your inbox" in text(response)

        async def verify_mail():
            return [m for m in smtp.messages if m["Subject"] == "Confirm your address"]
        [message] = await until(verify_mail, what="the confirmation email")
        plain = message.get_body(("plain",)).get_content()
        token = LINK.search(plain).group(1).split("token=", 1)[1]
        assert (await client.post("/verify", {"token": token})).code == 302
        assert (await client.get("/account")).code == 200

        async def welcome():
            return [m for m in smtp.messages if m["Subject"] == "Welcome to the lessons"]
        await until(welcome, what="the welcome email")
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_reminders_are_scheduled_once_and_sent_once_by_the_worker(production, mailer, smtp):
    from rq import Queue
    from rq.registry import ScheduledJobRegistry
    from server.store import catalog
    from tests.test_reminders import idle_learner
    from workers import queue as jobs_queue
    from workers.reminders import send_reminders
    from workers.worker import REMINDERS_JOB_ID, schedule_reminders
    _, engine, _ = mailer
    await catalog.sync_catalog(engine, catalog.entries_from(_bundled_catalog(production)))
    await idle_learner(engine, "ada@example.org")
    connection = redis.Redis.from_url(production.redis_url)
    for _ in range(2):
        schedule_reminders(connection)
    scheduled = ScheduledJobRegistry(jobs_queue.EMAILS, connection=connection).get_job_ids()
    assert scheduled == [REMINDERS_JOB_ID]
    emails_queue = Queue(jobs_queue.EMAILS, connection=connection)
    for _ in range(2):                                  # the job running twice sends once
        emails_queue.enqueue(send_reminders)

    async def reminded():
        return [m for m in smtp.messages if m["Subject"] == "Your lesson is waiting"]
    [message] = await until(reminded, what="the reminder")
    plain = message.get_body(("plain",)).get_content()
    assert "http://lessons.example.org/lessons/values-and-printing" in plain
    assert "http://lessons.example.org/unsubscribe?token=" in plain
    await asyncio.sleep(2)
    assert len(await reminded()) == 1


def _bundled_catalog(settings):
    from kernels.plugins import discover
    from server.app import load_library
    return load_library(settings, discover()).catalog


async def test_a_worker_killed_mid_delivery_is_replaced_and_the_email_sent_once(mailer, smtp,
                                                                               workers):
    from rq import Queue
    from rq.registry import ScheduledJobRegistry, StartedJobRegistry
    from workers import queue as jobs_queue
    send, engine, _ = mailer
    smtp.hold.set()
    await send.send("welcome", "ada@example.org", trigger="user-9")
    await until(lambda: _rcpt_seen(smtp), what="the worker inside the SMTP exchange")
    workers.started[0].kill()                      # SIGKILL mid-delivery
    smtp.hold.clear()
    connection = redis.Redis.from_url(workers.env["LS_REDIS_URL"])
    registry = StartedJobRegistry(jobs_queue.EMAILS, connection=connection)
    assert len(registry.get_job_ids(cleanup=False)) == 1
    # RQ's maintenance re-queues it once its heartbeat lapses; run that clean-up as of then.
    registry.cleanup(timestamp=time.time() + jobs_queue.EMAIL_TIMEOUT + 120)
    job_id = "email-" + emails.email_id("welcome", "user-9")
    waiting = Queue(jobs_queue.EMAILS, connection=connection).job_ids + \
        ScheduledJobRegistry(jobs_queue.EMAILS, connection=connection).get_job_ids()  # its backoff
    assert waiting.count(job_id) == 1 and smtp.messages == []
    # The dead worker's scheduler lock lapses after 61 s and the next worker takes it at its next
    # maintenance (60 s): drop the lock as of then, so its scheduler starts straight away.
    from rq.scheduler import RQScheduler
    connection.delete(*(RQScheduler.get_locking_key(name) for name in jobs_queue.QUEUES))
    workers.new()
    sent = await until(lambda: _status(engine, "welcome", "sent"), what="the retried delivery")
    assert sent.attempts == 2
    await asyncio.sleep(1)
    assert len(smtp.messages) == 1


async def _rcpt_seen(smtp):
    return smtp.rcpt_calls > 0
