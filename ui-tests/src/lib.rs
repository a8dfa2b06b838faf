//! trybuild UI tests of the macros live in `tests/ui.rs`; this crate has no code of its own.
