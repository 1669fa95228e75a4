"""HTML reports of simulation runs: plots of prices, volumes, transformer power, voltages and
savings, with the KPI and bill tables, in one self-contained file a browser opens offline.

>>> from lemgrid.report import render_report
>>> render_report(result, "out/report.html")  # doctest: +SKIP
"""

from lemgrid.report.html import Section, design_sections, render_comparison, render_report

__all__ = ["Section", "design_sections", "render_comparison", "render_report"]
