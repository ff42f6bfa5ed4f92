"""Command implementations that the ``vitrine`` command line wires in."""
