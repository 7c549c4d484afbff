"""Detection benchmark: time to roll back bad canaries and false rollbacks of healthy ones.

robustness-gate's judge and policy run side by side with Flagger-, Argo Rollouts- and Kayenta-style
rules on identical simulated traffic, next to the information-theoretic floors. ``python -m
bench.detection`` regenerates docs/benchmarks.md and docs/benchmarks-detection.png.
"""
