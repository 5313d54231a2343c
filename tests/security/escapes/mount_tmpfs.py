"""Mount a tmpfs over a directory of our own."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
target = os.path.abspath("mnt")
try:
    os.makedirs(target, exist_ok=True)
except OSError:
    target = "/tmp"
rc = libc.mount(b"none", target.encode(), b"tmpfs", 0, None)
report(rc == 0, os.strerror(ctypes.get_errno()) if rc else f"mounted on {target}")
