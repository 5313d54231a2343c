"""What the two official provider SDKs share: their exception tree, translated once.

``openai`` and ``anthropic`` are generated from one toolkit, so both raise
``APITimeoutError``, ``APIStatusError``, ``APIResponseValidationError`` and
``APIConnectionError`` from their own modules; one translation serves both.
"""

from __future__ import annotations

from collections.abc import Awaitable
from types import ModuleType
from typing import Any, TypeVar

from maos.llm import errors
from maos.llm.errors import ProviderFailed

T = TypeVar("T")


class SdkProvider:
    """Base of the providers built on an official SDK; ``name`` and ``model`` name failures."""

    name: str
    model: str

    def _failed(self, code: str, what: str, exc: BaseException, **fields: Any) -> ProviderFailed:
        return ProviderFailed(
            code, f"{self.name} ({self.model}): {what}", provider=self.name, **fields
        )

    async def _ask(self, sdk: ModuleType, request: Awaitable[T]) -> T:
        """Await one SDK call; whatever it raises leaves as a `ProviderFailed`."""
        try:
            return await request
        except sdk.APITimeoutError as exc:
            raise self._failed(errors.TIMEOUT, "no answer in time", exc) from exc
        except sdk.APIStatusError as exc:
            raise self._failed(
                errors.PROVIDER_ERROR, f"HTTP {exc.status_code}", exc, status=exc.status_code
            ) from exc
        except sdk.APIResponseValidationError as exc:
            raise self._failed(errors.BAD_RESPONSE, "unexpected response shape", exc) from exc
        except sdk.APIConnectionError as exc:
            raise self._failed(errors.PROVIDER_ERROR, "cannot connect", exc) from exc
        except Exception as exc:  # the SDK's internals (JSON, transport): still a boundary
            raise self._failed(errors.BAD_RESPONSE, type(exc).__name__, exc) from exc
