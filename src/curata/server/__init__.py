"""The platform: a FastAPI app over the workspace (pages, accounts API, DICOMweb per project, the OHIF
viewer), with accounts, roles per project, sessions and API tokens. See README.md in this folder.

    from curata.server import create_app, require, Access, Role
    from curata.server import service          # create_user, set_role, grant_licence, record, ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from curata._lazy import lazy_exports

if TYPE_CHECKING:
    from curata.server.app import create_app
    from curata.server.auth import (
        Access,
        login_required,
        platform_admin_required,
        require,
        require_dicomweb_global,
    )
    from curata.server.cli import serve
    from curata.server.demo import setup_demo_platform, setup_demo_readers
    from curata.server.dicomweb import bounded_body
    from curata.server.models import Role
    from curata.server.router import token_login
    from curata.server.service import (
        AuthError,
        Principal,
        ProjectRecord,
        UserRecord,
        add_resource,
        after_withdrawal,
        count_recent,
        record,
    )

__getattr__ = lazy_exports(
    __name__,
    {
        "create_app": "app",
        "Access": "auth",
        "login_required": "auth",
        "platform_admin_required": "auth",
        "require": "auth",
        "require_dicomweb_global": "auth",
        "bounded_body": "dicomweb",
        "record": "service",
        "count_recent": "service",
        "Role": "models",
        "token_login": "router",
        "serve": "cli",
        "setup_demo_platform": "demo",
        "setup_demo_readers": "demo",
        "AuthError": "service",
        "add_resource": "service",
        "after_withdrawal": "service",
        "Principal": "service",
        "ProjectRecord": "service",
        "UserRecord": "service",
    },
)

__all__ = [
    "Access",
    "AuthError",
    "Principal",
    "ProjectRecord",
    "Role",
    "UserRecord",
    "add_resource",
    "after_withdrawal",
    "bounded_body",
    "count_recent",
    "create_app",
    "login_required",
    "platform_admin_required",
    "record",
    "require",
    "require_dicomweb_global",
    "serve",
    "setup_demo_platform",
    "setup_demo_readers",
    "token_login",
]
