//! [`Queries`]: the system database's statements, formatted once for a schema prefix.

use super::postgres::{EVENTS_CHANNEL, STREAMS_CHANNEL};
use crate::queue::INTERNAL_QUEUE;
use crate::serialization::PORTABLE_JSON;

/// Pre-formatted statements for one schema prefix.
#[derive(Debug)]
pub(super) struct Queries {
    pub(super) insert_workflow: String,
    /// `insert_workflow` for an enqueue: on Postgres it also tells other processes (NOTIFY,
    /// delivered at commit).
    pub(super) enqueue_workflow: String,
    /// Returns the finished row's `queue_name`; on Postgres a user queue's other processes
    /// are told a slot is free.
    pub(super) complete_workflow: String,
    pub(super) get_workflow: String,
    pub(super) record_step: String,
    pub(super) load_steps: String,
    pub(super) recover_pending: String,
    pub(super) dequeue: String,
    pub(super) dequeue_partition: String,
    pub(super) queue_counts: String,
    pub(super) queue_counts_partition: String,
    pub(super) queues_with_work: String,
    pub(super) queue_partitions: String,
    pub(super) next_delayed: String,
    pub(super) promote_delayed: String,
    pub(super) dead_letter: String,
    pub(super) insert_version: String,
    pub(super) send: String,
    pub(super) has_message: String,
    pub(super) consume: String,
    pub(super) set_event: String,
    pub(super) set_event_history: String,
    pub(super) get_event: String,
    /// Appends a stream value (`$1` workflow, `$2` function ID, `$3` key, `$4` value, `$5`
    /// serialization); on Postgres it also notifies readers (`$6` payload), delivered at commit.
    pub(super) write_stream: String,
    /// Postgres, from a workflow body, one autocommit statement: the marker row
    /// (`record_step`'s `$1`…`$10`) and, only when it was freshly inserted, the append
    /// (`$11`…`$14`: key, value, serialization, NOTIFY payload).
    pub(super) write_stream_marked: String,
    /// Postgres, one autocommit statement: the marker row (`record_step`'s `$1`…`$10`) and,
    /// only when it was freshly inserted, the event (`$11` key, `$12` value), its history row
    /// and the event's NOTIFY (`$13` payload, delivered at commit). Returns `record_step`'s
    /// columns.
    pub(super) set_event_marked: String,
    /// Postgres, one autocommit statement: the event (`$1` workflow, `$2` function ID, `$3` key,
    /// `$4` value), its history row and its NOTIFY (`$5` payload).
    pub(super) set_event_plain: String,
    /// Postgres, one autocommit statement: the marker row (`$1`…`$10`) and, only when it was
    /// freshly inserted, the message (`$11` UUID, `$12` destination, `$13` topic, `$14` text,
    /// `$15` created at). Returns `record_step`'s columns.
    pub(super) send_marked: String,
    /// Postgres, one autocommit statement: takes the oldest unconsumed message (`$1` workflow,
    /// `$7` topic) and records the `recv` at `$2` (`$3` name, `$4` started, `$5` completed, `$6`
    /// application) holding it. Returns `('taken', message, serialization, NULL)`;
    /// `('elsewhere', …)` when nothing was taken and another execution had recorded `$2`; no
    /// row when no message waits (nothing is written). A position another execution recorded is a unique violation
    /// and the cancel guard a NOT NULL violation: either fails the whole statement, so the
    /// message stays unconsumed.
    pub(super) take_message: String,
    /// `take_message` for a recv's first look, which also records its deadline when no
    /// message waits: the `DBOS.sleep` at `$8` holding `$9` (the wake-up), written at `$10`,
    /// as `record_step` writes it. Returns `('taken', message, serialization, NULL)`,
    /// `('deadline', NULL, NULL, completed_at_epoch_ms of the sleep row)` or `('elsewhere', …)`
    /// (nothing written).
    pub(super) take_message_or_deadline: String,
    pub(super) read_stream: String,
    /// A debounce's bounce: the `DELAYED` debounced workflow `$1` on queue `$2` with
    /// deduplication ID `$3` takes inputs `$5` (`$6` their tag) and waits until `$4`, capped
    /// at its deadline. Returns its ID.
    pub(super) bounce: String,
}

/// The `function_name` of a step write, `$3`, or NULL when workflow `$1` is no longer this
/// executor's running workflow: CANCELLED (by anyone), or no longer PENDING under executor
/// `me` (handed back to a queue, or taken over by another process after this one missed its
/// liveness deadline). The NOT NULL violation stops the write (and, in a transaction step, the
/// `COMMIT` sent after it), so nothing is recorded by an execution that lost its workflow.
pub(super) fn cancel_guard(p: &str, me: &str) -> String {
    guard_naming(p, me, "$3")
}

/// [`cancel_guard`] for a row whose `function_name` is the SQL expression `name`.
fn guard_naming(p: &str, me: &str, name: &str) -> String {
    let me = sql_literal(me);
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM {p}workflow_status WHERE workflow_uuid = $1 \
         AND (status <> 'PENDING' OR executor_id <> {me})) THEN NULL ELSE {name} END"
    )
}

/// `s` as a SQL string literal (standard strings: only `'` is special).
pub(super) fn sql_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The channel on which Postgres processes tell each other a queue has work, or a free slot:
/// payload the queue's name. Ours (DBOS has none).
pub(crate) const QUEUE_CHANNEL: &str = "dbos_queue_channel";

/// The claim of up to `$6` workflows of queue `$5` (optionally only partition `$8`) for this
/// executor: one statement that picks them in queue order and flips them to PENDING. On
/// Postgres rows another transaction holds are skipped.
/// The WHERE term of the in-flight partial indexes, repeated in SQLite's queue queries so that
/// its planner uses them.
const IN_FLIGHT: &str = " AND status IN ('ENQUEUED', 'PENDING')";

fn dequeue(p: &str, pg: bool, partition: bool) -> String {
    let key = if partition {
        " AND queue_partition_key = $8"
    } else {
        ""
    };
    // SQLite uses a partial index only when the query spells out the index's own WHERE term
    // (it cannot tell that `status = 'ENQUEUED'` implies `status IN (…)`): without it every
    // dispatch scanned the whole table, finished workflows included.
    let in_flight = if pg { "" } else { IN_FLIGHT };
    let pick = format!(
        "SELECT workflow_uuid FROM {p}workflow_status \
         WHERE queue_name = $5 AND status = 'ENQUEUED'{in_flight}{key} \
         AND (application_version = $2 OR application_version IS NULL) \
         AND (application_name = $3 OR application_name IS NULL) \
         ORDER BY priority, created_at LIMIT $6"
    );
    let set = "SET status = 'PENDING', executor_id = $1, application_version = $2, \
         application_name = $3, started_at_epoch_ms = $4, rate_limited = $7, \
         recovery_attempts = COALESCE(recovery_attempts, 0) + 1, updated_at = $4, \
         workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NOT NULL \
         AND workflow_deadline_epoch_ms IS NULL THEN $4 + workflow_timeout_ms \
         ELSE workflow_deadline_epoch_ms END";
    // The last column: whether the workflow has recorded operations to load (a fresh
    // enqueue has none, and then resuming it reads nothing more).
    let returning = |w: &str| {
        format!(
            "RETURNING {w}workflow_uuid, {w}name, {w}inputs, {w}serialization, \
             {w}recovery_attempts, {w}workflow_deadline_epoch_ms, {w}priority, {w}created_at, \
             EXISTS (SELECT 1 FROM {p}operation_outputs o WHERE o.workflow_uuid = {w}workflow_uuid), \
             CAST({w}attributes AS TEXT)"
        )
    };
    if pg {
        // Materialized: a rescan of a SKIP LOCKED subquery may pick other rows, so an
        // `IN (subquery)` could claim more than the limit.
        format!(
            "WITH picked AS MATERIALIZED ({pick} FOR UPDATE SKIP LOCKED) \
             UPDATE {p}workflow_status AS w {set} FROM picked \
             WHERE w.workflow_uuid = picked.workflow_uuid AND w.status = 'ENQUEUED' {}",
            returning("w.")
        )
    } else {
        format!(
            "UPDATE {p}workflow_status {set} WHERE workflow_uuid IN ({pick}) \
             AND status = 'ENQUEUED' {}",
            returning(&format!("{p}workflow_status."))
        )
    }
}

/// The append of a stream value at the next offset, its parameters numbered from `$first`
/// (key, value, serialization, and on Postgres the NOTIFY payload; `$1` and `$2` are the
/// workflow and function ID). On Postgres it notifies `dbos_streams_channel` per row inserted.
fn stream_insert(p: &str, pg: bool, first: u32, source: &str) -> String {
    let (key, value, ser, payload) = (first, first + 1, first + 2, first + 3);
    let notify = if pg {
        format!(" RETURNING pg_notify('{STREAMS_CHANNEL}', ${payload})")
    } else {
        String::new()
    };
    format!(
        "INSERT INTO {p}streams (workflow_uuid, function_id, key, value, serialization, \"offset\") \
         SELECT $1, $2, ${key}, ${value}, ${ser}, COALESCE((SELECT MAX(\"offset\") FROM {p}streams \
         WHERE workflow_uuid = $1 AND key = ${key}), -1) + 1{source}{notify}"
    )
}

/// What a queue's limits are measured against: its running workflows (all, and this
/// executor's: `$2`), and the starts in the rate limiter's window (since `$3`), with the
/// oldest of those (when the window next frees a slot). Optionally only partition `$4`.
fn queue_counts(p: &str, partition: bool) -> String {
    let key = if partition {
        " AND queue_partition_key = $4"
    } else {
        ""
    };
    format!(
        "SELECT (SELECT COUNT(*) FROM {p}workflow_status WHERE queue_name = $1 AND status = 'PENDING'{key}), \
         (SELECT COUNT(*) FROM {p}workflow_status WHERE queue_name = $1 AND status = 'PENDING' \
         AND executor_id = $2{key}), \
         (SELECT COUNT(*) FROM {p}workflow_status WHERE queue_name = $1 AND rate_limited = TRUE \
         AND status NOT IN ('ENQUEUED', 'DELAYED') AND started_at_epoch_ms > $3{key}), \
         (SELECT MIN(started_at_epoch_ms) FROM {p}workflow_status WHERE queue_name = $1 \
         AND rate_limited = TRUE AND status NOT IN ('ENQUEUED', 'DELAYED') \
         AND started_at_epoch_ms > $3{key})"
    )
}

fn complete_workflow(p: &str, pg: bool, me: &str) -> String {
    let me = sql_literal(me);
    let update = format!(
        "UPDATE {p}workflow_status SET status = $2, output = $3, error = $4, \
         deduplication_id = NULL, updated_at = $5, completed_at = $5 \
         WHERE workflow_uuid = $1 AND status = 'PENDING' \
         AND (executor_id = {me} OR executor_id IS NULL) RETURNING queue_name"
    );
    if !pg {
        return update;
    }
    format!(
        "WITH u AS ({update}) SELECT u.queue_name FROM u LEFT JOIN LATERAL \
         (SELECT pg_notify('{QUEUE_CHANNEL}', u.queue_name) WHERE u.queue_name IS NOT NULL \
         AND u.queue_name <> '{INTERNAL_QUEUE}') n ON TRUE"
    )
}

impl Queries {
    pub(super) fn new(p: &str, pg: bool, me: &str) -> Queries {
        let guard = cancel_guard(p, me);
        let in_flight = if pg { "" } else { IN_FLIGHT };
        // JSONB on Postgres, TEXT on SQLite.
        let attributes = if pg { "CAST($21 AS JSONB)" } else { "$21" };
        let insert_workflow = format!(
                "INSERT INTO {p}workflow_status (workflow_uuid, status, name, inputs, executor_id, \
                 application_version, application_name, owner_xid, parent_workflow_id, queue_name, \
                 recovery_attempts, serialization, created_at, updated_at, started_at_epoch_ms, priority, \
                 workflow_timeout_ms, workflow_deadline_epoch_ms, deduplication_id, queue_partition_key, \
                 delay_until_epoch_ms, attributes, is_debounced, debounce_deadline_epoch_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $20, $12, $12, $13, $16, $14, $15, \
                 $17, $18, $19, {attributes}, $22, $23) \
                 ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at \
                 RETURNING status, name, owner_xid, output, error, serialization, workflow_deadline_epoch_ms"
            );
        let enqueue_workflow = if pg {
            format!(
                "WITH w AS ({insert_workflow}) SELECT w.* FROM w, \
                 (SELECT pg_notify('{QUEUE_CHANNEL}', $10)) n"
            )
        } else {
            insert_workflow.clone()
        };
        let record_step = format!(
                "INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
                 child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
                 VALUES ($1, $2, {guard}, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (workflow_uuid, function_id) DO UPDATE \
                 SET completed_at_epoch_ms = {p}operation_outputs.completed_at_epoch_ms \
                 RETURNING completed_at_epoch_ms, function_name, child_workflow_id"
            );
        // `record_step` that also says whether it inserted the row (`fresh`): a conflict
        // updates it in place (`xmax` is then this transaction's ID, not 0).
        let record_step_fresh = format!(
            "INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
             child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
             VALUES ($1, $2, {guard}, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (workflow_uuid, function_id) DO UPDATE \
             SET completed_at_epoch_ms = {p}operation_outputs.completed_at_epoch_ms \
             RETURNING completed_at_epoch_ms, function_name, child_workflow_id, (xmax = 0) AS fresh"
        );
        let upsert_event = |source: &str, workflow: &str, key: &str, value: &str| {
            format!(
                "INSERT INTO {p}workflow_events (workflow_uuid, key, value, serialization) \
                 SELECT {workflow}, {key}, {value}, '{PORTABLE_JSON}'{source} \
                 ON CONFLICT (workflow_uuid, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            )
        };
        let upsert_history = |source: &str, workflow: &str, id: &str, key: &str, value: &str| {
            format!(
                "INSERT INTO {p}workflow_events_history (workflow_uuid, function_id, key, value, serialization) \
                 SELECT {workflow}, {id}, {key}, {value}, '{PORTABLE_JSON}'{source} \
                 ON CONFLICT (workflow_uuid, function_id, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            )
        };
        let fresh = " FROM m WHERE m.fresh";
        let set_event_marked = format!(
            "WITH m AS ({record_step_fresh}), \
             e AS ({} RETURNING pg_notify('{EVENTS_CHANNEL}', $13)), \
             h AS ({}) \
             SELECT completed_at_epoch_ms, function_name, child_workflow_id FROM m",
            upsert_event(fresh, "$1", "$11", "$12"),
            upsert_history(fresh, "$1", "$2", "$11", "$12"),
        );
        let set_event_plain = format!(
            "WITH e AS ({} RETURNING pg_notify('{EVENTS_CHANNEL}', $5)) {}",
            upsert_event("", "$1", "$3", "$4"),
            upsert_history("", "$1", "$2", "$3", "$4"),
        );
        let send_marked = format!(
            "WITH m AS ({record_step_fresh}), \
             n AS (INSERT INTO {p}notifications (message_uuid, destination_uuid, topic, message, \
             created_at_epoch_ms, serialization) SELECT $11, $12, $13, $14, $15, '{PORTABLE_JSON}'{fresh} \
             ON CONFLICT (message_uuid) DO NOTHING) \
             SELECT completed_at_epoch_ms, function_name, child_workflow_id FROM m"
        );
        let take = format!(
            "c AS (UPDATE {p}notifications SET consumed = TRUE WHERE message_uuid = (\
             SELECT message_uuid FROM {p}notifications WHERE destination_uuid = $1 AND topic = $7 \
             AND NOT consumed ORDER BY created_at_epoch_ms, message_uuid LIMIT 1) AND NOT consumed \
             RETURNING message, serialization), \
             m AS (INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, \
             error, child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, \
             application_name) SELECT $1, $2, {guard}, c.message, NULL, NULL, \
             COALESCE(c.serialization, '{PORTABLE_JSON}'), $4, $5, $6 FROM c \
             RETURNING completed_at_epoch_ms)"
        );
        // Whether another execution recorded the recv's position (seen when this statement
        // began): a look that takes nothing then reports it instead of waiting.
        let elsewhere = format!(
            "EXISTS (SELECT 1 FROM {p}operation_outputs WHERE workflow_uuid = $1 AND function_id = $2)"
        );
        let take_message = format!(
            "WITH {take} SELECT 'taken' AS kind, c.message, c.serialization, NULL::BIGINT AS completed \
             FROM c, m \
             UNION ALL SELECT 'elsewhere', NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM c) AND {elsewhere}"
        );
        // The deadline row is a `DBOS.sleep` (SYSDB rule 14).
        let sleep_guard = guard_naming(p, me, &sql_literal("DBOS.sleep"));
        let take_message_or_deadline = format!(
            "WITH {take}, \
             d AS (INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, \
             error, child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, \
             application_name) SELECT $1, $8, {sleep_guard}, $9, NULL, NULL, '{PORTABLE_JSON}', $10, $10, $6 \
             WHERE NOT EXISTS (SELECT 1 FROM c) AND NOT {elsewhere} \
             ON CONFLICT (workflow_uuid, function_id) DO UPDATE \
             SET completed_at_epoch_ms = {p}operation_outputs.completed_at_epoch_ms \
             RETURNING completed_at_epoch_ms) \
             SELECT 'taken' AS kind, c.message, c.serialization, NULL::BIGINT AS completed FROM c, m \
             UNION ALL SELECT 'deadline', NULL, NULL, d.completed_at_epoch_ms FROM d \
             UNION ALL SELECT 'elsewhere', NULL, NULL, NULL WHERE NOT EXISTS (SELECT 1 FROM c) AND {elsewhere}"
        );
        Queries {
            take_message,
            take_message_or_deadline,
            set_event_marked,
            set_event_plain,
            send_marked,
            enqueue_workflow,
            insert_workflow,
            complete_workflow: complete_workflow(p, pg, me),
            get_workflow: format!(
                "SELECT status, name, owner_xid, output, error, serialization, workflow_deadline_epoch_ms \
                 FROM {p}workflow_status WHERE workflow_uuid = $1"
            ),
            record_step: record_step.clone(),
            load_steps: format!(
                "SELECT function_id, function_name, output, error, child_workflow_id, serialization \
                 FROM {p}operation_outputs WHERE workflow_uuid = $1"
            ),
            recover_pending: format!(
                "UPDATE {p}workflow_status SET status = 'ENQUEUED', \
                 queue_name = COALESCE(queue_name, $5), started_at_epoch_ms = NULL, updated_at = $4 \
                 WHERE status = 'PENDING' AND executor_id = $1 AND application_version = $2 \
                 AND (application_name = $3 OR application_name IS NULL)"
            ),
            dequeue: dequeue(p, pg, false),
            dequeue_partition: dequeue(p, pg, true),
            queue_counts: queue_counts(p, false),
            queue_counts_partition: queue_counts(p, true),
            // Both read only the in-flight index (ENQUEUED and PENDING rows), and only what this
            // process may claim: another version's backlog costs it no claim transaction.
            queues_with_work: format!(
                "SELECT DISTINCT queue_name FROM {p}workflow_status WHERE status = 'ENQUEUED'{in_flight} \
                 AND queue_name IS NOT NULL \
                 AND (application_version = $1 OR application_version IS NULL) \
                 AND (application_name = $2 OR application_name IS NULL)"
            ),
            queue_partitions: format!(
                "SELECT DISTINCT queue_partition_key FROM {p}workflow_status WHERE queue_name = $1 \
                 AND status = 'ENQUEUED'{in_flight} AND queue_partition_key IS NOT NULL \
                 AND (application_version = $2 OR application_version IS NULL) \
                 AND (application_name = $3 OR application_name IS NULL)"
            ),
            next_delayed: format!(
                "SELECT MIN(delay_until_epoch_ms) FROM {p}workflow_status WHERE status = 'DELAYED' \
                 AND (application_name = $1 OR application_name IS NULL)"
            ),
            promote_delayed: format!(
                "UPDATE {p}workflow_status SET status = 'ENQUEUED', updated_at = $1, \
                 deduplication_id = CASE WHEN is_debounced THEN NULL ELSE deduplication_id END \
                 WHERE status = 'DELAYED' AND delay_until_epoch_ms <= $1 \
                 AND (application_name = $2 OR application_name IS NULL)"
            ),
            dead_letter: format!(
                "UPDATE {p}workflow_status SET status = 'MAX_RECOVERY_ATTEMPTS_EXCEEDED', queue_name = NULL, \
                 deduplication_id = NULL, started_at_epoch_ms = NULL, updated_at = $2, completed_at = $2 \
                 WHERE workflow_uuid = $1 AND status = 'PENDING' AND recovery_attempts >= $3"
            ),
            insert_version: format!(
                "INSERT INTO {p}application_versions (version_id, version_name, version_timestamp, created_at, \
                 application_name) VALUES ($1, $2, $3, $3, $4) ON CONFLICT DO NOTHING"
            ),
            send: format!(
                "INSERT INTO {p}notifications (message_uuid, destination_uuid, topic, message, \
                 created_at_epoch_ms, serialization) VALUES ($1, $2, $3, $4, $5, '{PORTABLE_JSON}') \
                 ON CONFLICT (message_uuid) DO NOTHING"
            ),
            has_message: format!(
                "SELECT 1 FROM {p}notifications WHERE destination_uuid = $1 AND topic = $2 AND NOT consumed LIMIT 1"
            ),
            consume: format!(
                "UPDATE {p}notifications SET consumed = TRUE WHERE message_uuid = (\
                 SELECT message_uuid FROM {p}notifications WHERE destination_uuid = $1 AND topic = $2 \
                 AND NOT consumed ORDER BY created_at_epoch_ms, message_uuid LIMIT 1) AND NOT consumed \
                 RETURNING message, serialization"
            ),
            set_event: format!(
                "INSERT INTO {p}workflow_events (workflow_uuid, key, value, serialization) \
                 VALUES ($1, $2, $3, '{PORTABLE_JSON}') ON CONFLICT (workflow_uuid, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            ),
            set_event_history: format!(
                "INSERT INTO {p}workflow_events_history (workflow_uuid, function_id, key, value, serialization) \
                 VALUES ($1, $2, $3, $4, '{PORTABLE_JSON}') ON CONFLICT (workflow_uuid, function_id, key) \
                 DO UPDATE SET value = EXCLUDED.value, serialization = EXCLUDED.serialization"
            ),
            write_stream: stream_insert(p, pg, 3, ""),
            write_stream_marked: format!(
                "WITH m AS ({record_step_fresh}), s AS ({}) \
                 SELECT completed_at_epoch_ms, function_name, child_workflow_id FROM m",
                stream_insert(p, pg, 11, " FROM m WHERE m.fresh")
            ),
            bounce: format!(
                "UPDATE {p}workflow_status SET delay_until_epoch_ms = CASE \
                 WHEN debounce_deadline_epoch_ms IS NOT NULL AND debounce_deadline_epoch_ms < $4 \
                 THEN debounce_deadline_epoch_ms ELSE $4 END, inputs = $5, serialization = $6, updated_at = $7 \
                 WHERE name = $1 AND queue_name = $2 AND deduplication_id = $3 AND status = 'DELAYED' \
                 AND is_debounced = TRUE RETURNING workflow_uuid"
            ),
            read_stream: format!(
                "SELECT \"offset\", value, serialization FROM {p}streams \
                 WHERE workflow_uuid = $1 AND key = $2 AND \"offset\" >= $3 \
                 ORDER BY \"offset\" LIMIT $4"
            ),
            get_event: format!(
                "SELECT value, serialization FROM {p}workflow_events WHERE workflow_uuid = $1 AND key = $2"
            ),
        }
    }
}
