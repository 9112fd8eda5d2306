//! Helpers shared by the store tests.
#![allow(dead_code, missing_docs)]

pub mod attacks;
mod pg_env;
pub mod research;

#[allow(unused_imports)] // only the PostgreSQL test binaries call it
pub use pg_env::pg_url;

use medchain_core::access::{record_class, release_key, ReleaseRequest};
use medchain_core::consent::{Action, Actor, Consent, Period, Provision, Purpose};
use medchain_core::hash::domain;
use medchain_core::keys::Identity;
use medchain_core::seal::{seal_record, NetworkKey, SealedRecord};
use medchain_core::testkit::TestNet;
use medchain_core::tx::{PatientSignature, Transaction, TxBody};
use medchain_store::{Ledger, PersistentStore};

/// A second handle on the test network's key (it is not `Clone`): wrap it to a node and
/// unwrap it again.
pub fn network_key(net: &mut TestNet) -> NetworkKey {
    let node = &net.nodes[0];
    let env = net
        .network
        .wrap_for(&node.public(), &mut net.rng)
        .expect("wrap");
    NetworkKey::unwrap_from(&env, node).expect("unwrap")
}

pub fn observation(note: &str) -> Vec<u8> {
    format!(
        r#"{{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","subject":{{"display":"Jane Quixote-Marlowe"}},"code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}}]}},"valueQuantity":{{"value":6.1,"unit":"%"}},"note":[{{"text":"{note}"}}]}}"#
    )
    .into_bytes()
}

pub struct Story {
    pub net: TestNet,
    pub patient: Identity,
    pub doctor: Identity,
}

pub fn story(seed: u64) -> Story {
    let mut net = TestNet::new(seed, 4, 2);
    let patient = Identity::generate(&mut net.rng);
    let doctor = Identity::generate(&mut net.rng);
    Story {
        net,
        patient,
        doctor,
    }
}

pub fn record_tx(
    net: &mut TestNet,
    patient: &Identity,
    payload: &[u8],
) -> (SealedRecord, Transaction) {
    let holder = net.nodes[4].public();
    let sealed = seal_record(payload, &patient.public(), &[holder], &mut net.rng).expect("seal");
    let class = record_class(
        payload,
        &medchain_core::consent::ConsentTagKey::for_patient(patient),
        &mut net.rng,
    )
    .expect("class");
    let tx = net.tx(4, &TxBody::record_added(sealed.clone(), class), vec![]);
    (sealed, tx)
}

/// A consent as it goes on chain: no code and no summary, so the patient's copy is the blinded one
/// and its id is the on-chain id (`Consent::granted_id`).
pub fn consent_for(patient: &Identity, doctor: &Identity, now_ms: u64) -> Consent {
    Consent {
        patient: patient.public(),
        issued_ms: now_ms,
        summary: String::new(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::Party(doctor.verify_key()))
            .action(Action::Read)
            .purpose(Purpose::Treat)],
    }
}

/// Appends a block of `txs` built over the ledger's state.
pub fn commit<S: PersistentStore>(
    ledger: &mut Ledger<S>,
    net: &mut TestNet,
    txs: Vec<Transaction>,
) -> u64 {
    let (b, _e, p) = net.next_block(ledger.store(), txs).expect("next block");
    ledger
        .append_committed(b.into_block(), &p)
        .expect("append")
        .header()
        .height
}

/// A small chain through the Ledger: a record, a consent, a key release with its access log,
/// and an empty block. Returns the record.
pub fn small_chain<S: PersistentStore>(
    ledger: &mut Ledger<S>,
    s: &mut Story,
    note: &str,
) -> SealedRecord {
    let (sealed, rec) = record_tx(&mut s.net, &s.patient, &observation(note));
    let consent = consent_for(&s.patient, &s.doctor, s.net.now_ms);
    let grant = s.net.tx(
        5,
        &consent
            .grant_body(&s.patient, &s.net.genesis.chain_id())
            .expect("grant"),
        vec![],
    );
    commit(ledger, &mut s.net, vec![rec, grant]);
    let release = release_key(
        &s.net.nodes[4],
        &sealed,
        ReleaseRequest {
            grantee: s.doctor.public(),
            credential: None,
            purpose: Purpose::Treat,
        },
        ledger.view(),
        s.net.now_ms,
        &mut s.net.rng,
    )
    .expect("release");
    let ks = s.net.tx(4, &release.key_shared, vec![]);
    let log = s.net.tx(4, &release.access_logged, vec![]);
    commit(ledger, &mut s.net, vec![ks, log]);
    commit(ledger, &mut s.net, vec![]);
    sealed
}

pub fn erase_tx(net: &mut TestNet, patient: &Identity, sealed: &SealedRecord) -> Transaction {
    let body = TxBody::RecordErased {
        record_id: sealed.record_id(),
        patient: PatientSignature::sign(
            patient,
            &net.genesis.chain_id(),
            domain::ERASURE_SIG,
            sealed.record_id().as_byte_array(),
        ),
    };
    net.tx(4, &body, vec![])
}

/// A schema name no other test uses.
pub fn unique_schema(prefix: &str) -> String {
    use rand_core::Rng;
    format!(
        "{prefix}_{}_{:08x}",
        std::process::id(),
        rand_core::UnwrapErr(getrandom::SysRng).next_u32()
    )
}

/// Markers that must never appear in clear in a store.
pub const MARKERS: &[&str] = &[
    "MARKER-7f3a9c",
    "Jane Quixote-Marlowe",
    "4548-4",
    "Hemoglobin A1c",
    "Observation",
    "loinc.org",
    "Dr. may read",
];

/// Panics if any marker occurs in `bytes`, as text or as lowercase hex.
pub fn assert_no_markers(what: &str, bytes: &[u8]) {
    for m in MARKERS {
        let hex = hex_lower(m.as_bytes());
        for (form, needle) in [("text", m.as_bytes().to_vec()), ("hex", hex.into_bytes())] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_slice()),
                "{what}: the marker {m:?} appears in clear ({form})"
            );
        }
    }
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The conformance test of a node's read-only connection to a store (`SqliteReader`,
/// `PostgresReader`, each through [`PersistentStore::committed_reader`]): on a ledger just
/// created for `s`'s genesis, the reader sees every append the store's own connection makes,
/// and answers what a node asks of its committed chain exactly as the store does; another
/// network key does not open it.
pub fn reader_conformance<S: PersistentStore>(ledger: &mut Ledger<S>, s: &mut Story) {
    use getrandom::SysRng;
    use medchain_core::hash::TxId;
    use medchain_core::ledger::StateView;
    use medchain_core::store::LedgerStore;
    use medchain_store::StoreError;
    use rand_core::UnwrapErr;

    assert_eq!(ledger.height(), 0, "a fresh ledger");
    let reader = ledger
        .store()
        .committed_reader(&network_key(&mut s.net))
        .expect("reader");
    assert_eq!(StateView::height(&*reader), 0);
    assert!(reader.head().expect("head").is_none());
    assert!(reader.block(1).expect("block").is_none());

    let sealed = small_chain(ledger, s, "hello");
    assert_eq!(
        StateView::height(&*reader),
        3,
        "the reader sees the appends"
    );
    let store = ledger.store();
    for h in 1..=3 {
        let block = LedgerStore::block(store, h)
            .expect("block")
            .expect("stored");
        assert_eq!(reader.height_of(&block.hash()).expect("height"), Some(h));
        for tx in &block.transactions {
            assert!(reader.contains_tx(&tx.id()).expect("read"));
        }
        assert_eq!(reader.block(h).expect("block"), Some(block));
    }
    assert!(reader.block(4).expect("block").is_none());
    assert!(reader
        .height_of(&medchain_core::hash::BlockHash::from_byte_array([9; 32]))
        .expect("read")
        .is_none());
    assert!(!reader
        .contains_tx(&TxId::from_byte_array([7; 32]))
        .expect("read"));
    assert_eq!(
        reader.head().expect("head"),
        LedgerStore::head(store).expect("head")
    );
    assert_eq!(
        reader.record(&sealed.record_id()).expect("record"),
        store.record(&sealed.record_id()).expect("record")
    );
    assert!(reader
        .record(&sealed.record_id())
        .expect("record")
        .is_some());
    let patient = s.patient.verify_key();
    let consents = reader.consents_of(&patient).expect("consents");
    assert_eq!(consents.len(), 1);
    assert_eq!(consents, store.consents_of(&patient).expect("consents"));
    assert_eq!(
        reader.consent(&consents[0].id).expect("consent"),
        Some(consents[0].clone())
    );

    // An erasure: the reader sees the tombstone, as the store does.
    let erase = erase_tx(&mut s.net, &s.patient, &sealed);
    commit(ledger, &mut s.net, vec![erase]);
    assert_eq!(StateView::height(&*reader), 4);
    let store = ledger.store();
    let entry = reader.record(&sealed.record_id()).expect("record");
    assert!(entry.as_ref().is_some_and(|e| e.erased));
    assert_eq!(entry, store.record(&sealed.record_id()).expect("record"));

    // Another network key does not open the state key.
    let other = NetworkKey::generate(&mut UnwrapErr(SysRng));
    assert!(matches!(
        store.committed_reader(&other),
        Err(StoreError::WrongKey)
    ));
}
