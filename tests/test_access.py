from server.learning.access import Lock, lesson_access


def test_free_lesson_without_prerequisites_is_open():
    access = lesson_access(paid=False, prerequisites=(), completed=frozenset(), subscribed=False)
    assert access.open and access.missing == ()


def test_paid_lesson_needs_a_subscription():
    assert lesson_access(paid=True, prerequisites=(), completed=frozenset(),
                         subscribed=False).lock is Lock.PAID
    assert lesson_access(paid=True, prerequisites=(), completed=frozenset(), subscribed=True).open


def test_missing_prerequisites_are_listed_in_order():
    access = lesson_access(paid=False, prerequisites=("a", "b", "c"), completed=frozenset({"b"}),
                           subscribed=False)
    assert access.lock is Lock.PREREQUISITES and access.missing == ("a", "c")


def test_paid_is_reported_before_prerequisites():
    access = lesson_access(paid=True, prerequisites=("a",), completed=frozenset(), subscribed=False)
    assert access.lock is Lock.PAID


def test_admin_sees_everything():
    assert lesson_access(paid=True, prerequisites=("a",), completed=frozenset(), subscribed=False,
                         is_admin=True).open
