"""Trusted targets from the Commander's own words: identifiers named in a task prompt.

The extraction lives in the kernel (`maos.kernel.identifiers`), which also needs it for
provenance; this module re-exports it for the Orchestrator and plan tooling.
"""

from __future__ import annotations

from maos.kernel.identifiers import (
    TrustedTarget,
    extract_amounts,
    extract_targets,
    iban_valid,
    normalise,
    target_values,
)

__all__ = [
    "TrustedTarget",
    "extract_amounts",
    "extract_targets",
    "iban_valid",
    "normalise",
    "target_values",
]
