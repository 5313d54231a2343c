"""Upstream (MCP) servers as level-2 pods, with only the network their policy names.

An MCP client spawns a stdio server from a command line; `sandboxed_command` rewrites
that command line so the same client spawns it inside a sandbox instead:

    python3 upstream_init.py outer SPEC          host, kernel's uid: clean env, drop to 65534
      └─ bwrap (uid 65534) --unshare-all ...     private user/pid/mount/net/ipc/uts namespaces
           └─ python3 /maos/upstream_init.py inner SPEC   rlimits, Landlock, forwarder
                └─ the server (exec)             stdio is the MCP channel, as before

It is level 2 (`maos.pod.isolation.level2`): the same namespace flags, interpreter
mounts, seccomp filter and the bootstrap's rlimits and Landlock; only the start differs,
because an MCP client, not the kernel's `PodProcess`, holds the server's stdio. Inside
there is nothing of the host but the interpreter, the runtime (`upstream_runtime`), the
files the caller names, a scratch ``/work`` and a tmpfs ``/tmp``; no ``/etc``, ``/root``
or data dir.

Network: a private namespace with only a loopback. With an allowlist, an egress relay
(`maos.pod.egress`) in the kernel's process is bind-mounted as ``/maos/egress.sock`` and
a forwarder inside listens on ``127.0.0.1:PROXY_PORT``; the server gets ``HTTPS_PROXY``
and friends pointing there, the seccomp filter lets ``socket()`` through for
AF_UNIX/INET/INET6 only and Landlock (ABI >= 4) lets TCP connect to that port only.

Environment: exactly ``env`` plus a fixed base (``PATH``, ``HOME=/work``, ``LANG``,
``TMPDIR``, the proxy variables); credentials are given explicitly and never inherited.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType

from maos.pod import upstream_init
from maos.pod.egress import EgressRelay, OnConnect
from maos.pod.isolation import level2, seccomp
from maos.pod.isolation.base import ENV_NAME, Limits
from maos.pod.isolation.errors import IsolationUnavailable, SandboxError
from maos.pod.isolation.home import POD_UID, PodDir, PodHome, pod_uid, reachable
from maos.pod.isolation.level1 import PYTHON
from maos.pod.upstream_runtime import NODE, Runtime

__all__ = [
    "MAX_STAGED_BYTES",
    "PROXY_PORT",
    "RESERVED_ENV",
    "SOCKET",
    "UPSTREAM_LIMITS",
    "UpstreamCommand",
    "sandboxed_command",
    "upstream_pod",
]

PROXY_PORT = 3128
"""The forwarder's port on the sandbox's own loopback (a private namespace: no clash)."""
SOCKET = "/maos/egress.sock"
"""Where the relay's Unix socket is mounted inside the sandbox."""
UPSTREAM_LIMITS = Limits(
    cpu_seconds=24 * 3600,
    memory_bytes=4 * 1024**3,
    max_processes=256,
    max_file_bytes=64 * 1024 * 1024,
    max_open_files=1024,
)
"""Servers live as long as the gateway and run runtimes (node) that reserve address
space and threads (RLIMIT_NPROC counts threads) freely."""
MAX_STAGED_BYTES = 64 * 1024 * 1024
"""What may be copied into one upstream's pod as its ``files``."""
RESERVED_ENV = frozenset(("HOME", "HTTPS_PROXY", "HTTP_PROXY", "LANG", "PATH", "TMPDIR"))
"""Set by the sandbox itself; a caller giving one is ``POD.SPAWN.BAD_ENV``."""
_PROXY = f"http://127.0.0.1:{PROXY_PORT}"


@dataclass(frozen=True, slots=True)
class UpstreamCommand:
    """What to hand the MCP client: ``StdioServerParameters(command=..., args=list(...),
    env=dict(...))``."""

    command: str
    args: tuple[str, ...]
    env: Mapping[str, str]
    """Everything the server will see; anything else the client adds is dropped."""
    workspace: Path
    """The host path of the server's ``/work``."""


def sandboxed_command(
    command: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    home: PodHome,
    pod_dir: PodDir,
    relay: EgressRelay | None = None,
    runtime: Runtime | None = None,
    files: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    level: int = 2,
    limits: Limits = UPSTREAM_LIMITS,
) -> UpstreamCommand:
    """The command line that runs ``command args`` as a level-2 pod in ``pod_dir``.

    ``relay`` is the server's egress (its socket must exist, under ``pod_dir``); None
    means no network at all. ``files`` appear read-only at their own paths (the server's
    script, its data): a file is copied into the pod dir (so it need not be reachable by
    the pod's uid, and the server sees the version of its start), a directory is bound.
    ``writable`` directories are bound read-write (a server's own data; they must belong
    to the pod's uid). `upstream_pod` makes the pod dir and relay for you.
    """
    if level != 2:
        raise IsolationUnavailable(
            "POD.ISOLATION.UNAVAILABLE",
            f"upstream servers run at level 2 only, not {level}",
            level=level,
            reason="only level 2 has an upstream launcher",
        )
    support = level2.support()
    if not support.available:
        raise IsolationUnavailable(
            "POD.ISOLATION.UNAVAILABLE",
            f"isolation level 2 is unavailable: {support.reason}",
            level=2,
            reason=support.reason,
        )
    given, base = _environment(env, runtime, egress=relay is not None)
    binds = _binds(command, files, writable, runtime, pod_dir)
    init = _install_init(home)
    inner = {
        "limits": asdict(limits),
        "landlock": _landlock(files, writable, runtime, egress=relay is not None),
        "proxy_port": PROXY_PORT if relay is not None else None,
        "socket": SOCKET,
        "cwd": "/work",
        "argv": [command, *args],
    }
    bwrap = shutil.which("bwrap")
    assert bwrap is not None  # level2.support() found it
    argv = [
        bwrap,
        *level2.bwrap_args(home.bootstrap, pod_dir.workspace, clearenv=False),
        *("--ro-bind", str(init), "/maos/upstream_init.py"),
        *binds,  # after /tmp: a runtime or file under the host's /tmp stays visible
    ]
    if relay is not None:
        argv += ["--bind", str(relay.socket_path), SOCKET]
    argv += ["--chdir", "/work", "--seccomp", "{seccomp}", "--"]
    argv += [PYTHON, "-I", "-S", "-B", "/maos/upstream_init.py", "inner", json.dumps(inner)]
    outer = {
        "bwrap": argv,
        "keep_env": sorted(given),
        "base_env": base,
        "seccomp": base64.b64encode(seccomp.filter_bpf(relay is not None)).decode(),
        "uid": POD_UID,
    }
    return UpstreamCommand(
        command=PYTHON,
        args=("-I", "-S", "-B", str(init), "outer", json.dumps(outer)),
        env=MappingProxyType({**given, **base}),
        workspace=pod_dir.workspace,
    )


@contextlib.asynccontextmanager
async def upstream_pod(
    command: str,
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    home: PodHome,
    egress: Sequence[str] = (),
    on_connect: OnConnect | None = None,
    runtime: Runtime | None = None,
    files: Sequence[Path] = (),
    writable: Sequence[Path] = (),
    level: int = 2,
) -> AsyncIterator[UpstreamCommand]:
    """A pod dir, the relay for ``egress`` (logging to ``on_connect``) and the command.

    The relay runs in this event loop until the block exits; spawn and stop the server
    inside the block. Every connection is reported, so egress without ``on_connect`` is
    refused.
    """
    if egress and on_connect is None:
        raise SandboxError(
            "POD.UPSTREAM.UNLOGGED",
            "an upstream with egress needs on_connect: every connection is logged",
        )
    pod_dir = home.make_pod_dir(None, POD_UID)
    try:
        if not egress:
            yield sandboxed_command(
                command,
                args,
                env=env,
                home=home,
                pod_dir=pod_dir,
                runtime=runtime,
                files=files,
                writable=writable,
                level=level,
            )
            return
        assert on_connect is not None
        sock = pod_dir.path / "egress.sock"
        async with EgressRelay(egress, sock, on_connect=on_connect, owner=POD_UID) as relay:
            yield sandboxed_command(
                command,
                args,
                env=env,
                home=home,
                pod_dir=pod_dir,
                relay=relay,
                runtime=runtime,
                files=files,
                writable=writable,
                level=level,
            )
    finally:
        pod_dir.remove()


def _environment(
    env: Mapping[str, str], runtime: Runtime | None, *, egress: bool
) -> tuple[dict[str, str], dict[str, str]]:
    """The caller's variables (secrets: they travel only in the environment) and the base
    (no secrets: it travels in the launcher's spec, so no inherited value replaces it)."""
    for name, value in env.items():
        if not ENV_NAME.match(name) or name in RESERVED_ENV:
            raise SandboxError(
                "POD.SPAWN.BAD_ENV", "invalid or reserved environment name", name=name
            )
        if "\0" in value:
            raise SandboxError("POD.SPAWN.BAD_ENV", "an environment value holds NUL", name=name)
    path = "/usr/bin:/bin" if runtime is None else f"{runtime.root}/bin:/usr/bin:/bin"
    base = {"PATH": path, "HOME": "/work", "LANG": "C.UTF-8", "TMPDIR": "/tmp"}
    if egress:
        for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            base[name] = _PROXY
    return dict(env), base


def _binds(
    command: str,
    files: Sequence[Path],
    writable: Sequence[Path],
    runtime: Runtime | None,
    pod_dir: PodDir,
) -> list[str]:
    args: list[str] = [] if runtime is None else runtime.binds()
    mounted = [PYTHON]
    if runtime is not None:
        mounted.append(f"{runtime.root}/")
        if runtime.node:
            mounted.append(NODE)
        if not reachable(runtime.root, pod_uid()):
            raise SandboxError(
                "POD.RUNTIME.UNREACHABLE", "nobody cannot reach the runtime", path=str(runtime.root)
            )
    staged = pod_dir.path / "files"
    total = 0
    for path in files:
        if not path.is_absolute() or not (path.is_file() or path.is_dir()):
            raise SandboxError(
                "POD.UPSTREAM.NO_FILE",
                "a file given to an upstream must be an absolute path to a file or directory",
                path=str(path),
            )
        if path.is_dir():
            if not reachable(path, pod_uid()):
                raise SandboxError(
                    "POD.UPSTREAM.UNREACHABLE",
                    "a directory given to an upstream must be one nobody can reach",
                    path=str(path),
                )
            args += ["--ro-bind", str(path), str(path)]
            mounted.append(f"{path}/")
            continue
        total += path.stat().st_size
        if total > MAX_STAGED_BYTES:
            raise SandboxError(
                "POD.UPSTREAM.TOO_LARGE",
                f"files given to an upstream are copied; over {MAX_STAGED_BYTES} bytes in all",
                path=str(path),
            )
        staged.mkdir(mode=0o711, exist_ok=True)
        copy = Path(tempfile.mkstemp(dir=staged)[1])
        shutil.copyfile(path, copy)
        copy.chmod(0o555 if os.access(path, os.X_OK) else 0o444)
        args += ["--ro-bind", str(copy), str(path)]
        mounted.append(str(path))
    for path in writable:
        if not path.is_absolute() or not path.is_dir() or not reachable(path, pod_uid()):
            raise SandboxError(
                "POD.UPSTREAM.UNREACHABLE",
                "a writable directory must be an absolute path to a directory nobody can reach",
                path=str(path),
            )
        args += ["--bind", str(path), str(path)]
    if not any(command == m or (m.endswith("/") and command.startswith(m)) for m in mounted):
        raise SandboxError(
            "POD.UPSTREAM.NOT_MOUNTED",
            "the command does not exist inside the sandbox; use /usr/bin/python3, the "
            "runtime's python or node, or a path among files",
            command=command,
        )
    return args


def _landlock(
    files: Sequence[Path], writable: Sequence[Path], runtime: Runtime | None, *, egress: bool
) -> dict[str, list[object]] | None:
    if level2.landlock_abi() < 1:
        return None
    ro: list[object] = ["/usr", "/maos", "/proc", "/dev"]
    if runtime is not None:
        ro.append(str(runtime.root))
    ro += [str(p) for p in files if p.is_dir()]
    return {
        "ro": ro,
        "ro_files": [str(p) for p in files if not p.is_dir()],
        "rw": ["/work", "/tmp", *(str(p) for p in writable)],
        "rw_files": ["/dev/null"],
        "tcp_connect": [PROXY_PORT] if egress else [],
    }


def _install_init(home: PodHome) -> Path:
    """The launcher beside the home's bootstrap (it loads the bootstrap's Landlock code)."""
    target = home.root / "upstream_init.py"
    source = Path(upstream_init.__file__)
    if not target.exists() or target.read_bytes() != source.read_bytes():
        tmp = home.root / "upstream_init.py.new"
        shutil.copyfile(source, tmp)
        tmp.chmod(0o444)
        tmp.replace(target)
    return target
