"""How `make test` spreads its serial pass over xdist workers (`--dist loadgroup`): which tests
must share one worker (tests/conftest.py)."""

from __future__ import annotations

import pytest

from tests.conftest import SERIAL_FIXTURES, serial_group_of


@pytest.mark.parametrize("fixture", sorted(SERIAL_FIXTURES))
def test_the_image_layouts_tests_share_one_worker_wherever_they_are(fixture: str) -> None:
    # One runtime user: a test's cleanup ends that user's processes, so none may overlap
    assert serial_group_of("worker/test_image.py", {fixture}) == "runtime-user"
    assert serial_group_of("e2e/test_local_stack.py", {"stack", fixture}) == "runtime-user"


def test_the_e2e_session_stacks_tests_share_one_worker() -> None:
    groups = {
        serial_group_of(where, {"stack", "alpha"})
        for where in ("e2e/test_local_stack.py", "e2e/test_files.py", "e2e/test_sessions.py")
    }
    assert groups == {"e2e-stack"}


def test_an_e2e_modules_own_stack_starts_once_and_other_modules_may_run_beside_it() -> None:
    fair = serial_group_of("e2e/test_fair_sharing.py", {"fair_stack"})
    assert fair == serial_group_of("e2e/test_fair_sharing.py", {"fair_stack", "tmp_path"})
    assert fair != serial_group_of("e2e/test_fresh_stack.py", {"tmp_path"})
    assert serial_group_of("e2e/test_fair_sharing.py", {"fair_stack"}) != "e2e-stack"


def test_other_serial_tests_may_run_on_any_worker() -> None:
    assert serial_group_of("worker/test_image.py", {"tmp_path"}) is None
