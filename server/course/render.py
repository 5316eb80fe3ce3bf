"""A lesson's Markdown -> sanitized HTML, each exercise replaced by an editor placeholder.

Only the starter code of an exercise reaches the HTML: its setup, tests and
expected output stay on the server. The result goes through nh3 with an
allow-list, so raw HTML in a lesson cannot bring scripts, handlers or
javascript: links.
"""
from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

from server.course.model import Exercise, Lesson
from server.course.parse import exercise_info, is_runnable

TAGS = frozenset({
    "a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "div", "dl", "dt", "em",
    "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "kbd", "li", "ol", "p", "pre", "s",
    "section", "span", "strong", "sub", "summary", "sup", "table", "tbody", "td", "th", "thead",
    "tr", "ul",
})
ATTRIBUTES = {
    "a": {"href", "title"},
    "img": {"src", "alt", "title"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "code": {"class"},
    "pre": {"class"},
    "div": {"class"},
    "details": {"class"},
    "section": {"class", "data-exercise", "data-example", "data-language", "data-reveal-after"},
}


def render_lesson(lesson: Lesson) -> str:
    md = MarkdownIt("commonmark", {"html": True}).enable("table")
    md.add_render_rule("fence", _fence)
    env = {"exercises": {ex.id: ex for ex in lesson.exercises}, "examples": 0}
    tokens = _without_title(md.parse(lesson.body, env), lesson.title)
    return sanitize(md.renderer.render(tokens, md.options, env))


def _without_title(tokens: list, title: str) -> list:
    """The page shows the lesson's title as its heading; a body opening with the same
    `# heading` would show it twice."""
    if (len(tokens) >= 3 and tokens[0].type == "heading_open" and tokens[0].tag == "h1"
            and " ".join(tokens[1].content.split()).casefold() == " ".join(title.split()).casefold()):
        return tokens[3:]
    return tokens


def sanitize(html: str) -> str:
    return nh3.clean(html, tags=set(TAGS), attributes={k: set(v) for k, v in ATTRIBUTES.items()},
                     url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer",
                     filter_style_properties={"text-align"})


def _fence(renderer, tokens, idx, options, env) -> str:
    token = tokens[idx]
    try:
        info = exercise_info(token.info)
    except ValueError:
        info = None  # the parser already refused such a lesson; show it as code
    exercise = env["exercises"].get(info.id) if info else None
    if exercise is None and is_runnable(token.info):
        env["examples"] += 1     # numbered as parse.runnable_examples numbers them
        language = escapeHtml(token.info.split()[0])
        return (f'<div class="cell"><section class="example" data-example="{env["examples"]}" '
                f'data-language="{language}"><pre class="example-code"><code class="language-{language}">'
                f'{escapeHtml(token.content)}</code></pre></section></div>\n')
    if exercise is None:
        language = token.info.split(None, 1)[0] if token.info.strip() else ""
        css = f' class="language-{escapeHtml(language)}"' if language else ""
        return f'<div class="cell"><pre><code{css}>{escapeHtml(token.content)}</code></pre></div>\n'
    return placeholder(exercise)


def placeholder(exercise: Exercise) -> str:
    """Where the UI mounts the editor: the starter and the hints, never the hidden parts."""
    hints = "".join(f'<details class="hint"><summary>Hint {n}</summary><pre>{escapeHtml(hint)}</pre>'
                    f"</details>" for n, hint in enumerate(exercise.hints, start=1))
    reveal = exercise.settings.reveal_after
    reveal_attr = f' data-reveal-after="{reveal}"' if reveal is not None else ""
    return (f'<div class="cell"><section class="exercise" data-exercise="{escapeHtml(exercise.id)}" '
            f'data-language="{escapeHtml(exercise.language)}"{reveal_attr}>'
            f'<h3>{escapeHtml(exercise.title)}</h3>'
            f'<pre class="starter"><code>{escapeHtml(exercise.starter)}</code></pre>{hints}</section>'
            f"</div>\n")
