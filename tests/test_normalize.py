"""Normalizing the stages' answers: every accepted shape, every bad one."""

from __future__ import annotations

import enum
import json
import math
from typing import Any

import pytest
from structlog.testing import capture_logs

from story_fsm import InvalidStageOutputError, ReviewDecision
from story_fsm._normalize import normalize_polish, normalize_review


class Assessment:
    def __init__(self, score: Any) -> None:
        self.quality_score = score


class ReviewObject:
    """The pipeline's review object: .decision, .overall_assessment, .to_dict()."""

    def __init__(self, decision: Any, score: Any) -> None:
        self.decision = decision
        self.overall_assessment = Assessment(score)

    def to_dict(self) -> dict[str, Any]:
        return {"decision": str(self.decision), "overall_assessment": {"quality_score": 1}}


class PolishObject:
    def __init__(self, script: Any) -> None:
        self.polished_title = "New"
        self.polished_script = script
        self.change_log = ["a", "b", "c"]

    def to_dict(self) -> dict[str, Any]:
        return {"polished_title": self.polished_title, "note": "object"}


class TestReview:
    def test_mapping_with_top_level_score(self) -> None:
        """A mapping with decision and quality_score is read as is."""
        out = normalize_review({"decision": "publish", "quality_score": 97, "x": [1]})
        assert (out.decision, out.quality_score, out.data["x"]) == (
            ReviewDecision.PUBLISH,
            97.0,
            [1],
        )

    def test_mapping_with_nested_score(self) -> None:
        """The score may sit at overall_assessment.quality_score."""
        out = normalize_review(
            {"decision": "POLISH ", "overall_assessment": {"quality_score": 61.5}}
        )
        assert (out.decision, out.quality_score) == (ReviewDecision.POLISH, 61.5)

    def test_object_shape_prefers_typed_attributes(self) -> None:
        """An object's .decision and .overall_assessment win over its dict form."""
        out = normalize_review(ReviewObject(ReviewDecision.POLISH, 42))
        assert (out.decision, out.quality_score) == (ReviewDecision.POLISH, 42.0)
        assert out.data["decision"] == "polish"

    @pytest.mark.parametrize(
        ("data", "cost"),
        [
            ({"_meta": {"cost_estimate": 0.125}}, 0.125),
            ({"cost": 2}, 2.0),
            ({}, 0.0),
            ({"_meta": {"cost_estimate": 0.5}, "cost": 9}, 0.5),
        ],
    )
    def test_cost_is_read_from_meta_or_top_level(self, data: dict[str, Any], cost: float) -> None:
        """Cost comes from _meta.cost_estimate, else a top-level cost, else 0."""
        assert normalize_review({"decision": "polish", "quality_score": 5, **data}).cost == cost

    def test_unreadable_cost_is_logged_and_counted_as_zero(self) -> None:
        """A paid answer is not thrown away over a bad cost field; the problem is logged."""
        with capture_logs() as logs:
            out = normalize_review({"decision": "polish", "quality_score": 5, "cost": "lots"})
        assert out.cost == 0.0
        assert [e["event"] for e in logs] == ["stage_cost_unreadable"]

    @pytest.mark.parametrize(
        "cost",
        [1e308, 1e9 * 1.5, 10**400, -0.5, pytest.param(10**5000, id="an-int-too-long-for-text")],
    )
    def test_absurd_cost_is_counted_as_zero(self, cost: float) -> None:
        """A cost no call can have (sums of which would overflow the database's float)."""
        with capture_logs() as logs:
            out = normalize_review({"decision": "polish", "quality_score": 5, "cost": cost})
        assert out.cost == 0.0
        assert [e["event"] for e in logs] == ["stage_cost_unreadable"]
        json.dumps(out.data, allow_nan=False)  # the paid answer is kept, storable as it is
        assert normalize_review({"decision": "polish", "quality_score": 5, "cost": 1e9}).cost == 1e9

    @pytest.mark.parametrize("where", ["cost", "_meta"])
    @pytest.mark.parametrize("cost", [math.nan, math.inf, -math.inf])
    def test_non_finite_cost_keeps_the_answer(self, cost: float, where: str) -> None:
        """NaN or an infinity as the cost: the answer is kept, the cost stored as its text."""
        field = {"cost": cost} if where == "cost" else {"_meta": {"cost_estimate": cost, "n": 1}}
        with capture_logs() as logs:
            out = normalize_review({"decision": "polish", "quality_score": 5, **field})
        assert out.cost == 0.0
        assert [e["event"] for e in logs] == ["stage_cost_unreadable"]
        stored = out.data["cost"] if where == "cost" else out.data["_meta"]["cost_estimate"]
        assert stored == repr(cost)
        if where == "_meta":
            assert out.data["_meta"]["n"] == 1
        json.dumps(out.data, allow_nan=False)  # storable as it is
        polish = normalize_polish({"polished_script": "S", **field}, "T")
        assert (polish.cost, polish.script) == (0.0, "S")

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (None, "returned None"),
            ("publish", "expected a mapping"),
            ({"decision": "ship it", "quality_score": 90}, "decision"),
            ({"quality_score": 90}, "decision"),
            ({"decision": "publish"}, "not a number"),
            ({"decision": "publish", "quality_score": "90"}, "not a number"),
            ({"decision": "publish", "quality_score": True}, "not a number"),
            ({"decision": "publish", "quality_score": math.nan}, "0-100"),
            ({"decision": "publish", "quality_score": 101}, "0-100"),
            ({"decision": "publish", "quality_score": -1}, "0-100"),
            ({"decision": "publish", "quality_score": math.inf}, "0-100"),
            # Too big for a float: refused as out of range, not an OverflowError.
            ({"decision": "publish", "quality_score": 10**400}, "0-100"),
            ({"decision": "publish", "quality_score": 10**5000}, "an int of about 5000 digits"),
        ],
    )
    def test_bad_review_is_invalid_output(self, raw: Any, message: str) -> None:
        """Each malformed review raises InvalidStageOutputError with the reason."""
        with pytest.raises(InvalidStageOutputError, match=message):
            normalize_review(raw)


class TestRefusedButPaid:
    @pytest.mark.parametrize(
        "answer",
        [
            {"decision": "publish", "quality_score": 150, "_meta": {"cost_estimate": 0.4}},
            {"decision": "maybe", "quality_score": 90, "cost": 0.4},
            {"decision": "polish", "quality_score": "high", "_meta": {"cost_estimate": 0.4}},
        ],
    )
    def test_a_refused_review_carries_the_cost_it_stated(self, answer: dict[str, Any]) -> None:
        """The call was paid for: the refusal says how much, for the failed attempt's row."""
        with pytest.raises(InvalidStageOutputError) as caught:
            normalize_review(answer)
        assert caught.value.cost == 0.4

    @pytest.mark.parametrize(
        "answer",
        [
            {"polished_script": "", "cost": 0.4},
            {"polished_script": "a\x00b", "_meta": {"cost_estimate": 0.4}},
        ],
    )
    def test_a_refused_polish_carries_the_cost_it_stated(self, answer: dict[str, Any]) -> None:
        """Same for a polish with no usable script."""
        with pytest.raises(InvalidStageOutputError) as caught:
            normalize_polish(answer, "T")
        assert caught.value.cost == 0.4

    def test_a_refusal_without_a_stated_cost_costs_nothing(self) -> None:
        """No cost field: the refusal carries 0."""
        with pytest.raises(InvalidStageOutputError) as caught:
            normalize_review({"decision": "publish", "quality_score": -1})
        assert caught.value.cost == 0.0


class TestPolish:
    def test_mapping_shape(self) -> None:
        """A mapping gives title, script and the change count."""
        out = normalize_polish(
            {"polished_title": "T2", "polished_script": "S2", "change_log": ["x", "y"]}, "T1"
        )
        assert (out.title, out.script, out.changes_count) == ("T2", "S2", 2)

    def test_object_shape(self) -> None:
        """An object's attributes are read; its to_dict() is what the audit trail keeps."""
        out = normalize_polish(PolishObject("new script"), "old")
        assert (out.title, out.script, out.changes_count) == ("New", "new script", 3)
        assert out.data == {"polished_title": "New", "note": "object"}

    def test_missing_title_keeps_the_current_one(self) -> None:
        """A polish without a title keeps the story's title."""
        assert normalize_polish({"polished_script": "S"}, "Kept").title == "Kept"

    @pytest.mark.parametrize(
        ("raw", "message"),
        [
            (None, "returned None"),
            ({"polished_title": "T"}, "polished_script"),
            ({"polished_script": "   "}, "polished_script"),
            ({"polished_script": 7}, "polished_script"),
            (PolishObject(None), "polished_script"),
            ({"polished_script": "a\x00b"}, "polished_script contains a NUL"),
            ({"polished_script": "a\ud800b"}, "polished_script contains an unpaired surrogate"),
            ({"polished_script": "S", "polished_title": "T\x00"}, "polished_title contains"),
        ],
    )
    def test_bad_polish_is_invalid_output(self, raw: Any, message: str) -> None:
        """A polish with no usable script raises InvalidStageOutputError."""
        with pytest.raises(InvalidStageOutputError, match=message):
            normalize_polish(raw, "T")


class Color(enum.IntEnum):
    RED = 1


JSON_SHAPES = [
    pytest.param({"a": "text é \udc80", "n": 3, "f": 0.1, "b": True, "z": None}, id="plain"),
    pytest.param({"nested": {"list": [1, [2.5, {"k": "v"}]], "empty": {}}}, id="nested"),
    pytest.param({"t": (1, 2)}, id="tuple-becomes-list"),
    pytest.param({"d": {1: "int key", 2.5: "float key"}}, id="keys-become-strings"),
    pytest.param({"e": Color.RED}, id="int-enum"),
    pytest.param({"o": complex(1, 2)}, id="object-becomes-str"),
    pytest.param({"big": 10**30, "neg": -0.0}, id="big-int-negative-zero"),
]


class TestStoredAnswers:
    @pytest.mark.parametrize("answer", JSON_SHAPES)
    def test_stored_answer_equals_a_json_round_trip(self, answer: dict[str, Any]) -> None:
        """What is stored is exactly what reading it back from JSON gives, for every shape."""
        raw = {"decision": "polish", "quality_score": 50, **answer}
        expected = json.loads(json.dumps(raw, default=str, allow_nan=False))
        data = normalize_review(raw).data
        assert data == expected
        assert json.dumps(data, sort_keys=True) == json.dumps(expected, sort_keys=True)
        assert [type(v) for v in data.values()] == [type(v) for v in expected.values()]

    def test_stored_answer_is_a_copy(self) -> None:
        """Mutating the stage's answer afterwards does not change what was normalized."""
        raw = {"decision": "polish", "quality_score": 50, "notes": ["a"], "m": {"k": 1}}
        data = normalize_review(raw).data
        raw["notes"].append("b")  # type: ignore[attr-defined]
        raw["m"]["k"] = 2  # type: ignore[index]
        assert data["notes"] == ["a"] and data["m"] == {"k": 1}

    @pytest.mark.parametrize("bad", [math.inf, -math.nan], ids=["inf", "nan"])
    def test_non_finite_numbers_anywhere_are_refused(self, bad: float) -> None:
        """A NaN or infinity anywhere in an answer is not JSON: a typed error, not a row."""
        with pytest.raises(InvalidStageOutputError, match="not JSON"):
            normalize_review({"decision": "polish", "quality_score": 50, "x": [{"y": bad}]})

    def test_circular_answer_is_refused(self) -> None:
        """An answer that contains itself is refused with a typed error."""
        loop: dict[str, Any] = {"decision": "polish", "quality_score": 50}
        loop["self"] = loop
        with pytest.raises(InvalidStageOutputError):
            normalize_review(loop)


class Broken:
    """A value whose repr() and str() both fail."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


class Shouting(str):
    """A decision text whose strip() fails."""

    def strip(self, chars: str | None = None) -> str:
        raise RuntimeError("no strip")


class UnreadableMapping(dict[str, Any]):
    """A mapping that cannot be iterated."""

    def __iter__(self) -> Any:
        raise RuntimeError("no iteration")

    def keys(self) -> Any:
        raise RuntimeError("no keys")


class FailingToDict:
    def to_dict(self) -> dict[str, Any]:
        raise RuntimeError("to_dict failed")


class FailingDecision:
    """An answer object whose ``decision`` attribute raises; its dict states a cost."""

    @property
    def decision(self) -> str:
        raise RuntimeError("no decision")

    def to_dict(self) -> dict[str, Any]:
        return {"decision": "publish", "quality_score": 90, "cost": 0.4}


class FailingChangeLog:
    """A polish object whose ``change_log`` attribute raises; its dict states a cost."""

    polished_script = "S"

    @property
    def change_log(self) -> list[str]:
        raise RuntimeError("no change log")

    def to_dict(self) -> dict[str, Any]:
        return {"polished_script": "S", "cost": 0.4}


PAID = {"cost": 0.4}

ODD_REVIEWS = [
    pytest.param(UnreadableMapping(), 0.0, id="mapping-that-cannot-be-read"),
    pytest.param(FailingToDict(), 0.0, id="to-dict-raises"),
    pytest.param(FailingDecision(), 0.4, id="attribute-raises"),
    pytest.param({"decision": 10**5000, "quality_score": 5, **PAID}, 0.4, id="huge-int-decision"),
    pytest.param(
        {"decision": Broken(), "quality_score": 5, **PAID}, 0.4, id="unprintable-decision"
    ),
    pytest.param(
        {"decision": "publish", "quality_score": Broken(), **PAID}, 0.4, id="unprintable-score"
    ),
    pytest.param({"decision": Shouting("publish"), "quality_score": 5, **PAID}, 0.4, id="odd-str"),
    pytest.param(
        {"decision": "publish", "quality_score": 5, "x": Broken(), **PAID}, 0.4, id="no-str"
    ),
]

ODD_POLISHES = [
    pytest.param({"polished_script": 10**5000, **PAID}, id="huge-int-script"),
    pytest.param({"polished_script": Broken(), **PAID}, id="unprintable-script"),
    pytest.param(FailingChangeLog(), id="attribute-raises"),
]


class TestOddAnswers:
    @pytest.mark.parametrize(("answer", "cost"), ODD_REVIEWS)
    def test_an_odd_review_is_invalid_output_and_keeps_its_cost(
        self, answer: Any, cost: float
    ) -> None:
        """An answer whose reading raises is refused as InvalidStageOutputError, with the cost
        it stated (a paid call), never with the error of reading it."""
        with pytest.raises(InvalidStageOutputError) as caught:
            normalize_review(answer)
        assert caught.value.cost == cost

    @pytest.mark.parametrize("answer", ODD_POLISHES)
    def test_an_odd_polish_is_invalid_output_and_keeps_its_cost(self, answer: Any) -> None:
        """The same for a polish."""
        with pytest.raises(InvalidStageOutputError) as caught:
            normalize_polish(answer, "T")
        assert caught.value.cost == 0.4

    @pytest.mark.parametrize(
        ("answer", "message"),
        [
            pytest.param(
                {"decision": 10**5000, "quality_score": 5},
                "decision must be 'publish' or 'polish', got <an int of about 5000 digits>",
                id="huge-int-decision",
            ),
            pytest.param(
                {"decision": Broken(), "quality_score": 5},
                r"got <Broken object whose repr\(\) failed>",
                id="unprintable-decision",
            ),
            pytest.param(
                FailingToDict(),
                "the review stage's answer could not be read: RuntimeError: to_dict failed",
                id="to-dict-raises",
            ),
        ],
    )
    def test_the_refusal_says_what_was_wrong(self, answer: Any, message: str) -> None:
        """The message names the field, or the error that reading the answer raised."""
        with pytest.raises(InvalidStageOutputError, match=message):
            normalize_review(answer)
