"""End-to-end tests: every process real (see tests/support/system.py).

Each module is marked `e2e` (`pytest -m e2e` runs only these, `-m "not e2e"` skips them).
When a test fails, the logs of the system it used (every process's output) are attached to
its report.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from tests.support.system import System


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    for value in getattr(item, "funcargs", {}).values():
        system = value if isinstance(value, System) else getattr(value, "system", None)
        if isinstance(system, System):
            report.sections.append(("conveyor system logs", system.logs()))
