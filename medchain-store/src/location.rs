//! [`LedgerLocation`]: where a ledger lives, a SQLite file or a PostgreSQL database, as an
//! operator writes it (a path, or a `postgres://` / `postgresql://` URL).

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};

/// The PostgreSQL schema a ledger opened by location uses.
pub const LEDGER_SCHEMA: &str = "medchain";

/// Where a ledger lives: [`Ledger::create_at`](crate::Ledger::create_at) and
/// [`Ledger::open_at`](crate::Ledger::open_at) (and `medchain::Host`'s constructors of the same
/// names) open it with the matching backend.
///
/// Its `Debug` and `Display` never show a password: a URL's `user:password@` loses the
/// password and a `password=` query option its value (`***`). Only
/// [`location_string`](Self::location_string) gives the location back as written, for a
/// configuration file.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerLocation {
    /// A SQLite file (created by `create_at`, then reopened).
    Sqlite(PathBuf),
    /// A PostgreSQL database, by connection URL (`postgres://` or `postgresql://`), the ledger
    /// in its schema [`LEDGER_SCHEMA`]; TLS as the URL's `sslmode` and `sslrootcert` ask
    /// (`docs/storage.md`, "TLS to PostgreSQL"). Opening one in a build without the store's
    /// `postgres` feature fails with [`LedgerError::NoPostgres`](crate::LedgerError::NoPostgres).
    Postgres(String),
}

impl LedgerLocation {
    /// Reads a location as an operator writes it: a `postgres://` or `postgresql://` URL is a
    /// PostgreSQL database, anything else a SQLite file's path.
    pub fn parse(location: &str) -> Self {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Self::Postgres(location.to_owned())
        } else {
            Self::Sqlite(PathBuf::from(location))
        }
    }

    /// A relative SQLite path taken relative to `base` (a configuration file's directory); a
    /// URL or an absolute path is unchanged.
    #[must_use]
    pub fn relative_to(&self, base: &Path) -> Self {
        match self {
            Self::Sqlite(p) => Self::Sqlite(base.join(p)),
            other => other.clone(),
        }
    }

    /// The SQLite file, if this is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Self::Sqlite(p) => Some(p),
            Self::Postgres(_) => None,
        }
    }

    /// Whether this is a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres(_))
    }

    /// The location as written, password included: for a configuration file, never for a log.
    pub fn location_string(&self) -> Cow<'_, str> {
        match self {
            Self::Sqlite(p) => p.to_string_lossy(),
            Self::Postgres(url) => Cow::Borrowed(url),
        }
    }
}

impl From<PathBuf> for LedgerLocation {
    fn from(path: PathBuf) -> Self {
        Self::Sqlite(path)
    }
}

impl From<&Path> for LedgerLocation {
    fn from(path: &Path) -> Self {
        Self::Sqlite(path.to_path_buf())
    }
}

impl From<&str> for LedgerLocation {
    /// As [`LedgerLocation::parse`].
    fn from(location: &str) -> Self {
        Self::parse(location)
    }
}

/// A URL with its password (in the user part, or a `password=` option) replaced by `***`.
fn redacted(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = match base.split_once("://") {
        Some((scheme, rest)) => {
            // The user part ends at the last '@' before the path.
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((user, host)) => {
                    let user = match user.split_once(':') {
                        Some((name, _)) => format!("{name}:***"),
                        None => user.to_owned(),
                    };
                    format!("{scheme}://{user}@{host}{path}")
                }
                None => base.to_owned(),
            }
        }
        None => base.to_owned(),
    };
    if let Some(query) = query {
        let pairs: Vec<Cow<'_, str>> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***").into(),
                _ => pair.into(),
            })
            .collect();
        out.push('?');
        out.push_str(&pairs.join("&"));
    }
    out
}

impl fmt::Display for LedgerLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "{}", p.display()),
            Self::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

impl fmt::Debug for LedgerLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlite(p) => f.debug_tuple("Sqlite").field(p).finish(),
            Self::Postgres(url) => f.debug_tuple("Postgres").field(&redacted(url)).finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths_and_urls() {
        assert_eq!(
            LedgerLocation::parse("ledger.sqlite"),
            LedgerLocation::Sqlite("ledger.sqlite".into())
        );
        for url in [
            "postgres://h/db",
            "postgresql://u@h:5432/db?sslmode=disable",
        ] {
            let l = LedgerLocation::parse(url);
            assert!(l.is_postgres() && l.sqlite_path().is_none());
            assert_eq!(l.location_string(), url);
            assert_eq!(l.relative_to(Path::new("/etc/medchain")), l);
        }
        let rel = LedgerLocation::parse("data/l.db").relative_to(Path::new("/etc/medchain"));
        assert_eq!(
            rel.sqlite_path(),
            Some(Path::new("/etc/medchain/data/l.db"))
        );
        // Not a URL: a file that happens to be named like a scheme.
        assert!(!LedgerLocation::parse("postgres:/x").is_postgres());
    }

    #[test]
    fn passwords_never_show_in_debug_or_display() {
        let secret = "s3cr3t-Pa55";
        for (url, shown) in [
            (
                format!("postgresql://medchain:{secret}@db.example:5432/medchain?sslmode=verify-full&sslrootcert=/r.pem"),
                "postgresql://medchain:***@db.example:5432/medchain?sslmode=verify-full&sslrootcert=/r.pem",
            ),
            (
                format!("postgres://u@h/db?password={secret}&application_name=x"),
                "postgres://u@h/db?password=***&application_name=x",
            ),
            (
                format!("postgres://u:{secret}@h"),
                "postgres://u:***@h",
            ),
            ("postgres://h/db".to_owned(), "postgres://h/db"),
        ] {
            let l = LedgerLocation::parse(&url);
            assert_eq!(l.to_string(), shown);
            let debug = format!("{l:?}");
            assert!(!debug.contains(secret) && debug.contains("***") == shown.contains("***"));
            assert_eq!(l.location_string(), url);
        }
    }
}
