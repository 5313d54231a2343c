"""Climb out of the workspace with .. toward the data dir and /etc."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


up = "../" * 16
got = []
for target in (os.environ["MAOS_T_DATA"] + "/keys/root.key", "/etc/shadow"):
    try:
        with open(up + target.lstrip("/"), "rb") as f:
            got.append((target, f.read(8)))
    except OSError as exc:
        got.append((target, repr(exc)))
report(any(isinstance(v, bytes) for _, v in got), got)
