//! A 3-hospital network of `Host`s in memory: founding, a record, a patient's grant, a key
//! release with its access log, the audit trail; and what is refused.

mod common;

use getrandom::SysRng;
use medchain::{
    Event, Host, MemoryNetwork, NetworkRole, RecordDraft, RecordError, RecordReceipt, ReleaseError,
    RuleError, SubmitTxError,
};
use medchain_core::access::{AccessError, ReleaseRequest};
use medchain_core::consent::{Action, Actor, Consent, ConsentId, Period, Provision, Purpose};
use medchain_core::index::SealedWriterKey;
use medchain_core::keys::Identity;
use medchain_core::ledger::AuditKind;
use medchain_core::protocol::DropReason;
use medchain_core::vote::InvalidReason;
use rand_core::UnwrapErr;

use common::{add_hba1c_to, credential, enrolment_at, now, HBA1C};

const STEPS: usize = 20_000;
const DAY: u64 = 86_400_000;

fn found(dir: &tempfile::TempDir) -> MemoryNetwork {
    MemoryNetwork::found(
        dir.path(),
        &["St. Mary's", "City General", "Riverside"],
        now(),
    )
    .expect("founding")
}

fn enrol(net: &MemoryNetwork, patient: &Identity, hospital: usize) -> SealedWriterKey {
    enrolment_at(net.host(hospital), patient)
}

/// Hospital `at` adds `patient`'s HbA1c (she enrols there first); every host commits it.
fn add_hba1c(net: &mut MemoryNetwork, patient: &Identity, at: usize) -> RecordReceipt {
    let t = net.now_ms();
    let receipt = add_hba1c_to(net.host_mut(at), patient, t);
    net.pump(at);
    assert!(net.run_until_committed(&[receipt.tx_id], STEPS).unwrap());
    receipt
}

#[test]
fn a_record_is_added_granted_released_and_audited() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    assert!(net
        .hosts()
        .iter()
        .all(|h| h.role() == NetworkRole::Validator));
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let dr_ruiz = Identity::generate(&mut UnwrapErr(SysRng));

    // 1. St. Mary's adds Alice's HbA1c (she enrolled there: it holds her writer key).
    let receipt = add_hba1c(&mut net, &alice, 0);
    for h in net.hosts() {
        let records = h.records_of(&alice.verify_key()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].record_id, receipt.record_id);
        assert_eq!(h.ledger().height(), net.host(0).ledger().height());
    }

    // 2. Alice's wallet signs a consent for Dr. Ruiz; City General contributes it.
    let chain = net.host(0).genesis().chain_id();
    let consent = Consent {
        patient: alice.public(),
        issued_ms: net.now_ms(),
        summary: "Dr. Ruiz may read my results for my treatment".into(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::Party(dr_ruiz.verify_key()))
            .action(Action::Read)
            .purpose(Purpose::Treat)],
    };
    let grant = consent.grant_body(&alice, &chain).expect("grant body");
    let t = net.now_ms();
    let grant_id = net.host_mut(1).submit_patient_signed(&grant, t).unwrap();
    net.pump(1);
    assert!(net.run_until_committed(&[grant_id], STEPS).unwrap());

    // 3. St. Mary's releases the key to Dr. Ruiz; the release and its access log commit.
    let cred = credential(net.host(0), &dr_ruiz, net.now_ms());
    let t = net.now_ms();
    let released = net
        .host_mut(0)
        .release(
            &receipt.sealed,
            ReleaseRequest {
                grantee: dr_ruiz.public(),
                credential: Some(cred),
                purpose: Purpose::Treat,
            },
            t,
        )
        .expect("release");
    net.pump(0);
    assert!(net
        .run_until_committed(&[released.key_shared, released.access_logged], STEPS)
        .unwrap());

    // Dr. Ruiz finds what was released to him, on any hospital's ledger, and opens it with
    // the released key.
    for h in net.hosts() {
        let shared = h.records_shared_with(&dr_ruiz.public()).unwrap();
        assert_eq!(shared.len(), 1);
        assert_eq!(shared[0].record.record_id, receipt.record_id);
        assert_eq!(shared[0].key_shared, released.key_shared);
        let opened = h
            .open_for(&dr_ruiz, &receipt.record_id)
            .expect("the grantee opens the record");
        let obs: serde_json::Value = serde_json::from_slice(opened.payload()).unwrap();
        assert_eq!(obs["valueQuantity"]["value"], 7.9);
    }
    // Nothing was released to the patient's other contacts.
    let stranger = Identity::generate(&mut UnwrapErr(SysRng));
    assert!(net
        .host(1)
        .records_shared_with(&stranger.public())
        .unwrap()
        .is_empty());
    assert!(matches!(
        net.host(1).open_for(&stranger, &receipt.record_id),
        Err(medchain::LedgerError::Open(medchain::OpenError::NotShared))
    ));

    // 4. Every hospital's audit trail shows the release and the access.
    for h in net.hosts() {
        let trail = h.audit_trail(&alice.verify_key()).unwrap();
        assert!(trail
            .iter()
            .any(|e| e.kind == AuditKind::KeyShared && e.actor == dr_ruiz.public()));
        assert!(trail
            .iter()
            .any(|e| e.kind == AuditKind::Accessed && e.actor == dr_ruiz.public()));
        assert!(trail.iter().all(|e| e.record_id == receipt.record_id));
    }
    // What each host appended without validating twice re-derives from the chain.
    for h in net.hosts() {
        let summary = h.ledger().verify(|_| {}).expect("the ledger verifies");
        assert_eq!(summary.blocks, h.ledger().height());
    }
    // Committed events were reported for the three transactions by every host.
    let events = net.take_events();
    for id in [receipt.tx_id, grant_id, released.key_shared] {
        let hosts = events
            .iter()
            .filter(|(_, e)| matches!(e, Event::Committed { txs, .. } if txs.contains(&id)))
            .count();
        assert_eq!(hosts, 3);
    }
}

#[test]
fn a_release_without_consent_is_refused_locally_and_nothing_is_submitted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let stranger = Identity::generate(&mut UnwrapErr(SysRng));
    let receipt = add_hba1c(&mut net, &alice, 0);
    let height = net.host(0).ledger().height();
    let cred = credential(net.host(0), &stranger, net.now_ms());
    let t = net.now_ms();
    let refused = net.host_mut(0).release(
        &receipt.sealed,
        ReleaseRequest {
            grantee: stranger.public(),
            credential: Some(cred),
            purpose: Purpose::Treat,
        },
        t,
    );
    assert!(
        matches!(refused, Err(ReleaseError::Access(AccessError::Denied(_)))),
        "{refused:?}"
    );
    // Research is never served by releasing keys.
    let t = net.now_ms();
    let research = net.host_mut(0).release(
        &receipt.sealed,
        ReleaseRequest {
            grantee: stranger.public(),
            credential: None,
            purpose: Purpose::Research { topic: None },
        },
        t,
    );
    assert!(matches!(
        research,
        Err(ReleaseError::Access(
            AccessError::ResearchNeedsDeidentification
        ))
    ));
    net.pump(0);
    net.run_until_committed(&[], STEPS).unwrap();
    assert_eq!(net.host(0).ledger().height(), height);
    assert!(net
        .host(0)
        .audit_trail(&alice.verify_key())
        .unwrap()
        .is_empty());
}

#[test]
fn a_record_that_breaks_the_profile_or_the_enrolment_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let t = net.now_ms();
    // Not FHIR.
    let enrolment = enrol(&net, &alice, 0);
    let bad = net.host_mut(0).add_record(
        RecordDraft {
            fhir: br#"{"resourceType":"Observation","status":"no-such-status"}"#,
            enrolment: &enrolment,
            readers: &[],
        },
        t,
    );
    assert!(matches!(bad, Err(RecordError::Fhir(_))), "{bad:?}");
    // An enrolment sealed to another hospital does not open here.
    let elsewhere = enrol(&net, &alice, 1);
    let bad = net.host_mut(0).add_record(
        RecordDraft {
            fhir: HBA1C,
            enrolment: &elsewhere,
            readers: &[],
        },
        t,
    );
    assert!(matches!(bad, Err(RecordError::Enrolment(_))), "{bad:?}");
    // A body signed by nobody's wallet that breaks a stateless rule is refused at submission.
    let other_chain = medchain_core::hash::ChainId::from_byte_array([7; 32]);
    let consent = Consent {
        patient: alice.public(),
        issued_ms: t,
        summary: String::new(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit().purpose(Purpose::Treat)],
    };
    let foreign = consent.grant_body(&alice, &other_chain).unwrap();
    let refused = net.host_mut(0).submit_patient_signed(&foreign, t);
    assert!(
        matches!(refused, Err(SubmitTxError::Build(_))),
        "{refused:?}"
    );
}

#[test]
fn hostile_bytes_are_dropped_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    let member = net.host(1).key();
    let outsider = Identity::generate(&mut UnwrapErr(SysRng)).verify_key();
    net.inject(0, member, vec![0xff; 64]);
    net.inject(0, outsider, vec![1, 2, 3]);
    net.deliver_all(10).unwrap();
    let events = net.take_events();
    assert!(events.iter().any(|(i, e)| *i == 0
        && matches!(e, Event::Dropped { from, reason: DropReason::Malformed(_) } if *from == member)));
    assert!(events.iter().any(|(i, e)| *i == 0
        && matches!(e, Event::Dropped { from, reason: DropReason::UnknownSender } if *from == outsider)));
    assert_eq!(net.host(0).ledger().height(), 0);
}

#[test]
fn a_cluster_of_hosts_the_caller_set_up_runs_with_a_member_and_a_clock_that_only_moves_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rng = &mut UnwrapErr(SysRng);
    let start = now();
    let ids: Vec<Identity> = (0..4).map(|_| Identity::generate(rng)).collect();
    let network = medchain::NetworkKey::generate(rng);
    let named: Vec<(&str, &Identity)> = ["a", "b", "c", "d"].into_iter().zip(&ids).collect();
    let mut genesis = medchain::genesis_of("caller", &named, &network, start).unwrap();
    // The fourth member does not vote.
    for m in &mut genesis.members {
        m.validator = m.identity != ids[3].public();
    }
    let genesis = medchain_core::genesis::Genesis::new(
        "caller",
        start,
        network.fingerprint(),
        genesis.members.clone(),
        genesis.quorum,
        genesis.timing,
        genesis.max_block_txs,
    )
    .unwrap();
    let mut hosts = Vec::new();
    for (i, id) in ids.into_iter().enumerate() {
        let key =
            medchain::NetworkKey::unwrap_from(&network.wrap_for(&id.public(), rng).unwrap(), &id)
                .unwrap();
        let path = dir.path().join(format!("{i}.sqlite"));
        hosts.push(Host::create(path, &genesis, id, key, start).unwrap());
    }
    let mut net = MemoryNetwork::new(hosts, start);
    assert_eq!(net.host(3).role(), NetworkRole::Member);
    // Time passes exactly as asked, and the clock never goes back.
    net.run_for(5_000, STEPS).unwrap();
    assert_eq!(net.now_ms(), start + 5_000);
    net.advance_clock(start);
    assert_eq!(net.now_ms(), start + 5_000);
    net.advance_clock(start + 6_000);
    assert_eq!(net.now_ms(), start + 6_000);
    // The member contributes a record; every host commits it.
    let alice = Identity::generate(rng);
    let receipt = add_hba1c(&mut net, &alice, 3);
    assert!(net.hosts().iter().all(|h| {
        let records = h.records_of(&alice.verify_key()).unwrap();
        records.len() == 1 && records[0].record_id == receipt.record_id
    }));
}

/// Runs the cluster until some host reports `Event::Refused` for `id`: that host and the rule.
fn refusal_of(net: &mut MemoryNetwork, id: medchain_core::hash::TxId) -> (usize, RuleError) {
    for _ in 0..STEPS {
        let found = net.take_events().into_iter().find_map(|(i, e)| match e {
            Event::Refused { id: r, reason } if r == id => Some((i, reason)),
            _ => None,
        });
        if let Some(found) = found {
            return found;
        }
        if !net.step().unwrap() {
            break;
        }
    }
    panic!("the transaction was not refused");
}

/// An own transaction the ledger rules refuse comes back as `Event::Refused` naming the rule
/// (here: a revocation of a consent that was never granted; a transaction stamped too long
/// before the block), with the coarse wire code the validators would vote; it never commits.
#[test]
fn an_own_transaction_the_rules_refuse_is_reported_with_its_named_rule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let chain = net.host(0).genesis().chain_id();
    let never_granted: ConsentId = "ab".repeat(32).parse().expect("a consent id");
    let body = Consent::revoke_body(&alice, &chain, &never_granted);
    let t = net.now_ms();
    let id = net.host_mut(1).submit_patient_signed(&body, t).unwrap();
    net.pump(1);
    let (host, rule) = refusal_of(&mut net, id);
    assert_eq!(host, 1, "only the contributing host reports it");
    assert_eq!(rule, RuleError::UnknownConsent);
    assert_eq!(rule.name(), "unknown_consent");
    assert_eq!(rule.reason(), InvalidReason::RuleViolation);
    assert!(net.hosts().iter().all(|h| !h.is_committed(&id)));

    // A valid grant stamped a day before the block that would hold it.
    let consent = Consent {
        patient: alice.public(),
        issued_ms: net.now_ms(),
        summary: String::new(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit().purpose(Purpose::Treat)],
    };
    let grant = consent.grant_body(&alice, &chain).unwrap();
    let stale = net.now_ms() - DAY;
    let id = net
        .host_mut(2)
        .submit_patient_signed(&grant, stale)
        .unwrap();
    net.pump(2);
    let (host, rule) = refusal_of(&mut net, id);
    assert_eq!(host, 2);
    assert_eq!(rule, RuleError::StaleTimestamp);
    assert_eq!(rule.reason(), InvalidReason::BadTimestamp);
    assert!(net.hosts().iter().all(|h| !h.is_committed(&id)));
}

/// `current_round` and `mempool_len` follow the node: a submission waits in the submitter's
/// mempool until it commits, and the rounds move on with the blocks.
#[test]
fn the_round_and_the_mempool_follow_the_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = found(&dir);
    assert!(net.hosts().iter().all(|h| h.mempool_len() == 0));
    let start = net.host(0).current_round();
    let alice = Identity::generate(&mut UnwrapErr(SysRng));
    let t = net.now_ms();
    let receipt = add_hba1c_to(net.host_mut(1), &alice, t);
    assert_eq!(net.host(1).mempool_len(), 1, "queued, not yet sent");
    net.pump(1);
    assert!(net.run_until_committed(&[receipt.tx_id], STEPS).unwrap());
    for h in net.hosts() {
        assert_eq!(h.mempool_len(), 0, "committed: out of every mempool");
        assert!(
            h.current_round() > start,
            "the round moved on with the block"
        );
    }
}
