"""The container health check: exit 0 when this container's worker is ready.

``python -m streams.worker.healthcheck`` is the HEALTHCHECK of the worker
images and the compose file: one command without quoted arguments (podman-compose
1.0.3 mangles a quoted ``python -c`` check), importing only the settings and the
standard library, since it runs every few seconds beside the worker (the
worker's web module pulls in numpy and prometheus_client: seconds of CPU per
check on a busy machine). :func:`worker_ready` is what tests and tools poll too.
"""

from __future__ import annotations

import json
import sys
import urllib.request

from streams.settings import get_settings

__all__ = ["main", "worker_ready"]


def worker_ready(host: str, port: int) -> bool:
    """True when a worker answers ``/ready`` on ``host:port`` with its engine loaded."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/ready", timeout=2) as resp:
            return bool(json.load(resp).get("ready"))
    except (OSError, ValueError):
        return False


def main() -> int:
    """0 when the worker on this host's web port (VITRINE_WEB_PORT) is ready, else 1."""
    return 0 if worker_ready("127.0.0.1", get_settings().web.port) else 1


if __name__ == "__main__":
    sys.exit(main())
