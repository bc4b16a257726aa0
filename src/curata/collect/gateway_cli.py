"""`curata gateway serve|pull|push` and `curata server`: the hospital gateway from the command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from curata.cli_common import finish, workspace_option
from curata.console import err_console, make_progress

gateway_app = typer.Typer(
    name="gateway",
    help="Hospital gateway: receive from the PACS (DICOM/DICOMweb), de-identify, push to the platform.",
    no_args_is_help=True,
)


def _workspace(path: Path | None):  # type: ignore[no-untyped-def]
    from curata.workspace import Workspace

    return Workspace.find(path)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("pynetdicom").setLevel(logging.WARNING if verbose else logging.ERROR)


@gateway_app.command("serve")
def serve(
    ae_title: str = typer.Option(
        None, "--ae-title", help=escape("Our AE title (default: [gateway] ae_title).")
    ),
    port: int = typer.Option(None, "--port", help=escape("DICOM port (default: [gateway] port, 11112).")),
    bind: str = typer.Option(None, "--bind", help=escape("Address to listen on (default: [gateway] bind).")),
    allow: list[str] = typer.Option(
        None, "--allow", help="Calling AE allowed to associate, AE or AE@host (repeat; default: config)."
    ),
    verified: bool = typer.Option(
        False, "--verified-deidentified", help="Accept only objects already marked de-identified."
    ),
    workers: int = typer.Option(
        None, "--workers", "-j", help="De-identification processes (default: config, or one per core)."
    ),
    processes: int = typer.Option(
        None,
        "--processes",
        "-p",
        help=escape(
            "Listener processes sharing the port (SO_REUSEPORT), each de-identifying in-process "
            "(default: [gateway] processes, 1)."
        ),
    ),
    front_end: str = typer.Option(
        None,
        "--front-end",
        help=escape(
            "python (answers after filing) or dcmtk (answers once durable in the site's spool; "
            "faster). Default: [gateway] front_end."
        ),
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the final summary as JSON."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log every association."),
    workspace: Path | None = workspace_option(),
) -> None:
    """Answer C-ECHO and C-STORE; de-identify and file every instance as it arrives (Ctrl-C stops)."""
    from curata.collect.net.config import AllowRule, GatewayConfig, check_ae_title
    from curata.collect.net.scp import GatewayServer
    from curata.collect.net.spool import SpoolGateway
    from curata.console import RunSummary
    from curata.errors import ConfigError

    _setup_logging(verbose)
    ws = _workspace(workspace)
    cfg = GatewayConfig.from_workspace(ws)
    if ae_title:
        cfg.ae_title = check_ae_title(ae_title)
    if port is not None:
        cfg.port = port
    if bind:
        cfg.bind = bind
    if allow:
        cfg.allow = [AllowRule.parse(a) for a in allow]
    if workers is not None:
        cfg.workers = max(0, workers)
    if processes is not None:
        cfg.processes = max(1, processes)
    if front_end:
        cfg.front_end = front_end
        cfg.check_limits()
    if cfg.front_end == "dcmtk" and cfg.processes > 1:
        raise ConfigError(
            "--processes applies to the python front end",
            hint="the dcmtk front end already runs one process per association",
        )
    group = None
    if cfg.processes > 1:
        from curata.collect.net.multi import ProcessGroup

        if not cfg.port:
            raise ConfigError("--processes needs a fixed --port", hint="e.g. --port 11112")
        cfg.workers = 1  # each listener de-identifies in its own process
        group = ProcessGroup(ws.root, cfg, cfg.processes - 1, deidentify=not verified)
    import signal

    def _terminate(*_args: object) -> None:  # a service manager's stop: same clean end as Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)

    server: GatewayServer | SpoolGateway
    if cfg.front_end == "dcmtk":
        server = SpoolGateway(ws, cfg, deidentify=not verified)
    else:
        server = GatewayServer(ws, cfg, deidentify=not verified, reuse_port=group is not None)
    others: list[dict[str, int]] = []
    summary = RunSummary("gateway serve", failure_keys=("refused", "errors"))  # its clock: the whole run
    try:
        if group is not None:  # the others first: the port answers once every listener is up
            group.start()
        server.start()
        who = ", ".join(f"{r.ae_title}@{r.host}" if r.host else r.ae_title for r in cfg.allow) or "any AE"
        if cfg.open_to_anyone:
            err_console.print(
                f"[bold red]WARNING: listening on {cfg.bind} with no allow list: ANY host and AE title on "
                "the network may store here.[/] Set \\[gateway] allow / allow_hosts, pass --allow AE@host, "
                "or bind to 127.0.0.1."
            )
        elif not cfg.allow:
            err_console.print(
                "[yellow]warning:[/] no AE allow list: any application entity that reaches the port may "
                "store here (set \\[gateway] allow or pass --allow AE@host)"
            )
        err_console.print(
            f"[bold]{cfg.ae_title}[/] listening on {cfg.bind}:{server.port} "
            f"(de-identification {'off: verify only' if verified else 'on'}; allowed: {who}; "
            f"{cfg.processes} process(es), {cfg.front_end} front end). Ctrl-C stops."
        )
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
        if group is not None:
            others = group.stop()
    summary.counts.update(server.counts.as_dict())
    for counts in others:
        for key, value in counts.items():
            summary.counts[key] = summary.counts.get(key, 0) + value
    finish(summary, as_json=as_json)


@gateway_app.command("pull")
def pull(
    source: str = typer.Option(
        None, "--from", help=escape("The PACS: AE@host:port, or a peer named in [gateway.peers].")
    ),
    dicomweb: str = typer.Option(None, "--dicomweb", help="A DICOMweb base URL (QIDO-RS + WADO-RS) instead."),
    level: str = typer.Option("study", "--level", help="Retrieve granularity: study or series."),
    match: list[str] = typer.Option(None, "--match", help="C-FIND / QIDO match KEYWORD=VALUE (repeat)."),
    get: bool = typer.Option(False, "--get", help="Retrieve with C-GET instead of C-MOVE."),
    port: int = typer.Option(
        None, "--port", help=escape("Our DICOM port for C-MOVE (default: [gateway] port).")
    ),
    token: str = typer.Option(None, "--token", envvar="CURATA_PULL_TOKEN", help="Bearer token for DICOMweb."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    workspace: Path | None = workspace_option(),
) -> None:
    """Fetch matching studies from a PACS, de-identified on arrival. A second run fetches only what is missing."""
    from curata.collect.net.config import GatewayConfig
    from curata.collect.net.pull import parse_matches, pull_dimse
    from curata.collect.net.receive import Receiver
    from curata.errors import ConfigError

    _setup_logging(False)
    if bool(source) == bool(dicomweb):
        raise ConfigError("give exactly one of --from AE@host:port or --dicomweb URL")
    ws = _workspace(workspace)
    cfg = GatewayConfig.from_workspace(ws)
    if port is not None:
        cfg.port = port
    matches = parse_matches(match)
    receiver = Receiver(ws)
    try:
        with make_progress(quiet=quiet or as_json) as progress:
            task = progress.add_task("pull", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            if dicomweb:
                from curata.collect.dicomweb import pull_dicomweb

                summary = pull_dicomweb(
                    ws, dicomweb, level=level, matches=matches, token=token, receiver=receiver, progress=tick
                )
            else:
                summary = pull_dimse(
                    ws,
                    cfg.peer(source),
                    level=level,
                    matches=matches,
                    method="get" if get else "move",
                    config=cfg,
                    receiver=receiver,
                    progress=tick,
                )
    finally:
        receiver.close()
    finish(summary, as_json=as_json, errors=summary.extra.pop("errors", []))


@gateway_app.command("push")
def push(
    to: str = typer.Option(
        ..., "--to", help="Base URL of the central Curata server, e.g. https://platform:8042"
    ),
    token: str = typer.Option(
        None, "--token", envvar="CURATA_PUSH_TOKEN", help="Bearer token (default: config)."
    ),
    batch: int = typer.Option(
        None, "--batch", help="Instances (or clinical inputs) per request (default: config, 32)."
    ),
    ca_cert: Path = typer.Option(None, "--ca-cert", help="CA bundle to verify the server's TLS certificate."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q"),
    workspace: Path | None = workspace_option(),
) -> None:
    """Send de-identified instances, clinical tables and VCFs to the platform in batches; resumable,
    sha256-checked per part."""
    from curata.collect.net.config import GatewayConfig
    from curata.collect.net.push import push_clinical, push_instances

    ws = _workspace(workspace)
    cfg = GatewayConfig.from_workspace(ws)
    options: dict[str, Any] = {
        "token": token or cfg.push_token,
        "batch": batch or cfg.push_batch,
        "verify": str(ca_cert) if ca_cert else True,
    }
    with make_progress(quiet=quiet or as_json) as progress:
        task = progress.add_task("push", total=None)
        summary = push_instances(
            ws, to, progress=lambda done, total: progress.update(task, completed=done, total=total), **options
        )
        task = progress.add_task("push clinical, genomic", total=None)
        clinical = push_clinical(
            ws, to, progress=lambda done, total: progress.update(task, completed=done, total=total), **options
        )
    for key, value in clinical.counts.items():
        summary.add(f"clinical_{key}" if key != "failed" else key, value)
    errors = [*summary.extra.pop("errors", []), *clinical.extra.pop("errors", [])]
    finish(summary, as_json=as_json, errors=errors)


@gateway_app.command("watch")
def watch(
    folder: Path = typer.Argument(..., help="The drop folder the site's systems write exports into."),
    interval: float = typer.Option(
        2.0, "--interval", help="Seconds between polls (a file is taken once it stood still for one)."
    ),
    once: bool = typer.Option(False, "--once", help="Settle one interval, file what is there, and exit."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    workspace: Path | None = workspace_option(),
) -> None:
    """De-identify and file clinical exports (CSV, Excel, FHIR), VCFs and DICOM dropped into FOLDER."""
    import signal
    import threading

    from curata.collect.clinical.dropfolder import DropFolder

    ws = _workspace(workspace)
    drop = DropFolder(ws, folder)
    # a service manager's stop ends the watch after the batch in hand is filed and counted (an
    # exception raised from the handler could land between a batch's commit and its count)
    stopping = threading.Event()

    def _terminate(*_args: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, _terminate)
    problems: list[str] = []

    def report(batch) -> None:  # type: ignore[no-untyped-def]
        for p in batch.problems:  # named by digest: a site's file names can carry a patient's ID
            label = f"sha256:{p.input_digest[:16]}" if p.input_digest else "an input"
            problems.append(f"{p.status} {label}: {p.reason or ''}")
        if not as_json:
            err_console.print(f"filed {len(batch.files)} file(s): {batch.summary.counts}")

    if not once:
        err_console.print(f"watching {drop.folder} every {interval:g} s (Ctrl-C stops)")
    import contextlib

    with contextlib.suppress(KeyboardInterrupt):
        drop.watch(interval=max(0.05, interval), once=once, on_batch=report, stop=stopping.is_set)
    finish(drop.total, as_json=as_json, errors=problems[:20])


def server(
    host: str = typer.Option(
        None, "--host", help=escape("Address to listen on (default: [gateway] http_host).")
    ),
    port: int = typer.Option(None, "--port", help=escape("HTTP port (default: [gateway] http_port, 8042).")),
    verified: bool = typer.Option(
        False,
        "--verified-deidentified",
        help="Central platform: refuse anything not marked de-identified (no de-identification here).",
    ),
    token: str = typer.Option(None, "--token", envvar="CURATA_TOKEN", help="Require this bearer token."),
    workspace: Path | None = workspace_option(),
) -> None:
    """Run the HTTP server: DICOMweb (STOW-RS, QIDO-RS, WADO-RS) over the workspace, with token auth and TLS."""
    import uvicorn

    from curata.collect.net.config import GatewayConfig
    from curata.server import create_app

    ws = _workspace(workspace)
    cfg = GatewayConfig.from_workspace(ws)
    app = create_app(
        ws,
        token=token or cfg.token,
        verified_deidentified=verified or ws.settings.server.verified_deidentified,
        public_url=cfg.public_url,
        max_upload_bytes=cfg.max_upload_bytes,
    )
    scheme = "https" if cfg.tls else "http"
    bind = host or cfg.http_host
    if not (token or cfg.token) and bind not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(f"[yellow]warning:[/] no token: anyone who reaches {bind} can read and upload")
    if not cfg.tls and bind not in ("127.0.0.1", "localhost", "::1"):
        err_console.print("[yellow]warning:[/] plain HTTP: set [gateway] tls_cert and tls_key for HTTPS")
    err_console.print(f"Curata server on {scheme}://{host or cfg.http_host}:{port or cfg.http_port}/dicomweb")
    uvicorn.run(
        app,
        host=host or cfg.http_host,
        port=port or cfg.http_port,
        ssl_certfile=cfg.tls_cert or None,
        ssl_keyfile=cfg.tls_key or None,
        log_level="warning",
    )


def register(app: typer.Typer) -> None:
    app.add_typer(gateway_app, name="gateway")
    app.command("server")(server)
