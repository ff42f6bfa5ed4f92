"""The ``vitrine`` command line and local tooling: stack, demo, report, predict, train, bench.

These run on a developer's desk or in CI, never inside the worker; they may
import :mod:`streams.worker`, never the reverse.
"""
