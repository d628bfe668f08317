"""The engine driving the OpenAI-compatible stages against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
import time
from typing import Any

import openai
import pytest

from story_fsm import (
    StageFailedError,
    StageTimeoutError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowStateManager,
)
from story_fsm.editors import OpenAIPolisher, OpenAIReviewer
from tests.fake_llm_server import FakeLLMServer

REVIEW_POLISH = {
    "decision": "polish",
    "quality_score": 70,
    "criteria": {"pace": 60},
    "feedback": "tighten",
}
REVIEW_PUBLISH = {
    "decision": "publish",
    "quality_score": 96,
    "criteria": {"pace": 95},
    "feedback": "ship",
}
POLISH = {"polished_title": "Better", "polished_script": "A tighter script.", "change_log": ["cut"]}


def orchestrator(
    store: WorkflowStateManager, server: FakeLLMServer, **config: float
) -> StoryWorkflowOrchestrator:
    reviewer = OpenAIReviewer(model="gpt-4o-mini", base_url=server.url, api_key="k", timeout=5)
    polisher = OpenAIPolisher(model="gpt-4o-mini", base_url=server.url, api_key="k", timeout=5)
    return StoryWorkflowOrchestrator(
        reviewer, polisher, store, WorkflowConfig(retry_backoff_seconds=0, **config)
    )


class TestEngineOverHttp:
    def test_429_then_success_is_retried_and_recorded(self, store: WorkflowStateManager) -> None:
        """A rate-limited review is one recorded failed attempt; the retry goes on to publish."""
        with FakeLLMServer() as server:
            server.enqueue_error(429, "slow down")
            server.enqueue_completion(REVIEW_POLISH, prompt_tokens=1000, completion_tokens=200)
            server.enqueue_completion(POLISH, prompt_tokens=1000, completion_tokens=500)
            server.enqueue_completion(REVIEW_PUBLISH, prompt_tokens=1000, completion_tokens=200)
            result = orchestrator(store, server).run_story_workflow("llm", "Title", "A script.", {})
            assert server.pending == 0
        assert result.decision == "publish" and result.final_title == "Better"
        assert result.total_cost > 0
        failed = [r for r in store.history("llm") if r.trigger is Trigger.ATTEMPT_FAILED]
        assert len(failed) == 1 and "RateLimitError" in (failed[0].error or "")

    @pytest.mark.parametrize("status", [400, 401, 404])
    def test_a_request_that_cannot_succeed_is_not_retried(
        self, store: WorkflowStateManager, status: int
    ) -> None:
        """A bad request, a wrong key, an unknown model: FAILED after one attempt, not three."""
        with FakeLLMServer() as server:
            server.enqueue_error(status, "no")
            with pytest.raises(StageFailedError) as caught:
                orchestrator(store, server).run_story_workflow("bad", "Title", "A script.", {})
            assert len(server.requests) == 1
        assert caught.value.attempts == 1
        assert [r.trigger for r in store.history("bad")][-1] is Trigger.FAIL

    def test_retry_after_is_waited_for(self, store: WorkflowStateManager) -> None:
        """A 429 asking for a 1 s pause is retried no sooner, though the backoff is 0."""
        with FakeLLMServer() as server:
            server.enqueue_error(429, "slow down", headers={"retry-after": "1"})
            server.enqueue_completion(REVIEW_PUBLISH)
            started = time.monotonic()
            result = orchestrator(store, server).run_story_workflow("ra", "Title", "A script.", {})
            elapsed = time.monotonic() - started
        assert result.decision == "publish"
        failed = next(r for r in store.history("ra") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert failed.payload["next_wait_seconds"] == 1.0
        assert elapsed >= 1.0

    def test_malformed_answer_and_slow_answer_count_as_failures(
        self, store: WorkflowStateManager
    ) -> None:
        """Malformed JSON, then an answer slower than the stage timeout: both retried, then FAILED."""
        with FakeLLMServer() as server:
            server.enqueue_completion("{not json")
            server.enqueue_completion(REVIEW_PUBLISH, delay=1.5)
            with pytest.raises(StageFailedError) as caught:
                orchestrator(
                    store, server, stage_timeout_seconds=0.5, max_stage_retries=2
                ).run_story_workflow("slow", "Title", "A script.", {})
        errors = [
            r.error or ""
            for r in store.history("slow")
            if r.trigger in (Trigger.ATTEMPT_FAILED, Trigger.FAIL)
        ]
        assert "InvalidStageOutputError" in errors[0]
        assert "StageTimeoutError" in errors[1]
        assert caught.value.attempts == 2

    def test_paid_but_unusable_answer_counts_in_the_total_cost(
        self, store: WorkflowStateManager
    ) -> None:
        """An invalid answer's token cost lands on its failed-attempt row and in total_cost."""
        with FakeLLMServer() as server:
            server.enqueue_completion(
                {"decision": "maybe"}, prompt_tokens=1000, completion_tokens=100
            )
            server.enqueue_completion(REVIEW_PUBLISH, prompt_tokens=1000, completion_tokens=100)
            result = orchestrator(store, server).run_story_workflow(
                "paid", "Title", "A script.", {}
            )
        records = store.history("paid")
        failed = next(r for r in records if r.trigger is Trigger.ATTEMPT_FAILED)
        reviewed = next(r for r in records if r.trigger is Trigger.REVIEWED)
        assert failed.cost is not None and failed.cost > 0
        assert failed.cost == pytest.approx(reviewed.cost)  # same tokens, same price
        assert result.total_cost == pytest.approx(failed.cost + (reviewed.cost or 0))
        assert failed.payload["rejected_answer"] == '{"decision": "maybe"}'  # the model's text

    def test_a_model_s_prose_is_kept_on_the_failed_row(self, store: WorkflowStateManager) -> None:
        """An answer that is no JSON: the failed attempt's row keeps what the model wrote."""
        prose = "Sure! This story is lovely; I would publish it. Score: 9/10."
        with FakeLLMServer() as server:
            server.enqueue_completion(prose)
            server.enqueue_completion(REVIEW_PUBLISH)
            orchestrator(store, server).run_story_workflow("prose", "Title", "A script.", {})
        failed = next(r for r in store.history("prose") if r.trigger is Trigger.ATTEMPT_FAILED)
        assert "not valid JSON" in (failed.error or "")
        assert failed.payload["rejected_answer"] == prose

    def test_server_error_exhausts_retries(self, store: WorkflowStateManager) -> None:
        """Persistent 500s end in FAILED with the SDK's error as the cause."""
        with FakeLLMServer() as server:
            for _ in range(3):
                server.enqueue_error(500, "boom")
            with pytest.raises(StageFailedError) as caught:
                orchestrator(store, server).run_story_workflow("err", "Title", "A script.", {})
        assert type(caught.value.__cause__).__name__ == "InternalServerError"

    def test_an_abandoned_request_ends_with_its_attempt(self, store: WorkflowStateManager) -> None:
        """An OpenAI stage with no timeout of its own, in an attempt the engine abandons, stops
        waiting for the server at the attempt's deadline (not at the SDK's ten minutes)."""
        ended: list[BaseException] = []
        done = threading.Event()

        class Watched(OpenAIReviewer):
            def review_story(self, **kwargs: Any) -> Any:
                try:
                    return super().review_story(**kwargs)
                except BaseException as exc:
                    ended.append(exc)
                    raise
                finally:
                    done.set()

        with FakeLLMServer() as server:
            server.enqueue_completion(REVIEW_PUBLISH, delay=8.0)
            reviewer = Watched(model="gpt-4o-mini", base_url=server.url, api_key="k")
            polisher = OpenAIPolisher(model="gpt-4o-mini", base_url=server.url, api_key="k")
            config = WorkflowConfig(stage_timeout_seconds=0.5, max_stage_retries=1)
            orchestrator = StoryWorkflowOrchestrator(reviewer, polisher, store, config)
            with pytest.raises(StageFailedError) as caught:
                orchestrator.run_story_workflow("slow", "Title", "A script.", {})
            assert isinstance(caught.value.__cause__, StageTimeoutError)
            # The server would answer at 8 s; the request gave up at the attempt's 0.5 s.
            assert done.wait(6), "the abandoned request was still waiting for the server"
        assert len(ended) == 1 and isinstance(ended[0], openai.APITimeoutError)
