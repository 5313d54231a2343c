"""The kernel-side directory that pods are made in.

Everything a level-1 pod (a plain process on the host filesystem), or bwrap running as
the pod's uid, must reach has to be traversable by that uid; the checks here fail early
with a clear code instead of letting a pod die later on an obscure ``EACCES``.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from maos.pod import bootstrap
from maos.pod.isolation.errors import SandboxError

__all__ = ["POD_UID", "PodDir", "PodHome", "pod_uid", "reachable"]

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
    """The kernel-side directory pods are made in: a bootstrap copy and one dir per pod.

    Everything a level-1 pod (a plain process on the host filesystem) or bwrap running as
    the pod's uid must reach has to be traversable by that uid, so the home is 0711 and
    each pod dir has an unguessable name: a pod reaches its own workspace but cannot list
    its siblings'. Logs stay 0600 root.
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
        return PodDir(path, ws, log_path)

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
