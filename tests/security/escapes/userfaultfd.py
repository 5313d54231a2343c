"""Open a userfaultfd (a classic kernel-exploit timing primitive)."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
rc = libc.syscall(323, 0o2000000 | 1)  # O_CLOEXEC | UFFD_USER_MODE_ONLY
report(rc >= 0, rc if rc >= 0 else os.strerror(ctypes.get_errno()))
