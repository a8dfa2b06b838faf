//! Compile-time behaviour of the macros: every misuse in `ui/fail` is an error on the user's
//! tokens (checked against its `.stderr`), and every tricky-but-valid case in `ui/pass` builds.
//! Regenerate snapshots with `TRYBUILD=overwrite cargo test -p dbos-ui-tests`, then read
//! the diff: each error must point at the right token and say how to fix it.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("ui/fail/*.rs");
    t.pass("ui/pass/*.rs");
}
