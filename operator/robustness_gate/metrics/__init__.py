"""Metric sources: query templates, the MetricSource protocol and the Prometheus implementation."""
