"""OpenAIReviewer / OpenAIPolisher against a real HTTP server speaking chat completions.

No SDK is mocked: the official ``openai`` client sends real requests to a
:class:`FakeLLMServer` on 127.0.0.1, so status codes, timeouts and request bodies are the
genuine article.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from structlog.testing import capture_logs

from story_fsm._normalize import normalize_polish, normalize_review
from story_fsm.editors._pricing import PriceTable
from story_fsm.editors.openai_compat import (
    DEFAULT_PRICES,
    NO_KEY_PLACEHOLDER,
    OpenAIPolisher,
    OpenAIReviewer,
)
from story_fsm.errors import InputValidationError, InvalidStageOutputError
from story_fsm.stages import attempt_deadline
from story_fsm.states import ReviewDecision
from tests.fake_llm_server import FakeLLMServer, chat_completion_body
from tests.hermetic import HOST_SETTINGS

SCRIPT = "Mara found the lighthouse keeper's logbook. Its last page was written tomorrow."

REVIEW_ARGS: dict[str, Any] = {
    "title": "The Keeper's Log",
    "script": SCRIPT,
    "audience_context": {"age": "12-14", "platform": "podcast"},
    "original_idea": "A logbook that records the future",
    "story_id": "story-1",
    "story_version": "v1",
    "local_review_summary": {"readability": 71.5},
}

GOOD_REVIEW: dict[str, Any] = {
    "decision": "polish",
    "quality_score": 72,
    "criteria": {"hook": 80, "clarity": 65.5},
    "feedback": ["Tighten the opening.", "Name the town."],
}

GOOD_POLISH: dict[str, Any] = {
    "polished_title": "Tomorrow's Log",
    "polished_script": "Mara opened the logbook. The last entry was dated tomorrow.",
    "change_log": ["Tightened the opening", {"change": "named the town", "why": "feedback"}],
}

POLISH_ARGS: dict[str, Any] = {
    "story_id": "story-1",
    "current_title": "The Keeper's Log",
    "current_script": SCRIPT,
    "expert_review_data": {**GOOD_REVIEW, "_meta": {"cost_estimate": 0.5, "secret": "x"}},
    "iteration_number": 2,
    "audience_context": {"age": "12-14"},
    "original_idea": "A logbook that records the future",
}

_ENV_VARS = HOST_SETTINGS


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The developer's own OpenAI settings or a proxy must not steer these requests.
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as fake:
        yield fake


@pytest.fixture
def reviewer(server: FakeLLMServer) -> Iterator[OpenAIReviewer]:
    with OpenAIReviewer(base_url=server.url, api_key="test-key") as stage:
        yield stage


@pytest.fixture
def polisher(server: FakeLLMServer) -> Iterator[OpenAIPolisher]:
    with OpenAIPolisher(base_url=server.url, api_key="test-key") as stage:
        yield stage


_DROP = object()  # as a field's value in _answer(): leave the field out


def _answer(base: dict[str, Any], **changes: Any) -> str:
    data = {**base, **changes}
    return json.dumps({k: v for k, v in data.items() if v is not _DROP})


def _user_message(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


class TestReview:
    def test_good_review_is_parsed(self, server: FakeLLMServer, reviewer: OpenAIReviewer) -> None:
        """A valid JSON answer comes back as the review's fields plus overall_assessment."""
        server.enqueue_completion(_answer(GOOD_REVIEW, decision="Polish "))
        review = reviewer.review_story(**REVIEW_ARGS)
        assert review["decision"] == "polish"
        assert review["quality_score"] == 72
        assert review["criteria"] == {"hook": 80, "clarity": 65.5}
        assert review["feedback"] == GOOD_REVIEW["feedback"]
        assert review["overall_assessment"] == {"quality_score": 72}

    def test_meta_records_cost_usage_model_prompt_and_id(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """_meta prices the reported usage with the gpt-4o-mini entry of the price table."""
        server.enqueue_completion(
            _answer(GOOD_REVIEW), prompt_tokens=1200, completion_tokens=300, response_id="r-1"
        )
        meta = reviewer.review_story(**REVIEW_ARGS)["_meta"]
        per_input, per_output = DEFAULT_PRICES["gpt-4o-mini"]
        assert meta["cost_estimate"] == pytest.approx((1200 * per_input + 300 * per_output) / 1e6)
        assert meta["usage"] == {"prompt_tokens": 1200, "completion_tokens": 300}
        assert meta["model"] == "gpt-4o-mini"
        assert meta["prompt_version"] == "review-v2"
        assert meta["response_id"] == "r-1"

    def test_request_carries_model_story_and_json_mode(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """The server receives the model, the script and audience in the prompt, and JSON mode."""
        server.enqueue_completion(_answer(GOOD_REVIEW))
        reviewer.review_story(**REVIEW_ARGS)
        (request,) = server.requests
        body = request.json
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == "Bearer test-key"
        assert body["model"] == "gpt-4o-mini"
        assert body["response_format"] == {"type": "json_object"}
        assert body["temperature"] == 0.0
        assert [m["role"] for m in body["messages"]] == ["system", "user"]
        assert "JSON" in body["messages"][0]["content"]
        user = _user_message(body)
        assert SCRIPT in user
        assert "The Keeper's Log" in user
        assert '"platform": "podcast"' in user
        assert "71.5" in user

    def test_model_override_reaches_server(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """model= passed by the engine replaces the constructor's model for that call only."""
        server.enqueue_completion(_answer(GOOD_REVIEW))
        server.enqueue_completion(_answer(GOOD_REVIEW))
        first = reviewer.review_story(**REVIEW_ARGS, model="gpt-4.1")
        reviewer.review_story(**REVIEW_ARGS)
        assert [r.json["model"] for r in server.requests] == ["gpt-4.1", "gpt-4o-mini"]
        assert first["_meta"]["model"] == "gpt-4.1"

    def test_answer_is_accepted_by_normalize_review(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """The engine's normalizer reads decision, score and cost from the returned dict."""
        server.enqueue_completion(_answer(GOOD_REVIEW, decision="publish", quality_score=91))
        outcome = normalize_review(reviewer.review_story(**REVIEW_ARGS))
        assert outcome.decision is ReviewDecision.PUBLISH
        assert outcome.quality_score == 91.0
        assert outcome.cost > 0

    def test_a_model_that_rejects_the_temperature_is_asked_again_without_it(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """A 400 naming ``temperature`` (a reasoning model): once more without it, at once.

        Then that model is sent no temperature, and another model still is.
        """
        rejected = {
            "message": "Unsupported value: 'temperature' does not support 0.0 with this model.",
            "type": "invalid_request_error",
            "param": "temperature",
            "code": "unsupported_value",
        }
        server.enqueue({"error": rejected}, status=400)
        for _ in range(3):
            server.enqueue_completion(_answer(GOOD_REVIEW))
        with capture_logs() as logs:
            first = reviewer.review_story(**REVIEW_ARGS, model="o3-mini")
        reviewer.review_story(**REVIEW_ARGS, model="o3-mini")
        reviewer.review_story(**REVIEW_ARGS)
        assert first["decision"] == "polish"
        sent = [(r.json["model"], r.json.get("temperature")) for r in server.requests]
        assert sent == [
            ("o3-mini", 0.0),
            ("o3-mini", None),
            ("o3-mini", None),
            ("gpt-4o-mini", 0.0),
        ]
        assert "temperature" not in server.requests[1].json
        assert [e["event"] for e in logs].count("llm_temperature_dropped") == 1

    def test_the_request_without_temperature_waits_only_for_the_time_left(
        self, server: FakeLLMServer
    ) -> None:
        """The second request's timeout is what the attempt has left once the 400 came back.

        Not the first request's: the time the rejection took is gone from the attempt.
        """
        rejected = {"message": "no", "type": "invalid_request_error", "param": "temperature"}
        server.enqueue({"error": rejected}, status=400, delay=0.5)
        server.enqueue_completion(_answer(GOOD_REVIEW))
        timeouts: list[float] = []

        def sent(request: Any) -> None:
            timeouts.append(request.extensions["timeout"]["read"])

        http = openai.DefaultHttpxClient(event_hooks={"request": [sent]})
        token = attempt_deadline.set(time.monotonic() + 30)
        try:
            with (
                openai.OpenAI(
                    base_url=server.url, api_key="k", max_retries=0, http_client=http
                ) as client,
                OpenAIReviewer(client=client) as stage,
            ):
                stage.review_story(**REVIEW_ARGS)
        finally:
            attempt_deadline.reset(token)
        first, second = timeouts
        assert first <= 30
        assert second <= first - 0.5

    def test_a_bad_request_about_anything_else_is_not_asked_again(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """Only a rejected temperature is dropped: another 400 is final after one request."""
        error = {"message": "bad", "type": "invalid_request_error", "param": "messages"}
        server.enqueue({"error": error}, status=400)
        with pytest.raises(openai.BadRequestError):
            reviewer.review_story(**REVIEW_ARGS)
        assert len(server.requests) == 1

    def test_checks_of_the_draft_are_not_shown_as_checks_of_a_rewrite(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """The pipeline's checks ran on v1: from v2 on, the prompt says so."""
        server.enqueue_completion(_answer(GOOD_REVIEW))
        server.enqueue_completion(_answer(GOOD_REVIEW))
        reviewer.review_story(**REVIEW_ARGS)
        reviewer.review_story(**{**REVIEW_ARGS, "story_version": "v2"})
        first, second = (_user_message(r.json) for r in server.requests)
        assert "run on this version:" in first
        assert "run on the submitted draft (v1), before any polish" in second
        assert "71.5" in first and "71.5" in second

    def test_temperature_none_is_left_out(self, server: FakeLLMServer) -> None:
        """temperature=None omits the field, as reasoning models require."""
        server.enqueue_completion(_answer(GOOD_REVIEW))
        with OpenAIReviewer(base_url=server.url, api_key="k", temperature=None) as stage:
            stage.review_story(**REVIEW_ARGS)
        assert "temperature" not in server.requests[0].json


class TestPolish:
    def test_good_polish_is_parsed_and_priced(
        self, server: FakeLLMServer, polisher: OpenAIPolisher
    ) -> None:
        """A valid polish returns its fields and a _meta priced from usage."""
        server.enqueue_completion(_answer(GOOD_POLISH), prompt_tokens=2000, completion_tokens=800)
        polish = polisher.polish_story(**POLISH_ARGS)
        assert polish["polished_title"] == "Tomorrow's Log"
        assert polish["polished_script"] == GOOD_POLISH["polished_script"]
        assert polish["change_log"] == GOOD_POLISH["change_log"]
        per_input, per_output = DEFAULT_PRICES["gpt-4o-mini"]
        expected = (2000 * per_input + 800 * per_output) / 1e6
        assert polish["_meta"]["cost_estimate"] == pytest.approx(expected)
        assert polish["_meta"]["prompt_version"] == "polish-v1"

    def test_request_carries_script_review_and_iteration(
        self, server: FakeLLMServer, polisher: OpenAIPolisher
    ) -> None:
        """The prompt holds script, review feedback and pass number, but not the review's _meta."""
        server.enqueue_completion(_answer(GOOD_POLISH))
        polisher.polish_story(**POLISH_ARGS)
        body = server.requests[0].json
        assert body["response_format"] == {"type": "json_object"}
        user = _user_message(body)
        assert SCRIPT in user
        assert "Tighten the opening." in user
        assert "Polishing pass 2." in user
        assert "cost_estimate" not in user

    def test_answer_is_accepted_by_normalize_polish(
        self, server: FakeLLMServer, polisher: OpenAIPolisher
    ) -> None:
        """The engine's normalizer reads title, script, change count and cost."""
        server.enqueue_completion(_answer(GOOD_POLISH))
        outcome = normalize_polish(polisher.polish_story(**POLISH_ARGS), "old title")
        assert outcome.title == "Tomorrow's Log"
        assert outcome.changes_count == 2
        assert outcome.cost > 0


class TestMalformedAnswers:
    @pytest.mark.parametrize(
        ("content", "message"),
        [
            ("The story is lovely.", "not valid JSON"),
            ('{"decision": "polish", "quality_score": 72', "not valid JSON"),
            ("[1, 2]", "must be a JSON object"),
            (_answer(GOOD_REVIEW, criteria=_DROP), "lacks criteria"),
            (_answer(GOOD_REVIEW, decision="maybe"), "decision must be"),
            (_answer(GOOD_REVIEW, quality_score=120), "quality_score must be within 0-100"),
            (_answer(GOOD_REVIEW, quality_score=-1), "quality_score must be within 0-100"),
            (_answer(GOOD_REVIEW, quality_score="high"), "quality_score must be a number"),
            (_answer(GOOD_REVIEW, quality_score=True), "quality_score must be a number"),
            ('{"decision": "polish", "quality_score": NaN}', "not valid JSON"),
            (_answer(GOOD_REVIEW, criteria={"hook": 101}), "criteria['hook']"),
            (_answer(GOOD_REVIEW, criteria=[80]), "criteria must be an object"),
            (_answer(GOOD_REVIEW, feedback=42), "feedback must be"),
            (_answer(GOOD_REVIEW, feedback=["ok", 3]), "feedback must be"),
        ],
    )
    def test_bad_review_raises(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, content: str, message: str
    ) -> None:
        """An answer breaking the review schema raises InvalidStageOutputError saying why."""
        server.enqueue_completion(content)
        with pytest.raises(InvalidStageOutputError, match=re.escape(message)) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert "story 'story-1' by gpt-4o-mini" in str(caught.value)

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (_answer(GOOD_POLISH, polished_script="   "), "polished_script must be a non-empty"),
            (_answer(GOOD_POLISH, polished_script=None), "polished_script must be a non-empty"),
            (_answer(GOOD_POLISH, polished_title=""), "polished_title must be a non-empty"),
            (_answer(GOOD_POLISH, change_log=_DROP), "lacks change_log"),
            (_answer(GOOD_POLISH, change_log="rewrote it"), "change_log must be a list"),
            ("null", "must be a JSON object"),
        ],
    )
    def test_bad_polish_raises(
        self, server: FakeLLMServer, polisher: OpenAIPolisher, content: str, message: str
    ) -> None:
        """An answer breaking the polish schema raises InvalidStageOutputError saying why."""
        server.enqueue_completion(content)
        with pytest.raises(InvalidStageOutputError, match=message):
            polisher.polish_story(**POLISH_ARGS)

    @pytest.mark.parametrize(
        "content",
        [
            f"```json\n{_answer(GOOD_REVIEW)}\n```",
            f"```\n{_answer(GOOD_REVIEW)}\n```\n",
            f"  ```JSON\r\n{json.dumps(GOOD_REVIEW, indent=2)}\r\n```",
            f"```json {_answer(GOOD_REVIEW)}```",
        ],
        ids=["json", "bare", "crlf-indented", "one-line"],
    )
    def test_an_answer_in_a_code_fence_is_read(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, content: str
    ) -> None:
        """A JSON object wrapped whole in a Markdown code fence is read as that object."""
        server.enqueue_completion(content)
        review = reviewer.review_story(**REVIEW_ARGS)
        assert review["criteria"] == GOOD_REVIEW["criteria"]

    @pytest.mark.parametrize(
        "content",
        [
            f"Here is my review:\n```json\n{_answer(GOOD_REVIEW)}\n```",
            f"```json\n{_answer(GOOD_REVIEW)}\n```\nHope this helps.",
            f"```python\n{_answer(GOOD_REVIEW)}\n```",
            f"```json\n{_answer(GOOD_REVIEW)}",
        ],
        ids=["prose-before", "prose-after", "other-language", "unclosed"],
    )
    def test_a_fence_with_anything_else_is_refused(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, content: str
    ) -> None:
        """Only a reply that is one fenced JSON block is unwrapped; prose or another language
        around or on it stays an invalid answer."""
        server.enqueue_completion(content)
        with pytest.raises(InvalidStageOutputError, match="not valid JSON"):
            reviewer.review_story(**REVIEW_ARGS)

    def test_empty_content_raises(self, server: FakeLLMServer, reviewer: OpenAIReviewer) -> None:
        """A completion without content is an invalid answer, not a crash."""
        server.enqueue_completion(None)
        with pytest.raises(InvalidStageOutputError, match="answer is empty"):
            reviewer.review_story(**REVIEW_ARGS)

    def test_truncated_answer_raises(self, server: FakeLLMServer, reviewer: OpenAIReviewer) -> None:
        """finish_reason=length is reported as a cut-off answer."""
        server.enqueue_completion('{"decision": "pol', finish_reason="length")
        with pytest.raises(InvalidStageOutputError, match="cut off"):
            reviewer.review_story(**REVIEW_ARGS)

    def test_invalid_answer_logs_its_cost(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """A paid but unusable answer is logged with its cost before the error propagates."""
        server.enqueue_completion("nope", prompt_tokens=1000, completion_tokens=10)
        with capture_logs() as logs, pytest.raises(InvalidStageOutputError):
            reviewer.review_story(**REVIEW_ARGS)
        (entry,) = [e for e in logs if e["event"] == "llm_answer_invalid"]
        assert entry["cost_estimate"] > 0
        assert entry["story_id"] == "story-1"


class TestOddReplies:
    """Replies that real providers and proxies send: each is an answer the engine can judge."""

    @pytest.mark.parametrize(
        ("usage", "field"),
        [
            ({"prompt_tokens": None, "completion_tokens": None}, "prompt_tokens"),
            ({"prompt_tokens": "many", "completion_tokens": "few"}, "prompt_tokens"),
            ({}, "prompt_tokens"),
        ],
        ids=["nulls", "string", "empty"],
    )
    def test_unreadable_usage_keeps_the_answer(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, usage: dict[str, Any], field: str
    ) -> None:
        """A paid, usable answer is kept when its usage fields are not numbers (cost 0, logged)."""
        body = chat_completion_body(_answer(GOOD_REVIEW))
        body["usage"] = usage
        server.enqueue(body)
        with capture_logs() as logs:
            answer = reviewer.review_story(**REVIEW_ARGS)
        assert answer["decision"] == "polish" and answer["_meta"]["cost_estimate"] == 0.0
        unreadable = [e for e in logs if e["event"] == "llm_usage_unreadable"]
        assert unreadable and unreadable[0]["field"] == field

    def test_usage_counts_sent_as_floats_are_counted(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """1000.0 tokens are 1000 tokens: priced as the same counts sent as integers."""
        costs = []
        for usage in (
            {"prompt_tokens": 1000.0, "completion_tokens": 500.0},
            {"prompt_tokens": 1000, "completion_tokens": 500},
        ):
            body = chat_completion_body(_answer(GOOD_REVIEW))
            body["usage"] = usage
            server.enqueue(body)
            with capture_logs() as logs:
                costs.append(reviewer.review_story(**REVIEW_ARGS)["_meta"]["cost_estimate"])
            assert "llm_usage_unreadable" not in [e["event"] for e in logs]
        assert costs[0] == costs[1] > 0

    @pytest.mark.parametrize(
        ("reply", "kind", "message"),
        [
            (b"<html>502 Bad Gateway</html>", "text/html", "other than a chat completion"),
            (b"", "application/json", "not JSON"),
            (b"<html>oops</html>", "application/json", "not JSON"),
            (b'{"id": "\xff\xfe"}', "application/json", "not JSON"),
            (b'{"n": ' + b"7" * 5000 + b"}", "application/json", "not JSON"),
            (b"[" * 100_000, "application/json", "not JSON"),
        ],
        ids=["html", "empty", "html-labelled-json", "not-utf8", "huge-int", "deep-nesting"],
    )
    def test_a_reply_that_is_no_completion_is_an_invalid_answer(
        self,
        server: FakeLLMServer,
        reviewer: OpenAIReviewer,
        reply: bytes,
        kind: str,
        message: str,
    ) -> None:
        """A 200 whose body is not a chat completion is InvalidStageOutputError (retried)."""
        server.enqueue(reply, headers={"content-type": kind})
        with pytest.raises(InvalidStageOutputError, match=message):
            reviewer.review_story(**REVIEW_ARGS)

    def test_odd_message_shapes_are_invalid_answers_with_their_cost(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """No message, or content given as a list of parts: invalid, and the tokens are paid."""
        no_message = chat_completion_body("x", prompt_tokens=1000)
        del no_message["choices"][0]["message"]
        parts = chat_completion_body("x", prompt_tokens=1000)
        parts["choices"][0]["message"]["content"] = [{"type": "text", "text": "{}"}]
        for body, message in ((no_message, "no message"), (parts, "not text")):
            server.enqueue(body)
            with pytest.raises(InvalidStageOutputError, match=message) as caught:
                reviewer.review_story(**REVIEW_ARGS)
            assert caught.value.cost > 0

    @pytest.mark.parametrize(
        "shape",
        [
            {"choices": "abc"},
            {"choices": [None]},
            {"choices": [5]},
            {"choices": {"0": {"message": {"content": "{}"}}}},
            {"message": "hello"},
            {"message": {"role": "assistant"}},  # no content field at all
        ],
        ids=[
            "choices-text",
            "choice-null",
            "choice-int",
            "choices-object",
            "message-text",
            "no-content",
        ],
    )
    def test_a_completion_of_the_wrong_shape_is_an_invalid_answer_with_its_cost(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, shape: dict[str, Any]
    ) -> None:
        """The SDK does not validate a reply: a wrong shape is still a typed, paid refusal."""
        body = chat_completion_body(_answer(GOOD_REVIEW), prompt_tokens=1_000_000)
        for key, value in shape.items():
            (body if key == "choices" else body["choices"][0])[key] = value
        server.enqueue(body)
        with pytest.raises(InvalidStageOutputError) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert caught.value.cost == pytest.approx(DEFAULT_PRICES["gpt-4o-mini"][0], rel=1e-3)

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (_answer(GOOD_REVIEW, quality_score=10**400), "quality_score must be within 0-100"),
            (
                _answer(GOOD_REVIEW, criteria={"hook": 10**400}),
                r"criteria\['hook'\] must be within 0-100",
            ),
            ("[" * 100_000, "nested too deeply"),
        ],
        ids=["huge-score", "huge-criterion", "deep-nesting"],
    )
    def test_numbers_too_big_and_nesting_too_deep_are_invalid_answers(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer, content: str, message: str
    ) -> None:
        """No OverflowError or RecursionError escapes the answer's checks; the cost stays."""
        server.enqueue_completion(content, prompt_tokens=1000)
        with pytest.raises(InvalidStageOutputError, match=message) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert caught.value.cost > 0

    def test_a_token_count_too_big_to_be_one_is_unreadable(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """10**400 prompt tokens is no count: 0 (logged), the good answer kept, no overflow."""
        body = chat_completion_body(_answer(GOOD_REVIEW))
        body["usage"] = {"prompt_tokens": 10**400, "completion_tokens": 5}
        server.enqueue(body)
        with capture_logs() as logs:
            answer = reviewer.review_story(**REVIEW_ARGS)
        assert answer["decision"] == "polish"
        assert answer["_meta"]["usage"] == {"prompt_tokens": 0, "completion_tokens": 5}
        assert [e["field"] for e in logs if e["event"] == "llm_usage_unreadable"] == [
            "prompt_tokens"
        ]

    def test_unstorable_polish_is_refused_with_its_cost(
        self, server: FakeLLMServer, polisher: OpenAIPolisher
    ) -> None:
        """A NUL in the polished script: an invalid answer that still says what it cost."""
        server.enqueue_completion(
            _answer(GOOD_POLISH, polished_script="a\x00b"), prompt_tokens=1000
        )
        with pytest.raises(InvalidStageOutputError, match="polished_script contains a NUL") as c:
            polisher.polish_story(**POLISH_ARGS)
        assert c.value.cost > 0

    @pytest.mark.parametrize(
        ("headers", "seconds"),
        [
            ({"retry-after": "7"}, 7.0),
            ({"retry-after-ms": "1500"}, 1.5),
            ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
            ({}, None),
        ],
    )
    def test_rate_limit_carries_its_retry_after(
        self,
        server: FakeLLMServer,
        reviewer: OpenAIReviewer,
        headers: dict[str, str],
        seconds: float | None,
    ) -> None:
        """The SDK's error carries the wait the server asked for, for the engine's backoff."""
        server.enqueue_error(429, "slow down", headers=headers)
        with pytest.raises(openai.RateLimitError) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert caught.value.retry_after_seconds == seconds  # type: ignore[attr-defined]


class TestHTTPErrors:
    @pytest.mark.parametrize(
        ("status", "code", "retryable"),
        [
            (429, None, True),  # a rate limit: waiting ends it
            (429, "insufficient_quota", False),  # a spent quota: waiting does not
            (413, None, False),  # a prompt too large: the same prompt stays too large
            (402, None, False),  # credits spent (DeepSeek, OpenRouter): billing must be fixed
            (400, None, False),
            (503, None, True),
        ],
    )
    def test_errors_say_whether_another_attempt_can_succeed(
        self,
        server: FakeLLMServer,
        reviewer: OpenAIReviewer,
        status: int,
        code: str | None,
        retryable: bool,
    ) -> None:
        """``retryable`` on the SDK's error, read by the engine's retries."""
        error = {"message": "scripted", "type": "error", "param": None, "code": code}
        server.enqueue({"error": error}, status=status)
        with pytest.raises(openai.APIStatusError) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert caught.value.retryable is retryable  # type: ignore[attr-defined]

    def test_rate_limit_then_success(self, server: FakeLLMServer, reviewer: OpenAIReviewer) -> None:
        """A 429 raises RateLimitError with its status; the engine's next call succeeds."""
        server.enqueue_error(429, "Rate limit reached", error_type="rate_limit_exceeded")
        server.enqueue_completion(_answer(GOOD_REVIEW))
        with pytest.raises(openai.RateLimitError) as caught:
            reviewer.review_story(**REVIEW_ARGS)
        assert caught.value.status_code == 429
        assert len(server.requests) == 1  # max_retries=0: the SDK did not retry on its own
        assert reviewer.review_story(**REVIEW_ARGS)["decision"] == "polish"
        assert len(server.requests) == 2

    def test_server_error_propagates(self, server: FakeLLMServer, polisher: OpenAIPolisher) -> None:
        """A 500 raises the SDK's InternalServerError, status code intact, after one request."""
        server.enqueue_error(500, "upstream exploded")
        with pytest.raises(openai.InternalServerError) as caught:
            polisher.polish_story(**POLISH_ARGS)
        assert caught.value.status_code == 500
        assert "upstream exploded" in str(caught.value)
        assert len(server.requests) == 1

    def test_slow_answer_times_out(self, server: FakeLLMServer) -> None:
        """An answer slower than timeout= raises the SDK's APITimeoutError promptly."""
        server.enqueue_completion(_answer(GOOD_REVIEW), delay=1.0)
        with OpenAIReviewer(base_url=server.url, api_key="k", timeout=0.2) as stage:
            started = time.monotonic()
            with pytest.raises(openai.APITimeoutError):
                stage.review_story(**REVIEW_ARGS)
        assert time.monotonic() - started < 0.9

    def test_unreachable_server_raises_connection_error(self, server: FakeLLMServer) -> None:
        """A closed port raises APIConnectionError rather than an invalid-answer error."""
        url = server.url
        server.close()
        with (
            OpenAIReviewer(base_url=url, api_key="k") as stage,
            pytest.raises(openai.APIConnectionError),
        ):
            stage.review_story(**REVIEW_ARGS)


class TestConfiguration:
    def test_base_url_and_key_from_environment(
        self, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """OPENAI_BASE_URL and OPENAI_API_KEY are used when no arguments are given."""
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("OPENAI_API_KEY", "env-key")
        server.enqueue_completion(_answer(GOOD_REVIEW))
        with OpenAIReviewer() as stage:
            stage.review_story(**REVIEW_ARGS)
        assert server.requests[0].headers["authorization"] == "Bearer env-key"

    def test_custom_base_url_without_key_sends_placeholder(self, server: FakeLLMServer) -> None:
        """A local server needs no key: a placeholder is sent instead of failing."""
        server.enqueue_completion(_answer(GOOD_REVIEW))
        with OpenAIReviewer(base_url=server.url) as stage:
            stage.review_story(**REVIEW_ARGS)
        assert server.requests[0].headers["authorization"] == f"Bearer {NO_KEY_PLACEHOLDER}"

    def test_default_endpoint_without_key_fails_before_any_request(self) -> None:
        """api.openai.com without any key raises the SDK's missing-key error.

        Its wording changed across SDK releases ("api_key client option must be set", later
        "Missing credentials"); either is the SDK refusing before any request.
        """
        missing_key = "credentials|api_key client option"
        with (
            OpenAIReviewer() as stage,
            pytest.raises(openai.OpenAIError, match=missing_key) as caught,
        ):
            stage.review_story(**REVIEW_ARGS)
        # No later attempt finds a key either: the engine makes no second one.
        assert caught.value.retryable is False  # type: ignore[attr-defined]

    def test_sdk_client_is_built_once(
        self, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Successive calls reuse one SDK client instead of building one per call."""
        built: list[openai.OpenAI] = []

        class CountingOpenAI(openai.OpenAI):
            def __init__(self, **kwargs: Any) -> None:
                super().__init__(**kwargs)
                built.append(self)

        monkeypatch.setattr(openai, "OpenAI", CountingOpenAI)
        server.enqueue_completion(_answer(GOOD_REVIEW))
        server.enqueue_completion(_answer(GOOD_REVIEW))
        with OpenAIReviewer(base_url=server.url, api_key="k") as stage:
            stage.review_story(**REVIEW_ARGS)
            stage.review_story(**REVIEW_ARGS)
        assert len(built) == 1
        assert built[0].max_retries == 0
        assert built[0].is_closed()

    def test_given_client_is_used_and_left_open(self, server: FakeLLMServer) -> None:
        """client= (e.g. an AzureOpenAI) is used as is, and close() does not close it."""
        with openai.OpenAI(base_url=server.url, api_key="own-key", max_retries=0) as client:
            server.enqueue_completion(_answer(GOOD_REVIEW))
            with OpenAIReviewer(client=client, model="my-deployment") as stage:
                stage.review_story(**REVIEW_ARGS)
            assert not client.is_closed()
        assert server.requests[0].headers["authorization"] == "Bearer own-key"
        assert server.requests[0].json["model"] == "my-deployment"

    def test_an_async_client_is_refused(self, server: FakeLLMServer) -> None:
        """An AsyncOpenAI as client= is refused when the stage is built, before any request.

        The stages call the client synchronously: its create() would hand back a coroutine,
        never awaited, that every attempt took for a reply that is no chat completion.
        """
        client = openai.AsyncOpenAI(base_url=server.url, api_key="k", max_retries=0)
        with pytest.raises(InputValidationError, match="AsyncOpenAI"):
            OpenAIReviewer(client=client)
        assert server.requests == []

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"model": ""},
            {"temperature": 3.0},
            {"timeout": 0},
            {"temperature": "x"},
            {"temperature": True},
            {"temperature": float("nan")},
            {"timeout": "5"},
            {"timeout": True},
            {"timeout": float("nan")},
            {"timeout": float("inf")},
            {"max_retries": -1},
            {"prices": {"m": (1.0,)}},
            {"prices": {"m": (-1.0, 2.0)}},
            {"client": "not used", "base_url": "http://127.0.0.1:1/v1"},
        ],
    )
    def test_bad_settings_are_rejected(self, kwargs: dict[str, Any]) -> None:
        """Out-of-range settings raise InputValidationError when the stage is built."""
        with pytest.raises(InputValidationError):
            OpenAIReviewer(**kwargs)


class TestPricing:
    def test_unknown_model_costs_nothing_and_warns_once(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """A model missing from the table costs 0.0 and logs one warning however often used."""
        server.enqueue_completion(_answer(GOOD_REVIEW), prompt_tokens=5000)
        server.enqueue_completion(_answer(GOOD_REVIEW), prompt_tokens=5000)
        with capture_logs() as logs:
            first = reviewer.review_story(**REVIEW_ARGS, model="llama3.1:8b")
            reviewer.review_story(**REVIEW_ARGS, model="llama3.1:8b")
        assert first["_meta"]["cost_estimate"] == 0.0
        warnings = [e for e in logs if e["event"] == "llm_price_unknown"]
        assert len(warnings) == 1
        assert warnings[0]["model"] == "llama3.1:8b"
        assert warnings[0]["log_level"] == "warning"

    def test_prices_override_and_extend_the_table(self, server: FakeLLMServer) -> None:
        """prices= replaces a default entry and prices a model the table lacks."""
        server.enqueue_completion(_answer(GOOD_REVIEW), prompt_tokens=1_000_000)
        server.enqueue_completion(_answer(GOOD_REVIEW), completion_tokens=1_000_000)
        prices = {"gpt-4o-mini": (1.0, 2.0), "llama3.1": (0.5, 0.5)}
        with OpenAIReviewer(base_url=server.url, api_key="k", prices=prices) as stage:
            mini = stage.review_story(**REVIEW_ARGS, model="gpt-4o-mini")
            llama = stage.review_story(**REVIEW_ARGS, model="llama3.1:8b")
        assert mini["_meta"]["cost_estimate"] == pytest.approx(1.0 + 5 * 2.0 / 1e6)
        assert llama["_meta"]["cost_estimate"] == pytest.approx(10 * 0.5 / 1e6 + 0.5)

    @pytest.mark.parametrize(
        ("model", "entry"),
        [
            ("gpt-4o-2024-08-06", "gpt-4o"),
            ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
            ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
            ("GPT-4.1", "gpt-4.1"),
            ("o4-mini-2025-04-16", "o4-mini"),
            ("gpt-4-0613", None),  # not listed: no base entry "gpt-4"
            ("gpt-4.1-0613", "gpt-4.1"),
            ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13"),  # a snapshot with a price of its own
            ("gpt-5.1", None),
            ("gpt-4omni", None),
            # Another model that only starts like a listed one: unknown, not undercounted.
            ("o3-pro", None),
            ("o3-deep-research", None),
            ("gpt-5-pro", None),
        ],
    )
    def test_dated_names_use_their_base_entry(self, model: str, entry: str | None) -> None:
        """A name is priced as the listed one it is a dated snapshot of, and only then."""
        expected = DEFAULT_PRICES[entry] if entry else None
        assert PriceTable().lookup(model) == expected

    def test_reported_model_prices_an_unlisted_deployment(
        self, server: FakeLLMServer, reviewer: OpenAIReviewer
    ) -> None:
        """An Azure-style deployment name is priced by the model name the server reports."""
        server.enqueue_completion(
            _answer(GOOD_REVIEW), model="gpt-4o-2024-08-06", prompt_tokens=1_000_000
        )
        review = reviewer.review_story(**REVIEW_ARGS, model="prod-writer")
        assert review["_meta"]["model"] == "gpt-4o-2024-08-06"
        assert review["_meta"]["cost_estimate"] == pytest.approx(
            DEFAULT_PRICES["gpt-4o"][0] + 5 * DEFAULT_PRICES["gpt-4o"][1] / 1e6
        )


class TestFakeLLMServer:
    def test_unscripted_request_gets_a_loud_500(self, server: FakeLLMServer) -> None:
        """A call nobody scripted answers 500 naming the problem, and is still recorded."""
        with (
            openai.OpenAI(base_url=server.url, api_key="k", max_retries=0) as client,
            pytest.raises(openai.InternalServerError, match="no response queued"),
        ):
            client.chat.completions.create(model="m", messages=[])
        assert len(server.requests) == 1
        assert server.pending == 0
