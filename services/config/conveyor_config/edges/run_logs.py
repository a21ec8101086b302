"""Follows run-log notices on core NATS, so TailRunLogs followers in this replica wake for entries
stored by any replica (the RunEvent consumer hands each event to one replica only)."""

from __future__ import annotations

import logging

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from conveyor.errors import InvalidArgument
from conveyor.names import parse_run_name
from conveyor.subjects import RUN_LOGGED_SUBJECT
from conveyor_config.edges.changes import NoticeFollower
from conveyor_config.usecases.notifier import RunNotifier

log = logging.getLogger(__name__)


class RunLogFollower(NoticeFollower):
    """Wakes this replica's followers of the run a `conveyor.runs.logged` notice names."""

    subject = RUN_LOGGED_SUBJECT
    description = "run-log notice"

    def __init__(self, nc: NATS, notifier: RunNotifier) -> None:
        super().__init__(nc)
        self.notifier = notifier

    def _restarted(self) -> None:
        self.notifier.notify_all()  # notices may have been missed: every follower re-reads

    def _handle(self, msg: Msg) -> None:
        try:
            name = parse_run_name(msg.data.decode("utf-8"))
        except (UnicodeDecodeError, InvalidArgument):
            log.warning("ignoring a run-log notice that names no run")
            return
        self.notifier.notify(str(name))
