"""The records' dict forms: copies of their own, and read back across versions."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest

from story_fsm import (
    InputValidationError,
    StoryFSMError,
    StoryWorkflowOrchestrator,
    WorkflowConfig,
    WorkflowIteration,
    WorkflowResult,
    WorkflowStateManager,
)
from tests.stages import ScriptedPolisher, ScriptedReviewer, review


def polished_result(store: WorkflowStateManager, config: WorkflowConfig) -> WorkflowResult:
    """A stored result with a polish: nested answers in its iterations, a config in metadata."""
    reviewer = ScriptedReviewer(
        {**review(50), "notes": {"pacing": ["slow start"]}}, review(99, "publish")
    )
    orchestrator = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, config)
    return orchestrator.run_story_workflow("s-1", "Title", "Script.", {"age_range": "8-12"})


def scribble(value: Any) -> None:
    """Change every dict and list nested in *value*, in place."""
    if isinstance(value, dict):
        for item in value.values():
            scribble(item)
        value["scribbled"] = True
    elif isinstance(value, list):
        for item in value:
            scribble(item)
        value.append("scribbled")


class TestToDictIsACopy:
    def test_changing_a_result_s_dict_leaves_the_result_as_it_was(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Every dict and list in to_dict() is new: changing them changes no field of the result."""
        result = polished_result(store, fast_config)
        before = copy.deepcopy(result)
        scribble(result.to_dict())
        assert result == before == store.load_state("s-1")
        assert result.to_dict() == before.to_dict()

    def test_changing_a_record_s_or_an_iteration_s_dict_leaves_it_as_it_was(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A history record's payload and an iteration's answers are copied by to_dict() too."""
        result = polished_result(store, fast_config)
        records = store.history("s-1")
        kept = copy.deepcopy((records, result.iterations))
        for item in [*records, *result.iterations]:
            scribble(item.to_dict())
        assert (records, result.iterations) == kept

    def test_a_result_read_from_a_dict_shares_nothing_with_the_dict(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """from_dict() copies what it is given: changing that dict afterwards changes no result."""
        data = polished_result(store, fast_config).to_dict()
        rebuilt = WorkflowResult.from_dict(data)
        scribble(data)
        assert rebuilt == store.load_state("s-1")


@pytest.fixture
def stored(sqlite_url: str, fast_config: WorkflowConfig) -> Iterator[WorkflowResult]:
    """A polished result, as stored in a SQLite file (the dict's form is the backend's own)."""
    with WorkflowStateManager(sqlite_url) as store:
        polished_result(store, fast_config)
        yield store.load_state("s-1")


class TestFromDictAcrossVersions:
    def test_keys_of_a_newer_version_are_ignored(self, stored: WorkflowResult) -> None:
        """A result (and its iterations) written with keys this version lacks still loads."""
        result = stored
        data = json.loads(json.dumps(result.to_dict()))
        data["reviewer_version"] = "9.9"
        for iteration in data["iterations"]:
            iteration["tokens"] = {"in": 10, "out": 20}
        assert WorkflowResult.from_dict(data) == result

    def test_keys_with_defaults_may_be_missing(self, stored: WorkflowResult) -> None:
        """A result without the keys that have defaults loads with those defaults."""
        result = stored
        data = result.to_dict()
        for key in ("metadata", "quality_scores", "error", "total_cost"):
            del data[key]
        rebuilt = WorkflowResult.from_dict(data)
        assert (rebuilt.metadata, rebuilt.quality_scores, rebuilt.total_cost) == ({}, [], 0.0)
        assert rebuilt.final_script == result.final_script

    @pytest.mark.parametrize("key", ["story_id", "final_script", "state", "iterations"])
    def test_a_missing_required_key_is_refused(self, stored: WorkflowResult, key: str) -> None:
        """Ignoring unknown keys does not make a required one optional: the error names it."""
        data = stored.to_dict()
        del data[key]
        with pytest.raises(InputValidationError, match=f"WorkflowResult data lacks '{key}'"):
            WorkflowResult.from_dict(data)

    @pytest.mark.parametrize(
        ("key", "value", "said"),
        [
            ("state", "publishing", "'publishing' is not a valid WorkflowState"),
            ("started_at", "yesterday", "Invalid isoformat string"),
            ("completed_at", 17, "must be str"),
            ("iterations", [42], "WorkflowIteration data must be a mapping, got int"),
            ("iterations", [{"quality_score": 1.0}], "WorkflowIteration data lacks"),
            ("iterations", 7, "'int' object is not iterable"),
        ],
    )
    def test_a_value_of_the_wrong_kind_is_refused(
        self, stored: WorkflowResult, key: str, value: Any, said: str
    ) -> None:
        """A state, a date or an iteration that is not one is bad input, said as such."""
        data = stored.to_dict()
        data[key] = value
        with pytest.raises(InputValidationError, match=said) as refused:
            WorkflowResult.from_dict(data)
        assert isinstance(refused.value, StoryFSMError)

    @pytest.mark.parametrize("data", [None, [], "story"])
    def test_data_that_is_no_mapping_is_refused(self, data: Any) -> None:
        """Something that is no mapping is refused with its type named."""
        with pytest.raises(InputValidationError, match="WorkflowResult data must be a mapping"):
            WorkflowResult.from_dict(data)

    def test_an_iteration_without_its_decision_is_refused(self) -> None:
        """An iteration's required keys stay required (its decision, here)."""
        with pytest.raises(InputValidationError, match="lacks 'decision'"):
            WorkflowIteration.from_dict(
                {"iteration_number": 1, "story_version": "v1", "quality_score": 50.0,
                 "review_data": {}, "newer_key": 1}
            )  # fmt: skip
