//! TLS to PostgreSQL against a real server: `scripts/with-postgres.sh` starts its cluster with
//! `ssl=on`, a throw-away CA, and a role (`medchain_tls`) the server admits over TLS only; it
//! exports MEDCHAIN_PG_TLS_URL, MEDCHAIN_PG_TLS_CA and MEDCHAIN_PG_TLS_WRONG_CA.
//!
//! The last test needs no server: a listener on 127.0.0.1 that declines TLS shows that a
//! connection asking for TLS sends nothing in plain text.
#![cfg(feature = "postgres")]

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::*;
use getrandom::SysRng;
use medchain_core::seal::NetworkKey;
use medchain_store::{Ledger, PgTlsMode, PostgresStore, StoreError, TlsError};
use rand_core::UnwrapErr;

struct Tls {
    /// postgresql://medchain_tls@127.0.0.1:PORT/medchain: TLS only, no ssl options yet.
    url: String,
    /// The plain-text superuser URL (to look at pg_stat_ssl).
    admin: String,
    ca: String,
    wrong_ca: String,
}

/// The TLS cluster's settings; unset: fails under CI, otherwise a notice and `None`.
fn tls_env(test: &str) -> Option<Tls> {
    let admin = pg_url(test)?;
    let var = |name: &str| match std::env::var(name) {
        Ok(v) if !v.is_empty() => Some(v),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "{test}: {name} is not set under CI; run it through scripts/with-postgres.sh"
            );
            eprintln!("NOTICE: {test} skipped: {name} is not set (WITH_PG_TLS=0?)");
            None
        }
    };
    Some(Tls {
        url: var("MEDCHAIN_PG_TLS_URL")?,
        admin,
        ca: var("MEDCHAIN_PG_TLS_CA")?,
        wrong_ca: var("MEDCHAIN_PG_TLS_WRONG_CA")?,
    })
}

/// `url` with a query appended.
fn with(url: &str, query: &str) -> String {
    format!("{url}?{query}")
}

/// `url` with its host replaced by `host`, the TCP connection still going to 127.0.0.1
/// (`hostaddr`): the name the certificate is checked against is `host`.
fn named(url: &str, host: &str, query: &str) -> String {
    format!(
        "{}?hostaddr=127.0.0.1&{query}",
        url.replace("@127.0.0.1:", &format!("@{host}:"))
    )
}

fn handshake_refused(r: Result<PostgresStore, StoreError>) -> String {
    match r {
        Err(StoreError::Tls(TlsError::Handshake(reason))) => reason,
        Err(e) => panic!("another error: {e}"),
        Ok(_) => panic!("connected"),
    }
}

#[test]
fn a_ledger_is_written_and_reopened_over_verified_tls() {
    let Some(t) = tls_env("a_ledger_is_written_and_reopened_over_verified_tls") else {
        return;
    };
    let schema = unique_schema("tls");
    let app = format!("medchain_{schema}");
    let url = with(
        &t.url,
        &format!(
            "application_name={app}&sslmode=verify-full&sslrootcert={}",
            t.ca
        ),
    );
    let mut s = story(61);
    let key = network_key(&mut s.net);
    let store = PostgresStore::create(&url, &schema, &key).expect("create over TLS");
    assert_eq!(store.tls_mode(), PgTlsMode::VerifyFull);
    let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
    let sealed = small_chain(&mut ledger, &mut s, "tls");
    drop(ledger);

    let store = PostgresStore::open(&url, &schema, &network_key(&mut s.net)).expect("open");
    assert_eq!(store.tls_mode(), PgTlsMode::VerifyFull);
    // The server sees this session as TLS (and admits medchain_tls over TLS only anyway).
    let mut admin = postgres::Client::connect(&t.admin, postgres::NoTls).expect("admin");
    let row = admin
        .query_one(
            "SELECT s.ssl, s.version FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&app],
        )
        .expect("the store's session");
    let (ssl, version): (bool, Option<String>) = (row.get(0), row.get(1));
    assert!(ssl, "the store's session is not TLS");
    assert!(version.is_some_and(|v| v.starts_with("TLSv1.")));
    let ledger = Ledger::with_store(store, None, network_key(&mut s.net)).expect("ledger");
    assert_eq!(ledger.height(), 3);
    assert!(ledger
        .get_record(&sealed.record_id())
        .expect("read")
        .is_some());
    assert_eq!(ledger.verify(|_| {}).expect("verify").blocks, 3);
    ledger.into_store().drop_schema().expect("drop");

    // The host name in the certificate (localhost) works as well as its IP address, and
    // `require` and `verify-ca` verify the chain.
    for (host, mode, want) in [
        ("localhost", "verify-full", PgTlsMode::VerifyFull),
        ("localhost", "verify-ca", PgTlsMode::VerifyCa),
        ("127.0.0.1", "require", PgTlsMode::VerifyCa),
    ] {
        let url = named(
            &t.url,
            host,
            &format!("sslmode={mode}&sslrootcert={}", t.ca),
        );
        let schema = unique_schema("tls");
        let store =
            PostgresStore::create(&url, &schema, &NetworkKey::generate(&mut UnwrapErr(SysRng)))
                .unwrap_or_else(|e| panic!("{host} {mode}: {e}"));
        assert_eq!(store.tls_mode(), want);
        store.drop_schema().expect("drop");
    }
}

#[test]
fn a_certificate_from_another_ca_is_refused_in_every_mode() {
    let Some(t) = tls_env("a_certificate_from_another_ca_is_refused_in_every_mode") else {
        return;
    };
    for mode in ["require", "verify-ca", "verify-full"] {
        let url = with(
            &t.url,
            &format!("sslmode={mode}&sslrootcert={}", t.wrong_ca),
        );
        let reason = handshake_refused(PostgresStore::create(
            &url,
            &unique_schema("wrongca"),
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        ));
        assert!(reason.contains("certificate"), "{mode}: {reason}");
        let reason = handshake_refused(PostgresStore::open(
            &url,
            "medchain",
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        ));
        assert!(reason.contains("certificate"), "{mode}: {reason}");
    }
}

#[test]
fn verify_full_refuses_a_certificate_for_another_name_verify_ca_does_not_check_it() {
    let Some(t) =
        tls_env("verify_full_refuses_a_certificate_for_another_name_verify_ca_does_not_check_it")
    else {
        return;
    };
    let root = format!("sslrootcert={}", t.ca);
    // Reached at 127.0.0.1, but named db.invalid: the certificate names localhost/127.0.0.1.
    let url = named(&t.url, "db.invalid", &format!("sslmode=verify-full&{root}"));
    let reason = handshake_refused(PostgresStore::create(
        &url,
        &unique_schema("name"),
        &NetworkKey::generate(&mut UnwrapErr(SysRng)),
    ));
    assert!(reason.contains("certificate"), "{reason}");
    let url = named(&t.url, "db.invalid", &format!("sslmode=verify-ca&{root}"));
    let store = PostgresStore::create(
        &url,
        &unique_schema("name"),
        &NetworkKey::generate(&mut UnwrapErr(SysRng)),
    )
    .expect("verify-ca checks the chain only");
    assert_eq!(store.tls_mode(), PgTlsMode::VerifyCa);
    store.drop_schema().expect("drop");
}

#[test]
fn a_tls_only_server_refuses_plain_text_and_bad_settings_connect_nowhere() {
    let Some(t) = tls_env("a_tls_only_server_refuses_plain_text_and_bad_settings_connect_nowhere")
    else {
        return;
    };
    // No sslmode (plain text) and sslmode=disable: the server's pg_hba refuses the role.
    for url in [t.url.clone(), with(&t.url, "sslmode=disable")] {
        match PostgresStore::create(
            &url,
            &unique_schema("plain"),
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        ) {
            Err(StoreError::Postgres(e)) => {
                let m = e.to_string();
                assert!(m.contains("28000") && m.contains("no encryption"), "{m}");
            }
            Err(e) => panic!("another error: {e}"),
            Ok(_) => panic!("{url}: plain text admitted"),
        }
    }
    // Settings that could fall back to plain text, or authenticate nothing, are refused
    // before connecting.
    for (query, want) in [
        ("sslmode=prefer", TlsError::UnsupportedMode("prefer".into())),
        ("sslmode=allow", TlsError::UnsupportedMode("allow".into())),
        ("sslmode=require", TlsError::MissingRootCert("require")),
        (
            &format!("sslmode=verify-full&sslrootcert={}&sslcert=/c.pem", t.ca),
            TlsError::UnsupportedOption("sslcert".into()),
        ),
    ] {
        match PostgresStore::open(
            &with(&t.url, query),
            "medchain",
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        ) {
            Err(StoreError::Tls(e)) => assert_eq!(e, want, "{query}"),
            Err(e) => panic!("{query}: another error: {e}"),
            Ok(_) => panic!("{query}: connected"),
        }
    }
}

/// A listener on 127.0.0.1 answers the client's SSLRequest with `N` (no TLS), as a server
/// without TLS, or one an attacker stands in for, would. The client must give up and send
/// nothing more: no StartupMessage (user, database) in plain text.
#[test]
fn a_server_that_declines_tls_gets_nothing_in_plain_text() {
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/unrelated-ca.pem");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    const MODES: [&str; 3] = ["require", "verify-ca", "verify-full"];
    let server = std::thread::spawn(move || -> Vec<(Vec<u8>, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while seen.len() < MODES.len() {
            let mut sock = match listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "no connection");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            sock.set_nonblocking(false).expect("blocking");
            sock.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut request = vec![0u8; 8];
            sock.read_exact(&mut request).expect("SSLRequest");
            sock.write_all(b"N").expect("decline");
            // Whatever comes next, until the client closes (or 5 s pass).
            let mut after = Vec::new();
            let _ = sock.read_to_end(&mut after);
            seen.push((request, after));
        }
        seen
    });
    for mode in MODES {
        let url = format!(
            "postgresql://someone@127.0.0.1:{port}/medchain?sslmode={mode}&sslrootcert={ca}"
        );
        let reason = handshake_refused(PostgresStore::open(
            &url,
            "medchain",
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        ));
        assert!(reason.contains("does not support TLS"), "{mode}: {reason}");
    }
    for (request, after) in server.join().expect("server") {
        // SSLRequest: length 8, code 80877103.
        assert_eq!(request, [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        assert!(
            after.is_empty(),
            "the client sent {} bytes in plain text after TLS was declined",
            after.len()
        );
    }
}
