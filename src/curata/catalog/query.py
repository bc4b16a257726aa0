"""The catalog's one join: Series -> Study -> Patient -> Site, written once for every stage.

    stmt = series_rows(Series.series_uid, Patient.pseudonym, Site.name).where(Series.modality == "CT")

Every stage that lists series with their study, patient or site starts from :func:`series_rows`, so a
change to how those tables link (a new key, a soft delete) is made here, once.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, select

from curata.catalog.models import Patient, Series, Site, Study

SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]  # any row shape


def join_series_to_site(stmt: SelectT, *, site: bool = True) -> SelectT:
    """``stmt`` joined from Series through Study and Patient (and Site unless ``site=False``)."""
    stmt = stmt.join(Study, Series.study_id == Study.id).join(Patient, Study.patient_id == Patient.id)
    return stmt.join(Site, Patient.site_id == Site.id) if site else stmt


def series_rows(*columns: Any, site: bool = True) -> Select[Any]:
    """``SELECT columns FROM series JOIN study JOIN patient [JOIN site]``, ready for ``where``/``order_by``."""
    return join_series_to_site(select(*columns).select_from(Series), site=site)
