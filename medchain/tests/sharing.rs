//! Cross-institution key requests between `Host`s in memory: a doctor at City General reads
//! the record St. Mary's added, under Alice's consent; a denial, an emergency, and the attacks
//! on the channel (replay, stale, forged answers, wrong holder, strangers, garbage).

mod common;

use getrandom::SysRng;
use medchain::{Event, KeyAnswer, KeyRequestId, MemoryNetwork, RecordReceipt, RequestKeyError};
use medchain_core::consent::{Action, Actor, Consent, Period, Provision, Purpose};
use medchain_core::credential::Credential;
use medchain_core::encoding::Encode;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::keys::Identity;
use medchain_core::ledger::AuditKind;
use medchain_core::protocol::{DropReason, Message};
use medchain_core::sharing::{KeyRequest, KeyRequestError, KeyResponse};
use rand_core::UnwrapErr;

use common::{add_hba1c_to, credential, now, HBA1C};

const STEPS: usize = 20_000;
const ST_MARYS: usize = 0;
const CITY_GENERAL: usize = 1;
const RIVERSIDE: usize = 2;

fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

struct Story {
    _dir: tempfile::TempDir,
    net: MemoryNetwork,
    alice: Identity,
    okafor: Identity,
    okafor_credential: Credential,
    record: RecordReceipt,
}

/// St. Mary's adds Alice's HbA1c; Dr. Okafor works at City General (its credential); Alice's
/// consent lets Dr. Okafor read for her treatment when `consent` is set.
fn story(consent: bool) -> Story {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = MemoryNetwork::found(
        dir.path(),
        &["St. Mary's", "City General", "Riverside"],
        now(),
    )
    .expect("founding");
    let alice = Identity::generate(&mut rng());
    let okafor = Identity::generate(&mut rng());
    let t = net.now_ms();
    let record = add_hba1c_to(net.host_mut(ST_MARYS), &alice, t);
    net.pump(ST_MARYS);
    let mut ids = vec![record.tx_id];
    if consent {
        let chain = net.host(0).genesis().chain_id();
        let grant = Consent {
            patient: alice.public(),
            issued_ms: t,
            summary: "Dr. Okafor may read my results for my treatment".into(),
            period: Period::default(),
            emergency: None,
            provisions: vec![Provision::permit()
                .actor(Actor::Party(okafor.verify_key()))
                .action(Action::Read)
                .purpose(Purpose::Treat)],
        }
        .grant_body(&alice, &chain)
        .expect("grant");
        ids.push(
            net.host_mut(CITY_GENERAL)
                .submit_patient_signed(&grant, t)
                .expect("grant submitted"),
        );
        net.pump(CITY_GENERAL);
    }
    assert!(net.run_until_committed(&ids, STEPS).unwrap());
    let okafor_credential = credential(net.host(CITY_GENERAL), &okafor, t);
    net.take_events();
    Story {
        _dir: dir,
        net,
        alice,
        okafor,
        okafor_credential,
        record,
    }
}

/// The answer host `at` received for `request`, if any.
fn answer_at(events: &[(usize, Event)], at: usize, request: KeyRequestId) -> Option<KeyAnswer> {
    events.iter().find_map(|(i, e)| match e {
        Event::KeyAnswered {
            request: r, answer, ..
        } if *i == at && *r == request => Some(answer.clone()),
        _ => None,
    })
}

/// What the holder `at` answered to requests, in order.
fn answered_by(events: &[(usize, Event)], at: usize) -> Vec<KeyAnswer> {
    events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::KeyRequestAnswered { answer, .. } if *i == at => Some(answer.clone()),
            _ => None,
        })
        .collect()
}

fn released(answer: Option<KeyAnswer>) -> [TxId; 2] {
    match answer {
        Some(KeyAnswer::Released {
            key_shared,
            access_logged,
        }) => [key_shared, access_logged],
        other => panic!("expected a release, got {other:?}"),
    }
}

/// Okafor's request for the record through City General, answered.
fn ask(
    s: &mut Story,
    purpose: Purpose,
    credential: Option<Credential>,
) -> (KeyRequestId, Vec<(usize, Event)>) {
    let t = s.net.now_ms();
    let request = s
        .net
        .host_mut(CITY_GENERAL)
        .request_key(&s.okafor, &s.record.record_id, credential, purpose, t)
        .expect("request sent");
    s.net.pump(CITY_GENERAL);
    s.net.deliver_all(STEPS).unwrap();
    (request, s.net.take_events())
}

#[test]
fn a_doctor_at_one_hospital_reads_the_record_another_hospital_added() {
    let mut s = story(true);
    let credential = Some(s.okafor_credential.clone());
    let (request, events) = ask(&mut s, Purpose::Treat, credential);
    let ids = released(answer_at(&events, CITY_GENERAL, request));
    // St. Mary's judged it and says so.
    assert!(events.iter().any(|(i, e)| *i == ST_MARYS
        && matches!(e, Event::KeyRequestAnswered { grantee, answer: KeyAnswer::Released { .. }, denial: None, .. }
            if *grantee == s.okafor.public())));
    assert_eq!(s.net.host(CITY_GENERAL).pending_key_requests(), 0);
    assert!(s.net.run_until_committed(&ids, STEPS).unwrap());
    // City General opens the record for Dr. Okafor from its own copy of the chain.
    let opened = s
        .net
        .host(CITY_GENERAL)
        .open_for(&s.okafor, &s.record.record_id)
        .expect("opens");
    assert_eq!(opened.payload(), HBA1C);
    // Every ledger's audit trail shows the release and the read, for treatment.
    for h in s.net.hosts() {
        let trail = h.audit_trail(&s.alice.verify_key()).unwrap();
        for kind in [AuditKind::KeyShared, AuditKind::Accessed] {
            assert!(trail.iter().any(|e| e.kind == kind
                && e.actor == s.okafor.public()
                && e.purpose == "TREAT"
                && !e.emergency));
        }
    }
}

#[test]
fn without_consent_the_request_is_denied_generically_and_only_the_denial_commits() {
    let mut s = story(false);
    let credential = Some(s.okafor_credential.clone());
    let (request, events) = ask(&mut s, Purpose::Treat, credential.clone());
    assert_eq!(
        answer_at(&events, CITY_GENERAL, request),
        Some(KeyAnswer::Denied)
    );
    // The holder keeps the detail for Alice's audit view; the requester got "denied" only.
    // The refusal itself (who, what, why in a rule's name) goes on chain.
    let logged = events.iter().find_map(|(i, e)| match e {
        Event::KeyRequestAnswered {
            answer: KeyAnswer::Denied,
            denial: Some(_),
            denial_logged,
            ..
        } if *i == ST_MARYS => Some(*denial_logged),
        _ => None,
    });
    let Some(Some(denial_tx)) = logged else {
        panic!("St. Mary's logged no denial: {logged:?}");
    };
    assert!(s.net.run_until_committed(&[denial_tx], STEPS).unwrap());
    // Asking again within the request window is refused again and not logged twice.
    let (again, events) = ask(&mut s, Purpose::Treat, credential);
    assert_eq!(
        answer_at(&events, CITY_GENERAL, again),
        Some(KeyAnswer::Denied)
    );
    assert!(events.iter().any(|(i, e)| *i == ST_MARYS
        && matches!(
            e,
            Event::KeyRequestAnswered {
                answer: KeyAnswer::Denied,
                denial_logged: None,
                ..
            }
        )));
    s.net.run_for(10_000, STEPS).unwrap();
    // Every node shows Alice the one refusal, and nothing released.
    for node in [ST_MARYS, CITY_GENERAL, RIVERSIDE] {
        let trail = s.net.host(node).audit_trail(&s.alice.verify_key()).unwrap();
        assert_eq!(trail.len(), 1, "node {node}: {trail:?}");
        let entry = &trail[0];
        assert_eq!(entry.kind, AuditKind::Denied);
        assert_eq!(entry.tx_id, denial_tx);
        assert_eq!(entry.actor, s.okafor.public());
        assert_eq!(entry.record_id, s.record.record_id);
        assert_eq!(entry.purpose, "TREAT");
        assert_eq!(entry.denied_by.as_deref(), Some("denied"));
        assert_eq!(entry.node, s.net.host(ST_MARYS).key());
        // The institution that relayed Dr. Okafor's request: City General.
        assert_eq!(entry.relayed_by, Some(s.net.host(CITY_GENERAL).key()));
        assert!(entry.consent_id.is_none() && !entry.emergency);
    }
    assert!(s
        .net
        .host(CITY_GENERAL)
        .open_for(&s.okafor, &s.record.record_id)
        .is_err());
}

#[test]
fn an_emergency_read_needs_a_clinician_credential_and_is_flagged() {
    let mut s = story(false);
    // Without a credential, break-glass is refused.
    let (request, events) = ask(&mut s, Purpose::EmergencyTreat, None);
    assert!(matches!(
        answer_at(&events, CITY_GENERAL, request),
        Some(KeyAnswer::Denied | KeyAnswer::RuleRefused { .. })
    ));
    // With City General's credential, it is released (Alice said nothing: the default allows
    // it) and logged as an emergency.
    let credential = Some(s.okafor_credential.clone());
    let (request, events) = ask(&mut s, Purpose::EmergencyTreat, credential);
    let ids = released(answer_at(&events, CITY_GENERAL, request));
    assert!(s.net.run_until_committed(&ids, STEPS).unwrap());
    let trail = s
        .net
        .host(RIVERSIDE)
        .audit_trail(&s.alice.verify_key())
        .unwrap();
    assert!(trail
        .iter()
        .any(|e| e.kind == AuditKind::Accessed && e.emergency && e.purpose == "ETREAT"));
    assert!(s
        .net
        .host(CITY_GENERAL)
        .open_for(&s.okafor, &s.record.record_id)
        .is_ok());
}

/// A request signed by Okafor for St. Mary's, relayed by hand.
fn signed(s: &Story, holder: usize, record: RecordId, at_ms: u64) -> KeyRequest {
    KeyRequest::sign(
        &s.okafor,
        &s.net.host(0).genesis().chain_id(),
        s.net.host(holder).key(),
        record,
        Some(s.okafor_credential.clone()),
        Purpose::Treat,
        at_ms,
        &mut rng(),
    )
    .expect("signed")
}

fn relay(s: &mut Story, to: usize, from: usize, request: &KeyRequest) -> Vec<(usize, Event)> {
    let from = s.net.host(from).key();
    let bytes = Message::KeyRequest {
        request: request.clone(),
    }
    .to_bytes();
    s.net.inject(to, from, bytes);
    s.net.deliver_all(STEPS).unwrap();
    s.net.take_events()
}

#[test]
fn a_replayed_request_is_answered_once_and_releases_once() {
    let mut s = story(true);
    let request = signed(&s, ST_MARYS, s.record.record_id, s.net.now_ms());
    let first = relay(&mut s, ST_MARYS, CITY_GENERAL, &request);
    let ids = match answered_by(&first, ST_MARYS).as_slice() {
        [KeyAnswer::Released {
            key_shared,
            access_logged,
        }] => [*key_shared, *access_logged],
        other => panic!("{other:?}"),
    };
    // The same bytes again, through the same member or another: refused as a replay.
    for via in [CITY_GENERAL, RIVERSIDE] {
        let again = relay(&mut s, ST_MARYS, via, &request);
        assert_eq!(answered_by(&again, ST_MARYS), vec![KeyAnswer::Replayed]);
    }
    assert!(s.net.run_until_committed(&ids, STEPS).unwrap());
    let releases = s
        .net
        .host(RIVERSIDE)
        .audit_trail(&s.alice.verify_key())
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == AuditKind::KeyShared)
        .count();
    assert_eq!(releases, 1);
    // City General never asked through its host: the unsolicited answers were dropped there.
    assert!(s.net.host(CITY_GENERAL).pending_key_requests() == 0);
}

#[test]
fn stale_misaddressed_and_unknown_requests_release_nothing() {
    let mut s = story(true);
    let t = s.net.now_ms();
    let window = s.net.host(0).genesis().timing.max_clock_skew_ms;
    let cases = [
        // Signed long ago (or far ahead): stale.
        (
            signed(&s, ST_MARYS, s.record.record_id, t - window - 1),
            KeyAnswer::Stale,
        ),
        (
            signed(&s, ST_MARYS, s.record.record_id, t + window + 1),
            KeyAnswer::Stale,
        ),
        // Addressed to St. Mary's, delivered to Riverside: not for it.
        (
            signed(&s, ST_MARYS, s.record.record_id, t),
            KeyAnswer::NotHolder,
        ),
        // Addressed to Riverside, which did not add the record.
        (
            signed(&s, RIVERSIDE, s.record.record_id, t),
            KeyAnswer::NotHolder,
        ),
        // A record no one added.
        (
            signed(&s, ST_MARYS, RecordId::from_byte_array([3; 32]), t),
            KeyAnswer::NotHolder,
        ),
    ];
    for (n, (request, expected)) in cases.into_iter().enumerate() {
        let to = if (2..=3).contains(&n) {
            RIVERSIDE
        } else {
            ST_MARYS
        };
        let events = relay(&mut s, to, CITY_GENERAL, &request);
        assert_eq!(answered_by(&events, to), vec![expected], "case {n}");
    }
    // A tampered request (purpose changed after signing) does not check out.
    let mut tampered = signed(&s, ST_MARYS, s.record.record_id, t);
    tampered.purpose = Purpose::EmergencyTreat;
    let events = relay(&mut s, ST_MARYS, CITY_GENERAL, &tampered);
    assert_eq!(answered_by(&events, ST_MARYS), vec![KeyAnswer::BadRequest]);
    s.net.run_for(10_000, STEPS).unwrap();
    assert!(s
        .net
        .host(RIVERSIDE)
        .audit_trail(&s.alice.verify_key())
        .unwrap()
        .is_empty());
}

#[test]
fn research_unknown_records_and_borrowed_credentials_are_refused_before_sending() {
    let mut s = story(true);
    let t = s.net.now_ms();
    let host = s.net.host_mut(CITY_GENERAL);
    let research = host.request_key(
        &s.okafor,
        &s.record.record_id,
        None,
        Purpose::Research { topic: None },
        t,
    );
    assert!(matches!(
        research,
        Err(RequestKeyError::Request(KeyRequestError::Research))
    ));
    let unknown = host.request_key(
        &s.okafor,
        &RecordId::from_byte_array([4; 32]),
        None,
        Purpose::Treat,
        t,
    );
    assert!(matches!(unknown, Err(RequestKeyError::UnknownRecord)));
    let stranger = Identity::generate(&mut rng());
    let borrowed = host.request_key(
        &stranger,
        &s.record.record_id,
        Some(s.okafor_credential.clone()),
        Purpose::Treat,
        t,
    );
    assert!(matches!(
        borrowed,
        Err(RequestKeyError::Request(KeyRequestError::ForeignCredential))
    ));
    assert_eq!(host.pending_key_requests(), 0);
    assert!(host.poll_transmit().is_none(), "nothing was sent");
}

#[test]
fn forged_answers_strangers_and_garbage_are_dropped() {
    let mut s = story(true);
    let t = s.net.now_ms();
    let request = s
        .net
        .host_mut(CITY_GENERAL)
        .request_key(
            &s.okafor,
            &s.record.record_id,
            Some(s.okafor_credential.clone()),
            Purpose::Treat,
            t,
        )
        .expect("sent");
    // Before St. Mary's answers, Riverside claims the answer: dropped, the request still waits.
    let forged = Message::KeyResponse {
        response: KeyResponse {
            request,
            answer: KeyAnswer::Denied,
        },
    }
    .to_bytes();
    let riverside = s.net.host(RIVERSIDE).key();
    s.net
        .host_mut(CITY_GENERAL)
        .handle_message(riverside, &forged, t)
        .unwrap();
    // A stranger (not a member) and garbage on the sharing tags: dropped.
    let stranger = Identity::generate(&mut rng()).verify_key();
    s.net
        .host_mut(CITY_GENERAL)
        .handle_message(stranger, &forged, t)
        .unwrap();
    let mut garbage = forged.clone();
    garbage.truncate(10);
    s.net
        .host_mut(CITY_GENERAL)
        .handle_message(riverside, &garbage, t)
        .unwrap();
    let mut dropped = Vec::new();
    while let Some(e) = s.net.host_mut(CITY_GENERAL).poll_event() {
        match e {
            Event::Dropped { reason, .. } => dropped.push(reason),
            Event::KeyAnswered { .. } => panic!("a forged answer was reported"),
            _ => {}
        }
    }
    assert!(matches!(
        dropped.as_slice(),
        [
            DropReason::Unexpected,
            DropReason::UnknownSender,
            DropReason::Malformed(_)
        ]
    ));
    assert_eq!(s.net.host(CITY_GENERAL).pending_key_requests(), 1);
    // St. Mary's real answer still arrives and is reported.
    s.net.pump(CITY_GENERAL);
    s.net.deliver_all(STEPS).unwrap();
    let events = s.net.take_events();
    released(answer_at(&events, CITY_GENERAL, request));
}

#[test]
fn the_holders_own_clinician_is_answered_at_once() {
    let mut s = story(false);
    let chain = s.net.host(0).genesis().chain_id();
    let ruiz = Identity::generate(&mut rng());
    let t = s.net.now_ms();
    let grant = Consent {
        patient: s.alice.public(),
        issued_ms: t,
        summary: String::new(),
        period: Period::default(),
        emergency: None,
        provisions: vec![Provision::permit()
            .actor(Actor::Party(ruiz.verify_key()))
            .purpose(Purpose::Treat)],
    }
    .grant_body(&s.alice, &chain)
    .expect("grant");
    let id = s
        .net
        .host_mut(ST_MARYS)
        .submit_patient_signed(&grant, t)
        .unwrap();
    s.net.pump(ST_MARYS);
    assert!(s.net.run_until_committed(&[id], STEPS).unwrap());
    let t = s.net.now_ms();
    let request = s
        .net
        .host_mut(ST_MARYS)
        .request_key(&ruiz, &s.record.record_id, None, Purpose::Treat, t)
        .expect("asked");
    s.net.pump(ST_MARYS);
    let events = s.net.take_events();
    let ids = released(answer_at(&events, ST_MARYS, request));
    assert!(s.net.run_until_committed(&ids, STEPS).unwrap());
    assert_eq!(
        s.net
            .host(ST_MARYS)
            .open_for(&ruiz, &s.record.record_id)
            .expect("opens")
            .payload(),
        HBA1C
    );
}

#[test]
fn a_request_signed_on_the_clinicians_own_device_is_relayed_after_the_holders_checks() {
    let mut s = story(true);
    let t = s.net.now_ms();
    let window = s.net.host(0).genesis().timing.max_clock_skew_ms;
    // Checked before anything leaves City General: addressed to the holder, fresh, intact.
    let misaddressed = signed(&s, RIVERSIDE, s.record.record_id, t);
    let stale = signed(&s, ST_MARYS, s.record.record_id, t - window - 1);
    let mut tampered = signed(&s, ST_MARYS, s.record.record_id, t);
    tampered.at_ms += 1;
    let unknown = signed(&s, ST_MARYS, RecordId::from_byte_array([5; 32]), t);
    let request = signed(&s, ST_MARYS, s.record.record_id, t);
    let host = s.net.host_mut(CITY_GENERAL);
    for (request, expected) in [
        (misaddressed, "addressed"),
        (stale, "old"),
        (tampered, "signed"),
        (unknown, "no committed record"),
    ] {
        let refused = host.relay_key_request(request, t).expect_err("refused");
        assert!(refused.to_string().contains(expected), "{refused}");
    }
    assert!(host.poll_transmit().is_none(), "nothing was sent");
    // A good one is relayed once; its answer comes back to City General.
    let id = host.relay_key_request(request.clone(), t).expect("relayed");
    assert!(matches!(
        host.relay_key_request(request, t),
        Err(RequestKeyError::AlreadySent)
    ));
    s.net.pump(CITY_GENERAL);
    s.net.deliver_all(STEPS).unwrap();
    let events = s.net.take_events();
    let ids = released(answer_at(&events, CITY_GENERAL, id));
    assert!(s.net.run_until_committed(&ids, STEPS).unwrap());
    // Dr. Okafor opens it with his own key, from any copy of the chain.
    assert_eq!(
        s.net
            .host(RIVERSIDE)
            .open_for(&s.okafor, &s.record.record_id)
            .expect("opens")
            .payload(),
        HBA1C
    );
}

#[test]
fn the_requests_awaiting_an_answer_stay_bounded() {
    let mut s = story(true);
    let t = s.net.now_ms();
    let window = s.net.host(0).genesis().timing.max_clock_skew_ms;
    let host = s.net.host_mut(CITY_GENERAL);
    // A flood of requests the holder never answers: the oldest are forgotten at the cap.
    for _ in 0..=medchain::MAX_PENDING_KEY_REQUESTS {
        host.request_key(&s.okafor, &s.record.record_id, None, Purpose::Treat, t)
            .expect("sent");
    }
    assert_eq!(
        host.pending_key_requests(),
        medchain::MAX_PENDING_KEY_REQUESTS
    );
    // Past twice the holder's window no answer can come: they are all forgotten.
    let later = t + 2 * window + 1;
    host.request_key(&s.okafor, &s.record.record_id, None, Purpose::Treat, later)
        .expect("sent");
    assert_eq!(host.pending_key_requests(), 1);
}

#[test]
fn attack_a_flood_of_refused_requests_writes_a_bounded_number_of_denials() {
    let mut s = story(false);
    let t = s.net.now_ms();
    // City General relays a refused request for each of many made-up clinicians: each is a
    // distinct refusal, and St. Mary's could be made to write one denial per request. The
    // replay guard admits at most MAX_REQUESTS_PER_MEMBER per relaying member and window;
    // the rest are answered `Unavailable`, judged no further and logged nowhere.
    let cap = medchain_core::sharing::MAX_REQUESTS_PER_MEMBER;
    assert!(cap < medchain::MAX_REMEMBERED_DENIALS);
    for _ in 0..cap + 40 {
        let stranger = Identity::generate(&mut rng());
        s.net
            .host_mut(CITY_GENERAL)
            .request_key(&stranger, &s.record.record_id, None, Purpose::Treat, t)
            .expect("sent");
    }
    s.net.pump(CITY_GENERAL);
    s.net.deliver_all(STEPS).unwrap();
    let events = s.net.take_events();
    let answers = answered_by(&events, ST_MARYS);
    assert_eq!(answers.len(), cap + 40);
    let logged: Vec<TxId> = events
        .iter()
        .filter_map(|(i, e)| match e {
            Event::KeyRequestAnswered { denial_logged, .. } if *i == ST_MARYS => *denial_logged,
            _ => None,
        })
        .collect();
    assert_eq!(
        logged.len(),
        cap,
        "one denial per admitted request, none beyond the guard"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|a| **a == KeyAnswer::Unavailable)
            .count(),
        40
    );
}
