"""The ``tool`` family adapter of an MCP gateway's kernel: ``tool.<name>`` runs upstream.

The Commit Layer calls it only after the intent's ``intent.prepared`` record is durable
(R3), so an upstream sees a call only once the kernel decided and logged it. The value
it returns is the whole MCP result - ``content`` and ``structuredContent`` both, plus
``isError`` - so the kernel labels all of it and records identifiers in any part of it
(provenance): an address injected into either channel is known to come from this tool.

A tool whose description or schema changed since it was registered (a reconnect, or
``tools/list_changed``) is refused here too, before the upstream is asked: the approval
of a parked call is of the tool that was registered (``TOOL.MANIFEST_CHANGED``).
Failures are `EffectError` with the `maos.mcp.upstream` codes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.kernel.intents import thaw
from maos.kernel.watchdog import Watchdog
from maos.mcp.catalogue import Catalogue, Entry
from maos.mcp.upstream import Connection, UpstreamError, digest

__all__ = ["McpAdapter"]


class McpAdapter:
    """Serves the ops of the current catalogue; `use` swaps in a rebuilt one."""

    def __init__(self, connections: Mapping[str, Connection]) -> None:
        self.connections = dict(connections)
        self.catalogue = Catalogue([])
        self.ops: frozenset[str] = frozenset()
        self.changed: set[str] = set()
        """Kernel names whose upstream definition no longer matches the registration."""

    def watch(self, watchdog: Watchdog) -> None:
        """Every upstream server beats to ``watchdog`` (`Connection.watch`)."""
        for conn in self.connections.values():
            conn.watch(watchdog)

    def use(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.ops = frozenset(f"tool.{k}" for k in catalogue.by_kernel)

    def idempotent(self, call: EffectCall) -> bool:
        entry = self.catalogue.by_kernel.get(call.op.partition(".")[2])
        return entry is not None and entry.treatment in ("resource", "prompt")

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        return None  # a read is asked again after a crash; nothing else is redone

    def _still_same(self, entry: Entry, conn: Connection) -> bool:
        """Whether the upstream still announces ``entry`` as it was registered."""
        if entry.tool is None:
            return True
        offered = {t.name: t for t in (conn.announced.tools if conn.announced else ())}
        now = offered.get(entry.remote)
        if now is None or digest(now) != entry.digest:
            self.changed.add(entry.kernel)
        return entry.kernel not in self.changed

    async def execute(self, call: EffectCall) -> EffectResult:
        entry = self.catalogue.by_kernel.get(call.op.partition(".")[2])
        if entry is None:
            raise EffectError("TOOL.UNKNOWN", f"no upstream serves {call.op!r}")
        conn = self.connections[entry.upstream]
        args: dict[str, Any] = thaw(call.params.get("args", {}))
        try:
            await conn.client()  # a reconnect re-lists: what is offered now is checked
            if not self._still_same(entry, conn):
                raise EffectError(
                    "TOOL.MANIFEST_CHANGED",
                    f"{entry.upstream} changed {entry.remote!r} after it was registered;"
                    " the call was not sent",
                )
            timeout = entry.policy.timeout_s if entry.policy else conn.spec.timeout_s
            if entry.treatment == "resource":
                uri = str(args["uri"])
                result = await conn.request(
                    f"resources/read {uri}", lambda c: c.read_resource(uri), timeout
                )
            elif entry.treatment == "prompt":
                name, arguments = str(args["name"]), args.get("arguments") or {}
                result = await conn.request(
                    f"prompts/get {name}",
                    lambda c: c.get_prompt(name, {str(k): str(v) for k, v in arguments.items()}),
                    timeout,
                )
            else:
                result = await conn.request(
                    f"tools/call {entry.remote}",
                    lambda c: c.call_tool(entry.remote, args),
                    timeout,
                )
        except UpstreamError as exc:
            raise EffectError(exc.code, exc.message) from None
        result.pop("_meta", None)  # the upstream's metadata is not the client's business
        return EffectResult(result)
