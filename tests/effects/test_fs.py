"""FsAdapter: confinement to the workspace, atomic writes, crash confirmation."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.effects.fs import FsAdapter


def _call(
    op: str, target: str, key: str = "key-1", limits: dict[str, Any] | None = None, **params: Any
) -> EffectCall:
    return EffectCall(op, target, key, params, limits or {})


def run(fs: FsAdapter, op: str, target: str, **kw: Any) -> Any:
    return asyncio.run(fs.execute(_call(op, target, **kw))).value


def code(fs: FsAdapter, op: str, target: str, **kw: Any) -> str:
    with pytest.raises(EffectError) as info:
        run(fs, op, target, **kw)
    return info.value.code


def confirm(fs: FsAdapter, op: str, target: str, **kw: Any) -> EffectResult | None:
    return asyncio.run(fs.confirm(_call(op, target, **kw)))


def temp_name(key: str, name: str) -> str:
    return ".maos-tmp-" + hashlib.sha256(f"{key}\0{name}".encode()).hexdigest()[:16]


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    out.mkdir()
    (out / "secret").write_text("top secret")
    return out


@pytest.fixture
def fs(tmp_path: Path) -> FsAdapter:
    return FsAdapter(tmp_path / "ws")


def test_workspace_root_is_created_when_missing(tmp_path: Path) -> None:
    FsAdapter(tmp_path / "a" / "b")
    assert (tmp_path / "a" / "b").is_dir()


def test_write_then_read_round_trips_text_with_its_digest(fs: FsAdapter) -> None:
    wrote = run(fs, "fs.write", "notes/today.txt", content="héllo")
    got = run(fs, "fs.read", "notes/today.txt")
    digest = hashlib.sha256("héllo".encode()).hexdigest()
    assert got == {"content": "héllo", "sha256": digest, "size": 6}
    assert wrote == {"path": "notes/today.txt", "sha256": digest, "size": 6}


def test_binary_content_round_trips_as_base64(fs: FsAdapter) -> None:
    raw = bytes(range(256))
    run(fs, "fs.write", "blob.bin", content_b64=base64.b64encode(raw).decode())
    got = run(fs, "fs.read", "blob.bin")
    assert "content" not in got
    assert base64.b64decode(got["content_b64"]) == raw


@pytest.mark.parametrize("target", ["../x", "a/../../x", "a/../b", "/etc/passwd", "/tmp/x"])
@pytest.mark.parametrize("op", ["fs.read", "fs.write", "fs.delete", "fs.list"])
def test_traversal_and_absolute_targets_escape(fs: FsAdapter, op: str, target: str) -> None:
    assert code(fs, op, target, content="x") == "EFFECT.FS.ESCAPE"
    assert not (fs.root.parent / "x").exists()


def test_nul_byte_in_path_is_refused(fs: FsAdapter) -> None:
    assert code(fs, "fs.write", "a\x00b", content="x") == "EFFECT.FS.BAD_PATH"


def test_root_itself_is_not_a_file(fs: FsAdapter) -> None:
    assert code(fs, "fs.read", ".") == "EFFECT.FS.BAD_PATH"


def test_symlink_to_a_file_outside_is_refused_for_every_op(fs: FsAdapter, outside: Path) -> None:
    (fs.root / "link").symlink_to(outside / "secret")
    assert code(fs, "fs.read", "link") == "EFFECT.FS.SYMLINK"
    assert code(fs, "fs.write", "link", content="pwned") == "EFFECT.FS.SYMLINK"
    assert code(fs, "fs.delete", "link") == "EFFECT.FS.SYMLINK"
    assert (outside / "secret").read_text() == "top secret"


def test_symlinked_directory_component_is_refused(fs: FsAdapter, outside: Path) -> None:
    (fs.root / "d").symlink_to(outside)
    assert code(fs, "fs.read", "d/secret") == "EFFECT.FS.SYMLINK"
    assert code(fs, "fs.write", "d/new", content="x") == "EFFECT.FS.SYMLINK"
    assert code(fs, "fs.list", "d") == "EFFECT.FS.SYMLINK"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_symlink_that_stays_inside_is_refused_too(fs: FsAdapter) -> None:
    run(fs, "fs.write", "real.txt", content="x")
    (fs.root / "alias").symlink_to(fs.root / "real.txt")
    assert code(fs, "fs.read", "alias") == "EFFECT.FS.SYMLINK"


def test_directory_swapped_for_a_symlink_after_creation_is_refused(
    fs: FsAdapter, outside: Path
) -> None:
    run(fs, "fs.write", "sub/f.txt", content="first")
    (fs.root / "sub").rename(fs.root / "moved")
    (fs.root / "sub").symlink_to(outside)
    assert code(fs, "fs.write", "sub/f.txt", content="second") == "EFFECT.FS.SYMLINK"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]


def test_racing_symlink_swaps_never_let_a_write_escape(fs: FsAdapter, outside: Path) -> None:
    stop = threading.Event()
    sub = fs.root / "sub"
    sub.mkdir()

    def swapper() -> None:
        """Dir -> symlink to outside -> dir again, forever; steps may fail mid-write."""
        i = 0
        while not stop.is_set():
            i += 1
            aside = fs.root / f"aside-{i}"  # fresh name: a dir the write created never blocks
            with contextlib.suppress(OSError):
                sub.rename(aside)
            with contextlib.suppress(OSError):
                sub.symlink_to(outside)
            with contextlib.suppress(OSError):
                sub.unlink()
            with contextlib.suppress(OSError):
                aside.rename(sub)

    async def writes() -> set[str]:
        codes: set[str] = set()
        for n in range(300):
            try:
                await fs.execute(_call("fs.write", "sub/f.txt", key=f"k{n}", content="x"))
            except EffectError as exc:
                codes.add(exc.code)
        return codes

    thread = threading.Thread(target=swapper)
    thread.start()
    try:
        codes = asyncio.run(writes())
    finally:
        stop.set()
        thread.join()
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    assert codes <= {"EFFECT.FS.SYMLINK", "EFFECT.FS.NOT_FOUND", "EFFECT.FS.NOT_A_DIRECTORY"}


def test_concurrent_reader_sees_old_or_new_content_never_a_mix(fs: FsAdapter) -> None:
    old, new = "a" * 300_000, "b" * 300_000
    run(fs, "fs.write", "f.txt", content=old)
    target = fs.root / "f.txt"
    seen: set[str] = set()
    done = threading.Event()

    def reader() -> None:
        while True:
            finished = done.is_set()
            seen.add(target.read_text())
            if finished:
                return

    async def writes() -> None:
        for n in range(60):
            content = new if n % 2 == 0 else old
            await fs.execute(_call("fs.write", "f.txt", key=f"k{n}", content=content))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        asyncio.run(writes())
    finally:
        done.set()
        thread.join()
    assert seen <= {old, new}
    assert sorted(p.name for p in fs.root.iterdir()) == ["f.txt"]


def test_temp_file_left_by_a_crash_is_replaced_not_trusted(fs: FsAdapter, outside: Path) -> None:
    (fs.root / temp_name("k", "f.txt")).symlink_to(outside / "secret")
    run(fs, "fs.write", "f.txt", key="k", content="fresh")
    assert (fs.root / "f.txt").read_text() == "fresh"
    assert (outside / "secret").read_text() == "top secret"
    assert sorted(p.name for p in fs.root.iterdir()) == ["f.txt"]


def test_create_mode_refuses_an_existing_file(fs: FsAdapter) -> None:
    run(fs, "fs.write", "f.txt", content="original", mode="create")
    assert code(fs, "fs.write", "f.txt", content="other", mode="create") == "EFFECT.FS.EXISTS"
    assert (fs.root / "f.txt").read_text() == "original"
    assert sorted(p.name for p in fs.root.iterdir()) == ["f.txt"]


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"content": "a", "content_b64": "YQ=="},
        {"content_b64": "!!"},
        {"content": 3},
        {"content": "a", "mode": "append"},
    ],
)
def test_malformed_write_params_are_refused(fs: FsAdapter, params: dict[str, Any]) -> None:
    assert code(fs, "fs.write", "f.txt", **params) == "EFFECT.FS.BAD_PARAMS"


def test_size_cap_applies_to_reads_and_writes(fs: FsAdapter) -> None:
    (fs.root / "big").write_bytes(b"z" * 101)
    limits = {"max_bytes": 100}
    assert code(fs, "fs.read", "big", limits=limits) == "EFFECT.FS.TOO_LARGE"
    assert code(fs, "fs.write", "w", limits=limits, content="z" * 101) == "EFFECT.FS.TOO_LARGE"
    assert run(fs, "fs.read", "big", limits={"max_bytes": 101})["size"] == 101


def test_missing_files_are_not_found(fs: FsAdapter) -> None:
    assert code(fs, "fs.read", "nope") == "EFFECT.FS.NOT_FOUND"
    assert code(fs, "fs.read", "no/such/dir/f") == "EFFECT.FS.NOT_FOUND"
    assert code(fs, "fs.delete", "nope") == "EFFECT.FS.NOT_FOUND"
    assert code(fs, "fs.list", "nope") == "EFFECT.FS.NOT_FOUND"


def test_a_file_used_as_a_directory_is_refused(fs: FsAdapter) -> None:
    run(fs, "fs.write", "f", content="x")
    assert code(fs, "fs.read", "f/g") == "EFFECT.FS.NOT_A_DIRECTORY"


def test_fifo_is_refused_without_blocking(fs: FsAdapter) -> None:
    os.mkfifo(fs.root / "pipe")
    assert code(fs, "fs.read", "pipe") == "EFFECT.FS.NOT_A_FILE"


def test_delete_removes_files_but_not_directories(fs: FsAdapter) -> None:
    run(fs, "fs.write", "d/f", content="x")
    assert code(fs, "fs.delete", "d") == "EFFECT.FS.NOT_A_FILE"
    assert run(fs, "fs.delete", "d/f") == {"path": "d/f", "deleted": True}
    assert not (fs.root / "d" / "f").exists()


def test_list_is_sorted_typed_sized_and_hides_temp_files(fs: FsAdapter) -> None:
    run(fs, "fs.write", "b.txt", content="12345")
    run(fs, "fs.write", "a/inner", content="x")
    (fs.root / "c").symlink_to("b.txt")
    (fs.root / temp_name("crashed", "x")).write_text("partial")
    assert run(fs, "fs.list", ".")["entries"] == [
        {"name": "a", "type": "dir", "size": 0},
        {"name": "b.txt", "type": "file", "size": 5},
        {"name": "c", "type": "symlink", "size": 0},
    ]
    assert run(fs, "fs.list", "")["entries"] == run(fs, "fs.list", ".")["entries"]
    limits = {"max_entries": 2}
    assert code(fs, "fs.list", ".", limits=limits) == "EFFECT.FS.TOO_LARGE"


def test_confirm_write_proves_only_the_same_content(fs: FsAdapter) -> None:
    kw: dict[str, Any] = {"key": "w1", "content": "payload"}
    assert confirm(fs, "fs.write", "d/f.txt", **kw) is None  # no parent dir yet
    run(fs, "fs.write", "d/f.txt", **kw)
    result = confirm(fs, "fs.write", "d/f.txt", **kw)
    assert result is not None
    assert result.value["sha256"] == hashlib.sha256(b"payload").hexdigest()
    (fs.root / "d" / "f.txt").write_text("someone else's")
    assert confirm(fs, "fs.write", "d/f.txt", **kw) is None


def test_confirm_after_a_crash_following_the_rename_cleans_up(fs: FsAdapter) -> None:
    (fs.root / "f.txt").write_text("payload")
    (fs.root / temp_name("w1", "f.txt")).write_text("payload")  # the link/unlink never finished
    assert confirm(fs, "fs.write", "f.txt", key="w1", content="payload") is not None
    assert sorted(p.name for p in fs.root.iterdir()) == ["f.txt"]


def test_crash_before_the_rename_is_not_confirmed_and_the_redo_completes(fs: FsAdapter) -> None:
    (fs.root / "f.txt").write_text("old")
    (fs.root / temp_name("w1", "f.txt")).write_text("pay")  # torn temp file
    assert confirm(fs, "fs.write", "f.txt", key="w1", content="payload") is None
    run(fs, "fs.write", "f.txt", key="w1", content="payload")
    assert (fs.root / "f.txt").read_text() == "payload"
    assert sorted(p.name for p in fs.root.iterdir()) == ["f.txt"]


def test_confirm_write_through_a_symlink_is_not_proof(fs: FsAdapter, outside: Path) -> None:
    (fs.root / "link").symlink_to(outside / "secret")
    assert confirm(fs, "fs.write", "link", content="top secret") is None


def test_confirm_delete_proves_absence(fs: FsAdapter) -> None:
    run(fs, "fs.write", "d/f", content="x")
    assert confirm(fs, "fs.delete", "d/f") is None
    run(fs, "fs.delete", "d/f")
    assert confirm(fs, "fs.delete", "d/f") is not None
    assert confirm(fs, "fs.delete", "gone/dir/f") is not None


def test_reads_are_redone_rather_than_confirmed(fs: FsAdapter) -> None:
    run(fs, "fs.write", "f", content="x")
    assert confirm(fs, "fs.read", "f") is None
    assert confirm(fs, "fs.list", ".") is None


def test_every_op_is_idempotent_and_unknown_ops_are_refused(fs: FsAdapter) -> None:
    assert all(fs.idempotent(EffectCall(op, "f", "k")) for op in fs.ops)
    assert not fs.idempotent(EffectCall("fs.chmod", "f", "k"))
    assert code(fs, "fs.chmod", "f") == "EFFECT.FS.UNKNOWN_OP"
