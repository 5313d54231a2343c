"""Create a user namespace (root inside it, new kernel attack surface)."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
rc = libc.unshare(0x10000000)  # CLONE_NEWUSER
report(rc == 0, os.strerror(ctypes.get_errno()) if rc else "unshared")
