CREATE SCHEMA IF NOT EXISTS dbos;
CREATE TABLE dbos.dbos_migrations (version BIGINT NOT NULL PRIMARY KEY);
CREATE TABLE dbos.workflow_status (
  workflow_uuid TEXT PRIMARY KEY, status TEXT, name TEXT,
  authenticated_user TEXT, assumed_role TEXT, authenticated_roles TEXT, request TEXT,
  output TEXT, error TEXT, executor_id TEXT,
  created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint,
  updated_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint,
  application_version TEXT, application_id TEXT,
  class_name VARCHAR(255) DEFAULT NULL, config_name VARCHAR(255) DEFAULT NULL,
  recovery_attempts BIGINT DEFAULT 0, queue_name TEXT,
  workflow_timeout_ms BIGINT, workflow_deadline_epoch_ms BIGINT,
  inputs TEXT, started_at_epoch_ms BIGINT,
  deduplication_id TEXT, priority INT4 NOT NULL DEFAULT 0,
  queue_partition_key TEXT, forked_from TEXT,
  owner_xid TEXT DEFAULT NULL, parent_workflow_id TEXT DEFAULT NULL, serialization TEXT DEFAULT NULL,
  delay_until_epoch_ms BIGINT DEFAULT NULL, was_forked_from BOOLEAN NOT NULL DEFAULT FALSE,
  rate_limited BOOLEAN NOT NULL DEFAULT FALSE, completed_at BIGINT,
  attributes JSONB, schedule_name TEXT, debounce_deadline_epoch_ms BIGINT DEFAULT NULL,
  is_debounced BOOLEAN NOT NULL DEFAULT FALSE,
  application_name TEXT DEFAULT NULL);
CREATE INDEX workflow_status_created_at_index ON dbos.workflow_status (created_at);
CREATE UNIQUE INDEX uq_workflow_status_dedup_id ON dbos.workflow_status (queue_name, deduplication_id) WHERE deduplication_id IS NOT NULL;
CREATE INDEX idx_workflow_status_forked_from ON dbos.workflow_status (forked_from) WHERE forked_from IS NOT NULL;
CREATE INDEX idx_workflow_status_parent_workflow_id ON dbos.workflow_status (parent_workflow_id) WHERE parent_workflow_id IS NOT NULL;
CREATE INDEX idx_workflow_status_delayed ON dbos.workflow_status (delay_until_epoch_ms) WHERE status = 'DELAYED';
CREATE INDEX idx_workflow_status_pending ON dbos.workflow_status (created_at) WHERE status = 'PENDING';
CREATE INDEX idx_workflow_status_failed ON dbos.workflow_status (status, created_at) WHERE status IN ('ERROR', 'CANCELLED', 'MAX_RECOVERY_ATTEMPTS_EXCEEDED');
CREATE INDEX idx_workflow_status_in_flight ON dbos.workflow_status (queue_name, status, priority, created_at) WHERE status IN ('ENQUEUED', 'PENDING');
CREATE INDEX idx_workflow_status_partition_dequeue_v2 ON dbos.workflow_status (queue_name, status, queue_partition_key, priority, created_at, workflow_uuid) WHERE status IN ('ENQUEUED', 'PENDING') AND queue_partition_key IS NOT NULL;
CREATE INDEX idx_workflow_status_rate_limited ON dbos.workflow_status (queue_name, started_at_epoch_ms) WHERE rate_limited = TRUE;
CREATE INDEX idx_workflow_status_completed_at ON dbos.workflow_status (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX idx_workflow_status_started_at ON dbos.workflow_status (started_at_epoch_ms) WHERE started_at_epoch_ms IS NOT NULL;
CREATE INDEX idx_workflow_status_schedule_name ON dbos.workflow_status (schedule_name) WHERE schedule_name IS NOT NULL;
CREATE INDEX idx_workflow_status_attributes ON dbos.workflow_status USING GIN (attributes) WHERE attributes IS NOT NULL;
CREATE TABLE dbos.operation_outputs (
  workflow_uuid TEXT NOT NULL, function_id INT4 NOT NULL, function_name TEXT NOT NULL DEFAULT '', output TEXT,
  error TEXT, child_workflow_id TEXT, started_at_epoch_ms BIGINT, completed_at_epoch_ms BIGINT,
  serialization TEXT DEFAULT NULL, application_name TEXT DEFAULT NULL,
  PRIMARY KEY (workflow_uuid, function_id),
  FOREIGN KEY (workflow_uuid) REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE);
CREATE INDEX idx_operation_outputs_completed_at_function_name ON dbos.operation_outputs (completed_at_epoch_ms, function_name);
CREATE TABLE dbos.notifications (
  message_uuid TEXT NOT NULL DEFAULT gen_random_uuid() PRIMARY KEY, destination_uuid TEXT NOT NULL, topic TEXT,
  message TEXT NOT NULL, created_at_epoch_ms BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint,
  serialization TEXT DEFAULT NULL, consumed BOOLEAN NOT NULL DEFAULT FALSE,
  FOREIGN KEY (destination_uuid) REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE);
CREATE INDEX idx_workflow_topic ON dbos.notifications (destination_uuid, topic);
CREATE INDEX idx_notifications ON dbos.notifications (destination_uuid, topic);
CREATE TABLE dbos.workflow_events (workflow_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
  serialization TEXT DEFAULT NULL, PRIMARY KEY (workflow_uuid, key),
  FOREIGN KEY (workflow_uuid) REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE);
CREATE TABLE dbos.workflow_events_history (workflow_uuid TEXT NOT NULL, function_id INT4 NOT NULL, key TEXT NOT NULL,
  value TEXT NOT NULL, serialization TEXT DEFAULT NULL, PRIMARY KEY (workflow_uuid, function_id, key),
  FOREIGN KEY (workflow_uuid) REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE);
CREATE TABLE dbos.streams (workflow_uuid TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, "offset" INT4 NOT NULL,
  function_id INT4 NOT NULL DEFAULT 0, serialization TEXT DEFAULT NULL, PRIMARY KEY (workflow_uuid, key, "offset"),
  FOREIGN KEY (workflow_uuid) REFERENCES dbos.workflow_status (workflow_uuid) ON UPDATE CASCADE ON DELETE CASCADE);
CREATE FUNCTION dbos.notifications_function() RETURNS TRIGGER LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  PERFORM pg_notify('dbos_notifications_channel', NEW.destination_uuid || '::' || NEW.topic);
  RETURN NEW;
END $$;
CREATE TRIGGER dbos_notifications_trigger AFTER INSERT ON dbos.notifications FOR EACH ROW EXECUTE FUNCTION dbos.notifications_function();
CREATE TABLE dbos.application_versions (version_id TEXT NOT NULL PRIMARY KEY, version_name TEXT NOT NULL UNIQUE,
  version_timestamp BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint,
  created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint, application_name TEXT DEFAULT NULL);
CREATE UNIQUE INDEX uq_application_versions_owner_version ON dbos.application_versions (application_name, version_name) WHERE application_name IS NOT NULL;
CREATE UNIQUE INDEX uq_application_versions_unclaimed_version ON dbos.application_versions (version_name) WHERE application_name IS NULL;
CREATE TABLE dbos.queues (queue_id TEXT PRIMARY KEY DEFAULT gen_random_uuid()::TEXT, name TEXT NOT NULL UNIQUE,
  concurrency INT4, worker_concurrency INT4, rate_limit_max INT4, rate_limit_period_sec DOUBLE PRECISION,
  priority_enabled BOOLEAN NOT NULL DEFAULT FALSE, partition_queue BOOLEAN NOT NULL DEFAULT FALSE,
  polling_interval_sec DOUBLE PRECISION NOT NULL DEFAULT 1.0,
  created_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint,
  updated_at BIGINT NOT NULL DEFAULT (EXTRACT(epoch FROM now()) * 1000.0)::bigint, application_name TEXT DEFAULT NULL,
  partition_concurrency INT4 DEFAULT NULL, partition_worker_concurrency INT4 DEFAULT NULL,
  partition_rate_limit_max INT4 DEFAULT NULL, partition_rate_limit_period_sec DOUBLE PRECISION DEFAULT NULL);
CREATE TABLE dbos.workflow_schedules (schedule_id TEXT PRIMARY KEY, schedule_name TEXT NOT NULL UNIQUE,
  workflow_name TEXT NOT NULL, workflow_class_name TEXT, schedule TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'ACTIVE',
  context TEXT NOT NULL, last_fired_at TEXT DEFAULT NULL, automatic_backfill BOOLEAN NOT NULL DEFAULT FALSE,
  cron_timezone TEXT DEFAULT NULL, queue_name TEXT DEFAULT NULL, application_name TEXT DEFAULT NULL);
CREATE TABLE dbos.event_dispatch_kv (service_name TEXT NOT NULL, workflow_fn_name TEXT NOT NULL, key TEXT NOT NULL,
  value TEXT, update_seq NUMERIC(38,0), update_time NUMERIC(38,15), PRIMARY KEY (service_name, workflow_fn_name, key));
CREATE FUNCTION dbos.send_message(destination_id TEXT, message JSON, topic TEXT DEFAULT NULL, message_id TEXT DEFAULT NULL)
RETURNS VOID LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  INSERT INTO dbos.notifications (message_uuid, destination_uuid, topic, message, serialization)
  VALUES (COALESCE(message_id, gen_random_uuid()::TEXT), destination_id, COALESCE(topic, '__null__topic__'),
          message::TEXT, 'portable_json')
  ON CONFLICT (message_uuid) DO NOTHING;
EXCEPTION WHEN foreign_key_violation THEN
  RAISE EXCEPTION 'DBOS non-existent workflow' USING ERRCODE = 'foreign_key_violation';
END $$;
CREATE FUNCTION dbos.enqueue_workflow(workflow_name TEXT, queue_name TEXT, positional_args JSON[] DEFAULT ARRAY[]::JSON[],
  named_args JSON DEFAULT '{}', class_name TEXT DEFAULT NULL, config_name TEXT DEFAULT NULL, workflow_id TEXT DEFAULT NULL,
  app_version TEXT DEFAULT NULL, timeout_ms BIGINT DEFAULT NULL, deadline_epoch_ms BIGINT DEFAULT NULL,
  deduplication_id TEXT DEFAULT NULL, priority INT4 DEFAULT NULL, queue_partition_key TEXT DEFAULT NULL,
  authenticated_user TEXT DEFAULT NULL, authenticated_roles TEXT DEFAULT NULL, delay_until_epoch_ms BIGINT DEFAULT NULL,
  application_name TEXT DEFAULT NULL)
RETURNS TEXT LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
  v_id TEXT := COALESCE(workflow_id, gen_random_uuid()::TEXT);
  v_now BIGINT := (EXTRACT(epoch FROM now()) * 1000.0)::bigint;
BEGIN
  IF workflow_name IS NULL OR workflow_name = '' THEN RAISE EXCEPTION 'workflow_name must be non-empty'; END IF;
  IF queue_name IS NULL OR queue_name = '' THEN RAISE EXCEPTION 'queue_name must be non-empty'; END IF;
  IF named_args IS NOT NULL AND json_typeof(named_args) <> 'object' THEN RAISE EXCEPTION 'named_args must be a JSON object'; END IF;
  IF workflow_id IS NOT NULL AND workflow_id = '' THEN RAISE EXCEPTION 'workflow_id must not be empty'; END IF;
  IF delay_until_epoch_ms IS NOT NULL AND delay_until_epoch_ms < 0 THEN RAISE EXCEPTION 'delay_until_epoch_ms must be >= 0'; END IF;
  BEGIN
    INSERT INTO dbos.workflow_status AS ws (workflow_uuid, status, name, class_name, config_name, queue_name, inputs,
      serialization, owner_xid, recovery_attempts, priority, application_version, workflow_timeout_ms,
      workflow_deadline_epoch_ms, deduplication_id, queue_partition_key, authenticated_user, authenticated_roles,
      delay_until_epoch_ms, application_name, created_at, updated_at)
    VALUES (v_id, CASE WHEN delay_until_epoch_ms IS NOT NULL THEN 'DELAYED' ELSE 'ENQUEUED' END, workflow_name,
      class_name, config_name, queue_name,
      json_build_object('positionalArgs', positional_args, 'namedArgs', COALESCE(named_args, '{}'::JSON))::TEXT,
      'portable_json', gen_random_uuid()::TEXT, 0, COALESCE(priority, 0), app_version, timeout_ms, deadline_epoch_ms,
      deduplication_id, queue_partition_key, authenticated_user, authenticated_roles, delay_until_epoch_ms,
      application_name, v_now, v_now)
    ON CONFLICT (workflow_uuid) DO UPDATE SET updated_at = EXCLUDED.updated_at;
  EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'DBOS queue duplicated' USING ERRCODE = 'unique_violation';
  END;
  RETURN v_id;
END $$;
