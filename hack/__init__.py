"""The lab around the operator: a local cluster, a real Prometheus, fake services and load, and the demo.

Run its commands from the repository root as modules, e.g. ``python -m hack.localcluster up`` or
``python -m hack.fakeservice --prometheus``; tests, benchmarks and the demo import it as ``hack``.
Nothing here is part of the operator's package.
"""
