"""Selection: QC metrics per series, exclusion rules with reasons, cohort queries, the QC report.

Public API (the CLI, the server and the demo use these)::

    run_qc(ws, where=None, workers=None) -> RunSummary     # measure (cached by content), then decide
    write_report(ws, out_html) -> Path                      # self-contained HTML report
    explain(ws, uid) -> Explanation                         # metrics, rules and verdict of one series
    create_cohort(ws, name, where), list_cohorts(ws), show_cohort(ws, name)
    cohort_id(session, name), cohort_series_ids(session, name)   # cohort membership, for other stages
    qc_verdicts(session, series_ids) -> {series_id: passed}
    Cohort, CohortSeries, QcMeasurement, QcVerdict          # its tables, for read-only joins elsewhere
    override(ws, uid, passed=, author=, reason=)             # a curator's decision, with its author
    parse(query), series_select(query)                      # the cohort query language
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.select.models import Cohort, CohortSeries, QcMeasurement, QcVerdict
    from curata.select.query import parse, series_select
    from curata.select.report import write_report
    from curata.select.service import (
        QC_NOT_APPLICABLE,
        CohortDetail,
        CohortInfo,
        CohortMember,
        Explanation,
        MetricValue,
        OverrideResult,
        QcCounts,
        RuleCheck,
        VerdictInfo,
        cohort_id,
        cohort_series_ids,
        create_cohort,
        explain,
        list_cohorts,
        override,
        qc_verdicts,
        run_qc,
        set_rules,
        show_cohort,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "Cohort": "models",
        "CohortSeries": "models",
        "QcMeasurement": "models",
        "QcVerdict": "models",
        "QC_NOT_APPLICABLE": "service",
        "parse": "query",
        "series_select": "query",
        "write_report": "report",
        "CohortDetail": "service",
        "CohortInfo": "service",
        "CohortMember": "service",
        "Explanation": "service",
        "MetricValue": "service",
        "OverrideResult": "service",
        "QcCounts": "service",
        "RuleCheck": "service",
        "VerdictInfo": "service",
        "cohort_id": "service",
        "cohort_series_ids": "service",
        "create_cohort": "service",
        "explain": "service",
        "list_cohorts": "service",
        "qc_verdicts": "service",
        "plant_slide_defect": "slide_phantoms",
        "override": "service",
        "run_qc": "service",
        "set_rules": "service",
        "show_cohort": "service",
    },
)

__all__ = [
    "QC_NOT_APPLICABLE",
    "Cohort",
    "CohortDetail",
    "CohortInfo",
    "CohortMember",
    "CohortSeries",
    "Explanation",
    "MetricValue",
    "OverrideResult",
    "QcCounts",
    "QcMeasurement",
    "QcVerdict",
    "RuleCheck",
    "VerdictInfo",
    "cohort_id",
    "cohort_series_ids",
    "create_cohort",
    "explain",
    "list_cohorts",
    "override",
    "parse",
    "plant_slide_defect",
    "qc_verdicts",
    "run_qc",
    "series_select",
    "set_rules",
    "show_cohort",
    "write_report",
]
