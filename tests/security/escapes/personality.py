"""Turn off address-space randomisation with personality(ADDR_NO_RANDOMIZE)."""

import ctypes

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


libc = ctypes.CDLL(None, use_errno=True)
libc.personality.restype = ctypes.c_int
libc.personality(0x0040000)
now = libc.personality(0xFFFFFFFF)
report(now >= 0 and bool(now & 0x0040000), hex(now))
