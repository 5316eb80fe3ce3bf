"""The pure fold: plain message dicts in, state and outputs out."""
from __future__ import annotations

from kernels import fold
from kernels.result import LimitHit, Output, RunLimits, RunStatus

PARENT = "run-1"


def msg(kind: str, parent: str = PARENT, **content) -> dict:
    return {"msg_type": kind, "header": {"msg_type": kind},
            "parent_header": {"msg_id": parent}, "content": content}


def stream(text: str, name: str = "stdout") -> dict:
    return msg("stream", name=name, text=text)


def run(messages, limits: RunLimits = RunLimits(), **finish):
    state, forwarded = fold.start(limits, PARENT), []
    for m in messages:
        state, outs = fold.fold(state, m)
        forwarded.extend(outs)
    return state, forwarded, fold.finish(state, **finish)


def ends(*before) -> list[dict]:
    return [msg("status", execution_state="busy"), msg("execute_input", execution_count=3),
            *before, msg("status", execution_state="idle"),
            msg("execute_reply", status="ok", execution_count=3)]


def test_streams_are_forwarded_one_by_one_and_merged_in_the_result():
    state, forwarded, result = run(ends(stream("a\n"), stream("b\n"), stream("oops\n", "stderr"),
                                        stream("c\n")))
    assert state.done
    assert [o.text for o in forwarded] == ["a\n", "b\n", "oops\n", "c\n"]
    assert result.status is RunStatus.OK and result.message is None
    assert [(o.name, o.text) for o in result.outputs] == [
        ("stdout", "a\nb\n"), ("stderr", "oops\n"), ("stdout", "c\n")]
    assert result.execution_count == 3 and result.bytes_out == 11


def test_messages_of_other_requests_are_ignored():
    state, forwarded, result = run([stream("late\n", ) | {"parent_header": {"msg_id": "old"}},
                                    *ends(stream("mine\n"))])
    assert result.stdout == "mine\n" and len(forwarded) == 1


def test_not_done_until_both_idle_and_reply():
    state = fold.start(RunLimits(), PARENT)
    state, _ = fold.fold(state, msg("status", execution_state="idle"))
    assert not state.done
    state, _ = fold.fold(state, msg("execute_reply", status="ok"))
    assert state.done


def test_rich_outputs_and_display_updates():
    png = {"image/png": "iVBOR", "text/plain": "<Figure>"}
    _, forwarded, result = run(ends(
        msg("display_data", data={"text/plain": "0%"}, metadata={}, transient={"display_id": "p"}),
        msg("update_display_data", data={"text/plain": "100%"}, metadata={},
            transient={"display_id": "p"}),
        msg("execute_result", data=png, metadata={}, execution_count=3)))
    assert [o.output_type for o in forwarded] == ["display_data", "update_display_data",
                                                  "execute_result"]
    assert forwarded[1].display_id == "p"
    assert [o.data for o in result.outputs] == [{"text/plain": "100%"}, png]


def test_clear_output_now_and_on_next_output():
    _, forwarded, result = run(ends(stream("1"), msg("clear_output", wait=False), stream("2"),
                                    msg("clear_output", wait=True), stream("3")))
    assert [o.output_type for o in forwarded] == ["stream", "clear_output", "stream",
                                                  "clear_output", "stream"]
    assert result.stdout == "3"


def test_error_gives_error_status_with_traceback():
    _, _, result = run(ends(msg("error", ename="NameError", evalue="name 'x' is not defined",
                                traceback=["Traceback", "NameError"])))
    assert result.status is RunStatus.ERROR and result.limit is None
    assert result.error.ename == "NameError" and result.error.traceback == ("Traceback", "NameError")


def test_output_cap_keeps_a_cut_last_chunk_and_counts_the_rest():
    limits = RunLimits(output_bytes=10)
    state, forwarded, result = run(ends(stream("12345678"), stream("abcdef"), stream("x" * 1000)),
                                   limits)
    assert [o.text for o in forwarded] == ["12345678", "ab"]
    assert state.capped
    assert result.status is RunStatus.LIMIT and result.limit is LimitHit.OUTPUT
    assert result.stdout == "12345678ab"
    assert result.bytes_out == 1014 and result.bytes_dropped == 1004
    assert result.message == "Output cut at 10 bytes (1004 bytes more was discarded)"


def test_one_huge_line_without_newline_is_cut():
    limits = RunLimits(output_bytes=65536)
    _, forwarded, result = run(ends(stream("y" * (65536 + 1258291))), limits)
    assert len(forwarded[0].text) == 65536
    assert result.message == "Output cut at 64 KB (1.2 MB more was discarded)"


def test_cut_never_splits_a_character():
    _, forwarded, result = run(ends(stream("ééé")), RunLimits(output_bytes=3))
    assert forwarded[0].text == "é" and result.bytes_dropped == 4


def test_message_cap():
    _, forwarded, result = run(ends(*[stream(".") for _ in range(5)]),
                               RunLimits(output_messages=3))
    assert len(forwarded) == 3
    assert result.limit is LimitHit.OUTPUT and result.messages_dropped == 2
    assert result.message == "Output cut after 3 messages (2 more were discarded)"


def test_an_image_past_the_cap_is_dropped_whole():
    _, forwarded, result = run(ends(msg("display_data", data={"image/png": "A" * 50})),
                               RunLimits(output_bytes=20))
    assert forwarded == [] and result.limit is LimitHit.OUTPUT and result.bytes_dropped == 50


def test_timeout_message():
    state, _, result = run([msg("status", execution_state="busy")], RunLimits(timeout=2),
                           timed_out=True)
    assert not state.done
    assert (result.status, result.limit, result.message) == (
        RunStatus.LIMIT, LimitHit.TIMEOUT, "Stopped after 2 s")
    assert fold.finish(state, timed_out=True).message == "Stopped after 2 s"
    assert run([], RunLimits(timeout=0.5), timed_out=True)[2].message == "Stopped after 0.5 s"


def test_oom_kill_is_a_memory_limit():
    _, _, result = run([msg("status", execution_state="busy")], RunLimits(memory_mb=128),
                       died=True, exit_code=137, oom_killed=True)
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.MEMORY)
    assert result.message == "Your program used more than 128 MiB of memory and was stopped"


def test_memory_error_inside_the_kernel_is_a_memory_limit_too():
    _, _, result = run(ends(msg("error", ename="MemoryError", evalue="", traceback=[])))
    assert result.limit is LimitHit.MEMORY


def test_failed_fork_is_the_pids_limit_even_if_the_kernel_is_then_killed():
    state, _, _ = run(ends(msg("error", ename="BlockingIOError",
                               evalue="[Errno 11] Resource temporarily unavailable", traceback=[])))
    assert state.limit is LimitHit.PIDS
    result = fold.finish(state, died=True, exit_code=137)
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.PIDS)
    assert result.message == "Too many processes (limit 64)"
    _, _, bash = run(ends(stream("bash: fork: retry: Resource temporarily unavailable\n",
                                 "stderr")), RunLimits(pids_limit=32))
    assert bash.message == "Too many processes (limit 32)"


def test_full_tmp_is_the_disk_limit():
    _, _, result = run(ends(msg("error", ename="OSError", evalue="[Errno 28] No space left on device",
                                traceback=[])), RunLimits(tmp_mb=16))
    assert (result.status, result.limit) == (RunStatus.LIMIT, LimitHit.DISK)
    assert "16 MB" in result.message


def test_death_by_signal_and_by_exit():
    busy = [msg("status", execution_state="busy")]
    segv = run(busy, died=True, exit_code=139)[2]
    assert (segv.status, segv.limit) == (RunStatus.DIED, None)
    assert segv.message == "The kernel died (killed by signal 11)"
    assert run(busy, died=True, exit_code=-11)[2].message == "The kernel died (killed by signal 11)"
    assert run(busy, died=True, exit_code=1)[2].message == "The kernel died (exit code 1)"
    assert fold.note_restart(segv).message == (
        "The kernel died (killed by signal 11); a fresh one has been started")


def test_a_restart_after_a_limit_is_said_too():
    result = run([], RunLimits(timeout=2), timed_out=True)[2]
    assert fold.note_restart(result).message.startswith("Stopped after 2 s. A fresh kernel")


def test_sys_exit_is_an_error_with_a_plain_message():
    _, _, result = run(ends(msg("error", ename="SystemExit", evalue="3", traceback=[])))
    assert result.status is RunStatus.ERROR and "sys.exit()" in result.message


def test_human_bytes():
    assert [fold.human_bytes(n) for n in (5, 1024, 65536, 1258291, 3 * 2**30)] == [
        "5 bytes", "1 KB", "64 KB", "1.2 MB", "3 GB"]
