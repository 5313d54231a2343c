"""The MAOS agent SDK: the only module agent code imports.

    from maos import sdk

    page = sdk.http.get("https://api.example.com/q3")          # Result(value, label)
    sdk.fs.write("reports/q3.md", summarise(page.value["body"]))
    try:
        sdk.email.send("cfo@example.com", "Q3", "Revenue up 12%.")
    except sdk.PendingApproval as parked:                       # R7/R10: a human decides
        parked.wait()
    except sdk.Denied as no:
        print(no.code, no.reason)

It runs inside a pod: stdlib only (pods have no site-packages), nothing of the kernel
(an import contract keeps it so), and every call is a request the Sentry and the kernel
check on the other side of the channel. The module-level namespaces (`fs`, `http`,
`email`, `llm`, `msg`, `tools`, `admin`) use a `Client` built from the pod's environment on first
use; `maos.sdk.aio` offers the same calls for asyncio code.
"""

from __future__ import annotations

from maos.sdk.client import (
    A2a,
    Admin,
    Client,
    Email,
    Fs,
    Http,
    Label,
    Llm,
    Message,
    Msg,
    Result,
    Tools,
)
from maos.sdk.errors import Denied, EffectFailed, LlmUnavailable, PendingApproval, SdkError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "Client",
    "Denied",
    "EffectFailed",
    "Label",
    "LlmUnavailable",
    "Message",
    "PendingApproval",
    "Result",
    "SdkError",
    "a2a",
    "admin",
    "default_client",
    "email",
    "fs",
    "http",
    "llm",
    "msg",
    "tools",
]

_default: Client | None = None


def default_client() -> Client:
    """The client the module-level namespaces use, created from the environment once."""
    global _default
    if _default is None:
        _default = Client()
    return _default


def _call(gw: str, op: str, args: dict[str, Any]) -> Result:
    return default_client().call(gw, op, args)


fs = Fs(_call)
http = Http(_call)
email = Email(_call)
a2a = A2a(_call)
llm = Llm(_call)
msg = Msg(_call)
tools = Tools(_call)
admin = Admin(_call)
