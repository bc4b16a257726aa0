"""`curata user ...`, `curata project ...` and `curata serve`: accounts and the platform from the CLI."""

from __future__ import annotations

import ipaddress
import os
import sys
from pathlib import Path

import typer

from curata.cli_common import workspace_option
from curata.console import console, err_console, print_json, print_table
from curata.errors import ConfigError

user_app = typer.Typer(
    help="Platform accounts: add, list, passwords, roles, API tokens.", no_args_is_help=True
)
project_app = typer.Typer(
    help="Projects: members with roles, sites, cohorts, releases, licences.", no_args_is_help=True
)

WS = workspace_option()
JSON = typer.Option(False, "--json", help="Print JSON.")
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def _ws(workspace: Path | None):  # type: ignore[no-untyped-def]
    from curata.workspace import Workspace

    return Workspace.find(workspace)


def _password(password_stdin: bool, prompt: str = "Password") -> str:
    """From stdin (scripts: ``--password-stdin``), ``$CURATA_PASSWORD``, or a hidden prompt."""
    if password_stdin:
        return sys.stdin.readline().rstrip("\n")
    env = os.environ.get("CURATA_PASSWORD")
    if env:
        return env
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


PASSWORD_STDIN = typer.Option(
    False, "--password-stdin", help="Read the password from the first line of stdin."
)


@user_app.command("add")
def user_add(
    username: str,
    display_name: str = typer.Option("", "--name", help="Display name."),
    admin: bool = typer.Option(False, "--platform-admin", help="May manage users and every project."),
    password_stdin: bool = PASSWORD_STDIN,
    workspace: Path | None = WS,
) -> None:
    """Create an account (password: prompt, --password-stdin or $CURATA_PASSWORD; hashed with argon2id)."""
    from curata.server import service

    u = service.create_user(
        _ws(workspace), username, _password(password_stdin), display_name=display_name, platform_admin=admin
    )
    console.print(f"user [bold]{u.username}[/] created" + (" (platform admin)" if u.platform_admin else ""))


@user_app.command("ls")
def user_ls(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    """Every account, with its roles per project."""
    from curata.server import service

    rows = [
        {
            "username": u.username,
            "name": u.display_name,
            "platform_admin": u.platform_admin,
            "active": u.active,
            "roles": "; ".join(f"{p}: {', '.join(r)}" for p, r in u.roles.items()),
        }
        for u in service.list_users(_ws(workspace))
    ]
    print_json(rows) if as_json else print_table(rows, title="Users")


@user_app.command("passwd")
def user_passwd(username: str, password_stdin: bool = PASSWORD_STDIN, workspace: Path | None = WS) -> None:
    """Set a new password; the user's open sessions end."""
    from curata.server import service

    service.set_password(_ws(workspace), username, _password(password_stdin, "New password"))
    console.print(f"password of [bold]{username}[/] changed; their sessions were closed")


@user_app.command("role")
def user_role(
    username: str,
    project: str,
    role: str = typer.Argument(..., help="admin, curator, annotator, reviewer, site or licensee"),
    remove: bool = typer.Option(False, "--remove", help="Take the role away."),
    workspace: Path | None = WS,
) -> None:
    """Give a user a role in a project (or take it away with --remove)."""
    from curata.server import service

    ws = _ws(workspace)
    u = service.set_role(ws, username, project, role, remove=remove)
    service.record(
        ws,
        "role-removed" if remove else "role-granted",
        username="cli",
        target=f"{username}:{role}",
        project=project,
    )
    console.print(f"{u.username} in {project}: {', '.join(u.roles.get(project, [])) or 'no roles'}")


@user_app.command("token")
def user_token(
    username: str,
    name: str = typer.Option("cli", "--name", help="What the token is for."),
    days: int = typer.Option(None, "--days", help="Expire after this many days."),
    workspace: Path | None = WS,
) -> None:
    """Make an API token (printed once; send it as `Authorization: Bearer ...`)."""
    from curata.server import service

    tok = service.create_token(_ws(workspace), username, name, days=days)
    typer.echo(tok.token)


@user_app.command("disable")
def user_disable(
    username: str, enable: bool = typer.Option(False, "--enable"), workspace: Path | None = WS
) -> None:
    """Disable an account (its sessions end, its tokens stop working), or --enable it again."""
    from curata.server import service

    u = service.set_active(_ws(workspace), username, enable)
    console.print(f"{u.username}: {'active' if u.active else 'disabled'}")


@project_app.command("add")
def project_add(
    name: str,
    title: str = typer.Option("", "--title"),
    description: str = typer.Option("", "--description"),
    site: list[str] = typer.Option([], "--site", help="A site whose data the project uses (repeatable)."),
    cohort: list[str] = typer.Option([], "--cohort", help="A cohort of the project (repeatable)."),
    release: list[str] = typer.Option([], "--release", help="A release of the project (repeatable)."),
    workspace: Path | None = WS,
) -> None:
    """Create a project, optionally with its sites, cohorts and releases."""
    from curata.server import service

    ws = _ws(workspace)
    service.create_project(ws, name, title=title, description=description)
    for kind, names in (("site", site), ("cohort", cohort), ("release", release)):
        for n in names:
            service.add_resource(ws, name, kind, n)
    service.record(ws, "project-created", username="cli", target=name, project=name)
    console.print(f"project [bold]{name}[/] created")


@project_app.command("add-resource")
def project_add_resource(
    project: str,
    kind: str = typer.Argument(..., help="site, cohort, release or series"),
    name: str = typer.Argument(...),
    workspace: Path | None = WS,
) -> None:
    """Put a site, cohort, release or series into a project."""
    from curata.server import service

    ws = _ws(workspace)
    service.add_resource(ws, project, kind, name)
    service.record(ws, "resource-added", username="cli", target=f"{kind}:{name}", project=project)
    console.print(f"{kind} {name} added to {project}")


@project_app.command("ls")
def project_ls(as_json: bool = JSON, workspace: Path | None = WS) -> None:
    from curata.server import service

    rows = [
        {
            "name": p.name,
            "title": p.title,
            "sites": ", ".join(p.sites),
            "cohorts": ", ".join(p.cohorts),
            "releases": ", ".join(p.releases),
            "members": len(p.members),
        }
        for p in service.list_projects(_ws(workspace))
    ]
    print_json(rows) if as_json else print_table(rows, title="Projects")


@project_app.command("show")
def project_show(name: str, as_json: bool = JSON, workspace: Path | None = WS) -> None:
    from dataclasses import asdict

    from curata.server import service

    p = service.get_project(_ws(workspace), name)
    if as_json:
        print_json(asdict(p))
        return
    console.print(f"[bold]{p.name}[/] {p.title}\n{p.description}")
    console.print(
        f"sites: {', '.join(p.sites) or '-'}; cohorts: {', '.join(p.cohorts) or '-'}; releases: {', '.join(p.releases) or '-'}"
    )
    print_table([{"user": u, "roles": ", ".join(r)} for u, r in p.members.items()], title="Members")


@project_app.command("grant")
def project_grant(
    project: str,
    release: str = typer.Argument(..., help="NAME@VERSION"),
    to: str = typer.Option(..., "--to", help="The licensee's username."),
    expires: str = typer.Option(
        None, "--expires", help="Last day the grant serves, YYYY-MM-DD (default: no end)."
    ),
    workspace: Path | None = WS,
) -> None:
    """License a release version to a licensee user (they get the licensee role in the project)."""
    from datetime import date

    from curata.errors import InputError
    from curata.server import service

    try:
        until = service.end_of_day(date.fromisoformat(expires)) if expires else None
    except ValueError as exc:
        raise InputError(f"--expires {expires!r} is not a date", hint="YYYY-MM-DD, e.g. 2027-12-31") from exc
    ws = _ws(workspace)
    g = service.grant_licence(ws, to, project, release, expires_at=until)
    service.record(
        ws,
        "licence-granted",
        username="cli",
        target=f"{to}:{g.label}",
        project=project,
        detail={"expires": expires} if expires else None,
    )
    console.print(f"{g.label} licensed to {to} in {project}" + (f" through {expires}" if expires else ""))


@project_app.command("revoke")
def project_revoke(
    project: str,
    release: str = typer.Argument(..., help="NAME@VERSION"),
    to: str = typer.Option(..., "--to", help="The licensee's username."),
    workspace: Path | None = WS,
) -> None:
    """End a licence grant now: the licensee's pages, downloads and series of it answer as unlicensed."""
    from curata.server import service

    ws = _ws(workspace)
    g = service.revoke_licence(ws, to, project, release)
    service.record(ws, "licence-revoked", username="cli", target=f"{to}:{g.label}", project=project)
    console.print(f"{g.label} no longer licensed to {to} in {project}")


def check_bind(host: str, tls: bool, allow_plain_http: bool) -> str | None:
    """Refuse plain HTTP on a public address unless explicitly allowed; returns a warning or None."""
    if tls or host in LOOPBACK:
        return None
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if loopback:
        return None
    if not allow_plain_http:
        raise ConfigError(
            f"refusing to serve plain HTTP on {host}: passwords and session cookies would cross the network in clear",
            hint="give --tls-cert and --tls-key, or --allow-plain-http behind a TLS-terminating proxy",
        )
    return f"PLAIN HTTP on {host}: anyone on the network can read passwords, cookies and images"


def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback unless you say so)."
    ),
    port: int = typer.Option(8400, "--port", help="Port."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="PEM certificate: serve HTTPS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="PEM private key of --tls-cert."),
    allow_plain_http: bool = typer.Option(
        False, "--allow-plain-http", help="Serve plain HTTP on a public address (behind a TLS proxy only)."
    ),
    verified: bool = typer.Option(
        False,
        "--verified-deidentified",
        help="Central platform: STOW accepts only objects marked de-identified and stores them unchanged.",
    ),
    public_url: str = typer.Option("", "--public-url", help="The address users reach (behind a proxy)."),
    no_viewer: bool = typer.Option(False, "--no-viewer", help="Do not serve the OHIF viewer."),
    workspace: Path | None = WS,
) -> None:
    """Run the platform: pages, API, DICOMweb per project, and the OHIF viewer (one process)."""
    import uvicorn

    from curata.server import create_app
    from curata.server.ohif import find_ohif

    if bool(tls_cert) != bool(tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    warning = check_bind(host, bool(tls_cert), allow_plain_http)
    if warning:
        err_console.print(f"[bold red on yellow] WARNING [/] {warning}")
    ws = _ws(workspace)
    ohif = None if no_viewer else find_ohif()
    app = create_app(
        ws, verified_deidentified=verified, public_url=public_url, ohif_dir=ohif, tls=bool(tls_cert)
    )
    scheme = "https" if tls_cert else "http"
    shown = f"[{host}]" if ":" in host else host
    err_console.print(
        f"Curata on {scheme}://{shown}:{port}/ui/"
        + ("" if ohif else "  (viewer not installed: bash scripts/ohif.sh)")
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning",
        proxy_headers=False,
    )


def register(app: typer.Typer) -> None:
    app.add_typer(user_app, name="user")
    app.add_typer(project_app, name="project")
    app.command("serve")(serve)
