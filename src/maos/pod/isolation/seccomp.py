"""The level-2 system-call filter, compiled in the kernel and handed to bwrap as an fd.

Default allow with a deny list: a Python agent needs hundreds of ordinary syscalls and
an allow list would break on every interpreter or glibc update, while the calls that
widen an attacker's reach are few and well known. Two kinds of denial:

* **kill** (SECCOMP_RET_KILL_PROCESS) for calls no agent has a reason to make -
  debugging other processes, kernel modules, BPF, keyrings, io_uring (which would carry
  syscalls past this filter), userfaultfd. The pod dies with SIGSYS and the kernel reports
  a ``POD.SECCOMP.KILLED`` hard violation (Fast Apoptosis).
* **EPERM** for calls ordinary libraries probe and handle failing: socket creation (the
  channel is inherited, so even AF_UNIX ``socket()`` is refused), namespaces, mounts,
  chroot, personality (even the query: a 32-bit argument cannot be compared reliably
  against a 64-bit register). ``clone3`` answers ENOSYS so glibc falls back to ``clone``,
  whose flags (unlike clone3's struct) the filter can inspect.

libseccomp (through the ctypes binding ``pyseccomp``) assembles the BPF, because it gets
the architecture check right: foreign-ABI syscalls (i386 ``int 0x80``, x32 numbers on
x86-64) hit the default bad-arch action, kill, instead of slipping past a table written
for one ABI.
"""

from __future__ import annotations

import errno
import os
from functools import cache

__all__ = ["INET_FAMILIES", "KILLED", "REFUSED", "filter_bpf", "seccomp_fd", "support"]

KILLED = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "bpf",
    "perf_event_open",
    "keyctl",
    "add_key",
    "request_key",
    "userfaultfd",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "iopl",
    "ioperm",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "syslog",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    "fanotify_init",
    "lookup_dcookie",
    "vhangup",
    "uselib",
)
"""Syscalls that end the pod."""

REFUSED = (
    "socket",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fsconfig",
    "fspick",
    "mount_setattr",
    "personality",
)
"""Syscalls that fail with EPERM."""

INET_FAMILIES = (1, 2, 10)
"""AF_UNIX, AF_INET, AF_INET6: the socket families of a pod with egress (``sockets=True``).

Such a pod (an upstream server behind the egress relay) lives in a network namespace
whose only way out is a loopback forwarder, so the namespace, not the filter, bounds its
network; the filter still refuses every other family (packet, netlink, vsock, ...)."""

_CLONE_NS_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
)


@cache
def filter_bpf(sockets: bool = False) -> bytes:
    """The compiled filter for the native architecture (built once per kernel process).

    ``sockets`` lets ``socket()`` through for `INET_FAMILIES` only. The domain is a 32-bit
    argument compared against the 64-bit register: a value with high bits set never
    equals an allowed family and is refused (``GE``), so the comparison fails closed.
    """
    import pyseccomp as sc  # type: ignore[import-untyped]

    flt = sc.SyscallFilter(sc.ALLOW)
    for name in KILLED:
        flt.add_rule(sc.KILL_PROCESS, name)
    for name in REFUSED:
        if name != "socket" or not sockets:
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
    if sockets:
        top = max(INET_FAMILIES)
        for family in range(top):
            if family not in INET_FAMILIES:
                flt.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.EQ, family))
        flt.add_rule(sc.ERRNO(errno.EPERM), "socket", sc.Arg(0, sc.GT, top))
    flt.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NS_FLAGS:
        flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    fd = os.memfd_create("maos-seccomp-build", os.MFD_CLOEXEC)
    try:
        flt.export_bpf(_Fd(fd))
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def seccomp_fd(sockets: bool = False) -> int:
    """A fresh inheritable fd holding the filter, positioned at 0; bwrap reads it once."""
    data = filter_bpf(sockets)
    fd = os.memfd_create("maos-seccomp", 0)
    os.write(fd, data)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def support() -> tuple[bool, str]:
    try:
        size = len(filter_bpf())
    except (ImportError, OSError, RuntimeError) as exc:
        return False, f"cannot build the seccomp filter: {exc}"
    return True, f"seccomp filter {size // 8} BPF instructions (libseccomp via pyseccomp)"


class _Fd:
    """The file-like shape pyseccomp's export wants: only ``fileno``."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd
