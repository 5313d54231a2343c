"""Resolve names: the system resolver, and a raw DNS query to a loopback responder."""

import os
import socket

import maos_pod_client as pod


def report(achieved: bool, detail: object) -> None:
    pod.request("admin", "report", {"achieved": achieved, "detail": str(detail)[:60000]})


answers = []
try:
    answers.append(socket.getaddrinfo("example.com", 80)[0][4])
except OSError as exc:
    answers.append(repr(exc))
query = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01"
try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(3)
        s.sendto(
            query + os.environ["MAOS_T_MARK"].encode(), ("127.0.0.1", int(os.environ["MAOS_T_UDP"]))
        )
        answers.append(("responder", s.recv(512)))
except OSError as exc:
    answers.append(repr(exc))
report(any(isinstance(a, tuple) for a in answers), answers)
