"""The demo's platform: one project over every site of the workspace, its cohort and release, and an
account per role (fresh random passwords, written to ``accounts.txt`` with mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from sqlalchemy import select

from curata.server import service
from curata.server.models import Role
from curata.workspace import Workspace

PROJECT = "demo"
ACCOUNTS = {
    "demo-admin": Role.admin,
    "demo-curator": Role.curator,
    "demo-annotator": Role.annotator,
    "demo-reviewer": Role.reviewer,
    "demo-site": Role.site,
    "demo-licensee": Role.licensee,
}


def setup_demo_platform(
    ws: Workspace, out: Path, *, cohort: str | None, release: str | None, fee_cents: int = 1_250_000
) -> dict[str, Any]:
    from curata.catalog import Site
    from curata.ledger import Ledger, add_licence

    with ws.catalog.session() as s:
        sites = list(s.scalars(select(Site.name).order_by(Site.name)))
    existing = {p.name for p in service.list_projects(ws)}
    if PROJECT not in existing:
        service.create_project(
            ws, PROJECT, title="Demo: chest CT", description="Every demo site, its CT cohort and release."
        )
    for site in sites:
        service.add_resource(ws, PROJECT, "site", site)
    if cohort:
        service.add_resource(ws, PROJECT, "cohort", cohort)
    if release:
        service.add_resource(ws, PROJECT, "release", release.split("@", 1)[0])
    users = {u.username for u in service.list_users(ws)}
    lines, accounts = [], []
    for name, role in ACCOUNTS.items():
        password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
        if name in users:
            service.set_password(ws, name, password)
        else:
            service.create_user(ws, name, password, display_name=f"Demo {role.value}")
        service.set_role(ws, name, PROJECT, role)
        lines.append(f"{name}\t{role.value}\t{password}")
        accounts.append({"username": name, "role": role.value, "password": password})
        service.record(ws, "user-created", username="demo", target=name, project=PROJECT)
    if release:
        service.grant_licence(ws, "demo-licensee", PROJECT, release, by="demo-admin")
        ledger = Ledger.open(ws)
        add_licence(ledger, "demo-licensee", release, fee_cents)
    path = out / "accounts.txt"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("username\trole\tpassword\n" + "\n".join(lines) + "\n")
    os.replace(tmp, path)
    return {"project": PROJECT, "sites": sites, "accounts": accounts, "accounts_file": str(path)}


def setup_demo_readers(ws: Workspace, reading: str, cohort: str, readers: dict[str, Role]) -> dict[str, str]:
    """The demo's reading round on the platform: project ``demo`` (over every site, with ``cohort``)
    holds the annotation project ``reading``; each reader gets an account with its role (a random
    password nobody needs) and an API token, as a reader's workstation (OHIF, 3D Slicer) would hold.
    Returns {username: token}."""
    from curata.catalog import Site

    if PROJECT not in {p.name for p in service.list_projects(ws)}:
        service.create_project(
            ws, PROJECT, title="Demo: chest CT", description="Every demo site, its CT cohort and release."
        )
    with ws.catalog.session() as s:
        for site in s.scalars(select(Site.name).order_by(Site.name)):
            service.add_resource(ws, PROJECT, "site", site)
    service.add_resource(ws, PROJECT, "cohort", cohort)
    service.add_resource(ws, PROJECT, "annotation", reading)
    users = {u.username for u in service.list_users(ws)}
    tokens = {}
    for name, role in readers.items():
        if name not in users:
            password = "-".join(secrets.token_urlsafe(6) for _ in range(3))
            service.create_user(ws, name, password, display_name=f"Demo {role.value}")
        service.set_role(ws, name, PROJECT, role)
        tokens[name] = service.create_token(ws, name, "demo-reading", days=1).token
    return tokens
