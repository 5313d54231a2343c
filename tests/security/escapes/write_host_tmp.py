"""Plant a file in the host's /tmp (the host check looks for it)."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open(os.environ["MAOS_T_HOST_FILE"], "w") as f:
        f.write("planted")
    report(True, "wrote (inside the pod's view)")
except OSError as exc:
    report(False, exc)
