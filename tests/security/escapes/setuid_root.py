"""Become root: setuid(0), setgid(0), setresuid(0, 0, 0)."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


results = []
for name, call in (
    ("setgid", lambda: os.setgid(0)),
    ("setuid", lambda: os.setuid(0)),
    ("setresuid", lambda: os.setresuid(0, 0, 0)),
):
    try:
        call()
        results.append((name, "ok"))
    except OSError as exc:
        results.append((name, repr(exc)))
report(os.getuid() == 0 or os.geteuid() == 0, results)
