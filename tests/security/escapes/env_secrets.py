"""Look through our own environment for the kernel's secrets."""

import os

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


report("MAOS_T_SECRET" in os.environ, sorted(os.environ))
