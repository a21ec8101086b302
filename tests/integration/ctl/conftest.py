"""The fake services every conveyorctl integration test talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.integration.ctl.ctl_fakes import FakeConveyor, start_fakes
from tests.integration.ctl.ctl_process import seeded_state


@pytest.fixture
async def fakes() -> AsyncIterator[FakeConveyor]:
    conveyor = await start_fakes(seeded_state())
    try:
        yield conveyor
    finally:
        await conveyor.stop()
