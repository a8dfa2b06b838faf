//! The widget store's durable code as a library, so tests can run its workflows directly (the
//! `widget-store` binary serves them over HTTP).

pub mod store;
