"""SIGKILL the kernel process, then its whole process group."""

import os
import signal

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


results = []
for fn, target in ((os.kill, "MAOS_T_KERNEL_PID"), (os.killpg, "MAOS_T_KERNEL_PGID")):
    try:
        fn(int(os.environ[target]), signal.SIGKILL)
        results.append((target, "delivered"))
    except OSError as exc:
        results.append((target, repr(exc)))
report(any(r == "delivered" for _, r in results), results)
