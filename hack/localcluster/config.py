"""Where the cluster's binaries and files are, the pinned versions, and the names every part shares."""

from __future__ import annotations

import os
from pathlib import Path

from hack.procs import REPO_ROOT, tail

VERSIONS_ENV = REPO_ROOT / "hack" / "cluster" / "versions.env"
DEFAULT_DIR = REPO_ROOT / ".cluster"

# Start order; stop() goes in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok", "rollouts-controller")
ROLLOUTS_NAMESPACE = "argo-rollouts"
FIELD_MANAGER = "robustness-gate-localcluster"
# kwok only manages nodes carrying this annotation, so it never touches a Node it did not get from us.
KWOK_NODE_ANNOTATION = ("kwok.x-k8s.io/node", "fake")
ADMIN_CN = "robustness-gate-admin"
LOG_TAIL_LINES = 30
# Files and directories start() owns inside the work directory; a fresh start removes only these.
OWNED_ENTRIES = ("pki", "etcd", "logs", "admin.kubeconfig", "state.json")


class ClusterError(RuntimeError):
    """A component failed to start, become ready or stop; the message ends with the tail of its log."""

    def __init__(self, component: str, problem: str, log: Path | None = None) -> None:
        self.component = component
        self.problem = problem
        self.log = log
        message = f"{component}: {problem}"
        if log is not None:
            text = tail(log, LOG_TAIL_LINES) if log.exists() else f"(no log: {log} does not exist)"
            message += f"\n----- last {LOG_TAIL_LINES} lines of {log} -----\n{text}"
        super().__init__(message)


def testbin() -> Path:
    """Where build.sh puts binaries, CRDs and kwok stages; ``TESTBIN`` overrides it as it does for build.sh."""
    env = os.environ.get("TESTBIN")
    return Path(env) if env else Path.home() / ".cache" / "robustness-gate" / "testbin"


def versions() -> dict[str, str]:
    """The pinned versions from hack/cluster/versions.env (plain KEY=value lines, # comments)."""
    out: dict[str, str] = {}
    for raw in VERSIONS_ENV.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        out[key.strip()] = value.strip().strip("\"'")
    return out


def binaries(*, rollouts: bool) -> dict[str, Path]:
    """Component name -> its binary under testbin(), named with its pinned version."""
    v = versions()
    names = {
        "etcd": f"etcd-{v['ETCD_VERSION']}",
        "kube-apiserver": f"kube-apiserver-{v['KUBE_VERSION']}",
        "kube-controller-manager": f"kube-controller-manager-{v['KUBE_VERSION']}",
        "kube-scheduler": f"kube-scheduler-{v['KUBE_VERSION']}",
        "kwok": f"kwok-{v['KWOK_VERSION']}",
    }
    if rollouts:
        names["rollouts-controller"] = f"rollouts-controller-{v['ROLLOUTS_VERSION']}"
    return {k: testbin() / "bin" / n for k, n in names.items()}


def stages_file() -> Path:
    return testbin() / "kwok" / f"kwok-{versions()['KWOK_VERSION']}-stages.yaml"


def crd_dir() -> Path:
    return testbin() / "crds" / f"argo-rollouts-{versions()['ROLLOUTS_VERSION']}"
