"""The state diagrams: drawn from the machine's one table, committed, and kept in step with it."""

from __future__ import annotations

import errno
import hashlib
import html
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from story_fsm import (
    InputValidationError,
    StageFailedError,
    StoryWorkflowOrchestrator,
    TransitionRecord,
    Trigger,
    WorkflowConfig,
    WorkflowNotFoundError,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm.cli import app
from story_fsm.diagrams import (
    DIAGRAM_NAME,
    FORMATS,
    main,
    render_history_diagram,
    render_workflow_diagram,
    workflow_diagram,
    write_diagrams,
)
from story_fsm.diagrams._common import dot_quote, mermaid_text
from story_fsm.machine import EDGES, Edge
from tests.cli_runner import cli_runner

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "diagrams"
README = ROOT / "README.md"
S = WorkflowState

GUARDED_LABELS = [
    "reviewed [is_publishable]",
    "reviewed [!is_publishable]",
    "polished [under_iteration_cap]",
    "polished [!under_iteration_cap]",
]


def require_dot() -> None:
    """Skip when Graphviz's dot is missing, except under CI=true, where it must be there."""
    if shutil.which("dot") is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true requires Graphviz's dot: apt-get install graphviz")
        pytest.skip("Graphviz's dot is not installed (apt-get install graphviz)")


def committed(fmt: str) -> str:
    return (COMMITTED / f"{DIAGRAM_NAME}.{fmt}").read_text(encoding="utf-8")


def edge_lines(source: str, arrow: str) -> list[str]:
    return [line.strip() for line in source.splitlines() if arrow in line]


def drawn_labels(edges: tuple[Edge, ...] = EDGES) -> list[tuple[str, str, str]]:
    """(source, dest, label) of every edge the workflow diagram must draw."""
    rows = []
    for edge in edges:
        if edge.dest is None:
            continue
        guards = " & ".join([*edge.conditions, *(f"!{u}" for u in edge.unless)])
        label = f"{edge.trigger.value} [{guards}]" if guards else edge.trigger.value
        rows += [(source.name, edge.dest.name, label) for source in edge.sources]
    return rows


def readme_edge_rows(edges: tuple[Edge, ...] = EDGES) -> list[str]:
    """The README's transition table rows, as the table in machine.py dictates them."""
    rows = []
    for edge in edges:
        sources = ", ".join(s.name for s in edge.sources)
        if edge.dest is None:
            only = edge.sources[0].name if len(edge.sources) == 1 else "the same state"
            dest = f"{only} (record only)"
        elif edge.dest in edge.sources:
            dest = f"{edge.dest.name} (re-entered)"
        else:
            dest = edge.dest.name
        guards = [f"`{c}`" for c in edge.conditions] + [f"not `{u}`" for u in edge.unless]
        rows.append(
            f"| `{edge.trigger.value}` | {sources} | {dest} | {' and '.join(guards) or '—'} |"
        )
    return rows


# -- edited copies of the table, for the tests that prove the drift check bites -----------------


def _rename_guard(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    return tuple(
        replace(e, conditions=("is_good_enough",)) if e.conditions == ("is_publishable",) else e
        for e in edges
    )


def _drop_last_edge(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    return edges[:-1]


def _redirect_fail(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    return tuple(replace(e, dest=S.COMPLETE) if e.trigger is Trigger.FAIL else e for e in edges)


def _internal_becomes_visible(edges: tuple[Edge, ...]) -> tuple[Edge, ...]:
    return tuple(replace(e, dest=S.INITIAL) if e.trigger is Trigger.SUBMIT else e for e in edges)


EDITS = [_rename_guard, _drop_last_edge, _redirect_fail, _internal_becomes_visible]


class TestCommittedFiles:
    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_committed_file_matches_the_code(self, fmt: str) -> None:
        """diagrams/story_workflow.{mmd,dot} are byte for byte what the code draws now."""
        assert committed(fmt) == render_workflow_diagram(fmt), (
            "the committed diagram is stale: run `python -m story_fsm.diagrams`"
        )

    @pytest.mark.parametrize("edit", EDITS, ids=lambda f: f.__name__.strip("_"))
    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_drift_check_bites_on_a_changed_table(self, fmt: str, edit: Any) -> None:
        """A changed transition table draws a diagram that differs from the committed file."""
        edited = edit(EDGES)
        assert edited != EDGES
        assert render_workflow_diagram(fmt, edges=edited) != committed(fmt)

    @pytest.mark.parametrize("edit", EDITS, ids=lambda f: f.__name__.strip("_"))
    def test_readme_table_check_bites_on_a_changed_table(self, edit: Any) -> None:
        """A changed transition table no longer matches the README's table of edges."""
        assert readme_edge_rows(edit(EDGES)) != readme_edge_rows()

    def test_readme_embeds_the_current_mermaid_diagram(self) -> None:
        """README.md's ```mermaid block is the generated diagram, unedited."""
        blocks = re.findall(r"```mermaid\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
        assert blocks == [render_workflow_diagram("mmd")]

    def test_readme_transition_table_matches_the_machine(self) -> None:
        """README.md's table of edges lists every edge of EDGES, in order, and nothing else."""
        text = README.read_text(encoding="utf-8")
        rows = [line for line in text.splitlines() if re.match(r"\| `[a-z_]+` \| [A-Z]", line)]
        assert rows == readme_edge_rows()

    def test_readme_links_the_svg(self) -> None:
        """README.md links the committed SVG, which exists."""
        assert f"diagrams/{DIAGRAM_NAME}.svg" in README.read_text(encoding="utf-8")
        assert (COMMITTED / f"{DIAGRAM_NAME}.svg").is_file()

    def test_committed_svg_shows_every_current_label(self) -> None:
        """The committed SVG carries every edge label the table has now (not a stale drawing)."""
        text = html.unescape(committed("svg"))
        assert "<svg" in text
        for _, _, label in drawn_labels():
            assert f">{label}<" in text


class TestWorkflowDiagram:
    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_guards_show_on_the_edges(self, fmt: str) -> None:
        """Both guards appear on their edges, negated with ! on the other branch."""
        source = render_workflow_diagram(fmt)
        for label in GUARDED_LABELS:
            assert label in source

    def test_every_drawable_edge_is_drawn_in_mermaid(self) -> None:
        """Each state-changing edge of the table is one Mermaid line with its label."""
        lines = edge_lines(render_workflow_diagram("mmd"), " --> ")
        for src, dst, label in drawn_labels():
            assert f"{src} --> {dst}: {label}" in lines

    def test_every_drawable_edge_is_drawn_in_dot(self) -> None:
        """Each state-changing edge of the table is one DOT edge with its label."""
        source = render_workflow_diagram("dot")
        for src, dst, label in drawn_labels():
            quoted = f'"{label}"' if " " in label else label
            assert f"{src} -> {dst} [label={quoted}]" in source

    def test_terminal_states_are_marked(self) -> None:
        """COMPLETE and FAILED end in Mermaid's [*] and carry a double border in DOT."""
        mermaid, dot = render_workflow_diagram("mmd"), render_workflow_diagram("dot")
        for state in ("COMPLETE", "FAILED"):
            assert f"{state} --> [*]" in mermaid
            assert f"Class {state} s_terminal" in mermaid
            node = next(line for line in dot.splitlines() if line.strip().startswith(state + " ["))
            assert "peripheries=2" in node
        for state in ("INITIAL", "REVIEWING", "POLISHING"):
            assert f"{state} --> [*]" not in mermaid

    def test_no_state_is_painted_current(self) -> None:
        """The machine's diagram has no current state (GraphMachine's 'active' look is reset)."""
        mermaid, dot = render_workflow_diagram("mmd"), render_workflow_diagram("dot")
        assert "s_active" not in mermaid
        assert "darksalmon" not in dot

    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_record_only_triggers_are_named_not_drawn(self, fmt: str) -> None:
        """submit and attempt_failed draw no edge; the note names them instead."""
        source = render_workflow_diagram(fmt)
        arrow = " --> " if fmt == "mmd" else " -> "
        drawn = " ".join(edge_lines(source, arrow))
        assert "attempt_failed" not in drawn
        assert "submit" not in drawn
        assert "Not drawn: submit, attempt_failed" in source

    def test_resume_re_enters_its_state(self) -> None:
        """resume is drawn as a self-loop on the two stage states."""
        lines = edge_lines(render_workflow_diagram("mmd"), " --> ")
        assert "REVIEWING --> REVIEWING: resume" in lines
        assert "POLISHING --> POLISHING: resume" in lines

    @pytest.mark.slow
    def test_output_is_the_same_in_any_interpreter(self) -> None:
        """Fresh interpreters with different hash seeds draw identical bytes."""
        code = (
            "import hashlib; from story_fsm.diagrams import render_workflow_diagram as r; "
            "print(hashlib.sha256((r('mmd') + r('dot')).encode()).hexdigest())"
        )
        here = render_workflow_diagram("mmd") + render_workflow_diagram("dot")
        expected = hashlib.sha256(here.encode()).hexdigest()
        for seed in ("1", "2"):
            env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
            out = subprocess.run(
                [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
            )
            assert out.stdout.strip() == expected

    @pytest.mark.parametrize("fmt", ["png", "", "MMD", "svg ", "mermaid"])
    def test_unknown_format_is_a_value_error(self, fmt: str) -> None:
        """Any format but mmd/dot/svg is refused with a ValueError naming the valid ones."""
        with pytest.raises(ValueError, match="mmd, dot, svg"):
            render_workflow_diagram(fmt)


class TestSvg:
    def test_svg_is_drawn_by_graphviz(self) -> None:
        """With dot installed, the SVG carries the guards and no Graphviz version banner."""
        require_dot()
        svg = render_workflow_diagram("svg")
        assert svg.startswith("<?xml")
        assert "Generated by graphviz" not in svg
        text = html.unescape(svg)
        for label in GUARDED_LABELS:
            assert label in text

    def test_svg_is_stable_on_one_machine(self) -> None:
        """Two renders of the SVG are identical (no dates, no ids that change)."""
        require_dot()
        assert render_workflow_diagram("svg") == render_workflow_diagram("svg")

    def test_write_diagrams_writes_all_three(self, tmp_path: Path) -> None:
        """write_diagrams writes .mmd, .dot and .svg, each exactly as rendered."""
        require_dot()
        written = write_diagrams(tmp_path / "out")
        assert [p.name for p in written] == [f"{DIAGRAM_NAME}.{fmt}" for fmt in FORMATS]
        for path, fmt in zip(written, FORMATS, strict=True):
            assert path.read_text(encoding="utf-8") == render_workflow_diagram(fmt)

    def test_svg_without_dot_is_a_clear_error(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
    ) -> None:
        """Without dot on PATH, asking for SVG says how to install Graphviz (CLI exit 2)."""
        monkeypatch.setenv("PATH", str(tmp_path))
        with pytest.raises(InputValidationError, match="apt-get install graphviz"):
            render_workflow_diagram("svg")
        result = cli_runner().invoke(app, ["diagram", "--format", "svg"])
        assert result.exit_code == 2
        assert "apt-get install graphviz" in result.stderr

    def test_cli_skips_svg_without_dot(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Without dot, the command writes .mmd and .dot, says the SVG was skipped, exits 0."""
        monkeypatch.setenv("PATH", str(tmp_path))
        assert main([str(tmp_path / "out")]) == 0
        out, err = capsys.readouterr()
        assert f"wrote {tmp_path / 'out' / DIAGRAM_NAME}.mmd" in out
        assert f"wrote {tmp_path / 'out' / DIAGRAM_NAME}.dot" in out
        assert ".svg" not in out
        assert "skipped" in err
        assert "apt-get install graphviz" in err
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            f"{DIAGRAM_NAME}.dot",
            f"{DIAGRAM_NAME}.mmd",
        ]

    def test_a_failing_dot_is_one_line_and_exit_1(
        self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """A dot on PATH that fails: one line with its complaint and what was written, exit 1
        (as `story-fsm diagram` exits), not a traceback."""
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir()
        dot = bin_dir / "dot"
        dot.write_text("#!/bin/sh\necho 'dot: out of ink' >&2\nexit 3\n", encoding="utf-8")
        dot.chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir))
        assert main([str(tmp_path / "out")]) == 1
        out, err = capsys.readouterr()
        assert out == ""
        [line] = err.splitlines()
        assert line.startswith("error: Graphviz's dot could not draw the diagram")
        assert "out of ink" in line and ".mmd and .dot were written" in line
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
            f"{DIAGRAM_NAME}.dot",
            f"{DIAGRAM_NAME}.mmd",
        ]

    @pytest.mark.parametrize(
        ("outdir", "failing", "reason"),
        [
            ("a-file/out", "a-file/out", errno.ENOTDIR),
            ("a-file", "a-file", errno.EEXIST),
            ("out", f"out/{DIAGRAM_NAME}.mmd", errno.EISDIR),
        ],
        ids=["under-a-file", "a-file", "mmd-name-is-a-folder"],
    )
    def test_unwritable_outdir_is_one_line_and_exit_2(
        self,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        outdir: str,
        failing: str,
        reason: int,
    ) -> None:
        """An OUTDIR that cannot be written: one line naming the path and why, exit 2."""
        (tmp_path / "a-file").write_text("x", encoding="utf-8")
        (tmp_path / "out" / f"{DIAGRAM_NAME}.mmd").mkdir(parents=True)
        assert main([str(tmp_path / outdir)]) == 2
        out, err = capsys.readouterr()
        assert out == ""
        assert err == (
            f"error: cannot write the diagrams to {str(tmp_path / failing)!r}: "
            f"{os.strerror(reason)}\n"
        )

    def test_a_failure_after_the_mmd_says_the_mmd_was_written(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The .dot cannot be written: the line names it, and the new .mmd left beside it."""
        out = tmp_path / "out"
        (out / f"{DIAGRAM_NAME}.dot").mkdir(parents=True)
        assert main([str(out)]) == 2
        _, err = capsys.readouterr()
        assert err == (
            f"error: cannot write the diagrams to {str(out / DIAGRAM_NAME) + '.dot'!r}: "
            f"{os.strerror(errno.EISDIR)} ({out / DIAGRAM_NAME}.mmd written)\n"
        )
        assert (out / f"{DIAGRAM_NAME}.mmd").read_text(encoding="utf-8") == committed("mmd")

    @pytest.mark.slow
    def test_python_dash_m_regenerates_the_files(self, tmp_path: Path) -> None:
        """`python -m story_fsm.diagrams OUTDIR` exits 0 and prints each file it wrote."""
        require_dot()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-m", "story_fsm.diagrams", str(tmp_path)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        for fmt in FORMATS:
            assert f"wrote {tmp_path / DIAGRAM_NAME}.{fmt}" in done.stdout
        assert (tmp_path / f"{DIAGRAM_NAME}.mmd").read_text(encoding="utf-8") == committed("mmd")


# -- one workflow's diagram, from a real history in a real SQLite file --------------------------


class ScriptReviewer:
    """Answers reviews in order (the last answer repeats); an exception in the list is raised."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls = 0

    def review_story(self, **kwargs: Any) -> Any:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


class AppendingPolisher:
    """Polishes by appending a note of the round to the script."""

    def polish_story(self, **kwargs: Any) -> dict[str, Any]:
        n = kwargs["iteration_number"]
        return {
            "polished_title": f"{kwargs['current_title']} (v{n + 1})",
            "polished_script": f"{kwargs['current_script']} Polished in round {n}.",
            "change_log": [f"round {n}"],
        }


CONFIG = WorkflowConfig(max_iterations=3, quality_threshold=95, retry_backoff_seconds=0)


@pytest.fixture
def store(tmp_path: Path) -> Any:
    manager = WorkflowStateManager(f"sqlite:///{tmp_path}/t.db")
    yield manager
    manager.close()


def run_story(store: WorkflowStateManager, reviewer: ScriptReviewer, story_id: str) -> None:
    orchestrator = StoryWorkflowOrchestrator(reviewer, AppendingPolisher(), store, CONFIG)
    orchestrator.run_story_workflow(story_id, "The Lighthouse", "Once upon a time.", {})


@pytest.fixture
def looped(store: WorkflowStateManager) -> WorkflowStateManager:
    """A story reviewed three times (one flaky attempt), polished twice, then published."""
    reviewer = ScriptReviewer(
        {"decision": "polish", "quality_score": 60},
        RuntimeError("reviewer unavailable"),
        {"decision": "polish", "quality_score": 75},
        {"decision": "publish", "quality_score": 90},
    )
    run_story(store, reviewer, "s-1")
    return store


@pytest.fixture
def failed(store: WorkflowStateManager) -> WorkflowStateManager:
    """A story whose reviewer fails on every attempt: the workflow ends FAILED."""
    reviewer = ScriptReviewer(RuntimeError("reviewer down"))
    with pytest.raises(StageFailedError):
        run_story(store, reviewer, "s-2")
    return store


class TestHistoryDiagram:
    def test_traversed_edges_carry_their_counts(self, looped: WorkflowStateManager) -> None:
        """Each edge taken is drawn once, labelled trigger [guard] and ×n when looped."""
        lines = edge_lines(workflow_diagram(looped, "s-1", "mmd"), " --> ")
        assert lines == [
            "[*] --> INITIAL",
            "INITIAL --> REVIEWING: start",
            "REVIEWING --> COMPLETE: reviewed [is_publishable]",
            "REVIEWING --> POLISHING: reviewed [!is_publishable] ×2",
            "POLISHING --> REVIEWING: polished [under_iteration_cap] ×2",
            "COMPLETE --> [*]",
            "FAILED --> [*]",
        ]

    def test_current_state_is_highlighted(self, looped: WorkflowStateManager) -> None:
        """The last record's dest is the current state: labelled and styled as such."""
        mermaid = workflow_diagram(looped, "s-1", "mmd")
        dot = workflow_diagram(looped, "s-1", "dot")
        assert 'state "COMPLETE (current)" as COMPLETE' in mermaid
        assert "class COMPLETE current" in mermaid
        assert mermaid.count(" current\n") == 1
        node = next(line for line in dot.splitlines() if line.strip().startswith('"COMPLETE" ['))
        assert 'label="COMPLETE\\n(current)"' in node
        assert "fillcolor=darksalmon" in node

    def test_states_never_entered_look_unvisited(self, looped: WorkflowStateManager) -> None:
        """FAILED, never entered, is drawn faint; the states passed through are not."""
        mermaid = workflow_diagram(looped, "s-1", "mmd")
        assert "class FAILED unvisited" in mermaid
        for state in ("INITIAL", "REVIEWING", "POLISHING"):
            assert f"class {state} visited" in mermaid

    def test_dot_draws_untaken_edges_faint(self, looped: WorkflowStateManager) -> None:
        """DOT keeps the whole machine: taken edges bold with counts, the others dashed grey."""
        dot = workflow_diagram(looped, "s-1", "dot")
        taken = '"REVIEWING" -> "POLISHING" [label="reviewed [!is_publishable] ×2" color=blue'
        assert taken in dot
        assert '"REVIEWING" -> "FAILED" [label="fail" color=lightgrey' in dot
        assert (
            '"POLISHING" -> "COMPLETE" [label="polished [!under_iteration_cap]" color=lightgrey'
            in dot
        )
        assert dot.count("style=dashed") == len(drawn_labels()) - 4

    @pytest.mark.parametrize("fmt", ["mmd", "dot"])
    def test_record_only_rows_are_counted_in_the_note(
        self, looped: WorkflowStateManager, fmt: str
    ) -> None:
        """submit and the failed review attempt are counted in the note, not drawn as edges."""
        source = workflow_diagram(looped, "s-1", fmt)
        assert "Not drawn (record-only rows): submit ×1, attempt_failed ×1" in source
        assert "now COMPLETE (seq 7, iteration 3)" in source

    def test_a_failed_workflow_shows_where_it_stopped(self, failed: WorkflowStateManager) -> None:
        """A FAILED workflow is current in FAILED, reached by the fail edge from REVIEWING."""
        mermaid = workflow_diagram(failed, "s-2", "mmd")
        assert edge_lines(mermaid, " --> ")[1:3] == [
            "INITIAL --> REVIEWING: start",
            "REVIEWING --> FAILED: fail",
        ]
        assert "class FAILED current" in mermaid
        assert "attempt_failed ×2" in mermaid  # max_stage_retries=3: two retries, then fail

    def test_store_helper_equals_rendering_the_records(self, looped: WorkflowStateManager) -> None:
        """workflow_diagram(store, id) draws exactly what render_history_diagram draws."""
        records = looped.history("s-1")
        for fmt in ("mmd", "dot"):
            expected = render_history_diagram(records, fmt, title="story s-1")
            assert workflow_diagram(looped, "s-1", fmt) == expected

    def test_history_svg(self, looped: WorkflowStateManager) -> None:
        """With dot installed, the story's diagram renders to SVG with its counted edges."""
        require_dot()
        svg = html.unescape(workflow_diagram(looped, "s-1", "svg"))
        assert svg.startswith("<?xml")
        assert "reviewed [!is_publishable] ×2" in svg
        assert "(current)" in svg

    def test_free_text_story_id_is_escaped(self, store: WorkflowStateManager) -> None:
        """A story id with quotes, #, ; and <> stays inside its label in both formats."""
        story_id = 'tale "one" #1; <b>'
        run_story(store, ScriptReviewer({"decision": "publish", "quality_score": 99}), story_id)
        mermaid = workflow_diagram(store, story_id, "mmd")
        assert "    story tale #quot;one#quot; #35;1#59; #lt;b#gt;" in mermaid.splitlines()
        dot = workflow_diagram(store, story_id, "dot")
        assert 'digraph "story tale \\"one\\" #1; <b>" {' in dot
        if shutil.which("dot"):
            assert 'story tale "one" #1; <b>' in html.unescape(
                workflow_diagram(store, story_id, "svg")
            )

    @pytest.mark.parametrize(
        "story_id",
        [
            "tale end note classDef current fill:black",
            "a weekEnd  NOTE direction TB",
            "tale %%{init: {'theme': 'dark'}}%%",
        ],
    )
    def test_story_id_stays_inside_the_mermaid_note(
        self, store: WorkflowStateManager, story_id: str
    ) -> None:
        """A story id cannot end Mermaid's note early nor carry a %%{...}%% directive."""
        run_story(store, ScriptReviewer({"decision": "publish", "quality_score": 99}), story_id)
        mermaid = workflow_diagram(store, story_id, "mmd")
        # Mermaid's own rules: a note's text runs to the first "end note" (any case), and a
        # directive is read from anywhere in the text before it is parsed.
        note = re.search(r"note right of INITIAL\n([\s\S]*?)end note", mermaid, re.IGNORECASE)
        assert note is not None
        assert mermaid[note.end() :] == "\n"
        assert re.search(r"%{2}\{", mermaid) is None

    @pytest.mark.parametrize("title", ["nul\x00here", "bell\x07 esc\x1b[2J", "lone \ud800"])
    def test_title_with_control_characters_is_drawn(
        self, looped: WorkflowStateManager, title: str
    ) -> None:
        """A title's control characters and unpaired surrogates are shown as escapes.

        dot refused a NUL as a syntax error, the SVG of any other was no well-formed XML, and
        an unpaired surrogate could not be sent to dot at all.
        """
        require_dot()
        records = looped.history("s-1")
        shown = title.encode("unicode_escape").decode("ascii")
        dot = render_history_diagram(records, "dot", title=title)
        subprocess.run(["dot", "-Tsvg"], input=dot.encode(), capture_output=True, check=True)
        svg = render_history_diagram(records, "svg", title=title)
        assert ElementTree.fromstring(svg.encode()).tag.endswith("svg")
        assert shown in html.unescape(svg)
        mermaid = render_history_diagram(records, "mmd", title=title)
        assert f"    {mermaid_text(shown)}" in mermaid.splitlines()
        assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]", mermaid + dot)

    def test_entity_in_a_story_id_is_drawn_as_written(self, store: WorkflowStateManager) -> None:
        """Graphviz reads &lt; or &#65; in a label as a character; the SVG shows them as typed."""
        require_dot()
        story_id = "R&D &lt;draft&gt; &#65; &amp"
        run_story(store, ScriptReviewer({"decision": "publish", "quality_score": 99}), story_id)
        svg = workflow_diagram(store, story_id, "svg")
        texts = [html.unescape(t) for t in re.findall(r"<text[^>]*>([^<]*)</text>", svg)]
        assert f"story {story_id}" in texts

    def test_unknown_story_is_not_found(self, store: WorkflowStateManager) -> None:
        """A story with no workflow raises WorkflowNotFoundError."""
        with pytest.raises(WorkflowNotFoundError):
            workflow_diagram(store, "nobody", "mmd")

    @pytest.mark.parametrize("fmt", ["png", "", "DOT"])
    def test_unknown_format_is_a_value_error(self, looped: WorkflowStateManager, fmt: str) -> None:
        """workflow_diagram and render_history_diagram refuse an unknown format."""
        with pytest.raises(ValueError, match="unknown diagram format"):
            workflow_diagram(looped, "s-1", fmt)
        with pytest.raises(InputValidationError):
            render_history_diagram(looped.history("s-1"), fmt)

    def test_no_records_is_a_value_error(self) -> None:
        """An empty history cannot be drawn: there is no current state."""
        with pytest.raises(ValueError, match="at least one history record"):
            render_history_diagram([], "mmd")

    def test_a_row_the_table_lacks_is_still_drawn(self, looped: WorkflowStateManager) -> None:
        """Drawn with a table missing an edge, the history still shows the row that took it."""
        records: list[TransitionRecord] = looped.history("s-1")
        without_start = tuple(e for e in EDGES if e.trigger is not Trigger.START)
        mermaid = render_history_diagram(records, "mmd", edges=without_start)
        assert "INITIAL --> REVIEWING: start" in edge_lines(mermaid, " --> ")


class TestEscaping:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("plain", '"plain"'),
            ('say "hi"', '"say \\"hi\\""'),
            ("back\\slash", '"back\\\\slash"'),
            ("two\nlines", '"two\\nlines"'),
            ("two\r\nlines\rthree", '"two\\nlines\\nthree"'),
            ("nul\x00 del\x7f", '"nul\\\\x00 del\\\\x7f"'),
            ("R&D &lt; &#65;", '"R&D &amp;lt; &amp;#65;"'),
        ],
    )
    def test_dot_quote(self, text: str, expected: str) -> None:
        """DOT strings escape quotes and backslashes; a line break becomes \\n.

        A control character is written as its escape, which DOT shows as it is.
        """
        assert dot_quote(text) == expected

    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("plain", "plain"),
            ('a "b"', "a #quot;b#quot;"),
            ("x#1; y", "x#35;1#59; y"),
            ("<tag>", "#lt;tag#gt;"),
            ("two\nlines", "two lines"),
            ("50%", "50#37;"),
            ("the End\tNote", "the End#32;Note"),
        ],
    )
    def test_mermaid_text(self, text: str, expected: str) -> None:
        """Mermaid labels use entity codes for # ; \" < > % and "end note", on one line."""
        assert mermaid_text(text) == expected
