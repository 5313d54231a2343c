"""The read-only runtime agent frameworks run from: pinned packages on Debian's python3.

An agent written for the OpenAI Agents SDK, LangGraph or pydantic-ai needs its framework
inside the pod (docs/frameworks.md). The pod never gets the kernel's own environment;
it gets this runtime, built by the same builder as upstream servers' runtimes
(`maos.pod.upstream_runtime`: a world-readable virtualenv on ``/usr/bin/python3``,
cached under a digest of its requirements, mounted read-only) from ``frameworks.txt``:
the three frameworks and their whole dependency closure, each pinned exactly.

The default cache, ``/var/tmp/maos-runtime``, is world-traversable (pods run as nobody
and bwrap must reach it) and survives reboots, so ``make test`` builds it once per
machine; ``$MAOS_RUNTIME_CACHE`` moves it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from maos.pod.isolation import Limits, SandboxError
from maos.pod.upstream_runtime import Runtime, build_runtime

__all__ = ["DEFAULT_CACHE", "FRAMEWORK_LIMITS", "PINS", "framework_runtime", "requirements"]

PINS = Path(__file__).with_name("frameworks.txt")
DEFAULT_CACHE = Path("/var/tmp/maos-runtime")
FRAMEWORK_LIMITS = Limits(cpu_seconds=120, memory_bytes=2 * 1024**3, max_processes=64)
"""A framework's import alone costs 2-4 s of CPU and ~100 MB, and its thread pools
reserve address space per thread; the stock pod limits are sized for stdlib agents."""


def requirements() -> list[str]:
    """The pinned requirements, one ``name==version`` each."""
    lines = (line.strip() for line in PINS.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def framework_runtime(cache: Path | None = None) -> Runtime:
    """The frameworks' runtime, built on first use (pip; ~40 s), else found in ``cache``.

    ``SandboxError`` ``POD.RUNTIME.UNSAFE_CACHE`` when ``cache`` exists but another user
    owns it or may write to it: in a shared directory such as ``/var/tmp`` that user
    could have planted a "built" runtime whose code every framework agent would run."""
    if cache is None:
        cache = Path(os.environ.get("MAOS_RUNTIME_CACHE") or DEFAULT_CACHE)
    cache = cache.absolute()
    try:
        st = cache.lstat()
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise SandboxError(
                "POD.RUNTIME.UNSAFE_CACHE",
                "the runtime cache must be a directory of this user's that no one else may "
                "write to; remove it or name another with $MAOS_RUNTIME_CACHE",
                path=str(cache),
            )
    return build_runtime(requirements(), cache)
