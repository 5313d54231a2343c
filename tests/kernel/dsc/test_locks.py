"""Check 6: leases and versions; the kernel executes lock intents, the check guards effects."""

from __future__ import annotations

import pytest
from dsc_support import NOW, code_of, make_input

from maos.kernel.dsc.locks import LockCheck, LockTable


def test_lease_excludes_other_owners_until_it_expires() -> None:
    table = LockTable()
    assert table.acquire("report.md", "a1", 30, NOW)
    assert not table.acquire("report.md", "a2", 30, NOW + 29)
    assert table.acquire("report.md", "a2", 30, NOW + 30)
    assert table.holder("report.md", NOW + 31) == "a2"


def test_owner_renews_and_releases_its_own_lease_only() -> None:
    table = LockTable()
    table.acquire("r", "a1", 10, NOW)
    assert table.acquire("r", "a1", 10, NOW + 5)
    assert table.holder("r", NOW + 12) == "a1"
    assert not table.release("r", "a2")
    assert table.release("r", "a1")
    assert table.holder("r", NOW + 12) is None


@pytest.mark.parametrize("lease", [0, -1, float("nan"), float("inf"), 3601])
def test_leases_must_be_bounded(lease: float) -> None:
    with pytest.raises(ValueError):
        LockTable().acquire("r", "a1", lease, NOW)


def test_versions_count_committed_writes() -> None:
    table = LockTable()
    assert table.version("a.txt") == 0
    assert table.bump("a.txt") == 1
    assert table.bump("./a.txt") == 2
    assert table.version("a.txt") == 2


def test_write_to_a_resource_locked_by_another_agent_is_denied() -> None:
    table = LockTable()
    table.acquire("report.md", "a2", 60, NOW)
    decision = LockCheck(table)(make_input("fs.write", "report.md"))
    assert code_of(decision) == "DSC.LOCK.HELD"
    assert "a2" in decision.reason  # type: ignore[union-attr]


def test_spelling_variants_of_a_path_hit_the_same_lock() -> None:
    table = LockTable()
    table.acquire("docs/report.md", "a2", 60, NOW)
    for spelling in ("./docs/report.md", "docs//report.md", "docs/x/../report.md"):
        assert code_of(LockCheck(table)(make_input("fs.write", spelling))) == "DSC.LOCK.HELD"


def test_every_target_is_guarded_not_just_the_first() -> None:
    table = LockTable()
    table.acquire("b.txt", "a2", 60, NOW)
    decision = LockCheck(table)(make_input("fs.delete", "a.txt", extra_targets=["b.txt"]))
    assert code_of(decision) == "DSC.LOCK.HELD"


def test_holder_itself_and_readers_pass() -> None:
    table = LockTable()
    table.acquire("report.md", "a1", 60, NOW)
    assert code_of(LockCheck(table)(make_input("fs.write", "report.md"))) == "ALLOW"
    assert code_of(LockCheck(table)(make_input("fs.read", "report.md", agent_id="a2"))) == "ALLOW"


def test_expired_lease_no_longer_blocks() -> None:
    table = LockTable()
    table.acquire("report.md", "a2", 10, NOW)
    assert code_of(LockCheck(table)(make_input("fs.write", "report.md", now=NOW + 10))) == "ALLOW"


def test_stale_expected_version_is_a_conflict() -> None:
    table = LockTable()
    table.bump("report.md")
    check = LockCheck(table)
    assert code_of(check(make_input("fs.write", "report.md", expected_version=1))) == "ALLOW"
    decision = check(make_input("fs.write", "report.md", expected_version=0))
    assert code_of(decision) == "DSC.LOCK.VERSION_CONFLICT"
    assert "version 1" in decision.reason  # type: ignore[union-attr]


def test_lock_intents_themselves_pass_for_the_kernel_to_execute() -> None:
    table = LockTable()
    table.acquire("report.md", "a2", 60, NOW)
    check = LockCheck(table)
    assert code_of(check(make_input("lock.acquire", "report.md", expected_version=7))) == "ALLOW"
    assert code_of(check(make_input("lock.release", "report.md"))) == "ALLOW"
