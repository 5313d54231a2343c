"""Read the kernel's and our parent's environment through /proc."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


found = {}
for pid in {int(os.environ["MAOS_T_KERNEL_PID"]), os.getppid(), 1}:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
        found[pid] = data.decode(errors="replace")[:20000]
    except OSError as exc:
        found[pid] = repr(exc)
report(any("MAOS_T_SECRET" in v for v in found.values()), found)
