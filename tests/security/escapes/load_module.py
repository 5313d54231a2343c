"""Load a kernel module with init_module and finit_module."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
image = ctypes.create_string_buffer(b"\x7fELF" + b"\0" * 60)
results = [libc.syscall(175, image, 64, b""), os.strerror(ctypes.get_errno())]
fd = os.open("/proc/self/exe", os.O_RDONLY)
results += [libc.syscall(313, fd, b"", 0), os.strerror(ctypes.get_errno())]
report(0 in results, results)
