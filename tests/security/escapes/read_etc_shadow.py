"""Read the host's password hashes."""

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


try:
    with open("/etc/shadow") as f:
        report(True, f"read {len(f.read())} bytes")
except OSError as exc:
    report(False, exc)
