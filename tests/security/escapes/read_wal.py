"""Read the kernel's write-ahead log (a root-owned 0600 SQLite file)."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open(os.environ["MAOS_T_DATA"] + "/wal.sqlite", "rb") as f:
        report(True, f.read(16))
except OSError as exc:
    report(False, exc)
