//! The storage attacks of issue #12 item 5, run on a real SQLite file or a real PostgreSQL
//! schema: each is performed with plain SQL (what write access to the database gives) and
//! must be refused at open or by `Ledger::verify`.
#![allow(dead_code, missing_docs)]

use medchain_core::access::{release_key, AccessError, ReleaseRequest};
use medchain_core::consent::{Consent, Purpose};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::keys::Identity;
use medchain_core::seal::{NetworkKey, SealedRecord};
use medchain_core::tx::Transaction;
use medchain_store::{Corruption, Ledger, LedgerError, PersistentStore, StoreError};

use super::*;

/// What a test needs of a backend: run SQL as the database's administrator (`{s}` stands for
/// the schema prefix, `:blob` for one bytes parameter), read one bytes value, reopen the ledger.
pub trait Admin {
    type Store: PersistentStore;
    fn exec(&mut self, sql: &str, blob: Option<&[u8]>);
    fn bytes(&mut self, sql: &str) -> Vec<u8>;
    fn reopen(&mut self, key: NetworkKey) -> Result<Ledger<Self::Store>, LedgerError>;
}

/// Two patients: A granted a doctor a consent (later revoked), B has a record and a consent to
/// somebody else. Blocks: 1 A's record + A's consent, 2 B's record + B's consent, 3 a key
/// release of A's record to the doctor with its access log, 4 A revokes.
pub struct Scene {
    pub s: Story,
    pub patient_b: Identity,
    pub record_a: SealedRecord,
    pub record_b: SealedRecord,
    pub consent_a: Consent,
}

pub fn scene<S: PersistentStore>(ledger: &mut Ledger<S>, seed: u64) -> Scene {
    let mut s = story(seed);
    let patient_b = Identity::generate(&mut s.net.rng);
    let (record_a, rec_a) = record_tx(&mut s.net, &s.patient, &observation("a"));
    let consent_a = consent_for(&s.patient, &s.doctor, s.net.now_ms);
    let chain = s.net.genesis.chain_id();
    let grant_a = s.net.tx(
        5,
        &consent_a.grant_body(&s.patient, &chain).expect("grant"),
        vec![],
    );
    commit(ledger, &mut s.net, vec![rec_a, grant_a]);
    let (record_b, rec_b) = record_tx(&mut s.net, &patient_b, &observation("b"));
    let other = Identity::generate(&mut s.net.rng);
    let consent_b = consent_for(&patient_b, &other, s.net.now_ms);
    let grant_b = s.net.tx(
        5,
        &consent_b.grant_body(&patient_b, &chain).expect("grant"),
        vec![],
    );
    commit(ledger, &mut s.net, vec![rec_b, grant_b]);
    let release = release_key(
        &s.net.nodes[4],
        &record_a,
        ReleaseRequest {
            grantee: s.doctor.public(),
            credential: None,
            purpose: Purpose::Treat,
        },
        ledger.view(),
        s.net.now_ms,
        &mut s.net.rng,
    )
    .expect("release under A's consent");
    let ks = s.net.tx(4, &release.key_shared, vec![]);
    let log = s.net.tx(4, &release.access_logged, vec![]);
    commit(ledger, &mut s.net, vec![ks, log]);
    let revoke = Consent::revoke_body(&s.patient, &chain, &consent_a.id());
    let revoke = s.net.tx(5, &revoke, vec![]);
    commit(ledger, &mut s.net, vec![revoke]);
    Scene {
        s,
        patient_b,
        record_a,
        record_b,
        consent_a,
    }
}

fn corruption<T: std::fmt::Debug>(r: Result<T, LedgerError>) -> Corruption {
    match r {
        Err(LedgerError::Store(StoreError::Corrupt(c))) => c,
        other => panic!("expected a corruption error, got {other:?}"),
    }
}

fn doctor_release<S: PersistentStore>(
    ledger: &Ledger<S>,
    sc: &mut Scene,
    record: &SealedRecord,
) -> Result<(), AccessError> {
    release_key(
        &sc.s.net.nodes[4],
        record,
        ReleaseRequest {
            grantee: sc.s.doctor.public(),
            credential: None,
            purpose: Purpose::Treat,
        },
        ledger.view(),
        sc.s.net.now_ms,
        &mut sc.s.net.rng,
    )
    .map(|_| ())
}

/// Restoring the consent state of an older copy (before the revocation): the revocation row
/// is gone, so the table holds fewer rows than the head's commitment counts; refused at open.
/// Restoring the older head record too leaves a head below the stored blocks; refused too.
pub fn undo_a_revocation<A: Admin>(admin: &mut A, sc: &mut Scene) {
    let ledger = admin
        .reopen(network_key(&mut sc.s.net))
        .expect("opens before tampering");
    let consents = ledger
        .consents_of(&sc.s.patient.verify_key())
        .expect("consents");
    assert_eq!(consents[0].revoked_at, Some(4));
    drop(ledger);
    admin.exec("DELETE FROM {s}revocations", None);
    let c = corruption(admin.reopen(network_key(&mut sc.s.net)));
    assert_eq!(
        c,
        Corruption::RowCount {
            table: "revocations",
            committed: 1,
            found: 0
        }
    );
    assert_eq!(
        c.to_string(),
        "table revocations holds 0 rows, the head's commitment counts 1"
    );
}

/// The older head record restored as well (its height): the head is then below the stored
/// blocks; refused before anything else is read.
pub fn undo_a_revocation_with_an_older_head<A: Admin>(admin: &mut A, sc: &mut Scene) {
    admin.exec("DELETE FROM {s}revocations", None);
    admin.exec("UPDATE {s}head SET height = 3", None);
    let err = admin.reopen(network_key(&mut sc.s.net)).unwrap_err();
    assert!(
        err.to_string()
            .contains("4 blocks up to height 4 are stored, the head is at height 3"),
        "{err}"
    );
}

/// Moving A's (revoked) consent row to patient B: the row no longer decrypts under its
/// identity. B's consents cannot be read (typed corruption), so no key of B's record is
/// released under it, and `verify` refuses the store. Without tampering, A's consent never
/// permits a release of B's record (the rule reads only the record's patient's consents).
pub fn move_a_consent_to_another_patient<A: Admin>(admin: &mut A, sc: &mut Scene) {
    let record_b = sc.record_b.clone();
    {
        let ledger = admin.reopen(network_key(&mut sc.s.net)).expect("open");
        let err = doctor_release(&ledger, sc, &record_b).unwrap_err();
        assert!(
            matches!(err, AccessError::Denied(_) | AccessError::Rule(_)),
            "{err}"
        );
    }
    // A's consent is the first row; B's the second: give A's row B's patient column.
    admin.exec(
        "UPDATE {s}consents SET pkey = (SELECT pkey FROM {s}consents WHERE seq = (SELECT max(seq) FROM {s}consents)) \
         WHERE seq = (SELECT min(seq) FROM {s}consents)",
        None,
    );
    let ledger = admin
        .reopen(network_key(&mut sc.s.net))
        .expect("a moved row keeps the counts: open passes, reads refuse");
    // The rules read consents through `StateView`, whose errors are `StateError`s.
    let err = ledger.consents_of(&sc.patient_b.verify_key()).unwrap_err();
    assert!(matches!(err, LedgerError::State(_)), "{err}");
    assert!(
        err.to_string()
            .contains("a consents row does not decrypt under its identity"),
        "{err}"
    );
    let err = doctor_release(&ledger, sc, &record_b).unwrap_err();
    assert!(matches!(err, AccessError::State(_)), "{err}");
    assert!(
        err.to_string().contains("a consents row does not decrypt"),
        "{err}"
    );
    let c = corruption(ledger.verify(|_| {}));
    assert_eq!(c, Corruption::Row { table: "consents" });
}

/// Deleting an audit row: refused at open. Replacing it with a copy of another row: open
/// passes, but reading the trail and `verify` refuse the row.
pub fn delete_or_replace_an_audit_row<A: Admin>(admin: &mut A, sc: &mut Scene, delete: bool) {
    if delete {
        admin.exec(
            "DELETE FROM {s}audit WHERE seq = (SELECT max(seq) FROM {s}audit)",
            None,
        );
        let c = corruption(admin.reopen(network_key(&mut sc.s.net)));
        assert_eq!(
            c,
            Corruption::RowCount {
                table: "audit",
                committed: 2,
                found: 1
            }
        );
    } else {
        admin.exec(
            "UPDATE {s}audit SET sealed = (SELECT sealed FROM {s}audit WHERE seq = (SELECT min(seq) FROM {s}audit)) \
             WHERE seq = (SELECT max(seq) FROM {s}audit)",
            None,
        );
        let ledger = admin.reopen(network_key(&mut sc.s.net)).expect("open");
        let c = corruption(ledger.audit_of_patient(&sc.s.patient.verify_key()));
        assert_eq!(c, Corruption::Row { table: "audit" });
        let c = corruption(ledger.verify(|_| {}));
        assert_eq!(c, Corruption::Row { table: "audit" });
    }
}

/// Stripping the payload of A's record from block 1 without an erasure. Flagged as pruned:
/// the pruned count no longer matches the commitment (open refuses). Not flagged: reading the
/// record or the block refuses it, and so does `verify`.
pub fn strip_a_payload<A: Admin>(admin: &mut A, sc: &mut Scene, flag: bool) {
    let bytes = admin.bytes("SELECT bytes FROM {s}transactions WHERE height = 1 AND idx = 0");
    let mut tx = Transaction::from_bytes(&bytes).expect("decode");
    assert!(!tx.is_pruned());
    tx.prune();
    admin.exec(
        "UPDATE {s}transactions SET bytes = :blob WHERE height = 1 AND idx = 0",
        Some(&tx.to_bytes()),
    );
    if flag {
        admin.exec(
            "UPDATE {s}transactions SET pruned = TRUE WHERE height = 1 AND idx = 0",
            None,
        );
        let c = corruption(admin.reopen(network_key(&mut sc.s.net)));
        assert_eq!(
            c,
            Corruption::RowCount {
                table: "transactions (pruned)",
                committed: 0,
                found: 1
            }
        );
    } else {
        let ledger = admin.reopen(network_key(&mut sc.s.net)).expect("open");
        let c = corruption(ledger.get_record(&sc.record_a.record_id()));
        assert!(matches!(c, Corruption::UnexplainedPruning { .. }), "{c}");
        let err = ledger.verify(|_| {}).unwrap_err();
        assert!(err.to_string().contains("no erasure explains"), "{err}");
    }
}

/// Records of `s.patient` indexed under one keyword: blocks 1 (three records) and 2 (two), a
/// search, the same search without a filter cache and with a cache that holds one block's
/// filter, block 3 (one more record) appended after the cache is filled and found, the first
/// record erased in block 4 and left out. Returns the six records in ledger order.
pub fn search_across_blocks_and_appends<S: PersistentStore>(
    ledger: &mut Ledger<S>,
    s: &mut Story,
) -> Vec<SealedRecord> {
    use medchain_core::access::record_class;
    use medchain_core::index::{IndexKey, Keyword, Query};
    use medchain_core::seal::seal_record;
    use medchain_core::tx::TxBody;
    let index = IndexKey::for_patient(&s.patient);
    let kw: Keyword = "type:Observation".parse().expect("keyword");
    let mut records = Vec::new();
    let block =
        |ledger: &mut Ledger<S>, s: &mut Story, records: &mut Vec<SealedRecord>, n: usize| {
            let mut txs = Vec::new();
            for i in 0..n {
                let payload = observation(&format!("search {i}"));
                let holder = s.net.nodes[4].public();
                let sealed = seal_record(&payload, &s.patient.public(), &[holder], &mut s.net.rng)
                    .expect("seal");
                let class = record_class(
                    &payload,
                    &medchain_core::consent::ConsentTagKey::for_patient(&s.patient),
                    &mut s.net.rng,
                )
                .expect("class");
                let body = TxBody::record_added(sealed.clone(), class);
                txs.push(
                    s.net
                        .indexed_tx(4, &body, sealed.record_id(), index.trapdoors([&kw])),
                );
                records.push(sealed);
            }
            commit(ledger, &mut s.net, txs);
        };
    block(ledger, s, &mut records, 3);
    block(ledger, s, &mut records, 2);
    let query = Query::keyword(index.trapdoor(&kw));
    let ids = |found: &medchain_store::LedgerSearch| -> Vec<_> {
        found.hits.iter().map(|h| (h.height, h.record_id)).collect()
    };
    let want = |records: &[SealedRecord], skip: usize| -> Vec<_> {
        records
            .iter()
            .enumerate()
            .skip(skip)
            .map(|(i, r)| {
                (
                    if i < 3 {
                        1
                    } else if i < 5 {
                        2
                    } else {
                        3
                    },
                    r.record_id(),
                )
            })
            .collect()
    };
    // Warmed before any search, as a node does when it starts: both blocks' filters are read
    // then, and again nothing (no block appended since).
    let warm = ledger.warm_search_cache().expect("warm");
    assert!(warm > 0);
    assert_eq!(ledger.warm_search_cache().expect("warm again"), warm);
    let found = ledger.search_report(&query, 1).expect("search");
    assert_eq!(ids(&found), want(&records, 0));
    assert_eq!(found.indexed_blocks, 2);
    assert_eq!(found.candidates_read, 5);
    // The warm cache gives the same answer as no cache and a partial one.
    for limit in [0, 1] {
        ledger.set_filter_cache_limit(limit).expect("limit");
        let held = ledger.warm_search_cache().expect("warm");
        assert!(if limit == 0 {
            held == 0
        } else {
            held > 0 && held < warm
        });
        let again = ledger.search_report(&query, 1).expect("search");
        assert_eq!(ids(&again), want(&records, 0), "cache limit {limit}");
        assert_eq!(again.candidates_read, 5);
    }
    ledger
        .set_filter_cache_limit(medchain_store::DEFAULT_FILTER_CACHE_BYTES)
        .expect("limit");
    assert_eq!(
        ids(&ledger.search_report(&query, 1).expect("search")),
        want(&records, 0)
    );
    // A block appended after the cache is filled is searched too, and warming reads its filter.
    block(ledger, s, &mut records, 1);
    assert!(ledger.warm_search_cache().expect("warm") > warm);
    let found = ledger.search_report(&query, 1).expect("search");
    assert_eq!(ids(&found), want(&records, 0));
    assert_eq!(found.indexed_blocks, 3);
    let from3 = ledger.search_report(&query, 3).expect("search");
    assert_eq!(ids(&from3), want(&records, 5));
    // An erased record is left out, counted.
    let erase = erase_tx(&mut s.net, &s.patient, &records[0]);
    commit(ledger, &mut s.net, vec![erase]);
    let found = ledger.search_report(&query, 1).expect("search");
    assert_eq!(ids(&found), want(&records, 1));
    assert_eq!(found.erased_skipped, 1);
    ledger.verify(|_| {}).expect("verifies");
    records
}

/// After [`search_across_blocks_and_appends`]: the erasure row of its first record moved
/// under the lookup tag of a record that is not erased. The row no longer opens under its
/// identity, so the search that meets it is refused as corrupt: it neither drops the other
/// record nor returns the erased one.
pub fn move_an_erasure_to_another_record<A: Admin>(
    admin: &mut A,
    key: NetworkKey,
    patient: &Identity,
) {
    use medchain_core::index::{IndexKey, Keyword, Query};
    admin.exec(
        "UPDATE {s}erasures SET rkey = (SELECT r.rkey FROM {s}records r \
         WHERE r.rkey NOT IN (SELECT rkey FROM {s}erasures) ORDER BY r.seq LIMIT 1)",
        None,
    );
    let ledger = admin
        .reopen(key)
        .expect("the row counts still match: open succeeds");
    let kw: Keyword = "type:Observation".parse().expect("keyword");
    let query = Query::keyword(IndexKey::for_patient(patient).trapdoor(&kw));
    let c = corruption(ledger.search_report(&query, 1));
    assert_eq!(c, Corruption::Row { table: "erasures" });
}
