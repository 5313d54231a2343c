"""Ignore SIGXCPU and spin past the CPU limit; reporting at all is the escape."""

import os
import signal
import time

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


signal.signal(signal.SIGXCPU, signal.SIG_IGN)
while time.process_time() < float(os.environ["MAOS_T_CPU"]) + 5:
    pass
report(True, f"spun {time.process_time():.1f} s of CPU")
