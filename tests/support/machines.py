"""Hypothesis settings for state machines that run against the local S3."""

from __future__ import annotations

from hypothesis import HealthCheck, settings


def machine_settings(examples: int, steps: int) -> settings:
    """Settings for a state machine against moto: the same examples every run (CI
    explores what a developer explored), no deadline (S3 calls vary in time)."""
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
