#!/usr/bin/env bash
# Installs the system packages f2git's tests need, only those missing: git (the product),
# Node.js/npm (JupyterHub's configurable-http-proxy), Chromium (browser tests).
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
command -v npm >/dev/null || need+=(nodejs npm)
if [ "${1:-}" = "--test" ]; then
  command -v chromium >/dev/null || need+=(chromium)
  # benchmarks/lecture.py: git http-backend behind a real web server, and the static-file floor
  [ -x /usr/sbin/nginx ] || command -v nginx >/dev/null || need+=(nginx)
  [ -x /usr/sbin/fcgiwrap ] || command -v fcgiwrap >/dev/null || need+=(fcgiwrap)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
  exit 1
fi
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
