"""Read the kernel's signing key (root-owned, 0600) in the data dir."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open(os.environ["MAOS_T_DATA"] + "/keys/root.key", "rb") as f:
        report(True, f.read())
except OSError as exc:
    report(False, exc)
