"""The workload every section shares: the review → polish loop with no-op stages.

A story runs review v1 → polish → review v2 → polish → review v3 (publish). The stages answer
at once (or after a fixed sleep standing in for an LLM call) with a score and a ~2 KB script,
so what is timed is the engine and the database, not the stages. The raw baselines persist the
same five stage results as one ~2 KB row each (a snapshot carrying the current script).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from functools import cache
from typing import Any

STAGE_CALLS_PER_STORY = 5  # review, polish, review, polish, review
PUBLISH_AT_VERSION = 3  # the third review publishes
SCRIPT_CHARS = 2000
TITLE = "The Keeper's Log"
AUDIENCE = {"age": "12-14", "platform": "podcast"}

_WORDS = [
    "the",
    "a",
    "of",
    "and",
    "to",
    "in",
    "her",
    "his",
    "their",
    "keeper",
    "lighthouse",
    "storm",
    "harbour",
    "night",
    "lamp",
    "sea",
    "wave",
    "ship",
    "village",
    "letter",
    "memory",
    "silence",
    "sister",
    "brother",
    "promise",
    "winter",
    "fog",
    "bell",
    "rope",
    "stair",
    "window",
    "light",
    "dark",
    "cold",
    "warm",
    "old",
    "young",
    "slowly",
    "quietly",
    "never",
    "always",
    "remembered",
    "watched",
    "carried",
    "found",
    "lost",
    "waited",
    "whispered",
    "climbed",
    "burned",
    "fell",
    "because",
    "although",
    "when",
    "while",
    "after",
    "before",
    "under",
    "over",
    "through",
    "beyond",
    "salt",
    "gull",
    "rock",
    "tide",
    "compass",
    "map",
    "journal",
    "ink",
    "candle",
    "door",
    "key",
    "voice",
    "dream",
    "morning",
    "evening",
    "shadow",
    "engine",
    "gear",
    "spark",
    "hands",
    "eyes",
    "heart",
    "name",
]


@cache
def make_script(version: int, chars: int = SCRIPT_CHARS) -> str:
    """Return a deterministic ~2 KB script for *version* (word soup: compresses like prose)."""
    rng = random.Random(version)
    words: list[str] = []
    length = 0
    while length < chars:
        word = rng.choice(_WORDS) + ("." if rng.random() < 0.08 else "")
        words.append(word)
        length += len(word) + 1
    return " ".join(words)[:chars] + f" [v{version}]"


class NoOpReviewer:
    """Asks for a polish until the story reaches version ``publish_at``, then publishes.

    Scores stay below the default quality threshold (95), so the decision alone ends the loop.
    """

    def __init__(self, sleep_seconds: float = 0.0, publish_at: int = PUBLISH_AT_VERSION) -> None:
        self.sleep_seconds = sleep_seconds
        self.publish_at = publish_at

    def review_story(self, *, story_version: str, **_: Any) -> dict[str, Any]:
        """Answer with a decision and a score rising with the version."""
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        version = int(story_version.lstrip("v"))
        publish = version >= self.publish_at
        return {"decision": "publish" if publish else "polish", "quality_score": 70 + version}


class NoOpPolisher:
    """Returns a new ~2 KB script per iteration (or the unchanged one, with ``keep_script``)."""

    def __init__(self, sleep_seconds: float = 0.0, *, keep_script: bool = False) -> None:
        self.sleep_seconds = sleep_seconds
        self.keep_script = keep_script

    def polish_story(
        self, *, current_title: str, current_script: str, iteration_number: int, **_: Any
    ) -> dict[str, Any]:
        """Answer with the title, a script and a one-entry change log."""
        if self.sleep_seconds:
            time.sleep(self.sleep_seconds)
        script = current_script if self.keep_script else make_script(iteration_number)
        return {
            "polished_title": current_title,
            "polished_script": script,
            "change_log": ["tightened act 2"],
        }


def loop_config() -> Any:
    """Return the WorkflowConfig of the loop: three rounds at most, no retry backoff."""
    from story_fsm import WorkflowConfig

    return WorkflowConfig(max_iterations=PUBLISH_AT_VERSION, retry_backoff_seconds=0)


def run_story(orchestrator: Any, story_id: str) -> Any:
    """Run one story through *orchestrator* and check it published after three reviews."""
    result = orchestrator.run_story_workflow(
        story_id=story_id, title=TITLE, script=make_script(0), audience_context=AUDIENCE
    )
    if result.decision != "publish" or result.total_reviews != PUBLISH_AT_VERSION:
        raise AssertionError(f"{story_id}: {result.decision} after {result.total_reviews}")
    return result


def raw_steps(story_id: str) -> Iterator[tuple[int, str, str]]:
    """Yield ``(seq, state, payload_json)`` for the loop's five stage results (raw baselines).

    Each payload is the snapshot a hand-written durable loop would store: the stage's small
    answer plus the current script (~2 KB).
    """
    reviewer, polisher = NoOpReviewer(), NoOpPolisher()
    script, version = make_script(0), 1
    for seq in range(STAGE_CALLS_PER_STORY):
        if seq % 2 == 0:
            out = reviewer.review_story(story_version=f"v{version}")
            state = "complete" if out["decision"] == "publish" else "polishing"
        else:
            out = polisher.polish_story(
                current_title=TITLE, current_script=script, iteration_number=version
            )
            script = out.pop("polished_script")
            version += 1
            state = "reviewing"
        payload = {"story_id": story_id, "seq": seq, "state": state, "out": out, "script": script}
        yield seq, state, json.dumps(payload)
