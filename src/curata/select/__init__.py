"""Selection: QC metrics per series, exclusion rules with reasons, cohort queries, the QC report.

Public API (the CLI, the server and the demo use these)::

    run_qc(ws, where=None, workers=None) -> RunSummary     # measure (cached by content), then decide
    write_report(ws, out_html) -> Path                      # self-contained HTML report
    explain(ws, uid) -> dict                                # metrics, rules and verdict of one series
    create_cohort(ws, name, where), list_cohorts(ws), show_cohort(ws, name)
    override(ws, uid, passed=, author=, reason=)             # a curator's decision, with its author
    parse(query), series_select(query)                      # the cohort query language
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.select.query import parse, series_select
    from curata.select.report import write_report
    from curata.select.service import (
        create_cohort,
        explain,
        list_cohorts,
        override,
        run_qc,
        set_rules,
        show_cohort,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "parse": "query",
        "series_select": "query",
        "write_report": "report",
        "create_cohort": "service",
        "explain": "service",
        "list_cohorts": "service",
        "override": "service",
        "run_qc": "service",
        "set_rules": "service",
        "show_cohort": "service",
    },
)

__all__ = [
    "create_cohort",
    "explain",
    "list_cohorts",
    "override",
    "parse",
    "run_qc",
    "series_select",
    "set_rules",
    "show_cohort",
    "write_report",
]
