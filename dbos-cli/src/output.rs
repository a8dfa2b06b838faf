//! What the commands print: aligned tables for people, JSON (`--json`) for scripts.

use dbos_runtime::{StepInfo, WorkflowInfo};
use serde_json::json;

/// Epoch milliseconds as RFC 3339 UTC with milliseconds.
fn time(ms: Option<i64>) -> String {
    ms.and_then(chrono::DateTime::from_timestamp_millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}

fn or_blank(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// Shortens `text` to `max` characters for a table cell.
fn cell(text: &str, max: usize) -> String {
    let one_line = text.replace(['\n', '\r', '\t'], " ");
    if one_line.chars().count() <= max {
        one_line
    } else {
        let mut s: String = one_line.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// Left-aligned columns separated by two spaces; the last column is not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            out.push_str(c);
            if i < last {
                out.push_str(&" ".repeat(w - c.chars().count() + 2));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")) + "\n"
}

pub fn workflows(json: bool, rows: &[WorkflowInfo], payloads: bool) -> String {
    if json {
        return to_json(&rows);
    }
    let mut header = vec!["WORKFLOW ID", "STATUS", "NAME", "QUEUE", "CREATED"];
    if payloads {
        header.extend(["INPUTS", "OUTPUT"]);
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|w| {
            let mut r = vec![
                w.workflow_id.clone(),
                w.status.clone(),
                or_blank(&w.name).to_owned(),
                or_blank(&w.queue_name).to_owned(),
                time(Some(w.created_at)),
            ];
            if payloads {
                r.push(cell(&w.inputs_shown().unwrap_or_default(), 40));
                r.push(cell(
                    &w.output_shown()
                        .or_else(|| w.error.clone())
                        .unwrap_or_default(),
                    40,
                ));
            }
            r
        })
        .collect();
    let mut out = table(&header, &cells);
    out.push_str(&format!(
        "({} workflow{})\n",
        rows.len(),
        if rows.len() == 1 { "" } else { "s" }
    ));
    out
}

pub fn workflow(json: bool, w: &WorkflowInfo) -> String {
    if json {
        return to_json(w);
    }
    let fields: Vec<(&str, String)> = vec![
        ("workflow id", w.workflow_id.clone()),
        ("status", w.status.clone()),
        ("name", or_blank(&w.name).to_owned()),
        ("queue", or_blank(&w.queue_name).to_owned()),
        ("executor", or_blank(&w.executor_id).to_owned()),
        (
            "application version",
            or_blank(&w.application_version).to_owned(),
        ),
        ("application", or_blank(&w.application_name).to_owned()),
        ("created", time(Some(w.created_at))),
        ("updated", time(w.updated_at)),
        ("dequeued", time(w.dequeued_at)),
        ("completed", time(w.completed_at)),
        (
            "recovery attempts",
            w.recovery_attempts
                .map(|n| n.to_string())
                .unwrap_or_default(),
        ),
        (
            "timeout ms",
            w.timeout_ms.map(|n| n.to_string()).unwrap_or_default(),
        ),
        ("deadline", time(w.deadline_epoch_ms)),
        ("parent", or_blank(&w.parent_workflow_id).to_owned()),
        ("forked from", or_blank(&w.forked_from).to_owned()),
        ("serialization", or_blank(&w.serialization).to_owned()),
        ("inputs", w.inputs_shown().unwrap_or_default()),
        ("output", w.output_shown().unwrap_or_default()),
        ("error", or_blank(&w.error).to_owned()),
    ];
    let mut out = String::new();
    for (k, v) in fields.iter().filter(|(_, v)| !v.is_empty()) {
        out.push_str(&format!("{k:<20} {v}\n"));
    }
    out
}

pub fn steps(json: bool, steps: &[StepInfo]) -> String {
    if json {
        return to_json(&steps);
    }
    let cells: Vec<Vec<String>> = steps
        .iter()
        .map(|s| {
            let took = match (s.started_at_epoch_ms, s.completed_at_epoch_ms) {
                (Some(a), Some(b)) if s.function_name != "DBOS.sleep" => format!("{}", b - a),
                _ => String::new(),
            };
            let outcome = match (&s.error, s.output_shown()) {
                (Some(e), _) => format!("error: {e}"),
                (None, Some(o)) => o,
                (None, None) => String::new(),
            };
            vec![
                s.function_id.to_string(),
                s.function_name.clone(),
                or_blank(&s.child_workflow_id).to_owned(),
                time(s.started_at_epoch_ms),
                took,
                cell(&outcome, 60),
            ]
        })
        .collect();
    table(
        &["STEP", "NAME", "CHILD", "STARTED", "MS", "OUTPUT"],
        &cells,
    )
}

pub fn changed(json: bool, id: &str, changed: bool, text: &str) -> String {
    if json {
        return to_json(&json!({ "workflow_id": id, "changed": changed }));
    }
    format!("{text}\n")
}

pub fn forked(json: bool, original: &str, step: i32, forked: &str) -> String {
    if json {
        return to_json(
            &json!({ "workflow_id": forked, "forked_from": original, "start_step": step }),
        );
    }
    format!("forked {original} from step {step} as {forked}\n")
}

pub fn message(json: bool, key: &str, text: &str) -> String {
    if json {
        return to_json(&json!({ key: true }));
    }
    format!("{text}\n")
}

/// The replay check's reports: one line per workflow and a summary (or the reports as JSON).
pub fn replay(json: bool, reports: &[serde_json::Value]) -> String {
    if json {
        return to_json(&serde_json::Value::Array(reports.to_vec()));
    }
    let text =
        |v: &serde_json::Value, k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
    let mut out = String::new();
    let mut diverged = 0;
    for r in reports {
        let (id, name) = (text(r, "workflow_id"), text(r, "name"));
        let v = r.get("verdict").cloned().unwrap_or_default();
        let line = match text(&v, "verdict").as_str() {
            "consistent" => format!(
                "ok        {id} ({name}): {} recorded operations replay",
                v.get("operations").and_then(|n| n.as_u64()).unwrap_or(0)
            ),
            "diverged" => {
                diverged += 1;
                format!(
                    "DIVERGED  {id} ({name}): at step {} the code now runs {} where {} was recorded",
                    v.get("function_id").and_then(|n| n.as_i64()).unwrap_or(0),
                    text(&v, "current"),
                    text(&v, "recorded")
                )
            }
            "unreached" => {
                diverged += 1;
                format!(
                    "DIVERGED  {id} ({name}): the code ends before step {} ({})",
                    v.get("function_id").and_then(|n| n.as_i64()).unwrap_or(0),
                    text(&v, "recorded")
                )
            }
            _ => {
                diverged += 1;
                format!("NOT RUN   {id} ({name}): {}", text(&v, "why"))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!(
        "{} workflows checked, {} would not replay\n",
        reports.len(),
        diverged
    ));
    out
}
