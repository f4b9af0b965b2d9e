"""More than one probe (docs/fleet.md): coverage of a sharded list, and groups of witnesses.

A grouped instance's pipeline alerts are judged with its group's: every witness of a group
seeing a condition is the pipeline's fault (ProbeGroup*), one alone is its location's
(ProbeLocation*). The recording rules put each location's view side by side.
"""

from __future__ import annotations

from typing import Any

from probe_deploy.alerts import alert
from probe_deploy.params import AlertParams
from probe_deploy.promql import (
    INFO,
    WATCHING,
    burn_fast_condition,
    duration,
    grouped_info,
    loss_condition,
    stale_condition,
)

GROUP_BY = "job, group, dataset"


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
        alert(
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
    stale = duration(p.stale_after_seconds)
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
            alert(
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
            alert(
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
