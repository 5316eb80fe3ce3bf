"""`lessonserver lessons import NOTEBOOK`: the lesson metadata a notebook saved by Jupyter
lacks, written into it. Pure: notebook text in, notebook text out.

What it fills in, unless the notebook or the author already says it: `title` from
the first `# heading`, `slug` and `order` from the file name (`04-strings` -> order 4,
slug `strings`), `kernel` from Jupyter's kernelspec (`python3` -> `python`).
Exercise cells are the author's to mark (lessons/README.md, "Notebook lessons").
"""
from __future__ import annotations

import re

import nbformat

from server.course.parse import ID_PATTERN, resolve_kernel

ORDER_PREFIX = re.compile(r"^(\d+)[-_ .]+")


class NotebookImportError(ValueError):
    """The notebook cannot become a lesson without the author's help (the message says how)."""


def lesson_metadata(text: str, stem: str, known_kernels: frozenset[str], *, title: str | None = None,
                    slug: str | None = None, kernel: str | None = None,
                    order: int | None = None) -> str:
    try:
        nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # nbformat raises several kinds for a malformed notebook
        raise NotebookImportError(f"not a notebook: {exc}") from None
    meta = dict(nb.metadata.get("lessonserver") or {})
    meta["title"] = title or meta.get("title") or first_heading(nb) or _words(stem)
    meta["slug"] = slug or meta.get("slug") or slug_of(stem)
    if not ID_PATTERN.fullmatch(meta["slug"]):
        raise NotebookImportError(f"cannot make a slug of {stem!r}: give one with --slug")
    number = ORDER_PREFIX.match(stem)
    if order is not None or ("order" not in meta and number):
        meta["order"] = order if order is not None else int(number.group(1))
    wanted = kernel or meta.get("kernel") or (nb.metadata.get("kernelspec") or {}).get("name")
    if not wanted:
        raise NotebookImportError("the notebook names no kernel: give one with --kernel "
                                  f"({', '.join(sorted(known_kernels))})")
    resolved = resolve_kernel(str(wanted), known_kernels)
    if resolved is None:
        raise NotebookImportError(f"kernel {wanted!r} is not one of ours "
                                  f"({', '.join(sorted(known_kernels))}): give one with --kernel")
    meta["kernel"] = resolved
    nb.metadata["lessonserver"] = meta
    return nbformat.writes(nb) + "\n"


def first_heading(nb: nbformat.NotebookNode) -> str | None:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip() or None
    return None


def slug_of(stem: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", ORDER_PREFIX.sub("", stem).lower()).strip("-")


def _words(stem: str) -> str:
    return ORDER_PREFIX.sub("", stem).replace("-", " ").replace("_", " ").strip().capitalize() or stem
