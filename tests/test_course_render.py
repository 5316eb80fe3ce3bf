"""Lesson HTML: sanitized, exercises as editor placeholders, hidden code never sent."""
from __future__ import annotations

import re

from html import escape as html_escape

from server.course.parse import parse_lesson
from server.course.render import render_lesson

KERNELS = frozenset({"python", "bash", "sql"})

HOSTILE = '''---
title: Hostile <b>title</b>
kernel: python
---
# Heading <script>alert("s")</script>

<img src="cat.png" onerror="alert('e')" alt="cat"> <a href="javascript:alert('j')" onclick="x()">click</a>
[md link](javascript:alert('m')) [good](https://example.org/page) <iframe src="https://x"></iframe>
<div style="position:fixed" class="note">styled</div>

| left | right |
|------|------:|
| a    | 1     |

```html
<script>alert("in code")</script>
```

```python exercise id=sum-list title="Sum <em>list</em>"
def total(numbers):
    return 0  # <b>not bold</b>
# --- setup ---
SECRET_SETUP_VALUE = 41
# --- tests ---
assert total([1, 2]) == 3, "SECRET_TEST_MESSAGE"
# --- hint ---
Think of sum().
```

```bash exercise id=echo
# print hi
# --- expected output ---
SECRET_EXPECTED_OUTPUT
```
'''


def render() -> str:
    return render_lesson(parse_lesson(HOSTILE, "c/hostile.md", KERNELS))


def test_scripts_handlers_and_javascript_urls_are_gone():
    html = render()
    assert "<script" not in html and "<iframe" not in html
    assert not re.search(r"\son\w+\s*=", html), html
    assert not re.search(r"""(href|src)\s*=\s*["']?\s*javascript:""", html, re.I), html
    assert "style=\"position" not in html
    # The harmless parts stay: text, images, safe links, tables with alignment, code shown as text.
    assert '<img src="cat.png" alt="cat">' in html
    assert '<a href="https://example.org/page" rel="noopener noreferrer">good</a>' in html
    assert '<th style="text-align:right">right</th>' in html
    assert '<pre><code class="language-html">&lt;script&gt;alert("in code")&lt;/script&gt;' in html


def test_exercises_become_placeholders_with_the_starter_only():
    html = render()
    assert ('<div class="cell"><section class="exercise" data-exercise="sum-list" data-language="python">'
            '<h3>Sum &lt;em&gt;list&lt;/em&gt;</h3><pre class="starter"><code>def total(numbers):\n'
            '    return 0  # &lt;b&gt;not bold&lt;/b&gt;\n</code></pre>') in html
    assert '<section class="exercise" data-exercise="echo" data-language="bash"><h3>Echo</h3>' in html
    assert "<summary>Hint 1</summary><pre>Think of sum().\n</pre>" in html
    for hidden in ("SECRET_SETUP_VALUE", "SECRET_TEST_MESSAGE", "SECRET_EXPECTED_OUTPUT", "--- setup",
                   "--- tests", "--- expected output"):
        assert hidden not in html
    assert html.count('class="exercise"') == 2


def test_plain_code_blocks_are_cells():
    html = render_lesson(parse_lesson("---\ntitle: T\nkernel: python\n---\n```python\nx = 1 < 2\n```\n\n"
                                      "```\nplain\n```\n", "c/t.md", KERNELS))
    assert html == ('<div class="cell"><pre><code class="language-python">x = 1 &lt; 2\n</code></pre></div>\n'
                    '<div class="cell"><pre><code>plain\n</code></pre></div>\n')


def test_bundled_lessons_render_placeholders_and_hide_their_hidden_code():
    from server.config import PROJECT_ROOT
    from server.course.loader import load_catalog

    catalog = load_catalog(PROJECT_ROOT / "lessons", KERNELS)
    for course in catalog.courses:
        for lesson in course.lessons:
            html = render_lesson(lesson)
            placed = re.findall(r'<section class="exercise" data-exercise="([^"]+)" data-language="([^"]+)">',
                                html)
            assert placed == [(ex.id, ex.language) for ex in lesson.exercises], lesson.path
            for exercise in lesson.exercises:
                for hidden in (exercise.setup, exercise.check.code):
                    for line in filter(str.strip, (hidden or "").splitlines()):
                        # nh3 writes text with only &, < and > escaped
                        shown = html_escape(line.strip(), quote=False)
                        assert shown not in html, (lesson.path, line)
            assert "--- expected output ---" not in html and "--- tests ---" not in html
            assert "--- solution ---" not in html
            for exercise in lesson.exercises:   # the prose and the hints may show the same code
                section = re.search(rf'data-exercise="{exercise.id}".*?</section>', html, re.S).group(0)
                shown_anyway = exercise.starter + "".join(exercise.hints)
                for line in filter(str.strip, exercise.solution.splitlines()):
                    if line.strip() not in shown_anyway:
                        assert html_escape(line.strip(), quote=False) not in section, (lesson.path, line)


def test_a_body_heading_equal_to_the_title_is_not_shown_twice():
    def html(body: str) -> str:
        return render_lesson(parse_lesson(f"---\ntitle: Lists  and loops\nkernel: python\n---\n{body}",
                                          "c/t.md", KERNELS))
    assert html("# Lists and Loops\n\nText.\n") == "<p>Text.</p>\n"
    assert html("# Something else\n\nText.\n") == "<h1>Something else</h1>\n<p>Text.</p>\n"
    assert html("Intro.\n\n# Lists and loops\n") == "<p>Intro.</p>\n<h1>Lists and loops</h1>\n"
