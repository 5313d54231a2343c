"""A read-only runtime for upstream servers: a virtualenv on Debian's python3, and node.

Real MCP servers need packages (the ``mcp`` SDK, httpx, ...) and often Node.js. A pod
must not get the kernel's own environment (its venv holds the kernel's code and
secrets' handlers, and the pyenv interpreter in root's home is unreadable to uid
nobody), so upstreams get a runtime of their own: a virtualenv built on
``/usr/bin/python3`` (world-readable), with the packages pip installs into it, made
world-readable and mounted read-only at the same path inside the sandbox (scripts'
shebangs and ``pyvenv.cfg`` name absolute paths). Node is Debian's ``/usr/bin/node``,
bound read-only when the runtime asks for it.

Builds are cached: the directory's name is a digest of the interpreter's version and the
sorted requirements, and a ``.complete`` marker is written last, so a half-built runtime
(a killed build) is rebuilt rather than used.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from maos.pod.isolation.errors import SandboxError
from maos.pod.isolation.home import pod_uid, reachable
from maos.pod.isolation.level1 import PYTHON

__all__ = ["NODE", "Runtime", "build_runtime", "runtime_key"]

NODE = "/usr/bin/node"
_MARKER = ".complete"


@dataclass(frozen=True, slots=True)
class Runtime:
    """A built runtime; `maos.pod.upstream.sandboxed_command` binds it read-only."""

    root: Path
    """The virtualenv, bound at this same path inside the sandbox."""
    node: bool = False
    """Whether the sandbox also gets Debian's ``node``."""

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def node_modules(self) -> Path:
        """Where ``--npm-packages`` are installed (read-only inside, like the rest)."""
        return self.root / "node" / "node_modules"

    def node_script(self, command: str) -> Path:
        """The JavaScript file behind an npm package's command (``node_modules/.bin``).

        Run it as ``/usr/bin/node <script>``: the ``.bin`` entries start with
        ``#!/usr/bin/env node``, and there is no ``/usr/bin/env`` inside the sandbox.
        """
        link = self.node_modules / ".bin" / command
        script = link.resolve()
        if not link.is_symlink() or not script.is_relative_to(self.node_modules):
            raise SandboxError(
                "POD.RUNTIME.NO_COMMAND",
                "no such npm command in this runtime; build it with --npm-packages",
                command=command,
            )
        return script

    def binds(self) -> list[str]:
        """bwrap arguments that mount this runtime read-only."""
        args = ["--ro-bind", str(self.root), str(self.root)]
        if self.node:
            args += ["--ro-bind", os.path.realpath(NODE), NODE]
        return args


def runtime_key(packages: Sequence[str], npm_packages: Sequence[str] = ()) -> str:
    """The cache key: Debian python's version and the sorted requirements."""
    version = os.path.basename(os.path.realpath(PYTHON))
    text = "\n".join([version, *sorted(packages), *sorted(f"npm:{p}" for p in npm_packages)])
    return f"{version}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def build_runtime(
    packages: Sequence[str],
    cache: Path,
    *,
    npm_packages: Sequence[str] = (),
    node: bool = False,
    constraints: Path | None = None,
) -> Runtime:
    """The runtime for ``packages`` under ``cache``, built on first use (blocking: pip).

    ``npm_packages`` (``name@version``) go under ``node_modules`` with npm's install
    scripts off (they would run as the kernel's uid at build time); they imply ``node``.

    ``cache`` and its parents must be traversable by the pod's uid: bwrap, started as
    nobody, must reach the directory to mount it (a data dir under ``/root`` is not).
    """
    node = node or bool(npm_packages)
    if npm_packages and shutil.which("npm") is None:
        raise SandboxError("POD.RUNTIME.NO_NODE", "npm is missing: apt-get install npm")
    if node and not os.access(NODE, os.X_OK):
        raise SandboxError(
            "POD.RUNTIME.NO_NODE", f"{NODE} is missing: apt-get install nodejs", path=NODE
        )
    cache.mkdir(parents=True, exist_ok=True)
    cache.chmod(0o755)
    if not reachable(cache, pod_uid()):
        raise SandboxError(
            "POD.RUNTIME.UNREACHABLE",
            "upstream pods run as nobody and must traverse to the runtime; "
            "build it under a world-traversable directory (--out)",
            path=str(cache),
        )
    root = cache / runtime_key(packages, npm_packages)
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / _MARKER).exists():
            _build(root, packages, npm_packages, constraints)
    return Runtime(root, node=node)


def _build(
    root: Path,
    packages: Sequence[str],
    npm_packages: Sequence[str],
    constraints: Path | None,
) -> None:
    shutil.rmtree(root, ignore_errors=True)
    _run([PYTHON, "-m", "venv", "--without-pip", str(root)], root)
    if packages:
        # The kernel's pip, run for the runtime's interpreter: Debian's python3 has no pip.
        pip = [sys.executable, "-m", "pip", "--python", str(root / "bin" / "python")]
        pip += ["install", "--no-input", "--disable-pip-version-check"]
        if constraints is not None:
            pip += ["--constraint", str(constraints)]
        _run([*pip, "--", *packages], root)
    if npm_packages:
        npm = ["npm", "install", "--prefix", str(root / "node"), "--no-audit", "--no-fund"]
        npm += ["--omit=dev", "--ignore-scripts", "--no-update-notifier"]
        _run([*npm, "--", *npm_packages], root)
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or os.access(path, os.X_OK) else 0o644)
    marker = root / _MARKER
    marker.write_text("\n".join(packages) + "\n")
    marker.chmod(0o644)


def _run(argv: list[str], root: Path) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        shutil.rmtree(root, ignore_errors=True)
        raise SandboxError(
            "POD.RUNTIME.BUILD_FAILED",
            "the runtime could not be built; check the package names and that PyPI is reachable",
            command=" ".join(argv[:6]),
            output=(done.stdout + done.stderr)[-2000:],
        )
