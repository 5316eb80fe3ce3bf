"""The accounts' pure rules, tokens and password hashes, on plain values."""
from __future__ import annotations

import datetime as dt
import statistics
import time

import pytest

from server.accounts import passwords, rules, tokens
from server.accounts.rules import ExerciseProgress, InvalidInput, SignUp
from server.mail.messages import KINDS, Message, UnknownKind, render

T0 = dt.datetime(2026, 11, 29, tzinfo=dt.timezone.utc)


@pytest.mark.parametrize("raw, email", [(" Ada@Example.ORG ", "ada@example.org"),
                                        ("a.b+c@sub.example.org", "a.b+c@sub.example.org")])
def test_addresses_are_trimmed_and_lower_cased(raw, email):
    assert rules.normalize_email(raw) == email


@pytest.mark.parametrize("raw", ["", "ada", "ada@", "@example.org", "ada@localhost", "a b@x.org",
                                 "a@b@x.org", "ada@x.org\nBcc: eve@y.org", "x" * 320 + "@x.org"])
def test_malformed_addresses_are_named(raw):
    with pytest.raises(InvalidInput, match="^Email:"):
        rules.normalize_email(raw)


def test_password_length_rules():
    assert rules.check_password("8 chars!") == "8 chars!"
    for bad in ("short", "x" * (rules.MAX_PASSWORD + 1)):
        with pytest.raises(InvalidInput, match="^Password:"):
            rules.check_password(bad)


def test_roles():
    from server.store.users import User
    def user(email, is_admin):
        return User("u", email, "", is_admin, T0)
    assert rules.role(None) is rules.Role.ANONYMOUS
    assert rules.role(user(None, False)) is rules.Role.ANONYMOUS
    assert rules.role(user("a@x.org", False)) is rules.Role.LEARNER
    assert rules.role(user("a@x.org", True)) is rules.Role.ADMIN
    assert rules.role(user(None, True)) is rules.Role.ADMIN      # marked by hand in the database


def test_sign_up_never_touches_a_confirmed_account():
    assert rules.sign_up(None) is SignUp.CREATE
    assert rules.sign_up(False) is SignUp.RETRY
    assert rules.sign_up(True) is SignUp.ALREADY


def row(ex, status, attempts, minutes, code=""):
    return ExerciseProgress("intro", ex, status, attempts, code or f"{ex}@{minutes}",
                            T0 + dt.timedelta(minutes=minutes))


def test_merged_progress_adds_attempts_keeps_passes_and_the_newer_code():
    account = [row("a", "passed", 2, 1), row("b", "failed", 1, 5), row("c", "failed", 1, 1)]
    anonymous = [row("a", "failed", 3, 9), row("b", "passed", 1, 2), row("d", "failed", 4, 3)]
    merged = {r.exercise_id: r for r in rules.merge_progress(account, anonymous)}
    assert set(merged) == {"a", "b", "d"}                    # c is unchanged: not rewritten
    assert (merged["a"].status, merged["a"].attempts, merged["a"].code) == ("passed", 5, "a@9")
    assert (merged["b"].status, merged["b"].attempts, merged["b"].code) == ("passed", 2, "b@5")
    assert merged["d"] == anonymous[2]


def test_tokens_are_random_and_stored_as_digests():
    a, b = tokens.new_secret(), tokens.new_secret()
    assert a != b and len(a) >= 43
    assert tokens.digest(a) != a and len(tokens.digest(a)) == 64
    assert tokens.digest(a) == tokens.digest(a)


def test_token_lifetimes_and_use():
    assert tokens.lifetime(tokens.Purpose.RESET, 30) == dt.timedelta(minutes=30)
    assert tokens.lifetime(tokens.Purpose.VERIFY, 30) == tokens.VERIFY_LIFETIME
    expires = T0 + dt.timedelta(minutes=30)
    assert tokens.usable(expires, None, T0)
    assert not tokens.usable(expires, None, expires)
    assert not tokens.usable(expires, T0, T0)


async def test_password_hashes_verify_and_time_the_same_for_unknown_accounts():
    stored = await passwords.hash_password("correct horse")
    assert stored.startswith("$argon2id$")
    assert await passwords.verify_password(stored, "correct horse")
    assert not await passwords.verify_password(stored, "wrong horse")
    assert not await passwords.verify_password(None, "correct horse")
    assert not await passwords.verify_password("not a hash", "x")
    timings = {}
    for name, hashed in (("known", stored), ("unknown", None)) * 2:   # the first round warms up
        samples = []
        for _ in range(7):
            started = time.perf_counter()
            await passwords.verify_password(hashed, "wrong horse")
            samples.append(time.perf_counter() - started)
        timings[name] = statistics.median(samples)
    print(f"argon2id verify: known {timings['known'] * 1000:.1f} ms, "
          f"unknown {timings['unknown'] * 1000:.1f} ms")
    assert 0.5 < timings["known"] / timings["unknown"] < 2


def test_emails_render_in_text_and_html_with_the_link_escaped_only_in_html():
    link = "http://x.org/verify?token=a&b"
    mail = render("verify", "ada@example.org", "http://x.org/", link=link)
    assert mail.subject == "Confirm your address"
    assert link in mail.text and "a&amp;b" in mail.html and "ada@example.org" in mail.html
    assert Message.from_json(mail.to_json()) == mail
    with pytest.raises(UnknownKind, match="'nope'"):
        render("nope", "ada@example.org", "http://x.org")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_renders_in_text_and_html(kind):
    context = {"link": "http://x.org/l?token=t", "minutes": "30", "lesson_title": "Loops",
               "lesson_url": "http://x.org/lessons/loops", "unsubscribe_url": "http://x.org/u"}
    mail = render(kind, "ada@example.org", "http://x.org", **context)
    assert mail.subject == KINDS[kind] and mail.text.strip() and "<p>" in mail.html
    assert "http://x.org" in mail.text and "{{" not in mail.text + mail.html
