"""The streaming side of vitrine: the worker, and the tools around it.

- :mod:`streams.settings`: the one settings object (every ``VITRINE_*`` variable).
- :mod:`streams.worker`: what runs in production, the Faust worker: app and
  agents, micro-batching, the Redis label cache, image fetching, labelling,
  order enrichment, sales windows, delivery, dead letters and metrics.
- :mod:`streams.tools`: the ``vitrine`` command line and what runs on a desk:
  the native local stack, the demo, the sales report, the benchmarks and worker
  processes. Tools may import the worker; the worker never imports the tools.
"""
