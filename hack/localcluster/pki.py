"""The cluster's PKI (made with openssl), the admin kubeconfig, and the TLS context the bootstrap client uses."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import yaml

from hack.localcluster.config import ADMIN_CN, ClusterError

DAYS = "365"


def _request(name: str, subject: str) -> list[str]:
    """openssl arguments: a new RSA key ``name``.key and its signing request ``name``.csr."""
    return ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject]


def _sign(name: str, extensions: str) -> list[str]:
    """openssl arguments: ``name``.csr signed by the CA into ``name``.crt, with the extensions file's."""
    return [
        *("x509", "-req", "-sha256", "-days", DAYS, "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-extfile", extensions, "-out", f"{name}.crt"),
    ]


def make_pki(pki: Path, log: Path) -> None:
    """A CA, one serving cert (SAN 127.0.0.1) for every component, an admin client cert in system:masters
    and the service-account key pair. The explicit CA/SKI/AKI extensions satisfy strict TLS clients."""
    pki.mkdir(parents=True)
    (pki / "srv.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
        "DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    (pki / "cli.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\nauthorityKeyIdentifier=keyid,issuer\n"
    )
    ca = [
        *("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", DAYS, "-keyout", "ca.key"),
        *("-out", "ca.crt", "-subj", "/CN=robustness-gate-local-ca"),
        *("-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"),
        *("-addext", "subjectKeyIdentifier=hash"),
    ]
    steps = [
        ca,
        _request("serving", "/CN=kube-apiserver"),
        _sign("serving", "srv.ext"),
        _request("admin", f"/O=system:masters/CN={ADMIN_CN}"),
        _sign("admin", "cli.ext"),
        ["genrsa", "-out", "sa.key", "2048"],
        ["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"],
    ]
    with open(log, "ab") as fh:
        for step in steps:
            rc = subprocess.run(
                ["openssl", *step],
                cwd=pki,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                check=False,
            ).returncode
            if rc != 0:
                raise ClusterError("pki", f"openssl {' '.join(step[:2])} failed (exit {rc})", log)


def write_kubeconfig(path: Path, server: str, pki: Path) -> None:
    """Admin kubeconfig (client cert in system:masters), absolute paths to the PKI files."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {"server": server, "certificate-authority": str(pki / "ca.crt")}}],
        "users": [
            {
                "name": "admin",
                "user": {"client-certificate": str(pki / "admin.crt"), "client-key": str(pki / "admin.key")},
            }
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin", "namespace": "default"}}],
        "current-context": "local",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def ssl_context(pki: Path) -> ssl.SSLContext:
    """Trusts the cluster's CA and presents the admin client certificate."""
    ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
    return ctx
