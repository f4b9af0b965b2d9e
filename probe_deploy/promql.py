"""The expressions the rules are made of, written once for the alerts, the recording rules and the fleet.

Every function takes the parameters and returns PromQL text: the conditions of the pipeline
alerts (stale, loss, fast burn) are shared by the single-instance alerts and the group ones.
"""

from __future__ import annotations

from probe_deploy.params import AlertParams

# The labels an alert keeps: one probe instance watching one dataset.
BY = "job, instance, dataset"
ON = "on (job, instance, dataset)"
WATCHING = "probe:watching"
DELIVERY_GAP = "probe:delivery_gap_seconds"
INFO = "probe_instance_info"


def le(seconds: float) -> str:
    """A bucket bound as prometheus_client writes it in the `le` label (15 -> "15.0")."""
    from prometheus_client.utils import floatToGoString

    return floatToGoString(float(seconds))


def duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms" if seconds % 1 else f"{int(seconds)}s"


def slo_error_ratio(p: AlertParams, window: str) -> str:
    """Share of posted events not received within the SLO latency, over `window`."""
    s = p.selector
    good = (
        f'sum by ({BY}) (rate(probe_event_latency_seconds_bucket{{{s}, le="{le(p.slo_latency_seconds)}"}}[{window}]))'
    )
    total = f"sum by ({BY}) (rate(probe_events_posted_total{{{s}}}[{window}]))"
    return f"clamp_min(\n  1 - (\n    {good}\n  /\n    {total}\n  ),\n  0\n)"


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


def increase(p: AlertParams, metric: str, window: str, extra: str = "", by: str = BY) -> str:
    """The increase of a counter over `window`, summed by instance and dataset (and `by`'s more)."""
    matchers = f"{p.selector}, {extra}" if extra else p.selector
    return f"sum by ({by}) (increase({metric}{{{matchers}}}[{window}]))"


def burn(p: AlertParams, long: str, short: str, factor: float) -> str:
    """The error budget burns `factor` times too fast over both windows (the multiwindow SLO alert)."""
    limit = f"{factor:g} * {1 - p.slo_objective:.6g}"
    pair = f"probe:slo_error_ratio:rate{long} > ({limit})\nand\n  probe:slo_error_ratio:rate{short} > ({limit})"
    return f"(\n  {pair}\n)"


def stale_condition(p: AlertParams) -> str:
    """One instance sees nothing of its own arrive on a dataset (ProbeEventsStale); value: seconds."""
    return (
        f"time() - max by ({BY}) (probe_last_event_received_timestamp_seconds{{{p.selector}}}) "
        f"> {p.stale_after_seconds:g}\n"
        f"and {ON}\n{increase(p, 'probe_events_posted_total', duration(p.stale_after_seconds))} > 0\n"
        + fresh(p, duration(p.stale_after_seconds))
    )


def loss_condition(p: AlertParams) -> str:
    """One instance's events are dropped (ProbeEventLoss); value: the lost share."""
    lost = increase(p, "probe_events_lost_total", p.loss_window)
    posted = increase(p, "probe_events_posted_total", p.loss_window)
    return (
        f"({lost}\n/\n{posted}\n> {p.loss_ratio:g})\n" + fresh(p, p.loss_window) + "\n" + after_outage(p, p.loss_window)
    )


def burn_fast_condition(p: AlertParams) -> str:
    """One instance's latency SLO burns fast (ProbeSLOBurnFast); value: the error ratio."""
    return (
        burn(p, p.burn_fast_long_window, p.burn_fast_short_window, p.burn_fast_factor)
        + "\n"
        + fresh(p, p.burn_fast_long_window)
        + "\n"
        + after_outage(p, p.burn_fast_long_window)
    )


def grouped_info(p: AlertParams) -> str:
    return f'{INFO}{{{p.selector}, group!=""}}'


def ungrouped(p: AlertParams, condition: str) -> str:
    """A pipeline alert of an instance in no group (PROBE_GROUP empty, or a probe too old to say): a
    grouped instance's view is judged with its group's (the ProbeGroup*/ProbeLocation* alerts)."""
    return f"(\n{condition}\n)\nunless on (job, instance)\n{grouped_info(p)}"
