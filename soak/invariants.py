"""End-of-soak checks, from the emulator's persisted state and the workers' reports only.

Neither source trusts the pipeline's own view: the emulator's state is what really happened remotely,
and the reports are what a user was told. A violation is a broken promise. The checks are about what
the pipeline guarantees, not what the emulator enforces: every run in Splendor was started by a soak
pipeline, so every one of them must be accounted for (a failed attempt, a run whose injected ingest
failure the pipeline reported, or the run a finished phase reported). A succeeded run nobody reported
is an orphan (its data was never handed on, or handed on behind the user's back) and a second
succeeded run in one phase is a duplicate sync: both are violations.
"""

import itertools
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from soak.jobs import FINAL_ERRORS, Report

STEPS = (
    "validate",
    "preflight",
    "discover",
    "create",
    "provision",
    "connect",
    "sync",
    "poll",
    "ingest",
)
# StepError's shape: "[step] source 'key': what happened — what to do".
CLEAR_CAUSE = re.compile(r"\[(?P<step>[a-z-]+)\] source '(?P<key>[^']+)': \S")
# A Prefect API that stayed unavailable past the client's retries (PrefectUnavailable): no step had
# it, since creating the flow run can be what failed; the line names Prefect, what it did, what to do.
PREFECT_OUTAGE = re.compile(r"^Prefect API at \S+ unavailable: \S.* — \S")


@dataclass
class Findings:
    violations: list[str] = field(default_factory=list)
    orphaned_runs: int = 0
    duplicate_runs: int = 0
    zero_record_runs: int = 0
    failed_runs: int = 0
    ingest_failed_runs: int = 0

    def add(self, rule: str, detail: str) -> None:
        self.violations.append(f"{rule}: {detail}")


def _ts(value: str | None) -> float | None:
    return datetime.fromisoformat(value).timestamp() if value else None


def clear_cause(report: Report) -> bool:
    """A failure names the step and the source it happened to, or says the Prefect API was away."""
    if PREFECT_OUTAGE.match(report.error or ""):
        return True
    match = CLEAR_CAUSE.search(report.error or "")
    return bool(match and match["step"] in STEPS and match["key"] == report.source_key)


def failed_where(report: Report) -> str:
    """The step a failure names, "prefect" for a Prefect API outage, "?" when it names none."""
    if PREFECT_OUTAGE.match(report.error or ""):
        return "prefect"
    match = CLEAR_CAUSE.search(report.error or "")
    return match["step"] if match else "?"


def check(
    state: dict[str, Any],
    reports: list[Report],
    finals: dict[tuple[int, str], Report],
    expected_phases: dict[int, list[str]],
    resumes: dict[tuple[int, str], int],
    max_resumes: int,
) -> Findings:
    """`finals` maps (pipeline, phase) to the last report; `resumes` counts resumes after failures."""
    found = Findings()
    sources_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for source in state["sources"]:
        sources_by_key[source["source_key"]].append(source)
    runs = {r["run_id"]: r for r in state["runs"]}
    ingest_by_run: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ingest in state["ingest_runs"]:
        if ingest["connector_run_id"] is not None:
            ingest_by_run[ingest["connector_run_id"]].append(ingest)

    # 1. Every source exists exactly once.
    keys = {r.source_key for r in reports}
    for key in sorted(keys):
        if len(sources_by_key.get(key, [])) > 1:
            found.add("source exactly once", f"{key} exists {len(sources_by_key[key])} times")
    for (pipeline, phase), final in finals.items():
        if final.event == "done" and not sources_by_key.get(final.source_key):
            found.add(
                "source exactly once",
                f"pipeline {pipeline} {phase} succeeded but {final.source_key} is missing",
            )

    # 2. One run in flight per source: each run starts after the previous one ended.
    by_source: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for run in runs.values():
        by_source[run["source_id"]].append(run)
    for source_id, items in by_source.items():
        items.sort(key=lambda r: (_ts(r["created_at"]) or 0.0, r["run_id"]))
        for before, after in itertools.pairwise(items):
            ended = _ts(before["completed_at"])
            if ended is None or (_ts(after["created_at"]) or 0.0) < ended:
                found.add(
                    "no overlapping runs",
                    f"source {source_id}: run {after['run_id']} started while run {before['run_id']} ran",
                )

    # 3. What users were told is true, and every reported succeeded run was enqueued exactly once.
    reported_runs: set[int] = set()
    for (pipeline, phase), final in finals.items():
        if final.event != "done" or final.run_id is None:
            continue
        reported_runs.add(final.run_id)
        run = runs.get(final.run_id)
        if run is None:
            found.add("reported run exists", f"pipeline {pipeline} {phase}: run {final.run_id} unknown")
            continue
        if run["status"] != "succeeded" or final.run_status != "succeeded":
            found.add(
                "reported run succeeded", f"run {final.run_id}: API {run['status']}, told {final.run_status}"
            )
        files = [f for f in run.get("files", []) if f["records"] > 0]
        ingests = ingest_by_run.get(final.run_id, [])
        if files:
            ids = [i["ingest_run_id"] for i in ingests]
            if len(ingests) != len(files) or len(set(ids)) != len(ids):
                found.add(
                    "enqueued exactly once",
                    f"run {final.run_id}: {len(files)} landed file(s), {len(ingests)} ingest run(s)",
                )
            if sorted(ids) != sorted(final.ingest_run_ids):
                found.add(
                    "ingest reported", f"run {final.run_id}: told {final.ingest_run_ids}, API has {ids}"
                )
            not_ready = [i["ingest_run_id"] for i in ingests if i["status"] != "ready"]
            if not_ready:
                found.add("ingest ready", f"run {final.run_id}: {not_ready} not ready though reported done")
        else:
            found.zero_record_runs += 1
            if ingests:
                found.add("nothing to ingest", f"run {final.run_id} landed nothing but has ingest runs")

    # Every other run must be accounted for: a failed attempt (the pipeline started another one) or a
    # run whose injected ingestion failure its pipeline reported. A succeeded run outside both is an
    # orphan; on a source whose phases already reported their runs it is a duplicate sync.
    reported_by_source: dict[int, int] = defaultdict(int)
    for run_id in reported_runs:
        if run_id in runs:
            reported_by_source[runs[run_id]["source_id"]] += 1
    for run_id, run in sorted(runs.items()):
        if run_id in reported_runs:
            continue
        ingests = ingest_by_run.get(run_id, [])
        if run["status"] in ("failed", "cancelled"):
            found.failed_runs += 1
        elif any(i["status"] == "failed" for i in ingests):
            found.ingest_failed_runs += 1
        elif run["status"] == "succeeded":
            enqueued = "enqueued" if ingests else "never enqueued"
            if reported_by_source[run["source_id"]]:
                found.duplicate_runs += 1
                rule = "no duplicate sync"
            else:
                found.orphaned_runs += 1
                rule = "no orphaned run"
            found.add(
                rule, f"source {run['source_id']}: run {run_id} succeeded, nobody reported it ({enqueued})"
            )
        else:
            found.add("run finished", f"source {run['source_id']}: run {run_id} still {run['status']}")

    # 4. No pipeline stuck: each phase ended on its own within the resume budget, succeeded or failed with
    # a permanent cause. The runner stops resuming at `max_resumes`, so a phase still failing with a
    # resumable error then did not end, it was given up on: a resume that cannot get further (e.g. one
    # that counts the earlier attempts against its own budget) shows up here.
    for pipeline, phases in expected_phases.items():
        for phase in phases:
            outcome = finals.get((pipeline, phase))
            used = resumes.get((pipeline, phase), 0)
            if outcome is None or outcome.event == "start":
                found.add("not stuck", f"pipeline {pipeline} {phase} has no final outcome")
            elif outcome.event == "failed" and outcome.error_type not in FINAL_ERRORS and used >= max_resumes:
                found.add(
                    "not stuck",
                    f"pipeline {pipeline} {phase} still failing after {used} resumes: {outcome.error}",
                )

    # 5. Every failure, final or resumed later, names its step and source (or the Prefect outage).
    for report in reports:
        if report.event == "failed" and not clear_cause(report):
            found.add(
                "clear cause",
                f"pipeline {report.pipeline} {report.phase}: {report.error_type}: {report.error}",
            )
    return found
