"""The Faust app, its agents, the Redis cache and the ``vitrine`` command line."""
