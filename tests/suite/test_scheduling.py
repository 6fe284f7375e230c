"""The names tests/conftest.py schedules the suite by still name tests and files that exist: a renamed
test or file would otherwise drop silently out of its group or out of the long-first order."""

from tests.conftest import FILE_GROUPS, LONG_FIRST, REPO, STACK_GROUPS, group_of, long_first_rank


def test_every_long_first_entry_is_a_test_that_exists() -> None:
    for nodeid in LONG_FIRST:
        path, name = nodeid.split("::")
        assert f"def {name}(" in (REPO / path).read_text(), nodeid


def test_every_grouped_file_exists() -> None:
    for path in FILE_GROUPS:
        assert (REPO / path).is_file(), path
    for key in STACK_GROUPS:
        filename, _, test = key.partition("::")
        path = REPO / "tests" / "e2e_stack" / filename
        assert path.is_file(), key
        assert not test or f"def {test.split('[')[0]}(" in path.read_text(), key


def test_long_tests_go_out_in_the_listed_order_before_everything_else() -> None:
    ranks = [long_first_rank(nodeid) for nodeid in LONG_FIRST]
    assert ranks == sorted(ranks) == list(range(len(LONG_FIRST)))
    assert long_first_rank("tests/flows/test_crash.py::another_test") == len(LONG_FIRST)


def test_groups_follow_files_and_packages() -> None:
    assert group_of("tests/e2e_stack/test_stack_schedule.py::test_x") == "e2e_stack-2"
    assert group_of("tests/e2e_stack/test_stack_new.py::test_x") == "e2e_stack-1"
    outages = "tests/e2e_stack/test_stack_outages.py::test_a_sync_in_flight_survives_a_restart_of_the"
    assert group_of(f"{outages}[postgres]") == "e2e_stack-2"
    assert group_of(f"{outages}[server]") == "e2e_stack-1"
    assert group_of("tests/e2e/test_e2e_6_source_lock.py::test_x") == "browser"
    assert group_of("tests/e2e/test_e2e_2_runs.py::test_x") == "e2e"
    assert group_of("tests/flows/test_crash.py::test_x") is None
