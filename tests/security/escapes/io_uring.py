"""Set up an io_uring (it issues I/O outside the syscall filter's view)."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
params = (ctypes.c_uint8 * 120)()
rc = libc.syscall(425, 8, ctypes.byref(params))
report(rc >= 0, rc if rc >= 0 else os.strerror(ctypes.get_errno()))
