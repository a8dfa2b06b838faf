//! `DBOS::patch` and `DBOS::deprecate_patch`: changing a workflow's code while executions of
//! the old code are in flight, as DBOS does it.
//!
//! A patch is a marker operation, `DBOS.patch-<name>`, at the position where the new code
//! departs from the old. An execution that finds nothing recorded there (a new one, or one
//! that had not got that far) records the marker and takes the new path. One that finds the
//! marker takes the new path again. One that finds another operation there (recorded by the
//! old code) takes the old path, and the patch takes no position. Once no execution of the old
//! code is left, `deprecate_patch` replaces `patch`: it skips a recorded marker and records
//! none, so the call can later be deleted.

use crate::context::{self, Position};
use crate::error::{Error, Result};
use crate::operation::{self, Begun, Site};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

const PREFIX: &str = "DBOS.patch-";

/// The marker's operation name, interned: operation names are `&'static str`, and a program
/// has a handful of patches.
fn marker(name: &str) -> Result<&'static str> {
    if name.trim().is_empty() {
        return Err(Error::BadInputs("a patch needs a name".into()));
    }
    static NAMES: OnceLock<Mutex<HashMap<String, &'static str>>> = OnceLock::new();
    let mut names = match NAMES.get_or_init(Default::default).lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    let full = format!("{PREFIX}{name}");
    if let Some(s) = names.get(&full) {
        return Ok(s);
    }
    let leaked: &'static str = Box::leak(full.clone().into_boxed_str());
    names.insert(full, leaked);
    Ok(leaked)
}

/// Whether the calling workflow execution takes the patched path (see the module docs).
pub(crate) async fn patch(name: &str) -> Result<bool> {
    let marker = marker(name)?;
    let ctx = in_body("DBOS::patch")?;
    match ctx.recorded_name(context::peek_position(&ctx)?) {
        Some(recorded) if recorded != marker => Ok(false),
        _ => match operation::begin(marker)? {
            Site::Workflow(Begun::Recorded(_)) => Ok(true),
            Site::Workflow(Begun::Run(op)) => {
                op.record(None, None, None, None).await?;
                Ok(true)
            }
            Site::InStep(..) => Err(Error::InStep("DBOS::patch")),
            Site::Outside(_) => Err(Error::NotInWorkflow("DBOS::patch")),
        },
    }
}

/// Always `true`: skips a recorded marker of `name`, records none.
pub(crate) async fn deprecate_patch(name: &str) -> Result<bool> {
    let marker = marker(name)?;
    let ctx = in_body("DBOS::deprecate_patch")?;
    if ctx.recorded_name(context::peek_position(&ctx)?).as_deref() == Some(marker) {
        match operation::begin(marker)? {
            Site::Workflow(_) => {}
            Site::InStep(..) => return Err(Error::InStep("DBOS::deprecate_patch")),
            Site::Outside(_) => return Err(Error::NotInWorkflow("DBOS::deprecate_patch")),
        }
    }
    Ok(true)
}

/// The calling workflow body's context, with patching enabled.
fn in_body(what: &'static str) -> Result<std::sync::Arc<context::WfCtx>> {
    match context::position()? {
        Position::Workflow(rt, ctx) => {
            if !rt.config().enable_patching {
                return Err(Error::Config(format!(
                    "{what} needs patching enabled: DbosConfig::with_patching()"
                )));
            }
            Ok(ctx)
        }
        Position::InStep(..) => Err(Error::InStep(what)),
        Position::Outside(_) => Err(Error::NotInWorkflow(what)),
    }
}
