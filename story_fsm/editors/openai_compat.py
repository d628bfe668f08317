"""Reviewer and polisher stages backed by any OpenAI-compatible chat-completions endpoint.

One adapter serves OpenAI, Azure OpenAI, vLLM, Ollama and other servers speaking the
``/v1/chat/completions`` protocol, through the official ``openai`` SDK:

- **OpenAI**: set ``OPENAI_API_KEY`` (or pass ``api_key=``).
- **Azure OpenAI**: pass ``base_url="https://<resource>.openai.azure.com/openai/v1/"`` and the
  Azure key as ``api_key=``, with the *deployment* name as ``model=``; or build an
  ``openai.AzureOpenAI(azure_endpoint=..., api_version=..., max_retries=0)`` yourself and pass
  it as ``client=``. Add ``prices={"<deployment>": (in, out)}`` unless the server reports a
  listed model name.
- **vLLM / Ollama**: ``base_url="http://localhost:8000/v1"`` (vLLM) or
  ``"http://localhost:11434/v1"`` (Ollama). They accept any key, so when no key is given and
  ``OPENAI_API_KEY`` is unset, a custom base URL gets :data:`NO_KEY_PLACEHOLDER`; only the
  default ``api.openai.com`` endpoint without a key fails (the SDK's missing-key error).

``base_url`` and ``api_key`` default from ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY`` exactly as
the SDK does, because the SDK reads them. The answer is requested as a JSON object (the prompt,
a versioned template under ``prompts/``, spells out the schema) and checked strictly.

What a call may raise::

    openai.APIStatusError            the server answered an HTTP error; propagated unchanged,
    ├── RateLimitError (429)         so ``.status_code`` and ``.response`` stay available
    └── InternalServerError (5xx)    and the engine's retry decides what happens next
    openai.APIConnectionError        the server could not be reached; propagated unchanged
    └── APITimeoutError              no answer within ``timeout`` seconds
    InvalidStageOutputError          an answer arrived but cannot be used (retried too)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from story_fsm.editors._answers import validate_polish, validate_review
from story_fsm.editors._chat_stage import NO_KEY_PLACEHOLDER, OpenAIStage, as_json, as_text
from story_fsm.editors._pricing import DEFAULT_PRICES, Price

__all__ = [
    "DEFAULT_PRICES",
    "NO_KEY_PLACEHOLDER",
    "POLISH_PROMPT_VERSION",
    "REVIEW_PROMPT_VERSION",
    "OpenAIPolisher",
    "OpenAIReviewer",
    "Price",
]

REVIEW_PROMPT_VERSION = "review-v2"
"""The review prompt in use; recorded in every review's ``_meta.prompt_version``."""

POLISH_PROMPT_VERSION = "polish-v1"
"""The polish prompt in use; recorded in every polish's ``_meta.prompt_version``."""


class OpenAIReviewer(OpenAIStage):
    """A :class:`~story_fsm.StoryReviewer` that asks a chat-completions model for the review.

    The SDK client is built on the first call and reused; call :meth:`close` (or use the
    object as a context manager) to release its connections.

    Args:
        model: The model (or Azure deployment) used when the engine passes no ``model=``.
        base_url: The API root, e.g. ``http://localhost:11434/v1``; None reads
            ``OPENAI_BASE_URL``, else ``https://api.openai.com/v1``.
        api_key: None reads ``OPENAI_API_KEY``; with neither, a custom base URL gets
            :data:`NO_KEY_PLACEHOLDER` (local servers need no key).
        prices: ``{"model": (usd_per_1m_input, usd_per_1m_output)}`` overriding or extending
            :data:`DEFAULT_PRICES`; an unlisted model costs 0.0 and logs a warning once.
        temperature: Sampling temperature; None omits it. A model that rejects it (the
            reasoning models, o-series and gpt-5, take only their default) is asked again
            at once without it, and is then sent none (logged as ``llm_temperature_dropped``).
        timeout: Seconds httpx waits to connect and for each read of the answer (not a
            bound on the whole call: a server that trickles bytes can outlast it; the
            engine's ``stage_timeout_seconds`` bounds the attempt). Called by the engine,
            a request waits no longer than the attempt has left
            (:func:`~story_fsm.stage_time_left`), so None there means the attempt's time;
            called directly, None keeps the SDK's (ten minutes).
        max_retries: Retries inside the SDK. 0 by default because the story_fsm engine
            retries a failed stage itself, with backoff, and records every attempt; SDK
            retries would multiply those and hide them from the record.
        client: A ready ``openai.OpenAI`` (e.g. ``openai.AzureOpenAI``) to use instead of
            building one; excludes ``base_url``/``api_key``, its own ``max_retries`` apply,
            and :meth:`close` leaves it open. An ``openai.AsyncOpenAI`` is refused: the
            stages call the client synchronously.

    Raises:
        InputValidationError: A setting is out of range, ``client`` comes with
            ``base_url``/``api_key``, or ``client`` is an ``AsyncOpenAI``.

    """

    _stage = "review"
    _prompt_version = REVIEW_PROMPT_VERSION

    def review_story(
        self,
        *,
        title: str,
        script: str,
        audience_context: Mapping[str, Any],
        original_idea: str,
        story_id: str,
        story_version: str,
        local_review_summary: Any,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Review one version of a story.

        Args:
            title: The story's current title.
            script: The story's current script.
            audience_context: Who the story is for; sent to the model as JSON.
            original_idea: The idea the story was written from.
            story_id: The story's id (for logs and error messages; not sent).
            story_version: ``"v1"``, ``"v2"``, ... per iteration.
            local_review_summary: The offline checks' findings (text or JSON-able), or None.
            model: Overrides the constructor's model for this call.

        Returns:
            ``decision``, ``quality_score``, ``criteria``, ``feedback``,
            ``overall_assessment: {quality_score}`` and ``_meta: {cost_estimate, model,
            prompt_version, usage: {prompt_tokens, completion_tokens}, response_id}``, where
            ``_meta.model`` is the model the server reports (else the one asked for).

        Raises:
            InvalidStageOutputError: The answer is not JSON or breaks the review schema.
            openai.APIError: The HTTP call failed (status, connection or timeout).

        """
        fields = {
            "title": title,
            "script": script,
            "audience_context": as_json(dict(audience_context)),
            "original_idea": as_text(original_idea),
            "story_version": story_version,
            "local_review_summary": as_text(local_review_summary),
            # The pipeline ran its checks on the submitted draft: from v2 on, the script
            # below is a rewrite, and the model must not take those findings for its own.
            "checked_version": (
                "this version"
                if story_version == "v1"
                else "the submitted draft (v1), before any polish; this version may differ"
            ),
        }
        review, meta = self._ask(
            model=model, fields=fields, story_id=story_id, validate=validate_review
        )
        return {
            **review,
            "overall_assessment": {"quality_score": review["quality_score"]},
            "_meta": meta,
        }


class OpenAIPolisher(OpenAIStage):
    """A :class:`~story_fsm.StoryPolisher` that asks a chat-completions model for a rewrite.

    Takes the same keyword arguments as :class:`OpenAIReviewer`, with the same defaults.
    """

    _stage = "polish"
    _prompt_version = POLISH_PROMPT_VERSION

    def polish_story(
        self,
        *,
        story_id: str,
        current_title: str,
        current_script: str,
        expert_review_data: Mapping[str, Any],
        iteration_number: int,
        audience_context: Mapping[str, Any],
        original_idea: str,
        model: str | None = None,
    ) -> dict[str, Any]:
        """Rewrite a story so that it answers its expert review.

        Args:
            story_id: The story's id (for logs and error messages; not sent).
            current_title: The title to improve.
            current_script: The script to rewrite.
            expert_review_data: The review as the reviewer returned it; its ``_meta``
                bookkeeping is left out of the prompt.
            iteration_number: Which polishing pass this is (1, 2, ...).
            audience_context: Who the story is for; sent to the model as JSON.
            original_idea: The idea the story was written from.
            model: Overrides the constructor's model for this call.

        Returns:
            ``polished_title``, ``polished_script``, ``change_log`` and ``_meta`` (as for
            :meth:`OpenAIReviewer.review_story`).

        Raises:
            InvalidStageOutputError: The answer is not JSON, breaks the polish schema, or
                has an empty title or script.
            openai.APIError: The HTTP call failed (status, connection or timeout).

        """
        review = {key: value for key, value in expert_review_data.items() if key != "_meta"}
        fields = {
            "current_title": current_title,
            "current_script": current_script,
            "expert_review": as_json(review),
            "iteration_number": str(iteration_number),
            "audience_context": as_json(dict(audience_context)),
            "original_idea": as_text(original_idea),
        }
        polish, meta = self._ask(
            model=model, fields=fields, story_id=story_id, validate=validate_polish
        )
        return {**polish, "_meta": meta}
