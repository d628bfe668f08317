"""The offline editor: a deterministic reviewer and polisher that need no network."""

from __future__ import annotations

import difflib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from story_fsm._normalize import normalize_polish, normalize_review
from story_fsm.editors import _prose, _prose_lint
from story_fsm.editors.offline import RULES_VERSION, OfflinePolisher, OfflineReviewer
from story_fsm.errors import InputValidationError
from story_fsm.stages import StoryPolisher, StoryReviewer
from story_fsm.states import ReviewDecision

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = sorted((ROOT / "examples" / "stories").glob("*.txt"))
CRITERIA = {
    "readability",
    "sentence_length",
    "style_lint",
    "repetition",
    "filler_and_cliches",
    "passive_voice",
    "whitespace_punctuation",
}
ROUGH = (
    "It was a dark and stormy night.  Elsie was basically alone , and the the wind howled!! "
    "The door was slammed by the wind. She really wanted tea,and she was very tired."
)


def load(path: Path) -> tuple[str, str]:
    title, _, script = path.read_text(encoding="utf-8").partition("\n")
    return title, script


def review(script: str, reviewer: OfflineReviewer | None = None, **extra: Any) -> dict[str, Any]:
    return (reviewer or OfflineReviewer()).review_story(
        title="Title",
        script=script,
        audience_context={},
        original_idea="an idea",
        story_id="story-1",
        story_version="v1",
        local_review_summary=None,
        **extra,
    )


def polish(
    script: str,
    review_data: dict[str, Any] | None = None,
    polisher: OfflinePolisher | None = None,
    title: str = "Title",
    **extra: Any,
) -> dict[str, Any]:
    return (polisher or OfflinePolisher(max_criteria_per_round=None)).polish_story(
        story_id="story-1",
        current_title=title,
        current_script=script,
        expert_review_data=review(script) if review_data is None else review_data,
        iteration_number=1,
        audience_context={},
        original_idea="an idea",
        **extra,
    )


def words_of(text: str) -> list[str]:
    return [word.text.lower() for word in _prose.words(text)]


class TestProtocols:
    def test_reviewer_satisfies_the_protocol(self) -> None:
        """OfflineReviewer is a StoryReviewer."""
        assert isinstance(OfflineReviewer(), StoryReviewer)

    def test_polisher_satisfies_the_protocol(self) -> None:
        """OfflinePolisher is a StoryPolisher."""
        assert isinstance(OfflinePolisher(), StoryPolisher)

    def test_model_keyword_is_accepted_and_ignored(self) -> None:
        """Passing model= changes nothing: the offline editor has no model to pick."""
        assert review(ROUGH, model="gpt-x") == review(ROUGH)
        assert polish(ROUGH, model="gpt-x") == polish(ROUGH)

    @pytest.mark.parametrize("threshold", [-1, 100.5, float("nan"), "90", None, True])
    def test_bad_threshold_is_rejected(self, threshold: Any) -> None:
        """A threshold outside 0-100 (or not a number) fails at construction."""
        with pytest.raises(InputValidationError, match="publish_threshold"):
            OfflineReviewer(publish_threshold=threshold)

    @pytest.mark.parametrize("value", [0, -2, 1.5, True, "3"])
    def test_bad_criteria_per_round_is_rejected(self, value: Any) -> None:
        """max_criteria_per_round must be a positive integer or None."""
        with pytest.raises(InputValidationError, match="max_criteria_per_round"):
            OfflinePolisher(max_criteria_per_round=value)


class TestReview:
    def test_review_has_the_documented_shape(self) -> None:
        """decision, score, criteria, findings, feedback, overall_assessment and _meta."""
        data = review(ROUGH)
        assert data["decision"] in ("publish", "polish")
        assert set(data["criteria"]) == CRITERIA
        assert data["overall_assessment"] == {"quality_score": data["quality_score"]}
        assert data["_meta"] == {
            "cost_estimate": 0.0,
            "editor": "offline",
            "version": RULES_VERSION,
            "proselint": _prose_lint.PROSELINT_VERSION,
        }
        assert data["feedback"] and all(isinstance(line, str) for line in data["feedback"])
        assert json.loads(json.dumps(data, allow_nan=False)) == data

    def test_score_is_a_rounded_weighted_mean_of_the_criteria(self) -> None:
        """The score lies in 0-100, has one decimal and is the weighted criteria mean."""
        data = review(ROUGH)
        grades = data["criteria"].values()
        assert sum(g["weight"] for g in grades) == pytest.approx(1.0)
        assert all(0 <= g["score"] <= 100 for g in grades)
        weighted = sum(g["score"] * g["weight"] for g in grades)
        assert data["quality_score"] == pytest.approx(weighted, abs=0.051)
        assert round(data["quality_score"], 1) == data["quality_score"]

    def test_review_passes_the_engine_normalizer(self) -> None:
        """normalize_review accepts the answer and reads decision, score and zero cost."""
        data = review(ROUGH)
        outcome = normalize_review(data)
        assert outcome.decision is ReviewDecision(data["decision"])
        assert outcome.quality_score == data["quality_score"]
        assert outcome.cost == 0.0

    def test_rough_text_scores_lower_than_clean_text(self) -> None:
        """A clean text scores 100 without findings; the rough one loses points."""
        clean = review("The cat sat by the fire. It purred and watched the rain on the window.")
        assert clean["quality_score"] == 100.0
        assert clean["findings"] == []
        assert review(ROUGH)["quality_score"] < 70

    @pytest.mark.parametrize(
        ("threshold", "decision"), [(0.0, "publish"), (100.0, "polish"), (90.0, "polish")]
    )
    def test_threshold_decides(self, threshold: float, decision: str) -> None:
        """The decision is publish exactly when the score reaches the threshold."""
        assert review(ROUGH, OfflineReviewer(publish_threshold=threshold))["decision"] == decision

    def test_empty_script_scores_zero(self) -> None:
        """A script without words gets 0 and a polish decision, not an error."""
        data = review("   \n")
        assert data["quality_score"] == 0.0
        assert data["decision"] == "polish"

    @pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
    def test_findings_point_at_their_excerpts(self, path: Path) -> None:
        """Every finding's start/end slice the script to exactly its excerpt."""
        _, script = load(path)
        findings = review(script)["findings"]
        assert findings
        for finding in findings:
            assert script[finding["start"] : finding["end"]] == finding["excerpt"]
            assert finding["criterion"] in CRITERIA
            assert finding["suggestion"] is None or isinstance(finding["suggestion"], str)

    @pytest.mark.parametrize(
        ("text", "criterion", "excerpt"),
        [
            ("It was a dark and stormy night.", "filler_and_cliches", "a dark and stormy night"),
            ("She opened the the door.", "repetition", "the the"),
            ("She really wanted tea.", "filler_and_cliches", "really"),
            ("The door was slammed by the wind.", "passive_voice", None),
            ("She ran  home.", "whitespace_punctuation", "  "),
            ("The plan was absolutely essential.", "style_lint", "absolutely essential"),
        ],
    )
    def test_each_check_reports_its_finding(
        self, text: str, criterion: str, excerpt: str | None
    ) -> None:
        """Each kind of flaw yields a finding of the right criterion at the right place."""
        found = [f for f in review(text)["findings"] if f["criterion"] == criterion]
        assert found
        if excerpt is not None:
            assert found[0]["excerpt"] == excerpt

    def test_dialogue_keeps_its_voice(self) -> None:
        """Filler inside quotes is not a finding; narration filler is."""
        data = review('"I really mean it," she said. She really did.')
        fillers = [f for f in data["findings"] if f["criterion"] == "filler_and_cliches"]
        assert [f["start"] for f in fillers] == [data["findings"][0]["start"]]
        assert fillers[0]["start"] > len('"I really mean it," she said.')

    @pytest.mark.parametrize(
        "text",
        [
            "'I really want it,' she said. 'It is just perfect.'",
            "He said, \u2018It was quite a few weeks, and I simply cannot wait.\u2019",
            '"I went to the shore. It was really cold.\n\n"Then it was just dark."',
            'The 6" board was long. "I just want it," she said.',
        ],
        ids=["single-quotes", "curly-single", "two-paragraphs", "inch-mark"],
    )
    def test_dialogue_in_any_quotes_keeps_its_voice(self, text: str) -> None:
        """Single quotes, a quotation over two paragraphs, an inch mark before one: the
        dialogue is not edited, and the change log claims no edit inside it."""
        answer = polish(text)
        assert answer["polished_script"] == text
        assert not [c for c in answer["change_log"] if c["criterion"] == "filler_and_cliches"]

    def test_an_apostrophe_opens_no_quotation(self) -> None:
        """it's, the dogs' bowls: narration still, so its filler is still found."""
        text = "It's the dogs' bowls that really matter to them."
        fillers = [f for f in review(text)["findings"] if f["criterion"] == "filler_and_cliches"]
        assert [f["excerpt"] for f in fillers] == ["really"]

    def test_accented_latin_letters_belong_to_their_words(self) -> None:
        """ "Bär", "mañana", "naïve" are words (they were cut at each accented letter)."""
        assert words_of("Der Bär, mañana, naïve façade × 42.") == [
            "der",
            "bär",
            "mañana",
            "naïve",
            "façade",
        ]


class TestDeterminism:
    def test_same_story_same_review(self) -> None:
        """Two reviewers give byte-identical reviews of the same story."""
        _, script = load(SAMPLES[0])
        first = json.dumps(review(script), sort_keys=True)
        assert json.dumps(review(script, OfflineReviewer()), sort_keys=True) == first

    def test_same_review_same_polish(self) -> None:
        """Polishing the same story with the same review gives the same answer."""
        _, script = load(SAMPLES[0])
        data = review(script)
        assert polish(script, data, OfflinePolisher()) == polish(script, data, OfflinePolisher())


class TestPolishRules:
    @pytest.mark.parametrize(
        "sentence",
        [
            "The report was finished by Friday.",
            "The car was parked by the house.",
            "The boat was moored by the dock.",
            "The cake was made by a baker from Paris.",
            "The letter was written by the girl that lived next door.",
        ],
    )
    def test_a_passive_is_not_turned_round_when_by_is_no_agent(self, sentence: str) -> None:
        """By a time or a place, or with a tail that may be the agent's: left as written."""
        from story_fsm.editors._prose_sentences import active_rewrite

        assert active_rewrite(sentence) is None

    def test_the_last_item_of_a_list_is_not_split_off(self) -> None:
        """ ", and the compass" closes a list: split there, it would be a verbless sentence.
        A clause after ", and" is still split off."""
        from story_fsm.editors._prose_sentences import split_run_on

        listed = (
            "She packed the bags, the lamps, the maps of the whole coast, and the old brass "
            "compass that her father had left her many years before the long war began."
        )
        assert split_run_on(listed) is None
        clause = (
            "The storm rolled in from the sea before dawn and flattened the dunes, and the "
            "keeper watched the waves climb the rocks until the lamp went dark at last."
        )
        assert split_run_on(clause) == (
            "The storm rolled in from the sea before dawn and flattened the dunes. The "
            "keeper watched the waves climb the rocks until the lamp went dark at last."
        )

    def test_a_passive_with_a_real_agent_is_still_turned_round(self) -> None:
        """The rewrite itself stays: "by the wind", "by Max after dinner", "by him"."""
        from story_fsm.editors._prose_sentences import active_rewrite

        assert active_rewrite("The door was slammed by the wind.") == "The wind slammed the door."
        assert active_rewrite("The cake was eaten by Max after dinner.") == (
            "Max ate the cake after dinner."
        )
        assert active_rewrite("The vase was broken by him.") == "He broke the vase."

    @pytest.mark.parametrize(
        ("before", "after"),
        [
            ("It was a dark and stormy night.", "It was a stormy night."),
            ("The plan was absolutely essential.", "The plan was essential."),
            ("She opened the the door.", "She opened the door."),
            ("She really wanted tea.", "She wanted tea."),
            ("Basically, the plan failed.", "The plan failed."),
            ("Suddenly, the lights went out.", "The lights went out."),
            ("It was very cold.", "It was cold."),
            ("She  ran home.", "She ran home."),
            ("She ran home .", "She ran home."),
            ("Stop!! Who?!", "Stop! Who?"),
            ("Wait.... Then,, silence.", "Wait\u2026 Then, silence."),
            ("Yes,no.", "Yes, no."),
            ("Yes,very good.", "Yes, good."),
            ("The door was slammed by the wind.", "The wind slammed the door."),
            ("He was seen by her.", "She saw him."),
            ("The cake was eaten by the dog after dinner.", "The dog ate the cake after dinner."),
            # A deleted filler capitalizes the next word only where it opened the sentence
            # (it was capitalized); a name like iPhone keeps its case.
            pytest.param(
                'He shouted "Go!" just as the door opened.',
                'He shouted "Go!" as the door opened.',
                id="after-quoted-shout",
            ),
            pytest.param(
                "We met at 5 p.m. just before dinner.",
                "We met at 5 p.m. before dinner.",
                id="after-abbreviation",
            ),
            pytest.param(
                "The old man\nreally wanted to see the sea.",
                "The old man\nwanted to see the sea.",
                id="hard-wrapped",
            ),
            pytest.param(
                "Really, iPhones are everywhere.", "iPhones are everywhere.", id="mixed-case"
            ),
            # ".22" and ".env" are no sentence ends, a URL's comma is no prose, a deleted word
            # leaves no space at a line's end, a decomposed "é" is not accented twice.
            pytest.param(
                "He carried a .22 rifle , and left.",
                "He carried a .22 rifle, and left.",
                id="dot-number",
            ),
            pytest.param("Open the .env file first.", "Open the .env file first.", id="dot-file"),
            pytest.param(
                "Visit www.example.com/a,b today.", "Visit www.example.com/a,b today.", id="url"
            ),
            pytest.param("It was really\nlate.", "It was\nlate.", id="before-a-line-break"),
            pytest.param("It was quite\u00a0good.", "It was good.", id="no-break-space"),
            pytest.param("The cafe\u0301 was full.", "The cafe\u0301 was full.", id="nfd"),
            # "quite a few" is many and "had just" tells when: those stay.
            pytest.param(
                "There were quite a few people here.",
                "There were quite a few people here.",
                id="quite-a-few",
            ),
            pytest.param(
                "She had just arrived when it rained.",
                "She had just arrived when it rained.",
                id="had-just",
            ),
            pytest.param("We'd just left.", "We'd just left.", id="contracted-had-just"),
            pytest.param("It was quite good.", "It was good.", id="plain-quite"),
            pytest.param("She just smiled.", "She smiled.", id="plain-just"),
        ],
    )
    def test_rule_fixes_crafted_input(self, before: str, after: str) -> None:
        """Each polish rule turns its crafted flaw into the expected text, and only that."""
        assert polish(before)["polished_script"] == after

    def test_run_on_sentence_is_split_at_a_new_subject(self) -> None:
        """A long ', and she ...' sentence becomes two, the second capitalized."""
        text = (
            "Elsie locked the shed and checked the lamp twice before bed, and she walked down "
            "to the landing to watch the boats come in from the grey sea, and the gulls "
            "circled above her as the light faded."
        )
        result = polish(text)["polished_script"]
        assert result == (
            "Elsie locked the shed and checked the lamp twice before bed. She walked down to "
            "the landing to watch the boats come in from the grey sea, and the gulls circled "
            "above her as the light faded."
        )

    @pytest.mark.parametrize(
        "text",
        [
            "Really. Very.",
            '"I really mean it," she said.',
            "It was, to a certain degree, true.",
            "The kittens were carried upstairs.",
        ],
    )
    def test_unsafe_edits_are_left_alone(self, text: str) -> None:
        """One-word sentences, dialogue and agentless passives are not rewritten."""
        assert polish(text)["polished_script"] == text

    def test_change_log_says_what_changed_and_why(self) -> None:
        """Each edit is logged with criterion, action, before, after and reason."""
        log = polish("She opened the the door.")["change_log"]
        assert log == [
            {
                "criterion": "repetition",
                "action": "replace",
                "before": "the the",
                "after": "the",
                "reason": log[0]["reason"],
            }
        ]
        assert "repeated" in log[0]["reason"]

    def test_title_whitespace_is_normalized_and_logged(self) -> None:
        """A title with stray spaces comes back tidy, with a change-log entry."""
        answer = polish("She ran home.", title="  The   Run ")
        assert answer["polished_title"] == "The Run"
        assert answer["change_log"][-1]["before"] == "  The   Run "

    def test_polish_passes_the_engine_normalizer(self) -> None:
        """normalize_polish accepts the answer and counts the change log."""
        answer = polish(ROUGH)
        outcome = normalize_polish(answer, "Title")
        assert outcome.script == answer["polished_script"]
        assert outcome.changes_count == len(answer["change_log"]) > 0
        assert outcome.cost == 0.0

    def test_polish_fixes_what_the_review_measured(self) -> None:
        """After one full polish the rough text has no fixable findings left but the split."""
        before = review(ROUGH)
        after = review(polish(ROUGH, before)["polished_script"])
        assert after["quality_score"] > before["quality_score"]
        assert sum(f["suggestion"] is not None for f in after["findings"]) < sum(
            f["suggestion"] is not None for f in before["findings"]
        )

    def test_one_criterion_per_round_when_asked(self) -> None:
        """max_criteria_per_round=1 touches only the costliest fixable criterion."""
        answer = polish(ROUGH, polisher=OfflinePolisher(max_criteria_per_round=1))
        assert len(answer["addressed_criteria"]) == 1
        assert {e["criterion"] for e in answer["change_log"]} == set(answer["addressed_criteria"])

    def test_empty_script_is_rejected(self) -> None:
        """There is nothing to polish in an empty script; the polisher says so."""
        with pytest.raises(InputValidationError, match="story-1"):
            polish("  ", review_data={})


class TestForeignReviews:
    def test_review_without_findings_is_measured_afresh(self) -> None:
        """A review with only a decision and score still gets the story polished."""
        answer = polish("She opened the the door.", {"decision": "polish", "quality_score": 40})
        assert answer["polished_script"] == "She opened the door."

    def test_findings_with_wrong_offsets_are_relocated(self) -> None:
        """A foreign finding whose excerpt occurs once is applied where it really is."""
        foreign = {
            "findings": [
                {"criterion": "tone", "excerpt": "gloomy", "suggestion": "grey", "start": 0}
            ]
        }
        answer = polish("The sky was gloomy.", foreign)
        assert answer["polished_script"] == "The sky was grey."
        assert answer["change_log"][0]["criterion"] == "tone"

    def test_stale_findings_are_ignored(self) -> None:
        """Findings that no longer match the script are dropped, not guessed at."""
        stale = {"findings": [{"excerpt": "not in the story", "suggestion": "x", "start": 3}]}
        answer = polish("She opened the the door.", stale)
        assert answer["polished_script"] == "She opened the door."

    def test_foreign_deletion_of_a_sentence_is_refused(self) -> None:
        """A foreign finding that would cut a whole sentence out is not applied."""
        sentence = "The lamp burned all night long over the black and restless water."
        foreign = {"findings": [{"excerpt": sentence, "suggestion": "", "start": 0}]}
        answer = polish(f"Elsie woke. {sentence}", foreign)
        assert sentence in answer["polished_script"]
        assert all(entry["before"] != sentence for entry in answer["change_log"])


class TestSampleStories:
    def test_there_are_sample_stories(self) -> None:
        """At least two bundled samples, each a title line and 250-600 words."""
        assert len(SAMPLES) >= 2
        for path in SAMPLES:
            title, script = load(path)
            assert title.strip()
            assert 250 <= len(script.split()) <= 600

    @pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.stem)
    def test_score_rises_from_review_to_review(self, path: Path) -> None:
        """review -> polish x3: v1 is not publishable, v2 beats v1, v3 never drops."""
        reviewer, polisher = OfflineReviewer(), OfflinePolisher()
        title, script = load(path)
        scores, first_words = [], words_of(script)
        for iteration in (1, 2, 3):
            data = review(script, reviewer)
            scores.append(data["quality_score"])
            answer = polish(script, data, polisher, title=title)
            # The same story: most words survive, no sentence disappears.
            ratio = difflib.SequenceMatcher(None, first_words, words_of(script)).ratio()
            assert ratio > 0.85, f"v{iteration} drifted from the original ({ratio:.2f})"
            assert len(_prose.sentences(answer["polished_script"])) >= len(_prose.sentences(script))
            title, script = answer["polished_title"], answer["polished_script"]
        assert scores[0] < 90
        assert scores[0] < scores[1] <= scores[2], scores

    def test_review_is_fast(self) -> None:
        """A 600-word story is reviewed well under a second, cold caches included."""
        _, script = load(SAMPLES[0])
        text = " ".join((script + " " + script).split()[:600])
        _prose_lint._checks.cache_clear()
        start = time.perf_counter()
        review(text)
        assert time.perf_counter() - start < 1.0


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise OSError("network access is disabled in this test")


class TestNoNetwork:
    def test_review_and_polish_with_sockets_blocked(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With every socket call failing, a cold review and a polish still work."""
        for name in ("connect", "connect_ex", "sendto"):
            monkeypatch.setattr(socket.socket, name, _no_network)
        monkeypatch.setattr(socket, "create_connection", _no_network)
        monkeypatch.setattr(socket, "getaddrinfo", _no_network)
        # Drop the loaded dictionary and compiled checks so they load again under the block.
        _prose._dictionary.cache_clear()
        _prose.syllables.cache_clear()
        _prose_lint._checks.cache_clear()
        data = review(ROUGH)
        assert normalize_review(data).quality_score < 90
        assert normalize_polish(polish(ROUGH, data), "Title").changes_count > 0

    def test_fresh_process_writes_nothing_and_opens_no_socket(self, tmp_path: Path) -> None:
        """Importing and running the editor with a read-only HOME opens no socket or file."""
        home = tmp_path / "home"
        home.mkdir()
        home.chmod(0o500)
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PYTHONPATH": str(ROOT),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        result = subprocess.run(
            [sys.executable, "-c", _AUDITED_RUN],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout.splitlines()[-1])
        assert report["events"] == []
        assert report["score"] < report["polished_score"]
        assert list(home.iterdir()) == []


# Runs in a child process: audit hooks cannot be removed, so they must not touch pytest's.
_AUDITED_RUN = """
import json, os, sys

events = []
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND

def hook(event, args):
    if event.startswith("socket."):
        events.append(event)
    elif event == "open":
        path, mode, flags = args
        writes = any(c in mode for c in "wax+") if isinstance(mode, str) else flags & WRITE_FLAGS
        if writes:
            events.append(f"open {path} {mode or flags}")
    elif event in ("os.mkdir", "os.rename", "os.remove", "os.truncate", "shutil.copyfile"):
        events.append(f"{event} {args[0]}")

sys.addaudithook(hook)
from story_fsm.editors.offline import OfflinePolisher, OfflineReviewer

script = "It was a dark and stormy night.  She really wanted the the tea!!"
common = {"audience_context": {}, "original_idea": "", "story_id": "s"}
first = OfflineReviewer().review_story(
    title="T", script=script, story_version="v1", local_review_summary=None, **common
)
answer = OfflinePolisher().polish_story(
    current_title="T", current_script=script, expert_review_data=first, iteration_number=1,
    **common,
)
second = OfflineReviewer().review_story(
    title="T", script=answer["polished_script"], story_version="v2", local_review_summary=None,
    **common,
)
print(json.dumps({
    "events": events,
    "score": first["quality_score"],
    "polished_score": second["quality_score"],
}))
"""
