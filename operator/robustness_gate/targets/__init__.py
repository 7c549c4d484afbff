"""Targets: what is the canary right now, and how to promote it or roll it back.

Each target kind turns the objects it reads into an `Observation` and an operation into a list of
`Patch`es. Both steps are pure (plain dicts in, plain data out); kube.py reads and patches.
"""
