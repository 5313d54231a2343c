"""The kernel-side directory that pods are made in.

Everything a level-1 pod (a plain process on the host filesystem), or bwrap running as
the pod's uid, must reach has to be traversable by that uid; the checks here fail early
with a clear code instead of letting a pod die later on an obscure ``EACCES``.
"""

from __future__ import annotations

import importlib.util
import os
import py_compile
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from maos.pod import bootstrap
from maos.pod.isolation.errors import SandboxError

__all__ = ["POD_UID", "PodDir", "PodHome", "pod_uid", "reachable"]

_PACKAGE_STUB = (
    '"""In a pod only `maos.sdk`, `maos.tool` and `maos.adapters` exist; the rest stays '
    'with the kernel."""\n'
)
_POD_PACKAGES = ("maos.sdk", "maos.tool", "maos.adapters")
"""Stand-alone packages pods import: the agent SDK, the tool API for the tool host, and
the framework adapters (which import their framework only when used, from a runtime)."""

POD_UID = 65534
"""``nobody``: the uid every pod runs as, on the host, when the kernel is root."""


def pod_uid() -> int:
    """The host uid pods really run as: nobody under a root kernel, else the kernel's own."""
    return POD_UID if os.geteuid() == 0 else os.geteuid()


@dataclass(frozen=True, slots=True)
class PodDir:
    """One pod's kernel-side directory; removed when the pod has been reaped."""

    path: Path
    workspace: Path
    """The agent's scratch dir: ``path/workspace`` unless the spec named one."""
    log_path: Path
    uid: int = POD_UID
    """The host uid the pod runs as (when the kernel is root); its workspace is its own."""

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def reachable(path: Path, uid: int) -> bool:
    """Whether ``uid`` (with no supplementary groups) may traverse every dir down to ``path``."""
    path = path.resolve()
    for directory in (*reversed(path.parents), path):
        try:
            st = directory.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid == uid:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


class PodHome:
    """The kernel-side directory pods are made in: the bootstrap, the SDK, one dir per pod.

    ``pylib`` holds a read-only copy of `maos.sdk` under a stub ``maos`` package, so that
    agent code can ``import maos.sdk`` and nothing else of MAOS. Everything a level-1 pod
    (a plain process on the host filesystem) or bwrap running as the pod's uid must reach
    has to be traversable by that uid, so the home is 0711 and each pod dir has an
    unguessable name: a pod reaches its own workspace but cannot list its siblings'.
    Logs stay 0600 root.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="maos-pods-")) if root is None else root
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o711)
        if not reachable(self.root, pod_uid()):
            raise SandboxError(
                "POD.SPAWN.HOME_UNREACHABLE",
                "pods run as nobody and must be able to traverse to the pod home",
                home=str(self.root),
            )
        self.bootstrap = self.root / "bootstrap.py"
        tmp = self.root / "bootstrap.py.new"
        shutil.copyfile(bootstrap.__file__, tmp)
        tmp.chmod(0o444)
        tmp.replace(self.bootstrap)
        self.pylib = self.root / "pylib"
        _install_sdk(self.pylib)

    def make_pod_dir(self, workspace: Path | None, uid: int) -> PodDir:
        if workspace is not None and not reachable(workspace.parent, pod_uid()):
            raise SandboxError(
                "POD.SPAWN.WORKSPACE_UNREACHABLE",
                "the pod's uid cannot traverse the path to its workspace",
                workspace=str(workspace),
                uid=uid,
            )
        path = Path(tempfile.mkdtemp(prefix="pod-", dir=self.root))
        path.chmod(0o711)
        log_path = path / "pod.log"
        log_path.touch(mode=0o600)
        ws = path / "workspace" if workspace is None else workspace
        ws.mkdir(mode=0o700, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(ws, uid, uid)
        return PodDir(path, ws, log_path, uid)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _install_sdk(pylib: Path) -> None:
    """Copy the pod packages' sources (not their caches) under a stub ``maos``, world-readable."""
    package = pylib / "maos"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text(_PACKAGE_STUB)
    sources = [package / "__init__.py"]
    for name in _POD_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SandboxError("POD.SPAWN.NO_SDK", f"{name} cannot be found to give to pods")
        target = package / name.rpartition(".")[2]
        target.mkdir(exist_ok=True)
        for source in Path(spec.origin).parent.glob("*.py"):
            sources.append(target / source.name)
            shutil.copyfile(source, sources[-1])
    for source in sources:
        # Compiled here so each pod skips ~5 ms of compiling (pods run with -B and read
        # only). Checked-hash: a pyc that does not match its source is simply not used.
        cache = importlib.util.cache_from_source(str(source))
        py_compile.compile(
            str(source),
            cache,
            doraise=True,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    for path in pylib.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o444)
    pylib.chmod(0o755)
