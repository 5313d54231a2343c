"""Example agents shipped with MAOS: scripts to run in pods, not modules to import.

``cell`` is the Cognitive Cell, the generic LLM agent plans use without code, and
``office_tools`` an example tool module (`maos.tool`) for a plan's ``tool_modules``.

Each file is an ordinary agent program that imports `maos.sdk` and nothing else of MAOS;
`maos agent run` (or `maos.pod.runtime.PodRuntime`) starts it in a sandbox. Importing
one here would run it outside a pod, where the SDK refuses to work (``SDK.NO_POD``).
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["script"]


def script(name: str) -> Path:
    """The path of a shipped example agent (``hello``, ``cell``) or tool module."""
    path = Path(__file__).with_name(f"{name}.py")
    if name.startswith("_") or not path.is_file():
        raise FileNotFoundError(f"no example agent named {name!r}")
    return path
