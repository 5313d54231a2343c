"""`maos token mint|inspect` say the truth about a token (issue 9): no token for an op
that does not exist, and inspect tells valid from expired and revoked, by its exit code
too. Against a real data dir, its real keys and its log."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.errors import TokenError
from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant, TokenAuthority
from maos.kernel.wal import Wal


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    config = KernelConfig(data_dir=tmp_path / "data")
    config.save()

    async def setup() -> None:
        async with await Kernel.boot(config, follow=False) as k:
            await k.register_agent("a1", ring=3)
            await k.open_task("t1")

    asyncio.run(setup())
    return config.data_dir


def maos(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output


def records(data_dir: Path) -> int:
    wal = Wal(data_dir / "wal.sqlite3")
    try:
        return wal.tail_seq()
    finally:
        wal.close()


def mint(data_dir: Path, grant: str) -> tuple[int, str]:
    return maos(
        "token", "mint", "--agent", "a1", "--task", "t1", "--grant", grant, "-d", str(data_dir)
    )


@pytest.mark.parametrize("grant", ["fs.nuke|*", "tool.no_such_tool|*", "nuke.*|*"])
def test_mint_refuses_a_grant_for_an_op_that_does_not_exist(data_dir: Path, grant: str) -> None:
    """issue 9: `token mint --grant 'fs.nuke|*'` minted a token for a nonexistent op."""
    before = records(data_dir)
    code, out = mint(data_dir, grant)
    assert code == 2 and "error TOKEN.UNKNOWN_OP" in out, out
    assert "tool.*" in out and "fs.read" in out  # what may be granted instead
    assert records(data_dir) == before  # nothing minted, nothing logged


@pytest.mark.parametrize("grant", ["fs.read|*", "fs.*|*", "tool.*|*"])
def test_mint_takes_known_ops_families_and_every_tool(data_dir: Path, grant: str) -> None:
    code, out = mint(data_dir, grant)
    assert code == 0 and out.strip().count(" ") == 0, out


def test_mint_refuses_a_malformed_op_with_a_code(data_dir: Path) -> None:
    code, out = mint(data_dir, "*|*")
    assert code == 2 and "error TOKEN.BAD_GRANT" in out, out


def test_the_kernel_refuses_the_same_grants(data_dir: Path) -> None:
    async def go() -> str:
        async with await Kernel.boot(KernelConfig.load(data_dir), follow=False) as k:
            with pytest.raises(TokenError) as refused:
                k.mint("a1", "t1", [Grant("fs.read", "*"), Grant("fs.nuke", "*")])
            return refused.value.code

    assert asyncio.run(go()) == "TOKEN.UNKNOWN_OP"


def inspect(data_dir: Path, token: str) -> tuple[int, dict[str, object]]:
    code, out = maos("token", "inspect", token, "-d", str(data_dir))
    return code, json.loads(out)


def test_inspect_says_valid_then_revoked_with_dates_and_exit_codes(data_dir: Path) -> None:
    """issue 9: inspect showed a revoked token like a valid one, with epoch floats."""
    code, token = mint(data_dir, "fs.write|reports/*")
    assert code == 0
    code, info = inspect(data_dir, token.strip())
    assert code == 0 and info["status"] == "valid" and info["accepted_now"] is True
    expires = str(info["expires_at"])
    assert expires.endswith("Z") and expires[:4].isdigit() and "T" in expires
    assert maos("token", "revoke", token.strip(), "-d", str(data_dir))[0] == 0
    code, info = inspect(data_dir, token.strip())
    assert code == 1 and info["status"] == "revoked" and info["accepted_now"] is False


def test_inspect_says_expired(data_dir: Path) -> None:
    cfg = KernelConfig.load(data_dir)
    authority = TokenAuthority(data_dir / "keys", cfg.node_id, cfg.node_type)
    old = authority.mint(
        agent_id="a1", task_id="t1", grants=[Grant("fs.read", "*")], now=time.time() - 7200
    )
    code, info = inspect(data_dir, old)
    assert code == 1 and info["status"] == "expired" and info["refused_because"] == ["expired"]
    assert int(str(info["expires_in_s"])) < 0
    foreign = authority.mint(
        agent_id="a1", task_id="t1", grants=[Grant("fs.read", "*")], now=time.time(), audience="x"
    )
    code, info = inspect(data_dir, foreign)
    assert code == 1 and info["status"] == "wrong_audience"
