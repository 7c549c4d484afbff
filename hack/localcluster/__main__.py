"""``python -m hack.localcluster up|status|down``: a local cluster that outlives the command."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from hack.localcluster import DEFAULT_DIR, ClusterError, LocalCluster, find_leftovers
from hack.localcluster import __doc__ as package_doc
from hack.localcluster.processes import alive


def _print_timings(timings: dict[str, float]) -> None:
    for name, secs in timings.items():
        print(f"  {name:<26} {secs:6.2f} s")


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _up(cluster: LocalCluster, timeout: float) -> int:
    # Ctrl-C or a SIGTERM while starting: stop what was started (start() does that on any exception).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        cluster.start(timeout=timeout)
    except ClusterError as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("localcluster: interrupted; stopped what had been started", file=sys.stderr)
        return 130
    if cluster.adopted:
        print(f"cluster already running in {cluster.workdir} (server {cluster.server}); its start-up times:")
    else:
        print(f"cluster up in {cluster.workdir} (server {cluster.server})")
    print("ready after (each from its own start; total from the beginning):")
    _print_timings(cluster.timings)
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    return 0


def _down(cluster: LocalCluster) -> int:
    try:
        cluster.stop()
    except ClusterError as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1
    print(f"stopped in {cluster.timings['stop']:.2f} s; no process left with {cluster.workdir} on its command line")
    return 0


def _status(cluster: LocalCluster) -> int:
    state = cluster.load_state()
    if state is None:
        left = find_leftovers(cluster.workdir)
        print(f"no cluster in {cluster.workdir}" + (f" (but leftover processes: {left})" if left else ""))
        return 1
    rss = cluster.rss_mib()
    for p in cluster.processes:
        mem = f"{rss[p.name]:7.1f} MiB" if p.name in rss else ""
        print(f"  {p.name:<26} pid {p.pid:<8} {'running' if alive(p) else 'NOT RUNNING':<12} {mem}")
    ready = cluster.ready()
    print(f"server {state.get('server')}: {'ready' if ready else 'NOT READY'}; kubeconfig {cluster.kubeconfig}")
    return 0 if ready else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=package_doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"work directory (default: {DEFAULT_DIR})")
    parser.add_argument("--no-rollouts", action="store_true", help="without the Argo Rollouts controller and CRDs")
    parser.add_argument("--nodes", type=int, default=2, help="number of kwok fake nodes (default: 2)")
    parser.add_argument("--timeout", type=float, default=180, help="start-up timeout in seconds (default: 180)")
    args = parser.parse_args(argv)
    cluster = LocalCluster(workdir=args.dir, rollouts=not args.no_rollouts, nodes=args.nodes)
    if args.command == "up":
        return _up(cluster, args.timeout)
    if args.command == "down":
        return _down(cluster)
    return _status(cluster)


if __name__ == "__main__":
    sys.exit(main())
