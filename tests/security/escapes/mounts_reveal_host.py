"""Read the mount table: the host check compares it with the host's."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


text = ""
for name in ("/proc/self/mounts", "/proc/self/mountinfo"):
    try:
        with open(name) as f:
            text += f.read()
    except OSError as exc:
        text += repr(exc)
report(os.environ["MAOS_T_DATA"] in text, text)
