"""The persisted enum values and WorkflowConfig's validation."""

from __future__ import annotations

import math

import pytest

from story_fsm import (
    InputValidationError,
    ReviewDecision,
    Stage,
    Trigger,
    WorkflowConfig,
    WorkflowState,
)


class TestPersistedValues:
    def test_state_values_are_pinned(self) -> None:
        """Renaming a state value would orphan stored rows, so the values are fixed."""
        assert {s.name: s.value for s in WorkflowState} == {
            "INITIAL": "initial",
            "REVIEWING": "reviewing",
            "POLISHING": "polishing",
            "COMPLETE": "complete",
            "FAILED": "failed",
        }

    def test_decision_stage_and_trigger_values_are_pinned(self) -> None:
        """Decisions, stages and triggers are stored too; their values are fixed."""
        assert [d.value for d in ReviewDecision] == ["publish", "polish"]
        assert [s.value for s in Stage] == ["review", "polish"]
        assert [t.value for t in Trigger] == [
            "submit",
            "start",
            "reviewed",
            "polished",
            "attempt_failed",
            "fail",
            "retry",
            "resume",
        ]

    def test_terminal_states(self) -> None:
        """Only COMPLETE and FAILED are terminal."""
        assert [s for s in WorkflowState if s.is_terminal] == [
            WorkflowState.COMPLETE,
            WorkflowState.FAILED,
        ]


class TestWorkflowConfig:
    def test_defaults_match_the_design(self) -> None:
        """The defaults are the design card's."""
        config = WorkflowConfig()
        assert config.max_iterations == 3
        assert config.quality_threshold == 95
        assert config.max_stage_retries == 3
        assert config.stage_timeout_seconds == 300
        assert config.retry_backoff_seconds == 2.0
        assert config.review_model is None and config.polish_model is None

    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("max_iterations", 0),
            ("max_iterations", -1),
            ("max_iterations", 1.5),
            ("max_iterations", True),
            ("quality_threshold", -0.1),
            ("quality_threshold", 100.5),
            ("quality_threshold", math.nan),
            ("quality_threshold", "95"),
            ("max_stage_retries", 0),
            ("stage_timeout_seconds", 0),
            ("stage_timeout_seconds", -5),
            ("stage_timeout_seconds", math.inf),
            ("retry_backoff_seconds", -1),
            ("review_model", ""),
            ("polish_model", 42),
            # Past the caps; a repr of 10**5000 itself raises, so the message must not need it.
            ("max_iterations", 1_000_001),
            pytest.param("max_iterations", 10**5000, id="iterations-huge"),
            pytest.param("max_stage_retries", 10**5000, id="retries-huge"),
            pytest.param("quality_threshold", 10**5000, id="threshold-huge"),
            ("stage_timeout_seconds", 604_801),
            pytest.param("stage_timeout_seconds", 10**400, id="timeout-huge"),
            pytest.param("retry_backoff_seconds", 10**400, id="backoff-huge"),
            ("stage_timeout_seconds", "5"),
        ],
    )
    def test_bad_value_raises_value_error_naming_the_field(self, field: str, value: object) -> None:
        """Each out-of-range value is refused with story_fsm's error (a ValueError) naming it."""
        with pytest.raises(InputValidationError, match=field):
            WorkflowConfig(**{field: value})  # type: ignore[arg-type]

    def test_the_caps_themselves_are_accepted(self) -> None:
        """1,000,000 rounds or retries and a week of timeout or backoff are valid."""
        config = WorkflowConfig(
            max_iterations=1_000_000, max_stage_retries=1_000_000,
            stage_timeout_seconds=604_800, retry_backoff_seconds=604_800,
        )  # fmt: skip
        assert WorkflowConfig.from_dict(config.to_dict()) == config

    @pytest.mark.parametrize("threshold", [0, 100, 72.5])
    def test_threshold_bounds_are_inclusive(self, threshold: float) -> None:
        """0 and 100 are valid thresholds."""
        assert WorkflowConfig(quality_threshold=threshold).quality_threshold == threshold

    @pytest.mark.parametrize("stored", [None, [], "max_iterations=3", 3])
    def test_from_dict_of_no_mapping_is_an_input_error(self, stored: object) -> None:
        """A stored config that is not a mapping is refused with InputValidationError."""
        with pytest.raises(InputValidationError, match="mapping"):
            WorkflowConfig.from_dict(stored)  # type: ignore[arg-type]

    def test_round_trips_through_dict(self) -> None:
        """to_dict/from_dict round-trip, ignoring unknown keys from newer versions."""
        config = WorkflowConfig(max_iterations=5, review_model="gpt-x")
        assert WorkflowConfig.from_dict({**config.to_dict(), "future_knob": 1}) == config
