"""``python -m streams.console``: the console without loading the ``vitrine`` group (tests)."""

from streams.console.command import run_console
from streams.settings import get_settings

run_console(get_settings())
