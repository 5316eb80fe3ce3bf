"""Runnable examples: a prose code block marked `runnable` is numbered the same way by the parser
(which the lesson socket runs) and by the renderer (which puts the Run button on the page)."""
from __future__ import annotations

import re

from server.course.model import Example
from server.course.parse import read_lesson
from server.course.render import render_lesson

TEXT = """---
title: T
kernel: python
---
```python runnable
print(1)
```

```python
shown only
```

```python exercise id=ex
x = 1
# --- expected output ---
1
```

~~~python runnable
x * 2
~~~
"""


def test_runnable_blocks_are_examples_numbered_in_order_and_others_are_not():
    lesson = read_lesson(TEXT, "t.md", frozenset({"python"})).lesson
    assert lesson.examples == (Example("1", "python", "print(1)\n", 5),
                               Example("2", "python", "x * 2\n", 19))
    assert lesson.example("2").code == "x * 2\n" and lesson.example("3") is None
    assert [ex.id for ex in lesson.exercises] == ["ex"]


def test_the_page_numbers_them_as_the_parser_does_and_keeps_plain_blocks_plain():
    html = render_lesson(read_lesson(TEXT, "t.md", frozenset({"python"})).lesson)
    assert re.findall(r'data-example="(\d+)"', html) == ["1", "2"]
    assert '<pre><code class="language-python">shown only' in html
    assert html.index('data-example="1"') < html.index("print(1)") < html.index('data-exercise="ex"')
