"""`story-fsm diagram` without a story: the machine's own diagram, and regenerating the docs'."""

from __future__ import annotations

from pathlib import Path

import pytest

from story_fsm.cli import app
from story_fsm.diagrams import render_workflow_diagram
from tests.cli_runner import cli_runner

ROOT = Path(__file__).resolve().parent.parent


class TestMachineDiagram:
    def test_prints_the_machine_diagram(self) -> None:
        """Without STORY_ID the command prints the machine's diagram in the chosen format."""
        result = cli_runner().invoke(app, ["diagram", "--format", "dot"])
        assert result.exit_code == 0, result.output
        assert result.stdout == render_workflow_diagram("dot").rstrip("\n") + "\n"

    def test_output_dir_regenerates_the_committed_files(self, tmp_path: Path) -> None:
        """--output-dir writes .mmd and .dot identical to the committed ones in diagrams/."""
        result = cli_runner().invoke(app, ["diagram", "--output-dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
        for name in ("story_workflow.mmd", "story_workflow.dot"):
            assert (tmp_path / name).read_text() == (ROOT / "diagrams" / name).read_text()

    def test_output_dir_that_cannot_be_made_is_one_line(self, tmp_path: Path) -> None:
        """An --output-dir that is a file (or under one) exits 2 with one line, no traceback."""
        taken = tmp_path / "a-file"
        taken.write_text("x", encoding="utf-8")
        for target in (taken, taken / "below"):
            result = cli_runner().invoke(app, ["diagram", "--output-dir", str(target)])
            assert result.exit_code == 2, result.output
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and "cannot write the diagrams" in lines[0]
            assert "Traceback" not in result.output

    def test_output_dir_failing_after_the_mmd_names_what_was_written(self, tmp_path: Path) -> None:
        """A .dot that cannot be written: exit 2, one line naming it and the .mmd written."""
        (tmp_path / "story_workflow.dot").mkdir()
        result = cli_runner().invoke(app, ["diagram", "--output-dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, lines
        assert "story_workflow.dot" in lines[0]
        assert f"({tmp_path / 'story_workflow.mmd'} written)" in lines[0]

    @pytest.mark.parametrize(
        ("extra", "named"),
        [(["-f", "dot"], "--format"), (["-o", "x.mmd"], "--output")],
    )
    def test_output_dir_with_a_format_or_a_file_is_refused(
        self, tmp_path: Path, extra: list[str], named: str
    ) -> None:
        """--output-dir writes all three formats: a --format or --output beside it is refused.

        It used to be silently ignored. Nothing is written.
        """
        out = tmp_path / "out"
        result = cli_runner().invoke(app, ["diagram", "--output-dir", str(out), *extra])
        assert result.exit_code == 2
        assert named in result.stderr
        assert not out.exists() and not (tmp_path / "x.mmd").exists()

    def test_output_dir_with_a_story_is_refused(self, tmp_path: Path) -> None:
        """--output-dir is for the machine's diagrams only; with STORY_ID it exits 2."""
        result = cli_runner().invoke(app, ["diagram", "s1", "--output-dir", str(tmp_path)])
        assert result.exit_code == 2
