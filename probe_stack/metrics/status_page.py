"""The status page: one self-contained HTML document drawn from a Snapshot (verdict/figures.py).

A pure function of the snapshot, so it is tested and timed without a store or a server.
Everything is on the page itself (style, inline SVG graphs, a meta refresh): it works
offline and in the read-only container, and its Content-Security-Policy allows nothing
else. Every value is escaped: dataset names come from the configuration, and what differed
in an altered copy comes from the network.
"""

from __future__ import annotations

import base64
import hashlib
import time
from html import escape

from probe_stack.verdict.figures import STATE_WORDS, DatasetStatus, Snapshot, recent_p99
from probe_stack.verdict.rule import Health
from shared.store import FAILURES_KEPT, EventState, FailureKind

REFRESH_SECONDS = 10
GRAPH_W, GRAPH_H = 360, 80
BAR_H = 12
_PICKS = {1: "p50", 2: "p99"}

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.2em;color:#1b1f24;background:#fff}
h1{font-size:1.3em;margin:0 0 .2em}h2{font-size:1.1em;margin:0;display:inline}
.meta,.muted{color:#57606a}.problem{background:#fff4d6;border:1px solid #d4a72c;padding:.4em .6em}
table{border-collapse:collapse;margin:.4em 0}td,th{padding:.15em .6em;text-align:left;border-bottom:1px solid #e5e7ea}
th{font-weight:600;background:#f6f8fa}td.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{display:inline-block;min-width:6em;padding:0 .4em;border-radius:3px;font-weight:600;color:#fff;
text-align:center}
.healthy{background:#1a7f37}.degraded{background:#bf8700}.down{background:#cf222e}.blind{background:#6e7781}
details{border:1px solid #d0d7de;border-radius:4px;margin:.6em 0;padding:.3em .8em}
summary{cursor:pointer}.graphs{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.lost,.post_failed,.corrupted{color:#cf222e}.unobserved{color:#6e7781}.late{color:#bf8700}
svg{background:#f6f8fa;border:1px solid #d0d7de}
.p50{stroke:#0969da;color:#0969da}.p99{stroke:#cf222e;color:#cf222e}
circle.p50{fill:#0969da}circle.p99{fill:#cf222e}td{white-space:nowrap}td code{white-space:normal}
code{font-size:.95em;overflow-wrap:anywhere}
""".strip()
STYLE_HASH = "sha256-" + base64.b64encode(hashlib.sha256(STYLE.encode()).digest()).decode()
# Nothing may load: no script, font, frame or request; only the one inline style (by its hash)
# and data: images.
CSP = (
    f"default-src 'none'; style-src '{STYLE_HASH}'; img-src data:; base-uri 'none'; "
    "form-action 'none'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
CONTENT_TYPE = "text/html; charset=utf-8"


def _t(stamp: float | None, with_date: bool = False) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S", time.gmtime(stamp))


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _e(value: object) -> str:
    return escape(str(value), quote=True)


# The states and kinds in the words `probe status` uses (an accepted event not arrived yet is
# `awaiting`, not the store's `posted`): escaped once, not on every row.
_WORD = {str(w): _e(STATE_WORDS.get(str(w), w)) for w in (*EventState, *FailureKind, "pruned")}


def _verdict(ds: DatasetStatus) -> str:
    health = ds.verdict.health
    return f'<span class="verdict {health}" data-verdict="{health}">{health}</span>'


def latency_graph(ds: DatasetStatus, now: float) -> str:
    """p50 and p99 over the graphs' span as two polylines, with the scale's top written on it."""
    start, span = now - ds.window, ds.window
    top = max((p99 for _, _, p99 in ds.latency if p99 is not None), default=0.0) * 1.1 or 0.001

    x_scale, y_scale = GRAPH_W / span, (GRAPH_H - 4) / top
    half = span / 120  # a bucket's point at its middle

    def line(pick: int) -> str:
        # Whole pixels: the graph is 360 wide, a point a minute; and formatting is most of the cost.
        points = [
            (round((point[0] + half - start) * x_scale), round(GRAPH_H - point[pick] * y_scale))
            for point in ds.latency
            if point[pick] is not None
        ]
        name = _PICKS[pick]
        if len(points) == 1:  # a lone minute (a young stack) draws no line: a dot shows it
            return f'<circle class="{name}" cx="{points[0][0]}" cy="{points[0][1]}" r="2"/>'
        path = " ".join([f"{x},{y}" for x, y in points])
        return f'<polyline class="{name}" fill="none" stroke-width="1.5" points="{path}"/>'

    title = f"end-to-end latency of {ds.name}, last {_span(ds)}: p50 (blue) and p99 (red)"
    return (
        f'<svg class="latency" width="{GRAPH_W}" height="{GRAPH_H}" viewBox="0 0 {GRAPH_W} {GRAPH_H}" role="img">'
        f"<title>{_e(title)}</title>"
        f"{line(2)}{line(1)}"
        f'<text x="4" y="12" font-size="10" fill="#57606a">{_e(_ms(top))}</text>'
        f'<text x="4" y="{GRAPH_H - 3}" font-size="10" fill="#57606a">-{_span(ds)}</text>'
        f'<text x="{GRAPH_W - 28}" y="{GRAPH_H - 3}" font-size="10" fill="#57606a">now</text>'
        "</svg>"
    )


def subscription_bar(ds: DatasetStatus, now: float) -> str:
    """The graphs' span as a bar: green where the listener was subscribed, grey where it was blind."""
    start, span = now - ds.window, ds.window
    rects = []
    for a, b, _ in ds.intervals:
        x0 = max(0.0, (a - start) / span * GRAPH_W)
        x1 = min(float(GRAPH_W), (b - start) / span * GRAPH_W)
        if x1 > x0:
            rects.append(f'<rect x="{x0:.1f}" y="0" width="{max(x1 - x0, 1):.1f}" height="{BAR_H}" fill="#2da44e"/>')
    return (
        f'<svg class="subscription" width="{GRAPH_W}" height="{BAR_H}" viewBox="0 0 {GRAPH_W} {BAR_H}" role="img">'
        f"<title>{_e(f'subscription of {ds.name}, last {_span(ds)}: green while subscribed')}</title>"
        + "".join(rects)
        + "</svg>"
    )


def _events(ds: DatasetStatus) -> str:
    rows = "".join(
        f'<tr class="event"><td class="n">{e.seqno}</td><td>{_t(e.sent_at)}</td>'
        f'<td class="{_WORD[e.state]}">{_WORD[e.state]}</td><td class="n">{_ms(e.latency)}</td>'
        f'<td class="n">{e.receive_count}</td><td>{_e(e.post_error) if e.post_error else ""}</td></tr>'
        for e in ds.recent
    )
    head = "<tr><th>seqno</th><th>sent (UTC)</th><th>state</th><th>latency</th><th>copies</th><th>note</th></tr>"
    return f'<table class="events">{head}{rows}</table>' if rows else '<p class="muted">no events yet</p>'


def _failures(ds: DatasetStatus) -> str:
    if not ds.failures:
        return '<p class="muted">no failures kept</p>'
    rows = "".join(
        f'<tr class="failure" data-kind="{_WORD[f.kind]}"><td class="{_WORD[f.kind]}">{_WORD[f.kind]}</td>'
        f'<td class="n">{f.seqno}</td><td>{_t(f.sent_at, True)}</td>'
        f"<td>{_WORD[f.state or 'pruned']}</td><td><code>{_e(f.detail) if f.detail else ''}</code></td></tr>"
        for f in ds.failures
    )
    head = "<tr><th>failure</th><th>seqno</th><th>sent (UTC)</th><th>state now</th><th>detail</th></tr>"
    return f'<table class="failures">{head}{rows}</table>'


def _counters(ds: DatasetStatus) -> str:
    if not ds.counters:
        return ""
    cells = "".join(
        f"<tr><td>{_e(name.removeprefix('probe_'))}</td><td class='n'>{value:.0f}</td></tr>"
        for name, value in ds.counters.items()
    )
    return f'<table class="counters"><tr><th colspan="2">since the stack started</th></tr>{cells}</table>'


def _share(ds: DatasetStatus) -> str:
    share = ds.loss_share
    return "-" if share is None else f"{share:.2%} ({ds.lost} of {ds.accepted})"


def _section(ds: DatasetStatus, now: float) -> str:
    anchor = "ds-" + hashlib.sha256(ds.name.encode()).hexdigest()[:12]
    state = " open" if ds.verdict.health is not Health.HEALTHY else ""
    return (
        f'<details id="{anchor}" class="dataset" data-dataset="{_e(ds.name)}"{state}>'
        f"<summary><h2>{_e(ds.name)}</h2> {_verdict(ds)} <span class='muted'>{_e(ds.verdict.text)}</span></summary>"
        '<div class="graphs"><div>'
        f"<p>latency, last {_span(ds)} (<span class='p50'>p50</span> / <span class='p99'>p99</span>); "
        f"loss in the last hour {_e(_share(ds))}</p>{latency_graph(ds, now)}"
        f"<p>subscribed, last {_span(ds)}</p>{subscription_bar(ds, now)}</div>"
        f"<div>{_counters(ds)}</div></div>"
        f"<h3>last events</h3>{_events(ds)}"
        f"<h3>failures kept (the last {FAILURES_KEPT})</h3>{_failures(ds)}"
        "</details>"
    )


def _span(ds: DatasetStatus) -> str:
    return f"{ds.window / 60:.0f} min"


def _summary_row(ds: DatasetStatus, now: float) -> str:
    anchor = "ds-" + hashlib.sha256(ds.name.encode()).hexdigest()[:12]
    p99 = recent_p99(ds.latency, now)
    return (
        f'<tr class="dataset-row" data-dataset="{_e(ds.name)}"><td><a href="#{anchor}">{_e(ds.name)}</a></td>'
        f"<td>{_verdict(ds)}</td><td>{_e(ds.verdict.text)}</td>"
        f'<td class="n">{_e(_share(ds))}</td><td class="n">{_ms(p99)}</td></tr>'
    )


def render(snap: Snapshot, refresh: int = REFRESH_SECONDS) -> bytes:
    """The whole page, as UTF-8."""
    counts: dict[str, int] = {}
    for ds in snap.datasets:
        counts[ds.verdict.health] = counts.get(ds.verdict.health, 0) + 1
    tally = ", ".join(f"{n} {h}" for h in Health if (n := counts.get(h, 0))) or "no datasets read"
    problem = f'<p class="problem">{_e(snap.problem)}</p>' if snap.problem else ""
    head = "<tr><th>dataset</th><th>verdict</th><th>reason</th><th>loss, last hour</th><th>p99, last 15 min</th></tr>"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="refresh" content="{int(refresh)}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>dataplatform-probe: {_e(tally)}</title><style>{STYLE}</style></head><body>",
        "<h1>dataplatform-probe</h1>",
        f'<p class="meta">{_e(tally)} &middot; app_id <code>{_e(snap.app_id)}</code> &middot; '
        f"{_t(snap.at, True)} UTC &middot; refreshes every {int(refresh)} s &middot; "
        '<a href="metrics">metrics</a> &middot; <a href="readyz">readyz</a></p>',
        problem,
        f'<table class="summary">{head}{"".join(_summary_row(ds, snap.at) for ds in snap.datasets)}</table>',
        *(_section(ds, snap.at) for ds in snap.datasets),
        "</body></html>",
    ]
    return "\n".join(parts).encode()
