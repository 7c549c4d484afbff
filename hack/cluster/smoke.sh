#!/usr/bin/env bash
# Smoke check of the locally built control plane: starts etcd and kube-apiserver on free 127.0.0.1
# ports with a throwaway PKI in a temp dir, waits for /readyz, runs kubectl against it with a
# generated admin kubeconfig, then stops everything and checks that no process is left behind.
# Prints the start times (process start -> ready) and the RSS of etcd and kube-apiserver.
#
# Also server-side applies the Argo Rollouts CRDs when build.sh has extracted them.
#
# Usage: hack/cluster/smoke.sh        (needs: hack/cluster/build.sh etcd kube-apiserver kubectl)
# Needs openssl and curl.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HERE/versions.env"

TESTBIN=${TESTBIN:-$HOME/.cache/robustness-gate/testbin}
ETCD=$TESTBIN/bin/etcd-$ETCD_VERSION
APISERVER=$TESTBIN/bin/kube-apiserver-$KUBE_VERSION
KUBECTL=$TESTBIN/bin/kubectl-$KUBE_VERSION

die() { echo "smoke.sh: ERROR: $*" >&2; exit 1; }
say() { echo "smoke.sh: $*" >&2; }

for b in "$ETCD" "$APISERVER" "$KUBECTL"; do
  [ -x "$b" ] || die "$b is missing: run hack/cluster/build.sh first"
done
for t in openssl curl; do
  command -v "$t" >/dev/null || die "'$t' is required (Debian: apt-get install -y $t)"
done

# Keep the script's own stdout/stderr on fds 3/4: a signal can arrive while a probe runs with its
# output sent to /dev/null, and the exit trap would otherwise inherit that redirection.
exec 3>&1 4>&2
D=$(mktemp -d "${TMPDIR:-/tmp}/rg-smoke.XXXXXX")
PIDS=()
NAMES=()

# True while the process runs; unlike `kill -0` it treats our exited-but-unreaped children
# (zombies) as gone.
alive() {
  local st
  st=$(sed -n 's/^.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Stops our processes by PID (TERM, bounded wait, then KILL), checks for leftovers, removes $D.
cleanup() {
  local rc=$? i pid left t0
  t0=$(date +%s.%N)
  set +e
  exec 1>&3 2>&4
  # Reverse start order, one at a time: the apiserver shuts down while etcd is still there.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    pid=${PIDS[i]}
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    if alive "$pid"; then
      say "${NAMES[i]} (pid $pid) ignored SIGTERM for 10s; killing it"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
  done
  if [ "$rc" -ne 0 ]; then
    for i in "${!NAMES[@]}"; do
      echo "----- last lines of ${NAMES[i]}.log -----" >&2
      tail -n 25 "$D/${NAMES[i]}.log" >&2 2>/dev/null
    done
  fi
  # Every process we start has $D on its command line, so this finds exactly ours.
  left=$(pgrep -f -- "$D" || true)
  if [ -n "$left" ]; then
    say "leftover processes after stop: $left"
    # shellcheck disable=SC2086 # word splitting of the PID list is intended
    kill -KILL $left 2>/dev/null
    rc=1
  else
    say "stopped in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s; no leftover processes (pgrep -f $D: none)"
  fi
  rm -rf "$D"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
rss_mib() { awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
hwm_mib() { awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

# Free port below the ephemeral range (so no outgoing connection can take it meanwhile) that
# nothing listens on; result in $PORT. Global bookkeeping avoids handing out one port twice.
TAKEN=" "
free_port() {
  local p
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 12000))
    case "$TAKEN" in *" $p "*) continue;; esac
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      TAKEN+="$p "; PORT=$p; return 0
    fi
  done
  die "no free port found on 127.0.0.1"
}

start() {  # name binary args...
  local name=$1; shift
  "$@" >"$D/$name.log" 2>&1 3>&- 4>&- &
  PIDS+=("$!"); NAMES+=("$name")
}

# Polls "$@" every 0.1s until it succeeds; fails if the process died or the deadline passed.
wait_until() {  # seconds pid what cmd...
  local limit=$1 pid=$2 what=$3; shift 3
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    alive "$pid" || die "$what: process exited before becoming ready"
    [ "$SECONDS" -lt "$end" ] || die "$what: not ready after ${limit}s"
    sleep 0.1
  done
}

# ---- PKI: one CA for serving and client certs, plus the service-account key pair. The explicit
# CA/SKI/AKI extensions keep strict TLS clients (Python 3.13 VERIFY_X509_STRICT) happy.
P=$D/pki
mkdir -p "$P"
(
  cd "$P"
  openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 2 -keyout ca.key -out ca.crt -subj "/CN=rg-smoke-ca" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -addext "subjectKeyIdentifier=hash"
  cat >srv.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid,issuer
EOF
  cat >cli.ext <<'EOF'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth
authorityKeyIdentifier=keyid,issuer
EOF
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver"
  openssl x509 -req -sha256 -days 2 -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -extfile srv.ext -out apiserver.crt
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=rg-admin"
  openssl x509 -req -sha256 -days 2 -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial \
    -extfile cli.ext -out admin.crt
  openssl genrsa -out sa.key 2048
  openssl rsa -in sa.key -pubout -out sa.pub
) >"$D/openssl.log" 2>&1 || { cat "$D/openssl.log" >&2; die "openssl failed"; }

free_port; ETCD_PORT=$PORT
free_port; PEER_PORT=$PORT
free_port; API_PORT=$PORT

cat >"$D/admin.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: smoke
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$P/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$P/admin.crt", client-key: "$P/admin.key"}
contexts:
- name: smoke
  context: {cluster: smoke, user: admin, namespace: default}
current-context: smoke
EOF
export KUBECONFIG=$D/admin.kubeconfig

# ---- etcd
T0=$(now)
start etcd "$ETCD" --name=node0 --data-dir="$D/etcd" \
  --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
  --listen-peer-urls="http://127.0.0.1:$PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$PEER_PORT" \
  --initial-cluster="node0=http://127.0.0.1:$PEER_PORT" \
  --unsafe-no-fsync=true --auto-compaction-retention=1 --quota-backend-bytes=8589934592 --log-level=warn
ETCD_PID=${PIDS[-1]}
etcd_healthy() { curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
wait_until 30 "$ETCD_PID" "etcd /health" etcd_healthy
T1=$(now)
say "etcd ready on 127.0.0.1:$ETCD_PORT after $(secs "$T0" "$T1")s"

# ---- kube-apiserver. A loopback bind needs an explicit advertise address (no default-route
# lookup) and, since a loopback address is not a valid Endpoints IP, no endpoint reconciler.
# There is no kube-controller-manager here, so no "default" ServiceAccount: disable that admission.
T2=$(now)
start kube-apiserver "$APISERVER" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
  --bind-address=127.0.0.1 --secure-port="$API_PORT" --cert-dir="$P" \
  --advertise-address=127.0.0.1 --endpoint-reconciler-type=none \
  --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
  --disable-admission-plugins=ServiceAccount
API_PID=${PIDS[-1]}
api_ready() {
  [ "$(curl -fsS --max-time 2 --cacert "$P/ca.crt" --cert "$P/admin.crt" --key "$P/admin.key" \
        "https://127.0.0.1:$API_PORT/readyz")" = ok ]
}
wait_until 120 "$API_PID" "kube-apiserver /readyz" api_ready
T3=$(now)
ETCD_RSS0=$(rss_mib "$ETCD_PID"); API_RSS0=$(rss_mib "$API_PID")
say "kube-apiserver ready on 127.0.0.1:$API_PORT after $(secs "$T2" "$T3")s"

# ---- kubectl against it (output captured first: `| head` could SIGPIPE kubectl under pipefail)
"$KUBECTL" version >"$D/version.txt" 2>&1 || { cat "$D/version.txt" >&2; die "kubectl version failed"; }
cat "$D/version.txt"
grep -q "Server Version: $KUBE_VERSION" "$D/version.txt" || die "server does not report $KUBE_VERSION"
"$KUBECTL" api-resources >"$D/api-resources.txt" 2>&1 || { cat "$D/api-resources.txt" >&2; die "kubectl api-resources failed"; }
head -n 10 "$D/api-resources.txt"
say "api-resources: $(($(wc -l <"$D/api-resources.txt") - 1)) resource types"

# The Argo Rollouts CRDs extracted by build.sh, if present, must be accepted by this apiserver.
# Server-side apply: their size leaves no room for client-side apply's last-applied annotation.
CRDS=$TESTBIN/crds/argo-rollouts-$ROLLOUTS_VERSION
if [ -d "$CRDS" ]; then
  "$KUBECTL" apply --server-side -f "$CRDS" >"$D/crds.txt" 2>&1 || { cat "$D/crds.txt" >&2; die "applying $CRDS failed"; }
  "$KUBECTL" wait --for=condition=Established --timeout=30s -f "$CRDS" >>"$D/crds.txt" 2>&1 ||
    { cat "$D/crds.txt" >&2; die "Argo Rollouts CRDs did not become Established"; }
  say "Argo Rollouts $ROLLOUTS_VERSION CRDs applied and Established ($(find "$CRDS" -name '*.yaml' | wc -l) files)"
fi

# Let post-start hooks and controllers inside the apiserver settle before the second reading.
sleep "${SMOKE_SETTLE:-5}"

echo "== smoke summary (etcd $ETCD_VERSION, kube-apiserver $KUBE_VERSION)"
row() { printf '%-40s %s\n' "$1" "$2"; }
row "etcd start -> /health ok:" "$(secs "$T0" "$T1") s"
row "kube-apiserver start -> /readyz ok:" "$(secs "$T2" "$T3") s"
row "etcd start -> apiserver /readyz ok:" "$(secs "$T0" "$T3") s"
row "RSS at /readyz:" "etcd $ETCD_RSS0 MiB, kube-apiserver $API_RSS0 MiB"
row "RSS after kubectl+CRDs (+${SMOKE_SETTLE:-5} s):" "etcd $(rss_mib "$ETCD_PID") MiB, kube-apiserver $(rss_mib "$API_PID") MiB"
row "peak RSS (VmHWM):" "etcd $(hwm_mib "$ETCD_PID") MiB, kube-apiserver $(hwm_mib "$API_PID") MiB"
