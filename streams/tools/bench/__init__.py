"""``vitrine bench``: inference, pipeline, consume, codecs, soak, cluster, integrity, all."""
