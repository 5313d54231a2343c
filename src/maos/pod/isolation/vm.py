"""Levels 4 (MicroVM) and 5 (Confidential VM): detection only.

MAOS does not build or boot VMs yet. These checks exist so that a profile demanding a
VM refuses with the exact missing piece ("no VMM binary on PATH", "/dev/kvm not
writable", "no TDX or SEV-SNP") instead of silently running the agent at a weaker level.
Even on a host that has everything, the answer is "unavailable" with the reason that
MAOS does not drive that VMM yet: availability here means a pod can really start.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from maos.pod.isolation.base import Support

__all__ = ["VMMS", "confidential_support", "microvm_support"]

VMMS = ("firecracker", "cloud-hypervisor", "qemu-system-x86_64", "qemu-system-aarch64")
"""VMM binaries a MicroVM pod could be built on."""


def _kvm() -> str | None:
    """Why KVM is unusable, or None when /dev/kvm opens read-write."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "/dev/kvm does not exist (no hardware virtualisation exposed to this host)"
    except OSError as exc:
        return f"/dev/kvm cannot be opened: {exc.strerror}"
    os.close(fd)
    return None


def microvm_support() -> Support:
    missing = _kvm()
    if missing is not None:
        return Support(False, missing)
    found = [name for name in VMMS if shutil.which(name)]
    if not found:
        return Support(False, f"/dev/kvm is usable but no VMM on PATH (looked for {VMMS})")
    return Support(False, f"{found[0]} and /dev/kvm are present, but MAOS does not drive VMs yet")


def _flag_set(path: str) -> bool:
    try:
        return Path(path).read_text().strip() in {"Y", "1"}
    except OSError:
        return False


def _confidential_tech() -> list[str]:
    techs = []
    if _flag_set("/sys/module/kvm_intel/parameters/tdx") or Path("/sys/firmware/tdx").exists():
        techs.append("Intel TDX")
    if _flag_set("/sys/module/kvm_amd/parameters/sev_snp"):
        techs.append("AMD SEV-SNP")
    elif _flag_set("/sys/module/kvm_amd/parameters/sev"):
        techs.append("AMD SEV")
    return techs


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def confidential_support() -> Support:
    techs = _confidential_tech()
    if not techs:
        hints = sorted(_cpu_flags() & {"tdx_guest", "sev", "sev_es", "sev_snp"})
        seen = f" (cpu flags: {', '.join(hints)})" if hints else ""
        return Support(False, f"the host kernel offers neither TDX nor SEV to guests{seen}")
    vm = microvm_support()
    if "MAOS does not" not in vm.reason:
        return Support(False, f"{' and '.join(techs)} present, but {vm.reason}")
    return Support(False, f"{' and '.join(techs)} present, but MAOS does not drive VMs yet")
