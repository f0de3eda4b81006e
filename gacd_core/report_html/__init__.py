"""Render a ``report.json`` dictionary as one self-contained HTML page.

The page needs no network, no JavaScript and no third-party library: the CSS is inline and the charts
are inline SVG. Every string taken from the report is HTML-escaped, and every value may be missing or
``null``: it is shown as an em dash, or its chart is left out. Torch-free (the standard library and
the catalog), so a report can be rendered anywhere.

By concern: :mod:`~gacd_core.report_html.fmt` reads and formats values, :mod:`~gacd_core.report_html.charts`
is the inline-SVG chart kit, :mod:`~gacd_core.report_html.page` lays out the page, and ``report.css`` is
its stylesheet (package data).
"""

from gacd_core.report_html.page import render_html

__all__ = ["render_html"]
