"""`curata gateway pull --from AE@host:port`: C-FIND what matches, then C-MOVE (or C-GET) what is missing.

Resumable by construction: before retrieving, every matching SOP Instance UID is checked against the
gateway's record of what it received (keyed hashes, see :mod:`curata.collect.net.receive`), so a
second run retrieves only what the first did not file. Retrieval is as coarse as allowed: a whole
study or series in one C-MOVE when nothing of it is here yet, single instances otherwise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydicom.dataset import Dataset
from pydicom.uid import UID
from pynetdicom import AE, build_role, evt
from pynetdicom.presentation import StoragePresentationContexts

from curata.collect.net.config import AllowRule, GatewayConfig, Peer
from curata.collect.net.receive import OK_STATUSES, Receiver
from curata.collect.net.scp import TRANSFER_SYNTAXES, GatewayServer, _failure
from curata.collect.reasons import safe_reason
from curata.console import RunSummary
from curata.errors import ConfigError, NetworkError
from curata.workspace import Workspace

log = logging.getLogger("curata.gateway")

# Study Root Query/Retrieve Information Model (PS3.4 C.6.2)
StudyRootQueryRetrieveInformationModelFind = UID("1.2.840.10008.5.1.4.1.2.2.1")
StudyRootQueryRetrieveInformationModelMove = UID("1.2.840.10008.5.1.4.1.2.2.2")
StudyRootQueryRetrieveInformationModelGet = UID("1.2.840.10008.5.1.4.1.2.2.3")

# Attributes matched at the series level of the Study Root model; every other key is study level.
SERIES_KEYS = frozenset(
    {
        "Modality",
        "SeriesInstanceUID",
        "SeriesNumber",
        "SeriesDescription",
        "BodyPartExamined",
        "ProtocolName",
        "SeriesDate",
        "SeriesTime",
    }
)


def parse_matches(items: list[str] | None) -> dict[str, str]:
    """``KEY=VALUE`` pairs (DICOM keywords, wildcards and ranges as in C-FIND) into a dict."""
    from pydicom.datadict import tag_for_keyword

    out: dict[str, str] = {}
    for item in items or []:
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq or tag_for_keyword(key) is None:
            raise ConfigError(
                f"--match {item!r} is not KEYWORD=VALUE with a DICOM keyword",
                hint="e.g. --match PatientID=12345 --match StudyDate=20240101-20240131 --match Modality=CT",
            )
        out[key] = value.strip()
    return out


PEER_COMMENT_HINT = "the peer's Error Comment is in its own log (not shown: it can quote the patient)"


@dataclass
class SeriesPlan:
    study_uid: str
    series_uid: str
    instances: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def _find(assoc: Any, query: Dataset) -> Iterator[Dataset]:
    for status, identifier in assoc.send_c_find(query, StudyRootQueryRetrieveInformationModelFind):
        if status is None or "Status" not in status:
            raise NetworkError("the peer stopped answering the C-FIND (timeout or aborted association)")
        code = int(status.Status)
        if code in (0xFF00, 0xFF01):
            if identifier is not None:
                yield identifier
        elif code != 0x0000:
            # the peer's Error Comment is its own free text: it can quote the patient it refers to
            raise NetworkError(f"C-FIND failed with status 0x{code:04X}", hint=PEER_COMMENT_HINT)


def _query(level: str, keys: dict[str, str], wanted: list[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for name in wanted:
        setattr(ds, name, "")
    for name, value in keys.items():
        setattr(ds, name, value)
    return ds


class DimsePuller:
    """Plans and runs a pull from one peer into ``receiver``'s workspace."""

    def __init__(self, ws: Workspace, peer: Peer, *, config: GatewayConfig, receiver: Receiver) -> None:
        self.ws = ws
        self.peer = peer
        self.config = config
        self.receiver = receiver
        self.ae = AE(ae_title=config.ae_title)
        self.ae.maximum_pdu_size = 0
        self.ae.network_timeout = 60
        self.ae.dimse_timeout = 600
        self.ae.acse_timeout = 30
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelFind)
        self.ae.add_requested_context(StudyRootQueryRetrieveInformationModelMove)

    def _associate(self, ae: AE | None = None, **kw: Any) -> Any:
        assoc = (ae or self.ae).associate(self.peer.host, self.peer.port, ae_title=self.peer.ae_title, **kw)
        if not assoc.is_established:
            raise NetworkError(
                f"cannot associate with {self.peer}",
                hint="check the peer's AE title, host and port, and that it knows our AE title "
                f"{self.config.ae_title}",
            )
        return assoc

    def plan(self, matches: dict[str, str]) -> list[SeriesPlan]:
        """C-FIND studies, their series and their instances; mark what is not here yet."""
        study_keys = {k: v for k, v in matches.items() if k not in SERIES_KEYS}
        series_keys = {k: v for k, v in matches.items() if k in SERIES_KEYS}
        plans: list[SeriesPlan] = []
        assoc = self._associate()
        try:
            studies = [
                str(ds.StudyInstanceUID)
                for ds in _find(assoc, _query("STUDY", study_keys, ["StudyInstanceUID"]))
                if ds.get("StudyInstanceUID")
            ]
            for study in dict.fromkeys(studies):
                series_q = _query("SERIES", {**series_keys, "StudyInstanceUID": study}, ["SeriesInstanceUID"])
                for sds in _find(assoc, series_q):
                    if sds.get("SeriesInstanceUID"):
                        plans.append(SeriesPlan(study, str(sds.SeriesInstanceUID)))
            for plan in plans:
                image_q = _query(
                    "IMAGE",
                    {"StudyInstanceUID": plan.study_uid, "SeriesInstanceUID": plan.series_uid},
                    ["SOPInstanceUID"],
                )
                plan.instances = list(
                    dict.fromkeys(
                        str(ds.SOPInstanceUID) for ds in _find(assoc, image_q) if ds.get("SOPInstanceUID")
                    )
                )
        finally:
            assoc.release()
        for plan in plans:
            plan.missing = self.receiver.missing(plan.instances)
        return plans

    @staticmethod
    def requests(plans: list[SeriesPlan], level: str) -> list[Dataset]:
        """The fewest retrieve identifiers that cover exactly what is missing."""
        out: list[Dataset] = []
        by_study: dict[str, list[SeriesPlan]] = {}
        for plan in plans:
            by_study.setdefault(plan.study_uid, []).append(plan)
        for study, group in by_study.items():
            if (
                level == "study"
                and all(len(p.missing) == len(p.instances) for p in group)
                and any(p.missing for p in group)
            ):
                out.append(_query("STUDY", {"StudyInstanceUID": study}, []))
                continue
            for plan in group:
                if not plan.missing:
                    continue
                if len(plan.missing) == len(plan.instances):
                    keys = {"StudyInstanceUID": study, "SeriesInstanceUID": plan.series_uid}
                    out.append(_query("SERIES", keys, []))
                    continue
                for sop in plan.missing:
                    keys = {
                        "StudyInstanceUID": study,
                        "SeriesInstanceUID": plan.series_uid,
                        "SOPInstanceUID": sop,
                    }
                    out.append(_query("IMAGE", keys, []))
        return out

    def move(self, identifiers: list[Dataset], on_done: Callable[[], None] | None = None) -> list[str]:
        """C-MOVE each identifier to our own AE title; returns the error messages."""
        errors: list[str] = []
        assoc = self._associate()
        try:
            for ident in identifiers:
                final = None
                for status, _ in assoc.send_c_move(
                    ident, self.config.ae_title, StudyRootQueryRetrieveInformationModelMove
                ):
                    if status is not None and "Status" in status:
                        final = status
                code = int(final.Status) if final is not None else None
                if code not in (0x0000, 0xB000):  # its Error Comment left out, as the C-FIND's
                    text = f"C-MOVE {ident.QueryRetrieveLevel} failed: " + (
                        f"status 0x{code:04X}" if code is not None else "no answer"
                    )
                    errors.append(text)
                if on_done:
                    on_done()
        finally:
            assoc.release()
        return errors

    def get(self, identifiers: list[Dataset], on_done: Callable[[], None] | None = None) -> list[str]:
        """C-GET each identifier on one association; instances arrive on it and go to the receiver."""
        ae = AE(ae_title=self.config.ae_title)
        ae.maximum_pdu_size = 0
        ae.dimse_timeout = 600
        ae.add_requested_context(StudyRootQueryRetrieveInformationModelGet)
        roles = []
        for cx in StoragePresentationContexts[:120]:
            ae.add_requested_context(str(cx.abstract_syntax), TRANSFER_SYNTAXES[:4])
            roles.append(build_role(str(cx.abstract_syntax), scp_role=True))
        errors: list[str] = []
        peer = self.peer.ae_title

        def on_store(event: evt.Event) -> int | Dataset:
            try:
                outcome = self.receiver.receive(
                    event.encoded_dataset(),
                    source=f"c-get from {peer}",
                    source_uid=str(getattr(event.request, "AffectedSOPInstanceUID", "") or ""),
                    peer=peer,
                )
            except Exception as exc:
                return _failure(0xA700, f"not stored: {safe_reason(exc)}")  # never the data's words
            return 0x0000 if outcome.status in OK_STATUSES else _failure(0xC000, f"refused: {outcome.reason}")

        assoc = self._associate(ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)])
        try:
            for ident in identifiers:
                final = None
                for status, _ in assoc.send_c_get(ident, StudyRootQueryRetrieveInformationModelGet):
                    if status is not None and "Status" in status:
                        final = status
                code = int(final.Status) if final is not None else None
                if code not in (0x0000, 0xB000):
                    errors.append(f"C-GET {ident.QueryRetrieveLevel} failed: status {code}")
                if on_done:
                    on_done()
        finally:
            assoc.release()
        return errors


def pull_dimse(
    ws: Workspace,
    peer: Peer,
    *,
    level: str = "study",
    matches: dict[str, str] | None = None,
    method: str = "move",
    config: GatewayConfig | None = None,
    receiver: Receiver | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunSummary:
    """Pull everything matching ``matches`` from ``peer``; returns counts (found, present, fetched, failed).

    For C-MOVE the peer must know our AE title and address; a gateway SCP is started on the
    configured port for the duration of the pull (or an already running one on that port is used).
    """
    if level not in ("study", "series"):
        raise ConfigError(f"--level {level!r} must be study or series")
    if method not in ("move", "get"):
        raise ConfigError(f"retrieve method {method!r} must be move or get")
    config = config or GatewayConfig.from_workspace(ws)
    if receiver is None:
        own = Receiver(ws)
        try:
            return pull_dimse(
                ws,
                peer,
                level=level,
                matches=matches,
                method=method,
                config=config,
                receiver=own,
                progress=progress,
            )
        finally:
            own.close()
    summary = RunSummary("gateway pull")
    puller = DimsePuller(ws, peer, config=config, receiver=receiver)
    plans = puller.plan(matches or {})
    found = [uid for p in plans for uid in p.instances]
    missing = [uid for p in plans for uid in p.missing]
    summary.counts.update(
        {"series": len(plans), "instances": len(found), "present": len(found) - len(missing)}
    )
    identifiers = puller.requests(plans, level)
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(identifiers))

    errors: list[str] = []
    if identifiers:
        if method == "get":
            errors = puller.get(identifiers, tick)
        else:
            server = None
            if config.allow and not any(r.ae_title == peer.ae_title for r in config.allow):
                config.allow.append(AllowRule(peer.ae_title))
            try:
                server = GatewayServer(ws, config, receiver=receiver).start()
            except NetworkError:
                log.info("port %s busy: relying on the gateway already serving it", config.port)
            try:
                errors = puller.move(identifiers, tick)
            finally:
                if server is not None:
                    server.stop()
    still = set(receiver.missing(missing))
    summary.counts["fetched"] = len(missing) - len(still)
    summary.counts["failed"] = len(still)
    summary.extra["requests"] = len(identifiers)
    if errors:
        summary.extra["errors"] = errors[:20]
    return summary
