"""How a pod ends (issue 13, item 5): an agent whose interpreter takes seconds to tear
down - an agent framework's thousands of modules, under load - is not mistaken for a pod
that cut off its channel and kept running (``POD.CHANNEL.ABANDONED``, then a restart
that would repeat its effects). The bootstrap exits without the module teardown, after
the agent's threads and ``atexit`` handlers, with the agent's exit status.

Real level-2 pods on a real kernel; what happened is read from the WAL and the pod log.
"""

from __future__ import annotations

import asyncio
import os
import textwrap
from pathlib import Path

import pytest

from maos.kernel.kernel import Kernel, KernelConfig
from maos.kernel.tokens import Grant
from maos.pod.isolation import PodHome
from maos.pod.runtime import PodRuntime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="pods run as nobody: needs root")

SLOW_TEARDOWN = """
import atexit, sys, threading, types
from maos import sdk

# A module whose teardown takes seconds (a big framework's, on a busy machine). Nothing
# here refers to the agent's own globals, so they die when its code ends, as a framework
# agent's do: the channel then closes as the interpreter frees its modules, before this one.
SLOW = "import time\\nclass Slow:\\n    def __del__(self):\\n        time.sleep(4)\\n"
held = types.ModuleType("held")
exec(SLOW + "slow = Slow()", vars(held))
sys.modules["held"] = held
del held, SLOW
atexit.register(print, "atexit ran", flush=True)
threading.Timer(0.5, print, args=("thread ran",), kwargs={"flush": True}).start()
sdk.fs.write("out.txt", "done")
print("wrote", flush=True)
"""


def run(tmp_path: Path, home: PodHome, code: str) -> tuple[int, list[str], str]:
    async def go() -> tuple[int, list[str], str]:
        kernel = await Kernel.boot(KernelConfig(data_dir=tmp_path / "data"))
        pods = PodRuntime(kernel, level=2, home=home)
        try:
            await kernel.register_agent("a1", ring=3)
            await kernel.open_task("t1")
            token = kernel.mint("a1", "t1", [Grant("fs.write", "*")])
            agent = tmp_path / "agent.py"
            agent.write_text(textwrap.dedent(code))
            started = await pods.start("a1", agent, task_id="t1", token=token)
            ended = await started.wait()
            ends = ("pod.violation", "pod.restarted", "pod.exited")
            kinds = [r.kind for r in kernel.wal.read() if r.kind in ends]
            return ended.exit_code, kinds, started.log()
        finally:
            await pods.close()
            await kernel.close()

    return asyncio.run(go())


def test_issue_13_a_slow_interpreter_teardown_is_no_abandoned_channel(
    tmp_path: Path, home: PodHome
) -> None:
    code, kinds, log = run(tmp_path, home, SLOW_TEARDOWN)
    assert kinds == ["pod.exited"], log  # no violation, no restart: the write ran once
    assert code == 0
    # The agent's thread and atexit handler still ran before the pod exited.
    assert log.splitlines() == ["wrote", "thread ran", "atexit ran"]


@pytest.mark.parametrize(("end", "status"), [("sys.exit(7)", 7), ("sys.exit('why')", 1)])
def test_the_agents_exit_status_is_the_pods(
    tmp_path: Path, home: PodHome, end: str, status: int
) -> None:
    code, kinds, log = run(tmp_path, home, f"import sys\n{end}\n")
    assert (code, kinds) == (status, ["pod.exited"])
    assert ("why" in log) is (status == 1)
