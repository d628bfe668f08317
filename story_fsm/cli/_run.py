"""``story-fsm run`` and ``story-fsm resume``: drive a workflow with a live view, then summarize."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Annotated

import typer

from story_fsm.cli._app import app
from story_fsm.cli._editors import DEFAULT_MODEL, MODEL_ENV, Editor, editor_stages
from story_fsm.cli._errors import Interrupted
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption, QuietOption
from story_fsm.cli._output import print_json, stderr_console, stdout_console
from story_fsm.cli._progress import ProgressView
from story_fsm.cli._render import result_summary
from story_fsm.cli._store import open_store
from story_fsm.cli._story import read_story
from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator
from story_fsm.errors import StageFailedError, StoryFSMError, WorkflowNotFoundError
from story_fsm.events import ProgressCallback
from story_fsm.models import WorkflowResult
from story_fsm.store.sql import WorkflowStateManager

__all__ = ["resume", "run"]

_DEFAULTS = WorkflowConfig()

#: Starts or resumes the workflow, given the progress callback to report to (or None).
_Call = Callable[[ProgressCallback | None], WorkflowResult]


def _show(result: WorkflowResult, *, as_json: bool) -> None:
    if as_json:
        print_json(result.to_dict())
    else:
        stdout_console().print(result_summary(result))


def _drive(
    story_id: str,
    call: _Call,
    store: WorkflowStateManager,
    *,
    threshold: float,
    quiet: bool,
    as_json: bool,
) -> WorkflowResult:
    """Run *call* under the progress view; a FAILED result is shown before the error."""
    view = ProgressView(stderr_console(), threshold=threshold)
    context: AbstractContextManager[object] = nullcontext() if quiet else view
    try:
        with context:
            return call(None if quiet else view)
    except KeyboardInterrupt:
        raise Interrupted(story_id, stored=_stored(store, story_id)) from None
    except StageFailedError as exc:
        if exc.result is not None:
            _show(exc.result, as_json=as_json)
        raise


def _stored(store: WorkflowStateManager, story_id: str) -> bool:
    """Whether the story has a workflow, for the interrupt's hint (True when unknown)."""
    try:
        return store.load_row(story_id) is not None
    except StoryFSMError:
        return True  # the database cannot say: point at resume, which will tell


def _new_config(
    max_iterations: int, threshold: float, editor: Editor, model: str
) -> WorkflowConfig:
    # The model is stored with the workflow, so a resume asks the same model again.
    named = model if editor is Editor.OPENAI else None
    # A refused value raises InputValidationError from the config itself (exit 2).
    return WorkflowConfig(
        max_iterations=max_iterations,
        quality_threshold=threshold,
        review_model=named,
        polish_model=named,
    )


@app.command()
def run(
    story_file: Annotated[
        Path,
        typer.Argument(
            help="UTF-8 text: the title on the first non-empty line, the script below it.",
            show_default=False,
        ),
    ],
    story_id: Annotated[
        str | None, typer.Option(help="The story's id. Default: the file's name without suffix.")
    ] = None,
    title: Annotated[
        str | None,
        typer.Option(help="The title; then the whole file is the script (no title line)."),
    ] = None,
    max_iterations: Annotated[
        int, typer.Option(min=1, help="Review → polish rounds at most.")
    ] = _DEFAULTS.max_iterations,
    threshold: Annotated[
        float, typer.Option(min=0, max=100, help="A review scoring this (0-100) publishes.")
    ] = _DEFAULTS.quality_threshold,
    editor: Annotated[
        Editor, typer.Option(case_sensitive=False, help="Who reviews and polishes.")
    ] = Editor.OFFLINE,
    model: Annotated[
        str, typer.Option(envvar=MODEL_ENV, show_envvar=True, help="Chat model (openai editor).")
    ] = DEFAULT_MODEL,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Run a story file through the review → polish loop, showing each review's score.

    The offline editor needs no network; '--editor openai' reads OPENAI_API_KEY/OPENAI_BASE_URL.
    """
    story = read_story(story_file, title=title, story_id=story_id)
    config = _new_config(max_iterations, threshold, editor, model)
    with (
        editor_stages(editor, threshold=threshold, model=model) as stages,
        open_store(db, must_exist=False, migrate=True, in_memory_ok=True) as store,
    ):
        orchestrator = StoryWorkflowOrchestrator(stages.reviewer, stages.polisher, store, config)

        def call(callback: ProgressCallback | None) -> WorkflowResult:
            return orchestrator.run_story_workflow(
                story.story_id, story.title, story.script, {}, progress_callback=callback
            )

        result = _drive(
            story.story_id, call, store, threshold=threshold, quiet=quiet, as_json=as_json
        )
    _show(result, as_json=as_json)


def _resume_setup(
    stored: WorkflowConfig, editor: Editor | None, model: str | None
) -> tuple[Editor, str, WorkflowConfig | None]:
    """Return the editor, the model and the config override (None: the stored config)."""
    chosen = editor or (Editor.OPENAI if stored.review_model else Editor.OFFLINE)
    use_model = model or stored.review_model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
    override = None
    if model is not None and chosen is Editor.OPENAI:
        override = dataclasses.replace(stored, review_model=model, polish_model=model)
    return chosen, use_model, override


@app.command()
def resume(
    story_id: Annotated[str, typer.Argument(help="The story whose workflow to continue.")],
    editor: Annotated[
        Editor | None,
        typer.Option(
            case_sensitive=False,
            help="Default: openai when the workflow was started with a model, else offline.",
            show_default=False,
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Chat model (openai editor). Default: the one the workflow started with."
        ),
    ] = None,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Continue a workflow from its last committed step (after a crash, Ctrl-C or FAILED).

    A COMPLETE workflow is shown as stored; a FAILED one retries the stage that failed.
    """
    with open_store(db, must_exist=True, migrate=True) as store:
        row = store.load_row(story_id)
        if row is None:
            raise WorkflowNotFoundError(story_id)
        stored = WorkflowConfig.from_dict(row.config)
        chosen, use_model, override = _resume_setup(stored, editor, model)
        with editor_stages(chosen, threshold=stored.quality_threshold, model=use_model) as stages:
            orchestrator = StoryWorkflowOrchestrator(
                stages.reviewer, stages.polisher, store, override
            )

            def call(callback: ProgressCallback | None) -> WorkflowResult:
                return orchestrator.resume(story_id, progress_callback=callback)

            result = _drive(
                story_id,
                call,
                store,
                threshold=stored.quality_threshold,
                quiet=quiet,
                as_json=as_json,
            )
    _show(result, as_json=as_json)
