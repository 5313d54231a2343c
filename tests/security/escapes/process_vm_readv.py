"""Read the kernel process's memory with process_vm_readv."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


class IoVec(ctypes.Structure):
    _fields_ = (("base", ctypes.c_void_p), ("len", ctypes.c_size_t))


buf = ctypes.create_string_buffer(8)
local = IoVec(ctypes.cast(buf, ctypes.c_void_p), 8)
remote = IoVec(0x400000, 8)
pid = int(os.environ["MAOS_T_KERNEL_PID"])
rc = libc.syscall(310, pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
err = ctypes.get_errno()
# EFAULT means the permission check passed and only the address was wrong.
report(rc >= 0 or err == 14, (rc, os.strerror(err)))
