//! [`Queries`]: the system database's statements, formatted once for a schema prefix.

use crate::serialization::PORTABLE_JSON;

/// Pre-formatted statements for one schema prefix.
#[derive(Debug)]
pub(super) struct Queries {
    pub(super) insert_workflow: String,
    pub(super) complete_workflow: String,
    pub(super) get_workflow: String,
    pub(super) record_step: String,
    pub(super) load_steps: String,
    pub(super) recover_pending: String,
    pub(super) claim_candidates: String,
    pub(super) claim: String,
    pub(super) dead_letter: String,
    pub(super) insert_version: String,
    pub(super) send: String,
    pub(super) has_message: String,
    pub(super) consume: String,
    pub(super) set_event: String,
    pub(super) set_event_history: String,
    pub(super) get_event: String,
}

/// The `function_name` of a step write, `$3`, or NULL when workflow `$1` is CANCELLED: the
/// NOT NULL violation stops the write (and, in a transaction step, the `COMMIT` sent after
/// it), so nothing is recorded for a cancelled workflow, whoever cancelled it.
pub(super) fn cancel_guard(p: &str) -> String {
    format!(
        "CASE WHEN EXISTS (SELECT 1 FROM {p}workflow_status WHERE workflow_uuid = $1 \
         AND status = 'CANCELLED') THEN NULL ELSE $3 END"
    )
}

impl Queries {
    pub(super) fn new(p: &str) -> Queries {
        let guard = cancel_guard(p);
        Queries {
            insert_workflow: format!(
                "INSERT INTO {p}workflow_status (workflow_uuid, status, name, inputs, executor_id, \
                 application_version, application_name, owner_xid, parent_workflow_id, queue_name, \
                 recovery_attempts, serialization, created_at, updated_at, started_at_epoch_ms, priority, \
                 workflow_timeout_ms, workflow_deadline_epoch_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, '{PORTABLE_JSON}', $12, $12, $13, 0, $14, $15) \
                 ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at \
                 RETURNING status, name, owner_xid, output, error, serialization, workflow_deadline_epoch_ms"
            ),
            complete_workflow: format!(
                "UPDATE {p}workflow_status SET status = $2, output = $3, error = $4, \
                 deduplication_id = NULL, updated_at = $5, completed_at = $5 \
                 WHERE workflow_uuid = $1 AND status = 'PENDING'"
            ),
            get_workflow: format!(
                "SELECT status, name, owner_xid, output, error, serialization, workflow_deadline_epoch_ms \
                 FROM {p}workflow_status WHERE workflow_uuid = $1"
            ),
            record_step: format!(
                "INSERT INTO {p}operation_outputs (workflow_uuid, function_id, function_name, output, error, \
                 child_workflow_id, serialization, started_at_epoch_ms, completed_at_epoch_ms, application_name) \
                 VALUES ($1, $2, {guard}, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (workflow_uuid, function_id) DO UPDATE \
                 SET completed_at_epoch_ms = {p}operation_outputs.completed_at_epoch_ms \
                 RETURNING completed_at_epoch_ms, function_name, child_workflow_id"
            ),
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
            claim_candidates: format!(
                "SELECT workflow_uuid FROM {p}workflow_status \
                 WHERE queue_name = $4 AND status = 'ENQUEUED' \
                 AND (application_version = $1 OR application_version IS NULL) \
                 AND (application_name = $2 OR application_name IS NULL) \
                 ORDER BY priority, created_at LIMIT $3"
            ),
            // Re-checks the row: of several processes claiming one workflow, one wins.
            claim: format!(
                "UPDATE {p}workflow_status SET status = 'PENDING', executor_id = $1, application_version = $2, \
                 application_name = $3, started_at_epoch_ms = $4, rate_limited = FALSE, \
                 recovery_attempts = COALESCE(recovery_attempts, 0) + 1, updated_at = $4, \
                 workflow_deadline_epoch_ms = CASE WHEN workflow_timeout_ms IS NOT NULL \
                 AND workflow_deadline_epoch_ms IS NULL THEN $4 + workflow_timeout_ms \
                 ELSE workflow_deadline_epoch_ms END \
                 WHERE workflow_uuid = $5 AND status = 'ENQUEUED' AND queue_name = $6 \
                 AND (application_version = $2 OR application_version IS NULL) \
                 AND (application_name = $3 OR application_name IS NULL) \
                 RETURNING workflow_uuid, name, inputs, serialization, recovery_attempts, workflow_deadline_epoch_ms"
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
                 AND NOT consumed ORDER BY created_at_epoch_ms, message_uuid LIMIT 1) \
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
            get_event: format!(
                "SELECT value, serialization FROM {p}workflow_events WHERE workflow_uuid = $1 AND key = $2"
            ),
        }
    }
}
