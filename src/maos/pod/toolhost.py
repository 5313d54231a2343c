"""User-declared tools, run by the Commit Layer in a sandboxed tool host (Ring 1).

    adapter = await install_tools(kernel, [Path("tools/bank.py")], home=home)
    ...                       # agents call client.tools.call("pay_invoice", ...)
    await adapter.aclose()

(or `start_tools` before `Kernel.boot(..., adapters={"tool": adapter})`, then
`register_tools`: then a tool call the Commander approved before a restart runs at boot.)

Code MAOS did not write never runs in the kernel's process (DESIGN.md): each tool module
runs in its own pod - the same sandbox as agents (level 2 by default: namespaces,
seccomp, Landlock, no network) - and the kernel reads only its manifest, strictly
validated, once. `install_tools` registers every manifest with the kernel (a
``tool.registered`` record: the op ``tool.<name>`` with its effect class, target
parameters and result label) and installs the ``tool`` adapter.

Each start gets a fresh scratch directory: a tool keeps no files of its own between
calls that the kernel did not log (its results are in the WAL, labelled).

The channel keeps its one direction (the pod asks, the kernel answers): the host asks
``admin.serve`` and the answer carries the next call (see `maos.tool._host`). A host
serves one call at a time. A call that outlives its tool's ``timeout_s`` kills the host
(``TOOL.TIMEOUT``) and the next call starts a fresh one, whose manifest must be the same
(``TOOL.MANIFEST_CHANGED`` otherwise: a module edited under a running kernel is not
silently trusted).

The code itself is pinned too: the host keeps the SHA-256 of the source it first ran,
``tool.registered`` records it, and a host started later for a call the Commander
approved (`start_tools(pinned=...)`) must run the same bytes. A module edited since -
even with the same manifest - is refused with ``TOOL.MODULE_CHANGED``: an approval is of
a call to the code that was registered, not to whatever the file holds by then.

Heartbeats (issue 12): a host started for a kernel beats like an agent's pod - enrolled
with the Watchdog as ``pod:tool/<module stem>-<6 hex>`` (`maos.pod.beats`: the ``/``
keeps it apart from every agent's ``pod:<agent>``; the hex, from two hosts of one
module), its key in the launch frame, the bootstrap's beat thread, the channel's reader
handing beats to `Watchdog.beat`. A host the Watchdog records missing (``pod.missed``:
wedged, stopped, starved) is killed; the call in flight, if any, fails with
``TOOL.HEARTBEAT.MISSED`` and the next call starts a fresh host. A host started before
there was a kernel (`start_tools` ahead of `Kernel.boot`) beats to nobody; `register_tools`
replaces it by one that beats.

Errors (`EffectError`, so the agent sees a failed outcome with the code): ``TOOL.TIMEOUT``,
``TOOL.HOST_DIED``, ``TOOL.HEARTBEAT.MISSED``, ``TOOL.RAISED`` (the function raised; its
traceback tail is the message), ``TOOL.BAD_ARGS``, ``TOOL.BAD_RESULT``, ``TOOL.UNKNOWN``; at start
``TOOL.BAD_MANIFEST``, ``TOOL.IMPORT``, ``TOOL.START``, ``TOOL.MODULE_CHANGED`` and
``TOOL.MANIFEST_CHANGED`` as `ToolHostError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import secrets
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, JsonValue

from maos.effects.base import EffectCall, EffectError, EffectResult
from maos.kernel.errors import MaosError
from maos.kernel.intents import thaw
from maos.kernel.kernel import Kernel
from maos.kernel.manifest import ManifestError, ToolManifest, parse_manifest
from maos.kernel.registry import COMMANDER
from maos.kernel.types import EffectClass
from maos.kernel.watchdog import Watchdog
from maos.pod import beats
from maos.pod.channel import ChannelClosed, ChannelViolation
from maos.pod.frames import OpTable, Reply, StrictModel
from maos.pod.isolation import Limits, PodHome, PodProcess, PodSpec, sandbox_for
from maos.pod.isolation.base import ProcessSandbox

__all__ = [
    "TOOLHOST_OPS",
    "ToolAdapter",
    "ToolHost",
    "ToolHostError",
    "install_tools",
    "register_tools",
    "start_tools",
]

HELLO_TIMEOUT = 30.0
"""Seconds a host has to import its module and announce its tools."""


class ToolHostError(MaosError):
    """A tool module cannot be served (codes ``TOOL.*``)."""


class ServeArgs(StrictModel):
    hello: list[dict[str, JsonValue]] | None = Field(default=None, max_length=64)
    failed: dict[str, JsonValue] | None = None
    done: dict[str, JsonValue] | None = None


TOOLHOST_OPS = OpTable({("admin", "serve"): ServeArgs})
"""A tool host may ask for exactly one thing: its next call."""


_LAUNCHER = """\
from maos.tool._host import serve
serve({source!r}, {filename!r})
"""


class ToolHost:
    """One tool module in one sandboxed process, started on demand, one call at a time."""

    def __init__(
        self,
        module: Path,
        sandbox: ProcessSandbox,
        *,
        limits: Limits | None = None,
        pinned: str | None = None,
        watchdog: Watchdog | None = None,
    ) -> None:
        self.module = module
        self.digest = pinned
        """SHA-256 of the source this host runs: given (the registered code), or taken at
        the first start; every later start must find the same."""
        self.sandbox = sandbox
        self.limits = limits or Limits(cpu_seconds=60)
        self.manifests: tuple[ToolManifest, ...] = ()
        self._pod: PodProcess | None = None
        self._waiting: int | None = None
        """The id of the host's ``admin.serve`` request that the next call answers."""
        self._lock = asyncio.Lock()
        self._ids = itertools.count(1)
        self._script = Path(tempfile.mkdtemp(prefix="maos-toolhost-")) / "host.py"
        self.watchdog = watchdog
        """Where the hosts started from now on beat (None: no kernel yet, no beats)."""
        self.member = beats.member("tool", f"{module.stem}-{secrets.token_hex(3)}")
        self._beats_to: Watchdog | None = None
        """The Watchdog the running host beats to."""
        self._watcher: asyncio.Task[None] | None = None
        self._silenced: PodProcess | None = None
        """The host killed because the Watchdog recorded it missing."""

    @property
    def pod(self) -> PodProcess | None:
        """The current (or last) host's process; None before the first start."""
        return self._pod

    async def start(self) -> tuple[ToolManifest, ...]:
        """Start the host (if it is not running) and return its tools' manifests."""
        running = self._pod
        if running is not None and running.returncode is None:
            if self._beats_to is self.watchdog and not self._missing(running):
                return self.manifests
            running.kill()  # beats to no Watchdog or another one, or is missing: replaced
            await running.wait()
        if self._watcher is not None:  # the last host's: it ends with that host
            await self._watcher
            self._watcher = None
        try:
            raw = self.module.read_bytes()
            source = raw.decode("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ToolHostError("TOOL.START", f"cannot read {self.module}: {exc}") from exc
        digest = hashlib.sha256(raw).hexdigest()
        if self.digest is not None and digest != self.digest:
            raise ToolHostError(
                "TOOL.MODULE_CHANGED",
                f"{self.module.name} is not the code that was registered (sha256 {digest[:12]}"
                f" now, {self.digest[:12]} then): restore it, or register the new code"
                " (maos run its plan)",
            )
        self.digest = digest
        self._script.write_text(_LAUNCHER.format(source=source, filename=self.module.name))
        watchdog = self.watchdog
        spec = PodSpec(
            f"toolhost-{self.module.stem}"[:64],
            self._script,
            limits=self.limits,
            heartbeat=None if watchdog is None else beats.enrol(watchdog, self.member),
        )
        try:
            pod = await self.sandbox.spawn(spec)
        except MaosError as exc:
            if watchdog is not None:
                watchdog.leave(self.member)
            raise ToolHostError("TOOL.START", f"{self.module.name}: {exc.message}") from exc
        self._pod, self._beats_to = pod, watchdog
        if watchdog is not None:
            self._watcher = asyncio.create_task(self._watch(pod, watchdog))
        try:
            frame = await asyncio.wait_for(self._recv(pod), HELLO_TIMEOUT)
        except TimeoutError:
            pod.kill()
            raise ToolHostError(
                "TOOL.START", f"{self.module.name}: no manifest within {HELLO_TIMEOUT:g}s"
            ) from None
        manifests = self._hello(frame, pod)
        if self.manifests and manifests != self.manifests:
            pod.kill()
            raise ToolHostError(
                "TOOL.MANIFEST_CHANGED",
                f"{self.module.name} announces other tools than when it was registered",
            )
        self.manifests = manifests
        return manifests

    def _hello(self, frame: ServeArgs, pod: PodProcess) -> tuple[ToolManifest, ...]:
        if frame.hello is None:
            pod.kill()
            failed = frame.failed or {}
            code = str(failed.get("code", "TOOL.IMPORT"))
            code = code if code in ("TOOL.BAD_MANIFEST", "TOOL.IMPORT") else "TOOL.IMPORT"
            raise ToolHostError(code, f"{self.module.name}: {failed.get('message', '')}")
        try:  # the kernel's one validator, before anything is registered
            return tuple(parse_manifest(m) for m in frame.hello)
        except ManifestError as exc:
            pod.kill()
            raise ToolHostError(exc.code, f"{self.module.name}: {exc.message}") from None

    async def call(self, name: str, args: Mapping[str, Any], timeout: float) -> Any:
        """Run one call in the host; `EffectError` with a ``TOOL.*`` code if it fails."""
        async with self._lock:
            try:
                await self.start()
            except ToolHostError as exc:
                raise EffectError(exc.code, exc.message) from exc
            pod = self._pod
            assert pod is not None and pod.channel is not None and self._waiting is not None
            call_id = next(self._ids)
            call: dict[str, JsonValue] = {"id": call_id, "name": name, "args": thaw(args)}
            try:
                reply = Reply(id=self._waiting, ok=True, result={"call": call})
                await pod.channel.send(reply)
                frame = await asyncio.wait_for(self._recv(pod), timeout)
            except TimeoutError:
                pod.kill()
                await pod.wait()
                raise EffectError("TOOL.TIMEOUT", f"{name} ran longer than {timeout:g}s") from None
            except (ChannelClosed, ChannelViolation, ToolHostError) as exc:
                pod.kill()
                if self._silenced is pod:
                    raise EffectError(
                        "TOOL.HEARTBEAT.MISSED",
                        f"the tool host stopped beating during {name} (wedged or stopped) and"
                        " was killed; the next call starts a fresh one",
                    ) from exc
                raise EffectError("TOOL.HOST_DIED", f"the tool host ended during {name}") from exc
        done = frame.done or {}
        if done.get("id") != call_id:
            pod.kill()
            raise EffectError("TOOL.HOST_DIED", "the tool host answered another call")
        if done.get("ok") is True:
            return done.get("value")
        error = done.get("error")
        error = error if isinstance(error, dict) else {}
        code = str(error.get("code", "TOOL.RAISED"))
        if code not in ("TOOL.RAISED", "TOOL.BAD_ARGS", "TOOL.BAD_RESULT", "TOOL.UNKNOWN"):
            code = "TOOL.RAISED"  # the host is sandboxed code: it picks no other code
        raise EffectError(code, str(error.get("message", ""))[:2000])

    async def _recv(self, pod: PodProcess) -> ServeArgs:
        assert pod.channel is not None
        frame = await pod.channel.recv()
        if not isinstance(frame.args, ServeArgs):  # the op table admits nothing else
            raise ToolHostError("TOOL.HOST_DIED", "the tool host sent something other than serve")
        self._waiting = frame.id
        return frame.args

    def _missing(self, pod: PodProcess) -> bool:
        """Killed for its silence, or recorded missing and about to be."""
        watchdog = self._beats_to
        return self._silenced is pod or (watchdog is not None and watchdog.missing(self.member))

    async def watch(self, watchdog: Watchdog) -> None:
        """Beat to ``watchdog`` from now on: a host running without beats is replaced now
        (after the call in flight, if any), not at the next call."""
        async with self._lock:
            self.watchdog = watchdog
            if self._pod is not None:
                await self.start()

    async def _watch(self, pod: PodProcess, watchdog: Watchdog) -> None:
        """Kill ``pod`` once the Watchdog records it missing; stop watching when it ends."""
        silence = asyncio.create_task(beats.until_missed(watchdog, self.member))
        ended = asyncio.create_task(pod.wait())
        try:
            await asyncio.wait((silence, ended), return_when=asyncio.FIRST_COMPLETED)
            if not ended.done():
                self._silenced = pod  # before the kill: the call in flight reads it
                pod.kill()
                await ended
        finally:
            silence.cancel()
            ended.cancel()
            watchdog.leave(self.member)

    async def aclose(self) -> None:
        pod, self._pod = self._pod, None
        if pod is not None:
            pod.kill()
            await pod.wait()
        if self._watcher is not None:
            await self._watcher
        with contextlib.suppress(OSError):
            self._script.unlink()
            self._script.parent.rmdir()


class ToolAdapter:
    """The ``tool`` family of effects: ``tool.<name>`` runs in the host that declared it."""

    def __init__(self) -> None:
        self._hosts: dict[str, tuple[ToolHost, ToolManifest]] = {}
        self.ops: frozenset[str] = frozenset()

    def add(self, host: ToolHost) -> None:
        for manifest in host.manifests:
            if manifest.name in self._hosts:
                raise ToolHostError(
                    "TOOL.BAD_MANIFEST", f"two modules declare a tool named {manifest.name!r}"
                )
        for manifest in host.manifests:
            self._hosts[manifest.name] = (host, manifest)
        self.ops = frozenset(f"tool.{name}" for name in self._hosts)

    def manifests(self) -> list[ToolManifest]:
        return [m for _, m in self._hosts.values()]

    async def watch(self, watchdog: Watchdog) -> None:
        """Make every host beat to ``watchdog`` (`ToolHost.watch`)."""
        for host in self._unique():
            await host.watch(watchdog)

    def _unique(self) -> list[ToolHost]:
        return list({id(h): h for h, _ in self._hosts.values()}.values())

    def served(self) -> list[tuple[ToolHost, ToolManifest]]:
        return list(self._hosts.values())

    def manifest(self, name: str) -> ToolManifest | None:
        entry = self._hosts.get(name)
        return None if entry is None else entry[1]

    def idempotent(self, call: EffectCall) -> bool:
        manifest = self.manifest(call.op.partition(".")[2])
        return manifest is not None and manifest.effect_classes == (EffectClass.READ,)

    async def execute(self, call: EffectCall) -> EffectResult:
        name = call.op.partition(".")[2]
        entry = self._hosts.get(name)
        if entry is None:
            raise EffectError("TOOL.UNKNOWN", f"no tool host serves {name!r}")
        host, manifest = entry
        args = call.params.get("args", {})
        return EffectResult(await host.call(name, args, manifest.timeout_s))

    async def confirm(self, call: EffectCall) -> EffectResult | None:
        return None  # a read tool is simply asked again after a crash

    async def aclose(self) -> None:
        for host in self._unique():
            await host.aclose()


async def start_tools(
    modules: Sequence[Path],
    *,
    home: PodHome,
    level: int = 2,
    pinned: Mapping[Path, str] | None = None,
    watchdog: Watchdog | None = None,
) -> ToolAdapter:
    """Start a host per module and learn their manifests; no kernel is needed yet, so
    the adapter can be handed to `Kernel.boot` (``adapters={"tool": ...}``). ``pinned``
    holds the registered SHA-256 of modules whose code must not have changed;
    ``watchdog``, a running kernel's, makes the hosts beat from their start.

    `ToolHostError` (or `IsolationUnavailable`) if any module fails: none is kept."""
    sandbox = sandbox_for(level, home, ops=TOOLHOST_OPS)
    adapter = ToolAdapter()
    try:
        for module in modules:
            host = ToolHost(module, sandbox, pinned=(pinned or {}).get(module), watchdog=watchdog)
            try:
                await host.start()
                adapter.add(host)
            except BaseException:
                await host.aclose()
                raise
    except BaseException:
        await adapter.aclose()
        raise
    return adapter


async def register_tools(
    kernel: Kernel, adapter: ToolAdapter, *, principal: str = COMMANDER
) -> None:
    """Log every manifest of ``adapter`` with ``kernel`` (``tool.registered``); from now
    on its hosts beat to the kernel's Watchdog."""
    await adapter.watch(kernel.watchdog)
    for host, m in adapter.served():
        await kernel.register_tool(
            m.name,
            effect_classes=m.effect_classes,
            targets={t.path: t.record() for t in m.targets},
            result_label=m.result_label,
            accepts=m.accepts,
            external=m.external,
            amount=None if m.amount is None else m.amount.record(),
            parameters=m.parameters,
            description=m.description,
            timeout_s=m.timeout_s,
            module=str(host.module.resolve()),
            module_sha256=host.digest,
            principal=principal,
        )


async def install_tools(
    kernel: Kernel,
    modules: Sequence[Path],
    *,
    home: PodHome,
    level: int = 2,
    principal: str = COMMANDER,
) -> ToolAdapter:
    """`start_tools`, `register_tools`, and serve ``tool.*`` on a running ``kernel``."""
    adapter = await start_tools(modules, home=home, level=level, watchdog=kernel.watchdog)
    try:
        await register_tools(kernel, adapter, principal=principal)
        kernel.add_adapter("tool", adapter)
    except BaseException:
        await adapter.aclose()
        raise
    return adapter
