#!/usr/bin/env bash
# Installs the system packages f2git needs, only those missing (Debian/Ubuntu apt).
#   scripts/system-deps.sh          what `make run` needs
#   scripts/system-deps.sh --test   also what the tests need
# One package a line: `name` (present when dpkg has it) or `name:command` (present when
# `command` is on the PATH, e.g. a Node.js installed without apt).
set -euo pipefail

RUN_PACKAGES=(
  git:git
)
TEST_PACKAGES=(
  nodejs:node         # JupyterHub's configurable-http-proxy (hub tests)
  npm:npm
  chromium:chromium   # browser tests
  php-cli             # ILIAS's WebDAV (sabre/dav) under php -S
  php-sabre-dav
  nginx               # a real web server for the http source and benchmarks/lecture.py
  fcgiwrap            # benchmarks/lecture.py: git http-backend behind nginx
)

wanted=("${RUN_PACKAGES[@]}")
[ "${1:-}" = "--test" ] && wanted+=("${TEST_PACKAGES[@]}")

need=()
for item in "${wanted[@]}"; do
  package=${item%%:*} command=${item#*:}
  if [ "$item" != "$package" ]; then
    command -v "$command" >/dev/null && continue
  elif dpkg-query -W -f='${db:Status-Abbrev}' "$package" 2>/dev/null | grep -q '^ii'; then
    continue
  fi
  need+=("$package")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=600 update -qq
apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
