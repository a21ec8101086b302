"""The README's "### conveyor-deployer" table is the settings as declared: no row missing, changed or stale."""

from __future__ import annotations

import pathlib

from conveyor import settings as s
from conveyor_deployer import settings as settings_module
from conveyor_deployer.settings import KUBECONFIG_ROW, DeployerSettings

ROOT = pathlib.Path(__file__).resolve().parents[3]


def _section() -> str:
    return s.markdown_section((ROOT / "README.md").read_text(encoding="utf-8"), "### conveyor-deployer")


def test_the_readme_documents_every_deployer_setting_as_declared() -> None:
    assert s.missing_rows(_section(), DeployerSettings.declarations()) == []


def test_the_readme_table_has_no_row_beyond_the_declarations() -> None:
    expected = {*s.markdown_rows(DeployerSettings.declarations()), KUBECONFIG_ROW}
    rows = [line.strip() for line in _section().splitlines() if line.startswith("| `")]
    assert [row for row in rows if row not in expected] == []
    assert len(rows) == len(expected)


def test_the_settings_module_shows_the_generated_table() -> None:
    doc = settings_module.__doc__ or ""
    assert s.markdown_table(DeployerSettings.declarations()) in doc and KUBECONFIG_ROW in doc
