"""Each kind of email, rendered from its two templates (plain text and HTML), as a value.

A new kind is one entry in KINDS plus `email/<kind>.txt` and `email/<kind>.html`
under server/templates. Rendering is pure: the caller passes every value the
templates use, including the one link (whose token is the email's only secret).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import tornado.template

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "email"

KINDS: dict[str, str] = {          # kind -> subject
    "verify": "Confirm your address",
    "already": "You already have an account",
    "welcome": "Welcome to the lessons",
    "magic": "Your sign-in link",
    "reset": "Choose a new password",
    "change": "Confirm your new address",
    "reminder": "Your lesson is waiting",
    # Sent by billing's jobs (only `site` in their templates: nothing about the card or amount).
    "payment_received": "Payment received",
    "payment_failed": "Your payment did not go through",
    "subscription_ended": "Your subscription has ended",
}


class UnknownKind(ValueError):
    """No such kind of email (add it to KINDS, with its templates)."""


@dataclasses.dataclass(frozen=True)
class Message:
    kind: str
    to: str
    subject: str
    text: str
    html: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, str]) -> "Message":
        return cls(**{f.name: str(raw[f.name]) for f in dataclasses.fields(cls)})


_text = tornado.template.Loader(str(TEMPLATES), autoescape=None)   # URLs stay as they are
_html = tornado.template.Loader(str(TEMPLATES))                     # escaped


def render(kind: str, to: str, site: str, **context: Any) -> Message:
    """The email of `kind` to `to`; `site` is LS_PUBLIC_URL, `context` what the templates name."""
    if kind not in KINDS:
        raise UnknownKind(f"no email of kind {kind!r}; known: {', '.join(sorted(KINDS))}")
    values = {"to": to, "site": site.rstrip("/"), **context}
    return Message(kind, to, KINDS[kind],
                   _text.load(f"{kind}.txt").generate(**values).decode(),
                   _html.load(f"{kind}.html").generate(**values).decode())
