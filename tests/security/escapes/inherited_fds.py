"""Look for descriptors inherited from the kernel beyond stdio and the channel."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


fds = [int(n) for n in os.listdir("/proc/self/fd")]
extra = {}
for fd in fds:
    if fd in (0, 1, 2, pod.fileno):
        continue
    try:
        os.fstat(fd)
    except OSError:
        continue  # the directory fd listdir used, already closed
    extra[fd] = os.readlink(f"/proc/self/fd/{fd}")
report(bool(extra), extra)
