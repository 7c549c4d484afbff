"""The command line of each component: every one listens on 127.0.0.1 (on the ports it is given) and finds
its certificates in the cluster's PKI directory."""

from __future__ import annotations

from pathlib import Path

from hack.localcluster.config import ADMIN_CN, KWOK_NODE_ANNOTATION

POD_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
# One free port each; the Argo Rollouts controller's two only when it runs.
PORT_NAMES = ("etcd", "peer", "apiserver", "kcm", "scheduler", "kwok")
ROLLOUTS_PORT_NAMES = ("ro-healthz", "ro-metrics")


def etcd(binary: Path, workdir: Path, port: dict[str, int]) -> list[str]:
    return [
        str(binary),
        "--name=node0",
        f"--data-dir={workdir / 'etcd'}",
        f"--listen-client-urls=http://127.0.0.1:{port['etcd']}",
        f"--advertise-client-urls=http://127.0.0.1:{port['etcd']}",
        f"--listen-peer-urls=http://127.0.0.1:{port['peer']}",
        f"--initial-advertise-peer-urls=http://127.0.0.1:{port['peer']}",
        f"--initial-cluster=node0=http://127.0.0.1:{port['peer']}",
        "--unsafe-no-fsync=true",
        "--auto-compaction-retention=1",
        "--quota-backend-bytes=8589934592",
        "--log-level=warn",
    ]


def apiserver(binary: Path, pki: Path, port: dict[str, int]) -> list[str]:
    # ServiceAccount admission stays on (the default), since kube-controller-manager creates the SAs.
    # A loopback advertise address needs --endpoint-reconciler-type=none (no valid Endpoints IP).
    return [
        str(binary),
        f"--etcd-servers=http://127.0.0.1:{port['etcd']}",
        "--bind-address=127.0.0.1",
        f"--secure-port={port['apiserver']}",
        f"--cert-dir={pki}",
        "--advertise-address=127.0.0.1",
        "--endpoint-reconciler-type=none",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        f"--client-ca-file={pki / 'ca.crt'}",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--allow-privileged=true",
        # Without a request-header CA the extension-apiserver-authentication config map lacks one, and the
        # controller-manager and scheduler log an error about it every few seconds. The admin cert doubles as
        # the front-proxy client (as in kwokctl); it may do everything anyway.
        f"--requestheader-client-ca-file={pki / 'ca.crt'}",
        f"--requestheader-allowed-names={ADMIN_CN}",
        "--requestheader-username-headers=X-Remote-User",
        "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki / 'admin.crt'}",
        f"--proxy-client-key-file={pki / 'admin.key'}",
    ]


def _control_plane_client(kubeconfig: Path, pki: Path) -> list[str]:
    # Both serve HTTPS with the cluster's serving cert, so the probes can verify them against our CA.
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
        "--bind-address=127.0.0.1",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
        "--leader-elect=false",
    ]


def controller_manager(binary: Path, kubeconfig: Path, pki: Path, port: dict[str, int]) -> list[str]:
    return [
        str(binary),
        *_control_plane_client(kubeconfig, pki),
        f"--secure-port={port['kcm']}",
        f"--root-ca-file={pki / 'ca.crt'}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        "--use-service-account-credentials=false",
        f"--cluster-signing-cert-file={pki / 'ca.crt'}",
        f"--cluster-signing-key-file={pki / 'ca.key'}",
    ]


def scheduler(binary: Path, kubeconfig: Path, pki: Path, port: dict[str, int]) -> list[str]:
    return [str(binary), *_control_plane_client(kubeconfig, pki), f"--secure-port={port['scheduler']}"]


def kwok(binary: Path, kubeconfig: Path, pki: Path, stages: Path, port: dict[str, int]) -> list[str]:
    # kwok serves healthz (plain HTTP; TLS on the same port via cmux) and the fake kubelet endpoint.
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        f"--config={stages}",
        f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION[0]}={KWOK_NODE_ANNOTATION[1]}",
        f"--cidr={POD_CIDR}",
        "--node-ip=127.0.0.1",
        "--node-lease-duration-seconds=40",
        f"--server-address=127.0.0.1:{port['kwok']}",
        f"--node-port={port['kwok']}",
        f"--tls-cert-file={pki / 'serving.crt'}",
        f"--tls-private-key-file={pki / 'serving.key'}",
    ]


def rollouts_controller(binary: Path, kubeconfig: Path, port: dict[str, int]) -> list[str]:
    return [
        str(binary),
        f"--kubeconfig={kubeconfig}",
        "--leader-elect=false",
        f"--healthzPort={port['ro-healthz']}",
        f"--metricsport={port['ro-metrics']}",
        "--loglevel=info",
    ]
