"""Present a capability token minted for another agent."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


pod.request("admin", "heartbeat", {}, cap=os.environ["MAOS_T_FOREIGN_TOKEN"])
report(False, "sent; the kernel's token check decides")
