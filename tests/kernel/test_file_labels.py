"""A file cannot launder a label: it reads back at least what its writers held.

Found by the scenario suite (files-secret-laundered-through-file): an agent holding a
secret wrote it under a path the plan labels public, and a second agent mailed it.
"""

from __future__ import annotations

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.labels import Conf, Integrity, Label
from maos.kernel.tokens import Grant
from maos.kernel.types import OutcomeStatus
from maos.testing import intent_frame, with_kernel

UNTRUSTED_PAGE = Label(Conf.PUBLIC, Integrity.UNTRUSTED, frozenset({"url:https://x.example/"}))
RULES = [
    {"prefix": "secrets/", "conf": "confidential", "integrity": "trusted"},
    {"prefix": "public/", "conf": "public", "integrity": "trusted"},
]


async def _setup(k: Kernel) -> dict[str, str]:
    for agent in ("writer", "mailer"):
        await k.register_agent(agent, ring=3)
    await k.open_task("t1", trusted_targets=["boss@example.com"], label_rules=RULES)
    (k.config.workspaces / "t1" / "secrets").mkdir(parents=True)
    (k.config.workspaces / "t1" / "secrets" / "key.txt").write_text("AKIA-SECRET")
    grants = [Grant("fs.*", "*"), Grant("email.send", "*")]
    return {a: k.mint(a, "t1", grants) for a in ("writer", "mailer")}


def test_a_secret_written_under_a_public_path_reads_back_confidential(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        tokens = await _setup(k)
        w, m = tokens["writer"], tokens["mailer"]
        await k.submit(intent_frame(w, "fs.read", "secrets/key.txt", "r1"), agent_id="writer")
        wrote = await k.submit(
            intent_frame(w, "fs.write", "./public/out.txt", "w1", content="AKIA-SECRET"),
            agent_id="writer",
        )
        assert wrote.status is OutcomeStatus.COMMITTED
        read = await k.submit(intent_frame(m, "fs.read", "public/out.txt", "r2"), agent_id="mailer")
        assert read.label.conf is Conf.CONFIDENTIAL
        sent = await k.submit(
            intent_frame(
                m, "email.send", "boss@example.com", "m1", subject="s", body="AKIA-SECRET"
            ),
            agent_id="mailer",
        )
        assert sent.code == "RULE.R6.IFC_DOWNFLOW"

    with_kernel(config, body)


def test_a_file_label_survives_a_restart_and_untrusted_writes_taint_integrity(
    config: KernelConfig,
) -> None:
    async def first(k: Kernel) -> None:
        tokens = await _setup(k)
        await k.raise_context("writer", UNTRUSTED_PAGE)
        frame = intent_frame(tokens["writer"], "fs.write", "public/notes.txt", "w", content="x")
        assert (await k.submit(frame, agent_id="writer")).status is OutcomeStatus.COMMITTED

    with_kernel(config, first)

    async def second(k: Kernel) -> None:  # another process: the label is folded from the log
        token = k.mint("mailer", "t1", [Grant("fs.read", "*")])
        read = await k.submit(
            intent_frame(token, "fs.read", "public/notes.txt", "r"), agent_id="mailer"
        )
        assert read.label.integrity is Integrity.UNTRUSTED
        assert read.label.conf is Conf.PUBLIC

    with_kernel(config, second)


def test_a_plain_write_adds_no_record(config: KernelConfig) -> None:
    async def body(k: Kernel) -> None:
        tokens = await _setup(k)
        frame = intent_frame(tokens["writer"], "fs.write", "public/a.txt", "w", content="hi")
        await k.submit(frame, agent_id="writer")
        assert not [r for r in k.wal.read() if r.kind == "fs.labelled"]

    with_kernel(config, body)
