"""Subprocess entry for the crash and race tests: real processes, real stores.

Usage: ``python -m tests.proc_entry MODE DATABASE_URL CALLS_FILE STORY_ID [HANG_AT]``

Every stage call appends a line ``story stage iteration`` to CALLS_FILE (O_APPEND writes of
one short line are atomic), so the test can count side effects across processes. With HANG_AT
(e.g. ``review:2``) that call writes its line, then sleeps until the test kills the process.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from story_fsm import (
    ConcurrentAdvanceError,
    StoryWorkflowOrchestrator,
    WorkflowConfig,
    WorkflowStateManager,
)


class CountingStages:
    """Reviewer and polisher that log each call to a file before answering."""

    def __init__(self, calls_file: str, hang_at: str | None, delay: float) -> None:
        self.calls_file = calls_file
        self.hang_at = hang_at
        self.delay = delay

    def _log(self, story_id: str, stage: str, iteration: int) -> None:
        fd = os.open(self.calls_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{story_id} {stage} {iteration}\n".encode())
        finally:
            os.close(fd)
        if self.hang_at == f"{stage}:{iteration}":
            time.sleep(3600)  # the test SIGKILLs us here, mid-stage
        time.sleep(self.delay)

    def review_story(self, **kw: Any) -> dict[str, Any]:
        iteration = int(kw["story_version"][1:])
        self._log(kw["story_id"], "review", iteration)
        score = 60 + 12 * iteration
        return {"decision": "publish" if score >= 95 else "polish", "quality_score": score}

    def polish_story(self, **kw: Any) -> dict[str, Any]:
        self._log(kw["story_id"], "polish", kw["iteration_number"])
        return {
            "polished_title": kw["current_title"],
            "polished_script": kw["current_script"] + f" +p{kw['iteration_number']}",
            "change_log": ["x"],
        }


def main(argv: list[str]) -> int:
    mode, url, calls_file, story_id = argv[:4]
    hang_at = argv[4] if len(argv) > 4 and argv[4] != "-" else None
    delay = float(os.environ.get("STAGE_DELAY", "0"))
    stages = CountingStages(calls_file, hang_at, delay)
    config = WorkflowConfig(max_iterations=3, retry_backoff_seconds=0)
    with WorkflowStateManager(url) as store:
        orchestrator = StoryWorkflowOrchestrator(stages, stages, store, config)
        try:
            if mode == "run":
                result = orchestrator.run_story_workflow(story_id, "T", "S", {"k": "v"})
            else:
                result = orchestrator.resume(story_id)
        except ConcurrentAdvanceError as exc:
            print(f"LOST {exc}")
            return 3
    print(f"DONE {result.state.value} {result.decision}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
