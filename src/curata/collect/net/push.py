"""`curata gateway push --to URL`: deliver the gateway's de-identified instances to the central platform.

STOW-RS in batches over HTTPS with a bearer token. Each part carries an RFC 9530 ``Content-Digest``
(sha256) the server checks before filing; the gateway re-hashes every blob before sending it, and
records an instance as delivered only when the server lists it as stored. A second run sends only
what is not recorded yet, so an interrupted push resumes where it stopped.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import select

from curata.catalog import Instance
from curata.collect.dicomweb import multipart as _multipart
from curata.collect.net.config import tls_verify
from curata.collect.net.models import GatewayPush
from curata.console import RunSummary
from curata.errors import ConfigError, NetworkError
from curata.workspace import Workspace


def _uids(seq: Any) -> list[tuple[str, int | None]]:
    out = []
    for item in (seq or {}).get("Value") or []:
        uid = ((item.get("00081155") or {}).get("Value") or [""])[0]
        reason = ((item.get("00081197") or {}).get("Value") or [None])[0]
        out.append((str(uid), reason))
    return out


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
    if not url.startswith(("http://", "https://")):
        raise ConfigError(
            f"--to {url!r} is not an http(s) URL", hint="e.g. --to https://platform.example:8042"
        )
    target = url.rstrip("/")
    todo = pending(ws, target)
    summary = RunSummary("gateway push")
    with ws.catalog.session() as s:
        already = len(list(s.scalars(select(GatewayPush.id).where(GatewayPush.target == target))))
    summary.counts.update({"pushed": 0, "already": already, "failed": 0})
    errors: list[str] = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
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
            body, content_type = _multipart.encode(parts)
            try:
                r = http.post(
                    f"{target}/dicomweb/studies",
                    content=body,
                    headers={**headers, "Content-Type": content_type, "Accept": "application/dicom+json"},
                )
            except httpx.HTTPError as exc:
                raise NetworkError(
                    f"cannot reach {target}: {exc}", hint="is `curata server` running there?"
                ) from exc
            if r.status_code == 401:
                raise NetworkError(
                    f"{target} refused the token", hint="pass --token or set CURATA_PUSH_TOKEN"
                )
            if r.status_code not in (200, 202, 409):
                raise NetworkError(f"{target} answered {r.status_code}: {r.text[:300]}")
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
