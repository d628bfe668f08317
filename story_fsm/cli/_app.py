"""The typer application, its global options, and the error boundary every command shares.

Commands live in their own modules and register themselves on :data:`app` (or
:data:`db_app`) with ``@app.command()`` when imported; ``_main.py`` imports them. Every
exception a command raises passes through :class:`_Group.invoke`, the one place where a
story_fsm error becomes an ``error: ...`` line and an exit code (see ``_errors.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from story_fsm.cli._errors import EXIT_CODES_HELP, Interrupted, report
from story_fsm.cli._logging import configure_logging, level_for
from story_fsm.cli._output import OutputError
from story_fsm.errors import StoryFSMError

__all__ = ["CliSettings", "app", "db_app", "settings"]


@dataclass(frozen=True, slots=True)
class CliSettings:
    """The global options, as the callback stores them on the root context.

    Attributes:
        debug: Show tracebacks for errors (and log at DEBUG).
        verbosity: How many ``-v`` were given.
    """

    debug: bool = False
    verbosity: int = 0


class _Group(TyperGroup):
    """The root command group: runs the command and maps story_fsm errors to exit codes."""

    def invoke(self, ctx: Any) -> Any:
        """Invoke the subcommand; report a story_fsm error or an interrupt, exit with its code."""
        try:
            return super().invoke(ctx)
        except (StoryFSMError, Interrupted, OutputError) as error:
            code = report(error, debug=settings(ctx).debug)
            raise typer.Exit(int(code)) from error
        except KeyboardInterrupt as error:
            # A command with a story in flight says more (run, resume: Interrupted above),
            # also when a second Ctrl-C cut the way out short (closing the store).
            code = report(_interrupted_by(error), debug=settings(ctx).debug)
            raise typer.Exit(int(code)) from error


def _interrupted_by(error: BaseException) -> Interrupted:
    """The Interrupted that *error* was raised while handling, if any, else a plain one."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, Interrupted):
            return seen
        seen = seen.__context__
    return Interrupted()


app = typer.Typer(
    name="story-fsm",
    cls=_Group,
    help=(
        "Run stories through the durable expert-review → polish loop, and inspect the "
        "workflows stored in the database. Every transition is a row: a workflow stopped by "
        "a crash or Ctrl-C continues with 'story-fsm resume STORY_ID'."
    ),
    epilog=EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

db_app = typer.Typer(
    help="Create, inspect and migrate the database schema (alembic, run from code).",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


def settings(ctx: Any) -> CliSettings:
    """Return the global options of the command line *ctx* belongs to."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, CliSettings) else CliSettings()


@app.callback()
def _global_options(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors and log at DEBUG.")
    ] = False,
    verbose: Annotated[
        int,
        typer.Option("--verbose", "-v", count=True, help="Log more to stderr: -v INFO, -vv DEBUG."),
    ] = 0,
) -> None:
    """Configure logging (stderr only) and keep the global options for the commands."""
    ctx.obj = CliSettings(debug=debug, verbosity=verbose)
    configure_logging(level_for(verbose, debug=debug))
