"""The SQL kernel as a real local process: jupyter_kernel_test conformance and its own behaviour."""
from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel
import jupyter_kernel_test

from kernels import kernelspecs
from kernels.plugins import discover
from kernels.sql.kernel import split_statements, text_table

KERNEL_NAME = "lessonserver-test-sql"


class _SpecDir:
    """A kernelspec folder for this test run, found through JUPYTER_PATH."""

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="ls-spec-")
        self._saved = os.environ.get("JUPYTER_PATH")
        sql = next(p for p in discover() if p.name == "sql")
        kernelspecs.write([sql], Path(self._tmp.name) / "kernels",
                          kernelspecs.local_launcher(sys.executable), prefix="lessonserver-test-")
        os.environ["JUPYTER_PATH"] = self._tmp.name + (os.pathsep + self._saved if self._saved else "")

    def close(self) -> None:
        if self._saved is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = self._saved
        self._tmp.cleanup()


# (subclassed through the module: pytest would collect an imported TestCase and run it too)
class TestSQLKernelConformance(jupyter_kernel_test.KernelTests):
    kernel_name = KERNEL_NAME
    language_name = "sqlite"
    file_extension = ".sql"
    code_hello_world = "SELECT 'hello, world';"
    code_generate_error = "SELECT * FROM no_such_table;"
    code_execute_result = [
        {"code": "SELECT 6 * 7 AS answer;", "result": "answer\n------\n42"},
        {"code": "SELECT 1 AS a, 'x' AS b", "mime": "text/html"},
    ]
    complete_code_samples = ["SELECT 1;", "CREATE TABLE t(a);\nSELECT * FROM t;", "", "-- note\n"]
    incomplete_code_samples = ["SELECT 1", "SELECT 'a;", "CREATE TABLE t(\n  a INTEGER,"]
    completion_samples = [
        {"text": "SEL", "matches": {"SELECT"}},
        {"text": "select * fr", "matches": {"from"}},
        {"text": "SELECT * FROM t WHE", "matches": {"WHEN", "WHERE"}},
    ]
    code_inspect_sample = "SELECT"

    @classmethod
    def setUpClass(cls) -> None:
        cls._spec = _SpecDir()
        super().setUpClass()

    @classmethod
    def tearDownClass(cls) -> None:
        try:
            super().tearDownClass()
        finally:
            cls._spec.close()

    def run_cell(self, code: str):
        self.flush_channels()
        return self.execute_helper(code)

    def test_rows_are_printed_like_the_sqlite_shell_and_state_persists(self) -> None:
        self.run_cell("CREATE TABLE pets(name TEXT, legs INTEGER);\n"
                      "INSERT INTO pets VALUES ('cat', 4), ('bird', 2), ('snake', NULL);")
        reply, outputs = self.run_cell("SELECT name, legs FROM pets ORDER BY name")
        assert reply["content"]["status"] == "ok"
        streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
        assert "".join(streams) == "bird|2\ncat|4\nsnake|\n"
        result = next(m for m in outputs if m["msg_type"] == "execute_result")
        assert result["content"]["data"]["text/plain"].splitlines()[0].split() == ["name", "|", "legs"]
        assert "<td>snake</td><td></td>" in result["content"]["data"]["text/html"]
        assert result["content"]["execution_count"] == reply["content"]["execution_count"]

    def test_several_queries_print_all_rows_and_the_last_is_the_result(self) -> None:
        reply, outputs = self.run_cell("SELECT 1; SELECT 'two', 2;")
        assert "".join(m["content"]["text"] for m in outputs if m["msg_type"] == "stream") == "1\ntwo|2\n"
        results = [m for m in outputs if m["msg_type"] == "execute_result"]
        assert len(results) == 1 and "two" in results[0]["content"]["data"]["text/plain"]

    def test_a_large_result_streams_in_chunks_and_the_table_is_capped(self) -> None:
        reply, outputs = self.run_cell("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                                       "SELECT i + 1 FROM n WHERE i < 2500) SELECT i FROM n;")
        streams = [m["content"]["text"] for m in outputs if m["msg_type"] == "stream"]
        assert len(streams) == 5 and "".join(streams).split() == [str(i) for i in range(1, 2501)]
        table = next(m for m in outputs if m["msg_type"] == "execute_result")["content"]["data"]
        assert table["text/plain"].endswith("\n1000\n(1500 more rows)")
        assert table["text/html"].count("<tr>") == 1001

    def test_errors_name_the_sqlite_exception_and_stop_the_cell(self) -> None:
        reply, outputs = self.run_cell("CREATE TABLE once(a);\nSELEC 1;\nCREATE TABLE never(a);")
        content = reply["content"]
        assert content["status"] == "error" and content["ename"] == "sqlite3.OperationalError"
        assert "syntax error" in content["evalue"]
        assert any("SELEC 1" in line for line in content["traceback"])
        assert [m["msg_type"] for m in outputs] == ["error"]
        reply, _ = self.run_cell("INSERT INTO once VALUES (1); INSERT INTO never VALUES (1);")
        assert reply["content"]["ename"] == "sqlite3.OperationalError"
        assert "no such table: never" in reply["content"]["evalue"]
        reply, _ = self.run_cell("CREATE TABLE u(a UNIQUE); INSERT INTO u VALUES (1), (1);")
        assert reply["content"]["ename"] == "sqlite3.IntegrityError"

    def test_inspect_shows_a_tables_schema(self) -> None:
        self.run_cell("CREATE TABLE birds(name TEXT)")
        self.flush_channels()
        self.kc.inspect("SELECT * FROM birds", cursor_pos=16)
        reply = self.get_non_kernel_info_reply(timeout=10)
        assert reply["content"]["found"] is True
        assert reply["content"]["data"]["text/plain"] == "CREATE TABLE birds(name TEXT)"
        self.kc.inspect("zzz")
        assert self.get_non_kernel_info_reply(timeout=10)["content"]["found"] is False

    def test_an_endless_query_is_interrupted(self) -> None:
        self.flush_channels()
        endless = ("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                   "SELECT count(*) FROM n;")
        msg_id = self.kc.execute(endless)
        time.sleep(0.5)
        began = time.monotonic()
        self.km.interrupt_kernel()
        reply = self.get_non_kernel_info_reply(timeout=10)
        assert reply["parent_header"]["msg_id"] == msg_id
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert time.monotonic() - began < 3
        reply, outputs = self.run_cell("SELECT 'still here';")
        assert reply["content"]["status"] == "ok"


def test_split_statements_respects_strings_and_comments():
    assert split_statements("SELECT ';'; -- a;b\nSELECT 2") == ["SELECT ';';", "-- a;b\nSELECT 2"]
    assert split_statements("  ;; \n") == []
    assert split_statements("CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END; SELECT 3;") == [
        "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;", "SELECT 3;"]


def test_text_table_aligns_columns():
    assert text_table(["a", "long"], [(1, None), ("wide", 2.5)]) == (
        "a    | long\n-----+-----\n1    |\nwide | 2.5")


def test_kernel_runs_with_interrupt_by_signal_when_started_as_a_module():
    """`python -m kernels.sql` is what the local sandbox runs; SIGINT is what it sends."""
    spec = _SpecDir()
    try:
        km, kc = start_new_kernel(kernel_name=KERNEL_NAME)
    finally:
        spec.close()
    try:
        info = kc.kernel_info(reply=True, timeout=10)["content"]
        assert info["language_info"]["mimetype"] == "text/x-sql"
        assert info["implementation"] == "lessonserver-sql"
        kc.execute("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
                   "SELECT count(*) FROM n;")
        time.sleep(0.5)
        km.signal_kernel(signal.SIGINT)
        reply = kc.get_shell_msg(timeout=10)
        assert reply["content"]["ename"] == "KeyboardInterrupt"
        assert kc.execute_interactive("SELECT 1;", timeout=10)["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_kernelspec_written_for_the_local_backend(tmp_path):
    sql = next(p for p in discover() if p.name == "sql")
    folder, = kernelspecs.write([sql], tmp_path, kernelspecs.local_launcher("/usr/bin/python3"))
    spec = (folder / "kernel.json").read_text()
    assert '"/usr/bin/python3"' in spec and '"kernels.sql"' in spec and folder.name == "sql"
    model = kernelspecs.api_model(discover(), kernelspecs.local_launcher(sys.executable))
    assert model["default"] == "python" and set(model["kernelspecs"]) == {"bash", "python", "sql"}
    assert model["kernelspecs"]["sql"]["spec"]["language"] == "sql"
