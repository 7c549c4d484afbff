#!/usr/bin/env bash
# Builds the local Kubernetes control-plane binaries from the Go module proxy (no Docker, no release
# downloads) into a per-user cache outside the repo:
#
#   ~/.cache/robustness-gate/testbin/bin/<name>-<version>   (+ a <name> symlink to the pinned version)
#   ~/.cache/robustness-gate/testbin/crds/argo-rollouts-<version>/*.yaml
#   ~/.cache/robustness-gate/testbin/kwok/kwok-<version>-stages.yaml
#
# Usage: hack/cluster/build.sh [component ...]      (no argument: all components)
# Components: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl
#             rollouts-controller rollouts-crds helm
# Versions come from hack/cluster/versions.env. A component whose output already exists is skipped,
# so a second run is a no-op that does not even start `go`.
#
# Environment: TESTBIN (default ~/.cache/robustness-gate/testbin); RG_GOMODCACHE / RG_GOCACHE /
# RG_GOPATH (defaults ~/.cache/robustness-gate/go/{mod,build,path}) to share existing Go caches.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$HERE/versions.env"

CACHE=${RG_CACHE:-$HOME/.cache/robustness-gate}
TESTBIN=${TESTBIN:-$CACHE/testbin}
BIN=$TESTBIN/bin
SRC=$TESTBIN/src
LOGS=$TESTBIN/logs
ALL_COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kwokctl
                rollouts-controller rollouts-crds helm)

# Dedicated Go caches: keeps the (multi-GB) build cache out of the way of other Go work, makes its
# size measurable, and lets `rm -rf ~/.cache/robustness-gate` clean everything.
export GOMODCACHE=${RG_GOMODCACHE:-$CACHE/go/mod}
export GOCACHE=${RG_GOCACHE:-$CACHE/go/build}
# GOPATH too: the checksum-database state lives in $GOPATH/pkg/sumdb, so nothing lands in ~/go.
export GOPATH=${RG_GOPATH:-$CACHE/go/path}
# Never switch toolchains; build statically like upstream does.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOWORK=off
# Replace (not extend) any user GOFLAGS: a global -mod=mod would break `go install pkg@version`.
# -modcacherw keeps the module cache deletable with plain rm.
export GOFLAGS="-modcacherw -buildvcs=false"

die() { echo "build.sh: ERROR: $*" >&2; exit 1; }
say() { echo "build.sh: $*" >&2; }

SUMMARY=()
BUILT_ANY=0
START_ALL=$(date +%s.%N)

# ---------------------------------------------------------------------------------------------
# Preflight, run lazily before the first real build so that a warm run needs no Go at all.
PREFLIGHT_DONE=0
preflight() {
  [ "$PREFLIGHT_DONE" = 1 ] && return 0
  command -v go >/dev/null || die "'go' is not on PATH; Go >= 1.26 is required to build from the module proxy"
  local gv; gv=$(go env GOVERSION) || die "'go env' failed"
  local mm=${gv#go}; local major=${mm%%.*}; local rest=${mm#*.}; local minor=${rest%%[^0-9]*}
  if [ "$major" -lt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -lt 26 ]; }; then
    die "Go >= 1.26 is required (kwok $KWOK_VERSION and helm $HELM_VERSION say 'go 1.26.0'); found $gv. GOTOOLCHAIN=local forbids switching"
  fi
  local proxy; proxy=$(go env GOPROXY)
  case ",$proxy," in *,off,*) die "GOPROXY=$proxy: the Go module proxy is required";; esac
  [ "$KUBE_STAGING_VERSION" = "v0.${KUBE_VERSION#v1.}" ] ||
    die "versions.env: KUBE_STAGING_VERSION=$KUBE_STAGING_VERSION does not match KUBE_VERSION=$KUBE_VERSION (want v0.${KUBE_VERSION#v1.})"
  mkdir -p "$BIN" "$SRC" "$LOGS" "$GOMODCACHE" "$GOCACHE" "$GOPATH"
  [ -s "$LOGS/build-times.tsv" ] ||
    printf 'date\tcomponent\tstatus\ttotal_s\tgo_build_s\tlargest_process_rss_mib\tprocess_tree_peak_rss_mib\n' \
      >"$LOGS/build-times.tsv"
  say "go $gv, GOPROXY=$proxy, GOMODCACHE=$GOMODCACHE, GOCACHE=$GOCACHE"
  PREFLIGHT_DONE=1
}

# ---------------------------------------------------------------------------------------------
# Module metadata via `go mod download -json` (also fetches the zip, which every build needs anyway).
# Sets MOD_DIR, MOD_GOMOD, MOD_TIME, MOD_HASH (commit; empty if the proxy does not report it).
mod_info() {
  local mv=$1 json=$LOGS/mod-${1//\//_}.json
  if ! (cd / && go mod download -json "$mv") >"$json" 2>&1; then
    cat "$json" >&2
    die "cannot download $mv from the module proxy (see above)"
  fi
  field() { sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}\$/\1/p" "$json" | head -n 1; }
  MOD_DIR=$(field Dir); MOD_GOMOD=$(field GoMod); MOD_HASH=$(field Hash)
  local info; info=$(field Info)
  if [ -z "$MOD_DIR" ] || [ -z "$MOD_GOMOD" ] || [ -z "$info" ]; then
    die "unexpected 'go mod download -json $mv' output: $json"
  fi
  # The tag time (and, from some proxies, the commit) live in the .info file, e.g.
  # {"Version":"v1.33.13","Time":"2026-06-11T16:59:07Z","Origin":{...,"Hash":"..."}}.
  MOD_TIME=$(sed -n 's/.*"Time":"\([^"]*\)".*/\1/p' "$info")
  [ -n "$MOD_HASH" ] || MOD_HASH=$(sed -n 's/.*"Hash":"\([0-9a-f]\{40\}\)".*/\1/p' "$info")
}

# Sum of RSS (KiB) of a process and all its descendants.
tree_rss_kb() {
  ps -e -o pid=,ppid=,rss= | awk -v root="$1" '
    { ppid[$1] = $2; rss[$1] = $3 }
    END {
      for (p in ppid) {
        q = p
        while (q != "" && q != 0) { if (q == root) { s += rss[p]; break }; q = ppid[q] }
      }
      print s + 0
    }'
}

# Runs "$@" niced, logging to $LOGS/<name>.log; records wall time, the largest single process RSS
# (GNU time, if installed) and the sampled peak RSS of the whole process tree (go + compile/link).
measured() {
  local name=$1; shift
  local log=$LOGS/$name.log t0 t1 pid rc=0 peak=0 cur maxrss="n/a"
  local timer=()
  [ -x /usr/bin/time ] && timer=(/usr/bin/time -v -o "$log.time")
  say "building $name ..."
  t0=$(date +%s.%N)
  nice -n 10 "${timer[@]}" "$@" >"$log" 2>&1 &
  pid=$!
  if command -v ps >/dev/null; then
    while kill -0 "$pid" 2>/dev/null; do
      cur=$(tree_rss_kb "$pid"); [ "$cur" -gt "$peak" ] && peak=$cur
      sleep 0.5
    done
  fi
  wait "$pid" || rc=$?
  t1=$(date +%s.%N)
  local wall; wall=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
  if [ -s "$log.time" ]; then
    maxrss=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$log.time")
  fi
  local peakmb; peakmb=$(awk -v k="$peak" 'BEGIN { printf "%.0f", k / 1024 }')
  if [ "$rc" -ne 0 ]; then
    echo "----- last lines of $log -----" >&2
    tail -n 40 "$log" >&2
    # Name the module versions the proxy or checksum database refused, if that is the cause.
    local refused
    refused=$(grep -oE '[A-Za-z0-9./_-]+@v[0-9][^: ]*: (verifying module|reading https?://[^ ]*: 40[34])' "$log" |
              sed 's/: .*//' | sort -u | tr '\n' ' ' || true)
    [ -z "$refused" ] ||
      say "the module proxy / checksum database refused: $refused-> pick a version whose modules it serves (versions.env)"
    printf '%s\t%s\tFAILED(rc=%s)\t\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$rc" "$wall" "$maxrss" "$peakmb" \
      >>"$LOGS/build-times.tsv"
    die "$name failed after ${wall}s (exit $rc); full log: $log"
  fi
  say "$name: go ${wall}s wall, largest process ${maxrss} MiB, whole build ${peakmb} MiB peak RSS"
  M_NAME=$name M_WALL=$wall M_MAXRSS=$maxrss M_PEAK=$peakmb
  BUILT_ANY=1
}

# Skip (and refresh the unversioned symlink) when bin/<name>-<version> exists.
have() {
  local name=$1 ver=$2
  if [ -x "$BIN/$name-$ver" ]; then
    ln -sfn "$name-$ver" "$BIN/$name"
    SUMMARY+=("$(printf '%-34s cached' "$name-$ver")")
    return 0
  fi
  return 1
}

# Moves a freshly built binary into place atomically and points the symlink at it.
install_bin() {
  local tmp=$1 name=$2 ver=$3
  [ -x "$tmp" ] || die "expected build output $tmp is missing"
  mv -f "$tmp" "$BIN/$name-$ver"
  ln -sfn "$name-$ver" "$BIN/$name"
}

# Fails loudly unless "<binary> <args>" prints the expected version string.
check_version() {
  local bin=$1 want=$2; shift 2
  local out; out=$("$bin" "$@" 2>&1) || die "$bin $* failed: $out"
  case "$out" in *"$want"*) say "$(basename "$bin"): $(echo "$out" | head -n 1)";;
    *) die "$bin $* printed '$out', expected it to contain '$want'";; esac
}

# ---------------------------------------------------------------------------------------------
build_etcd() {
  have etcd "$ETCD_VERSION" && return 0
  preflight
  mod_info "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  local dir=$SRC/etcd-$ETCD_VERSION
  mkdir -p "$dir"
  # A require-only wrapper is enough: the server module's own replaces point at sibling directories
  # and are ignored for a dependency, while its requires name real tags. etcd 3.5 still pins
  # reflect2 v1.0.1 indirectly; v1.0.2 is the release that supports Go >= 1.18 runtimes.
  cat >"$dir/go.mod" <<EOF
module testbins.local/etcd

go 1.23.0

require (
	go.etcd.io/etcd/server/v3 $ETCD_VERSION
	github.com/modern-go/reflect2 v1.0.2
)
EOF
  local ldf="-s -w"
  [ -n "$MOD_HASH" ] && ldf="$ldf -X go.etcd.io/etcd/api/v3/version.GitSHA=${MOD_HASH:0:7}"
  measured "etcd-$ETCD_VERSION" go -C "$dir" build -mod=mod -trimpath -ldflags="$ldf" -o "$BIN/.etcd.tmp" \
    go.etcd.io/etcd/server/v3
  install_bin "$BIN/.etcd.tmp" etcd "$ETCD_VERSION"
  check_version "$BIN/etcd" "etcd Version: ${ETCD_VERSION#v}" --version
}

# One wrapper module for all k8s.io/kubernetes commands, generated from the upstream go.mod: every
# `k8s.io/X => ./staging/src/k8s.io/X` becomes `k8s.io/X => k8s.io/X <staging tag>`.
K8S_READY=0
k8s_wrapper() {
  [ "$K8S_READY" = 1 ] && return 0
  preflight
  mod_info "k8s.io/kubernetes@$KUBE_VERSION"
  local up=$MOD_GOMOD dir=$SRC/k8s-$KUBE_VERSION
  mkdir -p "$dir"
  local gover godebug mods
  gover=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$up")
  godebug=$(sed -n 's/^godebug \(.*\)$/\1/p' "$up")
  mods=$(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$up")
  if [ -z "$gover" ] || [ -z "$mods" ]; then die "could not parse the staging replaces out of $up"; fi
  {
    printf 'module testbins.local/k8s\n\ngo %s\n\n' "$gover"
    # Mirrors upstream, so Go 1.26 keeps the GODEBUG defaults k8s was released with.
    [ -n "$godebug" ] && printf 'godebug %s\n\n' "$godebug"
    printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$KUBE_VERSION"
    local m; for m in $mods; do printf '\t%s => %s %s\n' "$m" "$m" "$KUBE_STAGING_VERSION"; done
    printf ')\n'
  } >"$dir/go.mod"
  say "k8s wrapper: $(echo "$mods" | wc -l) staging modules mapped to $KUBE_STAGING_VERSION"
  # Version stamps as in hack/lib/version.sh; without them /version says v0.0.0-master+$Format:%H$.
  local minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
  K8S_LDF="-s -w"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    K8S_LDF="$K8S_LDF -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    K8S_LDF="$K8S_LDF -X $p.gitTreeState=clean -X $p.buildDate=${MOD_TIME:-1970-01-01T00:00:00Z}"
    [ -n "$MOD_HASH" ] && K8S_LDF="$K8S_LDF -X $p.gitCommit=$MOD_HASH"
  done
  K8S_DIR=$dir
  K8S_READY=1
}

build_k8s_cmd() {
  local name=$1
  have "$name" "$KUBE_VERSION" && return 0
  k8s_wrapper
  # Tags as in upstream hack/lib/golang.sh. One binary per `go build`, so each gets its own numbers;
  # the first one pays for the shared packages.
  measured "$name-$KUBE_VERSION" go -C "$K8S_DIR" build -mod=mod -trimpath -tags=selinux,notest,grpcnotrace \
    -ldflags="$K8S_LDF" -o "$BIN/.$name.tmp" "k8s.io/kubernetes/cmd/$name"
  install_bin "$BIN/.$name.tmp" "$name" "$KUBE_VERSION"
  if [ "$name" = kubectl ]; then
    check_version "$BIN/$name" "$KUBE_VERSION" version --client
  else
    check_version "$BIN/$name" "Kubernetes $KUBE_VERSION" --version
  fi
}

# kwok and helm have no replace/exclude directives, so plain `go install pkg@version` works.
go_install() {  # name version package ldflags
  local name=$1 ver=$2 pkg=$3 ldf=$4 gobin=$BIN/.gobin-$1
  rm -rf "$gobin"
  measured "$name-$ver" env GOBIN="$gobin" go install -trimpath -ldflags="$ldf" "$pkg@$ver"
  install_bin "$gobin/$name" "$name" "$ver"
  rm -rf "$gobin"
}

build_kwok_cmd() {
  local name=$1
  if ! have "$name" "$KWOK_VERSION"; then
    preflight
    # pkg/consts.Version is already set in the tagged source; no version ldflags needed.
    go_install "$name" "$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/$name" "-s -w"
    check_version "$BIN/$name" "${KWOK_VERSION#v}" --version
  fi
  # The standalone kwok refuses to start without Stage objects ("no stages found"); ship the same
  # default stages kwokctl embeds, as one multi-document file.
  local stages=$TESTBIN/kwok/kwok-$KWOK_VERSION-stages.yaml
  if [ "$name" = kwok ] && [ ! -s "$stages" ]; then
    preflight
    mod_info "sigs.k8s.io/kwok@$KWOK_VERSION"
    mkdir -p "$TESTBIN/kwok"
    local f
    for f in node/fast/node-initialize.yaml node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
             pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
      [ -f "$MOD_DIR/kustomize/stage/$f" ] || die "kwok $KWOK_VERSION has no kustomize/stage/$f"
      cat "$MOD_DIR/kustomize/stage/$f"; echo '---'
    done >"$stages.tmp"
    mv -f "$stages.tmp" "$stages"
    say "kwok stages: $stages"
  fi
}

# Argo Rollouts: the upstream go.mod has replaces (telegram fork, k8s staging v0.0.0 -> tag), so
# `go install` refuses it. The wrapper is upstream's go.mod verbatim under another module name,
# which pins every dependency exactly as upstream and keeps all replaces.
build_rollouts_controller() {
  have rollouts-controller "$ROLLOUTS_VERSION" && return 0
  preflight
  mod_info "github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION"
  local dir=$SRC/rollouts-$ROLLOUTS_VERSION
  mkdir -p "$dir"
  sed 's#^module .*#module testbins.local/rollouts#' "$MOD_GOMOD" >"$dir/go.mod"
  go -C "$dir" mod edit -require="github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION"
  local v=github.com/argoproj/argo-rollouts/utils/version
  local ldf="-s -w -X $v.version=${ROLLOUTS_VERSION#v} -X $v.buildDate=${MOD_TIME:-1970-01-01T00:00:00Z}"
  # With commit + tag + clean state GetVersion() prints the plain tag instead of "v1.8.4+unknown".
  [ -n "$MOD_HASH" ] && ldf="$ldf -X $v.gitCommit=$MOD_HASH -X $v.gitTag=$ROLLOUTS_VERSION -X $v.gitTreeState=clean"
  measured "rollouts-controller-$ROLLOUTS_VERSION" go -C "$dir" build -mod=mod -trimpath -ldflags="$ldf" \
    -o "$BIN/.rollouts-controller.tmp" github.com/argoproj/argo-rollouts/cmd/rollouts-controller
  install_bin "$BIN/.rollouts-controller.tmp" rollouts-controller "$ROLLOUTS_VERSION"
  check_version "$BIN/rollouts-controller" "v${ROLLOUTS_VERSION#v}" --version
}

# The CRDs ship in the module zip (manifests/crds); copy them out of the module cache. Only the
# *-crd.yaml files: the kustomization.yaml next to them would break `kubectl apply -f <dir>`.
build_rollouts_crds() {
  local dest=$TESTBIN/crds/argo-rollouts-$ROLLOUTS_VERSION
  if [ -s "$dest/rollout-crd.yaml" ]; then
    SUMMARY+=("$(printf '%-34s cached' "rollouts-crds-$ROLLOUTS_VERSION")")
    return 0
  fi
  preflight
  mod_info "github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION"
  [ -d "$MOD_DIR/manifests/crds" ] || die "argo-rollouts $ROLLOUTS_VERSION has no manifests/crds"
  rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
  cp "$MOD_DIR"/manifests/crds/*-crd.yaml "$dest.tmp/"
  chmod -R u+w "$dest.tmp"
  rm -rf "$dest"; mv "$dest.tmp" "$dest"
  SUMMARY+=("$(printf '%-34s extracted %s files' "rollouts-crds-$ROLLOUTS_VERSION" "$(find "$dest" -name '*.yaml' | wc -l)")")
  say "rollouts CRDs: $dest"
}

build_helm() {
  have helm "$HELM_VERSION" && return 0
  preflight
  mod_info "helm.sh/helm/v3@$HELM_VERSION"
  # As upstream's Makefile: the offline default kube version follows the client-go minor
  # (v0.36.x -> 1.36); otherwise `helm template` assumes v1.20.0.
  local cg; cg=$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$MOD_GOMOD" | head -n 1)
  [ -n "$cg" ] || die "could not read the k8s.io/client-go version from $MOD_GOMOD"
  local ldf="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldf="$ldf -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  [ -n "$MOD_HASH" ] && ldf="$ldf -X helm.sh/helm/v3/internal/version.gitCommit=$MOD_HASH"
  local p
  for p in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldf="$ldf -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$cg"
  done
  go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm "$ldf"
  check_version "$BIN/helm" "$HELM_VERSION" version --short
}

# Runs one component; for a real build, reports its total time (module metadata, wrapper, go
# build, version check) next to the go build's own time and memory.
build_one() {
  local t0 total; t0=$(date +%s.%N)
  M_NAME=""
  build_component "$1"
  [ -n "$M_NAME" ] || return 0
  total=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\tok\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$M_NAME" "$total" "$M_WALL" "$M_MAXRSS" "$M_PEAK" \
    >>"$LOGS/build-times.tsv"
  SUMMARY+=("$(printf '%-34s %7ss total (go build %7ss)  largest process %5s MiB  whole build %5s MiB' \
    "$M_NAME" "$total" "$M_WALL" "$M_MAXRSS" "$M_PEAK")")
}

build_component() {
  case "$1" in
    etcd) build_etcd;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl) build_k8s_cmd "$1";;
    kwok|kwokctl) build_kwok_cmd "$1";;
    rollouts-controller) build_rollouts_controller;;
    rollouts-crds) build_rollouts_crds;;
    helm) build_helm;;
    *) die "unknown component '$1' (known: ${ALL_COMPONENTS[*]})";;
  esac
}

# ---------------------------------------------------------------------------------------------
mkdir -p "$BIN" "$LOGS"
# One build at a time, also across concurrent invocations (e.g. a test run and a developer).
if command -v flock >/dev/null; then
  exec 9>"$TESTBIN/.build.lock"
  flock -w 7200 9 || die "timed out waiting for another build.sh (lock $TESTBIN/.build.lock)"
fi

if [ "$#" -gt 0 ]; then COMPONENTS=("$@"); else COMPONENTS=("${ALL_COMPONENTS[@]}"); fi
for c in "${COMPONENTS[@]}"; do build_one "$c"; done

END_ALL=$(date +%s.%N)
echo "== robustness-gate local cluster binaries ($TESTBIN/bin)"
printf '%s\n' "${SUMMARY[@]}"
printf 'total wall time: %ss\n' "$(awk -v a="$START_ALL" -v b="$END_ALL" 'BEGIN { printf "%.1f", b - a }')"
if [ "$BUILT_ANY" = 1 ]; then
  # Only after real work: du over a multi-GB cache would slow down the no-op path.
  du -sh "$GOMODCACHE" "$GOCACHE" "$BIN" 2>/dev/null | sed 's/^/disk: /'
fi
