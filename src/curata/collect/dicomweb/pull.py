"""`curata gateway pull --dicomweb URL`: QIDO-RS to find, WADO-RS to fetch what is missing.

Searches go through dicomweb-client; instances are fetched as the PACS stored them (raw Part-10
bytes from ``multipart/related; type="application/dicom"``) so nothing is re-encoded before
de-identification. Resumable like the DIMSE pull: every source UID is checked against the gateway's
keyed record first.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from curata.collect.dicomweb import multipart as _multipart
from curata.collect.net.config import tls_verify
from curata.collect.net.pull import SERIES_KEYS, SeriesPlan
from curata.collect.net.receive import OK_STATUSES, Receiver
from curata.console import RunSummary
from curata.errors import ConfigError, NetworkError
from curata.workspace import Workspace

# A PACS's error quotes what it holds (the patient's name and ID in its message, the study's original
# UIDs in the URL that failed, the query's match keys): we say the status and the request's kind only.
_PEER_HINT = "the PACS's own log has its message (not shown: it can quote the patient)"
_UID = {"study": "0020000D", "series": "0020000E", "instance": "00080018"}


def _value(item: dict[str, Any], tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or []
    return str(values[0]) if values else ""


def _client(url: str, token: str | None) -> Any:
    from dicomweb_client.api import DICOMwebClient

    headers = {"Authorization": f"Bearer {token}"} if token else None
    return DICOMwebClient(url=url.rstrip("/"), headers=headers)


def plan_dicomweb(client: Any, matches: dict[str, str], receiver: Receiver) -> list[SeriesPlan]:
    study_keys = {k: v for k, v in matches.items() if k not in SERIES_KEYS}
    series_keys = {k: v for k, v in matches.items() if k in SERIES_KEYS}
    try:
        studies = [_value(s, _UID["study"]) for s in client.search_for_studies(search_filters=study_keys)]
        plans: list[SeriesPlan] = []
        for study in dict.fromkeys(s for s in studies if s):
            for se in client.search_for_series(study_instance_uid=study, search_filters=series_keys):
                if _value(se, _UID["series"]):
                    plans.append(SeriesPlan(study, _value(se, _UID["series"])))
        for plan in plans:
            found = client.search_for_instances(
                study_instance_uid=plan.study_uid, series_instance_uid=plan.series_uid
            )
            plan.instances = list(
                dict.fromkeys(_value(i, _UID["instance"]) for i in found if _value(i, _UID["instance"]))
            )
    except Exception as exc:  # requests' HTTPError and friends
        status = getattr(getattr(exc, "response", None), "status_code", None)
        answered = f"answered {status}" if status is not None else type(exc).__name__
        raise NetworkError(
            f"DICOMweb search failed at {client.base_url}: {answered}", hint=_PEER_HINT
        ) from exc
    for plan in plans:
        plan.missing = receiver.missing(plan.instances)
    return plans


def _fetch(http: httpx.Client, url: str) -> list[bytes]:
    accept = 'multipart/related; type="application/dicom"; transfer-syntax=*'
    r = http.get(url, headers={"Accept": accept})
    if r.status_code == 406:  # some servers refuse transfer-syntax=*
        r = http.get(url, headers={"Accept": 'multipart/related; type="application/dicom"'})
    if r.status_code != 200:
        what = "an instance" if "/instances/" in url else "a series"
        raise NetworkError(f"WADO-RS retrieve of {what} answered {r.status_code}", hint=_PEER_HINT)
    return [data for _headers, data in _multipart.decode(r.content, r.headers.get("content-type", ""))]


def pull_dicomweb(
    ws: Workspace,
    url: str,
    *,
    level: str = "study",
    matches: dict[str, str] | None = None,
    token: str | None = None,
    receiver: Receiver | None = None,
    progress: Callable[[int, int], None] | None = None,
    verify: bool | str = True,
) -> RunSummary:
    """Pull everything matching ``matches`` from the DICOMweb server at ``url`` into ``ws``."""
    if level not in ("study", "series"):
        raise ConfigError(f"--level {level!r} must be study or series")
    if receiver is None:
        own = Receiver(ws)
        try:
            return pull_dicomweb(
                ws,
                url,
                level=level,
                matches=matches,
                token=token,
                receiver=own,
                progress=progress,
                verify=verify,
            )
        finally:
            own.close()
    base = url.rstrip("/")
    plans = plan_dicomweb(_client(base, token), matches or {}, receiver)
    found = [uid for p in plans for uid in p.instances]
    missing = [uid for p in plans for uid in p.missing]
    summary = RunSummary("gateway pull (DICOMweb)")
    summary.counts.update(
        {"series": len(plans), "instances": len(found), "present": len(found) - len(missing)}
    )
    urls: list[str] = []
    for plan in plans:
        if not plan.missing:
            continue
        series_url = f"{base}/studies/{plan.study_uid}/series/{plan.series_uid}"
        if len(plan.missing) == len(plan.instances):
            urls.append(series_url)
        else:
            urls.extend(f"{series_url}/instances/{sop}" for sop in plan.missing)
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(headers=headers, timeout=120, verify=tls_verify(verify)) as http:
        for n, target in enumerate(urls, 1):
            try:
                for raw in _fetch(http, target):
                    outcome = receiver.receive(
                        raw, source="wado-rs", source_uid=_sop_uid(raw), peer="dicomweb"
                    )
                    if outcome.status not in OK_STATUSES:
                        errors.append(f"refused: {outcome.reason}")
            except NetworkError as exc:
                errors.append(exc.message)
            except httpx.HTTPError as exc:
                errors.append(f"WADO-RS retrieve failed: {type(exc).__name__}")
            if progress:
                progress(n, len(urls))
    still = set(receiver.missing(missing))
    summary.counts["fetched"] = len(missing) - len(still)
    summary.counts["failed"] = len(still)
    summary.extra["requests"] = len(urls)
    if errors:
        summary.extra["errors"] = errors[:20]
    return summary


def _sop_uid(raw: bytes) -> str | None:
    import io

    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(raw), stop_before_pixels=True, specific_tags=["SOPInstanceUID"])
        return str(ds.SOPInstanceUID)
    except Exception:
        return None
