"""DBOS Python (pinned: dbos==2.31.1) on a system database our runtime writes.

Run by dbos-cli/tests/interop.rs: `python dbos_python.py <command> [args]`, with SYS_DB_URL
set. Each command prints one JSON value (or nothing) and exits non-zero on failure.
"""

import json
import os
import sys
import time

from dbos import DBOS, DBOSClient, SetWorkflowID, WorkflowSerializationFormat

URL = os.environ["SYS_DB_URL"]


def client() -> DBOSClient:
    return DBOSClient(system_database_url=URL)


def main() -> None:
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "app":
        # A DBOS Python application starts a workflow that waits for a message, then dies
        # (os._exit, as a crash would): the workflow stays PENDING under its executor.
        DBOS(config={"name": "py-app", "system_database_url": URL, "application_version": "py-1"})

        @DBOS.workflow()
        def py_waits(x: int) -> int:
            DBOS.recv("go", 60)
            return x

        DBOS.launch()
        with SetWorkflowID(args[0]):
            DBOS.start_workflow(py_waits, 5)
        for _ in range(100):
            steps = DBOS.list_workflow_steps(args[0])
            if any(s["function_name"] == "DBOS.sleep" for s in steps):
                break
            time.sleep(0.05)
        sys.stdout.flush()
        os._exit(0)
    c = client()
    try:
        if cmd == "list":
            rows = c.list_workflows()
            print(json.dumps([{"id": w.workflow_id, "status": w.status, "name": w.name} for w in rows]))
        elif cmd == "get":
            rows = c.list_workflows(workflow_ids=[args[0]])
            w = rows[0]
            print(json.dumps({"id": w.workflow_id, "status": w.status, "output": w.output,
                              "error": None if w.error is None else str(w.error)}))
        elif cmd == "steps":
            steps = c.list_workflow_steps(args[0])
            print(json.dumps([{"function_id": s["function_id"], "function_name": s["function_name"],
                               "output": s["output"]} for s in steps]))
        elif cmd == "cancel":
            c.cancel_workflow(args[0])
        elif cmd == "resume":
            c.resume_workflow(args[0])
        elif cmd == "enqueue":
            name, workflow_id, arg = args
            c.enqueue({"workflow_name": name, "queue_name": "_dbos_internal_queue",
                       "workflow_id": workflow_id,
                       "serialization_type": WorkflowSerializationFormat.PORTABLE}, int(arg))
        else:
            raise SystemExit(f"unknown command {cmd}")
    finally:
        c.destroy()


if __name__ == "__main__":
    main()
