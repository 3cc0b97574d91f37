"""Charts drawn on the server as SVG (pygal), shown as images: no script runs in the page."""

from __future__ import annotations

import base64
from collections.abc import Sequence

import pygal
from pygal.style import Style

from core.services.reporting.dashboard import DayFigures

_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1d2430",
    foreground_strong="#1d2430",
    foreground_subtle="#5b6575",
    colors=("#0b5cad", "#1b7a3a"),
    font_family="system-ui, sans-serif",
    label_font_size=12,
    major_label_font_size=12,
    legend_font_size=13,
    title_font_size=15,
)


def daily_revenue_and_success_svg(days: Sequence[DayFigures]) -> str:
    """Daily revenue (KES, left axis) and success rate (%, right axis) as an SVG document."""
    chart = pygal.Line(
        js=[],  # no external script; as an <img> the SVG runs none anyway
        disable_xml_declaration=True,
        style=_STYLE,
        width=900,
        height=360,
        secondary_range=(0, 100),
        show_minor_x_labels=False,
        x_label_rotation=0,
        truncate_label=-1,
        legend_at_bottom_columns=2,
        legend_at_bottom=True,
        dots_size=2.5,
        allow_interruptions=True,  # days without finished attempts have no success rate
        value_formatter=lambda v: f"{v:,.0f}",
        title="Daily revenue and success rate (Nairobi days)",
    )
    labels = [day.day.strftime("%d %b") for day in days]
    chart.x_labels = labels
    chart.x_labels_major = labels[::-7]  # every 7th day, counting back from today
    chart.add("Revenue (KES)", [day.revenue_kes for day in days])
    chart.add(
        "Success rate (%)",
        [None if day.success_rate is None else round(day.success_rate * 100, 1) for day in days],
        secondary=True,
    )
    return str(chart.render(is_unicode=True))


def as_data_uri(svg: str) -> str:
    """An ``<img src>`` for the SVG (img-src 'self' data: in the CSP; one request, one audit entry)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")
