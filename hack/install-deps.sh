#!/usr/bin/env bash
# System packages the tests and the demo need: the Debian prometheus package (prometheus, promtool), and openssl
# and curl for the local cluster (hack/localcluster/ makes its PKI with openssl; hack/cluster/smoke.sh uses both).
set -euo pipefail
missing=()
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then missing+=(prometheus); fi
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "missing system packages: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# The prometheus package may start a system service on :9090; the tests start their own on free ports.
if [[ " ${missing[*]} " == *" prometheus "* ]] && command -v service >/dev/null; then
  service prometheus stop >/dev/null 2>&1 || true
fi
command -v prometheus >/dev/null && command -v promtool >/dev/null && command -v openssl >/dev/null &&
  command -v curl >/dev/null
