"""The SQL store's contract, run against every backend."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from story_fsm import (
    ConcurrentAdvanceError,
    DatabaseBusyError,
    InputValidationError,
    StoreError,
    StoryWorkflowOrchestrator,
    Trigger,
    UnreadableRowError,
    WorkflowConfig,
    WorkflowExistsError,
    WorkflowLeasedError,
    WorkflowNotFoundError,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._records import Lease, NewWorkflow, TransitionWrite
from story_fsm.cli._store import open_store
from story_fsm.store import _cleanup as cleanup_module
from story_fsm.store.engine import make_engine, missing_sqlite_file, sqlite_path, writer_lock
from tests.stages import ScriptedPolisher, ScriptedReviewer, finish_workflow, review

S = WorkflowState


def new(story_id: str = "s") -> NewWorkflow:
    return NewWorkflow(story_id, "T", "S", {"a": 1}, "", None, WorkflowConfig().to_dict())


def lease(owner: str = "me") -> Lease:
    return Lease(owner, uuid.uuid4().hex, 30)


START = TransitionWrite(Trigger.START, S.INITIAL, S.REVIEWING, 1, 1)


class TestWrites:
    def test_create_writes_initial_row_and_submit_record(self, store: WorkflowStateManager) -> None:
        """create() stores the workflow in INITIAL with one submit record at seq 0."""
        row = store.create(new(), lease())
        assert (row.summary.state, row.summary.seq, row.summary.iteration) == (S.INITIAL, 0, 1)
        [record] = store.history("s")
        assert (record.seq, record.trigger, record.source, record.dest) == (
            0,
            Trigger.SUBMIT,
            S.INITIAL,
            S.INITIAL,
        )
        assert record.created_at.tzinfo is not None

    def test_duplicate_create_is_refused(self, store: WorkflowStateManager) -> None:
        """A second create of the same story raises WorkflowExistsError and writes nothing."""
        store.create(new(), lease())
        with pytest.raises(WorkflowExistsError):
            store.create(new(), lease())
        assert len(store.history("s")) == 1

    def test_append_is_fenced_on_seq(self, store: WorkflowStateManager) -> None:
        """A write that expects an old seq loses with ConcurrentAdvanceError; nothing lands."""
        held = lease()
        store.create(new(), held)
        store.append("s", 0, START, held)
        with pytest.raises(ConcurrentAdvanceError, match="expected step 0"):
            store.append("s", 0, START, held)
        assert [r.seq for r in store.history("s")] == [0, 1]

    def test_append_is_fenced_on_the_lease(self, store: WorkflowStateManager) -> None:
        """A writer whose lease was taken over cannot write, even at the right seq."""
        mine = lease("a")
        store.create(new(), mine)
        thief = lease("b")
        store.append(
            "s",
            0,
            TransitionWrite(Trigger.START, S.INITIAL, S.REVIEWING, 1, 1, takeover=True),
            thief,
        )
        with pytest.raises(ConcurrentAdvanceError, match="held by b"):
            store.append(
                "s",
                1,
                TransitionWrite(Trigger.ATTEMPT_FAILED, S.REVIEWING, S.REVIEWING, 1, 1),
                mine,
            )
        assert store.load_row("s").summary.lease_owner == "b"  # type: ignore[union-attr]

    def test_heartbeat_extends_only_the_holders_lease(self, store: WorkflowStateManager) -> None:
        """heartbeat() is True for the holder and False once the lease was taken over."""
        mine = lease("a")
        store.create(new(), mine)
        assert store.heartbeat("s", mine) is True
        store.append(
            "s",
            0,
            TransitionWrite(Trigger.START, S.INITIAL, S.REVIEWING, 1, 1, takeover=True),
            lease("b"),
        )
        assert store.heartbeat("s", mine) is False

    def test_a_refusal_that_is_no_lost_race_keeps_the_database_s_message(
        self, store: WorkflowStateManager
    ) -> None:
        """A constraint of the host's refuses a row: a StoreError that says so, not a race.

        The step is not taken, and the same write lands once the refusal is gone.
        """
        held = lease()
        store.create(new(), held)
        if store.dialect == "sqlite":
            create = (
                "CREATE TRIGGER host_rule BEFORE INSERT ON story_fsm_transitions "
                "WHEN NEW.trigger = 'start' BEGIN SELECT RAISE(ABORT, 'host refuses'); END"
            )
            drop = "DROP TRIGGER host_rule"
        else:
            create = "ALTER TABLE story_fsm_transitions ADD CONSTRAINT host_rule CHECK (trigger <> 'start')"
            drop = "ALTER TABLE story_fsm_transitions DROP CONSTRAINT host_rule"
        with store.engine.begin() as conn:
            conn.execute(sa.text(create))
        with pytest.raises(StoreError, match="host") as refused:
            store.append("s", 0, START, held)
        assert not isinstance(refused.value, ConcurrentAdvanceError)
        assert store.load_row("s").summary.seq == 0  # type: ignore[union-attr]
        with store.engine.begin() as conn:
            conn.execute(sa.text(drop))
        store.append("s", 0, START, held)
        assert [r.seq for r in store.history("s")] == [0, 1]

    def test_append_to_unknown_story(self, store: WorkflowStateManager) -> None:
        """Appending to a story with no workflow raises WorkflowNotFoundError."""
        with pytest.raises(WorkflowNotFoundError):
            store.append("ghost", 0, START, lease())

    def test_terminal_state_releases_the_lease(self, store: WorkflowStateManager) -> None:
        """Reaching COMPLETE clears the lease so nothing holds a finished workflow."""
        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(review(99, "publish")), ScriptedPolisher(), store
        )
        orchestrator.run_story_workflow("s", "T", "S", {})
        summary = store.load_row("s").summary  # type: ignore[union-attr]
        assert (summary.lease_owner, summary.lease_expires_at) == (None, None)


class TestReads:
    def test_a_claim_reads_back_an_id_written_by_other_rules(
        self, store: WorkflowStateManager
    ) -> None:
        """The claim's own read takes the id as stored (a host's row must not stop a worker)."""
        wf, inputs = store.schema.workflows, store.schema.inputs
        store.create(new("plain"), None)
        odd = "odd\tid"  # a control character: an id story_fsm itself refuses to make
        with store.engine.begin() as conn:  # as a host's own tooling might have written it
            row = conn.execute(sa.select(wf).where(wf.c.story_id == "plain")).mappings().one()
            given = conn.execute(sa.select(inputs).where(inputs.c.story_id == "plain"))
            conn.execute(wf.insert().values({**row, "story_id": odd}))
            conn.execute(inputs.insert().values({**given.mappings().one(), "story_id": odd}))
            conn.execute(wf.delete().where(wf.c.story_id == "plain"))
        claimed = store.claim_next(lease())
        assert claimed is not None and claimed.summary.story_id == odd

    @pytest.mark.parametrize("story_id", ["a\ud800", "", 7, "x" * 201])
    def test_a_read_of_an_impossible_id_is_an_input_error(
        self, store: WorkflowStateManager, story_id: object
    ) -> None:
        """No workflow can have such an id: a typed refusal, not a driver's encoding error."""
        for read in (store.load_row, store.history, store.load_state):
            with pytest.raises(InputValidationError, match="story_id"):
                read(story_id)  # type: ignore[arg-type]

    def test_timestamps_are_aware_utc(self, store: WorkflowStateManager) -> None:
        """Every timestamp read back is timezone-aware UTC, on every backend."""
        before = datetime.now(UTC)
        store.create(new(), lease())
        summary = store.list_workflows()[0]
        assert summary.started_at.tzinfo is not None
        assert abs((summary.started_at - before).total_seconds()) < 5

    def test_resume_reads_a_constant_number_of_rows(self, store: WorkflowStateManager) -> None:
        """The statements resume runs before its first stage call don't grow with history."""
        config = WorkflowConfig(max_iterations=60, retry_backoff_seconds=0)

        class Crash(BaseException):
            pass

        def statements_before_first_call(story_id: str, reviews: int) -> list[str]:
            answers: list[Any] = [review(10)] * (reviews - 1) + [Crash()]
            orchestrator = StoryWorkflowOrchestrator(
                ScriptedReviewer(*answers), ScriptedPolisher(), store, config
            )
            with pytest.raises(Crash):
                orchestrator.run_story_workflow(story_id, "T", "S", {})
            seen: list[str] = []
            first_call: list[int] = []

            def listener(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
                if not first_call:
                    seen.append(statement.split(maxsplit=1)[0].upper())

            def reviewer_call(**kw: Any) -> dict[str, Any]:
                first_call.append(1)
                return review(99, "publish")

            reviewer = ScriptedReviewer(reviewer_call)
            sa.event.listen(store.engine, "before_cursor_execute", listener)
            try:
                StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, config).resume(
                    story_id
                )
            finally:
                sa.event.remove(store.engine, "before_cursor_execute", listener)
            return seen

        short = statements_before_first_call("short", 1)
        long = statements_before_first_call("long", 40)
        assert len(store.history("long")) > 80
        assert short == long
        assert short.count("SELECT") == 1

    def test_history_after_a_seq_gives_the_records_past_it(
        self, store: WorkflowStateManager
    ) -> None:
        """after=N: the records with seq > N ([] when none yet); an unknown story is still
        WorkflowNotFoundError, and an after that is no count an input error."""
        finish_workflow(store, "s")
        every = store.history("s")
        assert store.history("s", after=0) == every[1:]
        assert store.history("s", after=every[-2].seq) == every[-1:]
        assert store.history("s", after=every[-1].seq) == []
        with pytest.raises(WorkflowNotFoundError):
            store.history("ghost", after=0)
        for bad in (-1, 1.5, True, "2"):
            with pytest.raises(InputValidationError, match="after"):
                store.history("s", after=bad)  # type: ignore[arg-type]

    def test_list_workflows_rejects_unknown_state(self, store: WorkflowStateManager) -> None:
        """An unknown state name is an input error, not a database error."""
        with pytest.raises(InputValidationError, match="sleeping"):
            store.list_workflows("sleeping")

    def test_list_workflows_pages_in_either_order(self, store: WorkflowStateManager) -> None:
        """limit, offset and newest_first page through the workflows without overlap, with
        the state filter too (ties of start time are ordered by story id)."""
        for n in range(5):
            held = lease()
            store.create(new(f"w{n}"), held)
            if n % 2:
                store.append(f"w{n}", 0, START, held)

        def ids(**kwargs: Any) -> list[str]:
            return [s.story_id for s in store.list_workflows(**kwargs)]

        assert ids() == ["w0", "w1", "w2", "w3", "w4"]
        assert ids(limit=2) == ["w0", "w1"]
        assert ids(limit=2, offset=2) == ["w2", "w3"]
        assert ids(offset=3) == ["w3", "w4"]  # an offset alone (SQLite needs a LIMIT for it)
        assert ids(newest_first=True) == ["w4", "w3", "w2", "w1", "w0"]
        assert ids(limit=2, newest_first=True) == ["w4", "w3"]
        assert ids(limit=2, offset=4, newest_first=True) == ["w0"]
        assert ids(state=S.REVIEWING, limit=1, newest_first=True) == ["w3"]
        assert ids(state="initial", offset=1) == ["w2", "w4"]
        assert ids(limit=10, offset=10) == []

    @pytest.mark.parametrize("newest_first", [False, True])
    def test_a_page_in_start_order_walks_the_index_instead_of_sorting(
        self, store: WorkflowStateManager, newest_first: bool
    ) -> None:
        """The database's plan for a page of list_workflows reads the (started_at, story_id)
        index in order: no sort of every summary row to return twenty (migration 0003)."""
        for n in range(3):
            store.create(new(f"w{n}"), lease())
        sent: list[tuple[str, Any]] = []

        def capture(*args: Any) -> None:
            statement, parameters = args[2], args[3]
            if "ORDER BY" in statement:
                sent.append((statement, parameters))

        sa.event.listen(store.engine, "before_cursor_execute", capture)
        try:
            assert len(store.list_workflows(limit=20, newest_first=newest_first)) == 3
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", capture)
        [(statement, parameters)] = sent
        index = "ix_story_fsm_workflows_started_at_story_id"
        with store.engine.connect() as conn:
            if store.dialect == "sqlite":
                rows = conn.exec_driver_sql("EXPLAIN QUERY PLAN " + statement, parameters)
                plan = " ".join(str(row[-1]) for row in rows)
                assert index in plan and "TEMP B-TREE" not in plan, plan
            else:
                # Three rows: the planner would scan them whatever the indexes; forbid the
                # scan to learn whether an index serves the order.
                conn.exec_driver_sql("SET enable_seqscan = off")
                plan = " ".join(
                    row[0] for row in conn.exec_driver_sql("EXPLAIN " + statement, parameters)
                )
                assert index in plan and "Sort" not in plan, plan

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"limit": 0},
            {"limit": -1},
            {"limit": True},
            {"limit": "3"},
            {"limit": 2.0},
            {"limit": 2**63},
            {"offset": -1},
            {"offset": None},
            {"offset": 1.5},
        ],
    )
    def test_a_page_that_is_no_count_is_refused(
        self, store: WorkflowStateManager, kwargs: dict[str, Any]
    ) -> None:
        """A limit or an offset that is no integer in range is an input error, not a
        database error (PostgreSQL refuses a negative LIMIT; SQLite reads it as no limit)."""
        store.create(new(), lease())
        with pytest.raises(InputValidationError, match=next(iter(kwargs))):
            store.list_workflows(**kwargs)


def _rows(store: WorkflowStateManager, story_id: str) -> tuple[int, int, int]:
    """The story's rows in the workflows, inputs and transitions tables, counted by SQL."""
    schema = store.schema
    with store.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(
                sa.select(sa.func.count()).select_from(table).where(table.c.story_id == story_id)
            ).scalar_one()
            for table in (schema.workflows, schema.inputs, schema.transitions)
        )


HOUR = timedelta(hours=1)


class _NoOffset(tzinfo):
    """A zone that knows no offset: Python counts a datetime in it as naive."""

    def utcoffset(self, dt: datetime | None) -> None:
        return None


class TestDeletion:
    def test_delete_workflow_removes_its_rows_and_only_its_own(
        self, store: WorkflowStateManager
    ) -> None:
        """The summary, the inputs and the whole history go; another story keeps all three."""
        finish_workflow(store, "gone")
        finish_workflow(store, "kept")
        kept = _rows(store, "kept")
        assert _rows(store, "gone")[2] >= 3 and kept[2] >= 3
        store.delete_workflow("gone")
        assert _rows(store, "gone") == (0, 0, 0)
        assert store.load_row("gone") is None
        with pytest.raises(WorkflowNotFoundError):
            store.history("gone")
        assert _rows(store, "kept") == kept
        assert [s.story_id for s in store.list_workflows()] == ["kept"]

    def test_an_interrupted_or_submitted_workflow_with_no_live_lease_is_deleted(
        self, store: WorkflowStateManager
    ) -> None:
        """Unfinished is no reason to refuse: a free lease and a lapsed one both let it go."""
        store.create(new("free"), None)
        held = Lease("gone-worker", uuid.uuid4().hex, 0.05)
        store.create(new("lapsed"), held)
        store.append("lapsed", 0, START, held)
        time.sleep(0.1)
        store.delete_workflow("free")
        store.delete_workflow("lapsed")
        assert store.list_workflows() == []
        assert _rows(store, "lapsed") == (0, 0, 0)

    def test_a_workflow_a_live_process_holds_is_refused_and_kept(
        self, store: WorkflowStateManager
    ) -> None:
        """A live lease: WorkflowLeasedError naming the holder; every row stays, and the
        holder writes on."""
        held = lease("worker-7")
        store.create(new("busy"), held)
        store.append("busy", 0, START, held)
        before = _rows(store, "busy")
        with pytest.raises(WorkflowLeasedError, match="worker-7") as caught:
            store.delete_workflow("busy")
        assert (caught.value.story_id, caught.value.owner) == ("busy", "worker-7")
        assert caught.value.expires_at > datetime.now(UTC)
        assert _rows(store, "busy") == before
        assert store.heartbeat("busy", held)

    def test_a_claim_that_commits_first_keeps_its_story_on_postgresql(self, pg_url: str) -> None:
        """A deletion that meets the row locked by a claim waits for it, then finds the
        lease live: WorkflowLeasedError, and the story stays whole."""
        with WorkflowStateManager(pg_url) as store:
            store.create(new("claimed"), None)
            rows = _rows(store, "claimed")
            wf = store.schema.workflows
            outcome: list[BaseException] = []

            def delete() -> None:
                try:
                    store.delete_workflow("claimed")
                except BaseException as exc:
                    outcome.append(exc)

            with store.engine.connect() as rival:
                until = datetime.now(UTC) + timedelta(seconds=60)
                rival.execute(
                    sa.update(wf)
                    .where(wf.c.story_id == "claimed")
                    .values(lease_owner="worker-9", lease_token="t", lease_expires_at=until)
                )  # uncommitted: the row is locked until the commit below
                deleter = threading.Thread(target=delete, daemon=True)
                deleter.start()
                deleter.join(0.5)
                assert deleter.is_alive() and outcome == []  # waiting on the row lock
                rival.commit()
            deleter.join(30)
            assert [type(e) for e in outcome] == [WorkflowLeasedError]
            assert _rows(store, "claimed") == rows

    @pytest.mark.parametrize("what", ["delete", "prune"])
    def test_a_claim_or_requeue_between_the_read_and_the_delete_keeps_its_story_on_sqlite(
        self, sqlite_url: str, what: str
    ) -> None:
        """SQLite's SELECT takes no lock: another process that claims the story (delete) or
        requeues it (prune) just after it commits first, and the deletion leaves it whole."""
        with WorkflowStateManager(sqlite_url) as store:
            finish_workflow(store, "s", fail=True)
            rows = _rows(store, "s")
            cut = datetime.now(UTC)
            path = sqlite_url.removeprefix("sqlite:///")
            until = (datetime.now(UTC) + timedelta(seconds=60)).replace(tzinfo=None)
            change = (
                (
                    "UPDATE story_fsm_workflows SET lease_owner = 'w-2', lease_token = 't', "
                    "lease_expires_at = ? WHERE story_id = 's'",
                    (until.isoformat(" "),),
                )
                if what == "delete"
                else ("UPDATE story_fsm_workflows SET state = 'reviewing' WHERE story_id = 's'", ())
            )
            done: list[bool] = []

            def between(*args: Any) -> None:
                if args[2].startswith("DELETE") and not done:
                    done.append(True)
                    with contextlib.closing(sqlite3.connect(path)) as other:
                        other.execute(*change)
                        other.commit()

            sa.event.listen(store.engine, "before_cursor_execute", between)
            try:
                if what == "delete":
                    with pytest.raises(WorkflowLeasedError, match="w-2"):
                        store.delete_workflow("s")
                else:
                    assert store.prune_workflows(cut) == 0
            finally:
                sa.event.remove(store.engine, "before_cursor_execute", between)
            assert done == [True]
            assert _rows(store, "s") == rows

    def test_unknown_and_unusable_ids(self, store: WorkflowStateManager) -> None:
        """An unknown id is WorkflowNotFoundError; an unusable one an input error."""
        with pytest.raises(WorkflowNotFoundError):
            store.delete_workflow("never")
        with pytest.raises(InputValidationError):
            store.delete_workflow("")

    def test_a_host_engine_without_foreign_keys_still_loses_the_history(
        self, sqlite_url: str
    ) -> None:
        """SQLite runs without foreign keys unless asked: no cascade, and yet no orphan rows."""
        engine = sa.create_engine(sqlite_url)
        try:
            with WorkflowStateManager(engine) as store:
                with engine.connect() as conn:
                    assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 0
                finish_workflow(store, "gone")
                store.delete_workflow("gone")
                assert _rows(store, "gone") == (0, 0, 0)
        finally:
            engine.dispose()


class TestPruning:
    def test_prune_deletes_finished_workflows_before_the_time_and_nothing_else(
        self, store: WorkflowStateManager, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """COMPLETE and FAILED ones finished before the time go (in batches); one finished
        after it, and unfinished ones, stay; dry_run and state count and choose."""
        monkeypatch.setattr(cleanup_module, "_PRUNE_BATCH", 2)  # five stories: three batches
        for n in range(3):
            finish_workflow(store, f"done-{n}")
        finish_workflow(store, "failed-0", fail=True)
        finish_workflow(store, "failed-1", fail=True)
        store.create(new("waiting"), None)
        cut = datetime.now(UTC)
        time.sleep(0.01)
        finish_workflow(store, "late")
        assert store.prune_workflows(cut, dry_run=True) == 5
        assert store.prune_workflows(cut, state="failed", dry_run=True) == 2
        assert len(store.list_workflows()) == 7  # a dry run deletes nothing
        assert store.prune_workflows(cut, state=S.FAILED) == 2
        assert {s.story_id for s in store.list_workflows()} == {
            "done-0",
            "done-1",
            "done-2",
            "waiting",
            "late",
        }
        assert store.prune_workflows(cut) == 3
        assert [s.story_id for s in store.list_workflows()] == ["waiting", "late"]
        assert all(_rows(store, f"done-{n}") == (0, 0, 0) for n in range(3))
        assert store.prune_workflows(cut) == 0

    def test_a_requeue_that_commits_first_keeps_its_story_on_postgresql(self, pg_url: str) -> None:
        """A prune that meets a FAILED story's row locked by a requeue waits for it, then
        finds the story unfinished and leaves it whole: summary, inputs and history."""
        with WorkflowStateManager(pg_url) as store:
            finish_workflow(store, "requeued", fail=True)
            rows = _rows(store, "requeued")
            cut = datetime.now(UTC)
            wf = store.schema.workflows
            outcome: list[Any] = []
            with store.engine.connect() as rival:
                rival.execute(
                    sa.update(wf).where(wf.c.story_id == "requeued").values(state="reviewing")
                )  # uncommitted: the row is locked until the commit below
                pruner = threading.Thread(
                    target=lambda: outcome.append(store.prune_workflows(cut)), daemon=True
                )
                pruner.start()
                pruner.join(0.5)
                assert pruner.is_alive() and outcome == []  # waiting on the row lock
                rival.commit()
            pruner.join(30)
            assert outcome == [0]
            assert _rows(store, "requeued") == rows
            assert store.load_row("requeued").summary.state is S.REVIEWING  # type: ignore[union-attr]

    def test_a_prune_locks_its_batch_in_story_id_order_on_postgresql(self, pg_url: str) -> None:
        """The batch's rows are locked in story id order, whatever order the table keeps them
        in: two prunes then take their locks in one order and cannot deadlock. Stopped at a
        row another transaction holds, a prune holds none of the ids after it."""
        with WorkflowStateManager(pg_url) as store:
            for story_id in ("z-last", "m-middle", "a-first"):  # stored against id order
                finish_workflow(store, story_id)
            cut = datetime.now(UTC)
            wf = store.schema.workflows

            def lock(conn: sa.Connection, story_id: str, *, nowait: bool = False) -> None:
                locked = sa.select(wf.c.story_id).where(wf.c.story_id == story_id)
                conn.execute(locked.with_for_update(nowait=nowait)).one()

            outcome: list[Any] = []
            with store.engine.connect() as rival, store.engine.connect() as prober:
                lock(rival, "m-middle")
                pruner = threading.Thread(
                    target=lambda: outcome.append(store.prune_workflows(cut)), daemon=True
                )
                pruner.start()
                pruner.join(0.5)
                assert pruner.is_alive() and outcome == []  # waiting on m-middle
                lock(prober, "z-last", nowait=True)  # past the wait: not locked by the prune
                prober.rollback()
                rival.rollback()
            pruner.join(30)
            assert outcome == [3]

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [
            ({"finished_before": datetime(2026, 1, 1)}, "timezone-aware"),
            ({"finished_before": "2026-01-01"}, "timezone-aware"),
            ({"finished_before": datetime(2026, 1, 1, tzinfo=_NoOffset())}, "timezone-aware"),
            ({"finished_before": datetime.max.replace(tzinfo=timezone(-HOUR))}, "out of range"),
            ({"finished_before": datetime.min.replace(tzinfo=timezone(HOUR))}, "out of range"),
            ({"state": "reviewing"}, "only finished workflows"),
            ({"state": "sleeping"}, "unknown state"),
        ],
    )
    def test_bad_arguments_are_refused_before_anything_goes(
        self, store: WorkflowStateManager, kwargs: dict[str, Any], match: str
    ) -> None:
        """A naive time, or a state that is not a finished one: an input error; all stays."""
        finish_workflow(store, "done")
        arguments: dict[str, Any] = {"finished_before": datetime.now(UTC), **kwargs}
        with pytest.raises(InputValidationError, match=match):
            store.prune_workflows(**arguments)
        assert _rows(store, "done")[0] == 1


class TestEngines:
    @pytest.mark.parametrize("url", ["not a url", "mysql://u@h/db", "oracle://x", None, 5])
    def test_bad_url_is_an_input_error(self, url: str) -> None:
        """A URL that cannot be parsed or names another database is refused clearly."""
        with pytest.raises(InputValidationError):
            WorkflowStateManager(url)

    @pytest.mark.parametrize(
        ("option", "value"),
        [
            ("busy_timeout_seconds", float("nan")),
            ("busy_timeout_seconds", float("inf")),
            ("busy_timeout_seconds", -1),
            ("busy_timeout_seconds", "30"),
            ("busy_timeout_seconds", True),
            ("sqlite_synchronous", None),
            ("sqlite_synchronous", "SOMETIMES"),
            ("table_prefix", None),
            ("table_prefix", ["story_"]),
            ("table_prefix", "1st_"),
            ("table_prefix", "a-b_"),
        ],
    )
    def test_bad_options_are_input_errors_before_anything_is_created(
        self, option: str, value: Any, tmp_path: Path
    ) -> None:
        """Each bad option raises InputValidationError naming it; no database file appears."""
        path = tmp_path / "options.db"
        with pytest.raises(InputValidationError, match=option):
            WorkflowStateManager(f"sqlite:///{path}", **{option: value})
        assert not path.exists()

    @pytest.mark.parametrize("prefix", ["q" * 44 + "_", "é" * 23])  # 45 and 46 bytes
    def test_a_prefix_too_long_for_postgresql_is_refused_before_connecting(
        self, prefix: str
    ) -> None:
        """Its names would pass 63 bytes; a server that does not exist shows nothing is tried."""
        with pytest.raises(InputValidationError, match=r"table_prefix is 4[56] bytes"):
            WorkflowStateManager("postgresql://nobody@127.0.0.1:9/none", table_prefix=prefix)

    def test_a_long_prefix_stays_usable_on_sqlite(self, sqlite_url: str) -> None:
        """SQLite has no length limit: a database made with such a prefix keeps opening."""
        with WorkflowStateManager(sqlite_url, table_prefix="q" * 99 + "_") as store:
            store.create(new(), lease())
            assert len(store.list_workflows()) == 1

    def test_the_longest_prefix_works_on_postgresql(self, pg_url: str) -> None:
        """44 bytes: the tables, their constraints and alembic's version table all fit."""
        prefix = "q" * 43 + "_"
        with WorkflowStateManager(pg_url, table_prefix=prefix) as store:
            store.create(new(), lease())
            assert [s.story_id for s in store.list_workflows()] == ["s"]

    @pytest.mark.parametrize(
        ("query", "named"),
        [
            ("?sslmod=require", "sslmod"),
            ("?connect_timeout=soon", "connect_timeout"),
            ("?application_name=x&colour=blue", "colour"),
            ("?connect_timeout=1&connect_timeout=2", "connect_timeout more than once"),
            ("?sslmode=disable&sslmode=require", "sslmode more than once"),
        ],
    )
    def test_a_postgresql_option_libpq_refuses_is_an_input_error(
        self, query: str, named: str
    ) -> None:
        """A misspelt option or a bad timeout in the URL is refused before any connection.

        The "server" counts the connections it is offered: none, so the error is the URL's
        and not a database that could not be reached.
        """
        import socket

        with socket.create_server(("127.0.0.1", 0)) as listener:
            listener.settimeout(0.2)
            port = listener.getsockname()[1]
            url = f"postgresql://postgres:hunter2@127.0.0.1:{port}/test{query}"
            with pytest.raises(InputValidationError, match=named) as caught:
                WorkflowStateManager(url)
            assert "hunter2" not in str(caught.value)
            with pytest.raises(TimeoutError):
                listener.accept()

    @pytest.mark.parametrize(
        ("query", "key"),
        [
            ("?isolation_level=DEFERRED&isolation_level=IMMEDIATE", "isolation_level"),
            ("?detect_types=1&detect_types=2", "detect_types"),
            ("?check_same_thread=true&check_same_thread=false", "check_same_thread"),
            ("?uri=true&uri=false", "uri"),
            ("?uri=true&mode=rw&mode=ro", "mode"),
        ],
    )
    def test_a_sqlite_option_given_twice_is_an_input_error(
        self, tmp_path: Path, query: str, key: str
    ) -> None:
        """Which of two values a driver would read is anyone's guess (the last, a tuple's
        text, a ValueError at the first connection): refused, naming it, creating nothing."""
        with pytest.raises(InputValidationError, match=f"gives {key} more than once"):
            WorkflowStateManager(f"sqlite:///{tmp_path}/x.db{query}")
        assert list(tmp_path.iterdir()) == []

    def test_a_postgresql_port_out_of_range_is_an_input_error(self) -> None:
        """A port past 65535 is the URL's fault (libpq's "invalid port number"), said as such."""
        with pytest.raises(InputValidationError, match="port 99999"):
            WorkflowStateManager("postgresql://postgres@127.0.0.1:99999/test")

    def test_known_postgresql_options_pass_the_check(self, pg_url: str) -> None:
        """Real libpq options (and a numeric connect_timeout) get through to a working store."""
        url = f"{pg_url}{'&' if '?' in pg_url else '?'}connect_timeout=5&application_name=fsm"
        with WorkflowStateManager(url) as store:
            store.create(new(), lease())
            assert [s.story_id for s in store.list_workflows()] == ["s"]

    def test_a_silent_postgresql_server_is_given_up_on(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A server that accepts connections and never answers is a StoreError, not a hang.

        Tried once: a connection that timed out is not taken for a missing schema and tried
        again (which doubled the wait).
        """
        import socket
        import threading
        import time

        from story_fsm.store import engine as engine_module

        monkeypatch.setattr(engine_module, "CONNECT_TIMEOUT_SECONDS", 1)
        accepted: list[socket.socket] = []
        with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts; never answers

            def accept() -> None:
                with contextlib.suppress(OSError):
                    while True:
                        accepted.append(silent.accept()[0])

            threading.Thread(target=accept, daemon=True).start()
            port = silent.getsockname()[1]
            started = time.monotonic()
            with pytest.raises(StoreError):
                WorkflowStateManager(f"postgresql://postgres@127.0.0.1:{port}/test")
            # Generous for a loaded machine; without a timeout it never ends.
            assert time.monotonic() - started < 30
            assert len(accepted) == 1
        for conn in accepted:
            conn.close()

    def test_sqlite_folder_must_exist(self, tmp_path: Path) -> None:
        """A SQLite path in a missing folder is refused before anything is created."""
        with pytest.raises(InputValidationError, match="does not exist"):
            WorkflowStateManager(f"sqlite:///{tmp_path}/missing/x.db")

    def test_a_tilde_in_a_sqlite_path_is_the_home_folder(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sqlite:///~/x.db opens $HOME/x.db, the file the checks and the CLI look at."""
        home = tmp_path / "home"
        home.mkdir()
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.chdir(tmp_path)
        with WorkflowStateManager("sqlite:///~/x.db") as store:
            store.create(new(), lease())
        assert (home / "x.db").exists() and not (tmp_path / "~").exists()

    def test_a_tilde_of_an_unknown_user_is_an_input_error(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sqlite:///~nobody_here/x.db names no folder: an input error (the CLI's missing-file
        check and the store alike), not expanduser's RuntimeError; nothing is created."""
        monkeypatch.chdir(tmp_path)
        url = "sqlite:///~no_such_user_of_story_fsm/x.db"
        with pytest.raises(InputValidationError, match="home folder that cannot be found"):
            missing_sqlite_file(url)
        with pytest.raises(InputValidationError, match="home folder that cannot be found"):
            WorkflowStateManager(url)
        assert list(tmp_path.iterdir()) == []

    def test_a_read_only_uri_reads_and_refuses_writes(self, tmp_path: Path) -> None:
        """sqlite:///file:PATH?mode=ro&uri=true reads the stored rows; a write is a StoreError
        naming read-only access, and the file keeps what it had."""
        path = tmp_path / "my db.db"
        with WorkflowStateManager(f"sqlite:///{path}") as store:
            store.create(new(), lease())
        before = path.read_bytes()
        url = f"sqlite:///file:{str(path).replace(' ', '%20')}?mode=ro&uri=true"
        with WorkflowStateManager(url) as ro:
            assert [r.seq for r in ro.history("s")] == [0]
            with pytest.raises(StoreError, match="opened read-only"):
                ro.append("s", 0, START, lease())
            with pytest.raises(StoreError, match="opened read-only"):
                ro.create(new("t"), lease())
            assert [w.story_id for w in ro.list_workflows()] == ["s"]
        with WorkflowStateManager(f"sqlite:///{path}") as store:
            assert [r.seq for r in store.history("s")] == [0]
        assert path.read_bytes() == before

    def test_an_immutable_uri_reads_and_creates_no_file(self, tmp_path: Path) -> None:
        """?immutable=1&uri=true (a copy on read-only media) reads the rows and creates no
        -wal or -shm file beside the database."""
        path = tmp_path / "copy.db"
        with WorkflowStateManager(f"sqlite:///{path}") as store:
            store.create(new(), lease())
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]
        with WorkflowStateManager(f"sqlite:///file:{path}?immutable=1&uri=true") as ro:
            assert [r.seq for r in ro.history("s")] == [0]
            assert [w.state for w in ro.list_workflows()] == [S.INITIAL]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.db"]

    @pytest.mark.parametrize(
        "option", ["uri=maybe", "timeout=abc", "check_same_thread=abc", "detect_types=x"]
    )
    def test_a_driver_option_of_the_wrong_kind_is_refused(
        self, tmp_path: Path, option: str
    ) -> None:
        """?timeout=abc would fail at the first connection as a bare ValueError: refused as an
        input error, before the file is created."""
        with pytest.raises(InputValidationError, match="SQLite URL"):
            WorkflowStateManager(f"sqlite:///{tmp_path}/x.db?{option}")
        assert not (tmp_path / "x.db").exists()

    @pytest.mark.parametrize("option", ["mode=ro", "cache=shared", "immutable=1&timeout=5"])
    def test_a_uri_option_without_uri_true_is_refused(self, tmp_path: Path, option: str) -> None:
        """?mode=ro without uri=true would be dropped (the file opened read-write): refused,
        before the file is created."""
        with pytest.raises(InputValidationError, match="add uri=true"):
            WorkflowStateManager(f"sqlite:///{tmp_path}/x.db?{option}")
        assert not (tmp_path / "x.db").exists()

    @pytest.mark.parametrize(
        ("database", "expected"),
        [
            ("file:{tmp}/a%20b.db", "{tmp}/a b.db"),
            ("file://{tmp}/a.db", "{tmp}/a.db"),
            ("file://localhost{tmp}/a.db", "{tmp}/a.db"),
            ("file:{tmp}/a.db#frag", "{tmp}/a.db"),
            ("file::memory:", None),
            ("file:mem?mode=memory", None),
            ("{tmp}/plain.db", "{tmp}/plain.db"),
        ],
    )
    def test_uri_filenames_name_the_file_sqlite_opens(
        self, tmp_path: Path, database: str, expected: str | None
    ) -> None:
        """A URI filename names the file the way SQLite reads it; the missing-file check and
        the folder check look at that file."""
        tmp = str(tmp_path)
        query = "&" if "?" in database else "?"
        url = sa.make_url(f"sqlite:///{database.format(tmp=tmp)}{query}uri=true")
        found = sqlite_path(url)
        assert (None if found is None else str(found)) == (
            None if expected is None else expected.format(tmp=tmp)
        )
        if found is not None:
            assert missing_sqlite_file(url.render_as_string()) == found
            with WorkflowStateManager(url) as store:
                store.create(new(), lease())
            assert found.exists() and missing_sqlite_file(url.render_as_string()) is None

    def test_a_uri_in_a_missing_folder_or_on_a_host_is_refused(self, tmp_path: Path) -> None:
        """The folder check reads the URI's path; a URI naming another host is refused."""
        with pytest.raises(InputValidationError, match="does not exist"):
            WorkflowStateManager(f"sqlite:///file:{tmp_path}/missing/x.db?uri=true")
        with pytest.raises(InputValidationError, match="names a host"):
            WorkflowStateManager(f"sqlite:///file://server{tmp_path}/x.db?uri=true")
        assert list(tmp_path.iterdir()) == []

    def test_one_file_has_one_writer_lock_whatever_its_url(self, tmp_path: Path) -> None:
        """A plain path and a URI filename of the same file share the process's writer lock."""
        plain = make_engine(f"sqlite:///{tmp_path}/x.db")
        uri = make_engine(f"sqlite:///file:{tmp_path}/x.db?uri=true")
        other = make_engine(f"sqlite:///{tmp_path}/y.db")
        try:
            assert writer_lock(plain) is writer_lock(uri)
            assert writer_lock(plain) is not writer_lock(other)
        finally:
            for engine in (plain, uri, other):
                engine.dispose()

    def test_sqlite_pragmas(self, sqlite_url: str) -> None:
        """SQLite runs in WAL mode with foreign keys on, synchronous FULL and a busy timeout."""
        with (
            WorkflowStateManager(sqlite_url, busy_timeout_seconds=7) as store,
            store.engine.connect() as conn,
        ):
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 7000

    @pytest.mark.parametrize(
        ("query", "given", "expected_ms"),
        [
            ("", None, 30_000),
            ("?timeout=7", None, 7_000),
            ("?timeout=0.25", 0.25, 250),
            ("", 0, 0),
        ],
    )
    def test_the_busy_timeout_comes_from_the_argument_or_the_url(
        self, tmp_path: Path, query: str, given: float | None, expected_ms: int
    ) -> None:
        """busy_timeout_seconds, else the URL's ?timeout= (the one way an operator of the
        command line can set it), else 30 s: both SQLite's pragma and the driver's wait."""
        url = f"sqlite:///{tmp_path}/x.db{query}"
        with (
            WorkflowStateManager(url, busy_timeout_seconds=given) as store,
            store.engine.connect() as conn,
        ):
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == expected_ms
        if given is None:  # the command line opens its store from the URL alone
            with (
                open_store(url, must_exist=True, migrate=False) as cli_store,
                cli_store.engine.connect() as conn,
            ):
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == expected_ms

    @pytest.mark.parametrize(
        ("query", "given", "match"),
        [
            ("?timeout=7", 5, "disagree"),
            ("?timeout=-1", None, "timeout='-1'"),
            ("?timeout=inf", None, "timeout='inf'"),
            ("?timeout=nan", None, "timeout='nan'"),
            ("?timeout=3000000", None, "from 0 to 2,000,000"),
            ("?timeout=1&timeout=2", None, "more than once"),
        ],
    )
    def test_a_busy_timeout_the_url_cannot_hold_is_refused(
        self, tmp_path: Path, query: str, given: float | None, match: str
    ) -> None:
        """A URL's timeout out of range, or one that disagrees with busy_timeout_seconds (one
        would silently win), is an input error before the file is created."""
        with pytest.raises(InputValidationError, match=match):
            WorkflowStateManager(f"sqlite:///{tmp_path}/x.db{query}", busy_timeout_seconds=given)
        assert list(tmp_path.iterdir()) == []

    def test_locked_sqlite_is_a_typed_error(self, sqlite_url: str, tmp_path: Path) -> None:
        """A write lock held past the busy timeout surfaces as DatabaseBusyError, not a driver error."""
        store = WorkflowStateManager(sqlite_url, busy_timeout_seconds=0.2)
        blocker = sqlite3.connect(str(tmp_path / "story_fsm.db"), isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            with pytest.raises(DatabaseBusyError, match="busy timeout") as caught:
                store.create(new(), lease())
            assert isinstance(caught.value, StoreError)
            blocker.execute("ROLLBACK")
            with WorkflowStateManager(sqlite_url) as again:
                assert again.list_workflows() == []
            # The same store writes again at once: its writer connection and lock were freed.
            held = lease()
            store.create(new(), held)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(DatabaseBusyError):
                store.append("s", 0, START, held)
            blocker.execute("ROLLBACK")
            assert store.append("s", 0, START, held) is None
            assert [r.seq for r in store.history("s")] == [0, 1]
        finally:
            blocker.close()  # rolls back a transaction a failed assertion left open
            store.close()
            blocker.close()
            store.close()

    def test_caller_owned_engine_is_not_disposed(self, sqlite_url: str) -> None:
        """A store built on the caller's engine leaves that engine usable after close()."""
        engine = sa.create_engine(sqlite_url)
        WorkflowStateManager(engine).close()
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT 1")).scalar() == 1
        engine.dispose()


class TestInterruptedWrites:
    def test_a_ctrl_c_at_the_end_of_a_write_leaves_the_store_usable(
        self, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A KeyboardInterrupt at the first line of the transaction's exit (no commit, no
        rollback) neither keeps the writer lock nor lets the cut-short write be committed
        by the next one."""
        from story_fsm.store._transactions import HeldWrite

        store = WorkflowStateManager(sqlite_url)
        held = lease()
        store.create(new(), held)
        real_exit = HeldWrite.__exit__
        cut = []

        def interrupted_exit(self: HeldWrite, *args: Any) -> None:
            if not cut:
                cut.append(1)
                raise KeyboardInterrupt  # as a signal handler at the function's entry
            real_exit(self, *args)

        monkeypatch.setattr(HeldWrite, "__exit__", interrupted_exit)
        with pytest.raises(KeyboardInterrupt):
            store.append("s", 0, START, held)
        attempt = TransitionWrite(Trigger.ATTEMPT_FAILED, S.INITIAL, S.INITIAL, 1, 1)
        done = threading.Event()

        def write_then_close() -> None:
            store.append("s", 0, attempt, held)  # at seq 0 again: the cut write did not land
            assert [r.trigger for r in store.history("s")] == [
                Trigger.SUBMIT,
                Trigger.ATTEMPT_FAILED,
            ]
            store.close()
            done.set()

        worker = threading.Thread(target=write_then_close, daemon=True)
        worker.start()
        worker.join(10)
        assert done.is_set(), "the writer lock was left taken"


class TestClosedStore:
    def test_a_run_in_flight_still_commits_after_close_and_leaves_nothing_open(
        self, database_url: str
    ) -> None:
        """close() under a run (Ctrl-C in a with block): the paid answer is kept, no leak."""
        store = WorkflowStateManager(database_url)
        entered, release = threading.Event(), threading.Event()

        def slow_review() -> dict[str, Any]:
            entered.set()
            release.wait(10)
            return review(99, "publish")

        orchestrator = StoryWorkflowOrchestrator(
            ScriptedReviewer(slow_review), ScriptedPolisher(), store
        )
        outcome: list[Any] = []
        thread = threading.Thread(
            target=lambda: outcome.append(orchestrator.run_story_workflow("s", "T", "S", {}))
        )
        thread.start()
        assert entered.wait(10)
        store.close()
        release.set()
        thread.join(10)
        assert outcome and outcome[0].state is WorkflowState.COMPLETE
        assert store._writer is None  # the kept SQLite writer was given back again
        assert store.engine.pool.checkedin() == 0 and store.engine.pool.checkedout() == 0
        with WorkflowStateManager(database_url) as again:
            assert [r.trigger for r in again.history("s")] == [
                Trigger.SUBMIT, Trigger.START, Trigger.REVIEWED
            ]  # fmt: skip

    def test_a_closed_in_memory_store_refuses_use(self) -> None:
        """Its database went with the close: a later use is a StoreError, not a new empty one."""
        store = WorkflowStateManager("sqlite:///:memory:")
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.list_workflows()


def _corrupted(url: str, table: str, column: str, value: object, seq: int | None) -> Any:
    """A store holding a finished story "bad" (review, polish, review) with one value changed
    by plain SQL, beside an untouched "good"; *seq* picks the history row to change."""
    store = WorkflowStateManager(url)
    for story_id in ("bad", "good"):
        reviewer = ScriptedReviewer(review(60), review(99, "publish"))
        orchestrator = StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store)
        orchestrator.run_story_workflow(story_id, "T", "once upon a time", {}, "idea")
    name = getattr(store.schema, table).name
    where = "story_id = 'bad'" + (f" AND seq = {seq}" if seq is not None else "")
    with store.engine.begin() as conn:
        changed = conn.execute(
            sa.text(f"UPDATE {name} SET {column} = :v WHERE {where}"), {"v": value}
        )
        assert changed.rowcount == 1
    return store


#: Rows 2 and 4 of "bad" are its reviews, row 3 its polish.
_ANY_BACKEND = [
    ("inputs", "config", "{not json", None, ("load_row", "load_state"), "JSONDecodeError"),
    ("inputs", "config", "[1]", None, ("load_row", "load_state"), "config holds"),
    ("transitions", "payload", "[1,", 2, ("history", "load_state"), "JSONDecodeError"),
    ("transitions", "payload", "null", 0, ("history", "load_state"), "payload holds None"),
    ("transitions", "payload", '{"decision": "polish"}', 2, ("history", "load_state"), "score"),
    (
        "transitions",
        "payload",
        '{"decision": "polish", "quality_score": 150}',
        2,
        ("history", "load_state"),
        "150",
    ),
    ("transitions", "payload", '{"quality_score": 60}', 4, ("history", "load_state"), "decision"),
    (
        "transitions",
        "payload",
        '{"title": "T", "changes_count": "many"}',
        3,
        ("history", "load_state"),
        "changes_count holds 'many'",
    ),
]
# SQLite stores any value in any column; PostgreSQL refuses these at the write.
_SQLITE_ONLY = [
    (
        "workflows",
        "started_at",
        "yesterday",
        None,
        ("load_row", "load_state", "list"),
        "'yesterday'",
    ),
    ("workflows", "iteration", "second", None, ("load_row", "load_state", "list"), "iteration"),
    ("workflows", "last_quality_score", "high", None, ("load_row", "load_state", "list"), "score"),
    ("transitions", "cost", "free", 2, ("history", "load_state"), "cost holds 'free'"),
    ("transitions", "attempt", 1.5, 3, ("history", "load_state"), "attempt holds 1.5"),
]


class TestUnreadableRows:
    """A stored value story_fsm never writes (no JSON, no date, text where a count belongs,
    a review without its score) makes the read a StoreError naming the story and the value,
    not a driver's or json's error, nor a TypeError later in a result; other stories read
    as before."""

    @staticmethod
    def _check(store: WorkflowStateManager, reads: tuple[str, ...], says: str) -> None:
        calls = {
            "load_row": lambda: store.load_row("bad"),
            "load_state": lambda: store.load_state("bad"),
            "history": lambda: store.history("bad"),
            "list": store.list_workflows,
        }
        for read in reads:
            with pytest.raises(UnreadableRowError, match=r"cannot be read.*changed outside") as got:
                calls[read]()
            assert says in str(got.value)
            assert got.value.story_id == (None if read == "list" else "bad")
        if "list" not in reads:  # the listing reads every row, the bad one too
            assert [w.story_id for w in store.list_workflows()] == ["bad", "good"]
        good = store.load_state("good")
        assert good is not None and good.state is S.COMPLETE
        assert good.quality_scores == [60.0, 99.0]
        assert [r.seq for r in store.history("good")] == [0, 1, 2, 3, 4]

    @pytest.mark.parametrize(("table", "column", "value", "seq", "reads", "says"), _ANY_BACKEND)
    def test_a_row_changed_outside_story_fsm_is_a_store_error(
        self,
        database_url: str,
        table: str,
        column: str,
        value: str,
        seq: int | None,
        reads: tuple[str, ...],
        says: str,
    ) -> None:
        store = _corrupted(database_url, table, column, value, seq)
        with contextlib.closing(store):
            self._check(store, reads, says)

    @pytest.mark.parametrize(("table", "column", "value", "seq", "reads", "says"), _SQLITE_ONLY)
    def test_a_value_of_another_type_in_a_sqlite_column_is_a_store_error(
        self,
        sqlite_url: str,
        table: str,
        column: str,
        value: object,
        seq: int | None,
        reads: tuple[str, ...],
        says: str,
    ) -> None:
        store = _corrupted(sqlite_url, table, column, value, seq)
        with contextlib.closing(store):
            self._check(store, reads, says)


class TestWritesAfterRefusals:
    def test_refused_writes_leave_the_store_writing(self, store: WorkflowStateManager) -> None:
        """After a duplicate key and a lost race, the same store's next writes land.

        On SQLite every write reuses one kept connection and its cursor, so a failed statement
        must leave both ready for the next transaction (and nothing half-written behind).
        """
        held = lease()
        store.create(new(), held)
        with pytest.raises(WorkflowExistsError):
            store.create(new(), held)
        store.append("s", 0, START, held)
        with pytest.raises(ConcurrentAdvanceError):
            store.append("s", 0, START, held)
        other = lease("b")
        store.create(new("t"), other)
        store.append("t", 0, START, other)
        assert [r.seq for r in store.history("s")] == [0, 1]
        assert [r.seq for r in store.history("t")] == [0, 1]
        assert {s.story_id: s.seq for s in store.list_workflows()} == {"s": 1, "t": 1}
