"""`python -m soak`: run the chaos soak and print its table. Exit code 1 on any invariant violation."""

import argparse
import sys
from dataclasses import fields

from soak.runner import SoakConfig, SoakResult, run_soak


def table(result: SoakResult) -> str:
    c = result.config
    faults = ", ".join(f"{kind} {n}" for kind, n in sorted(result.faults.items()))
    f = result.findings
    rows = [
        ("pipelines (connect + sync)", f"{result.pipelines}"),
        ("phases succeeded / failed (final)", f"{result.phases_done} / {result.phases_failed}"),
        ("faults injected (fired)", f"{sum(result.faults.values())}"),
        ("  by kind", faults or "-"),
        (
            "resumes (same sync_id, new process)",
            f"{result.resumes} ({result.resumes_after_kill} after SIGKILL, "
            f"{result.resumes_after_failure} after a failed run)",
        ),
        ("flow processes SIGKILLed", f"{result.kills}"),
        ("emulator crashes (SIGKILL + restart on --state)", f"{result.emulator_restarts}"),
        ("zero-record runs reported with a warning", f"{f.zero_record_runs}"),
        ("failed connector runs (injected run_fail)", f"{f.failed_runs}"),
        ("runs whose ingestion failed (injected ingest_fail)", f"{f.ingest_failed_runs}"),
        ("succeeded runs nobody reported: orphans / duplicates", f"{f.orphaned_runs} / {f.duplicate_runs}"),
        ("invariant violations", f"{len(f.violations)}"),
        ("wall time", f"{result.wall_seconds:.0f} s"),
        (
            "setup",
            f"{c.workers} workers x {c.concurrency} pipelines, sync {c.sync_seconds} s, "
            f"read timeout {c.read_timeout} s, prefect server healthy in {result.prefect_startup:.1f} s, "
            f"emulator restart <= {result.emulator_startup:.1f} s",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"| {'what'.ljust(width)} | figure |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {name.ljust(width)} | {value} |" for name, value in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m soak", description=__doc__)
    defaults = SoakConfig()
    for item in fields(SoakConfig):
        value = getattr(defaults, item.name)
        flag = "--" + item.name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action="store_true")
        else:
            parser.add_argument(flag, type=type(value), default=value)
    args = parser.parse_args(argv)
    config = SoakConfig(**{item.name: getattr(args, item.name) for item in fields(SoakConfig)})
    result = run_soak(config)
    print(table(result))
    for violation in result.findings.violations:
        print("VIOLATION", violation, file=sys.stderr)
    if result.failures_by_step:
        print("failures seen (then resumed) by step:", dict(result.failures_by_step), file=sys.stderr)
    if config.keep:
        print(f"work dir kept: {result.workdir}", file=sys.stderr)
    return 1 if result.findings.violations else 0


if __name__ == "__main__":
    sys.exit(main())
