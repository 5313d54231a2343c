"""Use the kernel keyring: add a key to our session keyring."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
rc = libc.syscall(
    248, b"user", b"maos-probe", b"x", 1, -3
)  # add_key(..., KEY_SPEC_SESSION_KEYRING)
report(rc >= 0, rc if rc >= 0 else os.strerror(ctypes.get_errno()))
