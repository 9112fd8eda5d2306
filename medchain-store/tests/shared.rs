//! What a reader received: `Ledger::records_shared_with` and `Ledger::open_for`, the attacks
//! on them (another reader's release, another reader's envelope, an erased record), and a
//! release that stands after its consent is revoked.

mod common;

use common::attacks::scene;
use common::*;
use medchain_core::access::{release_key, KeyRelease, ReleaseRequest};
use medchain_core::consent::Purpose;
use medchain_core::keys::{Identity, PublicIdentity};
use medchain_core::seal::SealedRecord;
use medchain_core::tx::{TxBody, TxError};
use medchain_store::{Ledger, LedgerError, OpenError, SqliteStore};

fn ledger(s: &mut Story, dir: &tempfile::TempDir) -> Ledger<SqliteStore> {
    let key = network_key(&mut s.net);
    Ledger::create_sqlite(dir.path().join("l.db"), &s.net.genesis, key).expect("create")
}

/// Releases `sealed`'s key to `grantee` (node 4 holds the record), judged as validators judge.
fn release(
    ledger: &Ledger<SqliteStore>,
    s: &mut Story,
    sealed: &SealedRecord,
    grantee: PublicIdentity,
) -> KeyRelease {
    release_key(
        &s.net.nodes[4],
        sealed,
        ReleaseRequest {
            grantee,
            credential: None,
            purpose: Purpose::Treat,
        },
        ledger.view(),
        s.net.now_ms,
        &mut s.net.rng,
    )
    .expect("release")
}

fn commit_release(ledger: &mut Ledger<SqliteStore>, s: &mut Story, r: &KeyRelease) {
    let ks = s.net.tx(4, &r.key_shared, vec![]);
    let log = s.net.tx(4, &r.access_logged, vec![]);
    commit(ledger, &mut s.net, vec![ks, log]);
}

fn not_opened<T>(r: Result<T, LedgerError>) -> OpenError {
    match r {
        Err(LedgerError::Open(e)) => e,
        Err(other) => panic!("expected an open error, got {other}"),
        Ok(_) => panic!("the record opened"),
    }
}

#[test]
fn a_released_record_is_listed_and_opens_for_its_reader_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = story(41);
    let mut ledger = ledger(&mut s, &dir);
    let sealed = small_chain(&mut ledger, &mut s, "for the doctor");
    let id = sealed.record_id();

    let shared = ledger.records_shared_with(&s.doctor.public()).unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].record.record_id, id);
    assert_eq!(shared[0].purpose, "TREAT");
    // Under the patient's (on-chain, blinded) consent.
    let consents = ledger.consents_of(&s.patient.verify_key()).unwrap();
    assert!(consents.iter().any(|c| Some(c.id) == shared[0].consent_id));
    assert_eq!(shared[0].consent_revoked_at, None);
    assert_eq!(shared[0].released_at_height, 2);

    let opened = ledger
        .open_for(&s.doctor, &id)
        .expect("the doctor opens it");
    assert_eq!(opened.payload(), observation("for the doctor").as_slice());
    // What the doctor fetches to open it on their own device: the sealed record and their
    // envelope, which open it without the ledger.
    let (fetched, envelope) = ledger
        .released_to(&s.doctor.public(), &id)
        .expect("released to the doctor");
    assert_eq!(fetched.record_id(), id);
    let opened = fetched
        .open_with(&s.doctor, std::slice::from_ref(&envelope))
        .expect("the envelope opens it");
    assert_eq!(opened.payload(), observation("for the doctor").as_slice());

    // Nobody else received it: not the patient (who holds an envelope from the start, not a
    // release), not the hospital that released it, not a stranger.
    let stranger = Identity::generate(&mut s.net.rng);
    for other in [&s.patient, &s.net.nodes[4], &stranger] {
        assert!(ledger
            .records_shared_with(&other.public())
            .unwrap()
            .is_empty());
    }
    assert_eq!(
        not_opened(ledger.open_for(&stranger, &id)),
        OpenError::NotShared
    );
    assert_eq!(
        not_opened(ledger.released_to(&stranger.public(), &id)),
        OpenError::NotShared
    );
    let unknown = medchain_core::hash::RecordId::from_byte_array([9; 32]);
    assert_eq!(
        not_opened(ledger.open_for(&s.doctor, &unknown)),
        OpenError::UnknownRecord
    );

    // Released twice: listed once, under the latest release.
    let doctor = s.doctor.public();
    let again = release(&ledger, &mut s, &sealed, doctor);
    commit_release(&mut ledger, &mut s, &again);
    let shared = ledger.records_shared_with(&s.doctor.public()).unwrap();
    assert_eq!(shared.len(), 1);
    assert_eq!(shared[0].released_at_height, ledger.height());
    assert!(ledger.open_for(&s.doctor, &id).is_ok());
}

/// Another reader's envelope: a hospital (malicious or buggy) that puts the doctor's envelope in
/// a release to a stranger makes a body every validator refuses (an envelope names its
/// recipient), so it never commits; and the stranger, who holds a consent but no release of its
/// own, neither finds the doctor's release nor opens the record with it.
#[test]
fn another_readers_release_or_envelope_does_not_open_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = story(42);
    let mut ledger = ledger(&mut s, &dir);
    let (sealed, rec) = record_tx(&mut s.net, &s.patient, &observation("x"));
    let stranger = Identity::generate(&mut s.net.rng);
    let chain = s.net.genesis.chain_id();
    let mut txs = vec![rec];
    for reader in [&s.doctor, &stranger] {
        let grant = consent_for(&s.patient, reader, s.net.now_ms)
            .grant_body(&s.patient, &chain)
            .unwrap();
        txs.push(s.net.tx(5, &grant, vec![]));
    }
    commit(&mut ledger, &mut s.net, txs);
    let doctor = s.doctor.public();
    let for_doctor = release(&ledger, &mut s, &sealed, doctor);
    let mut forged = release(&ledger, &mut s, &sealed, stranger.public());
    let TxBody::KeyShared {
        envelope: doctors, ..
    } = &for_doctor.key_shared
    else {
        panic!("a release is a KeyShared");
    };
    let TxBody::KeyShared { envelope, .. } = &mut forged.key_shared else {
        panic!("a release is a KeyShared");
    };
    envelope.clone_from(doctors);
    assert!(matches!(
        forged.key_shared.check(&chain),
        Err(TxError::InvalidBody(_))
    ));
    commit_release(&mut ledger, &mut s, &for_doctor);

    assert!(ledger
        .records_shared_with(&stranger.public())
        .unwrap()
        .is_empty());
    assert_eq!(
        not_opened(ledger.open_for(&stranger, &sealed.record_id())),
        OpenError::NotShared
    );
    assert!(ledger.open_for(&s.doctor, &sealed.record_id()).is_ok());
}

/// An erased record is neither listed nor opened, though its key was released.
#[test]
fn an_erased_record_is_not_listed_and_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = story(43);
    let mut ledger = ledger(&mut s, &dir);
    let sealed = small_chain(&mut ledger, &mut s, "to be erased");
    assert!(ledger.open_for(&s.doctor, &sealed.record_id()).is_ok());
    let erase = erase_tx(&mut s.net, &s.patient, &sealed);
    commit(&mut ledger, &mut s.net, vec![erase]);
    assert!(ledger
        .records_shared_with(&s.doctor.public())
        .unwrap()
        .is_empty());
    assert_eq!(
        not_opened(ledger.open_for(&s.doctor, &sealed.record_id())),
        OpenError::Erased
    );
}

/// Decided (see `docs/consent.md`): a revocation stops further releases and does not recall a
/// delivered key. A record released before its consent was revoked stays listed, with the
/// height of the revocation, and still opens; a new release under the revoked consent is
/// refused.
#[test]
fn a_release_before_a_revocation_stays_listed_with_the_revocation() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = story(44);
    let mut ledger = ledger(&mut s, &dir);
    let mut sc = scene(&mut ledger, 44);
    let doctor = sc.s.doctor.public();
    let listed = ledger.records_shared_with(&doctor).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].record.record_id, sc.record_a.record_id());
    assert_eq!(listed[0].released_at_height, 3);
    assert_eq!(listed[0].consent_revoked_at, Some(4));
    assert_eq!(listed[0].consent_id, Some(sc.consent_a.id()));
    let opened = ledger
        .open_for(&sc.s.doctor, &sc.record_a.record_id())
        .expect("a delivered key is not recalled");
    assert_eq!(opened.payload(), observation("a").as_slice());
    // No further release under the revoked consent.
    let again = release_key(
        &sc.s.net.nodes[4],
        &sc.record_a,
        ReleaseRequest {
            grantee: doctor,
            credential: None,
            purpose: Purpose::Treat,
        },
        ledger.view(),
        sc.s.net.now_ms,
        &mut sc.s.net.rng,
    );
    assert!(again.is_err());
}
