"""Learner words for kernel results, on tracebacks a real ipykernel produced.

tests/data/ipykernel_tracebacks.json holds the error messages ipykernel 7 sent
for the code in CODE (gathered by running it in a kernel; `setup_frame` calls
a function an earlier, hidden cell defined)."""
from __future__ import annotations

import dataclasses
import json
import pathlib

from kernels.result import LimitHit, Output, RunResult, RunStatus
from server.learning import messages

SAMPLES = json.loads((pathlib.Path(__file__).parent / "data" / "ipykernel_tracebacks.json").read_text())
CODE = {
    "zero": "a = 1\nb = 0\nprint(a / b)",
    "nested": "def f(n):\n    return g(n)\n\ndef g(n):\n    return n[5]\n\nf([1])",
    "setup_frame": "y = 2\nhelper(0)",
    "syntax": "x = 1\nprint('a'\ny = 2",
    "syntax2": "for i in range(3)\n    print(i)",
    "indent": "if True:\nprint(1)",
    "library": "import json\njson.loads('{')",
    "interrupt": "import time\nwhile True:\n    time.sleep(0.01)",
    "exec_syntax": "exec(compile('assert f(0) = 32', 'x.py', 'exec'))",
}


def error(name: str) -> Output:
    content = SAMPLES[name][0]
    return Output("error", ename=content["ename"], evalue=content["evalue"],
                  traceback=tuple(content["traceback"]))


def shown(name: str) -> str:
    out = messages.clean_output(error(name), CODE[name])
    return messages.plain("\n".join(out.traceback))


def test_no_sample_names_a_cell_counter_or_a_temp_file():
    for name in CODE:
        text = shown(name)
        assert "Cell In[" not in text and "ipykernel_" not in text, (name, text)
        assert "-" * 20 not in text, (name, text)


def test_a_runtime_error_names_the_line_of_the_learners_code():
    text = shown("zero")
    assert "Line 3 of your code" in text and "----> 3 print(a / b)" in text
    assert text.rstrip().endswith("ZeroDivisionError: division by zero")


def test_each_frame_in_the_learners_own_functions_names_its_line():
    text = shown("nested")
    assert [line for line in text.splitlines() if "of your code" in line] == [
        "Line 7 of your code", "Line 2 of your code, in f(n)", "Line 5 of your code, in g(n)"]


def test_a_frame_from_an_earlier_cell_is_not_called_the_learners():
    text = shown("setup_frame")
    assert "Line 2 of your code" in text
    assert "Line 2 of code that ran before yours, in helper(v)" in text


def test_a_syntax_error_points_at_the_learners_line():
    out = messages.clean_output(error("syntax"), CODE["syntax"])
    assert out.evalue == "'(' was never closed (line 2 of your code)"
    text = messages.plain("\n".join(out.traceback))
    assert text.splitlines()[0] == "  Line 2 of your code"
    assert "SyntaxError: '(' was never closed" in text
    assert messages.clean_output(error("indent"), CODE["indent"]).evalue == (
        "expected an indented block after 'if' statement on line 1 (line 2 of your code)")
    assert shown("syntax2").splitlines()[0] == "  Line 1 of your code"


def test_the_traced_line_is_the_deepest_frame_in_the_learners_code():
    lines = {name: messages.learner_line(error(name), code) for name, code in CODE.items()}
    assert lines == {"zero": 3, "nested": 5, "setup_frame": 2, "syntax": 2, "syntax2": 1,
                     "indent": 2, "library": 2, "interrupt": 3, "exec_syntax": 1}
    assert messages.learner_line(Output("stream", name="stdout", text="line 3"), "x") is None


def test_library_frames_stay_and_ipythons_own_frame_goes():
    assert "json/decoder.py" in shown("library") and "Line 2 of your code" in shown("library")
    text = shown("exec_syntax")
    assert "interactiveshell" not in text and "exec(code_obj" not in text
    assert "Line 1 of your code" in text and "File x.py:1" in text


def test_colours_stay_on_lines_that_did_not_change():
    out = messages.clean_output(error("zero"), CODE["zero"])
    assert any("\x1b[" in part for part in out.traceback)


def test_a_printed_traceback_on_stderr_loses_the_temp_file():
    text = ('Traceback (most recent call last):\n'
            '  File "/tmp/ipykernel_77/3157146385.py", line 2, in <module>\n'
            '    helper(0)\nZeroDivisionError: division by zero\n')
    out = messages.clean_output(Output("stream", name="stderr", text=text), "y = 2\nhelper(0)")
    text = messages.plain(out.text)
    assert "ipykernel" not in text and "  Line 2 of your code\n    helper(0)" in text
    same = Output("stream", name="stderr", text="-" * 30 + "\n")   # the learner's own dashes stay
    assert messages.clean_output(same, "") == same


def test_a_timeout_drops_the_interrupt_and_suggests_an_endless_loop():
    interrupt = error("interrupt")
    result = RunResult(RunStatus.LIMIT, outputs=(Output("stream", name="stdout", text="looping\n"),
                                                 interrupt),
                       limit=LimitHit.TIMEOUT, message="Stopped after 10 s")
    shown_result = messages.for_learner(result, CODE["interrupt"], 10.0)
    assert [o.output_type for o in shown_result.outputs] == ["stream"]
    assert shown_result.message.startswith("Your code ran longer than 10 s")
    assert "endless loop" in shown_result.message
    assert messages.for_learner(dataclasses.replace(result, message=None), "", 2.5).message \
        .startswith("Your code ran longer than 2.5 s")


def test_a_timeout_keeps_the_news_of_a_fresh_kernel():
    result = RunResult(RunStatus.LIMIT, limit=LimitHit.TIMEOUT, message=(
        "Stopped after 2 s. A fresh kernel has been started, so earlier variables are gone"))
    message = messages.for_learner(result, "", 10.0).message
    assert message.startswith("Your code ran longer than 2 s, so it was stopped.")
    assert message.endswith("endless loop? Check that every while loop has a condition that "
                            "becomes false. A fresh kernel has been started, so earlier variables "
                            "are gone.")


def test_an_interrupt_the_learner_asked_for_is_shown():
    result = RunResult(RunStatus.ERROR, outputs=(error("interrupt"),), message="Interrupted")
    shown_result = messages.for_learner(result, CODE["interrupt"], 10.0)
    assert [o.ename for o in shown_result.outputs] == ["KeyboardInterrupt"]
    assert shown_result.message == "Interrupted"
    assert "Line 3 of your code" in messages.plain("\n".join(shown_result.outputs[0].traceback))


def test_other_outputs_pass_unchanged():
    for output in (Output("stream", name="stdout", text="Cell In[3], line 2\n"),
                   Output("display_data", data={"text/plain": "x"})):
        assert messages.clean_output(output, "x") == output
