"""A small SQL kernel: SQLite in memory, one database per kernel, kept across cells.

Only the standard library and ipykernel: this file (with __init__/__main__) is
copied into the kernel image on its own, as the package `lessonserver_sql`.
Query rows are printed like the sqlite3 shell (`a|b`), and the last query of a
cell is also the cell's result, as a text and an HTML table.
"""
from __future__ import annotations

import html
import re
import sqlite3
from typing import Any

from ipykernel.kernelbase import Kernel

__version__ = "1.0"
MAX_RESULT_ROWS = 1000       # rows shown in the result table; stdout gets all of them
ROWS_PER_MESSAGE = 500       # rows per stdout stream message
PROGRESS_EVERY = 10_000      # sqlite VM steps between chances to see an interrupt

KEYWORDS = tuple(sorted("""
ABORT ACTION ADD AFTER ALL ALTER ALWAYS ANALYZE AND AS ASC ATTACH AUTOINCREMENT BEFORE BEGIN
BETWEEN BY CASCADE CASE CAST CHECK COLLATE COLUMN COMMIT CONFLICT CONSTRAINT CREATE CROSS
CURRENT CURRENT_DATE CURRENT_TIME CURRENT_TIMESTAMP DATABASE DEFAULT DEFERRABLE DEFERRED DELETE
DESC DETACH DISTINCT DO DROP EACH ELSE END ESCAPE EXCEPT EXCLUDE EXCLUSIVE EXISTS EXPLAIN FAIL
FILTER FIRST FOLLOWING FOR FOREIGN FROM FULL GENERATED GLOB GROUP GROUPS HAVING IF IGNORE
IMMEDIATE IN INDEX INDEXED INITIALLY INNER INSERT INSTEAD INTERSECT INTO IS ISNULL JOIN KEY LAST
LEFT LIKE LIMIT MATCH MATERIALIZED NATURAL NO NOT NOTHING NOTNULL NULL NULLS OF OFFSET ON OR
ORDER OTHERS OUTER OVER PARTITION PLAN PRAGMA PRECEDING PRIMARY QUERY RAISE RANGE RECURSIVE
REFERENCES REGEXP REINDEX RELEASE RENAME REPLACE RESTRICT RETURNING RIGHT ROLLBACK ROW ROWS
SAVEPOINT SELECT SET TABLE TEMP TEMPORARY THEN TIES TO TRANSACTION TRIGGER UNBOUNDED UNION
UNIQUE UPDATE USING VACUUM VALUES VIEW VIRTUAL WHEN WHERE WINDOW WITH WITHOUT
INTEGER REAL TEXT BLOB NUMERIC
""".split()))
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
_WORD_AROUND = re.compile(r"[A-Za-z0-9_]*")
_COMMENT = re.compile(r"--[^\n]*|/\*.*?(?:\*/|$)", re.S)


def split_statements(code: str) -> list[str]:
    """The cell's statements, each ending with `;` except perhaps the last one."""
    statements, start = [], 0
    for end, char in enumerate(code):
        if char == ";" and sqlite3.complete_statement(code[start:end + 1]):
            statements.append(code[start:end + 1])
            start = end + 1
    statements.append(code[start:])
    return [s.strip() for s in statements if s.strip() and s.strip() != ";"]


def has_code(text: str) -> bool:
    """Anything but comments and blanks (so a cell of notes is complete)."""
    return bool(_COMMENT.sub("", text).strip())


def cell(value: Any) -> str:
    """One value as the sqlite3 shell prints it (NULL is empty)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def text_table(columns: list[str], rows: list[tuple]) -> str:
    grid = [columns] + [[cell(v) for v in row] for row in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(columns))]
    lines = [" | ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in grid]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def html_table(columns: list[str], rows: list[tuple]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(cell(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class SQLKernel(Kernel):
    implementation = "lessonserver-sql"
    implementation_version = __version__
    language = "sql"
    language_version = sqlite3.sqlite_version
    language_info = {
        "name": "sqlite",
        "version": sqlite3.sqlite_version,
        "mimetype": "text/x-sql",
        "file_extension": ".sql",
        "codemirror_mode": "sql",
        "pygments_lexer": "sql",
    }
    banner = f"SQLite {sqlite3.sqlite_version}, in memory: one database per kernel"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # autocommit: the learner's BEGIN/COMMIT mean what they say
        self.db = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        # A Python callback inside long queries lets a pending SIGINT (interrupt) land;
        # the KeyboardInterrupt aborts the query with "interrupted".
        self.db.set_progress_handler(lambda: 0, PROGRESS_EVERY)

    # --- execute ------------------------------------------------------------

    def _stream(self, name: str, text: str) -> None:
        self.send_response(self.iopub_socket, "stream", {"name": name, "text": text})

    def _error(self, ename: str, evalue: str, statement: str) -> dict[str, Any]:
        traceback = [f"{ename}: {evalue}", f"  in: {statement.strip()}"]
        content = {"ename": ename, "evalue": evalue, "traceback": traceback}
        self.send_response(self.iopub_socket, "error", content)
        return {"status": "error", "execution_count": self.execution_count, **content}

    def _print_rows(self, cursor: sqlite3.Cursor, silent: bool) -> tuple[list[tuple], int]:
        """Stream a query's rows in chunks (a huge result never sits in memory whole);
        return the first MAX_RESULT_ROWS for the result table and the count."""
        kept: list[tuple] = []
        total = 0
        while chunk := cursor.fetchmany(ROWS_PER_MESSAGE):
            total += len(chunk)
            kept.extend(chunk[:MAX_RESULT_ROWS - len(kept)])
            if not silent:
                self._stream("stdout", "".join("|".join(cell(v) for v in row) + "\n"
                                               for row in chunk))
        return kept, total

    async def do_execute(self, code: str, silent: bool, store_history: bool = True,
                         user_expressions: dict | None = None, allow_stdin: bool = False,
                         **_: Any) -> dict[str, Any]:
        last: tuple[list[str], list[tuple], int] | None = None
        for statement in split_statements(code):
            try:
                cursor = self.db.execute(statement)
                if cursor.description is None:
                    continue
                rows, total = self._print_rows(cursor, silent)
            except sqlite3.Error as exc:
                if str(exc) == "interrupted":
                    return self._error("KeyboardInterrupt", "the query was interrupted", statement)
                return self._error(f"sqlite3.{type(exc).__name__}", str(exc), statement)
            except KeyboardInterrupt:
                return self._error("KeyboardInterrupt", "interrupted", statement)
            except (ValueError, OverflowError, MemoryError) as exc:  # e.g. a NUL in the text
                return self._error(type(exc).__name__, str(exc), statement)
            last = ([d[0] for d in cursor.description], rows, total)
        if last is not None and not silent:
            columns, shown, total = last
            more = f"\n({total - len(shown)} more rows)" if total > len(shown) else ""
            self.send_response(self.iopub_socket, "execute_result", {
                "execution_count": self.execution_count,
                "data": {"text/plain": text_table(columns, shown) + more,
                         "text/html": html_table(columns, shown) + html.escape(more)},
                "metadata": {}})
        return {"status": "ok", "execution_count": self.execution_count, "payload": [],
                "user_expressions": {}}

    # --- helpers for editors --------------------------------------------------

    async def do_is_complete(self, code: str) -> dict[str, Any]:
        statements = split_statements(code)
        if not statements or sqlite3.complete_statement(code) or not has_code(statements[-1]):
            return {"status": "complete"}
        return {"status": "incomplete", "indent": ""}

    def _tables(self) -> list[str]:
        return [r[0] for r in self.db.execute(
            "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")]

    def _columns(self) -> list[str]:
        names = set()
        for table in self._tables():
            quoted = table.replace('"', '""')
            names.update(r[1] for r in self.db.execute(f'PRAGMA table_info("{quoted}")'))
        return sorted(names)

    async def do_complete(self, code: str, cursor_pos: int | None) -> dict[str, Any]:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        match = _WORD.search(code[:cursor_pos])
        prefix = match.group() if match else ""
        start = cursor_pos - len(prefix)
        names = self._tables() + self._columns() if prefix else []
        words = [k.lower() if prefix.islower() else k for k in KEYWORDS] if prefix else []
        matches = sorted({w for w in words + names if w.lower().startswith(prefix.lower())})
        return {"status": "ok", "matches": matches, "cursor_start": start,
                "cursor_end": cursor_pos, "metadata": {}}

    async def do_inspect(self, code: str, cursor_pos: int | None, detail_level: int = 0,
                         omit_sections: Any = ()) -> dict[str, Any]:
        cursor_pos = len(code) if cursor_pos is None else cursor_pos
        begin = _WORD.search(code[:cursor_pos])
        start = begin.start() if begin else cursor_pos
        word = _WORD_AROUND.match(code, start).group()
        found = self.db.execute("SELECT sql FROM sqlite_master WHERE name = ? COLLATE NOCASE",
                                (word,)).fetchone() if word else None
        if found and found[0]:
            text = found[0]
        elif word.upper() in KEYWORDS:
            text = f"{word.upper()}: an SQL keyword (https://sqlite.org/lang_keywords.html)"
        else:
            return {"status": "ok", "found": False, "data": {}, "metadata": {}}
        return {"status": "ok", "found": True, "data": {"text/plain": text}, "metadata": {}}
