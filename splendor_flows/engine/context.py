"""What the steps of one source run with: the API, the time, who it is for and who listens."""

from dataclasses import dataclass, field

from splendor_flows.engine.api import SyncApi
from splendor_flows.engine.clock import Clock, SystemClock
from splendor_flows.engine.history import RunHistory
from splendor_flows.engine.report import Reporter
from splendor_flows.engine.run_records import RunRecords
from splendor_flows.engine.scope import ScopeLike


@dataclass(frozen=True)
class SourceContext:
    api: SyncApi
    scope: ScopeLike
    report: Reporter
    clock: Clock = field(default_factory=SystemClock)
    # Durations of earlier runs, to aim polls at the expected end; None polls on the plain backoff.
    history: RunHistory | None = None
    # Where starts are recorded for every worker to see; None: this process is the only one (tests).
    records: RunRecords | None = None
