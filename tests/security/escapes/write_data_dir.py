"""Plant a file in the kernel's data dir, next to its keys and log."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open(os.environ["MAOS_T_DATA"] + "/planted", "w") as f:
        f.write("planted")
    report(True, "wrote")
except OSError as exc:
    report(False, exc)
