"""RQ job that delivers one email: over SMTP when LS_SMTP_URL is set, else into the outbox.

The email's row (recorded by the server before queueing) decides whether to
send: a row already `sent` is never sent again, so a duplicate or retried job
is harmless. A failure is recorded (attempts, last error) and raised, so RQ
retries with backoff; an address the server refuses for good (5xx) is not
retried. The message arrives rendered; its only secret is its one-use link.
"""
from __future__ import annotations

import contextlib
import email.message
import email.utils
import logging
import smtplib
import time
from collections.abc import AsyncIterator
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa

from sqlalchemy.ext.asyncio import AsyncEngine

from server.config import Settings
from server.mail.mailer import Mailer
from server.mail.messages import Message
from server.models import EmailLog, utcnow
from workers import deps, job_metrics

log = logging.getLogger("lessonserver.mail")
SMTP_TIMEOUT = 20.0            # seconds for connecting and for each SMTP command


class PermanentFailure(Exception):
    """The mail server refused the message for good: retrying cannot help."""


def deliver(email_id: str, message: dict[str, str]) -> str:
    """Send the logged email `email_id` once; returns sent, skipped or outbox. Counted and
    timed by kind and outcome (workers/job_metrics.py), failures too."""
    settings, kind = deps.current().settings, str(message.get("kind", "-"))
    began = time.perf_counter()
    try:
        outcome = _deliver(email_id, message)
    except Exception as exc:
        failed = "refused" if isinstance(exc, PermanentFailure) else "failed"
        job_metrics.record_email(settings, kind, failed, time.perf_counter() - began)
        raise
    job_metrics.record_email(settings, kind, outcome,
                             None if outcome == "skipped" else time.perf_counter() - began)
    return outcome


def _deliver(email_id: str, message: dict[str, str]) -> str:
    job_deps = deps.current()
    settings = job_deps.settings
    mail = Message.from_json(message)
    db = job_deps.database()
    with db.begin() as conn:
        row = conn.execute(sa.select(EmailLog.status).where(EmailLog.id == email_id)).first()
        if row is None or row.status == "sent":
            return "skipped"           # unknown (account deleted) or already delivered
        conn.execute(sa.update(EmailLog).where(EmailLog.id == email_id)
                     .values(attempts=EmailLog.attempts + 1))
    if settings.smtp_url is None:
        log.info("email (no LS_SMTP_URL: kept in the outbox)", extra={"fields": {
            "kind": mail.kind, "to": mail.to, "subject": mail.subject, "body": mail.text}})
        _mark(db, email_id, status="sent", sent_at=utcnow(), outbox=mail.text, last_error=None)
        return "outbox"
    try:
        smtp_send(settings.smtp_url, settings.mail_from, mail)
    except PermanentFailure as exc:
        _mark(db, email_id, status="failed", last_error=str(exc)[:500])
        _no_retry()
        raise
    except (smtplib.SMTPException, OSError) as exc:
        _mark(db, email_id, status="failed", last_error=f"{type(exc).__name__}: {exc}"[:500])
        raise
    _mark(db, email_id, status="sent", sent_at=utcnow(), last_error=None)
    log.info("email sent", extra={"fields": {"kind": mail.kind}})
    return "sent"


def _mark(db: sa.Engine, email_id: str, **values) -> None:
    with db.begin() as conn:
        conn.execute(sa.update(EmailLog).where(EmailLog.id == email_id).values(**values))


def _no_retry() -> None:
    from rq import get_current_job
    job = get_current_job()
    if job is not None:
        job.retries_left = 0


def mime(mail: Message, sender: str) -> email.message.EmailMessage:
    msg = email.message.EmailMessage()
    msg["From"] = sender
    msg["To"] = mail.to
    msg["Subject"] = mail.subject
    msg["Date"] = email.utils.formatdate(localtime=False)
    msg["Message-ID"] = email.utils.make_msgid(domain=email.utils.parseaddr(sender)[1].partition("@")[2]
                                               or None)
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    return msg


def smtp_send(url: str, sender: str, mail: Message) -> None:
    """One message over SMTP (smtps:// is TLS from the start, smtp+starttls:// upgrades)."""
    parts = urlsplit(url)
    secure = parts.scheme == "smtps"
    client_class = smtplib.SMTP_SSL if secure else smtplib.SMTP
    port = parts.port or (465 if secure else 587 if parts.scheme == "smtp+starttls" else 25)
    with client_class(parts.hostname, port, timeout=SMTP_TIMEOUT) as client:
        if parts.scheme == "smtp+starttls":
            client.starttls()
        if parts.username:
            client.login(unquote(parts.username), unquote(parts.password or ""))
        try:
            client.send_message(mime(mail, sender))
        except smtplib.SMTPRecipientsRefused as exc:
            if all(code >= 500 for code, _ in exc.recipients.values()):
                raise PermanentFailure(f"recipient refused: {exc.recipients}") from exc
            raise
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code >= 500:
                raise PermanentFailure(f"{exc.smtp_code} {exc.smtp_error!r}") from exc
            raise


@contextlib.asynccontextmanager
async def job_mailer(settings: Settings, engine: AsyncEngine) -> AsyncIterator[Mailer]:
    """A Mailer for code that runs inside a job (reminders, billing): with Redis, emails are
    queued as their own jobs (their retries are theirs); in embedded mode, delivered right here,
    since this already is the job thread."""
    if settings.redis_url is None:
        async def deliver_here(email_id: str, message: dict[str, str]) -> None:
            deliver(email_id, message)
        yield Mailer(engine, deliver_here, settings.public_url)
        return
    from workers.queue import RQJobs
    jobs = RQJobs(settings.redis_url)
    try:
        yield Mailer(engine, jobs.send_email, settings.public_url)
    finally:
        await jobs.close()
