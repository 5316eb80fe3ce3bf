"""A pass shows up on the very next page load, with a long cache TTL and Redis behind the cache:
no cached view holds a learner's progress (server/cache/keys.py), and a page or validator
cached for the learner's anonymous visit is never answered once the learner has progress."""
from __future__ import annotations

import re

from tests.test_exercise_ws import Page, serve_course


def passed_on_lesson(body: bytes) -> str:
    return re.search(rb'class="lesson-progress"[^>]*>([^<]*)<', body).group(1).decode()


def passed_in_catalog(body: bytes) -> str:
    card = re.search(rb'data-slug="practice">.*?</li>', body, re.S).group(0)
    return re.search(rb'class="progress"[^>]*>([^<]*)<', card).group(1).decode()


async def test_a_pass_shows_on_the_next_page_load(tmp_path, make_settings, redis_url):
    async with serve_course(tmp_path, make_settings, LS_REDIS_URL=redis_url, LS_CACHE_TTL="300",
                            LS_CACHE_GRACE="300") as site:
        first = await site.get("/lessons/practice")            # the visitor's anonymous view
        assert passed_on_lesson(first.body) == "0 of 3 exercises passed"
        page = await Page.open(site, cookie="; ".join(
            c.split(";", 1)[0] for c in first.headers.get_list("Set-Cookie")))
        catalog = await site.get("/", headers={"Cookie": page.cookie})
        assert passed_in_catalog(catalog.body) == "0/3"

        result, _ = await page.run("hello", "print('hello')")
        assert result["verdict"]["passed"]
        again = await site.get("/lessons/practice", headers={
            "Cookie": page.cookie, "If-None-Match": first.headers["Etag"]})
        assert again.code == 200, "the anonymous page's validator must not answer a learner"
        assert passed_on_lesson(again.body) == "1 of 3 exercises passed"
        assert again.headers["Cache-Control"] == "private, no-cache"
        catalog = await site.get("/", headers={"Cookie": page.cookie})
        assert passed_in_catalog(catalog.body) == "1/3"

        result, _ = await page.run("add", "def add(a, b):\n    return a + b\n", run="r2")
        assert result["verdict"]["passed"]
        latest = await site.get("/lessons/practice", headers={
            "Cookie": page.cookie, "If-None-Match": again.headers["Etag"]})
        assert latest.code == 200 and passed_on_lesson(latest.body) == "2 of 3 exercises passed"
        assert passed_in_catalog((await site.get("/", headers={"Cookie": page.cookie})).body) == "2/3"

        stranger = await site.get("/lessons/practice")           # the shared entry is untouched
        assert passed_on_lesson(stranger.body) == "0 of 3 exercises passed"
        page.socket.close()
