//! Where the test cluster is: `MEDCHAIN_PG_URL` (set by `scripts/with-postgres.sh`). Shared by
//! the store's PostgreSQL tests and, through `#[path]`, `medchain-node/tests/mixed.rs`.

/// The PostgreSQL URL from `MEDCHAIN_PG_URL`. Unset: fails loudly under CI, otherwise prints
/// a notice and returns `None` (the caller skips).
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("MEDCHAIN_PG_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            if std::env::var_os("CI").is_some() {
                panic!("{test}: MEDCHAIN_PG_URL is not set under CI; run it through scripts/with-postgres.sh");
            }
            eprintln!(
                "NOTICE: {test} skipped: MEDCHAIN_PG_URL is not set (use scripts/with-postgres.sh)"
            );
            None
        }
    }
}
