"""List the host's root through /proc/1/root."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    names = sorted(os.listdir("/proc/1/root"))
    report(bool({"etc", "var", "boot", "home"} & set(names)), names)
except OSError as exc:
    report(False, exc)
