//! SQLite store: conformance, open checks on foreign and corrupt files, the Ledger API.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use getrandom::SysRng;
use medchain_core::ledger::AuditKind;
use medchain_core::seal::NetworkKey;
use medchain_core::store::LedgerStore;
use medchain_store::{Ledger, LedgerError, SqliteStore, StoreError};
use rand_core::{Rng, UnwrapErr};

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

fn bytes_of(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn sqlite_store_passes_the_conformance_suite() {
    let dir = tmp();
    let mut n = 0;
    medchain_core::store::conformance::run_all(|| {
        n += 1;
        SqliteStore::create(
            dir.path().join(format!("c{n}.db")),
            &NetworkKey::generate(&mut UnwrapErr(SysRng)),
        )
        .expect("create")
    });
}

#[test]
fn a_store_reopens_with_its_state_and_refuses_another_key() {
    let dir = tmp();
    let path = dir.path().join("l.db");
    let mut s = story(11);
    let key = network_key(&mut s.net);
    let sealed = {
        let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
        small_chain(&mut ledger, &mut s, "hello")
    };
    let ledger = Ledger::open_sqlite(&path, network_key(&mut s.net)).expect("reopen");
    assert_eq!(ledger.height(), 3);
    assert_eq!(ledger.tip(), s.net.tip());
    let rec = ledger
        .get_record(&sealed.record_id())
        .expect("get")
        .expect("record");
    assert_eq!(rec.sealed.as_ref(), Some(&sealed));
    assert_eq!(
        rec.sealed
            .expect("sealed")
            .open(&s.patient)
            .expect("open")
            .payload(),
        &observation("hello")[..]
    );
    let trail = ledger
        .audit_of_patient(&s.patient.verify_key())
        .expect("audit");
    assert_eq!(
        trail.iter().map(|a| a.kind).collect::<Vec<_>>(),
        [AuditKind::KeyShared, AuditKind::Accessed]
    );
    let events = ledger
        .audit_events_of_record(&sealed.record_id())
        .expect("events");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["resourceType"], "AuditEvent");
    assert_eq!(
        ledger
            .consents_of(&s.patient.verify_key())
            .expect("consents")
            .len(),
        1
    );
    let mut seen = Vec::new();
    let summary = ledger.verify(|p| seen.push(p.height)).expect("verify");
    assert_eq!(seen, [1, 2, 3]);
    assert!(summary.head_proven);
    assert_eq!(ledger.blocks_from(2).count(), 2);
    drop(ledger);

    let other = NetworkKey::generate(&mut UnwrapErr(SysRng));
    let err = SqliteStore::open(&path, &other).unwrap_err();
    assert!(matches!(err, StoreError::WrongKey), "{err}");
    assert_eq!(err.to_string(), "the network key does not open this store");
}

#[test]
fn the_ledger_rejects_invalid_blocks_and_keeps_the_store_unchanged() {
    let dir = tmp();
    let mut s = story(12);
    let key = network_key(&mut s.net);
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("l.db"), &s.net.genesis, key).expect("create");
    let (_, rec) = record_tx(&mut s.net, &s.patient, &observation("x"));
    commit(&mut ledger, &mut s.net, vec![rec.clone()]);
    // The same transaction again, in a block built over an empty state (where it is valid):
    // over the stored state it is a replay.
    let (b, _e, p) = s
        .net
        .next_block(&medchain_core::ledger::LedgerState::new(), vec![rec])
        .expect("block");
    let err = ledger.append_committed(b.into_block(), &p).unwrap_err();
    assert!(matches!(err, LedgerError::InvalidBlock(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("the block is rejected: invalid block: "),
        "{err}"
    );
    assert_eq!(ledger.height(), 1);
    assert_eq!(medchain_core::ledger::StateView::height(ledger.store()), 1);
    assert_eq!(
        ledger
            .store()
            .head()
            .expect("head")
            .expect("head")
            .tip
            .height,
        1
    );
    // A wrong network key is refused before anything is created.
    let err = Ledger::create_sqlite(
        dir.path().join("m.db"),
        &s.net.genesis,
        NetworkKey::generate(&mut UnwrapErr(SysRng)),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "the network key is not the one this chain's genesis names"
    );
    assert!(!dir.path().join("m.db").exists());
}

#[test]
fn erasure_through_the_ledger_prunes_and_the_chain_still_verifies() {
    let dir = tmp();
    let path = dir.path().join("l.db");
    let mut s = story(13);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    let sealed = small_chain(&mut ledger, &mut s, "to be erased");
    let erase = erase_tx(&mut s.net, &s.patient, &sealed);
    commit(&mut ledger, &mut s.net, vec![erase]);
    let rec = ledger
        .get_record(&sealed.record_id())
        .expect("get")
        .expect("tombstone");
    assert!(rec.entry.erased);
    assert!(rec.sealed.is_none(), "the sealed record is still stored");
    let b1 = ledger.store().block(1).expect("read").expect("block 1");
    assert!(b1.transactions[0].is_pruned());
    let b2 = ledger.store().block(2).expect("read").expect("block 2");
    assert!(
        b2.transactions[0].is_pruned(),
        "the key release is not pruned"
    );
    ledger.verify(|_| {}).expect("verifies after erasure");
    let kinds: Vec<_> = ledger
        .audit_of_record(&sealed.record_id())
        .expect("audit")
        .iter()
        .map(|a| a.kind)
        .collect();
    assert_eq!(
        kinds,
        [AuditKind::KeyShared, AuditKind::Accessed, AuditKind::Erased]
    );
    drop(ledger);
    Ledger::open_sqlite(&path, network_key(&mut s.net)).expect("reopens after erasure");
}

fn built_store(dir: &Path, seed: u64) -> (PathBuf, Story) {
    let path = dir.join(format!("s{seed}.db"));
    let mut s = story(seed);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    small_chain(&mut ledger, &mut s, "n");
    drop(ledger);
    (path, s)
}

fn open_err(path: &Path, s: &mut Story) -> StoreError {
    let before = bytes_of(path);
    let err = SqliteStore::open(path, &network_key(&mut s.net)).unwrap_err();
    assert_eq!(bytes_of(path), before, "a refused file was modified");
    err
}

#[test]
fn open_refuses_foreign_files_without_touching_them() {
    let dir = tmp();
    let mut s = story(14);
    // Missing.
    let err = open_err(&dir.path().join("none.db"), &mut s);
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    // Empty.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let err = open_err(&empty, &mut s);
    assert_eq!(err.to_string(), "not a medchain store: the file is empty");
    // Random bytes.
    let random = dir.path().join("random.db");
    let mut junk = vec![0u8; 10_000];
    UnwrapErr(SysRng).fill_bytes(&mut junk);
    std::fs::write(&random, &junk).unwrap();
    let err = open_err(&random, &mut s);
    assert_eq!(
        err.to_string(),
        "not a medchain store: the file is not a SQLite database"
    );
    // Another application's SQLite database.
    let other = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&other).unwrap();
        c.execute_batch("PRAGMA journal_mode=WAL; CREATE TABLE notes (t TEXT); INSERT INTO notes VALUES ('hi');")
            .unwrap();
    }
    let err = open_err(&other, &mut s);
    assert_eq!(
        err.to_string(),
        "not a medchain store: the file is a SQLite database of another application"
    );
    // create refuses to overwrite.
    let err =
        SqliteStore::create(&other, &NetworkKey::generate(&mut UnwrapErr(SysRng))).unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists(_)), "{err}");
    // Nothing panics on a directory either.
    let err =
        SqliteStore::open(dir.path(), &NetworkKey::generate(&mut UnwrapErr(SysRng))).unwrap_err();
    let _ = err.to_string();
}

#[test]
fn open_refuses_a_truncated_store_without_touching_it() {
    let dir = tmp();
    let (path, mut s) = built_store(dir.path(), 15);
    let len = std::fs::metadata(&path).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(len - 8192 - 100).unwrap();
    drop(f);
    let err = open_err(&path, &mut s);
    assert!(matches!(err, StoreError::Truncated { .. }), "{err}");
    assert!(
        err.to_string().starts_with("the store file is truncated: "),
        "{err}"
    );
    // Truncated inside the header.
    std::fs::write(&path, &bytes_of(&path)[..50]).unwrap();
    let err = open_err(&path, &mut s);
    assert_eq!(
        err.to_string(),
        "not a medchain store: the file is not a SQLite database"
    );
}

#[test]
fn open_refuses_a_tampered_head_and_verify_catches_a_tampered_block() {
    let dir = tmp();
    // A tampered head block: open refuses.
    let (path, mut s) = built_store(dir.path(), 16);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let shell: Vec<u8> = c
            .query_row("SELECT shell FROM blocks WHERE height = 3", [], |r| {
                r.get(0)
            })
            .unwrap();
        let mut block =
            <medchain_core::block::Block as medchain_core::encoding::Decode>::from_bytes(&shell)
                .unwrap();
        block.header.timestamp_ms += 1;
        let bytes = medchain_core::encoding::Encode::to_bytes(&block);
        c.execute("UPDATE blocks SET shell = ?1 WHERE height = 3", [bytes])
            .unwrap();
    }
    let err = open_err(&path, &mut s);
    assert!(matches!(err, StoreError::HeadInvalid(_)), "{err}");
    assert!(
        err.to_string()
            .starts_with("the stored head does not verify: the head block does not validate"),
        "{err}"
    );

    // A tampered proof: open refuses.
    let (path, mut s) = built_store(dir.path(), 17);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let p = medchain_core::encoding::Encode::to_bytes(&{
            let mut other = story(18);
            let key = network_key(&mut other.net);
            let mut l =
                Ledger::create_sqlite(dir.path().join("x.db"), &other.net.genesis, key).unwrap();
            small_chain(&mut l, &mut other, "z");
            l.store().head().unwrap().unwrap().proof.unwrap()
        });
        c.execute("UPDATE head SET proof = ?1", [p]).unwrap();
    }
    let err = open_err(&path, &mut s);
    assert!(
        err.to_string()
            .starts_with("the stored head does not verify: the head's commit proof"),
        "{err}"
    );

    // A tampered transaction below the head: open accepts (it checks the head), verify catches it.
    let (path, mut s) = built_store(dir.path(), 19);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        let (seq, bytes): (i64, Vec<u8>) = c
            .query_row(
                "SELECT seq, bytes FROM transactions WHERE height = 1 ORDER BY seq LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        let mut b = bytes.clone();
        let n = b.len();
        b[n / 2] ^= 1;
        c.execute(
            "UPDATE transactions SET bytes = ?1 WHERE seq = ?2",
            rusqlite::params![b, seq],
        )
        .unwrap();
    }
    let ledger =
        Ledger::open_sqlite(&path, network_key(&mut s.net)).expect("open checks the head only");
    let err = ledger.verify(|_| {}).unwrap_err();
    assert!(
        err.to_string().starts_with("chain verification failed: "),
        "{err}"
    );
    assert!(err.to_string().contains("height 1"), "{err}");
}

#[test]
fn search_takes_the_filter_path_and_falls_back_for_filterless_blocks() {
    use medchain_core::access::record_class;
    use medchain_core::encoding::Encode;
    use medchain_core::index::{IndexEntry, IndexKey, Keyword};
    use medchain_core::seal::seal_record;
    use medchain_core::tx::TxBody;
    let dir = tmp();
    let path = dir.path().join("search.db");
    let mut s = story(21);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    let writer = IndexKey::for_patient(&s.patient).for_writer(&s.net.nodes[4].id());
    let a1c = Keyword::code("http://loinc.org", "4548-4").expect("keyword");
    let mut ids = Vec::new();
    // Block 1: records from two nodes with their index material: the block gets a filter.
    let mut txs = Vec::new();
    for node in [4, 5, 4] {
        let payload = observation(&format!("from node {node}"));
        let sealed = seal_record(
            &payload,
            &s.patient.public(),
            &[s.net.nodes[node].public()],
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
        let writer = IndexKey::for_patient(&s.patient).for_writer(&s.net.nodes[node].id());
        let trapdoors = writer.trapdoors([&a1c]);
        txs.push(s.net.indexed_tx(node, &body, sealed.record_id(), trapdoors));
        ids.push((sealed.record_id(), node));
    }
    commit(&mut ledger, &mut s.net, txs);
    // Block 2: an indexed record whose trapdoors its node no longer has: no filter.
    let payload = observation("no material");
    let holder = s.net.nodes[4].public();
    let sealed =
        seal_record(&payload, &s.patient.public(), &[holder], &mut s.net.rng).expect("seal");
    let entry = IndexEntry::build(
        &sealed.record_id(),
        &writer.trapdoors([&a1c]),
        &mut s.net.rng,
    )
    .expect("entry");
    let class = record_class(
        &payload,
        &medchain_core::consent::ConsentTagKey::for_patient(&s.patient),
        &mut s.net.rng,
    )
    .expect("class");
    let body = TxBody::record_added(sealed.clone(), class);
    let tx = s.net.tx(4, &body, entry.to_bytes());
    commit(&mut ledger, &mut s.net, vec![tx]);
    let b1 = ledger.store().block(1).expect("read").expect("block 1");
    let b2 = ledger.store().block(2).expect("read").expect("block 2");
    assert!(!b1.index_filter.is_empty());
    assert!(b2.index_filter.is_empty());

    let query = writer.query(&[a1c]).expect("query");
    let found = ledger.search_report(&query, 1).expect("search");
    let hits: Vec<_> = found.hits.iter().map(|h| (h.height, h.record_id)).collect();
    let want: Vec<_> = ids
        .iter()
        .filter(|(_, node)| *node == 4)
        .map(|(id, _)| (1, *id))
        .chain([(2, sealed.record_id())])
        .collect();
    assert_eq!(
        hits, want,
        "exactly node 4's records under node 4's writer key"
    );
    assert_eq!(found.indexed_blocks, 2);
    assert_eq!(found.exhaustive_blocks, 1);
    assert_eq!(found.blocks_skipped, 0);
    // A keyword no record holds: the filter rules block 1 out.
    let absent = writer
        .query(&[Keyword::code("http://loinc.org", "0000-0").expect("keyword")])
        .expect("query");
    let none = ledger.search_report(&absent, 1).expect("search");
    assert!(none.hits.is_empty());
    assert_eq!(none.blocks_skipped, 1);
    assert_eq!(ledger.search(&query, 2).expect("search").len(), 1);
    ledger.verify(|_| {}).expect("verifies");
}

/// One commit step can commit a block and its uncommitted ancestor; the node then has a proof
/// for the highest only. Both go into the ledger in one write, each judged over the one before.
#[test]
fn one_commit_step_of_two_blocks_appends_in_one_write() {
    use medchain_core::vote::InvalidReason;
    let dir = tmp();
    // Two copies of one deterministic network: the same genesis, record and first block.
    let mut a = story(21);
    let mut b = story(21);
    let (_, rec) = record_tx(&mut a.net, &a.patient, &observation("step"));
    let (_, rec_b) = record_tx(&mut b.net, &b.patient, &observation("step"));
    assert_eq!(rec.id(), rec_b.id());
    let empty = medchain_core::ledger::LedgerState::new();
    let (b1, e1, p1) = b.net.next_block(&empty, vec![rec_b]).expect("block 1");
    let mut after_b1 = medchain_core::ledger::LedgerState::new();
    after_b1.commit(e1.clone()).expect("state");
    let (b2, e2, p2) = b.net.next_block(&after_b1, vec![]).expect("block 2");
    // The attack's chain: block 1, then a block 2 holding block 1's record again (testkit
    // builds it over the empty state, where the duplicate does not show).
    let (a1, _, _) = a
        .net
        .next_block(&empty, vec![rec.clone()])
        .expect("block 1 (a)");
    assert_eq!(a1.hash(), b1.hash());
    let (dup, _, p_dup) = a.net.next_block(&empty, vec![rec]).expect("block 2 (a)");

    let key = network_key(&mut b.net);
    let path = dir.path().join("l.db");
    let mut ledger = Ledger::create_sqlite(&path, &b.net.genesis, key).expect("create");
    // Validated by the ledger: block 2 is judged over block 1's effects, and refused.
    let err = ledger
        .append_committed_chain(vec![a1.into_block(), dup.into_block()], &p_dup)
        .expect_err("a duplicate across the step must be refused");
    assert!(
        matches!(&err, LedgerError::InvalidBlock(e) if e.reason == InvalidReason::DuplicateTransaction),
        "{err}"
    );
    assert_eq!(ledger.height(), 0, "a refused step wrote a block");
    // Handed over with effects: the proof must be the step's last block's.
    let err = ledger
        .append_checked_chain(&[(&b1, &e1), (&b2, &e2)], &p1)
        .expect_err("the first block's proof does not prove the second");
    assert!(matches!(err, LedgerError::CommitProof(_)), "{err}");
    assert!(matches!(
        ledger.append_checked_chain(&[], &p2),
        Err(LedgerError::Store(StoreError::NoBlocks))
    ));
    assert!(
        ledger.append_checked_chain(&[(&b2, &e2)], &p2).is_err(),
        "block 2 without block 1 must be refused"
    );
    assert_eq!(ledger.height(), 0);
    ledger
        .append_checked_chain(&[(&b1, &e1), (&b2, &e2)], &p2)
        .expect("the step");
    assert_eq!(ledger.tip(), &b2.tip());
    drop(ledger);
    let ledger = Ledger::open_sqlite(&path, network_key(&mut b.net)).expect("reopen");
    assert_eq!(ledger.height(), 2);
    let summary = ledger.verify(|_| {}).expect("verify");
    assert!(summary.head_proven);
    assert_eq!(summary.transactions, 1);

    // The same step validated by the ledger (a node without effects for it).
    let path = dir.path().join("m.db");
    let key = network_key(&mut b.net);
    let mut ledger = Ledger::create_sqlite(&path, &b.net.genesis, key).expect("create");
    let checked = ledger
        .append_committed_chain(vec![b1.clone().into_block(), b2.clone().into_block()], &p2)
        .expect("the step, validated");
    assert_eq!(checked.len(), 2);
    assert_eq!(ledger.tip(), &b2.tip());
}

/// A validator's durable state is kept beside the chain, survives a reopen, and bytes that do
/// not decode are an error, never a silent fresh state (that would let it vote twice).
#[test]
fn the_durable_node_state_is_kept_and_checked() {
    use medchain_core::protocol::{DurableState, SafetyState};
    let dir = tmp();
    let path = dir.path().join("l.db");
    let mut s = story(23);
    let key = network_key(&mut s.net);
    let mut ledger = Ledger::create_sqlite(&path, &s.net.genesis, key).expect("create");
    assert_eq!(ledger.durable_state().expect("read"), None);
    let empty = medchain_core::ledger::LedgerState::new();
    let (b1, _, _) = s.net.next_block(&empty, vec![]).expect("block");
    let state = DurableState {
        safety: SafetyState {
            highest_voted_round: 42,
            high_qc: None,
        },
        pending: vec![b1.into_block()],
    };
    ledger.save_durable_state(&state).expect("save");
    let newer = DurableState {
        safety: SafetyState {
            highest_voted_round: 43,
            high_qc: None,
        },
        pending: state.pending.clone(),
    };
    ledger.save_durable_state(&newer).expect("save again");
    drop(ledger);
    let ledger = Ledger::open_sqlite(&path, network_key(&mut s.net)).expect("reopen");
    assert_eq!(ledger.durable_state().expect("read"), Some(newer));
    // The stored state is not part of the chain: verify still holds.
    assert!(ledger.verify(|_| {}).is_ok());
    drop(ledger);
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute(
            "UPDATE meta SET value = x'ff00' WHERE key = 'node_safety'",
            [],
        )
        .unwrap();
    }
    let ledger = Ledger::open_sqlite(&path, network_key(&mut s.net)).expect("reopen");
    assert!(matches!(
        ledger.durable_state(),
        Err(LedgerError::Store(StoreError::Decode(_)))
    ));
}

/// A node's read-only connection to the file ([`SqliteStore::reader`]) passes the reader
/// conformance test (`common::reader_conformance`, also run on PostgreSQL).
#[test]
fn a_reader_sees_what_the_store_appends() {
    let dir = tmp();
    let mut s = story(12);
    let key = network_key(&mut s.net);
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("l.db"), &s.net.genesis, key).expect("create");
    reader_conformance(&mut ledger, &mut s);
}
