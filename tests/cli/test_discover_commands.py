"""`discover` and `catalog search` as a user runs them: subprocesses against the emulator."""

from splendor_emulator import Emulator
from splendor_emulator.catalog import definition_id
from splendor_flows.flows.connect_source import connect_source
from tests.cli.test_cli_failures import run_cli
from tests.flows.conftest import stripe_spec

ADMIN = "acme-admin-token"
ASANA = definition_id("airbyte/source-asana")


def one_error(output: str, says: str) -> None:
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and says in errors[0], output


def test_catalog_search_lists_matches(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "catalog", "search", "asana", columns=200)
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if ASANA in line)
    assert "Asana" in row and "airbyte/source-asana" in row and "1.3.3" in row


def test_catalog_search_without_match_is_one_error(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "catalog", "search", "no-such-connector-zz")
    assert result.returncode == 1
    one_error(result.stdout + result.stderr, "no catalog connector matches 'no-such-connector-zz'")


def test_discover_unknown_provider_is_one_error(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "discover", "nope")
    assert result.returncode == 1
    output = result.stdout + result.stderr
    one_error(output, "unknown provider_key 'nope' — choose one of:")
    assert "source '" not in output  # no source is involved: the step prefix is left out


def test_discover_catalog_definition_shows_its_credentials(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "discover", "--definition", ASANA, columns=200)
    assert result.returncode == 0, result.stderr
    assert "Asana" in result.stdout
    api_token = next(line for line in result.stdout.splitlines() if "api_token" in line)
    assert "yes" in api_token  # required, and a secret
    assert "--source SOURCE_KEY" in result.stdout


async def test_discover_source_lists_every_stream_with_proposed_roles(
    emulator: Emulator, source_key: str, stripe_secret: str
) -> None:
    await connect_source(spec=stripe_spec(source_key), sync=False)

    result = run_cli(emulator, ADMIN, "discover", "stripe", "--source", source_key, columns=220)

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    # A non-default stream is listed too, and each field carries its proposed role and the reason.
    assert any("subscriptions" in line and "status" in line and "vocabulary" in line for line in lines)
    description = next(line for line in lines if "charges" in line and "description" in line)
    assert "text" in description and "a free-text name" in description
    charges_id = next(line for line in lines if "charges" in line and " id " in line)
    assert "filter" in charges_id and "an identifier" in charges_id


def test_discover_source_of_another_connector_is_refused(emulator: Emulator) -> None:
    result = run_cli(emulator, ADMIN, "discover", "--definition", ASANA, "--source", "no-such-source-zz")
    assert result.returncode == 1
    one_error(result.stdout + result.stderr, "no source with source_key 'no-such-source-zz'")
