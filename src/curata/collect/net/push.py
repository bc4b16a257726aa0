"""`curata gateway push --to URL`: deliver the gateway's de-identified instances to the central platform.

STOW-RS in batches over HTTPS with a bearer token. Each part carries an RFC 9530 ``Content-Digest``
(sha256) the server checks before filing; the gateway re-hashes every blob before sending it, and
records an instance as delivered only when the server lists it as stored. A second run sends only
what is not recorded yet, so an interrupted push resumes where it stopped.

Clinical tables and VCFs filed at the gateway (`curata gateway watch`, `curata ingest`) go the same way
(:func:`push_clinical`): one ``curata-clinical/1`` batch per input (``collect.clinical.exchange``:
OMOP tables as Parquet, VCFs whole) to ``POST /clinical/batches``, each part with its Content-Digest,
recorded in ``gateway_push`` (``sop_instance_uid`` = ``clinical:<kind>``, ``blob_digest`` = the
input's sha256, which never leaves the gateway) only once the platform answers it filed or present.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import httpx
from sqlalchemy import func, select

from curata.catalog import Instance
from curata.collect.dicomweb import multipart as _multipart
from curata.collect.net.config import tls_verify
from curata.collect.net.models import GatewayPush
from curata.console import RunSummary
from curata.errors import ConfigError, CurataError, NetworkError, safe_reason
from curata.workspace import Workspace

if TYPE_CHECKING:
    from curata.collect.clinical import FiledInput
    from curata.collect.dicomweb.multipart import Part


def _uids(seq: Any) -> list[tuple[str, int | None]]:
    out = []
    for item in (seq or {}).get("Value") or []:
        uid = ((item.get("00081155") or {}).get("Value") or [""])[0]
        reason = ((item.get("00081197") or {}).get("Value") or [None])[0]
        out.append((str(uid), reason))
    return out


CLINICAL = "clinical:"  # GatewayPush.sop_instance_uid of a clinical or genomic input (clinical:csv...)


def _target(url: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"--to {url!r} is not an http(s) URL", hint="e.g. --to https://platform.example:8042"
        )
    return url.rstrip("/")


def _post(
    http: httpx.Client,
    target: str,
    path: str,
    parts: list[Part],
    *,
    media: str,
    accept: str,
    token: str | None,
) -> httpx.Response:
    """POST one batch of parts; unreachable, a refused token or an unexpected status raise NetworkError
    (the token itself is never part of a message)."""
    body, content_type = _multipart.encode(parts, media)
    headers = {"Content-Type": content_type, "Accept": accept}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    try:
        r = http.post(f"{target}{path}", content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise NetworkError(
            f"cannot reach {target}: {_transport_reason(exc)}", hint="is `curata server` running there?"
        ) from exc
    if r.status_code == 401:
        raise NetworkError(f"{target} refused the token", hint="pass --token or set CURATA_PUSH_TOKEN")
    if r.status_code == 404:
        raise NetworkError(f"{target} has no {path}", hint="is it a Curata platform of this version?")
    if r.status_code not in (200, 202, 409):
        # the peer's text is not repeated: a platform, proxy or PACS may quote the data it choked on
        kind = r.headers.get("content-type", "no content type").split(";")[0].strip()
        raise NetworkError(
            f"{target} answered {r.status_code} {r.reason_phrase} ({len(r.content)} bytes of {kind}, not shown)",
            hint="the platform's own log says why",
        )
    return r


def _transport_reason(exc: httpx.HTTPError) -> str:
    """Why a request did not get an answer, fit for a log: the socket or TLS error's own words where
    there is one (connection refused, certificate verify failed), else the error's type only."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError):
            return safe_reason(seen)
        seen = seen.__cause__ or seen.__context__
    return type(exc).__name__


def _summary(ws: Workspace, target: str, *, clinical: bool) -> RunSummary:
    """A run's summary, with what earlier runs delivered to ``target`` (instances, or clinical inputs)."""
    mark = GatewayPush.sop_instance_uid.like(f"{CLINICAL}%")
    with ws.catalog.session() as s:
        already = s.scalar(
            select(func.count(GatewayPush.id)).where(
                GatewayPush.target == target, mark if clinical else ~mark
            )
        )
    summary = RunSummary("gateway push (clinical, genomic)" if clinical else "gateway push")
    summary.counts.update({"pushed": 0, "already": int(already or 0), "failed": 0})
    return summary


def pending(ws: Workspace, target: str) -> list[tuple[str, str]]:
    """(blob digest, SOP Instance UID) of every instance not yet delivered to ``target``."""
    done = select(GatewayPush.blob_digest).where(GatewayPush.target == target)
    stmt = select(Instance.blob_digest, Instance.sop_instance_uid).where(Instance.blob_digest.not_in(done))
    with ws.catalog.session() as s:
        return [(d, u) for d, u in s.execute(stmt.order_by(Instance.id))]


def push_instances(
    ws: Workspace,
    url: str,
    *,
    token: str | None = None,
    batch: int = 32,
    verify: bool | str = True,
    progress: Callable[[int, int], None] | None = None,
    client: httpx.Client | None = None,
) -> RunSummary:
    target = _target(url)
    todo = pending(ws, target)
    summary = _summary(ws, target, clinical=False)
    errors: list[str] = []
    http = client or httpx.Client(timeout=300, verify=tls_verify(verify))
    try:
        for start in range(0, len(todo), max(1, batch)):
            chunk = todo[start : start + batch]
            parts, sent = [], []
            for digest, uid in chunk:
                data = ws.store.get_bytes(digest)
                if hashlib.sha256(data).hexdigest() != digest:
                    errors.append(f"{uid}: stored bytes do not match their sha256; run `curata store verify`")
                    summary.add("failed")
                    continue
                b64 = base64.b64encode(bytes.fromhex(digest)).decode()
                parts.append(({"Content-Digest": f"sha-256=:{b64}:"}, data))
                sent.append((digest, uid))
            if not parts:
                continue
            r = _post(http, target, "/dicomweb/studies", parts, media="application/dicom",
                      accept="application/dicom+json", token=token)  # fmt: skip
            answer = r.json()
            stored = {uid for uid, _ in _uids(answer.get("00081199"))}
            failed = dict(_uids(answer.get("00081198")))
            with ws.catalog.session() as s:
                for digest, uid in sent:
                    if uid in stored:
                        s.add(GatewayPush(target=target, blob_digest=digest, sop_instance_uid=uid))
                        summary.add("pushed")
                    else:
                        code = failed.get(uid)
                        errors.append(
                            f"{uid}: refused by the platform" + (f" (0x{code:04X})" if code else "")
                        )
                        summary.add("failed")
            if progress:
                progress(min(start + batch, len(todo)), len(todo))
    finally:
        if client is None:
            http.close()
    if errors:
        summary.extra["errors"] = errors[:20]
    return summary


def pending_clinical(ws: Workspace, target: str) -> list[FiledInput]:
    """The clinical and genomic inputs not yet delivered to ``target``."""
    from curata.collect.clinical import filed_inputs

    with ws.catalog.session() as s:
        done = set(
            s.scalars(
                select(GatewayPush.blob_digest).where(
                    GatewayPush.target == target, GatewayPush.sop_instance_uid.like(f"{CLINICAL}%")
                )
            )
        )
    return [f for f in filed_inputs(ws) if f.input_digest not in done]


def push_clinical(
    ws: Workspace,
    url: str,
    *,
    token: str | None = None,
    batch: int = 32,
    max_request_bytes: int = 64 << 20,
    verify: bool | str = True,
    progress: Callable[[int, int], None] | None = None,
    client: httpx.Client | None = None,
) -> RunSummary:
    """Deliver every clinical and genomic input not delivered yet: ``batch`` inputs (or about
    ``max_request_bytes``) per request; each recorded only once the platform answers it filed or present.
    One the platform quarantines (it looks identified or malformed) stays pending and is reported."""
    from curata.collect.clinical import MANIFEST_TYPE, batch_name, deidentified_batch

    target = _target(url)
    todo = pending_clinical(ws, target)
    summary = _summary(ws, target, clinical=True)
    errors: list[str] = []
    key = ws.site_key()
    http = client or httpx.Client(timeout=300, verify=tls_verify(verify))
    done = 0

    def send(group: list[tuple[FiledInput, list[Part]]]) -> None:
        parts = [p for _item, item_parts in group for p in item_parts]
        r = _post(http, target, "/clinical/batches", parts, media=MANIFEST_TYPE, accept="application/json",
                  token=token)  # fmt: skip
        answers = {str(a.get("batch")): a for a in r.json().get("batches", [])}
        with ws.catalog.session() as s:
            for item, _parts in group:
                answer = answers.get(batch_name(key, item.input_digest)) or {}
                status = str(answer.get("status", "not answered"))
                if status in ("filed", "present"):
                    s.add(
                        GatewayPush(
                            target=target,
                            blob_digest=item.input_digest,
                            sop_instance_uid=f"{CLINICAL}{item.kind}",
                        )
                    )
                    summary.add("pushed")
                    continue
                summary.add("failed")
                why = str(answer.get("reason") or "")[:300]
                errors.append(
                    f"{item.kind} input sha256:{item.input_digest[:12]}: {status} by the platform"
                    + (f": {why}" if why else "")
                )

    try:
        group: list[tuple[FiledInput, list[Part]]] = []
        size = 0
        for item in todo:
            try:
                parts = deidentified_batch(ws, item).parts()
            except CurataError as exc:  # this input only (a damaged blob): the others go on
                errors.append(f"{item.kind} input sha256:{item.input_digest[:12]}: {exc.message}")
                summary.add("failed")
                continue
            group.append((item, parts))
            size += sum(len(b) for _h, b in parts)
            if len(group) >= max(1, batch) or size >= max_request_bytes:
                send(group)
                done += len(group)
                group, size = [], 0
                if progress:
                    progress(done, len(todo))
        if group:
            send(group)
            if progress:
                progress(len(todo), len(todo))
    finally:
        if client is None:
            http.close()
    if errors:
        summary.extra["errors"] = errors[:20]
    return summary
