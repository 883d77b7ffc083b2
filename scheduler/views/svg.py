"""The report's summary charts as inline SVG, drawn here in Python.

Why not a chart library: the page is opened from disk, offline, often mailed around; the smallest
capable libraries (uPlot ~50 kB, Chart.js ~200 kB) would be vendored, shipped in every report and
run before the first screen, for four small charts whose figures are already known when the page
is written. Drawn server-side, the charts are ~5 kB of markup, cost the browser no script time,
print, and show without JavaScript. Text is escaped; links are fragments of this page only.
"""

from __future__ import annotations

from html import escape
from urllib.parse import quote

from reelbatch.scheduler.views.charts import Summary

W, H = 270, 140                   # every chart's box: four side by side on a 1280 px screen
LEFT, RIGHT, TOP, BOTTOM = 48, 10, 12, 24
LABEL, ROWS = 8, 5                # bar charts of labelled rows: the labels' x, at most ROWS rows
PLOT_W, PLOT_H = W - LEFT - RIGHT, H - TOP - BOTTOM


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _text(x: float, y: float, text: str, cls: str = "", anchor: str = "start") -> str:
    return (f'<text x="{_n(x)}" y="{_n(y)}" class="{cls}" text-anchor="{anchor}">'
            f"{escape(text)}</text>")


def _frame(name: str, title: str, body: str, attrs: str = "") -> str:
    return (f'<figure class="chart" data-chart="{name}"{attrs}><figcaption>{escape(title)}</figcaption>'
            f'<svg viewBox="0 0 {W} {H}" width="{W}" height="{H}" role="img" aria-label="{escape(title)}">'
            f'<line x1="{LEFT}" y1="{TOP + PLOT_H}" x2="{W - RIGHT}" y2="{TOP + PLOT_H}" class="axis"/>'
            f"{body}</svg></figure>")


def _hours(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _amount(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else _n(value)


def _y_labels(top: float, unit: str) -> str:
    return (_text(LEFT - 4, TOP + 4, f"{unit}{_amount(top)}", "tick", "end")
            + _text(LEFT - 4, TOP + PLOT_H, f"{unit}0", "tick", "end"))


def spend_chart(s: Summary) -> str:
    """Cumulative cost, charged and charged + estimated, against the batch's ceiling."""
    steps = s.spend_steps
    span = max([1.0] + [t for t, _, _ in steps])
    top = max([0.01, s.spend.total_usd] + [c + e for _, c, e in steps] + [s.max_cost_usd or 0.0])
    x = lambda t: LEFT + PLOT_W * t / span          # noqa: E731
    y = lambda usd: TOP + PLOT_H * (1 - usd / top)   # noqa: E731
    total = " ".join(f"{_n(x(t))},{_n(y(c + e))}" for t, c, e in steps)
    charged = " ".join(f"{_n(x(t))},{_n(y(c))}" for t, c, _ in steps)
    body = (f'<polyline points="{_n(LEFT)},{_n(y(0))} {total}" class="line estimated"/>'
            f'<polyline points="{_n(LEFT)},{_n(y(0))} {charged}" class="line charged"/>')
    if s.max_cost_usd:
        body += (f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{_n(y(s.max_cost_usd))}" y2="{_n(y(s.max_cost_usd))}"'
                 f' class="limit"/>' + _text(W - RIGHT, y(s.max_cost_usd) - 3, "max_cost_usd", "tick", "end"))
    body += _y_labels(top, "$") + _text(W - RIGHT, H - 6, _hours(span), "tick", "end")
    title = (f"spend {s.spend.label()}" + (f" of ${s.max_cost_usd:,.2f}" if s.max_cost_usd else ""))
    attrs = (f' data-charged="{s.spend.charged_usd:.4f}" data-estimated="{s.spend.estimated_usd:.4f}"')
    return _frame("spend", title, body, attrs)


def throughput_chart(s: Summary) -> str:
    """Items finished per hour, bar by bar, against the bound the batch's concurrency sets."""
    per_hour = [n * 3600 / s.bucket_s for n in s.done_per_bucket]
    top = max([1.0, s.bound_per_hour or 0.0] + per_hour)
    width = PLOT_W / max(1, len(per_hour))
    body = "".join(
        f'<rect x="{_n(LEFT + i * width + 1)}" y="{_n(TOP + PLOT_H * (1 - v / top))}" '
        f'width="{_n(max(1.0, width - 2))}" height="{_n(PLOT_H * v / top)}" class="bar"/>'
        for i, v in enumerate(per_hour))
    if s.bound_per_hour:
        y = TOP + PLOT_H * (1 - s.bound_per_hour / top)
        body += (f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{_n(y)}" y2="{_n(y)}" class="limit"/>'
                 + _text(W - RIGHT, y - 3, f"bound {s.bound_per_hour:,.0f}/h", "tick", "end"))
    body += _y_labels(top, "") + _text(W - RIGHT, H - 6, f"bars of {_hours(s.bucket_s)}", "tick", "end")
    title = f"items done per hour · {s.done} of {s.total} done"
    return _frame("throughput", title, body, f' data-done="{s.done}" data-total="{s.total}"')


def timing_chart(s: Summary) -> str:
    """Generation time per model and duration: a p10-p90 bar, the median marked, the worst a dot."""
    rows = s.timings[:ROWS]
    top = max([1.0] + [t.worst for t in rows])
    step = PLOT_H / max(1, len(rows))
    x = lambda v: LABEL + (W - RIGHT - LABEL) * v / top   # noqa: E731
    body = ""
    for i, t in enumerate(rows):
        mid = TOP + step * (i + .5) + 5
        body += (_text(LABEL, mid - 10, f"{t.label} ({t.count}): median {t.p50:.0f} s", "tick")
                 + f'<rect x="{_n(x(t.p10))}" y="{_n(mid - 6)}" width="{_n(max(1.0, x(t.p90) - x(t.p10)))}"'
                 f' height="12" class="bar"/>'
                 + f'<line x1="{_n(x(t.p50))}" x2="{_n(x(t.p50))}" y1="{_n(mid - 8)}" y2="{_n(mid + 8)}"'
                 f' class="median"/><circle cx="{_n(x(t.worst))}" cy="{_n(mid)}" r="2.5" class="worst"/>')
    if not rows:
        body += _text(W / 2, H / 2, "no generation finished yet", "tick", "middle")
    body += _text(W - RIGHT, H - 6, f"{top:.0f} s", "tick", "end") + _text(LABEL, H - 6, "0 s", "tick")
    return _frame("timing", "generation time (p10-p90, median)", body)


def failures_chart(s: Summary) -> str:
    """Failures by kind, each bar a link to the cards of that kind."""
    rows = list(s.failure_kinds.items())
    top = max([1] + [n for _, n in rows])
    step = PLOT_H / max(1, min(ROWS, len(rows)))
    body = ""
    for i, (kind, count) in enumerate(rows):   # every kind links; past ROWS they are only listed
        mid = TOP + step * (i + .5) + 5
        body += (f'<a href="#failed&amp;kind={escape(quote(kind))}" data-kind="{escape(kind)}" data-count="{count}">'
                 + (_text(LABEL, mid - 9, f"{kind} · {count}", "tick")
                    + f'<rect x="{LABEL}" y="{_n(mid - 5)}" width="{_n(max(2.0, (W - RIGHT - LABEL) * count / top))}"'
                    f' height="9" class="bar failed"/>' if i < ROWS else "") + "</a>")
    if not rows:
        body += _text(W / 2, H / 2, "no failures", "tick", "middle")
    return _frame("failures", f"failures by kind · {sum(s.failure_kinds.values())}", body)


def provider_table(s: Summary) -> str:
    if len(s.providers) < 2:
        return ""
    rows = "".join(
        f'<tr data-provider="{escape(p.provider)}"><td>{escape(p.provider)}</td><td>{p.items}</td>'
        f"<td>${p.cost_usd:,.2f}</td><td>{'-' if p.median_s is None else f'{p.median_s:.0f} s'}</td></tr>"
        for p in s.providers)
    return ('<table class="providers"><thead><tr><th>provider</th><th>items</th><th>cost</th>'
            f"<th>median generation</th></tr></thead><tbody>{rows}</tbody></table>")


def summary_svg(s: Summary) -> str:
    """The summary block: four charts, and the providers when the batch used several."""
    charts = spend_chart(s) + throughput_chart(s) + timing_chart(s) + failures_chart(s)
    return f'<section class="summary" aria-label="The batch">{charts}{provider_table(s)}</section>'
