"""`splendor-flows repair`: a table of what was repaired, and one error line with exit 1 for what could
not be (or for a source that does not exist)."""

from splendor_emulator import Emulator
from tests.cli.test_cli_failures import run_cli
from tests.flows.test_repair_ingest import onboard_with_failed_ingest

ADMIN = "acme-admin-token"


def error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error: ")]


async def test_an_unknown_source_is_one_error_line(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "repair", "no-such-source")
    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    [line] = error_lines(output)
    says = "[repair] source 'no-such-source': no such source in the tenant"
    assert says in line
    # Stated once: Prefect's own copies of the failure stay off the terminal.
    assert sum(says in text for text in output.splitlines()) == 1, output


async def test_repaired_then_nothing_left(emulator: Emulator, source_key: str, stripe_secret: str) -> None:
    _, run_id = await onboard_with_failed_ingest(emulator, source_key)

    result = run_cli(emulator, ADMIN, "repair", source_key, "--run", str(run_id), columns=200)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 repaired" in result.stdout and "parse_failed" in result.stdout

    again = run_cli(emulator, ADMIN, "repair", source_key)
    assert again.returncode == 0 and f"{source_key}: no failed ingest run to repair" in again.stdout


async def test_a_permanent_failure_exits_1_with_one_line(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    _, run_id = await onboard_with_failed_ingest(emulator, source_key, "unsupported_format")

    enqueued = emulator.count("POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest")
    listed = run_cli(emulator, ADMIN, "repair", source_key, "--list", columns=200)
    assert listed.returncode == 0, listed.stdout + listed.stderr
    [row] = [line for line in listed.stdout.splitlines() if "unsupported_format" in line]
    assert f"│ {run_id} " in row and "│ no " in row  # the run, its error code, not repairable

    result = run_cli(emulator, ADMIN, "repair", source_key, columns=200)

    output = result.stdout + result.stderr
    assert result.returncode == 1 and "Traceback" not in output, output
    assert "unsupported_format" in result.stdout  # the table says why
    assert error_lines(output) == [f"error: 1 run(s) of {source_key} not repaired: run {run_id} permanent"]
    # Neither listing nor a permanent failure queues anything.
    assert emulator.count("POST /v1/admin/airbyte-sources/{source_id}/enqueue-ingest") == enqueued


async def test_out_of_range_bounds_are_refused_before_any_call(emulator: Emulator) -> None:
    before = emulator.count("GET /v1/admin/sources")
    result = run_cli(emulator, ADMIN, "repair", "any-source", "--max-attempts", "0", columns=200)
    assert (
        result.returncode == 2
        and "--max-attempts" in result.stderr
        and "greater than or equal to 1" in result.stderr
    )
    assert emulator.count("GET /v1/admin/sources") == before
