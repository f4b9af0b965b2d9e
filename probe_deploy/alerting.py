"""The probe's Prometheus alert and recording rules, generated from one file of parameters.

PromQL cannot take parameters, and windows and `for` durations cannot come from a
series, so the rules are generated: deploy/prometheus/alert-params.yaml is the one
place to tune them, deploy/prometheus/probe-rules.yml is the generated file that
Prometheus loads (a test keeps the two in step), and the end-to-end test generates
test-scaled rules through the same parameters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

DURATION = re.compile(r"^(\d+(ms|s|m|h|d))+$")
# The labels an alert keeps: one probe instance watching one dataset.
BY = "job, instance, dataset"
ON = "on (job, instance, dataset)"


# Parameters an operator may leave empty: the runbook's address, until the repository is browsable
# somewhere (a made-up URL would be a link to nowhere at 3 a.m.).
OPTIONAL_TEXT = frozenset({"runbook_url"})
RUNBOOK = "docs/runbook.md"


class ParamsError(Exception):
    """The parameters file is wrong; str() names the key."""


@dataclass(frozen=True)
class AlertParams:
    selector: str
    runbook_url: str
    probe_down_for: str
    not_subscribed_for: str
    stale_after_seconds: float
    stale_for: str
    loss_window: str
    loss_ratio: float
    loss_for: str
    blind_window: str
    blind_ratio: float
    blind_for: str
    latency_window: str
    latency_p99_seconds: float
    latency_for: str
    slo_latency_seconds: float
    slo_objective: float
    burn_fast_long_window: str
    burn_fast_short_window: str
    burn_fast_factor: float
    burn_fast_for: str
    burn_slow_long_window: str
    burn_slow_short_window: str
    burn_slow_factor: float
    burn_slow_for: str
    post_error_window: str
    post_error_ratio: float
    post_error_for: str
    token_error_window: str
    token_errors: int
    token_error_for: str
    fail_out_window: str
    fail_outs: int
    skipped_window: str
    skipped_slots: int
    clock_step_window: str
    malformed_window: str
    corrupted_window: str
    wrong_appid_window: str
    unwatched_for: str


def load_params(path: Path, overrides: dict[str, Any] | None = None) -> AlertParams:
    """Read every parameter from `path` (none may be missing or unknown), then apply overrides."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    doc.update(overrides or {})
    names = {f.name: f for f in fields(AlertParams)}
    unknown = sorted(set(doc) - set(names))
    missing = sorted(set(names) - set(doc))
    if unknown:
        raise ParamsError(f"{path}: unknown parameter(s) {', '.join(unknown)}")
    if missing:
        raise ParamsError(f"{path}: missing parameter(s) {', '.join(missing)}")
    values = {}
    for name, field in names.items():
        raw = doc[name]
        if field.type == "str":
            if name in OPTIONAL_TEXT and raw in (None, ""):
                values[name] = ""
                continue
            if not isinstance(raw, str) or not raw:
                raise ParamsError(f"{name}: expected a non-empty text, got {raw!r}")
            if (name.endswith("_for") or name.endswith("_window")) and not DURATION.match(raw):
                raise ParamsError(f"{name}: expected a Prometheus duration such as 5m or 1h, got {raw!r}")
            values[name] = raw
        else:
            kind = int if field.type == "int" else float
            if isinstance(raw, bool) or not isinstance(raw, (int, float)) or raw < 0:
                raise ParamsError(f"{name}: expected a number >= 0, got {raw!r}")
            values[name] = kind(raw)
    if not 0 < values["slo_objective"] < 1:
        raise ParamsError(f"slo_objective: expected a share between 0 and 1, got {values['slo_objective']!r}")
    return AlertParams(**values)


def _le(seconds: float) -> str:
    """A bucket bound as prometheus_client writes it in the `le` label (15 -> "15.0")."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(float(seconds))


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{int(seconds)}s"


def _alert(
    p: AlertParams,
    name: str,
    expr: str,
    severity: str,
    summary: str,
    description: str,
    for_: str | None = None,
) -> dict[str, Any]:
    rule: dict[str, Any] = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "component": "dataplatform-probe"}
    # `runbook` always names the section (docs/runbook.md#probeeventsstale), which the repository
    # carries; `runbook_url` only once an operator has said where that file can be browsed.
    rule["annotations"] = {
        "summary": summary,
        "description": description,
        "runbook": f"{RUNBOOK}#{name.lower()}",
    }
    if p.runbook_url:
        rule["annotations"]["runbook_url"] = f"{p.runbook_url}#{name.lower()}"
    return rule


def slo_error_ratio(p: AlertParams, window: str) -> str:
    """Share of posted events not received within the SLO latency, over `window`."""
    s = p.selector
    good = (
        f'sum by ({BY}) (rate(probe_event_latency_seconds_bucket{{{s}, le="{_le(p.slo_latency_seconds)}"}}[{window}]))'
    )
    total = f"sum by ({BY}) (rate(probe_events_posted_total{{{s}}}[{window}]))"
    return f"clamp_min(\n  1 - (\n    {good}\n  /\n    {total}\n  ),\n  0\n)"


WATCHING = "probe:watching"
DELIVERY_GAP = "probe:delivery_gap_seconds"


def watching(p: AlertParams) -> str:
    """1 while the listener is subscribed to the dataset, 0 while the probe runs but it is not (its
    gauge is absent while its process is down: the sender's counter still names the dataset).

    A gap shorter than not_subscribed_for (a reconnect, as after the platform's 2-hour close) is
    no blindness, as ProbeListenerNotSubscribed has it: otherwise a scrape that happened to fall
    into one would keep the 1-hour loss alert quiet for an hour."""
    s = p.selector
    connected = f"max by ({BY}) (max_over_time(probe_websocket_connected{{{s}}}[{p.not_subscribed_for}]))"
    return f"{connected}\nor\n0 * max by ({BY}) (probe_events_posted_total{{{s}}})"


def delivery_gap(p: AlertParams) -> str:
    """Seconds since the newest event of ours arrived: what ProbeEventsStale judges, recorded so that
    other alerts can ask whether their window holds such an outage."""
    return f"time() - max by ({BY}) (probe_last_event_received_timestamp_seconds{{{p.selector}}})"


def fresh(p: AlertParams, window: str, subscribed: bool = True) -> str:
    """The condition a pipeline alert adds: the probe was scraped (and its listener subscribed) at
    every evaluation of `window`. A window with a hole in it holds the probe's own outage, which
    says nothing about the pipeline; a later inhibition would only hide a page already on its way."""
    up = f"and on (job, instance)\n(min_over_time(up{{{p.selector}}}[{window}]) == 1)"
    if not subscribed:
        return up
    return f"and {ON}\n(min_over_time({WATCHING}[{window}]) == 1)\n{up}"


def after_outage(p: AlertParams, window: str) -> str:
    """The condition that keeps an alert quiet while `window` holds a delivery outage (the gap
    ProbeEventsStale pages for): events held or judged lost then, and their latency when they
    arrive at last, are that outage's, and it has paged once already."""
    return f"unless {ON}\n(max_over_time({DELIVERY_GAP}[{window}]) > {p.stale_after_seconds:g})"


def _increase(p: AlertParams, metric: str, window: str) -> str:
    return f"sum by ({BY}) (increase({metric}{{{p.selector}}}[{window}]))"


def _burn(p: AlertParams, long: str, short: str, factor: float) -> str:
    limit = f"{factor:g} * {1 - p.slo_objective:.6g}"
    pair = f"probe:slo_error_ratio:rate{long} > ({limit})\nand\n  probe:slo_error_ratio:rate{short} > ({limit})"
    return f"(\n  {pair}\n)"


def stale_condition(p: AlertParams) -> str:
    """One instance sees nothing of its own arrive on a dataset (ProbeEventsStale); value: seconds."""
    return (
        f"time() - max by ({BY}) (probe_last_event_received_timestamp_seconds{{{p.selector}}}) "
        f"> {p.stale_after_seconds:g}\n"
        f"and {ON}\n{_increase(p, 'probe_events_posted_total', _duration(p.stale_after_seconds))} > 0\n"
        + fresh(p, _duration(p.stale_after_seconds))
    )


def loss_condition(p: AlertParams) -> str:
    """One instance's events are dropped (ProbeEventLoss); value: the lost share."""
    lost = _increase(p, "probe_events_lost_total", p.loss_window)
    posted = _increase(p, "probe_events_posted_total", p.loss_window)
    return (
        f"({lost}\n/\n{posted}\n> {p.loss_ratio:g})\n" + fresh(p, p.loss_window) + "\n" + after_outage(p, p.loss_window)
    )


def burn_fast_condition(p: AlertParams) -> str:
    """One instance's latency SLO burns fast (ProbeSLOBurnFast); value: the error ratio."""
    return (
        _burn(p, p.burn_fast_long_window, p.burn_fast_short_window, p.burn_fast_factor)
        + "\n"
        + fresh(p, p.burn_fast_long_window)
        + "\n"
        + after_outage(p, p.burn_fast_long_window)
    )


# ---- more than one probe (README "More than one probe") ----
GROUP_BY = "job, group, dataset"
INFO = "probe_instance_info"


def grouped_info(p: AlertParams) -> str:
    return f'{INFO}{{{p.selector}, group!=""}}'


def ungrouped(p: AlertParams, condition: str) -> str:
    """A pipeline alert of an instance in no group (PROBE_GROUP empty, or a probe too old to say): a
    grouped instance's view is judged with its group's (the ProbeGroup*/ProbeLocation* alerts)."""
    return f"(\n{condition}\n)\nunless on (job, instance)\n{grouped_info(p)}"


def with_group(p: AlertParams, expr: str) -> str:
    """`expr` (by job, instance, dataset) of grouped instances only, with their group and location."""
    return f"(\n{expr}\n)\n* on (job, instance) group_left (group, location)\n{grouped_info(p)}"


def witnesses(p: AlertParams, window: str) -> str:
    """The instances of a group that could see a dataset for the whole of `window`: scraped and
    subscribed throughout (what `fresh` asks of a pipeline alert). One that was not is no witness
    either way: its silence is its own outage."""
    up = f"and on (job, instance)\n(min_over_time(up{{{p.selector}}}[{window}]) == 1)"
    return with_group(p, f"(min_over_time({WATCHING}[{window}]) == 1)\n{up}")


def seen_by_all(p: AlertParams, condition: str, window: str) -> str:
    """Per group and dataset: every witness sees `condition` (the worst witness's value)."""
    seen = with_group(p, condition)
    return (
        f"max by ({GROUP_BY}) (\n{seen}\n)\n"
        f"and on ({GROUP_BY})\n"
        f"(count by ({GROUP_BY}) (\n{seen}\n)\n>= on ({GROUP_BY})\ncount by ({GROUP_BY}) (\n{witnesses(p, window)}\n))"
    )


def seen_by_some(p: AlertParams, condition: str, window: str) -> str:
    """Per instance: it sees `condition`, but another witness of its group does not."""
    seen = with_group(p, condition)
    return (
        f"{seen}\nunless on ({GROUP_BY})\n"
        f"(count by ({GROUP_BY}) (\n{seen}\n)\n>= on ({GROUP_BY})\ncount by ({GROUP_BY}) (\n{witnesses(p, window)}\n))"
    )


def per_location(p: AlertParams, expr: str, by: str = "job, group, location, dataset") -> str:
    """`expr` (by job, instance, dataset and maybe le) summed by location: each instance joined to its
    group and location (the group is empty for an ungrouped instance)."""
    return f"sum by ({by}) (\n{expr}\n* on (job, instance) group_left (group, location)\n{INFO}{{{p.selector}}}\n)"


def location_rules(p: AlertParams) -> list[dict[str, Any]]:
    """The pipeline seen from each location, side by side on a dashboard."""
    s = p.selector
    bucket = f"rate(probe_event_latency_seconds_bucket{{{s}}}[{p.latency_window}])"
    lost = per_location(p, f"increase(probe_events_lost_total{{{s}}}[{p.loss_window}])")
    posted = per_location(p, f"increase(probe_events_posted_total{{{s}}}[{p.loss_window}])")
    return [
        {
            "record": "probe:latency_p99_seconds:location",
            "expr": f"histogram_quantile(0.99,\n{per_location(p, bucket, 'job, group, location, dataset, le')}\n)",
        },
        {"record": "probe:loss_ratio:location", "expr": f"{lost}\n/\n{posted}"},
    ]


def fleet_alerts(p: AlertParams) -> list[dict[str, Any]]:
    """Coverage of a sharded list, and the two-witness alerts of a group."""
    ds, loc, group = "{{ $labels.dataset }}", "{{ $labels.location }}", "{{ $labels.group }}"
    out = [
        _alert(
            p,
            "ProbeDatasetUnwatched",
            f"(max by (job, dataset) (probe_dataset_watched{{{p.selector}}}) == 0)\n"
            # the shard that owns it, as the live instances say (one, should they disagree on n)
            "+ on (job, dataset) group_left (shard)\n"
            f"topk by (job, dataset) (1, max by (job, dataset, shard) (probe_dataset_watched{{{p.selector}}}))",
            "critical",
            f"No live probe instance watches {ds} (shard {{{{ $labels.shard }}}})",
            f"{ds} is in the datasets list, but every instance that is scraped says another shard watches it "
            "(probe_dataset_watched is 0 on each): the instance of shard {{ $labels.shard }} is gone, or the shards "
            "disagree on n (PROBE_SHARD). The pipeline of {{ $labels.dataset }} is unwatched.",
            p.unwatched_for,
        )
    ]
    stale = _duration(p.stale_after_seconds)
    cases = (
        ("EventsStale", stale_condition(p), stale, p.stale_for, "no event arrives", "humanizeDuration", "nothing for"),
        ("EventLoss", loss_condition(p), p.loss_window, p.loss_for, "events are lost", "humanizePercentage", "lost:"),
        (
            "SLOBurnFast",
            burn_fast_condition(p),
            p.burn_fast_long_window,
            p.burn_fast_for,
            "the latency SLO burns fast",
            "humanizePercentage",
            "late:",
        ),
    )
    for name, condition, window, for_, what, human, word in cases:
        value = f"{word} {{{{ $value | {human} }}}}"
        out.append(
            _alert(
                p,
                f"ProbeGroup{name}",
                seen_by_all(p, condition, window),
                "critical",
                f"On {ds}, {what} at every location of group {group}",
                f"Every instance of group {group} that could watch {ds} over the last {window} sees it "
                f"(Probe{name}; at worst {value}): the pipeline, not one location.",
                for_,
            )
        )
        out.append(
            _alert(
                p,
                f"ProbeLocation{name}",
                seen_by_some(p, condition, window),
                "warning",
                f"On {ds}, {what} at {loc} only (group {group})",
                f"The instance at {loc} ({{{{ $labels.instance }}}}) sees Probe{name} on {ds} ({value}), but "
                f"another witness of group {group} does not: a fault of that location or of that probe, not of "
                "the pipeline. No page.",
                for_,
            )
        )
    return out


def recording_rules(p: AlertParams) -> list[dict[str, Any]]:
    windows = dict.fromkeys(
        (p.burn_fast_long_window, p.burn_fast_short_window, p.burn_slow_long_window, p.burn_slow_short_window)
    )
    return [
        {"record": WATCHING, "expr": watching(p)},
        {"record": DELIVERY_GAP, "expr": delivery_gap(p)},
        *({"record": f"probe:slo_error_ratio:rate{w}", "expr": slo_error_ratio(p, w)} for w in windows),
        *location_rules(p),
    ]


def alert_rules(p: AlertParams) -> list[dict[str, Any]]:
    s = p.selector
    ds = "{{ $labels.dataset }}"
    inst = "{{ $labels.instance }}"
    budget = 1 - p.slo_objective

    def increase(metric: str, window: str, extra: str = "", by: str = BY) -> str:
        matchers = f"{s}, {extra}" if extra else s
        return f"sum by ({by}) (increase({metric}{{{matchers}}}[{window}]))"

    def ratio_of_posted(metric: str, window: str) -> str:
        return f"{increase(metric, window)}\n/\n{increase('probe_events_posted_total', window)}"

    def burn(long: str, short: str, factor: float) -> str:
        limit = f"{factor:g} * {budget:.6g}"
        pair = f"probe:slo_error_ratio:rate{long} > ({limit})\nand\n  probe:slo_error_ratio:rate{short} > ({limit})"
        return f"(\n  {pair}\n)"

    return [
        _alert(
            p,
            "ProbeTargetDown",
            f"up{{{s}}} == 0",
            "critical",
            f"The probe on {inst} cannot be scraped: the pipeline is unwatched",
            "Prometheus has failed to scrape the probe for the last " + p.probe_down_for + ". This says nothing "
            "about the pipeline itself: its state is unknown until the probe is back.",
            p.probe_down_for,
        ),
        _alert(
            p,
            "ProbeTargetMissing",
            f"absent(up{{{s}}})",
            "critical",
            "Prometheus has no probe target to scrape",
            f"No scrape target matches {s}: the probe was removed from the scrape configuration, or service "
            "discovery lost it. The pipeline is unwatched.",
            p.probe_down_for,
        ),
        _alert(
            p,
            "ProbeMetricsMissing",
            f"up{{{s}}} == 1\nunless on (job, instance)\nprobe_build_info{{{s}}}",
            "critical",
            f"The probe on {inst} answers, but none of its processes report metrics",
            "The metrics endpoint is up, but neither the sender nor the listener has written a metric: both "
            "are down, or the metrics directory was emptied under a running stack.",
            p.probe_down_for,
        ),
        _alert(
            p,
            "ProbeListenerNotSubscribed",
            f"max by ({BY}) (probe_websocket_connected{{{s}}}) == 0\n"
            f"or\n(max by (job, instance) (up{{{s}}}) == 1 unless on (job, instance) probe_websocket_connected{{{s}}})",
            "warning",
            f"The probe's listener on {inst} is not subscribed" + "{{ with $labels.dataset }} to {{ . }}{{ end }}",
            f"The listener has not been subscribed for {p.not_subscribed_for} (or its process is down). The probe "
            "is blind: events sent meanwhile are counted unobserved, never lost.",
            p.not_subscribed_for,
        ),
        _alert(
            p,
            "ProbeEventsStale",
            ungrouped(p, stale_condition(p)),
            "critical",
            f"No event of the probe has arrived on {ds} for {{{{ $value | humanizeDuration }}}}",
            f"The collector accepts the probe's events and the listener is subscribed, but none has arrived for "
            f"{{{{ $value | humanizeDuration }}}} (threshold {p.stale_after_seconds:g}s): the pipeline is not "
            "delivering.",
            p.stale_for,
        ),
        _alert(
            p,
            "ProbeEventLoss",
            ungrouped(p, loss_condition(p)),
            "critical",
            f"{{{{ $value | humanizePercentage }}}} of the probe's events on {ds} were lost",
            f"Over the last {p.loss_window}, {{{{ $value | humanizePercentage }}}} of the events the collector "
            f"accepted never arrived while the listener was subscribed (threshold {p.loss_ratio:.2%}). Events the "
            "probe could not watch are not counted here.",
            p.loss_for,
        ),
        _alert(
            p,
            "ProbeBlind",
            f"({ratio_of_posted('probe_events_unobserved_total', p.blind_window)}\n> {p.blind_ratio:g})\n"
            + fresh(p, p.blind_window, subscribed=False),
            "critical",
            f"The probe could not watch {{{{ $value | humanizePercentage }}}} of its events on {ds}",
            f"Over the last {p.blind_window}, {{{{ $value | humanizePercentage }}}} of the events went missing "
            f"while the listener was not subscribed (threshold {p.blind_ratio:.0%}). The probe cannot tell whether "
            "the pipeline lost them.",
            p.blind_for,
        ),
        _alert(
            p,
            "ProbeLatencyHigh",
            f"histogram_quantile(0.99, sum by ({BY}, le) "
            f"(rate(probe_event_latency_seconds_bucket{{{s}}}[{p.latency_window}])))\n> {p.latency_p99_seconds:g}\n"
            + fresh(p, p.latency_window),
            "warning",
            f"End-to-end latency p99 on {ds} is {{{{ $value | humanizeDuration }}}}",
            f"The 99th percentile of send-to-arrival latency over {p.latency_window} is "
            f"{{{{ $value | humanizeDuration }}}}, above {p.latency_p99_seconds:g}s.",
            p.latency_for,
        ),
        _alert(
            p,
            "ProbeSLOBurnFast",
            ungrouped(p, burn_fast_condition(p)),
            "critical",
            f"The latency SLO of {ds} burns its error budget {p.burn_fast_factor:g} times too fast",
            f"More than {p.burn_fast_factor:g} x {budget:.2%} of the events did not arrive within "
            f"{p.slo_latency_seconds:g}s, over both {p.burn_fast_long_window} and {p.burn_fast_short_window} "
            f"(now {{{{ $value | humanizePercentage }}}}): at this rate the month's budget is gone in days.",
            p.burn_fast_for,
        ),
        _alert(
            p,
            "ProbeSLOBurnSlow",
            burn(p.burn_slow_long_window, p.burn_slow_short_window, p.burn_slow_factor)
            + "\n"
            + fresh(p, p.burn_slow_long_window),
            "warning",
            f"The latency SLO of {ds} burns its error budget {p.burn_slow_factor:g} times too fast",
            f"More than {p.burn_slow_factor:g} x {budget:.2%} of the events did not arrive within "
            f"{p.slo_latency_seconds:g}s, over both {p.burn_slow_long_window} and {p.burn_slow_short_window} "
            f"(now {{{{ $value | humanizePercentage }}}}).",
            p.burn_slow_for,
        ),
        _alert(
            p,
            "ProbePostsFailing",
            f"{increase('probe_event_post_errors_total', p.post_error_window, by=BY + ', reason')}\n"
            f"/ {ON} group_left ()\n"
            f"({increase('probe_event_post_errors_total', p.post_error_window)} + "
            f"{increase('probe_events_posted_total', p.post_error_window)})\n> {p.post_error_ratio:g}",
            "warning",
            f"{{{{ $value | humanizePercentage }}}} of the posts to {ds} fail with {{{{ $labels.reason }}}}",
            f"Over {p.post_error_window}, {{{{ $value | humanizePercentage }}}} of the probe's posts to the collector "
            f"failed for good with reason {{{{ $labels.reason }}}} (threshold {p.post_error_ratio:.0%}).",
            p.post_error_for,
        ),
        _alert(
            p,
            "ProbeTokenRequestsFailing",
            increase("probe_token_requests_total", p.token_error_window, 'result="error"') + f" >= {p.token_errors}",
            "warning",
            f"The probe's token requests to Keycloak fail ({ds})",
            f"{{{{ $value }}}} token requests failed over {p.token_error_window}: the probe cannot authenticate "
            "to the collector, so its posts fail with reason token.",
            p.token_error_for,
        ),
        _alert(
            p,
            "ProbeSenderFailingOut",
            f"{increase('probe_sender_fail_outs_total', p.fail_out_window)} >= {p.fail_outs}",
            "warning",
            f"The probe's sender gave up and restarted {{{{ $value }}}} times ({ds})",
            f"The sender reached MAX_CONSECUTIVE_ERRORS failed posts {{{{ $value }}}} times over "
            f"{p.fail_out_window}; each time it exits, is restarted, and waits longer before sending.",
        ),
        _alert(
            p,
            "ProbeSendSlotsSkipped",
            f"{increase('probe_sender_skipped_slots_total', p.skipped_window, by=BY + ', reason')} > {p.skipped_slots}",
            "warning",
            f"The probe's sender skipped {{{{ $value }}}} send slots ({{{{ $labels.reason }}}}) on {ds}",
            f"Over {p.skipped_window} the sender skipped {{{{ $value }}}} slots with reason "
            "{{ $labels.reason }}: stall = the process was not run in time (an overloaded or suspended VM), "
            "backpressure = every post slot was busy (a slow collector).",
        ),
        _alert(
            p,
            "ProbeClockStep",
            f"{increase('probe_event_latency_clamped_total', p.clock_step_window)} > 0",
            "warning",
            f"Events on {ds} arrived before they were sent: the probe's clock stepped",
            f"{{{{ $value }}}} arrivals over {p.clock_step_window} were earlier than their send time; their "
            "latency was taken as 0. Check the host's time synchronisation.",
        ),
        _alert(
            p,
            "ProbeMalformedMessages",
            f"{increase('probe_events_malformed_total', p.malformed_window, by=BY + ', reason')} > 0",
            "warning",
            f"The subscription of {ds} delivers malformed messages ({{{{ $labels.reason }}}})",
            f"{{{{ $value }}}} messages over {p.malformed_window} were not well-formed probe events (reason "
            "{{ $labels.reason }}); they were counted and skipped.",
        ),
        _alert(
            p,
            "ProbeEventsCorrupted",
            f"{increase('probe_events_corrupted_total', p.corrupted_window)} > 0",
            "warning",
            f"Events of {ds} arrive altered",
            f"{{{{ $value }}}} arrivals over {p.corrupted_window} did not match their digest: the pipeline changed "
            "the events' content on the way. They were still classified; the listener's log says what differed.",
        ),
        _alert(
            p,
            "ProbeForeignInstance",
            f"{increase('probe_wrong_appid_total', p.wrong_appid_window)} > 0",
            "warning",
            f"Another probe instance posts to {ds}",
            f"{{{{ $value }}}} well-formed events of another app_id arrived over {p.wrong_appid_window}: a second "
            "probe instance uses the same dataset. They are not counted as ours.",
        ),
        *fleet_alerts(p),
    ]


def rules_document(p: AlertParams) -> dict[str, Any]:
    return {
        "groups": [
            {"name": "dataplatform-probe-recording", "rules": recording_rules(p)},
            {"name": "dataplatform-probe-alerts", "rules": alert_rules(p)},
        ]
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (expressions) as readable YAML blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def render(p: AlertParams, source: str = "deploy/prometheus/alert-params.yaml") -> str:
    header = (
        f"# Generated from {source} by `probe rules`; change the parameters there, not this file.\n"
        "# Runbook: docs/runbook.md. Checked by promtool (check rules, test rules) in the tests.\n"
    )
    return header + yaml.dump(rules_document(p), Dumper=_BlockDumper, sort_keys=False, width=120)


def render_prometheus_rule(p: AlertParams, source: str = "deploy/prometheus/alert-params.yaml") -> str:
    """The same rules as a Prometheus Operator PrometheusRule (deploy/kubernetes/)."""
    header = (
        f"# Generated from {source} by `probe rules --prometheus-rule` (make deploy); change the parameters\n"
        "# there, not this file. The rules are those of deploy/prometheus/probe-rules.yml.\n"
    )
    doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "dataplatform-probe", "labels": {"app.kubernetes.io/name": "dataplatform-probe"}},
        "spec": rules_document(p),
    }
    return header + yaml.dump(doc, Dumper=_BlockDumper, sort_keys=False, width=120)
