"""Allocate 4 GiB in 64 MiB steps, past the pod's memory limit."""

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


held = []
try:
    for _ in range(64):
        held.append(bytearray(64 * 1024 * 1024))
    report(True, f"held {len(held) * 64} MiB")
except MemoryError:
    size = len(held) * 64
    held.clear()
    report(False, f"MemoryError after {size} MiB")
