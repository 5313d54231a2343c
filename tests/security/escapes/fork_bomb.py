"""Fork until something stops us; 400 children count as an escape from the limit."""

import os
import time

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


children = 0
error = None
while children < 400:
    try:
        pid = os.fork()
    except OSError as exc:
        error = exc
        break
    if pid == 0:
        time.sleep(60)
        os._exit(0)
    children += 1
report(children >= 400, f"{children} children, stopped by {error!r}")
