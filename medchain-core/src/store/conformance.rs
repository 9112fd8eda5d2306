//! The store conformance suite: every [`LedgerStore`] backend must pass it.
//!
//! Call [`run_all`] with a function that makes a fresh, empty store (a new SQLite file, a new
//! PostgreSQL schema, ...). Each check panics with a message naming what failed.

use super::LedgerStore;
use crate::access::record_class;
use crate::chain::verify_chain;
use crate::consent::{Action, Actor, Consent, ConsentTagKey, Period, Provision, Purpose};
use crate::encoding::Encode;
use crate::index::{search, BlockIndex, IndexEntry, IndexKey, Keyword, Query};
use crate::keys::Identity;
use crate::ledger::{AuditKind, StateView};
use crate::seal::seal_record;
use crate::testkit::TestNet;
use crate::tx::{PatientSignature, TxBody};

const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"unit":"%"}}"#;

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: LedgerStore>(mut make: impl FnMut() -> S) {
    init_and_genesis(make());
    append_read_back_and_state(make());
    out_of_order_changes_nothing(make());
    erasure_prunes_and_chain_still_verifies(make());
    index_rows_read_back(make());
    effects_of_another_block_are_refused(make());
    a_commit_step_of_several_blocks_is_one_write(make());
}

fn unwrap<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A fresh store has no genesis or head; `init` is idempotent for the same genesis and refuses
/// another.
pub fn init_and_genesis<S: LedgerStore>(mut store: S) {
    let net = TestNet::new(1, 4, 1);
    assert!(
        unwrap(store.genesis(), "genesis").is_none(),
        "fresh store has a genesis"
    );
    assert!(
        unwrap(store.head(), "head").is_none(),
        "fresh store has a head"
    );
    unwrap(store.init(&net.genesis), "init");
    unwrap(store.init(&net.genesis), "init again with the same genesis");
    let got = unwrap(store.genesis(), "genesis").unwrap_or_else(|| panic!("genesis not stored"));
    assert_eq!(got.hash(), net.genesis.hash(), "stored genesis differs");
    let other = TestNet::new(2, 4, 1);
    assert!(
        store.init(&other.genesis).is_err(),
        "init with another genesis must fail"
    );
    assert_eq!(store.height(), 0);
}

struct Story {
    net: TestNet,
    patient: Identity,
    doctor: Identity,
}

fn story() -> Story {
    let mut net = TestNet::new(7, 4, 2);
    let patient = Identity::generate(&mut net.rng);
    let doctor = Identity::generate(&mut net.rng);
    Story {
        net,
        patient,
        doctor,
    }
}

/// Blocks, transactions, records, consents and the audit trail read back as written, and the
/// store's state answers as the in-memory reference does.
pub fn append_read_back_and_state<S: LedgerStore>(mut store: S) {
    let Story {
        mut net,
        patient,
        doctor,
    } = story();
    unwrap(store.init(&net.genesis), "init");
    let sealed = unwrap(
        seal_record(
            OBS,
            &patient.public(),
            &[net.nodes[4].public()],
            &mut net.rng,
        ),
        "seal",
    );
    let trapdoors = IndexKey::for_patient(&patient)
        .trapdoors([&unwrap("type:Observation".parse::<Keyword>(), "keyword")]);
    let entry = unwrap(
        IndexEntry::build(&sealed.record_id(), &trapdoors, &mut net.rng),
        "index entry",
    );
    let class = unwrap(
        record_class(OBS, &ConsentTagKey::for_patient(&patient), &mut net.rng),
        "class",
    );
    let rec = net.tx(
        4,
        &TxBody::record_added(sealed.clone(), class),
        entry.to_bytes(),
    );
    let consent = Consent {
        patient: patient.public(),
        issued_ms: net.now_ms,
        summary: "Dr. may read".into(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::Party(doctor.verify_key()))
            .action(Action::Read)
            .purpose(Purpose::Treat)],
    };
    let grant = net.tx(
        5,
        &unwrap(
            consent.grant_body(&patient, &net.genesis.chain_id()),
            "grant",
        ),
        vec![],
    );
    let (b1, e1, p1) = unwrap(net.next_block(&store, vec![rec.clone(), grant]), "block 1");
    unwrap(store.append(&b1, &e1, Some(&p1)), "append block 1");

    let release = unwrap(
        crate::access::release_key(
            &net.nodes[4],
            &sealed,
            crate::access::ReleaseRequest {
                grantee: doctor.public(),
                credential: None,
                purpose: Purpose::Treat,
            },
            crate::access::LedgerView {
                state: &store,
                genesis: &net.genesis,
                network: &net.network,
            },
            net.now_ms,
            &mut net.rng,
        ),
        "release",
    );
    let ks = net.tx(4, &release.key_shared, vec![]);
    let log = net.tx(4, &release.access_logged, vec![]);
    let (b2, e2, p2) = unwrap(net.next_block(&store, vec![ks.clone(), log]), "block 2");
    unwrap(store.append(&b2, &e2, Some(&p2)), "append block 2");
    let (b3, e3, p3) = unwrap(net.next_block(&store, vec![]), "block 3 (empty)");
    unwrap(store.append(&b3, &e3, Some(&p3)), "append block 3");

    // Blocks and head.
    assert_eq!(store.height(), 3, "height");
    for (h, b) in [(1u64, &b1), (2, &b2), (3, &b3)] {
        let got = unwrap(store.block(h), "block").unwrap_or_else(|| panic!("block {h} missing"));
        assert_eq!(&got, b.block(), "block {h} reads back differently");
    }
    assert!(
        unwrap(store.block(4), "block 4").is_none(),
        "block past the head"
    );
    assert!(
        unwrap(store.block(0), "block 0").is_none(),
        "block 0 is genesis, not stored as a block"
    );
    let head = unwrap(store.head(), "head").unwrap_or_else(|| panic!("no head"));
    assert_eq!(head.tip, b3.tip(), "head tip");
    assert_eq!(head.proof.as_ref(), Some(&p3), "head proof");
    // Transactions.
    assert_eq!(
        unwrap(store.tx_location(&rec.id()), "tx_location"),
        Some((1, 0))
    );
    assert_eq!(
        unwrap(store.tx_location(&ks.id()), "tx_location"),
        Some((2, 0))
    );
    assert!(unwrap(store.contains_tx(&rec.id()), "contains_tx"));
    assert!(!unwrap(
        store.contains_tx(&crate::hash::TxId::from_byte_array([9; 32])),
        "contains_tx"
    ));
    // State.
    let records = unwrap(store.records_of(&patient.verify_key()), "records_of");
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].record_id, sealed.record_id());
    assert_eq!(
        unwrap(StateView::record(&store, &sealed.record_id()), "record").as_ref(),
        Some(&records[0])
    );
    let cs = unwrap(store.consents_of(&patient.verify_key()), "consents_of");
    assert_eq!(cs.len(), 1);
    // The store holds the consent as it went on chain: blinded, its id the blinded one's.
    let consent_id = consent.granted_id(&patient);
    assert_eq!(cs[0].id, consent_id);
    assert!(cs[0].consent.is_blinded());
    assert_eq!(
        unwrap(store.consent(&consent_id), "consent").map(|c| c.id),
        Some(consent_id)
    );
    let trail = unwrap(
        store.audit_of_patient(&patient.verify_key()),
        "audit_of_patient",
    );
    assert_eq!(trail.len(), 2, "key release and access");
    assert_eq!(trail[0].kind, AuditKind::KeyShared);
    assert_eq!(trail[1].kind, AuditKind::Accessed);
    assert_eq!(
        unwrap(
            store.audit_of_record(&sealed.record_id()),
            "audit_of_record"
        ),
        trail
    );
    // The whole stored chain verifies, head proof included.
    let mut reference = crate::ledger::LedgerState::new();
    let blocks = (1..=3).map(|h| {
        store
            .block(h)
            .map(|b| b.unwrap_or_else(|| panic!("block {h} missing")))
    });
    let summary = unwrap(
        verify_chain(
            &net.genesis,
            blocks,
            head.proof.as_ref(),
            &mut crate::block::NoRules,
            |_| {},
        ),
        "verify stored chain",
    );
    assert_eq!(summary.tip, head.tip);
    for b in [&b1, &b2, &b3] {
        unwrap(
            reference.apply(b, &net.genesis, &net.network),
            "reference apply",
        );
    }
    assert_eq!(reference.audit().len(), trail.len());
}

/// A block out of order is refused and leaves the store as it was.
pub fn out_of_order_changes_nothing<S: LedgerStore>(mut store: S) {
    let mut net = TestNet::new(3, 4, 0);
    unwrap(store.init(&net.genesis), "init");
    let mut shadow = crate::ledger::LedgerState::new();
    let (b1, e1, p1) = unwrap(net.next_block(&shadow, vec![]), "block 1");
    unwrap(shadow.commit(e1.clone()), "shadow");
    let (b2, e2, p2) = unwrap(net.next_block(&shadow, vec![]), "block 2");
    assert!(
        store.append(&b2, &e2, Some(&p2)).is_err(),
        "block 2 before block 1 must fail"
    );
    assert_eq!(store.height(), 0, "a failed append changed the height");
    assert!(
        unwrap(store.head(), "head").is_none(),
        "a failed append changed the head"
    );
    unwrap(store.append(&b1, &e1, Some(&p1)), "append block 1");
    assert!(
        store.append(&b1, &e1, Some(&p1)).is_err(),
        "appending block 1 twice must fail"
    );
    assert_eq!(store.height(), 1);
    unwrap(store.append(&b2, &e2, Some(&p2)), "append block 2");
    assert_eq!(store.height(), 2);
}

/// An erasure prunes the record's payloads, keeps its tombstone, and the chain still verifies.
pub fn erasure_prunes_and_chain_still_verifies<S: LedgerStore>(mut store: S) {
    let Story {
        mut net, patient, ..
    } = story();
    unwrap(store.init(&net.genesis), "init");
    let sealed = unwrap(
        seal_record(
            OBS,
            &patient.public(),
            &[net.nodes[4].public()],
            &mut net.rng,
        ),
        "seal",
    );
    let class = unwrap(
        record_class(OBS, &ConsentTagKey::for_patient(&patient), &mut net.rng),
        "class",
    );
    let rec = net.tx(4, &TxBody::record_added(sealed.clone(), class), vec![]);
    let (b1, e1, p1) = unwrap(net.next_block(&store, vec![rec.clone()]), "block 1");
    unwrap(store.append(&b1, &e1, Some(&p1)), "append block 1");
    let erase = TxBody::RecordErased {
        record_id: sealed.record_id(),
        patient: PatientSignature::sign(
            &patient,
            &net.genesis.chain_id(),
            crate::hash::domain::ERASURE_SIG,
            sealed.record_id().as_byte_array(),
        ),
    };
    let tx = net.tx(4, &erase, vec![]);
    let (b2, e2, p2) = unwrap(net.next_block(&store, vec![tx]), "block 2");
    unwrap(store.append(&b2, &e2, Some(&p2)), "append block 2");
    let stored = unwrap(store.block(1), "block 1").unwrap_or_else(|| panic!("block 1 missing"));
    assert!(
        stored.transactions[0].is_pruned(),
        "the erased record's payload is still stored"
    );
    assert_eq!(
        stored.transactions[0].id(),
        rec.id(),
        "pruning changed the transaction id"
    );
    let r = unwrap(StateView::record(&store, &sealed.record_id()), "record")
        .unwrap_or_else(|| panic!("tombstone missing"));
    assert!(r.erased, "record not marked erased");
    let head = unwrap(store.head(), "head");
    let blocks = (1..=2).map(|h| {
        store
            .block(h)
            .map(|b| b.unwrap_or_else(|| panic!("block {h} missing")))
    });
    unwrap(
        verify_chain(
            &net.genesis,
            blocks,
            head.and_then(|h| h.proof).as_ref(),
            &mut crate::block::NoRules,
            |_| {},
        ),
        "chain verifies after erasure",
    );
}

/// A block's secure index is kept beside it: one filter row per block with indexed records and,
/// per indexed record, its id and entry by position; a search over them finds the record.
pub fn index_rows_read_back<S: LedgerStore>(mut store: S) {
    let Story {
        mut net, patient, ..
    } = story();
    unwrap(store.init(&net.genesis), "init");
    let key = IndexKey::for_patient(&patient);
    let keyword = unwrap("type:Observation".parse::<Keyword>(), "keyword");
    let mut txs = Vec::new();
    let mut ids = Vec::new();
    for i in 0..3 {
        let sealed = unwrap(
            seal_record(
                OBS,
                &patient.public(),
                &[net.nodes[4].public()],
                &mut net.rng,
            ),
            "seal",
        );
        let body = TxBody::record_added(
            sealed.clone(),
            unwrap(
                record_class(OBS, &ConsentTagKey::for_patient(&patient), &mut net.rng),
                "class",
            ),
        );
        // The middle record is not indexed.
        let tx = if i == 1 {
            net.tx(4, &body, vec![])
        } else {
            ids.push(sealed.record_id());
            net.indexed_tx(4, &body, sealed.record_id(), key.trapdoors([&keyword]))
        };
        txs.push(tx);
    }
    let (b0, e0, p0) = unwrap(net.next_block(&store, vec![]), "block 1 (empty)");
    unwrap(store.append(&b0, &e0, Some(&p0)), "append block 1");
    let (b1, e1, p1) = unwrap(net.next_block(&store, txs), "block 2");
    unwrap(store.append(&b1, &e1, Some(&p1)), "append block 2");
    let expected = unwrap(super::index_rows(&b1, &e1), "index rows")
        .unwrap_or_else(|| panic!("block 2 has indexed records"));
    let rows = unwrap(store.index_filters(0, 10), "index_filters");
    assert_eq!(rows, vec![expected.filter.clone()], "filter rows");
    assert_eq!(rows[0].height, 2);
    assert_eq!(rows[0].entry_count, 2);
    assert!(rows[0].filter.is_some(), "block 2 was built with a filter");
    assert!(unwrap(store.index_filters(3, 10), "index_filters").is_empty());
    assert!(unwrap(store.index_filters(0, 0), "index_filters").is_empty());
    for (position, id) in ids.iter().enumerate() {
        let r = unwrap(store.indexed_record(2, position as u32), "indexed_record")
            .unwrap_or_else(|| panic!("indexed record {position} missing"));
        assert_eq!(&r.record_id, id, "record at position {position}");
        assert_eq!(r, expected.records[position]);
    }
    assert!(unwrap(store.indexed_record(2, 2), "indexed_record").is_none());
    assert!(unwrap(store.indexed_record(1, 0), "indexed_record").is_none());
    let records = (0..2)
        .map(|p| {
            unwrap(store.indexed_record(2, p), "indexed_record")
                .unwrap_or_else(|| panic!("record {p}"))
        })
        .collect();
    let filter = rows[0].filter.clone().unwrap_or_else(|| panic!("filter"));
    let index = unwrap(
        BlockIndex::from_parts(rows[0].context, filter, records),
        "block index",
    );
    let query = Query::keyword(key.trapdoor(&keyword));
    let found = search(&query, [&index]);
    assert_eq!(
        found.hits.iter().map(|h| h.record_id).collect::<Vec<_>>(),
        ids,
        "search over the stored index"
    );
}

/// Effects that are not those of the block are refused and change nothing.
pub fn effects_of_another_block_are_refused<S: LedgerStore>(mut store: S) {
    let Story {
        mut net, patient, ..
    } = story();
    unwrap(store.init(&net.genesis), "init");
    let sealed = unwrap(
        seal_record(
            OBS,
            &patient.public(),
            &[net.nodes[4].public()],
            &mut net.rng,
        ),
        "seal",
    );
    let class = unwrap(
        record_class(OBS, &ConsentTagKey::for_patient(&patient), &mut net.rng),
        "class",
    );
    let rec = net.tx(4, &TxBody::record_added(sealed, class), vec![]);
    let empty_state = crate::ledger::LedgerState::new();
    let (with_record, record_effects, proof) = unwrap(
        net.next_block(&empty_state, vec![rec]),
        "block with a record",
    );
    // The same network (same genesis), another block at height 1: an empty one.
    let mut twin = TestNet::new(7, 4, 2);
    let (_, empty_effects, _) = unwrap(twin.next_block(&empty_state, vec![]), "empty block");
    assert!(
        store
            .append(&with_record, &empty_effects, Some(&proof))
            .is_err(),
        "a block with the effects of another block must fail"
    );
    assert!(
        unwrap(store.head(), "head").is_none(),
        "a refused append changed the head"
    );
    assert_eq!(store.height(), 0);
    unwrap(
        store.append(&with_record, &record_effects, Some(&proof)),
        "the block with its own effects",
    );
    assert_eq!(store.height(), 1);
}

/// One commit step's blocks append in one write with the last one's proof: all of them, or —
/// when any of them is out of order or comes with another block's effects — none.
pub fn a_commit_step_of_several_blocks_is_one_write<S: LedgerStore>(mut store: S) {
    let mut net = TestNet::new(5, 4, 0);
    unwrap(store.init(&net.genesis), "init");
    let mut shadow = crate::ledger::LedgerState::new();
    let mut built = Vec::new();
    for h in 1..=3 {
        let (b, e, p) = unwrap(net.next_block(&shadow, vec![]), "block");
        unwrap(shadow.commit(e.clone()), "shadow");
        built.push((b, e, p));
        assert_eq!(built.len(), h);
    }
    let [(b1, e1, _), (b2, e2, p2), (b3, e3, p3)] = &built[..] else {
        panic!("three blocks were built");
    };
    assert!(
        store.append_chain(&[], p2).is_err(),
        "an append of no block must fail"
    );
    let refused: [&[(&crate::block::CheckedBlock, &crate::ledger::BlockEffects)]; 3] = [
        // The second block carries the first one's effects.
        &[(b1, e1), (b2, e1)],
        // A gap: block 3 after block 1.
        &[(b1, e1), (b3, e3)],
        // The same block twice.
        &[(b1, e1), (b1, e1)],
    ];
    for chain in refused {
        assert!(
            store.append_chain(chain, p2).is_err(),
            "a broken chain must be refused"
        );
        assert_eq!(store.height(), 0, "a refused chain append wrote a block");
        assert!(
            unwrap(store.head(), "head").is_none(),
            "a refused chain append changed the head"
        );
        assert!(
            unwrap(store.block(1), "block 1").is_none(),
            "a refused chain append left its first block"
        );
    }
    unwrap(
        store.append_chain(&[(b1, e1), (b2, e2)], p2),
        "blocks 1 and 2 in one step",
    );
    assert_eq!(store.height(), 2);
    let head = unwrap(store.head(), "head").unwrap_or_else(|| panic!("no head"));
    assert_eq!(head.tip, b2.tip(), "the head is the step's last block");
    assert_eq!(
        head.proof.as_ref(),
        Some(p2),
        "the head keeps the step's proof"
    );
    for (h, b) in [(1, b1), (2, b2)] {
        let stored = unwrap(store.block(h), "block").unwrap_or_else(|| panic!("block {h}"));
        assert_eq!(stored.hash(), b.hash(), "block {h} reads back");
    }
    // The next step appends on top, one block with its own proof.
    unwrap(store.append_chain(&[(b3, e3)], p3), "block 3");
    assert_eq!(store.height(), 3);
}

#[cfg(test)]
mod tests {
    #[test]
    fn memory_store_conforms() {
        super::run_all(crate::store::MemoryStore::new);
    }
}
