"""Serving defaults that light importers share without loading ONNX Runtime or OpenCV.

The worker's settings module takes its ``max_batch_size`` default from here, so
reading the settings (``vitrine stack status``) never imports the engine.
"""

from __future__ import annotations

__all__ = ["DEFAULT_MAX_BATCH_SIZE"]

#: Images per inference call unless told otherwise (``VITRINE_MAX_BATCH_SIZE``).
DEFAULT_MAX_BATCH_SIZE = 32
