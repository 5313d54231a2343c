"""The Semantic Security Evaluator's contract with the kernel (defence in depth).

    DSC -> Deny                 refused; the SSE is never asked (it cannot allow it)
        -> Allow | Pending      the SSE is asked for every op that is not READ/KERNEL
               SsePass          the DSC's decision stands (run, or park for the Commander)
               SseDeny          refused with the evaluator's ``SSE.*`` code
               raises/timeout   refused with ``SSE.INTERNAL`` (fail closed)

Evaluators live in Ring 1 (the SSE service); the kernel only knows this Protocol.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Protocol

from maos.kernel import trace
from maos.kernel.labels import Label
from maos.kernel.types import Intent

__all__ = [
    "SSE_INTERNAL",
    "SSE_TIMEOUT",
    "SemanticEvaluator",
    "SseDeny",
    "SsePass",
    "SseVerdict",
    "veto",
]

SSE_INTERNAL = "SSE.INTERNAL"
"""The evaluator raised, timed out or answered something that is not a verdict."""

SSE_TIMEOUT = 5.0
"""Seconds an evaluator may take before its silence is a deny."""


@dataclass(frozen=True, slots=True)
class SsePass:
    """Nothing semantic against the intent; the DSC's decision stands."""


@dataclass(frozen=True, slots=True)
class SseDeny:
    """Refuse the intent. ``reason`` goes to the log: never put the offending data in it."""

    code: str
    reason: str

    def __post_init__(self) -> None:
        if not self.code.startswith("SSE."):
            raise ValueError(f"an SSE deny code starts with 'SSE.': {self.code!r}")


SseVerdict = SsePass | SseDeny


class SemanticEvaluator(Protocol):
    """Judges an intent the DSC did not deny. May only deny; never widens what the DSC allows."""

    name: str

    async def evaluate(self, intent: Intent, context: Label) -> SseVerdict: ...


async def veto(
    sse: SemanticEvaluator, intent: Intent, context: Label, timeout: float
) -> SseDeny | None:
    """Ask ``sse`` about an effect the DSC let through; any failure of it is a deny."""
    name = getattr(sse, "name", "sse")
    try:
        verdict: object = await asyncio.wait_for(trace.sse(sse, intent, context), timeout)
    except TimeoutError:
        return SseDeny(SSE_INTERNAL, f"{name}: no verdict within {timeout:g}s")
    except Exception as exc:  # fail closed: a broken evaluator denies, never allows
        return SseDeny(SSE_INTERNAL, f"{name}: evaluator failed ({type(exc).__name__})")
    if isinstance(verdict, SseDeny):
        return SseDeny(verdict.code, f"{name}: {verdict.reason}")
    if isinstance(verdict, SsePass):
        return None
    return SseDeny(SSE_INTERNAL, f"{name}: answered {type(verdict).__name__}, not a verdict")
