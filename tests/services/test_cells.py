"""Cell types (issue 12 item 10): every component declares its cell and LLM need,
Rule-Based Mode reads them, and `maos status` lists them with the services' health."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from maos.cli import app
from maos.kernel.kernel import Kernel, KernelConfig
from maos.services.cells import COMPONENTS, Cell, Component, cells_report
from maos.services.manager import SERVICES
from maos.testing import with_kernel


def test_every_service_is_a_component_with_its_seed_cell() -> None:
    names = {c.name for c in COMPONENTS}
    for service in SERVICES:
        if service.name != "beacon":
            assert service.title in names
    assert sum(c.needs_llm == "no" for c in COMPONENTS) >= 7


def test_rule_based_mode_keeps_what_needs_no_llm() -> None:
    now = {c["component"]: c["now"] for c in cells_report("rule_based")}
    assert now["Security Agent"] == "runs"
    assert now["Semantic Security Evaluator"] == "runs without its LLM part"
    assert now["agents (cognitive cells)"] == "waits for a provider"
    assert set(c["now"] for c in cells_report("normal")) == {"runs"}


def test_a_component_cannot_need_more_llm_than_its_cell() -> None:
    with pytest.raises(ValueError):
        Component("a thinking dispatcher", Cell.BONE, "0", "yes")


def test_status_lists_cells_and_services(config: KernelConfig) -> None:
    async def made(k: Kernel) -> None:
        cap = k.services.capability("manager")
        await k.services.submit(cap, "service.started", {"service": "security", "pid": 1})
        await k.services.submit(cap, "service.failed", {"service": "security"})

    with_kernel(config, made)
    out = CliRunner().invoke(app, ["status", "--json", "-d", str(config.data_dir)])
    assert out.exit_code == 0, out.output
    info = json.loads(out.output)
    assert info["services"]["security"]["state"] == "failed"
    cells = {c["component"]: c["cell"] for c in info["cells"]}
    assert cells["Message Router"] == "nerve" and cells["Watchdog"] == "bone"
    text = CliRunner().invoke(app, ["status", "-d", str(config.data_dir)]).output
    assert re.search(r"\n  security +process +critical +failed\n", text), text
    assert re.search(r"\n  router +task +critical +-\n", text), text  # every service, the
    assert re.search(r"\n  manager +kernel +critical +in kernel\n", text), text  # unlogged too
    assert "beacon" not in text  # but the supervision's own probe, which never ran here
    assert "cells" in text
