"""The client's address: X-Forwarded-For and X-Real-IP only from trusted proxies."""
from __future__ import annotations

import pytest

from server.accounts.client_ip import client_ip, client_scheme, is_trusted, parse_networks

PROXIES = parse_networks("10.0.0.1, 10.1.0.0/16, ::1")


def test_networks_parse_and_name_a_bad_entry():
    assert [str(n) for n in PROXIES] == ["10.0.0.1/32", "10.1.0.0/16", "::1/128"]
    assert parse_networks("") == () and parse_networks(" , ") == ()
    with pytest.raises(ValueError, match="'proxy.local'"):
        parse_networks("10.0.0.1,proxy.local")


def test_membership():
    assert is_trusted("10.1.2.3", PROXIES) and is_trusted("::1", PROXIES)
    assert not is_trusted("10.0.0.2", PROXIES) and not is_trusted("garbage", PROXIES)


@pytest.mark.parametrize("peer, headers, expected", [
    ("127.0.0.1", {"X-Forwarded-For": "6.6.6.6"}, "127.0.0.1"),          # nobody trusted
    ("203.0.113.9", {"X-Real-Ip": "6.6.6.6"}, "203.0.113.9"),
    ("10.0.0.1", {"X-Forwarded-For": "198.51.100.7"}, "198.51.100.7"),
    ("10.0.0.1", {"X-Forwarded-For": "6.6.6.6, 198.51.100.7, 10.1.9.9"}, "198.51.100.7"),
    ("10.0.0.1", {"X-Forwarded-For": "10.1.0.5, 10.1.0.6"}, "10.1.0.5"),  # all ours: leftmost
    ("10.0.0.1", {"X-Forwarded-For": "not-an-ip, 10.1.0.6"}, "10.1.0.6"),
    ("10.0.0.1", {"X-Forwarded-For": "198.51.100.7, junk"}, "10.0.0.1"),
    ("10.0.0.1", {"X-Real-Ip": "198.51.100.8"}, "198.51.100.8"),
    ("10.0.0.1", {"X-Real-Ip": "junk"}, "10.0.0.1"),
    ("10.0.0.1", {}, "10.0.0.1"),
    ("::1", {"X-Forwarded-For": "2001:db8::1"}, "2001:db8::1"),
])
def test_client_ip(peer, headers, expected):
    assert client_ip(peer, headers, PROXIES) == expected


def test_without_trusted_proxies_headers_never_count():
    assert client_ip("10.0.0.1", {"X-Forwarded-For": "6.6.6.6"}, ()) == "10.0.0.1"


def test_scheme_only_from_a_trusted_proxy():
    assert client_scheme("10.0.0.1", "http", {"X-Forwarded-Proto": "https"}, PROXIES) == "https"
    assert client_scheme("10.0.0.1", "http", {"X-Forwarded-Proto": "gopher"}, PROXIES) == "http"
    assert client_scheme("6.6.6.6", "http", {"X-Forwarded-Proto": "https"}, PROXIES) == "http"


def test_the_setting_names_itself_and_the_bad_entry():
    from server import config
    assert config.load({}).trusted_proxies == ()
    assert config.load({"LS_TRUSTED_PROXIES": "10.0.0.1"}).trusted_proxies == PROXIES[:1]
    with pytest.raises(config.ConfigError, match="LS_TRUSTED_PROXIES: 'lb.internal'"):
        config.load({"LS_TRUSTED_PROXIES": "10.0.0.1, lb.internal"})
