"""The progress channel between a task and the sender: coalescing, monotonic percent, bounded requests."""

from provisioner.agent.context import MAX_LINES_PER_UPDATE, MAX_PENDING_LOG_LINES, ProgressChannel


def test_updates_coalesce_and_percent_never_goes_back():
    channel = ProgressChannel()
    channel.update(40, "downloading")
    channel.update(10, "restarted")
    channel.log("a")
    snap = channel.take()
    assert (snap.percent, snap.message, snap.log) == (40, "restarted", ["a"])
    assert channel.take() is None


def test_undelivered_lines_go_back_in_front():
    channel = ProgressChannel()
    channel.log("first")
    snap = channel.take()
    channel.log("second")
    channel.put_back(snap)
    assert channel.take().log == ["first", "second"]


def test_a_backlog_is_sent_in_bounded_requests_and_overflow_is_counted():
    channel = ProgressChannel()
    for i in range(MAX_PENDING_LOG_LINES + 5):
        channel.log(f"line {i}")
    batches = []
    while (snap := channel.take()) is not None:
        batches.append(snap.log)
    assert all(len(batch) <= MAX_LINES_PER_UPDATE for batch in batches)
    lines = [line for batch in batches for line in batch]
    assert lines[0] == "[5 log lines dropped while the control plane was unreachable]"
    assert lines[1] == "line 5" and lines[-1] == f"line {MAX_PENDING_LOG_LINES + 4}"
    assert len(lines) == MAX_PENDING_LOG_LINES + 1
