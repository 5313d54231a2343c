"""A kernel as `config.json` describes it, and plans run on it: what the console starts.

`configured_kernel` boots a kernel on a data directory with the LLM chain and the
Semantic Security Evaluators its configuration names (`maos.llm.config`), installing the
adapters before boot replays approved intents, runs the Security Agent beside it
(`maos.services.security`; a serving kernel's as its own process under the Service
Manager, `maos.services.manager`), and closes everything after.
`run_plan_file` starts a plan's tool hosts, runs the plan on such a kernel with one pod
runtime per isolation level, and reports each step through ``echo``.

It sits above the Ring 1 packages (it wires `maos.llm`, `maos.services` and `maos.pod`,
which may not import each other) and below the CLI.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from maos.kernel import jsonlog
from maos.kernel.aggregate import Threshold
from maos.kernel.approvals import Approval, ApprovalStatus
from maos.kernel.config import KernelConfig, read_config
from maos.kernel.errors import InputError, MaosError
from maos.kernel.kernel import Kernel
from maos.kernel.ops import TOOL_PREFIX
from maos.kernel.sse import SemanticEvaluator
from maos.kernel.stages import CascadePolicy
from maos.kernel.types import iso_time
from maos.llm.config import (
    ConfiguredLlm,
    ProviderConfig,
    SecuritySettings,
    SseSettings,
    build_llm,
    load_settings,
)
from maos.pod.isolation import PodHome
from maos.pod.router import MessageRouter, RouterCheck, attach
from maos.pod.runtime import PodRuntime
from maos.pod.toolhost import ToolAdapter, register_tools, start_tools
from maos.services import sse_embed
from maos.services.cron import CronScheduler
from maos.services.hacf import HacfService
from maos.services.hacf import finish as finish_overrides
from maos.services.manager import ServiceManager
from maos.services.memory import MemoryManager, consulted_by_sse
from maos.services.notify import CommanderNotifier
from maos.services.orchestrator import Orchestrator, PlanResult, PodStarter, StepEvent
from maos.services.plan import Plan, load_plan
from maos.services.security import SecurityAgent, notify_hook, thresholds
from maos.services.sse import CompositeEvaluator, HeuristicEvaluator, LlmJudgeEvaluator, sse_down
from maos.services.supervised import TaskFactory, in_thread, probe_task
from maos.services.tsca import Tsca

if TYPE_CHECKING:
    from maos.pod.a2a_inbound import A2aInbound

__all__ = [
    "PlanQueue",
    "aggregate_limits",
    "cascade_policy",
    "configured_kernel",
    "observability_probe",
    "router_probe",
    "run_plan_file",
    "run_plan_on",
    "semantic_evaluator",
    "service_manager",
]

Echo = Callable[[str], None]


async def _embedding_evaluator() -> SemanticEvaluator:
    """Loaded before the kernel boots: the model's first load outlasts the SSE timeout."""

    def unusable(why: str) -> InputError:
        return InputError("BAD_INPUT.CONFIG", f"sse.embedding {why}", path="sse.embedding")

    if not sse_embed.embedding_available():
        raise unusable("needs the 'embed' extra: pip install 'maos[embed]'")
    evaluator = sse_embed.EmbeddingEvaluator()
    try:
        await evaluator.warm()
    except sse_embed.EmbeddingError as exc:
        raise unusable(f"cannot load its model: {exc}") from exc
    return evaluator


async def semantic_evaluator(
    settings: SseSettings, llm: ConfiguredLlm | None
) -> SemanticEvaluator | None:
    """The evaluators ``config.json`` enables, cheapest first; the first deny wins."""
    chosen: list[SemanticEvaluator] = []
    if settings.heuristic:
        chosen.append(HeuristicEvaluator())
    if settings.embedding:
        chosen.append(await _embedding_evaluator())
    if settings.llm_judge:
        assert llm is not None, "load_settings refuses a judge without a provider"
        chosen.append(LlmJudgeEvaluator(llm.ask))
    if len(chosen) > 1:
        return CompositeEvaluator(chosen)
    return chosen[0] if chosen else None


def _parked_tool_modules(kernel: Kernel) -> dict[Path, str | None]:
    """The modules of the tools that parked or approved calls wait for, with the SHA-256
    of their code when registered: a process deciding them (`maos approvals approve`)
    must be able to run them, and run that code."""
    waiting = [*kernel.approvals.pending(), *kernel.approvals.awaiting_execution()]
    tools = kernel.registry.tools
    modules = {
        Path(tool.module): tool.module_sha256
        for a in waiting
        if str(a.intent.get("op", "")).startswith(TOOL_PREFIX)
        and (tool := tools.get(str(a.intent["op"])[len(TOOL_PREFIX) :])) is not None
        and tool.module is not None
    }
    return dict(sorted(modules.items()))


def aggregate_limits(s: SecuritySettings) -> tuple[Threshold, ...]:
    return thresholds(
        outbound_bytes_per_day=s.outbound_bytes_per_day,
        external_destinations_per_week=s.external_destinations_per_week,
        external_api_calls_per_day=s.external_api_calls_per_day,
        bytes_to_one_agent_per_day=s.bytes_to_one_agent_per_day,
        declassifications_per_day=s.declassifications_per_day,
    )


def cascade_policy(s: SecuritySettings) -> CascadePolicy:
    return CascadePolicy(
        observe_at=s.observe_at,
        soft_at=s.soft_at,
        hard_at=s.hard_at,
        half_life_s=s.half_life_minutes * 60,
        observation_s=s.observation_minutes * 60,
        monitor_only=s.monitor_only,
        weights=s.weights.model_dump(),
    )


_MANAGERS: weakref.WeakKeyDictionary[Kernel, ServiceManager] = weakref.WeakKeyDictionary()
PROBE_S = 2.0
"""How often the liveness probes of the services in the kernel's process look (the SSE,
the Message Router, Observability, the dashboard): locally, no model call."""
PROBE_TIMEOUT_S = 5.0
"""How long a probe's look in a thread may take before the service counts as down."""


def _probe_in_kernel(kernel: Kernel, manager: ServiceManager) -> None:
    """Supervise the services that live in the kernel's process by their probes
    (docs/resilience.md): the SSE (its evaluators answer locally), Observability and the
    Message Router."""
    check = probe_task(lambda: sse_down(kernel.sse), PROBE_S, "SSE.DOWN")
    manager.start_task("sse", check, every_s=PROBE_S)
    manager.start_task("observability", observability_probe(kernel), every_s=PROBE_S)
    router = router_probe(kernel)
    if router is not None:
        manager.start_task("router", router, every_s=PROBE_S)


def observability_probe(kernel: Kernel, period_s: float = PROBE_S) -> TaskFactory:
    """Observability's probe: the span exporter's thread runs (tracing on) and no trace
    observer raised since the last look; a restart makes a fresh exporter."""
    trace = kernel.trace
    return probe_task(trace.down, period_s, "OBSERVABILITY.DOWN", repair=trace.restart_export)


def router_probe(kernel: Kernel, period_s: float = PROBE_S) -> TaskFactory | None:
    """The Message Router's probe, the router attached now (None: another ``msg`` adapter
    was given, not one this probe knows): its inboxes agree with the log, read in a
    thread; a restart rebuilds them from it."""
    given = kernel.commit.adapter("msg")
    if given is not None and not isinstance(given, MessageRouter):
        return None
    inboxes = RouterCheck(kernel, attach(kernel))

    async def down() -> str | None:
        await in_thread(inboxes.catch_up)  # the first look reads the whole log
        return inboxes.look()

    async def rebuild() -> None:
        await in_thread(inboxes.catch_up)
        inboxes.rebuild()

    return probe_task(down, period_s, "ROUTER.DOWN", timeout_s=PROBE_TIMEOUT_S, repair=rebuild)


def service_manager(kernel: Kernel) -> ServiceManager | None:
    """The Service Manager of a serving kernel `configured_kernel` opened (None for a
    one-shot command's): what `maos up` hands its in-process services to."""
    return _MANAGERS.get(kernel)


def _notifier(kernel: Kernel, s: SecuritySettings) -> CommanderNotifier | None:
    if s.notify_mail is None and s.notify_webhook is None:
        return None
    return CommanderNotifier(kernel, mail_to=s.notify_mail, webhook=s.notify_webhook)


@contextlib.asynccontextmanager
async def configured_kernel(
    data_dir: Path,
    *,
    follow: bool = True,
    adapters: Mapping[str, Any] | None = None,
    json_logs: bool = False,
) -> AsyncIterator[Kernel]:
    """A kernel on ``data_dir`` with the configured LLM chain and SSE (and ``adapters``,
    installed before boot replays approved intents); all closed after. Without a tool
    adapter given, the hosts of tools that parked calls wait for are started too, once
    the kernel has folded its log and before it replays approved intents."""
    config = read_config(data_dir)  # the one reading: the kernel's keys and the services'
    settings = load_settings(data_dir, config=config)
    llm = build_llm(settings.llm)
    kernel: Kernel | None = None
    security: SecurityAgent | None = None
    hacf: HacfService | None = None
    manager: ServiceManager | None = None
    memory: MemoryManager | None = None
    home: PodHome | None = None
    tools: ToolAdapter | None = None

    async def start_parked_tools(booting: Kernel) -> None:
        nonlocal home, tools
        modules = _parked_tool_modules(booting)
        if modules:
            home = PodHome()
            pinned = {m: digest for m, digest in modules.items() if digest is not None}
            tools = await start_tools(
                list(modules), home=home, pinned=pinned, watchdog=booting.watchdog
            )
            booting.add_adapter("tool", tools)

    try:
        sse = await semantic_evaluator(settings.sse, llm)
        extra = {**(adapters or {}), **({} if llm is None else {"llm": llm.adapter})}
        kernel = await Kernel.boot(
            KernelConfig.of(config, data_dir),
            follow=follow,
            sse=sse,
            fever_sse=HeuristicEvaluator() if sse is None else None,
            adapters=extra,
            prepare=None if "tool" in extra else start_parked_tools,
        )
        if llm is not None:
            await llm.attach(kernel)
        await finish_overrides(kernel)  # confirmed before a crash, never carried out
        limits, policy = aggregate_limits(settings.security), cascade_policy(settings.security)
        notifier = _notifier(kernel, settings.security)
        if follow:  # a serving kernel: Ring 1 services supervised (docs/resilience.md)
            kernel.view.aggregate.configure(limits, enforce=not policy.monitor_only)
            manager = ServiceManager(kernel, on_order=notify_hook(notifier))
            _MANAGERS[kernel] = manager
            Tsca(kernel, manager).watch(manager)  # a service given up on is an incident
            for name in ("security", "memory"):  # their own processes
                manager.start(name)
            for name in ("security", "memory"):
                await manager.started(name)
        else:  # a one-shot command's kernel: one look at the log, in this process
            security = SecurityAgent(kernel, limits, policy=policy, notifier=notifier)
            security.start()
            memory = MemoryManager(kernel)
            memory.start()
        if json_logs or (config.telemetry is not None and config.telemetry.json_logs):
            jsonlog.enable(kernel.trace)  # JSON lines on stderr (kernel/jsonlog.py)
        kernel.sse, kernel.fever_sse = consulted_by_sse(
            kernel.sse, kernel.fever_sse, kernel.view.memory
        )
        hacf = HacfService(  # the inform inbox; the Commander told when a decision waits
            kernel.wal,
            kernel.registry,
            config.commander,
            notify=notifier.tell if notifier else None,
        )
        hacf.start()
        if manager is not None:
            _probe_in_kernel(kernel, manager)
        yield kernel
    finally:
        if hacf is not None:
            await hacf.stop()
        if memory is not None:
            await memory.stop()
        if manager is not None:
            await manager.stop()
        if security is not None:
            await security.stop()
        if llm is not None:  # first: its last mode records go to the open log
            await llm.aclose()
        if kernel is not None:
            await kernel.close()
        if tools is not None:
            await tools.aclose()
        if home is not None:
            home.close()


async def run_plan_file(data_dir: Path, plan_file: Path, *, resume: bool, echo: Echo) -> PlanResult:
    """Start the plan's tool hosts, boot a kernel, run the plan with one pod runtime per
    isolation level; everything is closed after."""
    plan = load_plan(plan_file)
    async with _plan_tools(plan, echo) as (home, tools):
        adapters = {} if tools is None else {"tool": tools}
        async with configured_kernel(data_dir, adapters=adapters) as kernel:
            if tools is not None:
                await register_tools(kernel, tools)
            return await _orchestrate(kernel, plan, home, resume=resume, echo=echo)


async def run_plan_on(kernel: Kernel, plan: Plan, *, echo: Echo) -> PlanResult:
    """Run a plan on a kernel that is already serving (`maos up`); its tool hosts, if it
    names any, become the kernel's tool adapter for as long as the plan runs."""
    async with _plan_tools(plan, echo) as (home, tools):
        if tools is not None:
            kernel.add_adapter("tool", tools)
            await register_tools(kernel, tools)
        return await _orchestrate(kernel, plan, home, resume=False, echo=echo)


@contextlib.asynccontextmanager
async def _plan_tools(plan: Plan, echo: Echo) -> AsyncIterator[tuple[PodHome, ToolAdapter | None]]:
    """A pod home for the plan, and the hosts of its tool modules (if it names any)."""
    home = PodHome()
    tools = None
    try:
        if plan.tool_modules:
            tools = await start_tools([Path(m) for m in plan.tool_modules], home=home)
            names = ", ".join(m.name for m in tools.manifests())
            echo(f"tools    {names} (each module in a sandboxed tool host)")
        yield home, tools
    finally:
        if tools is not None:
            await tools.aclose()
        home.close()


def cron_scheduler(kernel: Kernel, data_dir: Path, *, echo: Echo) -> CronScheduler | None:
    """The Cron Scheduler of ``config.json``'s ``cron`` section (None without jobs): each
    run is a plan on ``kernel`` like `run_plan_on`'s, and a run a stop interrupted is
    resumed (`maos.services.cron`). Start it with ``await scheduler.start()``."""
    section = read_config(data_dir).cron
    if section is None or not section.jobs:
        return None

    async def runner(plan: Plan, resume: bool) -> PlanResult:
        async with _plan_tools(plan, echo) as (home, tools):
            if tools is not None:
                kernel.add_adapter("tool", tools)
                await register_tools(kernel, tools)
            return await _orchestrate(kernel, plan, home, resume=resume, echo=echo)

    return CronScheduler(kernel, section, runner, base_dir=data_dir)


def a2a_endpoints(kernel: Kernel, data_dir: Path) -> list[A2aInbound]:
    """The inbound A2A endpoints of ``config.json``'s ``a2a`` section, not yet started."""
    section = read_config(data_dir).a2a
    if section is None:
        return []
    # The A2A server side (the SDK, protobuf) loads only for a config that serves one.
    from maos.pod.a2a_inbound import A2aInbound

    return [A2aInbound(kernel, e.agent, host=e.host, port=e.port) for e in section.inbound]


class PlanQueue:
    """Plans run one after another on a serving kernel (`maos up`): what the dashboard
    and `maos run` submit to, and what they show. One at a time, because a plan's tool
    hosts are the kernel's one ``tool`` adapter while it runs."""

    LOG_LINES = 500
    """Progress lines kept per run (the oldest go first)."""

    def __init__(self, kernel: Kernel, echo: Echo) -> None:
        self._kernel = kernel
        self._echo = echo
        self._runs: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[tuple[Plan, dict[str, Any]]] = asyncio.Queue()

    def submit(self, plan_file: Path) -> dict[str, Any]:
        """Queue a plan file, validated now (`PlanError` with the field otherwise)."""
        plan = load_plan(plan_file)
        run: dict[str, Any] = {
            "run": len(self._runs) + 1,
            "plan": str(plan_file),
            "task": plan.task,
            "status": "queued",
            "detail": "",
            "log": [],
        }
        self._runs.append(run)
        self._queue.put_nowait((plan, run))
        return dict(run)

    def runs(self) -> list[dict[str, Any]]:
        return [{**r, "log": list(r["log"])} for r in self._runs]

    async def serve(self) -> None:
        """Run queued plans until cancelled."""
        while True:
            plan, run = await self._queue.get()
            run["status"] = "running"

            def echo(line: str, log: list[str] = run["log"]) -> None:
                log.append(line)
                del log[: -self.LOG_LINES]
                self._echo(line)

            try:
                result = await run_plan_on(self._kernel, plan, echo=echo)
            except MaosError as exc:
                run.update(status="failed", detail=f"{exc.code}: {exc.message}")
                echo(f"plan     {plan.task} failed {exc.code}: {exc.message}")
                continue
            except Exception as exc:  # the queue itself broke: its supervisor restarts it
                run.update(status="failed", detail=f"{type(exc).__name__}: {exc}")
                raise
            detail = "" if result.failure is None else f"{result.code}: {result.failure.reason}"
            waiting = [a.approval_id for a in result.waiting]
            run.update(status=result.status, detail=detail, waiting=waiting)


NO_MODEL_HINT = (
    "set MAOS_LLM_BASE_URL and MAOS_LLM_MODEL (an OpenAI-compatible server, e.g."
    " http://127.0.0.1:11434/v1 and llama3.1), or the 'llm' section of"
    " <data-dir>/config.json (docs/llm.md)"
)
DIAL_TIMEOUT_S = 3.0
"""How long the check before a model step waits for a provider's port to answer."""


async def model_unavailable(kernel: Kernel, providers: Sequence[ProviderConfig]) -> str | None:
    """Why a step that needs a model cannot have one now, or None. Configured means the
    kernel serves ``llm.*`` and ``config.json`` names ``providers`` (read once per plan
    run, not per step); reachable means some provider's host accepts a connection (a
    cheap stand-in for a completion, which would cost tokens)."""
    if kernel.commit.adapter("llm") is None or not providers:
        return f"this step needs a model and none is configured: {NO_MODEL_HINT}"
    urls = [p.base_url or ANTHROPIC_URL for p in providers]
    answers = await asyncio.gather(*(_dials(url) for url in urls))
    if any(answers):
        return None
    tried = ", ".join(f"{p.name} at {url}" for p, url in zip(providers, urls, strict=True))
    return f"this step needs a model and no configured provider answers ({tried}): {NO_MODEL_HINT}"


ANTHROPIC_URL = "https://api.anthropic.com"
"""Where an ``anthropic`` provider without a base_url goes."""


async def _dials(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        _, writer = await asyncio.wait_for(
            asyncio.open_connection(parts.hostname, port), DIAL_TIMEOUT_S
        )
    except (OSError, TimeoutError, ValueError):
        return False
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return True


def approval_lines(approvals: Sequence[Approval]) -> list[str]:
    """How a plan's end names each decision it leaves: still waiting (until when, and
    the commands that decide it) or expired."""
    lines = []
    for a in approvals:
        what = f"{a.approval_id} {a.rule} {a.intent.get('op')} -> {a.intent.get('target')}"
        if a.status is ApprovalStatus.PENDING:
            until = "" if a.expires_at is None else f" until {iso_time(a.expires_at)}"
            lines.append(f"waiting  {what} (agent {a.agent_id}){until}")
            lines.append(f"         decide: maos approvals approve|deny {a.approval_id}")
        else:
            lines.append(f"{a.status.value:<8} {what} ({a.code}: never runs)")
    return lines


async def _orchestrate(
    kernel: Kernel, plan: Plan, home: PodHome, *, resume: bool, echo: Echo
) -> PlanResult:
    runtimes: dict[int | None, PodRuntime] = {}

    def pods(level: int | None) -> PodStarter:
        if level not in runtimes:
            runtimes[level] = PodRuntime(kernel, level=level, home=home)
        return runtimes[level]

    def show(event: StepEvent) -> None:
        echo(f"{event.kind:<8} {event.step:<16} {event.agent_id:<16} {event.detail}".rstrip())

    providers = load_settings(kernel.config.data_dir).llm.providers
    try:
        orchestrator = Orchestrator(
            kernel, pods, on_event=show, model_check=lambda: model_unavailable(kernel, providers)
        )
        result = await (orchestrator.resume(plan.task) if resume else orchestrator.run(plan))
        line = f"plan     {plan.task} {result.status}"
        echo(line if result.failure is None else f"{line} {result.code} {result.failure.reason}")
        for line in approval_lines(result.approvals):
            echo(line)
        return result
    finally:
        for runtime in runtimes.values():
            await runtime.close()
