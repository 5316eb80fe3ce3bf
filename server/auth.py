"""Who calls the Jupyter-compatible kernel API: the API token, or a learner's signed cookie.

Pure decisions on values; the handlers read the headers and the cookie and act
on the Verdict. A token is sent as Jupyter clients send it
(`Authorization: token T`, also `Bearer T`; `?token=T` where a WebSocket cannot
set headers) and compared in constant time.
"""
from __future__ import annotations

import dataclasses
import hmac

API_OWNER = "api:token"          # owner of kernels started with the API token
TOKEN_SCHEMES = ("token", "bearer")


@dataclasses.dataclass(frozen=True)
class Verdict:
    owner: str | None            # who calls, when allowed
    status: int | None = None    # 401 or 403 when not allowed
    message: str = ""

    @property
    def allowed(self) -> bool:
        return self.owner is not None


def header_token(header: str | None) -> str | None:
    """The token of an `Authorization` header; None when there is none in a known scheme."""
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() not in TOKEN_SCHEMES or not value:
        return None
    return value


def token_matches(given: str, expected: str | None) -> bool:
    return bool(expected) and hmac.compare_digest(given.encode(), expected.encode())


def decide(token: str | None, expected: str | None, cookie_user: str | None) -> Verdict:
    """A token, when given, decides alone (a wrong one is 403 even with a cookie)."""
    if token is not None:
        if token_matches(token, expected):
            return Verdict(API_OWNER)
        return Verdict(None, 403, "this token is not valid for this server")
    if cookie_user:
        return Verdict(cookie_user)
    return Verdict(None, 401, "send 'Authorization: token <API token>' or sign in")


def may_see(owner: str, kernel_owner: str) -> bool:
    """A caller reaches only its own kernels (others answer 404, so ids cannot be probed)."""
    return hmac.compare_digest(owner.encode(), kernel_owner.encode())
