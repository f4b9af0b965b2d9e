"""AWS X-Ray tracing of every probe event, from its post to its arrival, with the official SDK.

Off by default, and then free: this module imports the SDK only when tracing is on
(`make_tracer`), so neither process pays for it otherwise. On, the sender records
one segment per event (the post), with subsegments for a token request and each
post attempt, and sends the trace header to the collector so that the platform's
own traces continue the probe's; the event carries its trace id, so the listener
records the arrival in the same trace. Segments go by UDP to the X-Ray daemon at
AWS_XRAY_DAEMON_ADDRESS (the SDK's default 127.0.0.1:2000): a missing daemon costs
dropped datagrams, never a blocked or failed probe.

Secrets never enter a segment: URLs are recorded without their user, password and
query, and no header, token or body is recorded.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

log = logging.getLogger("tracing")

TRACE_FIELD = "trace_id"  # the one field the probe adds to its events when tracing is on
TRACE_ID = re.compile(r"^1-[0-9a-f]{8}-[0-9a-f]{24}$")
# Sample every event (the probe sends few), unless the operator gives local sampling rules.
SAMPLE_ALL = {"version": 2, "default": {"fixed_target": 1, "rate": 1.0}, "rules": []}


def without_query(url: str) -> str:
    """A URL as a segment may show it: scheme, host, port and path; never a user, password or query."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _host_port(host: str, port: str) -> bool:
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


def daemon_address_ok(value: str) -> bool:
    """Whether AWS_XRAY_DAEMON_ADDRESS is a form the SDK takes: `host:port`, or `tcp:host:port
    udp:host:port` in either order. Checked here, not with the SDK: importing it reads the variable
    and raises at import time, with a traceback."""
    forms = value.split(" ")
    if len(forms) == 1:
        parts = forms[0].split(":")
        return len(parts) == 2 and _host_port(*parts)
    if len(forms) == 2:
        parts = {form.split(":")[0]: form.split(":") for form in forms}
        return set(parts) == {"tcp", "udp"} and all(len(p) == 3 and _host_port(p[1], p[2]) for p in parts.values())
    return False


def check_settings(daemon_address: str | None, sampling_rules: str) -> str | None:
    """What is wrong with the X-Ray settings, in one line, or None: for `probe config check`, so
    that a bad value fails there (exit 2) rather than crash both programs at start, again and again."""
    if daemon_address is not None and not daemon_address_ok(daemon_address):
        return (
            f"AWS_XRAY_DAEMON_ADDRESS = {daemon_address!r}: expected host:port, or "
            "'tcp:host:port udp:host:port' (default 127.0.0.1:2000)"
        )
    if daemon_address is not None:
        # The SDK resolves the daemon's host for every segment it sends, and logs a traceback each
        # time that fails: a name that does not resolve now is refused here, once.
        import socket

        from shared.resolve import LOOKUP_SECONDS, resolve

        for form in daemon_address.split(" "):
            host = form.split(":")[-2]
            try:
                resolve(host, 0, within=LOOKUP_SECONDS)
            except (socket.gaierror, UnicodeError):
                return f"AWS_XRAY_DAEMON_ADDRESS = {daemon_address!r}: {host!r} does not resolve; give the daemon's IP"
    if sampling_rules:
        from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

        try:
            LocalSampler(_load_rules(sampling_rules))
        except Exception as exc:  # unreadable, not JSON, or rules the SDK refuses (its errors vary)
            return (
                f"XRAY_SAMPLING_RULES = {sampling_rules!r}: not X-Ray local sampling rules "
                f"(version 2 with a default rule): {type(exc).__name__}"
            )
    return None


class Attempt:
    """One post attempt as the collector client reports it (status or an exception)."""

    def __init__(self, subsegment: Any, header: str | None) -> None:
        self._sub = subsegment
        self.header = header  # the X-Amzn-Trace-Id value to send, or None

    def status(self, status: int) -> None:
        if self._sub is None:
            return
        self._sub.put_http_meta("status", status)
        if status == 429:
            self._sub.add_throttle_flag()
            self._sub.add_error_flag()
        elif 400 <= status < 500 or 300 <= status < 400:
            self._sub.add_error_flag()
        elif status >= 500:
            self._sub.add_fault_flag()

    def failed(self, reason: str) -> None:
        if self._sub is not None:
            self._sub.add_fault_flag()
            self._sub.put_annotation("error", reason)


class NoTracer:
    """Tracing off: every hook does nothing and costs nothing."""

    enabled = False

    @contextlib.contextmanager
    def event(self, event: dict, dataset: str) -> Iterator[Any]:
        yield None

    @contextlib.contextmanager
    def attempt(self, url: str, number: int) -> Iterator[Attempt]:
        yield Attempt(None, None)

    @contextlib.contextmanager
    def token_request(self) -> Iterator[None]:
        yield None

    def outcome(self, segment: Any, outcome: str, failed: bool) -> None:
        return None

    def arrival(
        self, trace_id: str | None, dataset: str, seqno: int, classification: str, latency: float | None
    ) -> None:
        return None


class XRayTracer(NoTracer):
    """Tracing on, with aws-xray-sdk's recorder (imported here only)."""

    enabled = True

    def __init__(self, service: str, sampling_rules: str = "") -> None:
        from aws_xray_sdk.core import xray_recorder
        from aws_xray_sdk.core.models.trace_header import TraceHeader
        from aws_xray_sdk.core.sampling.local.sampler import LocalSampler

        self._header = TraceHeader
        self._recorder = xray_recorder
        self._service = service
        rules = _load_rules(sampling_rules) if sampling_rules else SAMPLE_ALL
        xray_recorder.configure(
            service=service,
            sampling=True,
            # Local rules only: the default sampler would poll the daemon for centralized ones.
            sampler=LocalSampler(rules),
            context_missing="IGNORE_ERROR",  # a token fetched outside any event: not traced, not an error
            plugins=(),
            streaming_threshold=100,  # one document per event, subsegments inside
        )

    @contextlib.contextmanager
    def event(self, event: dict, dataset: str) -> Iterator[Any]:
        """The event's segment, open while it is posted; its trace id goes into the event."""
        segment = self._recorder.begin_segment(name=self._service)
        try:
            event[TRACE_FIELD] = segment.trace_id
            segment.put_annotation("dataset", dataset)
            segment.put_annotation("seqno", event["seqno"])
            segment.put_annotation("app_id", event["app_id"])
            yield segment
        finally:
            self._recorder.end_segment()

    @contextlib.contextmanager
    def attempt(self, url: str, number: int) -> Iterator[Attempt]:
        sub = self._recorder.begin_subsegment("collector", namespace="remote")
        try:
            if sub is None:
                yield Attempt(None, None)
                return
            sub.put_http_meta("method", "POST")
            sub.put_http_meta("url", without_query(url))
            sub.put_annotation("retry", number)
            yield Attempt(sub, self._header(root=sub.trace_id, parent=sub.id, sampled=1).to_header_str())
        finally:
            if sub is not None:
                self._recorder.end_subsegment()

    @contextlib.contextmanager
    def token_request(self) -> Iterator[None]:
        # The first token is fetched before any event's segment: then there is nothing to attach
        # it to, and the SDK would log "No segment found" for it.
        if self._recorder.context.get_trace_entity() is None:
            yield None
            return
        sub = self._recorder.begin_subsegment("token request", namespace="remote")
        try:
            yield None
        except BaseException:
            if sub is not None:
                sub.add_fault_flag()
            raise
        finally:
            if sub is not None:
                self._recorder.end_subsegment()

    def outcome(self, segment: Any, outcome: str, failed: bool) -> None:
        if segment is None:
            return
        segment.put_annotation("outcome", outcome)
        if failed:
            segment.add_error_flag()

    def arrival(
        self, trace_id: str | None, dataset: str, seqno: int, classification: str, latency: float | None
    ) -> None:
        """Record an arrival in the trace its event carries (events without one are not traced)."""
        if trace_id is None or not TRACE_ID.match(trace_id):
            return
        segment = self._recorder.begin_segment(name=f"{self._service} listener", traceid=trace_id, sampling=1)
        try:
            segment.put_annotation("dataset", dataset)
            segment.put_annotation("seqno", seqno)
            segment.put_annotation("classification", classification)
            if latency is not None:
                segment.put_annotation("latency_seconds", latency)
                segment.put_metadata("latency_seconds", latency)
        finally:
            self._recorder.end_segment()


MAX_RULES_BYTES = 1048576


def _load_rules(path: str) -> dict:
    import json

    from shared.small_file import read_small

    return json.loads(read_small(path, MAX_RULES_BYTES))  # a FIFO or /dev/zero is refused, not read for ever


def make_tracer(enabled: bool, service: str, sampling_rules: str = "") -> NoTracer:
    """The tracer for a process: the SDK is imported only when tracing is on."""
    if not enabled:
        return NoTracer()
    return XRayTracer(service, sampling_rules)
