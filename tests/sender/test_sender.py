"""The sender as a real process against the emulator: schedule, auth, retries, accounting."""

from __future__ import annotations

import contextlib
import resource
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from shared.exits import ExitStatus
from shared.store import EventRow, NoteOwner, Store, note_key
from testkit.hostile import read_head as read_request
from testkit.hostile import serve as raw_peer
from tests.helpers import (
    PYTHON,
    ROOT,
    EmulatorClient,
    Proc,
    metric,
    read_events,
    read_metrics,
    serve_emulator,
    start_probe,
    wait_until,
)

pytestmark = pytest.mark.timeout(120)


def rows(env: dict[str, str]) -> list[EventRow]:
    """Every event the sender recorded, by seqno."""
    return read_events(env)


def run_sender(emulator: EmulatorClient, tmp: Path, **env: object):
    environment = emulator.env(tmp, **env)
    return start_probe("sender", environment, tmp), environment


def assert_on_schedule(sent: list[float], interval: float, samples: dict) -> None:
    """Fixed rate from the first send: every slot passed was sent or counted as skipped, and never a burst.

    This is the schedule's promise, checked on the send times the store holds. The margins are
    intervals, not a machine's speed: a loaded machine may preempt the sender between judging
    a slot and stamping its send, so a single send may look up to MARGIN intervals late; and a
    stall may be counted just before the stop, after the last send.
    """
    stalled = metric(samples, "probe_sender_skipped_slots_total", reason="stall")
    assert metric(samples, "probe_sender_skipped_slots_total", reason="backpressure") == 0
    span = (sent[-1] - sent[0]) / interval  # intervals from the first send to the last
    # No drift: slots counted from the first send, so time passing is slots fired or skipped.
    # A schedule that counted from the previous send would lose a slot every few sends.
    assert len(sent) - 1 + stalled >= span - MARGIN, (len(sent), stalled, span)
    # No burst: never more sends than slots, overall or over any ten sends in a row.
    assert len(sent) - 1 <= span + MARGIN, (len(sent), span)
    tightest = min(b - a for a, b in zip(sent, sent[10:], strict=False))
    assert tightest >= (10 - MARGIN) * interval, tightest


MARGIN = 2  # intervals a send may look late on a busy machine (see assert_on_schedule)


def test_no_drift_over_200_intervals_at_20ms(emulator: EmulatorClient, tmp_path: Path) -> None:
    interval = 0.02
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=interval)
    wait_until(lambda: len(rows(env)) >= 210, 30, "210 events")
    assert proc.stop() == ExitStatus.OK, proc.output()
    sent = [r.sent_at for r in rows(env)]
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert_on_schedule(sent, interval, samples)
    assert all(r.post_state == "ok" for r in rows(env))
    assert metric(samples, "probe_events_posted_total") == len(sent)
    truth = emulator.truth()["events"]
    assert sorted(e["seqno"] for e in truth) == list(range(1, len(sent) + 1))


def test_token_expiring_mid_run_is_renewed_without_a_failed_post(emulator: EmulatorClient, tmp_path: Path) -> None:
    emulator.faults(token_lifetime_seconds=1)
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05)
    wait_until(
        lambda: metric(read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"])), "probe_token_requests_total") >= 4,
        20,
        "three token renewals",
    )
    assert proc.stop() == ExitStatus.OK
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_token_requests_total", result="error") == 0
    assert metric(samples, "probe_event_post_errors_total") == 0
    assert {r.post_state for r in rows(env)} == {"ok"}


def test_a_401_renews_the_token_once_and_costs_no_event(emulator: EmulatorClient, tmp_path: Path) -> None:
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05)
    wait_until(lambda: len(rows(env)) >= 10, 20, "ten events")
    requests.post(f"{emulator.base}/_emulator/revoke-tokens", timeout=5).raise_for_status()
    count = len(rows(env))
    wait_until(lambda: len(rows(env)) >= count + 10, 20, "ten more events")
    assert proc.stop() == ExitStatus.OK
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_event_post_errors_total") == 0
    assert metric(samples, "probe_token_requests_total", result="ok") == 2
    sent = rows(env)
    assert {r.post_state for r in sent} == {"ok"}
    assert sorted(e["seqno"] for e in emulator.truth()["events"]) == [r.seqno for r in sent]


def test_token_endpoint_down_is_retried_with_backoff_not_in_a_tight_loop(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    emulator.faults(token_down=True)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05, POST_TIMEOUT_SECONDS=0.3, MAX_CONSECUTIVE_ERRORS=0
    )
    wait_until(lambda: sum(r.post_error == "token" for r in rows(env)) >= 40, 20, "40 posts failed for want of a token")
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    failed = metric(samples, "probe_event_post_errors_total", reason="token")
    assert failed >= 40 and metric(samples, "probe_event_post_errors_total", reason="auth") == 0
    assert metric(samples, "probe_token_requests_total", result="error") <= 6  # backoff: 0.5 s, 1 s, 2 s, ...
    emulator.faults(token_down=False)
    wait_until(lambda: rows(env)[-1].post_state == "ok", 30, "posts to succeed once the token endpoint is back")
    assert proc.stop() == ExitStatus.OK
    assert metric(read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"])), "probe_token_requests_total", result="ok") == 1


def test_auth_can_be_switched_off_for_a_collector_that_needs_none(tmp_path: Path) -> None:
    emulator = serve_emulator("--no-collector-auth")
    try:
        proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05, AUTH_ENABLED="false")
        wait_until(lambda: sum(r.post_state == "ok" for r in rows(env)) >= 10, 20, "ten posts without a token")
        assert proc.stop() == ExitStatus.OK
    finally:
        emulator.proc.stop()
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_token_requests_total") == 0
    assert metric(samples, "probe_event_post_errors_total") == 0


def test_503s_are_retried_and_a_post_that_keeps_failing_counts_once(emulator: EmulatorClient, tmp_path: Path) -> None:
    emulator.faults(collector_error_rate=0.5, collector_error_statuses=[503], seed=3)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.1, POST_TIMEOUT_SECONDS=3, MAX_CONSECUTIVE_ERRORS=0
    )
    wait_until(lambda: sum(r.post_state == "ok" for r in rows(env)) >= 15, 30, "15 posts through the 503s")
    emulator.faults(collector_error_rate=1.0)
    count = len(rows(env))
    # every post from now fails for good; give each its 3 s deadline
    wait_until(lambda: sum(r.post_state == "failed" for r in rows(env)) >= 3, 30, "posts that keep failing")
    proc.stop()
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    sent = rows(env)
    failed = [r for r in sent if r.post_state == "failed"]
    # a post of the 50% phase may also run out of retries (about 1 in 60): it is counted the same way
    assert all(r.post_error == "http_5xx" for r in failed)
    assert len([r for r in failed if r.seqno > count]) >= 3
    assert len(failed) < len(sent) - 10  # most posts of the 50% phase got through by retrying
    assert metric(samples, "probe_event_post_errors_total", reason="http_5xx") == len(failed)
    assert metric(samples, "probe_event_post_errors_total") == len(failed)
    assert metric(samples, "probe_events_posted_total") == sum(r.post_state == "ok" for r in sent)
    assert metric(samples, "probe_event_post_retries_total") > len(failed) * 3
    assert not [r for r in sent if r.post_state == "pending"]  # SIGTERM let in-flight posts finish


def test_max_consecutive_errors_exits_after_exactly_that_many_posts(emulator: EmulatorClient, tmp_path: Path) -> None:
    emulator.faults(collector_error_rate=1.0)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.5, POST_TIMEOUT_SECONDS=0.3, MAX_CONSECUTIVE_ERRORS=3
    )
    assert proc.popen.wait(20) == ExitStatus.FAILED_OUT
    assert "3 consecutive failed posts" in proc.output()
    sent = rows(env)
    assert len(sent) == 3 and {r.post_state for r in sent} == {"failed"}


def failed_out_and_restarted(emulator: EmulatorClient, tmp_path: Path) -> tuple[Proc, dict[str, str]]:
    """A sender that failed out against a failing collector, and its restart, now backing off."""
    emulator.faults(collector_error_rate=1.0)
    proc, env = run_sender(
        emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.2, POST_TIMEOUT_SECONDS=0.1, MAX_CONSECUTIVE_ERRORS=2
    )
    assert proc.popen.wait(20) == ExitStatus.FAILED_OUT
    again = start_probe("sender", env, tmp_path, tag="-2")
    wait_until(lambda: "waiting 10s before sending" in again.output(), 20, "the restart backoff")
    return again, env


def test_a_restart_after_a_fail_out_backs_off_until_a_post_succeeds(emulator: EmulatorClient, tmp_path: Path) -> None:
    again, env = failed_out_and_restarted(emulator, tmp_path)
    backing_off = time.monotonic()
    emulator.faults(collector_error_rate=0.0)  # the collector recovers while the sender waits
    assert len(rows(env)) == 2  # nothing sent while backing off
    wait_until(lambda: any(r.post_state == "ok" for r in rows(env)), 30, "a post to succeed after the backoff")
    assert time.monotonic() - backing_off > 8  # it waited out the backoff first
    with Store(env["PROBE_DB_PATH"]) as store:
        assert store.fail_outs() == (0, 0.0)  # the success cleared the record: the next restart waits not
    assert again.stop() == ExitStatus.OK


def test_sigterm_stops_a_sender_that_is_backing_off(emulator: EmulatorClient, tmp_path: Path) -> None:
    again, _ = failed_out_and_restarted(emulator, tmp_path)
    started = time.monotonic()
    assert again.stop() == ExitStatus.OK
    assert time.monotonic() - started < 3


def test_a_hanging_collector_does_not_delay_the_schedule(emulator: EmulatorClient, tmp_path: Path) -> None:
    emulator.faults(collector_delay_ms=30_000)
    proc, env = run_sender(
        emulator,
        tmp_path,
        EVENT_INTERVAL_SECONDS=0.05,
        POST_TIMEOUT_SECONDS=0.5,
        POST_CONCURRENCY=32,
        MAX_CONSECUTIVE_ERRORS=0,
    )
    wait_until(lambda: len(rows(env)) >= 40, 20, "40 sends while every post hangs")
    started = time.monotonic()
    assert proc.stop() == ExitStatus.OK
    assert time.monotonic() - started < 3  # in-flight posts end by their deadline
    sent = rows(env)
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert_on_schedule([r.sent_at for r in sent], 0.05, samples)
    assert {r.post_error for r in sent} == {"timeout"}
    assert metric(samples, "probe_event_post_errors_total", reason="timeout") == len(sent)


def test_sigkill_loses_no_recorded_event_and_the_sequence_continues(emulator: EmulatorClient, tmp_path: Path) -> None:
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.02)
    wait_until(lambda: len(rows(env)) >= 50, 20, "50 events")
    proc.stop(signal.SIGKILL)
    first_run = rows(env)
    again = start_probe("sender", env, tmp_path, tag="-2")
    wait_until(lambda: len(rows(env)) >= len(first_run) + 50, 20, "50 more events")
    assert again.stop() == 0
    sent = rows(env)
    assert [r.seqno for r in sent] == list(range(1, len(sent) + 1))  # one sequence, no gap, no reuse
    accepted = {e["seqno"] for e in emulator.truth()["events"]}
    assert accepted <= {r.seqno for r in sent}  # every event that reached the collector is in the store
    assert {r.post_state for r in sent[len(first_run) :]} == {"ok"}


def test_sigstop_and_sigcont_do_not_stop_the_sender(emulator: EmulatorClient, tmp_path: Path) -> None:
    proc, env = run_sender(emulator, tmp_path, EVENT_INTERVAL_SECONDS=0.05)
    wait_until(lambda: len(rows(env)) >= 10, 20, "ten events")
    for _ in range(3):
        proc.popen.send_signal(signal.SIGSTOP)
        time.sleep(0.2)  # stopped for a while: the point of the test, not a wait for a condition
        proc.popen.send_signal(signal.SIGCONT)
    count = len(rows(env))
    wait_until(lambda: len(rows(env)) >= count + 20, 20, "sending on after stop and continue")
    assert proc.popen.poll() is None and "stopping" not in proc.output()
    assert proc.stop() == ExitStatus.OK


def test_a_dataset_the_collector_does_not_know_is_named_once_and_noted_for_readyz(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    proc, env = run_sender(
        emulator, tmp_path, DATASET_ID="no-such-dataset", EVENT_INTERVAL_SECONDS=0.05, MAX_CONSECUTIVE_ERRORS=0
    )
    wait_until(lambda: len(rows(env)) >= 10, 20, "ten failed posts")
    assert proc.stop() == ExitStatus.OK
    log = proc.output()
    assert log.count("dataset no-such-dataset/1 is not known to the collector (404)") == 1
    with Store(env["PROBE_DB_PATH"]) as store:
        assert "not known to the collector" in store.note(note_key(NoteOwner.SENDER, "no-such-dataset"))


def test_a_full_disk_is_counted_as_a_store_error_and_nothing_unrecorded_is_posted(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    env = emulator.env(tmp_path, EVENT_INTERVAL_SECONDS=0.01, MAX_CONSECUTIVE_ERRORS=0)
    Store(env["PROBE_DB_PATH"]).close()
    limit = 3 * 1024 * 1024  # above prometheus_client's 1 MiB files; the store's WAL reaches it in seconds

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    log_path = tmp_path / "sender.log"
    with open(log_path, "wb") as log_file:
        popen = subprocess.Popen(
            [PYTHON, "-m", "probe_sender"],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            preexec_fn=small_files,
        )
    proc = Proc(popen, log_path)
    try:
        samples = lambda: read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))  # noqa: E731
        wait_until(
            lambda: metric(samples(), "probe_store_errors_total", operation="record_send") >= 5,
            60,
            "store writes failing",
        )
        assert popen.poll() is None, proc.output()  # it keeps going, it does not crash-loop
        assert metric(samples(), "probe_sender_skipped_slots_total", reason="store") >= 5
        assert "store write failed (record_send)" in proc.output()
    finally:
        assert proc.stop() == ExitStatus.OK, proc.output()
    recorded = {r.seqno for r in rows(env)}
    posted = {e["seqno"] for e in emulator.truth()["events"]}
    assert posted <= recorded  # record before send: nothing reached the collector unrecorded


def test_a_password_in_the_collector_url_never_shows_sighup_is_ignored_and_no_core_is_dumped(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    """22.12 and 22.16 on the real process: the start-up line and every X-Ray segment without the
    URL's password, RLIMIT_CORE 0 as /proc shows it, and a SIGHUP that costs one log line."""
    password = "hunter2-url-pw"
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.1)
    datagrams: list[bytes] = []
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                datagrams.append(daemon.recv(65536))

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    url = f"http://probe:{password}@127.0.0.1:{emulator.port}/event-collector/event/{{dataset_id}}/{{version}}"
    proc, env = run_sender(
        emulator,
        tmp_path,
        EVENT_INTERVAL_SECONDS=0.05,
        COLLECTOR_URL=url,
        AWS_XRAY_SDK_ENABLED="true",
        AWS_XRAY_DAEMON_ADDRESS=f"127.0.0.1:{daemon.getsockname()[1]}",
    )
    try:
        wait_until(lambda: len(rows(env)) >= 5, 30, "five events")
        limits = Path(f"/proc/{proc.popen.pid}/limits").read_text()
        (core,) = [line.split()[4:6] for line in limits.splitlines() if line.startswith("Max core file size")]
        assert core == ["0", "0"], limits
        proc.popen.send_signal(signal.SIGHUP)
        count = len(rows(env))
        wait_until(lambda: len(rows(env)) >= count + 10, 20, "sending on after SIGHUP")
        assert proc.popen.poll() is None
        assert proc.stop() == ExitStatus.OK
    finally:
        done.set()
        receiver.join(2)
        daemon.close()
    output = proc.output()
    assert output.count("SIGHUP ignored") == 1, output[-3000:]
    assert "No segment found" not in output  # the first token, fetched outside any event, is not traced
    assert "sending to http://" in output and password not in output
    assert datagrams and all(password.encode() not in d for d in datagrams)
    assert any(b"127.0.0.1" in d and b"/event-collector/event/" in d for d in datagrams)
    assert {r.post_state for r in rows(env)} == {"ok"}


def test_a_token_endpoint_flooding_its_answer_neither_takes_memory_nor_delays_sigterm(
    emulator: EmulatorClient, tmp_path: Path
) -> None:
    """22.2 on the real process: Keycloak answers with an endless body as fast as it is read. The
    sender reads a bounded part of it (each try), stays small, and stops at once on SIGTERM."""
    asked, deadline = threading.Event(), 4.0

    def flood(conn: socket.socket, stopping: threading.Event) -> None:
        read_request(conn)
        asked.set()
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        block = b'{"access_token": "' + b"a" * 65536
        while not stopping.is_set():
            conn.sendall(block)

    with raw_peer(flood) as keycloak:
        proc, env = run_sender(
            emulator,
            tmp_path,
            KEYCLOAK_SERVER=f"http://127.0.0.1:{keycloak.port}/auth",
            POST_TIMEOUT_SECONDS=deadline,
            EVENT_INTERVAL_SECONDS=0.2,
            MAX_CONSECUTIVE_ERRORS=0,
        )
        wait_until(asked.is_set, 30, "the first token request")
        failing = "posts failing for want of a token"
        wait_until(lambda: sum(r.post_error == "token" for r in rows(env)) >= 3, 30, failing)
        status = Path(f"/proc/{proc.popen.pid}/status").read_text()
        (peak,) = [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")]
        stopped = time.monotonic()
        assert proc.stop(timeout=30) == ExitStatus.OK
        took = time.monotonic() - stopped
    assert peak < 300 * 1024, f"peak RSS {peak} kB"  # kB: about 60 MB is the sender's own; not gigabytes
    assert took < 2 * deadline, took  # about a post deadline (twice: a loaded machine); it used to need SIGKILL
    samples = read_metrics(Path(env["PROMETHEUS_MULTIPROC_DIR"]))
    assert metric(samples, "probe_token_request_errors_total", reason="bad_answer") >= 1
    assert metric(samples, "probe_event_post_errors_total", reason="auth") == 0
