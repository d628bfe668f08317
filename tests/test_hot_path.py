"""What the hot path promises beyond the loop itself: one commit for a new run's creation and
first edge, one reused machine per thread (nested runs included), and a store that survives a
dropped database connection. Real stores only (a SQLite file and a PostgreSQL schema)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from structlog.testing import capture_logs

from story_fsm import (
    StageFailedError,
    StoreError,
    StoryWorkflowOrchestrator,
    Trigger,
    WorkflowConfig,
    WorkflowExistsError,
    WorkflowState,
    WorkflowStateManager,
)
from story_fsm._records import Lease, TransitionWrite
from story_fsm.store._rows import advance_params, fold_advance, planned_row
from story_fsm.store.sql import utcnow
from story_fsm.validation import validate_new_workflow
from tests.pg_proxy import ReplyDroppingProxy, reply_dropping_proxy
from tests.stages import ScriptedPolisher, ScriptedReviewer, review

AUDIENCE = {"age_range": "8-12"}


def orchestrator(store: WorkflowStateManager, config: WorkflowConfig, **kw: Any) -> Any:
    reviewer = kw.pop("reviewer", None) or ScriptedReviewer(review(99, "publish"))
    return StoryWorkflowOrchestrator(reviewer, ScriptedPolisher(), store, config, **kw)


def refuse_row_one(store: WorkflowStateManager) -> None:
    """Install a database trigger that refuses every history row with seq 1."""
    table = store.schema.transitions.name
    with store.engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_one BEFORE INSERT ON {table} WHEN NEW.seq = 1 "
                "BEGIN SELECT RAISE(ABORT, 'row 1 refused'); END"
            )
        else:
            conn.exec_driver_sql(
                "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
                "IF NEW.seq = 1 THEN RAISE EXCEPTION 'row 1 refused'; END IF; RETURN NEW; "
                "END $$ LANGUAGE plpgsql"
            )
            conn.exec_driver_sql(
                f"CREATE TRIGGER refuse_one BEFORE INSERT ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
            )


class TestNewRunCommitsOnce:
    def test_creation_and_start_are_one_transaction(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """If the start row cannot be written, the workflow is not created either."""
        refuse_row_one(store)
        events: list[str] = []
        with pytest.raises(StoreError, match="row 1 refused"):
            orchestrator(store, fast_config).run_story_workflow(
                "s-1", "T", "Script.", AUDIENCE, progress_callback=lambda e, d: events.append(e)
            )
        assert store.load_row("s-1") is None
        assert store.list_workflows() == []
        assert events == []  # no workflow_started for a workflow that was never written

    def test_new_run_writes_submit_and_start_before_its_first_stage(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """When the first stage is called, rows 0 and 1 are committed and readable."""
        seen: list[list[tuple[int, Trigger, WorkflowState]]] = []

        class Peeking(ScriptedReviewer):
            def review_story(self, **kwargs: Any) -> Any:
                seen.append([(r.seq, r.trigger, r.dest) for r in store.history(kwargs["story_id"])])
                return super().review_story(**kwargs)

        result = orchestrator(
            store, fast_config, reviewer=Peeking(review(99, "publish"))
        ).run_story_workflow("s-1", "T", "Script.", AUDIENCE)
        assert seen[0] == [
            (0, Trigger.SUBMIT, WorkflowState.INITIAL),
            (1, Trigger.START, WorkflowState.REVIEWING),
        ]
        assert result.decision == "publish"

    def test_the_started_row_is_what_the_store_reads_back(
        self, store: WorkflowStateManager
    ) -> None:
        """Inserted in its started state, the row and records equal what is read back."""
        new = validate_new_workflow("s-1", "T", "S.", {"a": 1}, "idea", None, WorkflowConfig())
        lease = Lease("me", "token", 30)
        start = TransitionWrite(
            Trigger.START, WorkflowState.INITIAL, WorkflowState.REVIEWING, 1, 1, {"owner": "me"}
        )
        row, records = store.create_with_record(new, lease, first=start)
        assert (row.summary.state, row.summary.seq, row.lease_token) == (
            WorkflowState.REVIEWING,
            1,
            "token",
        )
        assert store.load_row("s-1") == row
        assert store.history("s-1") == records

    def test_existing_story_is_refused_with_nothing_written(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A second run of the same story id fails before any stage; the first is untouched."""
        first = orchestrator(store, fast_config).run_story_workflow("s-1", "T", "S.", AUDIENCE)
        reviewer = ScriptedReviewer(review(99, "publish"))
        with pytest.raises(WorkflowExistsError):
            orchestrator(store, fast_config, reviewer=reviewer).run_story_workflow(
                "s-1", "Other", "Other.", AUDIENCE
            )
        assert reviewer.calls == []
        assert len(store.history("s-1")) == first.metadata["history_length"]


class TestMachinesPerThread:
    def test_a_run_nested_in_a_callback_runs_on_its_own_machine(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """A progress callback that runs another story (same thread) does not disturb either."""
        orch = orchestrator(store, fast_config, reviewer=ScriptedReviewer(*[review(50)] * 9))
        inner: list[str] = []

        def callback(event: str, data: dict[str, Any]) -> None:
            if event == "polish_complete" and data["story_id"] == "outer" and not inner:
                inner.append(orch.run_story_workflow("inner", "T", "S.", AUDIENCE).decision)

        outer = orch.run_story_workflow("outer", "T", "S.", AUDIENCE, progress_callback=callback)
        assert inner == ["max_iterations_reached"]
        assert outer.decision == "max_iterations_reached"
        for story in ("outer", "inner"):
            history = store.history(story)
            assert [r.seq for r in history] == list(range(len(history)))
            assert history[-1].dest is WorkflowState.COMPLETE

    def test_threads_reuse_machines_without_mixing_runs(
        self, store: WorkflowStateManager, fast_config: WorkflowConfig
    ) -> None:
        """Several threads, several stories each: every history is whole and in order."""
        orch = orchestrator(store, fast_config, reviewer=ScriptedReviewer(*[review(50)] * 200))
        errors: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(4):
                    orch.run_story_workflow(f"t{n}-{i}", "T", "S.", AUDIENCE)
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        for summary in store.list_workflows():
            history = store.history(summary.story_id)
            assert [r.seq for r in history] == list(range(len(history)))
            assert summary.state is WorkflowState.COMPLETE


VICTIM = "story_fsm_test_victim"


def terminate_victims(pg_url: str) -> int:
    """Close, server side, every connection named :data:`VICTIM`; return how many."""
    admin = sa.create_engine(pg_url)
    try:
        with admin.connect() as conn:
            return len(
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE application_name = '{VICTIM}'"
                ).all()
            )
    finally:
        admin.dispose()


class TestDroppedConnections:
    def test_store_reconnects_after_the_server_closed_its_connections(
        self, pg_url: str, fast_config: WorkflowConfig
    ) -> None:
        """Pooled connections killed by the server: the next write and read still succeed."""
        url = sa.make_url(pg_url).update_query_dict({"application_name": VICTIM})
        store = WorkflowStateManager(url.render_as_string(hide_password=False))
        try:
            reviewer = ScriptedReviewer(review(50), review(99, "publish"))
            killed: list[int] = []

            class Killing(ScriptedPolisher):
                def polish_story(self, **kwargs: Any) -> Any:
                    killed.append(terminate_victims(pg_url))
                    return super().polish_story(**kwargs)

            orch = StoryWorkflowOrchestrator(reviewer, Killing(), store, fast_config)
            with capture_logs() as logs:
                result = orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
            # The write after the kill met a dead connection and was run again on a new one.
            assert [e["event"] for e in logs].count("database_reconnect") == 1
            assert killed and killed[0] >= 1  # the store's pooled connection was among them
            assert result.decision == "publish"
            assert result.total_polishes == 1
            terminate_victims(pg_url)
            with capture_logs() as logs:
                row = store.load_row("s-1")  # a read through a dead pooled connection, renewed
            assert row is not None and row.summary.state is WorkflowState.COMPLETE
            assert [e["event"] for e in logs] == ["database_reconnect"]
            assert [r.seq for r in store.history("s-1")] == list(range(5))
        finally:
            store.close()

    @pytest.mark.parametrize("pool", ["kept", "emptied"])
    def test_a_run_rides_out_a_server_restart(
        self, pg_url: str, fast_config: WorkflowConfig, pool: str
    ) -> None:
        """Every connection cut and new ones refused for a while: the run waits, then goes on.

        The ``polished`` write meets the outage, on a pooled connection that died or (pool
        emptied) on a new one the server refuses; it is written once the server answers
        again, and the committed review is not called again.
        """
        with (
            reply_dropping_proxy(pg_url) as proxy,
            WorkflowStateManager(proxy.url(pg_url), reconnect_seconds=20) as store,
        ):
            polished: list[float] = []

            class Restarting(ScriptedPolisher):
                def polish_story(self, **kwargs: Any) -> Any:
                    polished.append(time.monotonic())
                    proxy.outage(1.0)
                    if pool == "emptied":
                        store.engine.dispose()
                    return super().polish_story(**kwargs)

            reviewer = ScriptedReviewer(review(50), review(99, "publish"))
            orch = StoryWorkflowOrchestrator(reviewer, Restarting(), store, fast_config)
            with capture_logs() as logs:
                result = orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
            done = time.monotonic()
            assert result.decision == "publish"
            assert (len(reviewer.calls), len(polished)) == (2, 1)
            assert proxy.refused >= 1  # the store tried during the outage, and waited
            assert done - polished[0] >= 1.0
            assert "database_reconnect" in [e["event"] for e in logs]
            history = store.history("s-1")
            assert [r.seq for r in history] == list(range(5))
            assert [r.trigger for r in history].count(Trigger.POLISHED) == 1

    def test_a_server_down_past_the_window_is_a_store_error_and_resumable(
        self, pg_url: str, fast_config: WorkflowConfig
    ) -> None:
        """Down longer than reconnect_seconds: StoreError; the committed rows stay, and a
        resume once the server is back goes on from the last one."""
        with (
            reply_dropping_proxy(pg_url) as proxy,
            WorkflowStateManager(proxy.url(pg_url), reconnect_seconds=0.3) as store,
        ):

            class Restarting(ScriptedPolisher):
                def polish_story(self, **kwargs: Any) -> Any:
                    proxy.outage(2.0)
                    return super().polish_story(**kwargs)

            orch = StoryWorkflowOrchestrator(
                ScriptedReviewer(review(50)), Restarting(), store, fast_config
            )
            with pytest.raises(StoreError):
                orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
            time.sleep(2.0)  # the outage ends
            row = store.load_row("s-1")
            assert row is not None and row.summary.state is WorkflowState.POLISHING
            reviewer = ScriptedReviewer(review(99, "publish"))
            result = StoryWorkflowOrchestrator(
                reviewer, ScriptedPolisher(), store, fast_config
            ).resume("s-1")
            assert result.decision == "publish" and len(reviewer.calls) == 1

    @pytest.mark.parametrize("write", ["create", "append"])
    def test_a_write_run_again_after_an_outage_takes_a_lease_from_then(
        self, pg_url: str, write: str
    ) -> None:
        """A write that waited out an outage longer than its lease holds a lease counted from
        when it lands, not from its first try (already over then: the story would be
        claimable by another worker while this run goes on); the row it returns says so."""
        from story_fsm._records import NewWorkflow

        held = Lease("me", "token-1", 0.5)
        start = TransitionWrite(Trigger.START, WorkflowState.INITIAL, WorkflowState.REVIEWING, 1, 1)
        new = NewWorkflow("s-1", "T", "S", {}, "", None, WorkflowConfig().to_dict())
        with (
            reply_dropping_proxy(pg_url) as proxy,
            WorkflowStateManager(proxy.url(pg_url), reconnect_seconds=20) as store,
        ):
            if write == "append":
                current = store.create(new, held)
            proxy.outage(1.5)  # three times the lease
            if write == "create":
                row, _records = store.create_with_record(new, held, first=start)
            else:
                applied = store.append("s-1", 0, start, held, current)
                assert applied is not None
                row, _record = applied
            landed = utcnow()
            assert proxy.refused >= 1  # the write did wait for the server
            stored = store.load_row("s-1")
        assert stored is not None and stored.summary.lease_owner == "me"
        assert row.summary.lease_expires_at == stored.summary.lease_expires_at
        expires = stored.summary.lease_expires_at
        assert expires is not None and expires > landed - timedelta(seconds=0.2)
        assert stored.summary.state is WorkflowState.REVIEWING


Proxied = tuple[ReplyDroppingProxy, WorkflowStateManager]


@pytest.fixture
def proxied(pg_url: str) -> Iterator[Proxied]:
    """A store on PostgreSQL through a proxy that can lose one reply on purpose."""
    with (
        reply_dropping_proxy(pg_url) as proxy,
        WorkflowStateManager(proxy.url(pg_url)) as store,
    ):
        yield proxy, store


class TestAmbiguousCommits:
    """The connection dies after the server committed, before the reply arrives.

    The proxy withholds the server's reply to one statement and closes the connection: the
    store cannot tell from the error whether its COMMIT landed, so it must look before it
    writes again (writing again would be refused by the fence or the key).
    """

    @staticmethod
    def _cut_the_polished_write(
        proxied: Proxied, config: WorkflowConfig, *, lose_request: bool
    ) -> tuple[Any, list[str], list[str]]:
        """Run a story whose ``polished`` transition loses its connection; return the
        result, the log events and the polisher's calls."""
        proxy, store = proxied
        calls: list[str] = []

        class Arming(ScriptedPolisher):
            def polish_story(self, **kwargs: Any) -> Any:
                calls.append("polish")
                # The next statement carrying this stage's trigger: the transition.
                proxy.arm(lambda data: b"polished" in data, lose_request=lose_request)
                return super().polish_story(**kwargs)

        reviewer = ScriptedReviewer(review(50), review(99, "publish"))
        orch = StoryWorkflowOrchestrator(reviewer, Arming(), store, config)
        with capture_logs() as logs:
            result = orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
        assert proxy.dropped == 1
        return result, [e["event"] for e in logs], calls

    def test_a_transition_whose_commit_landed_is_not_written_again(
        self, proxied: Proxied, fast_config: WorkflowConfig
    ) -> None:
        """The reply to the ``polished`` write is lost after its COMMIT: found, not redone."""
        result, events, calls = self._cut_the_polished_write(
            proxied, fast_config, lose_request=False
        )
        assert events.count("database_reconnect") == 1
        assert events.count("write_landed") == 1  # found, not written twice
        assert result.decision == "publish"
        assert calls == ["polish"]  # the committed stage was not asked again
        store = proxied[1]
        history = store.history("s-1")
        assert [r.seq for r in history] == list(range(5))
        assert [r.trigger for r in history].count(Trigger.POLISHED) == 1
        row = store.load_row("s-1")
        assert row is not None and row.summary.state is WorkflowState.COMPLETE
        assert row.summary.seq == 4 and row.total_polishes == 1

    def test_a_transition_that_never_reached_the_server_is_written_once(
        self, proxied: Proxied, fast_config: WorkflowConfig
    ) -> None:
        """The other side of the question: the write did not land, so it is run again."""
        result, events, calls = self._cut_the_polished_write(
            proxied, fast_config, lose_request=True
        )
        assert events.count("database_reconnect") == 1 and "write_landed" not in events
        assert result.decision == "publish" and calls == ["polish"]
        triggers = [r.trigger for r in proxied[1].history("s-1")]
        assert triggers.count(Trigger.POLISHED) == 1 and len(triggers) == 5

    def test_a_creation_whose_commit_landed_is_the_run_s_own(
        self, proxied: Proxied, fast_config: WorkflowConfig
    ) -> None:
        proxy, store = proxied
        orch = orchestrator(store, fast_config)
        proxy.arm(lambda data: b"COMMIT" in data)  # the creation's transaction
        with capture_logs() as logs:
            result = orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
        assert proxy.dropped == 1
        assert [e["event"] for e in logs].count("write_landed") == 1
        assert result.decision == "publish"
        assert [r.trigger for r in store.history("s-1")] == [
            Trigger.SUBMIT, Trigger.START, Trigger.REVIEWED
        ]  # fmt: skip
        # A later creation of the same id is still refused: the check is the run's own.
        with pytest.raises(WorkflowExistsError):
            orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)

    def test_a_submission_whose_commit_landed_is_not_reported_as_taken(
        self, proxied: Proxied, fast_config: WorkflowConfig
    ) -> None:
        """Without a lease (a submission for workers) the creation is still recognized."""
        proxy, store = proxied
        orch = orchestrator(store, fast_config)
        proxy.arm(lambda data: b"COMMIT" in data)
        summary = orch.submit("s-1", "T", "Script.", AUDIENCE)
        assert proxy.dropped == 1
        assert summary.state is WorkflowState.INITIAL and summary.lease_owner is None
        assert [r.trigger for r in store.history("s-1")] == [Trigger.SUBMIT]

    def test_a_landed_write_is_recognized_after_the_story_moved_on(
        self, proxied: Proxied, pg_url: str, fast_config: WorkflowConfig
    ) -> None:
        """A re-queue whose reply was lost, claimed by a worker before the store looks.

        The summary row has changed by then (a new lease); the history row written is the
        proof that the re-queue landed, and it is not reported as a lost race.
        """
        proxy, store = proxied
        orch = orchestrator(store, fast_config, reviewer=ScriptedReviewer(RuntimeError("x")))
        with pytest.raises(StageFailedError):
            orch.run_story_workflow("s-1", "T", "Script.", AUDIENCE)
        renew = store._renew_pool

        def renew_then_claim(error: Any) -> None:
            renew(error)
            with WorkflowStateManager(pg_url) as other:  # a worker, straight to the server
                assert other.claim_next(Lease("worker", "claim", 30)) is not None

        store._renew_pool = renew_then_claim  # type: ignore[method-assign]
        proxy.arm(lambda data: b"retry" in data)
        with capture_logs() as logs:
            summary = orch.requeue("s-1")
        assert proxy.dropped == 1
        assert [e["event"] for e in logs].count("write_landed") == 1
        assert [r.trigger for r in store.history("s-1")][-1] is Trigger.RETRY
        assert summary.lease_owner == "worker"  # read after the claim: the story moved on

    def test_a_submission_claimed_before_the_check_is_still_the_caller_s(
        self, proxied: Proxied, pg_url: str, fast_config: WorkflowConfig
    ) -> None:
        """A submission whose reply was lost and which a worker claimed at once is not 'taken'."""
        proxy, store = proxied
        renew = store._renew_pool

        def renew_then_claim(error: Any) -> None:
            renew(error)
            with WorkflowStateManager(pg_url) as other:
                assert other.claim_next(Lease("worker", "claim", 30)) is not None

        store._renew_pool = renew_then_claim  # type: ignore[method-assign]
        proxy.arm(lambda data: b"COMMIT" in data)
        summary = orchestrator(store, fast_config).submit("s-1", "T", "Script.", AUDIENCE)
        assert proxy.dropped == 1
        assert summary.story_id == "s-1"
        assert [r.trigger for r in store.history("s-1")] == [Trigger.SUBMIT]

    def test_a_claim_whose_commit_landed_is_kept(self, proxied: Proxied) -> None:
        """The claim that landed is the one returned: no second story is held by it."""
        proxy, store = proxied
        orch = orchestrator(store, WorkflowConfig())
        for n in (1, 2):
            orch.submit(f"s-{n}", "T", "Script.", AUDIENCE)
        lease = Lease("worker-a", "claim-token", 30)
        proxy.arm(lambda data: b"claim-token" in data)
        row = store.claim_next(lease)
        assert proxy.dropped == 1
        assert row is not None and row.summary.story_id == "s-1"
        held = {s.story_id: s.lease_owner for s in store.list_workflows()}
        assert held == {"s-1": "worker-a", "s-2": None}


class TestRowFold:
    def test_fold_carries_every_field_the_update_does_not_set(self) -> None:
        """The in-memory fold keeps each field of the row it was given unless the UPDATE sets it.

        Guards the field-by-field construction in ``fold_advance`` against a field added to
        the row or the summary and forgotten there.
        """
        new = validate_new_workflow("s-1", "T", "S.", {"a": 1}, "idea", {"x": 1}, WorkflowConfig())
        lease = Lease("me", "token", 30)
        row = planned_row(new, lease, utcnow())
        write = TransitionWrite(Trigger.ATTEMPT_FAILED, row.summary.state, row.summary.state, 1, 1)
        params = advance_params("s-1", 0, write, lease, utcnow())
        folded = fold_advance(row, params, {})
        set_by_update = {
            "state", "seq", "iteration", "updated_at", "lease_expires_at", "decision", "error",
            "completed_at", "lease_owner", "lease_token", "summary",
        }  # fmt: skip
        for before, after in ((row.summary, folded.summary), (row, folded)):
            for field in dataclasses.fields(after):
                if field.name not in set_by_update:
                    assert getattr(after, field.name) == getattr(before, field.name), field.name
        assert (folded.summary.seq, folded.summary.updated_at) == (1, params["p_now"])


class TestPlannedRow:
    @pytest.mark.parametrize("with_lease", [True, False])
    @pytest.mark.parametrize("summary", [None, {"notes": ["a", 1.5]}, "text"])
    def test_planned_row_is_what_the_store_maps_back(
        self, with_lease: bool, summary: object
    ) -> None:
        """The row built from a validated submission equals the row mapped from its columns."""
        from types import SimpleNamespace

        from story_fsm.store._rows import creation_values, workflow_from_row
        from story_fsm.store._statements import UNSET_AT_CREATE

        config = WorkflowConfig(max_iterations=4, review_model="m")
        new = validate_new_workflow("s-1", "T", "S.", {"age": [8, 12]}, "idea", summary, config)
        lease = Lease("me", "token", 30) if with_lease else None
        now = utcnow()
        values, inputs = creation_values(new, lease, now)
        mapped = workflow_from_row(
            SimpleNamespace(**{**values, **inputs, **dict.fromkeys(UNSET_AT_CREATE)})
        )
        assert planned_row(new, lease, now) == mapped


class TestPreparedWrites:
    def test_a_prepared_write_stores_what_core_stores(self, database_url: str) -> None:
        """The fast path hands the driver the values Core would: the same stored text.

        A timestamp with no microseconds is where formats part (sqlite3's default adapter
        drops ``.000000``, SQLAlchemy's SQLite type keeps it). With warnings as errors, the
        write also proves that no value reaches a driver adapter deprecated since Python 3.12.
        """
        import warnings
        from datetime import UTC, datetime

        from story_fsm.store._prepared import PreparedWrite, raw_transaction
        from story_fsm.store.schema import UTCDateTime

        table = sa.Table(
            "prepared_probe",
            sa.MetaData(),
            sa.Column("id", sa.Integer, primary_key=True),
            sa.Column("at", UTCDateTime, nullable=False),
        )
        engine = sa.create_engine(database_url)
        try:
            table.metadata.create_all(engine)
            at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
            with engine.begin() as conn:
                conn.execute(table.insert(), {"id": 1, "at": at})
            write = PreparedWrite(table.insert(), engine.dialect, ["id", "at"])
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with raw_transaction(engine) as tx:
                    tx.execute(write, {"id": 2, "at": at})
            with engine.connect() as conn:
                texts = conn.execute(
                    sa.text("SELECT CAST(at AS TEXT) FROM prepared_probe ORDER BY id")
                )
                core, fast = texts.scalars().all()
                read_back = conn.execute(sa.select(table.c.at).order_by(table.c.id)).scalars().all()
            assert fast == core
            assert read_back == [at, at]
        finally:
            engine.dispose()

    @pytest.mark.parametrize(
        "value",
        [
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),  # no microseconds: ".000000" is kept
            datetime(2026, 12, 3, 23, 59, 59, 999999, tzinfo=UTC),
            datetime(1, 1, 1, tzinfo=UTC),
            datetime(9999, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
            # Another zone: converted to UTC first (here across a day boundary).
            datetime(2026, 5, 1, 21, 30, 0, 7, tzinfo=timezone(timedelta(hours=-5))),
            datetime(2026, 5, 1, 1, 0, tzinfo=timezone(timedelta(hours=3, minutes=30))),
        ],
    )
    def test_sqlite_datetime_text_is_sqlalchemys(self, value: datetime) -> None:
        """UTCDateTime's one-call SQLite processor writes the text SQLAlchemy's chain would."""
        from sqlalchemy.dialects import sqlite

        from story_fsm.store.schema import UTCDateTime

        dialect = sqlite.dialect()
        fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        core = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert fast is not None and core is not None
        expected = core(value.astimezone(UTC).replace(tzinfo=None))
        assert fast(value) == expected
        assert fast(None) is None

    def test_sqlite_datetime_text_is_remembered_per_value_not_per_instant(self) -> None:
        """The processor's memo of its last two values never hands one value another's text.

        Two values alternating (a transition's time and its lease's expiry), the same wall
        clock in another zone (another instant), and a value pushed out of the memo are each
        written as SQLAlchemy writes them; a naive value is refused even after an aware one
        with the same fields.
        """
        from sqlalchemy.dialects import sqlite

        from story_fsm.store.schema import UTCDateTime

        dialect = sqlite.dialect()
        fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        core = sa.DateTime().dialect_impl(dialect).bind_processor(dialect)
        assert fast is not None and core is not None
        now = datetime(2026, 3, 4, 5, 6, 7, 8, tzinfo=UTC)
        expiry = now + timedelta(seconds=60)
        same_clock = now.replace(tzinfo=timezone(timedelta(hours=2)))  # two hours earlier
        values = [now, None, expiry, now, expiry, same_clock, now, now + timedelta(1), expiry]
        for value in values:
            expected = None if value is None else core(value.astimezone(UTC).replace(tzinfo=None))
            assert fast(value) == expected
        with pytest.raises(ValueError, match="timezone-aware"):
            fast(now.replace(tzinfo=None))

    def test_sqlite_datetime_refuses_a_naive_value(self) -> None:
        from sqlalchemy.dialects import sqlite

        from story_fsm.store.schema import UTCDateTime

        dialect = sqlite.dialect()
        fast = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert fast is not None
        with pytest.raises(ValueError, match="timezone-aware"):
            fast(datetime(2026, 1, 1))

    def test_prepared_params_carry_constants_not_required_markers(self) -> None:
        """Constants the statement holds are merged in; the required binds come from the call."""
        from sqlalchemy.dialects import sqlite

        from story_fsm.store._prepared import PreparedWrite
        from story_fsm.store.schema import UTCDateTime

        table = sa.Table(
            "probe",
            sa.MetaData(),
            sa.Column("id", sa.Integer),
            sa.Column("kind", sa.String),
            sa.Column("score", sa.Float),
            sa.Column("at", UTCDateTime),
        )
        stmt = (
            table.update()
            .where(table.c.id == sa.bindparam("p_id"))
            .values(kind="fixed", score=sa.bindparam("p_score"), at=sa.bindparam("p_at"))
        )
        write = PreparedWrite(stmt, sqlite.dialect())
        at = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
        params = write.params({"p_id": 7, "p_score": 3, "p_at": at})
        assert list(params) == ["fixed", 3.0, "2026-01-02 03:04:05.000006", 7]
        assert isinstance(params[1], float)
        with pytest.raises(KeyError):
            write.params({"p_id": 7, "p_score": 3})  # a required value is missing


class TestReusedJsonEncoder:
    """``_json.dumps``, the history's encoder, writes what ``json.dumps`` writes."""

    @pytest.mark.parametrize(
        "value",
        [
            {"decision": "polish", "quality_score": 72.5, "notes": ["a", "b"], "cost": None},
            {"nested": {"deep": [{"x": 1}, [], {}]}, "flag": True, "n": -(10**30)},
            {"text": 'quotes " and \\ and \n and é and 漢 and \U0001f600'},
            {"nan": float("nan"), "inf": float("inf")},  # json.dumps' default allow_nan
            [1, "two", 3.0],
            {},
            "a bare string",
            None,
            17,
            0.1,
        ],
    )
    def test_text_is_json_dumps(self, value: object) -> None:
        """Byte for byte the standard library's default output, for every JSON type."""
        import json

        from story_fsm._json import dumps

        assert dumps(value) == json.dumps(value)

    def test_an_unencodable_value_is_a_type_error(self) -> None:
        """An object JSON cannot hold raises TypeError, as json.dumps does, and the encoder
        stays usable afterwards."""
        from story_fsm._json import dumps

        with pytest.raises(TypeError, match="not JSON serializable"):
            dumps({"when": object()})
        assert dumps({"ok": 1}) == '{"ok": 1}'
