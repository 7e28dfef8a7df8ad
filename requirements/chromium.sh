#!/usr/bin/env bash
# Installs Debian's chromium, the browser the portal's tests drive headless with Playwright (whose
# own browser download needs the internet). Does nothing when /usr/bin/chromium is there; as root it
# installs the package with apt-get, otherwise it says how.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "requirements/chromium.sh: chromium is not installed; as root: apt-get install -y chromium" >&2
  exit 1
fi
apt-get install -y -q chromium >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q chromium >/dev/null; }
