"""DSC check 1: the intent is covered by a valid capability token (rule R2, default deny).

Every target of the effect must be covered, not only the first: otherwise a cc recipient
would ride along on the grant for the ``to`` address. The token must also belong to the
intent's task, so an agent working on two tasks cannot spend one task's rights on the other.
"""

from __future__ import annotations

from maos.kernel.dsc.base import CheckInput
from maos.kernel.tokens import TokenAuthority
from maos.kernel.types import Decision, Deny

__all__ = ["CapabilityCheck"]


class CapabilityCheck:
    """Signatures are checked once per token by the authority; this adds the intent's view."""

    __slots__ = ("_authority", "_authorize")

    name: str = "capability"

    def __init__(self, authority: TokenAuthority) -> None:
        self._authority = authority
        self._authorize = authority.authorize_intent
        """Bound once: the hot path then makes one positional call per intent."""

    def __call__(self, inp: CheckInput) -> Decision:
        if inp.node_id != self._authority.node_id:
            # The authority checks audience against its own node id; a mismatch here means
            # the pipeline was wired to another node's authority, and nothing can be trusted.
            return Deny(
                "DSC.CAPABILITY.WRONG_AUDIENCE",
                f"This kernel is node {inp.node_id!r} "
                f"but checks tokens for node {self._authority.node_id!r}.",
                self.name,
            )
        return self._authorize(inp.intent, inp.now)
