"""Providers in order of preference; the first usable completion wins.

Each provider retries on its own first (its SDK's retry settings); the chain moves to
the next one only when that provider has given up. A request the chain cannot serve at
all raises `NoProvider` and puts `ProviderHealth` in Rule-Based Mode.
"""

from __future__ import annotations

from collections.abc import Sequence

from maos.llm import errors
from maos.llm.errors import LlmError, NoProvider
from maos.llm.health import ProviderHealth
from maos.llm.types import ChatRequest, Completion, Provider

__all__ = ["FallbackChain"]


class FallbackChain:
    """A `Provider`-like front over several providers, owning the Rule-Based Mode state."""

    def __init__(
        self, providers: Sequence[Provider], *, health: ProviderHealth | None = None
    ) -> None:
        if not providers:
            raise ValueError("a FallbackChain needs at least one provider")
        self.providers = tuple(providers)
        self.health = health if health is not None else ProviderHealth()

    @property
    def name(self) -> str:
        return ",".join(p.name for p in self.providers)

    async def complete(self, request: ChatRequest) -> Completion:
        if not self.health.may_call():
            raise NoProvider(
                errors.RULE_BASED_MODE,
                "no LLM provider answered; Rule-Based Mode until the next probe",
                last_error=self.health.last_error,
            )
        failures: list[str] = []
        for provider in self.providers:
            try:
                completion = await provider.complete(request)
            except LlmError as exc:  # providers translate their SDKs; this is the contract
                failures.append(f"{provider.name}: {exc.code}")
                continue
            self.health.answered(provider.name)
            return completion
        reason = "; ".join(failures)
        self.health.all_failed(reason)
        raise NoProvider(
            errors.ALL_PROVIDERS_DOWN, f"every LLM provider failed ({reason})", failures=failures
        )

    async def aclose(self) -> None:
        for provider in self.providers:
            await provider.aclose()
