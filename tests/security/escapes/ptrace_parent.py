"""PTRACE_ATTACH to the kernel process and to our parent."""

import ctypes
import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
results = {}
for pid in {int(os.environ["MAOS_T_KERNEL_PID"]), os.getppid()}:
    rc = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    results[pid] = rc if rc == 0 else os.strerror(ctypes.get_errno())
report(0 in results.values(), results)
