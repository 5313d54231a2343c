"""The Deterministic Security Core: seven deterministic checks between an intent and its
effect (seed §15.3). Build it with `standard_pipeline`; every check is also usable alone.

    1 capability  2 ratelimit  3 budget  4 ifc  5 rules  6 locks  7 prefilter
"""

from maos.kernel.dsc.base import AgentStatus, AgentView, Check, CheckInput, TaskView
from maos.kernel.dsc.budget import Budget, BudgetCheck, BudgetLedger, Usage
from maos.kernel.dsc.capability import CapabilityCheck
from maos.kernel.dsc.ifc import IfcCheck, is_trusted_target
from maos.kernel.dsc.locks import LockCheck, LockTable
from maos.kernel.dsc.pipeline import CHECK_ORDER, Pipeline, standard_pipeline
from maos.kernel.dsc.prefilter import PATTERNS, PrefilterCheck
from maos.kernel.dsc.ratelimit import AgentRates, RateLimit, RateLimitCheck
from maos.kernel.dsc.rules import RULES, RulesCheck

__all__ = [
    "CHECK_ORDER",
    "PATTERNS",
    "RULES",
    "AgentRates",
    "AgentStatus",
    "AgentView",
    "Budget",
    "BudgetCheck",
    "BudgetLedger",
    "CapabilityCheck",
    "Check",
    "CheckInput",
    "IfcCheck",
    "LockCheck",
    "LockTable",
    "Pipeline",
    "PrefilterCheck",
    "RateLimit",
    "RateLimitCheck",
    "RulesCheck",
    "TaskView",
    "Usage",
    "is_trusted_target",
    "standard_pipeline",
]
