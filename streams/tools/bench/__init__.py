"""``vitrine bench``: pipeline, consume and codecs (inference: ``inference.serving.bench``)."""
