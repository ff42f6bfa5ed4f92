"""``vitrine --help`` describes vitrine and lists its commands by what they are for."""

from __future__ import annotations

import click
from click.testing import CliRunner

from streams.tools.cli import SECTIONS, build_cli

FAUST_OWN = ("livecheck", "clean-versions", "models", "model", "reset", "tables", "send", "agents")


def _help() -> str:
    result = CliRunner().invoke(build_cli(), ["--help"], prog_name="vitrine")
    assert result.exit_code == 0, result.output
    return result.output


def test_help_says_what_vitrine_is_not_what_faust_is() -> None:
    text = _help()
    assert text.startswith("Usage: vitrine [OPTIONS] COMMAND [ARGS]...")
    assert "vitrine labels product photos from Kafka" in text
    assert "Welcome" not in text
    assert "faust-streaming.github.io" not in text
    assert "--app" not in text


def test_help_lists_every_command_once_under_its_section() -> None:
    text = _help()
    group = build_cli()
    visible = {name for name, cmd in group.commands.items() if not cmd.hidden}
    assert visible == {name for _, names in SECTIONS for name in names}
    assert "Other:" not in text
    for title, names in SECTIONS:
        assert f"\n{title}:\n" in text
        for name in names:
            assert f"\n  {name} " in text


def test_faust_generic_commands_are_hidden_but_still_run() -> None:
    text = _help()
    group = build_cli()
    for name in FAUST_OWN:
        assert f"\n  {name} " not in text
        assert isinstance(group.commands[name], click.Command)
    assert "\n  worker " in text
    result = CliRunner().invoke(group, ["tables", "--help"], prog_name="vitrine")
    assert result.exit_code == 0
