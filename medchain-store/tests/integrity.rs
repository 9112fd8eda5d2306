//! Issue #12 item 5 on a real SQLite file: derived state rows cannot be rolled back, moved or
//! deleted, nor payloads stripped, without `open` or `verify` refusing the store. Also the
//! one-validation append (`append_checked`) and erased records left out of search.

mod common;

use std::path::PathBuf;

use common::attacks::{self, Admin, Scene};
use common::*;
use medchain_core::seal::NetworkKey;
use medchain_store::{Ledger, LedgerError, SqliteStore, StoreError};

struct File {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Admin for File {
    type Store = SqliteStore;
    fn exec(&mut self, sql: &str, blob: Option<&[u8]>) {
        let c = rusqlite::Connection::open(&self.path).expect("connect");
        let sql = sql.replace("{s}", "").replace(":blob", "?1");
        match blob {
            Some(b) => c.execute(&sql, [b]).map(|_| ()),
            None => c.execute_batch(&sql),
        }
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }
    fn bytes(&mut self, sql: &str) -> Vec<u8> {
        let c = rusqlite::Connection::open(&self.path).expect("connect");
        c.query_row(&sql.replace("{s}", ""), [], |r| r.get(0))
            .expect("query")
    }
    fn reopen(&mut self, key: NetworkKey) -> Result<Ledger<SqliteStore>, LedgerError> {
        Ledger::open_sqlite(&self.path, key)
    }
}

fn built(seed: u64) -> (File, Scene) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.db");
    let mut s = story(seed);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    let scene = attacks::scene(&mut ledger, seed);
    ledger.verify(|_| {}).expect("the untouched store verifies");
    drop(ledger);
    (File { path, _dir: dir }, scene)
}

#[test]
fn undoing_a_revocation_is_refused_at_open() {
    let (mut f, mut sc) = built(31);
    attacks::undo_a_revocation(&mut f, &mut sc);
    let (mut f, mut sc) = built(32);
    attacks::undo_a_revocation_with_an_older_head(&mut f, &mut sc);
}

#[test]
fn a_consent_moved_to_another_patient_is_unreadable_and_releases_nothing() {
    let (mut f, mut sc) = built(33);
    attacks::move_a_consent_to_another_patient(&mut f, &mut sc);
}

#[test]
fn a_deleted_or_replaced_audit_row_is_refused() {
    let (mut f, mut sc) = built(34);
    attacks::delete_or_replace_an_audit_row(&mut f, &mut sc, true);
    let (mut f, mut sc) = built(35);
    attacks::delete_or_replace_an_audit_row(&mut f, &mut sc, false);
}

#[test]
fn a_payload_stripped_without_an_erasure_is_refused() {
    let (mut f, mut sc) = built(36);
    attacks::strip_a_payload(&mut f, &mut sc, true);
    let (mut f, mut sc) = built(37);
    attacks::strip_a_payload(&mut f, &mut sc, false);
}

#[test]
fn a_validated_block_is_appended_once_with_its_own_effects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = story(38);
    let key = network_key(&mut s.net);
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("l.db"), &s.net.genesis, key).expect("create");
    let (_, rec) = record_tx(&mut s.net, &s.patient, &observation("x"));
    let (b1, e1, p1) = s
        .net
        .next_block(ledger.store(), vec![rec])
        .expect("block 1");
    let (b2, e2, p2) = s
        .net
        .next_block(
            &{
                let mut st = medchain_core::ledger::LedgerState::new();
                st.commit(e1.clone()).expect("shadow");
                st
            },
            vec![],
        )
        .expect("block 2");
    // Not the next block, effects of another block, a proof of another block: refused.
    let err = ledger.append_checked(&b2, &e2, &p2).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Store(StoreError::OutOfOrder { have: 0, got: 2 })
        ),
        "{err}"
    );
    let err = ledger.append_checked(&b1, &e2, &p1).unwrap_err();
    assert!(
        matches!(err, LedgerError::Store(StoreError::EffectsMismatch)),
        "{err}"
    );
    let err = ledger.append_checked(&b1, &e1, &p2).unwrap_err();
    assert!(matches!(err, LedgerError::CommitProof(_)), "{err}");
    assert_eq!(ledger.height(), 0);
    ledger.append_checked(&b1, &e1, &p1).expect("block 1");
    let err = ledger.append_checked(&b1, &e1, &p1).unwrap_err();
    assert!(
        matches!(
            err,
            LedgerError::Store(StoreError::OutOfOrder { have: 1, got: 1 })
        ),
        "{err}"
    );
    ledger.append_checked(&b2, &e2, &p2).expect("block 2");
    assert_eq!(ledger.height(), 2);
    ledger.verify(|_| {}).expect("verifies");
}

#[test]
fn erased_records_are_not_searchable() {
    use medchain_core::access::record_class;
    use medchain_core::index::{IndexKey, Keyword, Query};
    use medchain_core::seal::seal_record;
    use medchain_core::tx::TxBody;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = story(39);
    let key = network_key(&mut s.net);
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("l.db"), &s.net.genesis, key).expect("create");
    let index = IndexKey::for_patient(&s.patient);
    let kw: Keyword = "type:Observation".parse().expect("keyword");
    let payload = observation("indexed");
    let sealed = seal_record(
        &payload,
        &s.patient.public(),
        &[s.net.nodes[4].public()],
        &mut s.net.rng,
    )
    .expect("seal");
    let class = record_class(
        &payload,
        &medchain_core::consent::ConsentTagKey::for_patient(&s.patient),
        &mut s.net.rng,
    )
    .expect("class");
    let body = TxBody::record_added(sealed.clone(), class);
    let tx = s
        .net
        .indexed_tx(4, &body, sealed.record_id(), index.trapdoors([&kw]));
    commit(&mut ledger, &mut s.net, vec![tx]);
    let query = Query::keyword(index.trapdoor(&kw));
    let found = ledger.search_report(&query, 1).expect("search");
    assert_eq!(found.hits.len(), 1);
    assert_eq!(found.hits[0].record_id, sealed.record_id());
    assert_eq!(found.candidates_read, 1);
    let erase = erase_tx(&mut s.net, &s.patient, &sealed);
    commit(&mut ledger, &mut s.net, vec![erase]);
    let found = ledger.search_report(&query, 1).expect("search");
    assert!(found.hits.is_empty(), "an erased record is still found");
    assert_eq!(found.erased_skipped, 1);
    ledger.verify(|_| {}).expect("verifies");
}

#[test]
fn search_spans_blocks_appends_and_cache_limits_and_refuses_a_moved_erasure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("l.db");
    let mut s = story(38);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    attacks::search_across_blocks_and_appends(&mut ledger, &mut s);
    drop(ledger);
    let key = network_key(&mut s.net);
    attacks::move_an_erasure_to_another_record(&mut File { path, _dir: dir }, key, &s.patient);
}
