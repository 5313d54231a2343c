#!/usr/bin/env bash
# Installs the Debian packages MAOS's sandbox needs when they are missing, so a fresh
# Debian machine passes `make test`. Does nothing when everything is present.
#   required: bubblewrap (isolation levels 1 and 2) + libseccomp2 (level 2), Debian's python3 (the
#             interpreter a non-root sandbox can read)
#   nodejs, npm: Debian's node, mounted read-only into upstream (MCP) server pods that
#             need it, and npm to build their runtime (docs/sandbox.md, "Upstream
#             servers"); required by `sysdeps.sh test`
#   optional: runsc (gVisor, isolation level 3); without it level 3 is refused and its
#             tests say why
#   `sysdeps.sh test` also needs chromium: the dashboard's browser tests drive Debian's
#             build through Playwright (`playwright install` cannot download here); and
#             iproute2's ss, which destroys a serving dashboard's socket from outside
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
ldconfig -p 2>/dev/null | grep -q 'libseccomp.so.2' || need+=(libseccomp2)
[ -x /usr/bin/python3 ] || need+=(python3)
if [ "${1:-}" = test ]; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/node ] || need+=(nodejs)
  command -v npm >/dev/null 2>&1 || need+=(npm)
  command -v ss >/dev/null 2>&1 || need+=(iproute2)
fi
want=()
command -v runsc >/dev/null 2>&1 || want+=(runsc)
if [ ${#need[@]} -eq 0 ] && [ ${#want[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  if [ ${#need[@]} -gt 0 ]; then
    echo "sysdeps: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
    exit 1
  fi
  echo "sysdeps: optional ${want[*]} missing (sudo apt-get install ${want[*]})" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  echo "sysdeps: installing ${need[*]}" >&2
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ${#want[@]} -gt 0 ]; then
  echo "sysdeps: installing optional ${want[*]}" >&2
  apt-get install -y -qq "${want[@]}" >/dev/null \
    || echo "sysdeps: could not install ${want[*]}; isolation level 3 stays unavailable" >&2
fi
