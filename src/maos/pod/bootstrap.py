"""The first code that runs inside a pod; it must stand alone.

It runs under Debian's ``/usr/bin/python3 -I -S -B`` as an unprivileged uid, with only
the standard library (no MAOS, no orjson), so this file imports nothing outside the
stdlib. It is trusted: it runs before any agent code and applies the kernel's limits
(rlimits, Landlock) to itself, so the agent inherits them and cannot lift them.

Protocol on the inherited SEQPACKET channel (fd number in ``argv[1]``):

1. the bootstrap sends ``READY`` as soon as the interpreter is up (a warm pool waits
   here, holding a fully started interpreter);
2. the kernel sends one launch frame: the agent's code, limits, environment, Landlock
   rules and working directory;
3. the agent's code runs with ``maos_pod_client`` in its globals (also importable as
   ``maos_pod_client``, and ``maos.sdk`` from the launch frame's ``sys_path``); every
   later frame is a gateway request or its reply, or a heartbeat.

Heartbeats: when the launch frame names one, a thread of the bootstrap sends a beat
frame ``{"v":1,"beat":N,"mac":HMAC(key, "<member>:<N>")}`` every ``period_s``, whatever
the agent's main thread is doing (blocked on a reply, computing). It needs no lock with
the request path: a SEQPACKET send is one whole record or nothing, so a beat and a
request can never interleave. It proves the pod's process is alive and scheduled, not
that the agent makes progress; a pod that is stopped (or wedged holding the GIL) goes
silent, and the Watchdog says so.
"""

from __future__ import annotations

# Every import happens before READY, so a pooled pod has paid for them all.
import _thread
import atexit
import ctypes
import hashlib
import hmac
import json
import os
import resource
import socket
import sys
import time
import traceback

TYPE_CHECKING = False  # typing costs milliseconds at start-up; mypy honours this name
if TYPE_CHECKING:
    from typing import Any

READY = b"MAOS-POD-READY/1"
MAX_FRAME = 256 * 1024
"""Must equal `maos.pod.channel.MAX_FRAME`."""
MAX_KERNEL_FRAME = 4 * 1024 * 1024
"""Must equal `maos.pod.channel.MAX_KERNEL_FRAME`."""

_RLIMITS = {
    "cpu_seconds": resource.RLIMIT_CPU,
    "memory_bytes": resource.RLIMIT_AS,
    "max_processes": resource.RLIMIT_NPROC,
    "max_file_bytes": resource.RLIMIT_FSIZE,
    "max_open_files": resource.RLIMIT_NOFILE,
}


class PodClient:
    """The agent's only door out: gateway requests over the channel, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._next_id = 1
        # One request at a time, whichever thread asks (a framework runs tools in a
        # thread pool): interleaved frames would pair a reply with the wrong request.
        self._one = _thread.allocate_lock()

    def request(
        self, gw: str, op: str, args: dict[str, Any], cap: str | None = None
    ) -> dict[str, Any]:
        """Send one request and block for its reply (a dict with ``ok``/``result``/``error``)."""
        with self._one:
            frame: dict[str, Any] = {"v": 1, "id": self._next_id, "gw": gw, "op": op}
            frame["args"] = args
            if cap is not None:
                frame["cap"] = cap
            self._next_id += 1
            # Compact UTF-8, as orjson writes it: the kernel's duplicate-key proof then holds
            # on the fast path (maos.kernel.strictjson). A lone surrogate goes out as invalid
            # UTF-8 and is refused there, as it was before.
            text = json.dumps(frame, separators=(",", ":"), ensure_ascii=False)
            self.send_raw(text.encode("utf-8", "surrogatepass"))
            reply: dict[str, Any] = json.loads(self.recv_raw())
        return reply

    def send_raw(self, data: bytes) -> None:
        """Any bytes at all; the kernel's sanitizer is what decides, not this client."""
        self._sock.send(data)

    def recv_raw(self) -> bytes:
        data = self._sock.recv(MAX_KERNEL_FRAME)
        if not data:
            raise ConnectionError("the kernel closed the channel")
        return data

    @property
    def fileno(self) -> int:
        return self._sock.fileno()


BEAT_STACK = 256 * 1024
"""The beat thread's stack: it computes an HMAC and sends, so the default 8 MiB of the
pod's address-space limit would be wasted on it."""


def _beat(sock: socket.socket, member: str, key: bytes, period_s: float) -> None:
    """Beat until the channel is gone (the pod is ending; the kernel reads no more)."""
    n = 0
    while True:
        n += 1
        mac = hmac.new(key, f"{member}:{n}".encode(), hashlib.sha256).hexdigest()
        try:
            sock.send(b'{"v":1,"beat":%d,"mac":"%s"}' % (n, mac.encode()))
        except OSError:
            return
        time.sleep(period_s)


def _start_beats(sock: socket.socket, heartbeat: dict[str, Any]) -> None:
    """Started after the limits, Landlock and the uid switch, so it runs under them all."""
    key = bytes.fromhex(heartbeat["key"])
    _thread.stack_size(BEAT_STACK)
    try:
        _thread.start_new_thread(
            _beat, (sock, heartbeat["member"], key, float(heartbeat["period_s"]))
        )
    finally:
        _thread.stack_size(0)  # the agent's own threads get the default


def _apply_limits(limits: dict[str, int]) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for name, value in limits.items():
        which = _RLIMITS[name]
        # CPU: SIGXCPU at the soft limit, SIGKILL one second later even if it is ignored.
        hard = value + 1 if which == resource.RLIMIT_CPU else value
        resource.setrlimit(which, (value, hard))


def _landlock(rules: dict[str, list[Any]]) -> int:
    """Restrict this process's filesystem (and TCP, ABI >= 4) access; returns the ABI used."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    abi = int(syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))
    if abi < 1:
        return 0
    fs_all = (1 << 13) - 1
    for min_abi, bit in ((2, 13), (3, 14), (5, 15)):
        if abi >= min_abi:
            fs_all |= 1 << bit
    read = (1 << 0) | (1 << 2) | (1 << 3)  # EXECUTE, READ_FILE, READ_DIR
    attr = (ctypes.c_uint64 * 3)(fs_all, 3 if abi >= 4 else 0, 3 if abi >= 6 else 0)
    size = 8 * (3 if abi >= 6 else 2 if abi >= 4 else 1)
    ruleset = int(syscall(444, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0)))
    if ruleset < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")

    class PathBeneath(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("allowed", ctypes.c_uint64), ("parent_fd", ctypes.c_int32))

    class NetPort(ctypes.Structure):
        _pack_ = 1
        _fields_ = (("allowed", ctypes.c_uint64), ("port", ctypes.c_uint64))

    file_rw = (1 << 1) | (1 << 2) | ((1 << 14) if abi >= 3 else 0)  # WRITE, READ, TRUNCATE
    read_file = (1 << 0) | (1 << 2)  # EXECUTE, READ_FILE: what a rule on a file may hold
    grants = ((read, "ro"), (fs_all, "rw"), (file_rw, "rw_files"), (read_file, "ro_files"))
    for access, key in grants:
        paths = rules.get(key, [])
        for path in paths:
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            rule = PathBeneath(access, fd)
            if syscall(445, ruleset, 1, ctypes.byref(rule), 0) < 0:
                raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
            os.close(fd)
    # TCP connect to these ports only (an upstream's egress forwarder); ABI < 4 has no TCP
    # rules, and there the network namespace alone bounds TCP.
    for port in rules.get("tcp_connect", []) if abi >= 4 else ():
        net = NetPort(2, port)  # LANDLOCK_ACCESS_NET_CONNECT_TCP
        if syscall(445, ruleset, 2, ctypes.byref(net), 0) < 0:  # LANDLOCK_RULE_NET_PORT
            raise OSError(ctypes.get_errno(), f"landlock_add_rule tcp {port}")
    if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS, required by restrict_self
        raise OSError(ctypes.get_errno(), "prctl")
    if syscall(446, ruleset, 0) < 0:
        raise OSError(ctypes.get_errno(), "landlock_restrict_self")
    os.close(ruleset)
    return abi


def main(argv: list[str]) -> int:
    sock = socket.socket(fileno=int(argv[1]))
    sock.send(READY)
    data = sock.recv(MAX_KERNEL_FRAME)
    if not data:
        return 0  # the kernel retired this pod before using it
    launch = json.loads(data)["launch"]
    _apply_limits(launch["limits"])
    if launch.get("landlock"):
        _landlock(launch["landlock"])
    if launch.get("uid") is not None and os.getuid() == 0:
        uid = launch["uid"]
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.environ.clear()
    os.environ.update(launch["env"])
    os.chdir(launch["cwd"])
    sys.path.extend(launch.get("sys_path", ()))  # after the stdlib: the SDK shadows nothing
    if launch.get("heartbeat"):
        _start_beats(sock, launch["heartbeat"])
    client = PodClient(sock)
    sys.modules["maos_pod_client"] = client  # type: ignore[assignment]
    namespace: dict[str, Any] = {"__name__": "__main__", "maos_pod_client": client}
    try:
        exec(compile(launch["code"], launch["name"], "exec"), namespace)
    except SystemExit:
        raise
    except BaseException:
        traceback.print_exc()
        return 1
    return 0


def _exit(status: object) -> None:
    """End the process the way CPython would, minus its module teardown.

    Finalizing the interpreter clears ``sys.modules`` (which closes the channel), then
    tears down every module; an agent framework's thousands of modules take seconds of
    that under load, and a pod still running seconds after its channel closed is one
    that cut off its supervision (``POD.CHANNEL.ABANDONED``). So: wait for the agent's
    threads, run its ``atexit`` handlers, flush, and exit with the channel still open.
    """
    if status is None:
        code = 0
    elif isinstance(status, int):
        code = status
    else:
        print(status, file=sys.stderr)
        code = 1
    threading = sys.modules.get("threading")
    if threading is not None:
        threading._shutdown()  # what Py_Finalize does first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:  # noqa: SIM105  (contextlib costs a pod's start-up milliseconds)
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code & 0xFF)


if __name__ == "__main__":
    try:
        _exit(main(sys.argv))
    except SystemExit as stop:
        _exit(stop.code)
