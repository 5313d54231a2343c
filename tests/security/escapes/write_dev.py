"""Write to device nodes: the kernel log, memory, disks, and /dev/shm."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


wrote = []
for path in ("/dev/kmsg", "/dev/mem", "/dev/port", "/dev/vda", "/dev/sda", "/dev/nvme0n1"):
    try:
        fd = os.open(path, os.O_WRONLY)
        os.close(fd)
        wrote.append(path)
    except OSError:
        pass
try:
    with open("/dev/shm/" + os.environ["MAOS_T_MARK"], "w") as f:
        f.write("planted")
except OSError:
    pass
report(bool(wrote), wrote)
