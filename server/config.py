"""Settings: read once from an injected mapping of `LS_*` variables.

Nothing else in the project reads `os.environ`; the CLI calls `load()` once and
passes the frozen `Settings` down. Each setting is declared once in `FIELDS`,
which is also the documentation (`lessonserver settings` prints it).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kernels.settings import KernelSettings
from server.accounts.client_ip import Network, parse_networks
from server.accounts.ratelimit import Rule, parse_rule

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SANDBOXES = ("local", "docker")


class ConfigError(ValueError):
    """A setting could not be parsed; the message names the variable."""


# --- parsers: str -> value, raising ValueError with a short reason ---------

def _int(minimum: int = 0) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a whole number") from None
        if value < minimum:
            raise ValueError(f"{value} is below the minimum of {minimum}")
        return value
    return parse


def _float(minimum: float = 0.0) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a number") from None
        if not value >= minimum:  # also rejects NaN
            raise ValueError(f"{value} is below the minimum of {minimum}")
        return value
    return parse


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        parts = urlsplit(raw)
        scheme = parts.scheme.split("+", 1)[0]
        if scheme not in schemes:
            raise ValueError(f"{raw!r} is not a URL with scheme {' or '.join(schemes)}")
        if scheme != "sqlite" and not parts.hostname and not parts.path:
            raise ValueError(f"{raw!r} names no host")
        return raw
    return parse


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        if raw not in choices:
            raise ValueError(f"{raw!r} is not one of {', '.join(choices)}")
        return raw
    return parse


def _bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"{raw!r} is not a boolean (use 1/0, true/false)")


def _path(raw: str) -> Path:
    if not raw:
        raise ValueError("empty path")
    return Path(raw).expanduser()


def _text(raw: str) -> str:
    return raw


def _log_level(raw: str) -> str:
    level = raw.upper()
    if level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ValueError(f"{raw!r} is not one of DEBUG, INFO, WARNING, ERROR")
    return level


def _kernel(attr: str) -> str:
    """The kernel layer's own default (kernels/settings.py): one source, so they cannot drift."""
    value = getattr(KernelSettings, attr)
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


@dataclasses.dataclass(frozen=True)
class Field:
    env: str
    attr: str
    parse: Callable[[str], Any]
    default: str | None
    doc: str


FIELDS: tuple[Field, ...] = (
    Field("LS_HOST", "host", _text, "127.0.0.1", "address the HTTP server binds"),
    Field("LS_PORT", "port", _int(0), "8888", "HTTP port (0 picks a free one)"),
    Field("LS_DATA_DIR", "data_dir", _path, ".lessonserver",
          "embedded database, generated secrets, spooled trace events"),
    Field("LS_DATABASE_URL", "database_url", _url("postgresql", "postgres", "sqlite"), None,
          "postgresql://user:pass@host/db; unset = SQLite file in LS_DATA_DIR"),
    Field("LS_REDIS_URL", "redis_url", _url("redis", "rediss", "unix"), None,
          "redis://host:port/0; unset = embedded mode (in-process jobs and cache)"),
    Field("LS_LESSONS_DIR", "lessons_dir", _path, str(PROJECT_ROOT / "lessons"),
          "folder of the course to serve"),
    Field("LS_SANDBOX", "sandbox", _choice(*SANDBOXES), _kernel("sandbox"),
          "kernel sandbox backend: local (bubblewrap/rlimits) or docker"),
    Field("LS_INSTANCE", "instance", _text, _kernel("instance"),
          "label of this server's kernels; of those, only kernels whose owning process is gone "
          "(its lease) are reaped, so servers and tests on one host never take each other's"),
    Field("LS_RUNTIME_DIR", "runtime_dir", _path, _kernel("runtime_dir"),
          "short path for kernel connection sockets (unix paths are limited to 107 bytes)"),
    Field("LS_API_TOKEN", "api_token", _text, None,
          "token for the Jupyter-compatible API and admin; unset = generated into LS_DATA_DIR"),
    Field("LS_METRICS_TOKEN", "metrics_token", _text, None,
          "bearer token /metrics asks for (Authorization: Bearer ...); unset = /metrics is open"),
    Field("LS_COOKIE_SECRET", "cookie_secret", _text, None,
          "secret that signs cookies; unset = generated into LS_DATA_DIR"),
    Field("LS_POOL_SIZE", "pool_size", _int(0), _kernel("pool_size"),
          "warm kernels kept ready per language"),
    Field("LS_MAX_KERNELS", "max_kernels", _int(1), _kernel("max_kernels"),
          "kernels alive at once on this host"),
    Field("LS_START_CONCURRENCY", "start_concurrency", _int(1), _kernel("start_concurrency"),
          "kernel starts in flight at once"),
    Field("LS_START_QUEUE", "start_queue", _int(0), _kernel("start_queue"),
          "kernel requests allowed to wait for a start; beyond it, 429 with Retry-After"),
    Field("LS_ANON_KERNELS", "anon_kernels", _int(1), _kernel("anon_kernels"),
          "kernels an anonymous visitor may hold at once (admins and the API token are exempt)"),
    Field("LS_MEMBER_KERNELS", "member_kernels", _int(1), _kernel("member_kernels"),
          "kernels a signed-in learner may hold at once"),
    Field("LS_ANON_STARTS_PER_MINUTE", "anon_starts_per_minute", _int(1),
          _kernel("anon_starts_per_minute"),
          "kernel starts per minute for an anonymous visitor"),
    Field("LS_MEMBER_STARTS_PER_MINUTE", "member_starts_per_minute", _int(1),
          _kernel("member_starts_per_minute"),
          "kernel starts per minute for a signed-in learner"),
    Field("LS_ANON_RUNS_PER_MINUTE", "anon_runs_per_minute", _int(1),
          _kernel("anon_runs_per_minute"),
          "runs per minute for an anonymous visitor"),
    Field("LS_MEMBER_RUNS_PER_MINUTE", "member_runs_per_minute", _int(1),
          _kernel("member_runs_per_minute"),
          "runs per minute for a signed-in learner"),
    Field("LS_LIVE_LEAD", "live_lead", _float(0), "600",
          "seconds before a scheduled live event when its lesson's kernel pool starts to grow"),
    Field("LS_LIVE_EVERY", "live_every", _float(0.1), "15",
          "seconds between checks of the live events against the kernel pools"),
    Field("LS_RUN_TIMEOUT", "run_timeout", _float(0.1), _kernel("run_timeout"),
          "wall-clock seconds per run"),
    Field("LS_OUTPUT_LIMIT", "output_limit", _int(1024), _kernel("output_limit"),
          "output bytes kept per run"),
    Field("LS_OUTPUT_MESSAGES", "output_messages", _int(1), _kernel("output_messages"),
          "output messages kept per run"),
    Field("LS_MEMORY_MB", "memory_mb", _int(32), _kernel("memory_mb"),
          "memory per kernel, MiB (no swap)"),
    Field("LS_PIDS_LIMIT", "pids_limit", _int(8), _kernel("pids_limit"), "processes per kernel"),
    Field("LS_CPUS", "cpus", _float(0.05), _kernel("cpus"), "CPU share per kernel"),
    Field("LS_TMP_MB", "tmp_mb", _int(1), _kernel("tmp_mb"), "size of the kernel's /tmp, MiB"),
    Field("LS_IDLE_TIMEOUT", "idle_timeout", _float(1), _kernel("idle_timeout"),
          "seconds before an idle kernel is culled"),
    Field("LS_RECONNECT_GRACE", "reconnect_grace", _float(0), "30",
          "seconds a lesson page's kernel waits for its dropped socket to come back"),
    Field("LS_IDLE_CPU_SHARE", "idle_cpu_share", _float(0.05), _kernel("idle_cpu_share"),
          "share of a core an idle kernel may use before it is replaced (escaped code)"),
    Field("LS_IDLE_CPU_WINDOW", "idle_cpu_window", _float(1), _kernel("idle_cpu_window"),
          "seconds of idle CPU use judged at once"),
    Field("LS_MAX_LIFETIME", "max_lifetime", _float(1), _kernel("max_lifetime"),
          "seconds a kernel may live at most"),
    Field("LS_CACHE_TTL", "cache_ttl", _float(0), "30",
          "seconds a rendered page stays fresh (the dashboard's figures: at most 10)"),
    Field("LS_CACHE_GRACE", "cache_grace", _float(0), "60",
          "seconds past LS_CACHE_TTL a page is still served (stale) while one request recomputes it"),
    Field("LS_TRACE_BATCH", "trace_batch", _int(1), "200", "trace events per RQ batch job"),
    Field("LS_TRACE_FLUSH", "trace_flush", _float(0.01), "0.5", "seconds before a partial batch is sent"),
    Field("LS_TRACE_RETENTION_DAYS", "trace_retention_days", _int(1), "30",
          "days raw trace events are kept (run summaries are kept)"),
    Field("LS_TRUSTED_PROXIES", "trusted_proxies", parse_networks, "",
          "comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed; empty = none"),
    Field("LS_HTTP_IDLE_TIMEOUT", "http_idle_timeout", _float(0.1), "60",
          "seconds a connection may idle, or take to send its request headers, before it is closed"),
    Field("LS_HTTP_BODY_TIMEOUT", "http_body_timeout", _float(0.1), "30",
          "seconds a client may take to send a request body"),
    Field("LS_HTTP_MAX_HEADER_BYTES", "http_max_header_bytes", _int(1024), "65536",
          "largest request line plus headers, bytes"),
    Field("LS_HTTP_MAX_BODY_BYTES", "http_max_body_bytes", _int(1024), "1048576",
          "largest request body, bytes"),
    Field("LS_WS_PER_IP", "ws_per_ip", _int(1), "64",
          "WebSockets one client address may hold open at once (a classroom shares one address)"),
    Field("LS_AUTH_PER_IP", "auth_per_ip", parse_rule, "10/60",
          "credential checks per client address: attempts/seconds (burst, then evenly refilled)"),
    Field("LS_AUTH_PER_ACCOUNT", "auth_per_account", parse_rule, "30/300",
          "credential checks per account from all addresses: attempts/seconds"),
    Field("LS_NEW_LEARNERS_PER_IP", "new_learners_per_ip", parse_rule, "30/60",
          "anonymous learners one client address may create (on a first run or kernel): "
          "learners/seconds"),
    # --- billing (Stripe); without the key, price and webhook secret paid lessons say so ---
    Field("LS_STRIPE_SECRET_KEY", "stripe_secret_key", _text, None,
          "Stripe secret API key (sk_...); unset = billing not configured"),
    Field("LS_STRIPE_PRICE", "stripe_price", _text, None,
          "the Stripe price id (price_...) a subscription is for"),
    Field("LS_STRIPE_WEBHOOK_SECRET", "stripe_webhook_secret", _text, None,
          "signing secret (whsec_...) of the endpoint POST /stripe/webhook"),
    Field("LS_STRIPE_API_BASE", "stripe_api_base", _url("http", "https"), None,
          "Stripe API address; unset = Stripe's own (tests point it at a local Stripe)"),
    Field("LS_BILLING_GRACE_DAYS", "billing_grace_days", _float(0), "3",
          "days a past_due subscription keeps access after its renewal failed"),
    Field("LS_SECURE_COOKIES", "secure_cookies", _bool, "0", "mark cookies Secure (behind HTTPS)"),
    # --- accounts and emails ---
    Field("LS_PUBLIC_URL", "public_url", _url("http", "https"), "http://127.0.0.1:8888",
          "the site's address as learners reach it; links in emails start with it"),
    Field("LS_SESSION_DAYS", "session_days", _float(0.01), "30",
          "days a sign-in lasts (the session is also ended by log-out and password changes)"),
    Field("LS_LINK_MINUTES", "link_minutes", _float(1), "30",
          "minutes an emailed log-in or password-reset link stays valid (single use)"),
    Field("LS_SMTP_URL", "smtp_url", _url("smtp", "smtps", "smtp+starttls"), None,
          "smtp[s]://user:pass@host:port for outgoing email; unset = written to the log and the "
          "admins' outbox page"),
    Field("LS_MAIL_FROM", "mail_from", _text, "lessonserver <noreply@localhost>",
          "sender of the site's emails"),
    Field("LS_REMINDER_DAYS", "reminder_days", _int(0), "7",
          "days without activity before a learner with an unfinished lesson gets one reminder "
          "(at most one per this many days); 0 = no reminders"),
    Field("LS_LOG_LEVEL", "log_level", _log_level, _kernel("log_level"),
          "DEBUG, INFO, WARNING or ERROR"),
    Field("LS_DEV", "dev", _bool, "0",
          "authoring mode (`serve --dev`): reload changed lessons, show their errors on their pages"),
    # Durability (issue 14)
    Field("LS_SHUTDOWN_GRACE", "shutdown_grace", _float(0), "20",
          "seconds SIGTERM lets runs in flight finish before they are interrupted"),
)


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str
    port: int
    data_dir: Path
    database_url: str | None
    redis_url: str | None
    lessons_dir: Path
    sandbox: str
    instance: str
    runtime_dir: Path
    api_token: str | None
    metrics_token: str | None
    cookie_secret: str | None
    pool_size: int
    max_kernels: int
    start_concurrency: int
    start_queue: int
    anon_kernels: int
    member_kernels: int
    anon_starts_per_minute: int
    member_starts_per_minute: int
    anon_runs_per_minute: int
    member_runs_per_minute: int
    live_lead: float
    live_every: float
    run_timeout: float
    output_limit: int
    output_messages: int
    memory_mb: int
    pids_limit: int
    cpus: float
    tmp_mb: int
    idle_timeout: float
    reconnect_grace: float
    idle_cpu_share: float
    idle_cpu_window: float
    max_lifetime: float
    cache_ttl: float
    cache_grace: float
    trace_batch: int
    trace_flush: float
    trace_retention_days: int
    trusted_proxies: tuple[Network, ...]
    http_idle_timeout: float
    http_body_timeout: float
    http_max_header_bytes: int
    http_max_body_bytes: int
    ws_per_ip: int
    auth_per_ip: Rule
    auth_per_account: Rule
    new_learners_per_ip: Rule
    stripe_secret_key: str | None
    stripe_price: str | None
    stripe_webhook_secret: str | None
    stripe_api_base: str | None
    billing_grace_days: float
    secure_cookies: bool
    public_url: str
    session_days: float
    link_minutes: float
    smtp_url: str | None
    mail_from: str
    reminder_days: int
    log_level: str
    shutdown_grace: float
    dev: bool

    @property
    def embedded(self) -> bool:
        """No Redis: jobs run in-process and the cache is local."""
        return self.redis_url is None

    @property
    def billing_configured(self) -> bool:
        return bool(self.stripe_secret_key and self.stripe_price and self.stripe_webhook_secret)

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL, with the SQLite default resolved."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'lessonserver.db').resolve()}"

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def load(environ: Mapping[str, str]) -> Settings:
    """Parse every `LS_*` setting; the first bad one raises ConfigError naming it."""
    values: dict[str, Any] = {}
    for field in FIELDS:
        raw = environ.get(field.env)
        if raw is None or raw == "":
            raw = field.default
        if raw is None:
            values[field.attr] = None
            continue
        try:
            values[field.attr] = field.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{field.env}: {exc}") from None
    settings = Settings(**values)
    if settings.max_kernels < settings.pool_size:
        raise ConfigError(
            f"LS_POOL_SIZE: {settings.pool_size} warm kernels exceed LS_MAX_KERNELS={settings.max_kernels}")
    return settings


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, meaning) rows for `lessonserver settings` and the README."""
    return [(f.env, f.default if f.default is not None else "(unset)", f.doc) for f in FIELDS]
