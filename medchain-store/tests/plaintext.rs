//! Nothing in plain text: sealed records with marker strings are committed, then every byte
//! of the SQLite file, its WAL (and a pg_dump of a PostgreSQL store) is scanned.

mod common;

use common::*;
use medchain_store::{wal_path, Ledger};

fn fill<S: medchain_store::PersistentStore>(ledger: &mut Ledger<S>, s: &mut Story) {
    // Several records holding the markers, a consent, a key release and an access log.
    small_chain(ledger, s, "MARKER-7f3a9c");
    let txs = (0..20)
        .map(|i| {
            record_tx(
                &mut s.net,
                &s.patient,
                &observation(&format!("MARKER-7f3a9c #{i}")),
            )
            .1
        })
        .collect();
    commit(ledger, &mut s.net, txs);
}

#[test]
fn no_marker_in_the_sqlite_file_or_its_wal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("p.db");
    let mut s = story(31);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    fill(&mut ledger, &mut s);
    // Sanity: the markers are really in what was committed (readable by the patient).
    let recs = ledger.records_of(&s.patient.verify_key()).expect("records");
    let one = ledger
        .get_record(&recs[0].record_id)
        .expect("get")
        .expect("rec");
    let plain = one.sealed.expect("sealed").open(&s.patient).expect("open");
    assert!(String::from_utf8_lossy(plain.payload()).contains("MARKER-7f3a9c"));
    // Before a checkpoint: the WAL holds the pages.
    let wal = std::fs::read(wal_path(&path)).expect("wal");
    assert!(!wal.is_empty(), "the WAL is empty before the checkpoint");
    assert_no_markers("SQLite WAL", &wal);
    assert_no_markers("SQLite file", &std::fs::read(&path).expect("db"));
    ledger.store().checkpoint().expect("checkpoint");
    assert_no_markers(
        "SQLite file after checkpoint",
        &std::fs::read(&path).expect("db"),
    );
    drop(ledger);
    for entry in std::fs::read_dir(dir.path()).expect("dir") {
        let p = entry.expect("entry").path();
        assert_no_markers(&p.display().to_string(), &std::fs::read(&p).expect("read"));
    }
}

#[cfg(feature = "postgres")]
#[test]
fn no_marker_in_a_postgres_dump() {
    let Some(url) = pg_url("no_marker_in_a_postgres_dump") else {
        return;
    };
    let schema = unique_schema("plain");
    let mut s = story(32);
    let key = network_key(&mut s.net);
    let store = medchain_store::PostgresStore::create(&url, &schema, &key).expect("create");
    let mut ledger = Ledger::with_store(store, Some(&s.net.genesis), key).expect("ledger");
    fill(&mut ledger, &mut s);
    assert!(ledger.height() >= 4);
    let bin =
        std::env::var("MEDCHAIN_PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into());
    let out = std::process::Command::new(format!("{bin}/pg_dump"))
        .arg("--dbname")
        .arg(&url)
        .arg("--schema")
        .arg(&schema)
        .output()
        .expect("run pg_dump");
    assert!(
        out.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dump = out.stdout;
    assert!(dump.len() > 10_000, "the dump is suspiciously small");
    // The dump really holds the rows (their bytes are hex-escaped bytea).
    assert!(
        String::from_utf8_lossy(&dump).contains("COPY"),
        "no data in the dump"
    );
    assert_no_markers("pg_dump", &dump);
    let _ = medchain_core::store::LedgerStore::head(ledger.store()).expect("head");
    ledger.into_store().drop_schema().expect("drop");
}
