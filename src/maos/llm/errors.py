"""What can go wrong when the kernel asks a language model, as MAOS errors.

Every exception of a provider SDK is translated where it enters (``raise ... from exc``);
nothing of ``openai`` or ``anthropic`` reaches the Commit Layer.

    MaosError (maos.kernel.errors)
    └── LlmError                     LLM.*
        ├── ProviderFailed           one provider did not answer usefully
        │     LLM.TIMEOUT            no answer within the provider's timeout (after retries)
        │     LLM.PROVIDER_ERROR     connection refused, 5xx, 429, auth, or a refused request
        │     LLM.BAD_RESPONSE       an answer that is not a usable completion
        └── NoProvider               nobody to ask: the system is in Rule-Based Mode
              LLM.ALL_PROVIDERS_DOWN every provider of the chain failed just now
              LLM.RULE_BASED_MODE    refused without any network, until a probe succeeds
    LLM.BAD_REQUEST (an `LlmError`): the call's params are not a valid chat request
"""

from __future__ import annotations

from maos.kernel.errors import MaosError

__all__ = [
    "ALL_PROVIDERS_DOWN",
    "BAD_REQUEST",
    "BAD_RESPONSE",
    "PROVIDER_ERROR",
    "RULE_BASED_MODE",
    "TIMEOUT",
    "LlmError",
    "NoProvider",
    "ProviderFailed",
]

TIMEOUT = "LLM.TIMEOUT"
PROVIDER_ERROR = "LLM.PROVIDER_ERROR"
BAD_RESPONSE = "LLM.BAD_RESPONSE"
ALL_PROVIDERS_DOWN = "LLM.ALL_PROVIDERS_DOWN"
RULE_BASED_MODE = "LLM.RULE_BASED_MODE"
BAD_REQUEST = "LLM.BAD_REQUEST"


class LlmError(MaosError):
    """A completion could not be had (codes ``LLM.*``)."""


class ProviderFailed(LlmError):
    """One provider failed; a `FallbackChain` tries the next. Fields: ``provider``."""


class NoProvider(LlmError):
    """No provider answered or may be asked; callers fall back to rules."""
