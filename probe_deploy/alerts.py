"""The alerts of one probe instance, by group: the probe itself, the pipeline, the sender's troubles.

Each group is a function of the parameters; the alerts on one counter's increase are a table.
The fleet's alerts (probe_deploy/fleet.py) judge the same conditions across a group of instances.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from probe_deploy.params import AlertParams
from probe_deploy.promql import (
    BY,
    ON,
    burn,
    burn_fast_condition,
    fresh,
    increase,
    loss_condition,
    stale_condition,
    ungrouped,
)

RUNBOOK = "docs/runbook.md"
DS = "{{ $labels.dataset }}"
INSTANCE = "{{ $labels.instance }}"


def alert(
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


def ratio_of_posted(p: AlertParams, metric: str, window: str) -> str:
    return f"{increase(p, metric, window)}\n/\n{increase(p, 'probe_events_posted_total', window)}"


def probe_alerts(p: AlertParams) -> list[dict[str, Any]]:
    """The probe itself: not scraped, not there, no metrics, its listener not subscribed."""
    s, inst = p.selector, INSTANCE
    return [
        alert(
            p,
            "ProbeTargetDown",
            f"up{{{s}}} == 0",
            "critical",
            f"The probe on {inst} cannot be scraped: the pipeline is unwatched",
            "Prometheus has failed to scrape the probe for the last " + p.probe_down_for + ". This says nothing "
            "about the pipeline itself: its state is unknown until the probe is back.",
            p.probe_down_for,
        ),
        alert(
            p,
            "ProbeTargetMissing",
            f"absent(up{{{s}}})",
            "critical",
            "Prometheus has no probe target to scrape",
            f"No scrape target matches {s}: the probe was removed from the scrape configuration, or service "
            "discovery lost it. The pipeline is unwatched.",
            p.probe_down_for,
        ),
        alert(
            p,
            "ProbeMetricsMissing",
            f"up{{{s}}} == 1\nunless on (job, instance)\nprobe_build_info{{{s}}}",
            "critical",
            f"The probe on {inst} answers, but none of its processes report metrics",
            "The metrics endpoint is up, but neither the sender nor the listener has written a metric: both "
            "are down, or the metrics directory was emptied under a running stack.",
            p.probe_down_for,
        ),
        alert(
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
    ]


def pipeline_alerts(p: AlertParams) -> list[dict[str, Any]]:
    """The pipeline as one instance sees it: nothing arrives, events lost or unwatched, latency, SLO burn."""
    s, ds, budget = p.selector, DS, 1 - p.slo_objective
    return [
        alert(
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
        alert(
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
        alert(
            p,
            "ProbeBlind",
            f"({ratio_of_posted(p, 'probe_events_unobserved_total', p.blind_window)}\n> {p.blind_ratio:g})\n"
            + fresh(p, p.blind_window, subscribed=False),
            "critical",
            f"The probe could not watch {{{{ $value | humanizePercentage }}}} of its events on {ds}",
            f"Over the last {p.blind_window}, {{{{ $value | humanizePercentage }}}} of the events went missing "
            f"while the listener was not subscribed (threshold {p.blind_ratio:.0%}). The probe cannot tell whether "
            "the pipeline lost them.",
            p.blind_for,
        ),
        alert(
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
        alert(
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
        alert(
            p,
            "ProbeSLOBurnSlow",
            burn(p, p.burn_slow_long_window, p.burn_slow_short_window, p.burn_slow_factor)
            + "\n"
            + fresh(p, p.burn_slow_long_window),
            "warning",
            f"The latency SLO of {ds} burns its error budget {p.burn_slow_factor:g} times too fast",
            f"More than {p.burn_slow_factor:g} x {budget:.2%} of the events did not arrive within "
            f"{p.slo_latency_seconds:g}s, over both {p.burn_slow_long_window} and {p.burn_slow_short_window} "
            f"(now {{{{ $value | humanizePercentage }}}}).",
            p.burn_slow_for,
        ),
    ]


@dataclass(frozen=True)
class CounterAlert:
    """A warning on one counter's increase over a window. The texts are templates: {ds}, {value},
    {reason} and {window} (the alert's own), and any parameter by its name."""

    name: str
    metric: str
    window: str  # the parameter that names the window
    threshold: str
    summary: str
    description: str
    matcher: str = ""  # one more label matcher, such as result="error"
    by_reason: bool = False  # one alert per value of the `reason` label
    for_: str = ""  # the parameter that names its `for`, if it has one


COUNTER_ALERTS = (
    CounterAlert(
        "ProbeTokenRequestsFailing",
        "probe_token_requests_total",
        "token_error_window",
        ">= {token_errors}",
        "The probe's token requests to Keycloak fail ({ds})",
        "{value} token requests failed over {window}: the probe cannot authenticate to the collector, so its "
        "posts fail with reason token.",
        matcher='result="error"',
        for_="token_error_for",
    ),
    CounterAlert(
        "ProbeSenderFailingOut",
        "probe_sender_fail_outs_total",
        "fail_out_window",
        ">= {fail_outs}",
        "The probe's sender gave up and restarted {value} times ({ds})",
        "The sender reached MAX_CONSECUTIVE_ERRORS failed posts {value} times over {window}; each time it "
        "exits, is restarted, and waits longer before sending.",
    ),
    CounterAlert(
        "ProbeSendSlotsSkipped",
        "probe_sender_skipped_slots_total",
        "skipped_window",
        "> {skipped_slots}",
        "The probe's sender skipped {value} send slots ({reason}) on {ds}",
        "Over {window} the sender skipped {value} slots with reason {reason}: stall = the process was not run "
        "in time (an overloaded or suspended VM), backpressure = every post slot was busy (a slow collector).",
        by_reason=True,
    ),
    CounterAlert(
        "ProbeClockStep",
        "probe_event_latency_clamped_total",
        "clock_step_window",
        "> 0",
        "Events on {ds} arrived before they were sent: the probe's clock stepped",
        "{value} arrivals over {window} were earlier than their send time; their latency was taken as 0. "
        "Check the host's time synchronisation.",
    ),
    CounterAlert(
        "ProbeMalformedMessages",
        "probe_events_malformed_total",
        "malformed_window",
        "> 0",
        "The subscription of {ds} delivers malformed messages ({reason})",
        "{value} messages over {window} were not well-formed probe events (reason {reason}); they were "
        "counted and skipped.",
        by_reason=True,
    ),
    CounterAlert(
        "ProbeEventsCorrupted",
        "probe_events_corrupted_total",
        "corrupted_window",
        "> 0",
        "Events of {ds} arrive altered",
        "{value} arrivals over {window} did not match their digest: the pipeline changed the events' content "
        "on the way. They were still classified; the listener's log says what differed.",
    ),
    CounterAlert(
        "ProbeForeignInstance",
        "probe_wrong_appid_total",
        "wrong_appid_window",
        "> 0",
        "Another probe instance posts to {ds}",
        "{value} well-formed events of another app_id arrived over {window}: a second probe instance uses "
        "the same dataset. They are not counted as ours.",
    ),
)


def counter_alert(p: AlertParams, row: CounterAlert) -> dict[str, Any]:
    values = asdict(p)
    window = values[row.window]
    words = {**values, "ds": DS, "value": "{{ $value }}", "reason": "{{ $labels.reason }}", "window": window}
    by = BY + ", reason" if row.by_reason else BY
    expr = f"{increase(p, row.metric, window, row.matcher, by)} {row.threshold.format_map(values)}"
    summary, description = row.summary.format_map(words), row.description.format_map(words)
    return alert(p, row.name, expr, "warning", summary, description, values[row.for_] if row.for_ else None)


def sender_alerts(p: AlertParams) -> list[dict[str, Any]]:
    """Posts failing, and every counter of the sender's and the listener's troubles."""
    ds = DS
    return [
        alert(
            p,
            "ProbePostsFailing",
            f"{increase(p, 'probe_event_post_errors_total', p.post_error_window, by=BY + ', reason')}\n"
            f"/ {ON} group_left ()\n"
            f"({increase(p, 'probe_event_post_errors_total', p.post_error_window)} + "
            f"{increase(p, 'probe_events_posted_total', p.post_error_window)})\n> {p.post_error_ratio:g}",
            "warning",
            f"{{{{ $value | humanizePercentage }}}} of the posts to {ds} fail with {{{{ $labels.reason }}}}",
            f"Over {p.post_error_window}, {{{{ $value | humanizePercentage }}}} of the probe's posts to the collector "
            f"failed for good with reason {{{{ $labels.reason }}}} (threshold {p.post_error_ratio:.0%}).",
            p.post_error_for,
        ),
        *(counter_alert(p, row) for row in COUNTER_ALERTS),
    ]


def instance_alerts(p: AlertParams) -> list[dict[str, Any]]:
    return [*probe_alerts(p), *pipeline_alerts(p), *sender_alerts(p)]
