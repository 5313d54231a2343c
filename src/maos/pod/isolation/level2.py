"""Level 2: bubblewrap namespaces, a seccomp filter, Landlock, rlimits, nobody's uid.

bwrap itself is started as uid 65534, never as root. As root, bwrap maps the sandbox's
uid to host root (uid_map ``65534 0 1``): files bound in would be checked against root's
permissions. Started as nobody, the unprivileged user namespace maps 65534 to host 65534,
so the pod is nobody inside *and* outside.

The mount namespace holds only what the interpreter needs, read-only: the Python binary,
its stdlib and shared libraries, the bootstrap and the SDK (``/maos/pylib``); plus the
pod's scratch workspace at ``/work`` and a private tmpfs at ``/tmp``. ``/etc``, ``/home``,
``/root``, the kernel's data dir and every other host path simply do not exist there.
The network namespace has only its own loopback.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
from functools import cache
from pathlib import Path

from maos.pod.isolation import seccomp
from maos.pod.isolation.base import START_TIMEOUT, Launch, ProcessSandbox, Started, Support
from maos.pod.isolation.home import PodDir
from maos.pod.isolation.level1 import BASE_ENV, PYTHON, bwrap_exit_signal

__all__ = ["Level2Sandbox", "bwrap_args", "landlock_abi", "stdlib_dir", "support"]

_LIB_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64")


def stdlib_dir() -> str:
    """The stdlib of Debian's python3, found through the binary's versioned name."""
    version = os.path.basename(os.path.realpath(PYTHON)).removeprefix("python")
    return f"/usr/lib/python{version}"


@cache
def landlock_abi() -> int:
    """The host's Landlock ABI version, 0 when Landlock is absent or disabled."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))
    return max(abi, 0)


@cache
def support() -> Support:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return Support(False, "bubblewrap is not installed (apt-get install bubblewrap)")
    stdlib = stdlib_dir()
    if not os.path.isdir(stdlib):
        return Support(False, f"no stdlib at {stdlib} for {PYTHON}")
    ok, filter_reason = seccomp.support()
    if not ok:
        return Support(False, filter_reason)
    probe = subprocess.run(
        [bwrap, *_namespace_args(), *_interpreter_binds(), PYTHON, "-I", "-S", "-c", "pass"],
        capture_output=True,
        text=True,
        check=False,
        user=65534 if os.geteuid() == 0 else None,
    )
    if probe.returncode != 0:
        return Support(False, f"bwrap cannot start a pod here: {probe.stderr.strip()[:300]}")
    abi = landlock_abi()
    landlock = f"Landlock ABI {abi}" if abi else "no Landlock (kernel lacks it)"
    return Support(True, f"bubblewrap, {filter_reason}, {landlock}")


def _namespace_args() -> list[str]:
    return [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--cap-drop",
        "ALL",
        "--hostname",
        "maos-pod",
    ]


def bwrap_args(bootstrap: Path, workspace: Path, *, clearenv: bool = True) -> list[str]:
    """What every level-2 sandbox is (tool hosts, agents, upstream servers): the
    namespaces, the interpreter, the bootstrap at ``/maos/bootstrap.py``, ``workspace`` at
    ``/work``, a fresh ``/proc`` and ``/dev`` and a private ``/tmp``. ``clearenv=False``
    for a launcher that filtered the environment itself before exec'ing bwrap."""
    namespaces = [a for a in _namespace_args() if clearenv or a != "--clearenv"]
    return [
        *namespaces,
        *_interpreter_binds(),
        *("--ro-bind", str(bootstrap), "/maos/bootstrap.py"),
        *("--bind", str(workspace), "/work"),
        *("--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"),
    ]


def _namespace_init(info_fd: int) -> int:
    """A pidfd of the pod's pid-namespace init, from what ``bwrap --info-fd`` reports.

    bwrap writes ``child-pid`` and closes the pipe before it lets that child run, and
    reaps it only when it exits, so the pid cannot be reused before the pidfd is open.
    """
    data = b""
    while chunk := _read_within(info_fd, START_TIMEOUT):
        data += chunk
    try:
        pid = json.loads(data)["child-pid"]
    except (ValueError, KeyError, TypeError) as exc:
        raise OSError(f"bwrap reported no child pid: {data[:200]!r}") from exc
    if type(pid) is not int or pid < 2:
        raise OSError(f"bwrap reported a bad child pid: {pid!r}")
    return os.pidfd_open(pid)


def _read_within(fd: int, timeout: float) -> bytes:
    ready, _, _ = select.select([fd], [], [], timeout)
    if not ready:
        raise OSError("bwrap did not report its child within the start timeout")
    return os.read(fd, 4096)


def _interpreter_binds() -> list[str]:
    stdlib = stdlib_dir()
    args = ["--ro-bind", os.path.realpath(PYTHON), PYTHON, "--ro-bind", stdlib, stdlib]
    for lib in _LIB_DIRS:
        if os.path.isdir(lib):
            args += ["--ro-bind", lib, lib]
    return [*args, "--symlink", "usr/lib", "/lib", "--symlink", "usr/lib64", "/lib64"]


class Level2Sandbox(ProcessSandbox):
    level = 2
    filtered = True

    def support(self) -> Support:
        return support()

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        env_args = [a for k, v in BASE_ENV.items() for a in ("--setenv", k, v)]
        filter_fd = seccomp.seccomp_fd()
        info_r, info_w = os.pipe()
        argv = [
            "bwrap",
            *bwrap_args(self.home.bootstrap, pod_dir.workspace),
            *env_args,
            "--ro-bind",
            str(self.home.pylib),
            "/maos/pylib",
            *([] if self.runtime is None else ["--ro-bind", str(self.runtime), str(self.runtime)]),
            "--chdir",
            "/work",
            "--seccomp",
            str(filter_fd),
            "--info-fd",
            str(info_w),
            "--",
            PYTHON,
            "-I",
            "-S",
            "-B",
            "/maos/bootstrap.py",
            str(channel_fd),
        ]
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=log_fd,
                env=BASE_ENV,
                close_fds=True,
                pass_fds=(channel_fd, filter_fd, info_w),
                start_new_session=True,
                **self._drop_privileges(),
            )
        except BaseException:
            os.close(info_r)
            raise
        finally:
            os.close(filter_fd)
            os.close(info_w)
        try:
            reaper = _namespace_init(info_r)
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        finally:
            os.close(info_r)
        landlock = None
        if landlock_abi() >= 1:
            ro = ["/usr", "/maos", "/proc", "/dev"]
            if self.runtime is not None:
                ro.append(str(self.runtime))
            landlock = {
                "ro": ro,
                "rw": ["/work", "/tmp"],
                "rw_files": ["/dev/null"],
            }
        return Started(
            proc,
            Launch(
                cwd="/work", landlock=landlock, sys_path=("/maos/pylib", *self.runtime_sys_path())
            ),
            reaper,
        )

    _exit_signal = staticmethod(bwrap_exit_signal)
