"""Read the kernel process's command line through /proc."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open(f"/proc/{os.environ['MAOS_T_KERNEL_PID']}/cmdline", "rb") as f:
        data = f.read()
    report(bool(data), data[:300])
except OSError as exc:
    report(False, exc)
