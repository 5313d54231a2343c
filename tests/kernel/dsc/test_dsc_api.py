"""The DSC package's public API is exactly what it re-exports."""

import maos.kernel.dsc as dsc


def test_public_api_is_pinned() -> None:
    assert sorted(dsc.__all__) == [
        "AgentRates",
        "AgentStatus",
        "AgentView",
        "Budget",
        "BudgetCheck",
        "BudgetLedger",
        "CHECK_ORDER",
        "CapabilityCheck",
        "Check",
        "CheckInput",
        "IfcCheck",
        "LockCheck",
        "LockTable",
        "PATTERNS",
        "Pipeline",
        "PrefilterCheck",
        "RULES",
        "RateLimit",
        "RateLimitCheck",
        "RulesCheck",
        "TaskView",
        "Usage",
        "is_trusted_target",
        "standard_pipeline",
    ]
    assert all(hasattr(dsc, name) for name in dsc.__all__)
