"""One settings place: defaults, curata.toml, CURATA_* variables, loud typos, `curata config show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tomli_w
from typer.testing import CliRunner

from curata.cli import app
from curata.errors import ConfigError
from curata.settings import Settings, describe, load_settings
from curata.workspace import Workspace


def _write(ws: Workspace, data: dict) -> Workspace:  # type: ignore[type-arg]
    (ws.root / "curata.toml").write_text(tomli_w.dumps(data))
    return Workspace.open(ws.root)


def test_defaults_file_and_environment_in_that_order() -> None:
    settings, origins = load_settings(
        {"runtime": {"workers": 2}, "deid": {"profile": "basic"}},
        {"CURATA_RUNTIME__WORKERS": "5", "CURATA_STORE__URL": "s3://bucket/x"},
    )
    assert settings.runtime.workers == 5 and origins["runtime.workers"] == "env CURATA_RUNTIME__WORKERS"
    assert settings.deid.profile == "basic" and origins["deid.profile"] == "curata.toml"
    assert settings.store.url == "s3://bucket/x"
    assert settings.site.name == "local-site" and "site.name" not in origins
    assert Settings().gateway.port == 11112


def test_historic_variable_names_still_win() -> None:
    settings, origins = load_settings(
        {"catalog": {"url": "sqlite:///a.db"}, "gateway": {"token": "file"}},
        {
            "CURATA_DATABASE_URL": "postgresql://u:secret@h/db",
            "CURATA_TOKEN": "env-token",
            "CURATA_PUSH_TOKEN": "",
        },
    )
    assert settings.catalog.url == "postgresql://u:secret@h/db"
    assert origins["catalog.url"] == "env CURATA_DATABASE_URL"
    assert settings.gateway.token == "env-token"
    assert settings.gateway.push_token == ""  # an empty variable does not override
    shown = {r.key: r for r in describe(settings, origins)}
    assert shown["gateway.token"].value == "***"  # a secret is never printed
    assert "secret" not in str(shown["catalog.url"].value) and "u:***@h" in shown["catalog.url"].value


@pytest.mark.parametrize(
    ("data", "env", "needle"),
    [
        ({"runtime": {"wrokers": 2}}, {}, "runtime.wrokers"),
        ({"runtim": {"workers": 2}}, {}, "runtim"),
        ({"runtime": {"workers": "many"}}, {}, "runtime.workers"),
        ({"runtime": {"workers": -1}}, {}, "runtime.workers"),
        ({}, {"CURATA_GATEWAY__PORT": "eighty"}, "gateway.port"),
        ({}, {"CURATA_SITE": "lagos"}, "CURATA_SITE sets the whole"),
        ({}, {"CURATA_RUNTIME__THREADS": "2"}, "runtime.threads"),
        ({"gateway": {"peers": {"pacs": {"ae_title": "X", "host": "h"}}}}, {}, "gateway.peers.pacs.port"),
        ({"deid": {"site_prefixes": ["HOSPA"]}}, {}, "deid.site_prefixes"),  # no '-' or '_' at its end
        ({"deid": {"site_prefixes": ["MRN 88421937-"]}}, {}, "deid.site_prefixes"),
    ],
)
def test_a_typo_or_a_wrong_type_is_a_config_error(data: dict, env: dict, needle: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(data, env)


def test_the_workspace_reads_settings_once(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = _write(workspace, {"site": {"name": "s1"}, "runtime": {"workers": 3}, "store": {"url": ""}})
    assert ws.workers() == 3 and ws.workers(7) == 7
    assert ws.store_url == str(ws.store_path)
    assert ws.database_url.endswith("catalog.sqlite")
    monkeypatch.setenv("CURATA_RUNTIME__WORKERS", "4")
    assert Workspace.open(ws.root).workers() == 4
    (ws.root / "curata.toml").write_text("[runtime]\nworkers = 1\nthreads = 2\n")
    with pytest.raises(ConfigError, match="threads"):
        Workspace.open(ws.root)


def test_gateway_settings_come_from_the_one_model(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from curata.collect.net import GatewayConfig

    monkeypatch.setenv("CURATA_TOKEN", "t0k")
    ws = _write(
        workspace,
        {"gateway": {"ae_title": "EDGE", "peers": {"pacs": {"ae_title": "P", "host": "h", "port": 104}}}},
    )
    cfg = GatewayConfig.from_workspace(ws)
    assert cfg.ae_title == "EDGE" and cfg.token == "t0k" and str(cfg.peer("pacs")) == "P@h:104"
    assert cfg.port == Settings().gateway.port


def test_config_show_prints_values_and_sources(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(workspace, {"site": {"name": "ghana-1"}, "runtime": {"workers": 2}})
    monkeypatch.setenv("CURATA_RUNTIME__SCHEDULER", "tcp://10.0.0.1:8786")
    result = CliRunner().invoke(app, ["config", "show", "-w", str(workspace.root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["setting"]: r for r in json.loads(result.stdout)}
    assert rows["site.name"]["value"] == "ghana-1" and rows["site.name"]["source"] == "curata.toml"
    assert "pseudonyms" in rows["site.name"]["meaning"]  # documented from the model itself
    assert rows["runtime.scheduler"]["source"] == "env CURATA_RUNTIME__SCHEDULER"
    assert (rows["deid.profile"]["value"], rows["deid.profile"]["source"]) == ("research", "default")
    assert all(r["meaning"] for r in rows.values())
    # every declared field of every section is listed
    assert {k.split(".")[0] for k in rows} >= {
        "site",
        "catalog",
        "store",
        "deid",
        "runtime",
        "gateway",
        "server",
    }
    only = CliRunner().invoke(app, ["config", "show", "runtime", "-w", str(workspace.root), "--json"])
    assert {r["setting"] for r in json.loads(only.stdout)} == {"runtime.workers", "runtime.scheduler"}


def test_init_writes_the_model_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tomllib

    monkeypatch.delenv("CURATA_DATABASE_URL", raising=False)
    ws = Workspace.init(tmp_path / "w", site="x")
    written = tomllib.loads((ws.root / "curata.toml").read_text())
    assert written["site"]["name"] == "x"
    assert written["runtime"] == Settings().runtime.model_dump()
