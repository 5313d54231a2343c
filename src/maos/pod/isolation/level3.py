"""Level 3: gVisor. The agent's system calls reach runsc's user-space kernel, not Linux.

``runsc do`` runs the bootstrap inside a gVisor sandbox whose root filesystem is a
minimal tree the kernel assembles once per pod home (Debian's python3, its stdlib, the
shared libraries ``ldd`` names, the bootstrap, the SDK), mounted read-only under an in-memory
overlay; ``--network=none`` leaves it no network at all. The channel travels as the
sandbox's stdin: gVisor imports the host SEQPACKET socket and keeps record boundaries.

gVisor starts the application as root *of the sandbox*; the bootstrap drops to uid
65534 before any agent code runs, so even inside gVisor the agent cannot mount, chroot
or change ownership. The scratch workspace lives in the overlay (gVisor's memory) and
is gone when the pod exits: level-3 pods have no host-backed workspace.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

from maos.pod.isolation.base import Launch, PodProcess, ProcessSandbox, Started, Support
from maos.pod.isolation.errors import SandboxError
from maos.pod.isolation.home import PodDir, PodHome
from maos.pod.isolation.level1 import BASE_ENV, PYTHON
from maos.pod.isolation.level2 import stdlib_dir

__all__ = ["Level3Sandbox", "build_rootfs", "support"]

_LDD_PATH = re.compile(r"(?:=>\s*)?(/\S+)\s+\(0x")


@cache
def support() -> Support:
    runsc = shutil.which("runsc")
    if runsc is None:
        return Support(False, "gVisor is not installed (apt-get install runsc)")
    if os.geteuid() != 0:
        return Support(False, "runsc needs root to create its sandbox")
    with tempfile.TemporaryDirectory(prefix="maos-runsc-probe-") as tmp:
        probe = subprocess.run(
            [runsc, f"--root={tmp}/state", "--network=none", "do", "/bin/true"],
            capture_output=True,
            text=True,
            check=False,
            env={**BASE_ENV, "TMPDIR": tmp},
            timeout=120,
        )
    if probe.returncode != 0:
        return Support(False, f"runsc cannot start a sandbox here: {probe.stderr.strip()[-300:]}")
    version = subprocess.run(
        [runsc, "--version"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    return Support(True, f"gVisor {version[0] if version else 'runsc'}, ptrace platform")


def _needed_libs(files: list[str]) -> set[str]:
    out = subprocess.run(["ldd", *files], capture_output=True, text=True, check=False).stdout
    return {m.group(1) for m in _LDD_PATH.finditer(out)}


def _link_or_copy(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:  # another filesystem: a copy costs more once, and is just as good
        shutil.copy2(src, dst)


def build_rootfs(home: PodHome, uid: int) -> Path:
    """The minimal root tree for gVisor pods, built once per home (hard links when possible)."""
    root = home.root / "gvisor-rootfs"
    if (root / ".complete").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    binary = os.path.realpath(PYTHON)
    stdlib = stdlib_dir()
    dynload = [str(p) for p in Path(stdlib, "lib-dynload").glob("*.so")]
    _link_or_copy(binary, root / PYTHON.lstrip("/"))
    shutil.copytree(stdlib, root / stdlib.lstrip("/"), copy_function=_link_or_copy_str)
    for lib in _needed_libs([binary, *dynload]):
        _link_or_copy(os.path.realpath(lib), root / lib.lstrip("/"))
    for name in ("lib", "lib64"):
        if not (root / name).exists():
            os.symlink(f"usr/{name}", root / name)
    for name in ("work", "tmp", "maos"):
        (root / name).mkdir(exist_ok=True)
    (root / "tmp").chmod(0o1777)
    os.chown(root / "work", uid, uid)
    shutil.copy2(home.bootstrap, root / "maos" / "bootstrap.py")
    shutil.copytree(home.pylib, root / "maos" / "pylib")
    (root / ".complete").touch()
    return root


def _link_or_copy_str(src: str, dst: str) -> None:
    _link_or_copy(src, Path(dst))


class Level3Sandbox(ProcessSandbox):
    level = 3

    async def start(self, workspace: Path | None = None) -> PodProcess:
        if workspace is not None:
            raise SandboxError(
                "POD.SPAWN.WORKSPACE_UNSUPPORTED",
                "level-3 pods keep their scratch in gVisor's memory; no host workspace",
                workspace=str(workspace),
            )
        return await super().start()

    def support(self) -> Support:
        return support()

    def _popen(self, pod_dir: PodDir, log_fd: int, channel_fd: int) -> Started:
        rootfs = build_rootfs(self.home, self.uid)
        state = pod_dir.path / "runsc"
        state.mkdir(mode=0o700)
        argv = [
            "runsc",
            f"--root={state}",
            "--network=none",
            "do",
            "--root",
            str(rootfs),
            "--cwd",
            "/work",
            "--",
            PYTHON,
            "-I",
            "-S",
            "-B",
            "/maos/bootstrap.py",
            "0",
        ]
        proc = subprocess.Popen(
            argv,
            stdin=channel_fd,
            stdout=log_fd,
            stderr=log_fd,
            # runsc puts its bundle in TMPDIR: inside the pod dir it is removed with the pod.
            env={**BASE_ENV, "TMPDIR": str(pod_dir.path)},
            close_fds=True,
            start_new_session=True,
        )
        return Started(proc, Launch(cwd="/work", uid=self.uid, sys_path=("/maos/pylib",)))

    @staticmethod
    def _exit_signal(returncode: int) -> int | None:
        """runsc reports an application killed by signal N as exit status 128 + N."""
        if returncode < 0:
            return -returncode
        return returncode - 128 if returncode > 128 else None
