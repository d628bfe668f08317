"""typer's CliRunner with stdout and stderr kept apart, on every Click the project allows."""

from __future__ import annotations

from typer.testing import CliRunner


def cli_runner() -> CliRunner:
    """Return a runner whose ``result.stdout`` holds stdout only.

    Click 8.2 keeps the streams apart and dropped the ``mix_stderr`` flag; Click 8.1 (which
    typer 0.12 accepts) mixes stderr into stdout unless told not to.
    """
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()
