"""The public surface: __all__, docstrings, the error tree, quiet logging."""

from __future__ import annotations

import importlib
import inspect
import pickle
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import pytest

import story_fsm
import story_fsm.errors
from story_fsm import (
    ConcurrentAdvanceError,
    InvalidStageOutputError,
    Stage,
    StageFailedError,
    StoryFSMError,
    WorkflowExistsError,
    WorkflowLeasedError,
    WorkflowNotFoundError,
    WorkflowResult,
    WorkflowState,
)

ROOT = Path(__file__).resolve().parent.parent

#: Modules users import from: the package, and the subpackages the docs name.
PUBLIC_MODULES = [
    "story_fsm",
    "story_fsm.errors",
    "story_fsm.editors",
    "story_fsm.diagrams",
    "story_fsm.cli",
    "story_fsm.worker",
    "story_fsm.ratelimit",
]


class TestExports:
    def test_all_is_sorted_and_complete(self) -> None:
        """__all__ is sorted (constants, classes, functions), and names every public attribute."""
        exported = story_fsm.__all__

        def group(name: str) -> tuple[int, str]:
            return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

        assert exported == sorted(exported, key=group)
        public = {
            n
            for n in vars(story_fsm)
            if not n.startswith("_") and not inspect.ismodule(getattr(story_fsm, n))
        }
        public -= {"annotations"}
        assert public <= set(exported) | {"__version__"}
        assert all(hasattr(story_fsm, n) for n in exported)

    @pytest.mark.parametrize("module_name", PUBLIC_MODULES)
    def test_every_public_name_has_a_docstring(self, module_name: str) -> None:
        """Each exported class and function, and their public methods, are documented."""
        module = importlib.import_module(module_name)
        assert inspect.getdoc(module)
        missing = []
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not inspect.getdoc(obj):
                missing.append(name)
            if inspect.isclass(obj):
                # Inherited ones too: the store's methods live on its bases, one per concern.
                own = [c for c in obj.__mro__ if c.__module__.startswith("story_fsm")]
                for klass in own:
                    for attr, member in vars(klass).items():
                        if (
                            not attr.startswith("_")
                            and inspect.isfunction(member)
                            and not member.__doc__
                        ):
                            missing.append(f"{name}.{attr} ({klass.__name__})")
        assert missing == []

    def test_every_error_is_under_the_base(self) -> None:
        """Every exception story_fsm defines derives from StoryFSMError."""
        errors = [
            obj
            for obj in vars(story_fsm.errors).values()
            if inspect.isclass(obj) and issubclass(obj, BaseException)
        ]
        assert len(errors) >= 10
        assert all(issubclass(e, StoryFSMError) for e in errors)


class TestErrorsTravel:
    """Errors cross process boundaries (multiprocessing, task queues) by pickling."""

    def test_errors_pickle_with_their_fields_and_message(self) -> None:
        """A copy has the same type, message and fields as the error raised."""
        result = WorkflowResult("s-1", "T", "S", "T", "S", WorkflowState.FAILED, error="x")
        errors: list[StoryFSMError] = [
            WorkflowNotFoundError("s-1"),
            WorkflowExistsError("s-1"),
            ConcurrentAdvanceError("s-1", "the lease is held by b"),
            WorkflowLeasedError("s-1", "host:42", datetime(2026, 12, 4, 21, 0, tzinfo=UTC)),
            InvalidStageOutputError("no script", cost=0.5),
            StageFailedError("s-1", Stage.POLISH, 3, result),
        ]
        for error in errors:
            copy = pickle.loads(pickle.dumps(error))
            assert type(copy) is type(error)
            assert str(copy) == str(error)
            assert vars(copy) == vars(error)
        failed = pickle.loads(pickle.dumps(errors[-1]))
        assert (failed.stage, failed.attempts, failed.result) == (Stage.POLISH, 3, result)


class TestLogging:
    def test_unconfigured_host_sees_nothing_on_stdout(self, tmp_path: Path) -> None:
        """With no logging configured, a run with retries prints nothing at all."""
        script = textwrap.dedent(
            f"""
            from story_fsm import StoryWorkflowOrchestrator, WorkflowConfig, WorkflowStateManager
            from tests.stages import ScriptedPolisher, ScriptedReviewer, review
            store = WorkflowStateManager("sqlite:///{tmp_path}/q.db")
            reviewer = ScriptedReviewer(RuntimeError("flaky"), review(99, "publish"))
            config = WorkflowConfig(retry_backoff_seconds=0)
            StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, config).run_story_workflow(
                "q", "T", "S", {{}}
            )
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
        )
        assert (done.stdout, done.stderr) == ("", "")

    def test_stdlib_logging_receives_bound_context(self, tmp_path: Path) -> None:
        """A host that configures only stdlib logging gets lines carrying story_id and stage."""
        script = textwrap.dedent(
            f"""
            import logging, sys
            logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="%(name)s %(message)s")
            from story_fsm import StoryWorkflowOrchestrator, WorkflowConfig, WorkflowStateManager
            from tests.stages import ScriptedPolisher, ScriptedReviewer, review
            store = WorkflowStateManager("sqlite:///{tmp_path}/q.db")
            reviewer = ScriptedReviewer(RuntimeError("flaky"), review(99, "publish"))
            StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, WorkflowConfig(retry_backoff_seconds=0)).run_story_workflow("q", "T", "S", {{}})
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
        )
        line = next(ln for ln in done.stdout.splitlines() if "stage_retry" in ln)
        assert line.startswith("story_fsm ")
        assert "story_id='q'" in line and "stage='review'" in line and "iteration=1" in line


def _modules_with_examples() -> list[str]:
    """The package's modules whose docstrings hold ``>>>`` examples (one test each)."""
    import doctest
    import pkgutil

    finder = doctest.DocTestFinder()
    names = []
    for info in pkgutil.walk_packages(story_fsm.__path__, prefix="story_fsm."):
        if info.name.endswith(".__main__"):  # runs its program when imported
            continue
        module = importlib.import_module(info.name)
        if any(test.examples for test in finder.find(module)):
            names.append(info.name)
    return sorted(names)


class TestDocstringExamples:
    @pytest.mark.parametrize("name", _modules_with_examples())
    def test_examples_in_docstrings_hold(self, name: str) -> None:
        """Every ``>>>`` example in the package's docstrings gives what it shows."""
        import doctest
        import gc

        module = importlib.import_module(name)
        failed, tried = doctest.testmod(module, optionflags=doctest.ELLIPSIS, verbose=False)
        assert tried > 0 and failed == 0, f"{failed} of {tried} example(s) of {name} fail"
        # An example that leaves a connection open fails here, not in whichever test the
        # garbage collector happens to run in later (Python 3.13 warns of unclosed sqlite3).
        gc.collect()
