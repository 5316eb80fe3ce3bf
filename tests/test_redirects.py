"""local_redirect: only a path on this site survives; every known way out falls back."""
from __future__ import annotations

import pytest

from server.accounts.redirects import local_redirect

DEFAULT = "/admin/runs"


@pytest.mark.parametrize("target", [
    "/admin/runs", "/admin/runs?status=ok&user=a%20b", "/lessons/intro#ex-2", "/",
    "/admin/runs?since=2026-01-01T00%3A00%3A00%2B00%3A00", "/a/b/../c",
])
def test_local_paths_are_kept(target):
    assert local_redirect(target, DEFAULT) == target


@pytest.mark.parametrize("target", [
    "", None, 42, "admin/runs", "evil.example", ".", "?x=1", "#top",
    "//evil.example/x", "///evil.example", "/\\evil.example/x", "\\/evil.example",
    "\\\\evil.example", "/%5Cevil.example/x", "/%2F/evil.example", "%2F%2Fevil.example",
    "/%2fevil.example", "/%252F%252Fevil.example", "/%25252F%25252Fevil.example",
    "http://evil.example/", "https:evil.example", "javascript:alert(1)", "data:text/html,x",
    "HTTP://evil.example", " /x", "/\t/evil.example", "/\n/evil.example", "/x\r\nSet-Cookie: a=b",
    "/%09/evil.example", "/%0d%0aSet-Cookie:%20a=b", "/x\x00", "/x\x7f", "/caf\u00e9",
    "/\u2215evil.example", "/x\\y", "/" + "a" * 3000,
])
def test_everything_else_falls_back(target):
    assert local_redirect(target, DEFAULT) == DEFAULT
