//! Shared helpers for medchain's integration tests (the tests themselves live in `tests/tests`).

pub mod sim;
