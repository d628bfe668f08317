"""The plumbing the OpenAI-compatible stages share: the SDK client, the prompt, the call.

Kept apart from :mod:`story_fsm.editors.openai_compat` so that module reads as the public
surface (two classes and their contracts) and this one as the mechanics: one lazily built SDK
client per stage object, versioned prompt templates loaded from the package, a JSON-mode chat
completion, its cost, and the answer handed to a strict validator.
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from string import Template
from types import TracebackType
from typing import Any, ClassVar, Self, TypeGuard

import openai
from openai.types.chat import ChatCompletion, ChatCompletionMessage, ChatCompletionMessageParam
from openai.types.chat.chat_completion import Choice

from story_fsm._log import get_logger
from story_fsm.editors._answers import parse_json_object
from story_fsm.editors._pricing import Price, PriceTable
from story_fsm.errors import InputValidationError, InvalidStageOutputError
from story_fsm.stages import stage_time_left

__all__ = ["NO_KEY_PLACEHOLDER", "OpenAIStage", "as_json", "as_text", "retry_after_seconds"]

NO_KEY_PLACEHOLDER = "no-key-required"
"""The key sent to a custom ``base_url`` when none is configured (local servers ignore it)."""

_Validator = Callable[[Mapping[str, Any], str], dict[str, Any]]

#: HTTP statuses after which the same request cannot succeed: no further attempt is made
#: (a bad request, a wrong key, credits spent, no access, an unknown model, a prompt too large
#: to take). 402 is how several OpenAI-compatible providers say what OpenAI's 429
#: insufficient_quota says.
_FINAL_STATUSES = frozenset({400, 401, 402, 403, 404, 413, 422})

#: Error codes that make any status final: a 429 for a spent quota is not a rate limit
#: that waiting ends, it needs billing fixed first.
_FINAL_CODES = frozenset({"insufficient_quota"})

#: A token count past this is no count at all (and would overflow the cost's float).
_MAX_TOKENS = 10**15

#: What a completion the SDK built without validating it can raise when read, once its
#: shape is not a completion's: the answer is unusable (and was paid for), not a bug here.
_UNREADABLE = (AttributeError, KeyError, IndexError, TypeError, ValueError, RecursionError)


@dataclass(frozen=True)
class _Prompt:
    version: str
    system: str
    user: Template

    def messages(self, fields: Mapping[str, str]) -> list[ChatCompletionMessageParam]:
        # substitute() inserts each value once and never expands "$" inside it again.
        user = self.user.substitute(fields)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]


@cache
def _prompt(version: str) -> _Prompt:
    """Load the templates of *version* ("review-v1" -> prompts/review_v1.{system,user}.txt)."""
    folder = resources.files("story_fsm.editors").joinpath("prompts")
    stem = version.replace("-", "_")
    return _Prompt(
        version=version,
        system=folder.joinpath(f"{stem}.system.txt").read_text("utf-8"),
        user=Template(folder.joinpath(f"{stem}.user.txt").read_text("utf-8")),
    )


def as_json(value: object) -> str:
    """Render *value* as indented JSON for a prompt (unknown types via ``str``).

    Keys are sorted, so the same context gives the same prompt; keys that cannot be compared
    with each other (``{1: ..., "age": ...}``) keep their order instead.
    """
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)
    except TypeError:
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def as_text(value: object) -> str:
    """Render *value* for a prompt: text as is, None or blank as "(none)", the rest as JSON."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return "(none)"
    return value if isinstance(value, str) else as_json(value)


def _resolve_api_key(api_key: str | None, base_url: str | None) -> str | None:
    """Return the key to hand the SDK; None lets it read ``OPENAI_API_KEY`` (or complain)."""
    if api_key is not None or os.environ.get("OPENAI_API_KEY"):
        return api_key
    if base_url is not None or os.environ.get("OPENAI_BASE_URL"):
        return NO_KEY_PLACEHOLDER
    return None


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_settings(
    model: str, temperature: float | None, timeout: float | None, max_retries: int
) -> None:
    if not isinstance(model, str) or not model.strip():
        raise InputValidationError(f"model must be a non-empty string, got {model!r}")
    if temperature is not None and (not _is_number(temperature) or not 0 <= temperature <= 2):
        raise InputValidationError(f"temperature must be within 0-2 or None, got {temperature!r}")
    if timeout is not None and (
        not _is_number(timeout) or not 0 < timeout < math.inf  # NaN fails both comparisons
    ):
        raise InputValidationError(f"timeout must be positive seconds or None, got {timeout!r}")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InputValidationError(f"max_retries must be an integer >= 0, got {max_retries!r}")


#: The shortest HTTP timeout sent: an attempt out of time gets a request that fails at once.
_MIN_TIMEOUT = 0.01


def _content(response: object, where: str) -> str:
    if not isinstance(response, ChatCompletion):
        # The SDK hands back the body as it came when it is not JSON (an HTML error page
        # from a proxy, say): an answer like any other that the engine can retry.
        raise InvalidStageOutputError(
            f"{where}: the endpoint answered with something other than a chat completion: "
            f"{str(response)[:200]!r}"
        )
    # The SDK builds the completion without validating it: each level is checked for what it
    # is, or a reply such as {"choices": [null]} would fail as an AttributeError below.
    choices = response.choices
    if not isinstance(choices, list) or not choices:
        raise InvalidStageOutputError(f"{where}: the response has no choices")
    choice = choices[0]
    if not isinstance(choice, Choice):
        raise InvalidStageOutputError(f"{where}: the response's choice is not an object")
    message = choice.message
    if not isinstance(message, ChatCompletionMessage):
        raise InvalidStageOutputError(f"{where}: the response's choice has no message")
    refusal = getattr(message, "refusal", None)
    if refusal:
        raise InvalidStageOutputError(f"{where}: the model refused: {str(refusal)!r:.200}")
    if choice.finish_reason == "length":
        raise InvalidStageOutputError(
            f"{where}: the answer was cut off at the token limit (finish_reason='length')"
        )
    content = message.content
    if content is not None and not isinstance(content, str):
        raise InvalidStageOutputError(
            f"{where}: the answer is not text (content is a {type(content).__name__})"
        )
    if content is None or not content.strip():
        raise InvalidStageOutputError(f"{where}: the answer is empty")
    return content


def _tokens(usage: object, name: str, log: Any) -> int:
    """A token count of *usage*, or 0 (logged) when the server sent no usable number."""
    value = getattr(usage, name, None)
    # Some OpenAI-compatible servers send counts as floats (1000.0): numbers all the same.
    if _is_number(value) and 0 <= value <= _MAX_TOKENS:
        return round(value)
    log.warning("llm_usage_unreadable", field=name, value=repr(value)[:80])
    return 0


def retry_after_seconds(error: BaseException) -> float | None:
    """The wait an HTTP error's ``Retry-After`` (or ``retry-after-ms``) header asks for.

    Only the delay-seconds forms; an HTTP date or a missing header gives None.
    """
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        text = headers.get(name)
        try:
            seconds = float(text) * scale if text is not None else None
        except ValueError:
            continue
        if seconds is not None and math.isfinite(seconds) and seconds >= 0:
            return seconds
    return None


class OpenAIStage:
    """The plumbing both stages share: one lazy SDK client, the call, the cost."""

    _stage: ClassVar[str]
    _prompt_version: ClassVar[str]

    def __init__(
        self,
        *,
        model: str = "gpt-4o-mini",
        base_url: str | None = None,
        api_key: str | None = None,
        prices: Mapping[str, Price] | None = None,
        temperature: float | None = 0.0,
        timeout: float | None = None,
        max_retries: int = 0,
        client: openai.OpenAI | None = None,
    ) -> None:
        _check_settings(model, temperature, timeout, max_retries)
        if client is not None and (base_url is not None or api_key is not None):
            raise InputValidationError(
                "pass either client= or base_url=/api_key=, not both: a client already "
                "carries its endpoint and key"
            )
        if isinstance(client, openai.AsyncOpenAI):
            # Its create() returns a coroutine that nothing here awaits: every attempt would
            # fail as a reply that is no chat completion, without a request being sent.
            raise InputValidationError(
                f"client= must be a synchronous openai.OpenAI (or AzureOpenAI), got "
                f"{type(client).__name__}: the stages call it synchronously; pass an "
                "openai.OpenAI, or base_url=/api_key= and let the stage build one"
            )
        self.model = model
        self.temperature = temperature
        self.timeout = timeout
        self.max_retries = max_retries
        self._base_url = base_url
        self._api_key = api_key
        self._prices = PriceTable(prices)
        self._client = client
        self._owns_client = client is None
        self._lock = threading.Lock()
        #: Models that refused ``temperature`` (see :meth:`_create`): it is left out for them.
        self._no_temperature: set[str] = set()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the SDK client this object created (a ``client=`` passed in stays open)."""
        with self._lock:
            client = self._client if self._owns_client else None
            if self._owns_client:
                self._client = None
        if client is not None:
            client.close()

    def _sdk(self) -> openai.OpenAI:
        # One client per stage object, made on first use: it owns the connection pool, so
        # successive calls reuse connections, and merely building a stage touches no network.
        with self._lock:
            if self._client is None:
                try:
                    self._client = openai.OpenAI(
                        api_key=_resolve_api_key(self._api_key, self._base_url),
                        base_url=self._base_url,
                        max_retries=self.max_retries,
                    )
                except openai.OpenAIError as exc:  # no key: no later attempt finds one either
                    exc.retryable = False  # type: ignore[attr-defined]
                    raise
            return self._client

    def _ask(
        self, *, model: str | None, fields: Mapping[str, str], story_id: str, validate: _Validator
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Send the prompt; return the validated answer and its ``_meta``."""
        model = model or self.model
        prompt = _prompt(self._prompt_version)
        log = get_logger(story_id=story_id, stage=self._stage, model=model)
        where = f"{self._stage} of story {story_id!r} by {model}"
        messages = prompt.messages(fields)
        try:
            response = self._create(model, messages, log)
        except openai.APIStatusError as exc:
            # Read by the engine's retries (runner.py): how long to wait before the next
            # attempt, and whether one can succeed at all (not after a bad request, a wrong
            # key, an unknown model, a spent quota).
            exc.retry_after_seconds = retry_after_seconds(exc)  # type: ignore[attr-defined]
            exc.retryable = (  # type: ignore[attr-defined]
                exc.status_code not in _FINAL_STATUSES and exc.code not in _FINAL_CODES
            )
            raise
        except (ValueError, RecursionError) as exc:
            # A body that claimed to be JSON and is not: empty, cut, not UTF-8, an int past
            # Python's digit limit, nested past the parser's depth.
            raise InvalidStageOutputError(f"{where}: the endpoint's reply is not JSON") from exc
        meta = self._meta(response, model, prompt.version, log)
        content: str | None = None
        try:
            try:
                content = _content(response, where)
                answer = validate(parse_json_object(content, where), where)
            except _UNREADABLE as exc:  # a shape no check above foresaw
                raise InvalidStageOutputError(
                    f"{where}: the reply could not be read ({type(exc).__name__}: {exc})"
                ) from exc
        except InvalidStageOutputError as exc:
            # The call was paid even though its answer is unusable: keep that visible, and
            # what the model said (the failed attempt's row stores it).
            exc.cost = meta["cost_estimate"]
            if exc.answer is None:
                exc.answer = content
            log.warning("llm_answer_invalid", **meta)
            raise
        log.debug("llm_answer", **meta)
        return answer, meta

    def _create(self, model: str, messages: list[ChatCompletionMessageParam], log: Any) -> object:
        """Ask for the completion; once more without a temperature if the model rejects it.

        Reasoning models (o-series, gpt-5) take only their default temperature and answer any
        other with a 400 naming the parameter (a request not billed). A per-stage model
        (``review_model=``) can be one of them while the stage's own model is not, so the
        model's answer decides, not its name; the model is remembered for later calls.
        """
        params = self._optional_params(model)
        try:
            return self._sdk().chat.completions.create(
                model=model, messages=messages, response_format={"type": "json_object"}, **params
            )
        except openai.BadRequestError as exc:
            if "temperature" not in params or getattr(exc, "param", None) != "temperature":
                raise
        with self._lock:
            self._no_temperature.add(model)
        log.info("llm_temperature_dropped", temperature=params["temperature"])
        # Built again: without the temperature now, and with the time the attempt has left
        # after the rejection, not the time it had before the first request.
        return self._sdk().chat.completions.create(
            model=model,
            messages=messages,
            response_format={"type": "json_object"},
            **self._optional_params(model),
        )

    def _optional_params(self, model: str) -> dict[str, Any]:
        # Left out rather than sent as the SDK's omit/NOT_GIVEN sentinels, whose names changed
        # across SDK majors: the request then carries exactly what the caller configured.
        params: dict[str, Any] = {}
        if self.temperature is not None and model not in self._no_temperature:
            params["temperature"] = self.temperature
        # Per request, so it also applies to client=; within an engine's attempt, no longer
        # than the attempt has left: the engine would discard a later answer, paid for.
        timeout = self.timeout
        left = stage_time_left()
        if left is not None:
            timeout = max(_MIN_TIMEOUT, left if timeout is None else min(timeout, left))
        if timeout is not None:
            params["timeout"] = timeout
        return params

    def _meta(self, response: object, model: str, prompt_version: str, log: Any) -> dict[str, Any]:
        # Read defensively: the call was paid whatever shape its reply has, and a reply that
        # is not a proper completion is judged by _content, after its cost is known.
        usage = getattr(response, "usage", None)
        response_id = getattr(response, "id", None)
        reported = getattr(response, "model", None)
        reported = reported if isinstance(reported, str) else None
        if usage is None:
            log.warning("llm_usage_missing", response_id=response_id)
            prompt_tokens = completion_tokens = 0
        else:
            prompt_tokens = _tokens(usage, "prompt_tokens", log)
            completion_tokens = _tokens(usage, "completion_tokens", log)
        return {
            "cost_estimate": self._prices.cost(
                (model, reported or ""), prompt_tokens, completion_tokens
            ),
            "model": reported or model,
            "prompt_version": prompt_version,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
            "response_id": response_id,
        }
