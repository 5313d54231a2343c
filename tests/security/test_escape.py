"""Escape suite: every attack in escapes/ runs as agent code inside a real pod, per level.

Each attack reports what it achieved through the channel (or dies trying); host-side
checks (a loopback server that saw a connection, a file that appeared on the host, a
secret in what the pod sent back) override the pod's own word. The table says, per
level, whether the level must hold or is known not to - and why. Level 2 holds everywhere.
A row whose expectation is wrong fails, in either direction, so the table stays true.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import selectors
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import Field

from maos.pod.channel import ChannelClosed, ChannelViolation
from maos.pod.frames import BASE_OPS, Frame, Reply, StrictModel
from maos.pod.isolation import HardViolation, Limits, PodHome, PodSpec, detect, sandbox_for
from maos.pod.isolation.level1 import PYTHON, UID_BASE

ESCAPES = Path(__file__).parent / "escapes"
HOLD = "hold"
CPU = 1
LIMITS = Limits(cpu_seconds=CPU, memory_bytes=256 << 20, max_processes=32, max_file_bytes=16 << 20)
AGENT = "agent-under-test"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="models production: the kernel runs as root, pods as nobody"
)

NO_FILTER = "level 1 has no syscall filter; unprivileged processes may make this call"
GVISOR = "served by gVisor's user-space kernel; the host kernel never sees the call"

# attack -> (level 1, level 3); level 2 must always hold.
TABLE: dict[str, tuple[str, str]] = {
    "read_etc_shadow": (HOLD, HOLD),
    "read_root_key": (HOLD, HOLD),
    "read_wal": (HOLD, HOLD),
    "write_host_tmp": (HOLD, HOLD),  # level 1's /tmp is its own (issue 9)
    "write_data_dir": (HOLD, HOLD),
    "symlink_escape": (HOLD, HOLD),
    "dotdot_escape": (HOLD, HOLD),
    "tcp_connect": (HOLD, HOLD),  # level 1 has a network namespace of its own (issue 9)
    "udp_send": (HOLD, HOLD),
    "unix_connect": (HOLD, HOLD),
    "dns_lookup": (HOLD, HOLD),
    "fork_bomb": (HOLD, HOLD),
    "memory_bomb": (HOLD, HOLD),
    "cpu_spin": (HOLD, HOLD),
    "ptrace_parent": (HOLD, HOLD),
    "process_vm_readv": (HOLD, HOLD),
    "kill_kernel": (HOLD, HOLD),
    "inherited_fds": (HOLD, HOLD),
    "env_secrets": (HOLD, HOLD),
    "proc_environ": (HOLD, HOLD),
    "proc_cmdline": ("the host pid namespace is shared; cmdline is world-readable", HOLD),
    "proc_root": (HOLD, HOLD),
    "mounts_reveal_host": ("the host mount table is visible to any process", HOLD),
    "mount_tmpfs": (HOLD, HOLD),
    "unshare_userns": (NO_FILTER + " (user namespaces are enabled on the host)", GVISOR),
    "keyctl": (NO_FILTER, HOLD),
    "bpf": (HOLD, HOLD),
    "chroot_escape": (HOLD, HOLD),
    "setuid_root": (HOLD, HOLD),
    "write_dev": (HOLD, HOLD),
    "load_module": (HOLD, HOLD),
    "io_uring": (NO_FILTER, GVISOR),
    "personality": (NO_FILTER, HOLD),
    "userfaultfd": (NO_FILTER + " (UFFD_USER_MODE_ONLY)", HOLD),
    "oversized_frame": (HOLD, HOLD),
    "malformed_frame": (HOLD, HOLD),
    "replayed_frame": (HOLD, HOLD),
    "forged_agent_id": (HOLD, HOLD),
    "unknown_gateway": (HOLD, HOLD),
    "foreign_token": (HOLD, HOLD),
}
FRAME_ATTACKS = {
    "oversized_frame": "POD.FRAME.TOO_LARGE",
    "malformed_frame": "POD.FRAME.MALFORMED",
    "replayed_frame": "POD.FRAME.REPLAY",
    "forged_agent_id": "POD.FRAME.MALFORMED",
    "unknown_gateway": "POD.FRAME.UNKNOWN_GATEWAY",
}


class ReportArgs(StrictModel):
    achieved: bool
    detail: str = Field(max_length=65536)


OPS = BASE_OPS.with_op("admin", "report", ReportArgs)


class Servers:
    """Loopback TCP, UDP and Unix (path and abstract) servers that record every byte."""

    def __init__(self, sock_dir: Path) -> None:
        self.seen: list[bytes] = []
        self._stop = threading.Event()
        self._sel = selectors.DefaultSelector()
        self.abstract = f"maos-test-{secrets.token_hex(6)}"
        self.unix_path = str(sock_dir / "host.sock")
        tcp = socket.create_server(("127.0.0.1", 0))
        unix = socket.socket(socket.AF_UNIX)
        unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o666)
        abstract = socket.socket(socket.AF_UNIX)
        abstract.bind("\0" + self.abstract)
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp_port = tcp.getsockname()[1]
        self.udp_port = self.udp.getsockname()[1]
        for lst in (tcp, unix, abstract):
            lst.listen()
            self._sel.register(lst, selectors.EVENT_READ, "listen")
        self._sel.register(self.udp, selectors.EVENT_READ, "udp")
        self._passes = 0
        """Select passes the server thread has finished (see `_drain`)."""
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._passes += 1
            for key, _ in self._sel.select(0.05):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if key.data == "listen":
                    conn, _ = sock.accept()
                    self._sel.register(conn, selectors.EVENT_READ, "conn")
                    self.seen.append(b"<connection>")
                    continue
                try:
                    data, peer = sock.recvfrom(4096)
                except OSError:
                    data, peer = b"", None
                self.seen.append(data)
                if key.data == "udp" and peer is not None:
                    sock.sendto(b"answer", peer)
                elif not data:
                    self._sel.unregister(sock)
                    sock.close()
        for key in list(self._sel.get_map().values()):
            assert isinstance(key.fileobj, socket.socket)
            key.fileobj.close()
        self._sel.close()

    def _drain(self) -> None:
        """Let the server thread take in what reached its sockets before now: a connection
        is accepted in one pass and read in the next, so three whole passes suffice. Read
        at once, a check could miss what a process sent just before it exited - a control
        failing, or worse, an escape counted as contained."""
        target = self._passes + 3
        deadline = time.monotonic() + 10
        while self._passes < target and time.monotonic() < deadline:
            time.sleep(0.01)

    def saw(self, mark: str) -> bool:
        self._drain()
        return any(mark.encode() in data for data in self.seen)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Host:
    data: Path
    servers: Servers
    secret: str
    token: str = field(default_factory=lambda: "biscuit:" + secrets.token_hex(32))


@pytest.fixture(scope="module")
def host() -> Iterator[Host]:
    with tempfile.TemporaryDirectory(prefix="maos-escape-") as tmp:
        root = Path(tmp)
        root.chmod(0o755)  # careless on purpose: only the files' own modes protect them
        data = root / "data"
        (data / "keys").mkdir(parents=True)
        data.chmod(0o755)
        (data / "keys").chmod(0o755)
        key = data / "keys" / "root.key"
        key.write_bytes(secrets.token_bytes(32))
        key.chmod(0o600)
        with sqlite3.connect(data / "wal.sqlite") as db:
            db.execute("CREATE TABLE wal (seq INTEGER PRIMARY KEY, record BLOB)")
        db.close()
        (data / "wal.sqlite").chmod(0o600)
        sock_dir = root / "sockets"
        sock_dir.mkdir(mode=0o755)
        servers = Servers(sock_dir)
        secret = secrets.token_hex(16)
        os.environ["MAOS_T_SECRET"] = secret
        try:
            yield Host(data, servers, secret)
        finally:
            del os.environ["MAOS_T_SECRET"]
            servers.close()


@dataclass
class Outcome:
    level: int
    mark: str
    report: ReportArgs | None = None
    frames: list[Frame] = field(default_factory=list)
    violation: HardViolation | None = None
    reported_to_sink: list[HardViolation] = field(default_factory=list)
    signal: int | None = None
    log: str = ""


async def run_attack(level: int, name: str, host: Host, home: PodHome) -> Outcome:
    mark = f"mark-{level}-{name}-{secrets.token_hex(4)}"
    out = Outcome(level, mark)
    sandbox = sandbox_for(level, home, ops=OPS, on_violation=out.reported_to_sink.append)
    env = {
        "MAOS_T_DATA": str(host.data),
        "MAOS_T_HOST_FILE": f"/tmp/{mark}",
        "MAOS_T_TCP": str(host.servers.tcp_port),
        "MAOS_T_UDP": str(host.servers.udp_port),
        "MAOS_T_UNIX": host.servers.unix_path,
        "MAOS_T_ABSTRACT": host.servers.abstract,
        "MAOS_T_MARK": mark,
        "MAOS_T_CPU": str(CPU),
        "MAOS_T_KERNEL_PID": str(os.getpid()),
        "MAOS_T_KERNEL_PGID": str(os.getpgrp()),
        "MAOS_T_FOREIGN_TOKEN": host.token,
    }
    spec = PodSpec(AGENT, ESCAPES / f"{name}.py", limits=LIMITS, env=env)
    pod = await sandbox.spawn(spec)
    assert pod.channel is not None

    async def serve() -> None:
        assert pod.channel is not None
        while True:
            try:
                frame = await pod.channel.recv()
                out.frames.append(frame)
                if isinstance(frame.args, ReportArgs):
                    out.report = frame.args
                await pod.channel.send(Reply(id=frame.id, ok=True))
            except (ChannelViolation, ChannelClosed):
                return

    server = asyncio.create_task(serve())
    try:
        await asyncio.wait_for(pod.wait(), 120)  # a hung pod is a failure, not a hang
    except TimeoutError:
        pod.kill()
        await pod.wait()
    await asyncio.wait_for(server, 10)
    out.violation, out.signal, out.log = pod.violation, pod.signal, pod.log()
    return out


def _host_root_line() -> str:
    """The host root mount's device, mount point and type (level 1's bwrap re-mounts it
    with ``nosuid``, so the options differ while the mount is the host's)."""
    with open("/proc/self/mounts") as f:
        return " ".join(next(line for line in f if line.split()[1] == "/").split()[:3]) + " "


JUDGES: dict[str, Callable[[Outcome, Host], bool]] = {
    "write_host_tmp": lambda o, h: Path(f"/tmp/{o.mark}").exists(),
    "write_data_dir": lambda o, h: (h.data / "planted").exists(),
    "tcp_connect": lambda o, h: h.servers.saw(o.mark),
    "udp_send": lambda o, h: h.servers.saw(o.mark),
    "unix_connect": lambda o, h: h.servers.saw(o.mark),
    "dns_lookup": lambda o, h: h.servers.saw(o.mark) or bool(o.report and o.report.achieved),
    "write_dev": lambda o, h: (
        bool(o.report and o.report.achieved) or Path(f"/dev/shm/{o.mark}").exists()
    ),
    "mounts_reveal_host": lambda o, h: (
        bool(o.report) and (o.report.achieved or _host_root_line() in o.report.detail)
    ),
    "env_secrets": lambda o, h: (
        bool(o.report) and (o.report.achieved or h.secret in o.report.detail)
    ),
    "proc_environ": lambda o, h: (
        bool(o.report) and (o.report.achieved or h.secret in o.report.detail)
    ),
    "cpu_spin": lambda o, h: (
        o.report is not None or o.signal not in (signal.SIGKILL, signal.SIGXCPU)
    ),
    "foreign_token": lambda o, h: (
        not o.frames
        or any(f.agent_id != AGENT or f.cap != h.token for f in o.frames if f.op == "heartbeat")
    ),
}


def escaped(name: str, out: Outcome, host: Host) -> bool:
    if name in FRAME_ATTACKS:
        return out.violation is None or out.violation.code != FRAME_ATTACKS[name]
    if name in JUDGES:
        return JUDGES[name](out, host)
    # The pod must have said something or been stopped: a crashed attack proves nothing.
    assert out.report is not None or out.violation or out.signal, out.log
    return bool(out.report and out.report.achieved)


def _levels() -> list[object]:
    params: list[object] = []
    for level in (1, 2, 3):
        support = detect(level)
        marks = [pytest.mark.skipif(not support.available, reason=support.reason)]
        params.append(pytest.param(level, marks=marks, id=f"level{level}"))
    return params


@pytest.mark.parametrize("level", _levels())
@pytest.mark.parametrize("name", sorted(TABLE))
def test_escape_attempt(level: int, name: str, host: Host, home: PodHome) -> None:
    out = asyncio.run(run_attack(level, name, host, home))
    try:
        result = escaped(name, out, host)
    finally:
        Path(f"/tmp/{out.mark}").unlink(missing_ok=True)
        Path(f"/dev/shm/{out.mark}").unlink(missing_ok=True)
        (host.data / "planted").unlink(missing_ok=True)
    expected = HOLD if level == 2 else TABLE[name][0 if level == 1 else 1]
    detail = f"{out.report!r} violation={out.violation} signal={out.signal} log={out.log[-800:]}"
    if expected == HOLD:
        assert not result, f"level {level} escape: {name}: {detail}"
    elif expected == GVISOR:
        pass  # the call stays inside gVisor; only host-visible effects would count
    else:
        assert result, f"level {level} now contains {name} (table says: {expected}): {detail}"
    if out.violation is not None:
        assert out.reported_to_sink == [out.violation]


def test_every_attack_file_is_in_the_table() -> None:
    assert {p.stem for p in ESCAPES.glob("*.py")} == set(TABLE)
    assert len(TABLE) >= 30


CONTROL = """
import os, socket, sys
mark, tcp, udp, unix, abstract = sys.argv[1:]
with socket.create_connection(("127.0.0.1", int(tcp)), timeout=3) as s:
    s.sendall((mark + "-tcp").encode())
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(3)
    s.sendto((mark + "-udp").encode(), ("127.0.0.1", int(udp)))
    assert s.recv(512) == b"answer"
for name, addr in (("unix", unix), ("abstract", "\\0" + abstract)):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        s.connect(addr)
        s.sendall((mark + "-" + name).encode())
for path in ("/tmp/" + mark, "/dev/shm/" + mark):
    with open(path, "w") as f:
        f.write("planted")
"""


def test_the_contained_targets_are_real_outside_the_sandbox(host: Host) -> None:
    """The control for level 1's flipped rows (issue 9): the same uid a level-1 pod
    gets, run as a plain host process, does reach the loopback TCP, UDP and Unix
    listeners and plants files in the host's /tmp and /dev/shm, so those rows are
    contained by the sandbox, not by a target that is not there."""
    mark = f"control-{secrets.token_hex(4)}"
    servers = host.servers
    args = [mark, str(servers.tcp_port), str(servers.udp_port)]
    args += [servers.unix_path, servers.abstract]
    uid = UID_BASE + 999_999
    try:
        done = subprocess.run(
            [PYTHON, "-I", "-S", "-c", CONTROL, *args],
            user=uid,
            group=uid,
            extra_groups=[],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for kind in ("tcp", "udp", "unix", "abstract"):
            assert servers.saw(f"{mark}-{kind}"), kind
        assert Path(f"/tmp/{mark}").exists() and Path(f"/dev/shm/{mark}").exists()
    finally:
        Path(f"/tmp/{mark}").unlink(missing_ok=True)
        Path(f"/dev/shm/{mark}").unlink(missing_ok=True)
