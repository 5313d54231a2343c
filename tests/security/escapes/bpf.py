"""Create an eBPF map."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
attr = (ctypes.c_uint32 * 32)(2, 4, 4, 1)  # BPF_MAP_TYPE_ARRAY, key 4, value 4, 1 entry
rc = libc.syscall(321, 0, ctypes.byref(attr), ctypes.sizeof(attr))  # BPF_MAP_CREATE
report(rc >= 0, rc if rc >= 0 else os.strerror(ctypes.get_errno()))
