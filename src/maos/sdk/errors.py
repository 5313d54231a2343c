"""What an agent catches when the kernel does not simply commit its request.

The kernel answers every request with a status; anything but ``committed`` becomes one
of these, carrying the kernel's stable code (``DSC.CAPABILITY.MISSING``,
``RULE.R6.IFC_DOWNFLOW`` ...) and its sentence for a human. Agents branch on the type
and the code, never on the sentence.

    SdkError                 SDK.*        the SDK itself cannot go on (no pod, broken reply)
    ├── Denied                            refused by the Sentry or the kernel; do not retry
    ├── PendingApproval                   parked for the Commander (R7, R10); .wait() for it
    └── EffectFailed                      allowed, but the effect failed or is in doubt
        └── LlmUnavailable   LLM.UNAVAILABLE, LLM.RULE_BASED_MODE, LLM.ALL_PROVIDERS_DOWN:
                             no provider answers; the system is in Rule-Based Mode

Stdlib only, like the rest of `maos.sdk`: this code runs inside the pod.
"""

from __future__ import annotations

TYPE_CHECKING = False  # `typing` costs milliseconds of pod start-up; mypy honours this name
if TYPE_CHECKING:
    from collections.abc import Callable

    from maos.sdk.client import Result

__all__ = ["LLM_DOWN", "Denied", "EffectFailed", "LlmUnavailable", "PendingApproval", "SdkError"]

LLM_DOWN = frozenset({"LLM.UNAVAILABLE", "LLM.RULE_BASED_MODE", "LLM.ALL_PROVIDERS_DOWN"})
"""Codes meaning no model answers: an agent should fall back to rule-based work."""


class SdkError(Exception):
    """Root of every error the SDK raises; ``code`` is stable, ``reason`` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason


class Denied(SdkError):
    """The request was refused; the same request will be refused again."""


class EffectFailed(SdkError):
    """The kernel allowed the effect but it did not (certainly) happen.

    ``status`` is ``failed`` (it did not happen) or ``in_doubt`` (it may have happened;
    the Commander settles it, so do not blindly retry with a new key).
    """

    def __init__(self, code: str, reason: str, *, status: str = "failed") -> None:
        super().__init__(code, reason)
        self.status = status


class LlmUnavailable(EffectFailed):
    """No LLM provider is configured: fall back to rules, the kernel keeps working."""


class PendingApproval(SdkError):
    """The kernel parked the request for the Commander; nothing has happened yet.

    ``wait()`` blocks until a human decides: it returns the committed `Result`, or raises
    `Denied` (``APPROVAL.DENIED``) if the Commander refused. The effect runs at most once
    however often anyone waits.
    """

    def __init__(
        self,
        approval_id: str,
        code: str,
        reason: str,
        waiter: Callable[[str, float | None], Result],
    ) -> None:
        super().__init__(code, reason)
        self.approval_id = approval_id
        self._waiter = waiter

    def wait(self, timeout: float | None = None) -> Result:
        """The outcome once decided; raises `PendingApproval` again if ``timeout`` passes."""
        return self._waiter(self.approval_id, timeout)
