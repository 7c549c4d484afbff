#!/usr/bin/env bash
# System packages the tests and the demo need: the Debian prometheus package (prometheus, promtool).
set -euo pipefail
if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "prometheus is missing: run 'sudo apt-get update && sudo apt-get install -y prometheus'" >&2
  exit 1
fi
echo "installing the Debian prometheus package..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# The package may start a system service on :9090; the tests start their own on free ports.
if command -v service >/dev/null; then service prometheus stop >/dev/null 2>&1 || true; fi
command -v prometheus >/dev/null && command -v promtool >/dev/null
