//! A host stops and reopens its ledger: the node resumes from the stored chain and the
//! validator's saved safety state, and keeps committing.

use std::time::{SystemTime, UNIX_EPOCH};

use getrandom::SysRng;
use medchain::{genesis_of, Host, HostError, RecordDraft};
use medchain_core::index::SealedWriterKey;
use medchain_core::keys::Identity;
use medchain_core::seal::NetworkKey;
use rand_core::UnwrapErr;

const HBA1C: &[u8] =
    br#"{"resourceType":"Observation","status":"final","subject":{"reference":"Patient/alice"},
 "effectiveDateTime":"2026-10-14T09:30:00Z",
 "code":{"coding":[{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}]},
 "valueQuantity":{"value":7.9,"unit":"%"}}"#;

/// At most this many deadlines are fired while waiting for a commit.
const MAX_TIMEOUTS: usize = 200;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A one-validator network commits on its own: fire its deadlines (its messages have no one
/// to go to) until `done`, and return the virtual time reached.
fn run_alone(host: &mut Host, mut t: u64, done: impl Fn(&Host) -> bool) -> u64 {
    for _ in 0..MAX_TIMEOUTS {
        if done(host) {
            return t;
        }
        while host.poll_transmit().is_some() {}
        let Some(next) = host.poll_timeout() else {
            break;
        };
        t = t.max(next);
        host.handle_timeout(t).expect("timeout");
    }
    assert!(
        done(host),
        "the host did not get there in {MAX_TIMEOUTS} deadlines"
    );
    t
}

#[test]
fn a_host_reopens_its_ledger_and_resumes_committing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("st-marys.sqlite");
    let mut rng = UnwrapErr(SysRng);
    let identity = Identity::generate(&mut rng);
    let kept = identity.duplicate();
    let network = NetworkKey::generate(&mut rng);
    let start = now();
    let genesis = genesis_of("solo", &[("St. Mary's", &identity)], &network, start).unwrap();
    let mut host = Host::create(&path, &genesis, identity, network.duplicate(), start).unwrap();
    let alice = Identity::generate(&mut rng);
    let enrolment =
        SealedWriterKey::export(&alice, &genesis.chain_id(), &host.public(), &mut rng).unwrap();
    let first = host
        .add_record(
            RecordDraft {
                fhir: HBA1C,
                enrolment: &enrolment,
                readers: &[],
            },
            start,
        )
        .unwrap();
    let t = run_alone(&mut host, start, |h| h.is_committed(&first.tx_id));
    let height = host.ledger().height();
    let saved = host
        .ledger()
        .durable_state()
        .unwrap()
        .expect("a validator that voted saved its state");
    let safety = saved.safety.clone();
    assert!(safety.highest_voted_round > 0);
    // The block that certifies the record's (its child) is certified but not committed: only
    // this node holds it, so it is saved too.
    assert!(!saved.pending.is_empty());
    drop(host);

    // The identity must be the member's; the ledger is left as it was.
    let stranger = Identity::generate(&mut rng);
    assert!(matches!(
        Host::open(&path, stranger, network.duplicate(), t),
        Err(HostError::Node(_))
    ));
    // Another network key does not open the ledger.
    assert!(matches!(
        Host::open(&path, kept.duplicate(), NetworkKey::generate(&mut rng), t),
        Err(HostError::Ledger(_))
    ));

    let mut host = Host::open(&path, kept, network, t).unwrap();
    assert_eq!(host.ledger().height(), height);
    assert!(host.is_committed(&first.tx_id));
    assert_eq!(host.records_of(&alice.verify_key()).unwrap().len(), 1);
    assert_eq!(host.ledger().durable_state().unwrap(), Some(saved));

    let second = host
        .add_record(
            RecordDraft {
                fhir: HBA1C,
                enrolment: &enrolment,
                readers: &[],
            },
            t,
        )
        .unwrap();
    run_alone(&mut host, t, |h| h.is_committed(&second.tx_id));
    assert!(host.ledger().height() > height);
    assert_eq!(host.records_of(&alice.verify_key()).unwrap().len(), 2);
    let after = host.ledger().durable_state().unwrap().expect("saved");
    assert!(
        after.safety.highest_voted_round > safety.highest_voted_round,
        "the resumed validator votes only in rounds after the ones it voted in"
    );
    let summary = host.ledger().verify(|_| {}).expect("the chain verifies");
    assert!(summary.head_proven);
    assert_eq!(summary.transactions, 2);
}

#[test]
fn a_forged_pending_block_in_the_saved_state_is_dropped_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("st-marys.sqlite");
    let mut rng = UnwrapErr(SysRng);
    let identity = Identity::generate(&mut rng);
    let kept = identity.duplicate();
    let network = NetworkKey::generate(&mut rng);
    let start = now();
    let genesis = genesis_of("solo", &[("St. Mary's", &identity)], &network, start).unwrap();
    let mut host = Host::create(&path, &genesis, identity, network.duplicate(), start).unwrap();
    let alice = Identity::generate(&mut rng);
    let enrolment =
        SealedWriterKey::export(&alice, &genesis.chain_id(), &host.public(), &mut rng).unwrap();
    let receipt = host
        .add_record(
            RecordDraft {
                fhir: HBA1C,
                enrolment: &enrolment,
                readers: &[],
            },
            start,
        )
        .unwrap();
    let t = run_alone(&mut host, start, |h| h.is_committed(&receipt.tx_id));
    let height = host.ledger().height();
    drop(host);

    // Someone with write access to the store alters the saved pending block (its timestamp:
    // the miner's signature no longer covers the header).
    let mut ledger = medchain_store::Ledger::open_sqlite(&path, network.duplicate()).unwrap();
    let mut state = ledger.durable_state().unwrap().expect("saved");
    let Some(forged) = state.pending.first_mut() else {
        panic!("the certified child is saved");
    };
    forged.header.timestamp_ms += 1;
    ledger.save_durable_state(&state).unwrap();
    drop(ledger);

    let mut host = Host::open(&path, kept, network, t).unwrap();
    let mut dropped = false;
    while let Some(e) = host.poll_event() {
        dropped |= matches!(e, medchain::Event::Dropped { .. });
    }
    assert!(dropped, "the forged block is dropped, and said so");
    assert_eq!(
        host.ledger().height(),
        height,
        "nothing was committed from it"
    );
    assert!(host.ledger().verify(|_| {}).is_ok());
}
