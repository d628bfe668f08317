"""The live view of a running workflow, fed by the engine's progress events.

Each finished step (a review's score, a polish, a retry) becomes a permanent line on stderr, so
the scores rise line by line; on a terminal a spinner below them shows the stage in flight,
its iteration and attempt. On a pipe or CI log only the lines are written: no cursor movement,
no colour. stdout is never touched, so ``--json`` stays clean.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.spinner import Spinner
from rich.text import Text

from story_fsm.cli._output import shown
from story_fsm.events import Event

__all__ = ["ProgressView", "score_bar"]

_EIGHTHS = " ▏▎▍▌▋▊▉"
_BAR_WIDTH = 20


def score_bar(score: float, width: int = _BAR_WIDTH) -> str:
    """Return *score* (0-100) as a bar of block characters, *width* cells for 100."""
    cells = max(0.0, min(float(score), 100.0)) / 100 * width
    full = int(cells)
    eighth = int((cells - full) * 8)
    partial = _EIGHTHS[eighth] if full < width and eighth else ""
    return ("█" * full + partial).ljust(width)


class ProgressView:
    """A ``progress_callback`` that draws the workflow on a (stderr) console.

    Use it as a context manager around the run, and pass it as the callback::

        with ProgressView(stderr_console()) as view:
            orchestrator.run_story_workflow(..., progress_callback=view)

    Args:
        console: Where to draw.
        threshold: The publish threshold, for colouring scores (a new run's
            ``workflow_started`` event carries its own).
    """

    def __init__(self, console: Console, *, threshold: float | None = None) -> None:
        self.console = console
        self.threshold = threshold
        self.iteration = 1
        self.stage = ""
        self.attempt = 1
        self._spinner = Spinner("dots", Text("starting", style="dim"), style="cyan")
        self._live: Live | None = None
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            Event.WORKFLOW_STARTED: self._started,
            Event.WORKFLOW_RESUMED: self._resumed,
            Event.ITERATION_STARTED: self._iteration_started,
            Event.STAGE_STARTED: self._stage_started,
            Event.STAGE_RETRY: self._retry,
            Event.REVIEW_COMPLETE: self._reviewed,
            Event.POLISH_COMPLETE: self._polished,
            Event.WORKFLOW_COMPLETE: self._complete,
        }

    def __enter__(self) -> ProgressView:
        if self.console.is_terminal:
            # stdout stays untouched (redirect_stdout=False): it may be carrying --json.
            self._live = Live(
                self._spinner,
                console=self.console,
                transient=True,
                redirect_stdout=False,
                refresh_per_second=12,
            )
            self._live.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        """Handle one progress event (unknown events are ignored)."""
        handler = self._handlers.get(event)
        if handler is not None:
            handler(data)

    # -- events -------------------------------------------------------------------------------

    def _started(self, data: dict[str, Any]) -> None:
        config = data.get("config", {})
        self.threshold = config.get("quality_threshold", self.threshold)
        self._line(
            ("▶ ", "bold cyan"),
            (str(data["story_id"]), "bold"),
            (f": {shown(str(data.get('title', '')))}", ""),
            (f"  (up to {config.get('max_iterations', '?')} iterations, ", "dim"),
            (f"publish at {self.threshold:g})", "dim"),
        )

    def _resumed(self, data: dict[str, Any]) -> None:
        self._line(
            ("▶ ", "bold cyan"),
            (str(data["story_id"]), "bold"),
            (f": resuming from {data.get('state')}, iteration {data.get('iteration')}", ""),
            (f"  (step {data.get('seq')})", "dim"),
        )

    def _iteration_started(self, data: dict[str, Any]) -> None:
        self.iteration = int(data["iteration"])

    def _stage_started(self, data: dict[str, Any]) -> None:
        self.stage, self.attempt = str(data["stage"]), 1
        self.iteration = int(data.get("iteration", self.iteration))
        self._status()

    def _retry(self, data: dict[str, Any]) -> None:
        failed = int(data.get("attempt", self.attempt))
        self.attempt = failed + 1
        wait = float(data.get("wait_seconds") or 0.0)
        self._line(
            (f"  v{self.iteration} {data.get('stage', self.stage):<8}", ""),
            (f"attempt {failed} failed: ", "yellow"),
            (shown(str(data.get("error", ""))), ""),
            (f"; retrying in {wait:g}s", "dim"),
        )
        self._status()

    def _reviewed(self, data: dict[str, Any]) -> None:
        score = float(data["quality_score"])
        good = self.threshold is not None and score >= self.threshold
        style = "green" if good else "yellow"
        self._line(
            (f"  v{data['iteration']} review  ", ""),
            (f"{score:5.1f} ", f"bold {style}"),
            (score_bar(score), style),
            (f" {data.get('decision', '')}", "bold" if data.get("decision") == "publish" else ""),
            self._attempt_note(),
        )

    def _polished(self, data: dict[str, Any]) -> None:
        changes = int(data.get("changes_count", 0))
        self._line(
            (f"  v{data['iteration']} polish  ", ""),
            (f"{changes:>5} change{'s' if changes != 1 else ''}", "dim"),
            self._attempt_note(),
        )

    def _complete(self, data: dict[str, Any]) -> None:
        score = data.get("final_quality_score")
        shown = f"{score:.1f}" if isinstance(score, int | float) else "no score"
        n = data.get("iterations", 0)
        published = data.get("decision") == "publish"
        self._line(
            ("✔ " if published else "■ ", "bold green" if published else "bold yellow"),
            (str(data.get("decision")), "bold"),
            (f" at {shown} after {n} iteration{'s' if n != 1 else ''}", ""),
        )

    # -- drawing ------------------------------------------------------------------------------

    def _line(self, *parts: tuple[str, str]) -> None:
        self.console.print(Text.assemble(*parts), soft_wrap=True)

    def _attempt_note(self) -> tuple[str, str]:
        return (f" (attempt {self.attempt})", "dim") if self.attempt > 1 else ("", "")

    def _status(self) -> None:
        self._spinner.update(
            text=Text.assemble(
                (f"v{self.iteration} ", "bold"),
                (f"{self.stage}ing", ""),
                (f"  attempt {self.attempt}", "dim"),
            )
        )
