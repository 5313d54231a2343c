"""The launcher of a sandboxed upstream (MCP) server; stdlib only, it runs twice.

`maos.pod.upstream.sandboxed_command` returns a command line that an MCP client (the
SDK's ``stdio_client``) spawns like any other; that command is this file, run by Debian's
``/usr/bin/python3 -I -S -B``:

* ``outer SPEC`` on the host, as the kernel's uid: keeps only the environment names the
  spec lists (the SDK adds the kernel's ``HOME``, ``PATH`` ... and a careless caller may
  pass everything) and sets the spec's base (``PATH``, ``HOME``, the proxy) over them,
  turns the seccomp filter from the spec into a memfd, drops to uid 65534 when it is
  root and execs bubblewrap. Filtering *before* bwrap matters: bwrap's
  init inside the sandbox keeps the environment it was started with, and the server can
  read ``/proc/1/environ``.
* ``inner SPEC`` inside the sandbox: applies the rlimits and Landlock with the
  bootstrap's own code, starts the egress forwarder when the server has egress, and
  execs the server. The forwarder listens on ``127.0.0.1:PORT`` in the sandbox's private
  network namespace and pipes each connection to the kernel's relay through the
  bind-mounted Unix socket; the relay, not this file, decides where a connection goes.

Nothing secret is in the spec (it is visible in ``ps``): credentials travel only in the
environment, which only root and uid 65534 can read.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import ModuleType
    from typing import Any


def _bootstrap() -> ModuleType:
    """The pod bootstrap beside this file: its rlimits and Landlock code, not a copy."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bootstrap.py")
    spec = importlib.util.spec_from_file_location("maos_pod_bootstrap", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"no bootstrap at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def outer(spec: dict[str, Any]) -> None:
    env = {name: os.environ[name] for name in spec["keep_env"] if name in os.environ}
    env.update(spec["base_env"])  # PATH, HOME ...: never the values the client inherited
    fd = os.memfd_create("maos-seccomp", 0)
    os.write(fd, base64.b64decode(spec["seccomp"]))
    os.lseek(fd, 0, os.SEEK_SET)
    argv = [str(fd) if a == "{seccomp}" else a for a in spec["bwrap"]]
    uid = spec.get("uid")
    if uid is not None and os.geteuid() == 0:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
    os.execve(argv[0], argv, env)


def inner(spec: dict[str, Any]) -> None:
    boot = _bootstrap()
    boot._apply_limits(spec["limits"])
    listener = None
    port = spec.get("proxy_port")
    if port is not None:
        # Bound before Landlock, which then refuses every TCP bind and every connect
        # but the one to this port.
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(64)
    if spec.get("landlock"):
        boot._landlock(spec["landlock"])
    if listener is not None:
        if os.fork() == 0:
            _forwarder(listener, spec["socket"])
        listener.close()
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    os.execv(argv[0], argv)


def _forwarder(listener: socket.socket, path: str) -> None:
    """Never returns; dies with the sandbox's pid namespace when the server exits."""
    import threading

    null = os.open("/dev/null", os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)  # the server's stdout is its MCP channel: never hold it open
    try:
        while True:
            client, _ = listener.accept()
            threading.Thread(target=_pair, args=(client, path), daemon=True).start()
    finally:
        os._exit(0)


def _pair(client: socket.socket, path: str) -> None:
    import threading

    relay = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        relay.connect(path)
    except OSError:
        client.close()
        relay.close()
        return
    back = threading.Thread(target=_pump, args=(relay, client), daemon=True)
    back.start()
    _pump(client, relay)
    back.join()
    client.close()
    relay.close()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


def main(argv: list[str]) -> int:
    mode, spec = argv[1], json.loads(argv[2])
    if mode == "outer":
        outer(spec)
    elif mode == "inner":
        inner(spec)
    print(f"upstream_init: unknown mode {mode!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
