"""``story-fsm submit``, ``worker`` and ``retry``: many workers sharing one database."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from story_fsm.cli._app import app
from story_fsm.cli._editors import DEFAULT_MODEL, MODEL_ENV, Editor, editor_stages
from story_fsm.cli._options import DEFAULT_DATABASE_URL, DbOption, JsonOption
from story_fsm.cli._output import print_json, stderr_console, stdout_console
from story_fsm.cli._render import status_table
from story_fsm.cli._store import open_store
from story_fsm.cli._story import read_story
from story_fsm.config import WorkflowConfig
from story_fsm.engine import StoryWorkflowOrchestrator
from story_fsm.errors import InputValidationError
from story_fsm.models import WorkflowSummary
from story_fsm.states import Stage
from story_fsm.store.sql import WorkflowStateManager
from story_fsm.validation import validate_name, validate_seconds
from story_fsm.worker import MAX_CONCURRENCY, Worker

__all__ = ["parse_rate_limits", "retry", "submit", "worker"]

_DEFAULTS = WorkflowConfig()


def _show_summary(summary: WorkflowSummary, *, as_json: bool) -> None:
    if as_json:
        print_json(summary.to_dict())
    else:
        stdout_console().print(status_table(summary))


class _StoredThresholdReviewer:
    """The offline reviewer at each story's own quality threshold, as ``run`` builds it.

    A worker serves stories submitted with different ``--threshold`` values; one reviewer
    built with the default would decide "publish" below a story's own threshold. The
    threshold is read from the story's stored config (one SELECT per review).
    """

    def __init__(self, store: WorkflowStateManager) -> None:
        self._store = store
        self._reviewers: dict[float, Any] = {}
        self._lock = threading.Lock()

    def review_story(self, **kwargs: Any) -> Any:
        """Review as ``OfflineReviewer(publish_threshold=<the story's threshold>)`` does."""
        from story_fsm.editors.offline import OfflineReviewer

        row = self._store.load_row(kwargs["story_id"])
        config = row.config if row is not None else {}
        threshold = WorkflowConfig.from_dict(config).quality_threshold
        with self._lock:
            reviewer = self._reviewers.get(threshold)
            if reviewer is None:
                reviewer = self._reviewers[threshold] = OfflineReviewer(publish_threshold=threshold)
        return reviewer.review_story(**kwargs)


def parse_rate_limits(values: list[str]) -> dict[Stage | str, int]:
    """Parse ``review=60`` style options into per-stage calls per minute.

    Raises:
        InputValidationError: A value is not ``STAGE=N`` with a known stage and N ≥ 1.
    """
    limits: dict[Stage | str, int] = {}
    for value in values:
        stage, sep, number = value.partition("=")
        try:
            key, limit = Stage(stage.strip()), int(number)
        except ValueError:
            key, limit = None, 0
        if not sep or key is None or limit < 1:
            raise InputValidationError(
                "--rate-limit takes STAGE=CALLS_PER_MINUTE (STAGE: review or polish), "
                f"got {value!r}"
            )
        limits[key] = limit
    return limits


@app.command()
def submit(
    story_file: Annotated[Path, typer.Argument(help="UTF-8 text: title line, then the script.")],
    story_id: Annotated[
        str | None, typer.Option(help="Default: the file's name without suffix.")
    ] = None,
    title: Annotated[
        str | None, typer.Option(help="The title; then the whole file is the script.")
    ] = None,
    max_iterations: Annotated[int, typer.Option(min=1)] = _DEFAULTS.max_iterations,
    threshold: Annotated[float, typer.Option(min=0, max=100)] = _DEFAULTS.quality_threshold,
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
) -> None:
    """Record a story's workflow without running any stage; a worker will run it."""
    story = read_story(story_file, title=title, story_id=story_id)
    config = WorkflowConfig(max_iterations=max_iterations, quality_threshold=threshold)
    with open_store(db, must_exist=False, migrate=True) as store:
        orchestrator = StoryWorkflowOrchestrator(_NoStage(), _NoStage(), store, config)
        summary = orchestrator.submit(story.story_id, story.title, story.script, {})
    _show_summary(summary, as_json=as_json)


@app.command()
def retry(
    story_id: Annotated[str, typer.Argument(help="A FAILED workflow to put back in line.")],
    db: DbOption = DEFAULT_DATABASE_URL,
    as_json: JsonOption = False,
) -> None:
    """Re-queue a FAILED workflow: a worker re-runs the stage that failed."""
    with open_store(db, must_exist=True, migrate=False) as store:
        summary = StoryWorkflowOrchestrator(_NoStage(), _NoStage(), store).requeue(story_id)
    _show_summary(summary, as_json=as_json)


@app.command()
def worker(
    db: DbOption = DEFAULT_DATABASE_URL,
    concurrency: Annotated[
        int, typer.Option(min=1, max=MAX_CONCURRENCY, help="Workflows advanced at once.")
    ] = 4,
    worker_id: Annotated[
        str | None, typer.Option(help="Lease owner name. Default: host:pid.")
    ] = None,
    editor: Annotated[Editor, typer.Option(case_sensitive=False)] = Editor.OFFLINE,
    model: Annotated[str, typer.Option(envvar=MODEL_ENV, show_envvar=True)] = DEFAULT_MODEL,
    lease_seconds: Annotated[
        float, typer.Option(min=0.5, help="Claim length without a heartbeat (at most a week).")
    ] = 30.0,
    rate_limit: Annotated[
        list[str] | None,
        typer.Option(help="Calls per minute per stage, e.g. review=60 (repeatable)."),
    ] = None,
    stop_when_idle: Annotated[
        bool, typer.Option(help="Exit once no unfinished workflow is left.")
    ] = False,
) -> None:
    """Claim runnable workflows and advance them until SIGTERM (which drains, then exits 0)."""
    limits = parse_rate_limits(rate_limit or [])
    validate_seconds("--lease-seconds", lease_seconds)
    if worker_id:  # checked here too: a refused id must not leave a new database behind
        validate_name("--worker-id", worker_id)
    # The editor first: a missing API key must not leave a new database behind.
    with (
        editor_stages(editor, threshold=_DEFAULTS.quality_threshold, model=model) as stages,
        open_store(db, must_exist=False, migrate=True) as store,
    ):
        reviewer = _StoredThresholdReviewer(store) if editor is Editor.OFFLINE else stages.reviewer
        runner = Worker(
            reviewer,
            stages.polisher,
            store,
            concurrency=concurrency,
            lease_seconds=lease_seconds,
            worker_id=worker_id,
            rate_limits=limits or None,
        )
        runner.install_signal_handlers()
        stderr_console().print(
            f"worker {runner.worker_id}: {concurrency} at a time; SIGTERM drains"
        )
        stats = runner.run(stop_when_idle=stop_when_idle)
    stderr_console().print(
        f"worker {runner.worker_id}: claimed {stats.claimed}, completed {stats.completed}, "
        f"failed {stats.failed}, taken over {stats.lost}, released {stats.released}, "
        f"errors {stats.errors}, database busy {stats.busy}"
    )


class _NoStage:
    """Stands in where a command records or re-queues without ever calling a stage."""

    def review_story(self, **kwargs: object) -> object:
        raise AssertionError("submit/retry never call a stage")

    def polish_story(self, **kwargs: object) -> object:
        raise AssertionError("submit/retry never call a stage")
