use super::*;
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

struct World {
    patient: Identity,
    doctor: VerifyKey,
    other_doctor: VerifyKey,
    researcher: VerifyKey,
    hospital: VerifyKey,
    clinic: VerifyKey,
}

fn world() -> World {
    let mut rng = ChaCha20Rng::seed_from_u64(77);
    let patient = Identity::generate(&mut rng);
    let mut k = || Identity::generate(&mut rng).verify_key();
    World {
        patient,
        doctor: k(),
        other_doctor: k(),
        researcher: k(),
        hospital: k(),
        clinic: k(),
    }
}

const DAY: u64 = 86_400_000;
const T0: u64 = 1_700_000_000_000;
const NET: ChainId = ChainId::from_byte_array([4; 32]);

fn obs(codes: &[(&str, &str)], date: Option<u64>) -> RecordFacts {
    RecordFacts {
        resource_type: "Observation".into(),
        codes: Some(
            codes
                .iter()
                .map(|(s, c)| ((*s).into(), (*c).into()))
                .collect(),
        ),
        code_tags: None,
        date: RecordDate::exact(date),
    }
}

fn req(
    w: &World,
    who: VerifyKey,
    roles: Vec<Role>,
    action: Action,
    purpose: Purpose,
    record: RecordFacts,
) -> AccessRequest {
    let _ = w;
    AccessRequest {
        requester: who,
        roles,
        action,
        purpose,
        record,
        emergency: false,
    }
}

fn consent(w: &World, provisions: Vec<Provision>) -> Consent {
    Consent {
        patient: w.patient.public(),
        issued_ms: T0,
        summary: "test".into(),
        period: Period::default(),
        emergency: None,
        provisions,
    }
}

fn st(c: Consent) -> ConsentState {
    ConsentState::new(c)
}

const LOINC: &str = "http://loinc.org";
const HIV: (&str, &str) = ("http://loinc.org", "75622-1");
const A1C: (&str, &str) = ("http://loinc.org", "4548-4");

fn research(topic: &str) -> Purpose {
    Purpose::Research {
        topic: Some(topic.into()),
    }
}

/// One row of the table: a name, consents, a request, the time and height, and the expected
/// verdict (`Ok(())` permit, `Err(reason)` deny; `None` reason for emergency permit).
struct Case {
    name: &'static str,
    consents: Vec<ConsentState>,
    request: AccessRequest,
    now: u64,
    height: u64,
    expect: Expect,
}

#[derive(Debug)]
enum Expect {
    Permit,
    Emergency,
    Deny(fn(&DenyReason) -> bool),
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    let w = world();
    let clin = Role::Clinician {
        institution: w.hospital,
    };
    let clin2 = Role::Clinician {
        institution: w.clinic,
    };
    let resr = Role::Researcher {
        institution: w.hospital,
    };
    let doctor_treat = Provision::permit()
        .actor(Actor::Party(w.doctor))
        .action(Action::Read)
        .purpose(Purpose::Treat);
    let base = |p: Vec<Provision>| vec![st(consent(&w, p))];
    let r_doc = |purpose: Purpose| {
        req(
            &w,
            w.doctor,
            vec![clin],
            Action::Read,
            purpose,
            obs(&[A1C], Some(T0)),
        )
    };
    let mut out = vec![
        Case {
            name: "doctor reads for treatment",
            consents: base(vec![doctor_treat.clone()]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "no consent at all",
            consents: vec![],
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "wrong purpose",
            consents: base(vec![doctor_treat.clone()]),
            request: r_doc(Purpose::Other("HMARKT".into())),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "other doctor",
            consents: base(vec![doctor_treat.clone()]),
            request: req(
                &w,
                w.other_doctor,
                vec![clin],
                Action::Read,
                Purpose::Treat,
                obs(&[A1C], Some(T0)),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "wrong action (search)",
            consents: base(vec![doctor_treat.clone()]),
            request: req(
                &w,
                w.doctor,
                vec![clin],
                Action::Search,
                Purpose::Treat,
                obs(&[A1C], Some(T0)),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "any action when actions empty",
            consents: base(vec![Provision::permit().actor(Actor::Party(w.doctor))]),
            request: req(
                &w,
                w.doctor,
                vec![],
                Action::Search,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "role: any clinician of hospital",
            consents: base(vec![Provision::permit()
                .actor(Actor::Role(clin))
                .purpose(Purpose::Treat)]),
            request: req(
                &w,
                w.other_doctor,
                vec![clin],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "role: clinician of another institution",
            consents: base(vec![Provision::permit()
                .actor(Actor::Role(clin))
                .purpose(Purpose::Treat)]),
            request: req(
                &w,
                w.other_doctor,
                vec![clin2],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "role claimed without credential",
            consents: base(vec![Provision::permit()
                .actor(Actor::Role(clin))
                .purpose(Purpose::Treat)]),
            request: req(
                &w,
                w.other_doctor,
                vec![],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "any clinician anywhere",
            consents: base(vec![Provision::permit().actor(Actor::AnyClinician)]),
            request: req(
                &w,
                w.other_doctor,
                vec![clin2],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "resource type class matches",
            consents: base(vec![doctor_treat
                .clone()
                .class(DataClass::ResourceType("Observation".into()))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "resource type class mismatch",
            consents: base(vec![doctor_treat
                .clone()
                .class(DataClass::ResourceType("Condition".into()))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "code class matches",
            consents: base(vec![doctor_treat.clone().class(DataClass::Code {
                system: LOINC.into(),
                code: "4548-4".into(),
            })]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "code class mismatch",
            consents: base(vec![doctor_treat.clone().class(DataClass::Code {
                system: LOINC.into(),
                code: "2345-7".into(),
            })]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "nested deny carves out HIV",
            consents: base(vec![doctor_treat.clone().nest(Provision::deny().class(
                DataClass::Code {
                    system: HIV.0.into(),
                    code: HIV.1.into(),
                },
            ))]),
            request: req(
                &w,
                w.doctor,
                vec![clin],
                Action::Read,
                Purpose::Treat,
                obs(&[HIV], Some(T0)),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| matches!(r, DenyReason::DeniedBy(p) if p.path == vec![0, 0])),
        },
        Case {
            name: "nested deny leaves the rest permitted",
            consents: base(vec![doctor_treat.clone().nest(Provision::deny().class(
                DataClass::Code {
                    system: HIV.0.into(),
                    code: HIV.1.into(),
                },
            ))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "deny in another consent overrides permit",
            consents: vec![
                st(consent(&w, vec![doctor_treat.clone()])),
                st(consent(
                    &w,
                    vec![Provision::deny().actor(Actor::Party(w.doctor))],
                )),
            ],
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| matches!(r, DenyReason::DeniedBy(_))),
        },
        Case {
            name: "sibling deny overrides sibling permit",
            consents: base(vec![
                doctor_treat.clone(),
                Provision::deny().purpose(Purpose::Treat),
            ]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| matches!(r, DenyReason::DeniedBy(p) if p.path == vec![1])),
        },
        Case {
            name: "deny for another actor does not apply",
            consents: base(vec![
                doctor_treat.clone(),
                Provision::deny().actor(Actor::Party(w.other_doctor)),
            ]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "consent period: before start",
            consents: vec![st(Consent {
                period: Period::between(T0, T0 + 10 * DAY),
                ..consent(&w, vec![doctor_treat.clone()])
            })],
            request: r_doc(Purpose::Treat),
            now: T0 - 1,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::OutOfPeriod),
        },
        Case {
            name: "consent period: within",
            consents: vec![st(Consent {
                period: Period::between(T0, T0 + 10 * DAY),
                ..consent(&w, vec![doctor_treat.clone()])
            })],
            request: r_doc(Purpose::Treat),
            now: T0 + DAY,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "consent expired",
            consents: vec![st(Consent {
                period: Period::between(T0, T0 + 10 * DAY),
                ..consent(&w, vec![doctor_treat.clone()])
            })],
            request: r_doc(Purpose::Treat),
            now: T0 + 11 * DAY,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::OutOfPeriod),
        },
        Case {
            name: "provision period expired",
            consents: base(vec![doctor_treat
                .clone()
                .in_force(Period::between(T0, T0 + DAY))]),
            request: r_doc(Purpose::Treat),
            now: T0 + 2 * DAY,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "open-ended period",
            consents: base(vec![doctor_treat.clone().in_force(Period {
                start_ms: Some(T0),
                end_ms: None,
            })]),
            request: r_doc(Purpose::Treat),
            now: T0 + 5000 * DAY,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "data period: record inside",
            consents: base(vec![doctor_treat
                .clone()
                .data_within(Period::between(T0 - DAY, T0 + DAY))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "data period: record outside",
            consents: base(vec![doctor_treat
                .clone()
                .data_within(Period::between(T0 + DAY, T0 + 2 * DAY))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "data period: undated record",
            consents: base(vec![doctor_treat
                .clone()
                .data_within(Period::between(T0, T0 + DAY))]),
            request: req(
                &w,
                w.doctor,
                vec![],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "revoked at an earlier block",
            consents: vec![ConsentState {
                revoked_at: Some(5),
                ..st(consent(&w, vec![doctor_treat.clone()]))
            }],
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 6,
            expect: Expect::Deny(|r| *r == DenyReason::Revoked),
        },
        Case {
            name: "revoked in this very block",
            consents: vec![ConsentState {
                revoked_at: Some(6),
                ..st(consent(&w, vec![doctor_treat.clone()]))
            }],
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 6,
            expect: Expect::Deny(|r| *r == DenyReason::Revoked),
        },
        Case {
            name: "revocation in a later block not yet in effect",
            consents: vec![ConsentState {
                revoked_at: Some(9),
                ..st(consent(&w, vec![doctor_treat.clone()]))
            }],
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 6,
            expect: Expect::Permit,
        },
        Case {
            name: "research on the consented topic",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyResearcher)
                .action(Action::ResearchUse)
                .purpose(research("diabetes"))]),
            request: req(
                &w,
                w.researcher,
                vec![resr],
                Action::ResearchUse,
                research("diabetes"),
                obs(&[A1C], Some(T0)),
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "research on another topic",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyResearcher)
                .action(Action::ResearchUse)
                .purpose(research("diabetes"))]),
            request: req(
                &w,
                w.researcher,
                vec![resr],
                Action::ResearchUse,
                research("oncology"),
                obs(&[A1C], Some(T0)),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "research on any topic",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyResearcher)
                .purpose(Purpose::Research { topic: None })]),
            request: req(
                &w,
                w.researcher,
                vec![resr],
                Action::ResearchUse,
                research("oncology"),
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "research consent does not allow treatment reads",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyResearcher)
                .purpose(Purpose::Research { topic: None })]),
            request: req(
                &w,
                w.researcher,
                vec![resr],
                Action::Read,
                Purpose::Treat,
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "researcher without credential",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyResearcher)
                .purpose(Purpose::Research { topic: None })]),
            request: req(
                &w,
                w.researcher,
                vec![],
                Action::ResearchUse,
                research("x"),
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
        Case {
            name: "treatment consent does not allow research",
            consents: base(vec![Provision::permit()
                .actor(Actor::AnyClinician)
                .purpose(Purpose::Treat)]),
            request: req(
                &w,
                w.researcher,
                vec![clin],
                Action::ResearchUse,
                research("x"),
                obs(&[], None),
            ),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
    ];
    let emergency = |roles: Vec<Role>, purpose: Purpose| AccessRequest {
        emergency: true,
        ..req(
            &w,
            w.other_doctor,
            roles,
            Action::Read,
            purpose,
            obs(&[HIV], Some(T0)),
        )
    };
    let pref = |e: EmergencyPreference, issued: u64| {
        st(Consent {
            emergency: Some(e),
            issued_ms: issued,
            provisions: vec![],
            ..consent(&w, vec![])
        })
    };
    out.extend([
        Case {
            name: "emergency allowed by default",
            consents: vec![],
            request: emergency(vec![clin], Purpose::EmergencyTreat),
            now: T0,
            height: 1,
            expect: Expect::Emergency,
        },
        Case {
            name: "emergency explicitly allowed",
            consents: vec![pref(EmergencyPreference::Allow, T0)],
            request: emergency(vec![clin2], Purpose::EmergencyTreat),
            now: T0,
            height: 1,
            expect: Expect::Emergency,
        },
        Case {
            name: "emergency refused by the patient",
            consents: vec![pref(EmergencyPreference::Refuse, T0)],
            request: emergency(vec![clin], Purpose::EmergencyTreat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::EmergencyRefused),
        },
        Case {
            name: "latest emergency preference wins",
            consents: vec![
                pref(EmergencyPreference::Refuse, T0),
                pref(EmergencyPreference::Allow, T0 + DAY),
            ],
            request: emergency(vec![clin], Purpose::EmergencyTreat),
            now: T0 + 2 * DAY,
            height: 1,
            expect: Expect::Emergency,
        },
        Case {
            name: "revoked refusal no longer applies",
            consents: vec![ConsentState {
                revoked_at: Some(2),
                ..pref(EmergencyPreference::Refuse, T0)
            }],
            request: emergency(vec![clin], Purpose::EmergencyTreat),
            now: T0,
            height: 3,
            expect: Expect::Emergency,
        },
        Case {
            name: "emergency by a non-clinician",
            consents: vec![],
            request: emergency(vec![resr], Purpose::EmergencyTreat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NotAClinician),
        },
        Case {
            name: "emergency with a non-emergency purpose",
            consents: vec![],
            request: emergency(vec![clin], Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::EmergencyPurpose),
        },
        Case {
            name: "emergency ignores ordinary denies",
            consents: base(vec![Provision::deny().actor(Actor::Party(w.other_doctor))]),
            request: emergency(vec![clin], Purpose::EmergencyTreat),
            now: T0,
            height: 1,
            expect: Expect::Emergency,
        },
        Case {
            name: "codes unknown: code permit may apply (validator view)",
            consents: base(vec![doctor_treat.clone().class(DataClass::Code {
                system: LOINC.into(),
                code: "4548-4".into(),
            })]),
            request: req(
                &w,
                w.doctor,
                vec![],
                Action::Read,
                Purpose::Treat,
                RecordFacts {
                    codes: None,
                    ..obs(&[], Some(T0))
                },
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "codes unknown: a code deny is left to the key holder",
            consents: base(vec![doctor_treat.clone().nest(Provision::deny().class(
                DataClass::Code {
                    system: HIV.0.into(),
                    code: HIV.1.into(),
                },
            ))]),
            request: req(
                &w,
                w.doctor,
                vec![],
                Action::Read,
                Purpose::Treat,
                RecordFacts {
                    codes: None,
                    ..obs(&[], Some(T0))
                },
            ),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "deeply nested permit under permit",
            consents: base(vec![Provision::permit()
                .actor(Actor::Party(w.doctor))
                .nest(Provision::permit().purpose(Purpose::Treat).nest(
                    Provision::permit().class(DataClass::ResourceType("Observation".into())),
                ))]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Permit,
        },
        Case {
            name: "nested permit needs its parent to match",
            consents: base(vec![Provision::deny()
                .actor(Actor::Party(w.other_doctor))
                .nest(Provision::permit())]),
            request: r_doc(Purpose::Treat),
            now: T0,
            height: 1,
            expect: Expect::Deny(|r| *r == DenyReason::NoConsent),
        },
    ]);
    out
}

#[test]
fn table_of_consent_cases() {
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for c in cases {
        let d = evaluate(&c.request, &c.consents, c.now, c.height);
        let ok = match (&c.expect, &d) {
            (Expect::Permit, Decision::Permit(_)) => true,
            (Expect::Emergency, Decision::EmergencyPermit) => true,
            (Expect::Deny(f), Decision::Deny(r)) => f(r),
            _ => false,
        };
        assert!(
            ok,
            "case {:?}: expected {:?}, got {:?}",
            c.name, c.expect, d
        );
        // Determinism: the same inputs in another order give the same verdict.
        let mut rev = c.consents.clone();
        rev.reverse();
        assert_eq!(
            evaluate(&c.request, &rev, c.now, c.height),
            d,
            "case {:?} order-dependent",
            c.name
        );
    }
}

#[test]
fn deny_reasons_read_well() {
    let w = world();
    let c = consent(&w, vec![Provision::deny()]);
    let r = ProvisionRef {
        consent: c.id(),
        path: vec![0, 2],
    };
    let text = DenyReason::DeniedBy(r).to_string();
    assert!(
        text.starts_with("denied by consent ") && text.ends_with(" provision 1.3"),
        "{text}"
    );
    assert_eq!(
        DenyReason::NoConsent.to_string(),
        "no consent of the patient permits this request"
    );
    assert_eq!(
        DenyReason::EmergencyRefused.to_string(),
        "the patient refuses emergency access"
    );
}

#[test]
fn encode_sign_and_reject_forgeries() {
    let w = world();
    let c = Consent {
        emergency: Some(EmergencyPreference::Refuse),
        period: Period::between(T0, T0 + DAY),
        ..consent(
            &w,
            vec![Provision::permit()
                .actor(Actor::Party(w.doctor))
                .actor(Actor::Role(Role::Clinician {
                    institution: w.hospital,
                }))
                .action(Action::Read)
                .purpose(research("asthma"))
                .class(DataClass::ResourceType("Observation".into()))
                .class(DataClass::Code {
                    system: LOINC.into(),
                    code: "1-1".into(),
                })
                .in_force(Period::between(T0, T0 + DAY))
                .data_within(Period {
                    start_ms: None,
                    end_ms: Some(T0),
                })
                .nest(Provision::deny().actor(Actor::AnyResearcher))],
        )
    };
    let bytes = c.to_bytes();
    assert_eq!(Consent::from_bytes(&bytes).unwrap(), c);
    let TxBody::ConsentGranted { document, patient } = c.grant_body(&w.patient, &NET).unwrap()
    else {
        panic!("wrong body")
    };
    let blinded = c.blind(&ConsentTagKey::for_patient(&w.patient));
    assert_eq!(
        Consent::from_grant(&NET, &document, &patient).unwrap(),
        blinded
    );
    assert_eq!(c.granted_id(&w.patient), blinded.id());
    // Signed by someone else.
    let mut rng = ChaCha20Rng::seed_from_u64(3);
    let mallory = Identity::generate(&mut rng);
    assert_eq!(
        c.grant_body(&mallory, &NET).unwrap_err(),
        ConsentError::NotSignedByPatient
    );
    let forged = PatientSignature::sign(&mallory, &NET, domain::CONSENT_SIG, &document);
    assert_eq!(
        Consent::from_grant(&NET, &document, &forged).unwrap_err(),
        ConsentError::NotSignedByPatient
    );
    // Signed over other bytes.
    let mut other = blinded.clone();
    other.issued_ms += 1;
    assert_eq!(
        Consent::from_grant(&NET, &other.to_bytes(), &patient).unwrap_err(),
        ConsentError::NotSignedByPatient
    );
    // Malformed.
    assert!(matches!(
        Consent::from_grant(&NET, &bytes[..bytes.len() - 3], &patient),
        Err(ConsentError::Decode(_))
    ));
    // Too deep.
    let mut deep = Provision::permit();
    for _ in 0..12 {
        deep = Provision::permit().nest(deep);
    }
    assert_eq!(
        consent(&w, vec![deep.clone()]).check().unwrap_err(),
        ConsentError::TooComplex
    );
    assert!(Consent::from_bytes(&consent(&w, vec![deep]).to_bytes()).is_err());
    assert_eq!(
        consent(&w, vec![]).check().unwrap_err(),
        ConsentError::Empty
    );
    assert_eq!(
        ConsentError::NotSignedByPatient.to_string(),
        "the consent is not signed by its patient"
    );
    // Revocation body is signed by the patient over the id.
    let TxBody::ConsentRevoked {
        consent_id,
        patient,
    } = Consent::revoke_body(&w.patient, &NET, &c.id())
    else {
        panic!("wrong body")
    };
    assert_eq!(consent_id, c.id().to_byte_array());
    assert_eq!(patient.patient, w.patient.public());
}

#[test]
fn fhir_round_trip_and_spec_style_import() {
    let w = world();
    let c = Consent {
        emergency: Some(EmergencyPreference::Allow),
        period: Period::between(T0, T0 + 365 * DAY),
        summary: "Dr. X may read my labs for treatment, not HIV".into(),
        ..consent(
            &w,
            vec![
                Provision::permit()
                    .actor(Actor::Party(w.doctor))
                    .action(Action::Read)
                    .purpose(Purpose::Treat)
                    .class(DataClass::ResourceType("Observation".into()))
                    .nest(Provision::deny().class(DataClass::Code {
                        system: HIV.0.into(),
                        code: HIV.1.into(),
                    })),
                Provision::permit()
                    .actor(Actor::AnyResearcher)
                    .action(Action::ResearchUse)
                    .purpose(research("diabetes"))
                    .data_within(Period::between(T0 - 365 * DAY, T0)),
                Provision::permit()
                    .actor(Actor::Role(Role::Clinician {
                        institution: w.hospital,
                    }))
                    .action(Action::Search),
            ],
        )
    };
    let json = consent_to_fhir(&c);
    assert_eq!(json["resourceType"], "Consent");
    assert_eq!(json["provision"]["type"], "deny");
    assert_eq!(
        json["provision"]["provision"][0]["actor"][0]["role"]["coding"][0]["code"],
        "IRCP"
    );
    let back = consent_from_fhir(&json).unwrap();
    assert_eq!(back, c);

    // A Consent written by hand from the R4 specification's structure (consent-example-basic
    // style: an opt-in with a root permit), with our identity system for the patient.
    let text = format!(
        r#"{{
          "resourceType": "Consent", "status": "active",
          "scope": {{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}}]}},
          "category": [{{"coding": [{{"system": "http://loinc.org", "code": "59284-0"}}]}}],
          "patient": {{"identifier": {{"system": "urn:medchain:identity", "value": "{}"}}}},
          "dateTime": "2018-12-28",
          "policyRule": {{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}}]}},
          "provision": {{
            "type": "permit",
            "period": {{"start": "2018-12-28", "end": "2030-12-31"}},
            "actor": [{{"role": {{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "PRCP"}}]}},
                        "reference": {{"identifier": {{"system": "urn:medchain:key", "value": "{}"}}}}}}],
            "action": [{{"coding": [{{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}}]}}],
            "purpose": [{{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT"}}],
            "class": [{{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}}],
            "provision": [{{"type": "deny", "code": [{{"coding": [{{"system": "http://loinc.org", "code": "75622-1"}}]}}]}}]
          }}
        }}"#,
        w.patient.public().to_text(),
        w.doctor
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let imported = consent_from_fhir(&v).unwrap();
    assert_eq!(imported.provisions.len(), 1);
    let r = req(
        &w,
        w.doctor,
        vec![],
        Action::Read,
        Purpose::Treat,
        obs(&[A1C], None),
    );
    let now = crate::fhir::parse_datetime_ms("2020-01-01").unwrap();
    assert!(evaluate(&r, &[st(imported.clone())], now, 1).is_permit());
    let r_hiv = req(
        &w,
        w.doctor,
        vec![],
        Action::Read,
        Purpose::Treat,
        obs(&[HIV], None),
    );
    assert!(!evaluate(&r_hiv, &[st(imported)], now, 1).is_permit());

    // Errors name the problem.
    let mut bad = v.clone();
    bad["status"] = "inactive".into();
    assert_eq!(
        consent_from_fhir(&bad).unwrap_err(),
        ConsentFhirError::NotActive
    );
    let mut bad = v.clone();
    bad["patient"] = serde_json::json!({"reference": "Patient/1"});
    assert_eq!(
        consent_from_fhir(&bad).unwrap_err().to_string(),
        "Consent.patient needs an identifier with system urn:medchain:identity"
    );
    let mut bad = v.clone();
    bad["provision"]["period"]["start"] = "yesterday".into();
    assert_eq!(
        consent_from_fhir(&bad).unwrap_err().to_string(),
        "provision.period is not a valid FHIR dateTime"
    );
    assert_eq!(
        consent_from_fhir(&serde_json::json!({"resourceType": "Patient"})).unwrap_err(),
        ConsentFhirError::NotAConsent
    );
}

fn arb_provision(w_keys: Vec<VerifyKey>) -> impl Strategy<Value = Provision> {
    let leaf = (
        any::<bool>(),
        proptest::option::of(0..w_keys.len()),
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
        proptest::option::of(0u8..3),
    )
        .prop_map(move |(deny, actor, action, purpose, class)| {
            let mut p = if deny {
                Provision::deny()
            } else {
                Provision::permit()
            };
            if let Some(a) = actor {
                p = p.actor(Actor::Party(w_keys[a]));
            }
            if let Some(a) = action {
                p = p.action([Action::Read, Action::Search, Action::ResearchUse][a as usize]);
            }
            if let Some(x) = purpose {
                p = p.purpose(
                    [
                        Purpose::Treat,
                        Purpose::EmergencyTreat,
                        Purpose::Research { topic: None },
                    ][x as usize]
                        .clone(),
                );
            }
            if let Some(c) = class {
                p = p.class(match c {
                    0 => DataClass::ResourceType("Observation".into()),
                    1 => DataClass::ResourceType("Condition".into()),
                    _ => DataClass::Code {
                        system: HIV.0.into(),
                        code: HIV.1.into(),
                    },
                });
            }
            p
        });
    leaf.prop_recursive(3, 12, 3, |inner| {
        (inner.clone(), proptest::collection::vec(inner, 0..3)).prop_map(|(mut p, kids)| {
            p.provisions = kids;
            p
        })
    })
}

fn deny_applies(ps: &[Provision], req: &AccessRequest, now: u64, parent: Match) -> bool {
    ps.iter().any(|p| {
        let m = parent.and(provision_match(p, req, now));
        m == Match::Yes
            && (p.kind == ProvisionType::Deny || deny_applies(&p.provisions, req, now, m))
            || m == Match::Maybe && deny_applies(&p.provisions, req, now, m)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn never_permits_what_a_deny_covers(
        provisions in proptest::collection::vec(arb_provision({ let w = world(); vec![w.doctor, w.other_doctor] }), 1..4),
        who in 0usize..2, action in 0u8..3, purpose in 0u8..3, rtype in any::<bool>(), hiv in any::<bool>(),
    ) {
        let w = world();
        let requester = [w.doctor, w.other_doctor][who];
        let r = AccessRequest {
            requester,
            roles: vec![],
            action: [Action::Read, Action::Search, Action::ResearchUse][action as usize],
            purpose: [Purpose::Treat, Purpose::EmergencyTreat, Purpose::Research { topic: Some("t".into()) }][purpose as usize].clone(),
            record: RecordFacts {
                resource_type: if rtype { "Observation".into() } else { "Condition".into() },
                codes: Some(if hiv { vec![(HIV.0.into(), HIV.1.into())] } else { vec![] }),
                code_tags: None,
                date: RecordDate::At(T0),
            },
            emergency: false,
        };
        let c = consent(&w, provisions);
        let covered = deny_applies(&c.provisions, &r, T0, Match::Yes);
        let d = evaluate(&r, &[st(c)], T0, 1);
        if covered {
            prop_assert!(matches!(d, Decision::Deny(DenyReason::DeniedBy(_))), "permitted despite a deny: {:?}", d);
        }
        // Round trips never change the verdict.
        prop_assert_eq!(evaluate(&r, &[], T0, 1), Decision::Deny(DenyReason::NoConsent));
    }

    #[test]
    fn consent_bytes_round_trip_and_fhir_round_trip(
        provisions in proptest::collection::vec(arb_provision({ let w = world(); vec![w.doctor, w.other_doctor] }), 1..4),
    ) {
        let w = world();
        let c = consent(&w, provisions);
        prop_assert_eq!(Consent::from_bytes(&c.to_bytes()).unwrap(), c.clone());
        prop_assert_eq!(consent_from_fhir(&consent_to_fhir(&c)).unwrap(), c);
    }
}

// ---------------------------------------------------------------------------------------------
// Blinded codes (issue #20: what the chain broadcasts)
// ---------------------------------------------------------------------------------------------

const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";

/// "Dr X may read for treatment, but not my schizophrenia records": what a member must not read.
fn schizophrenia_consent(w: &World) -> Consent {
    Consent {
        summary: "not my schizophrenia records (F20.9)".into(),
        ..consent(
            w,
            vec![Provision::permit()
                .actor(Actor::Party(w.doctor))
                .purpose(Purpose::Treat)
                .nest(Provision::deny().class(DataClass::Code {
                    system: ICD10.into(),
                    code: "F20.9".into(),
                }))],
        )
    }
}

/// The facts a validator has of a record of `w.patient` holding `codes`: the class tags a
/// writer holding the patient's tag key made, no clear code, the year only.
fn validator_view(key: &ConsentTagKey, codes: &[(&str, &str)]) -> RecordFacts {
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let codes: Vec<(String, String)> = codes
        .iter()
        .map(|(s, c)| ((*s).into(), (*c).into()))
        .collect();
    RecordFacts {
        resource_type: "Condition".into(),
        codes: None,
        code_tags: Some(key.record_tags(&codes, &mut rng).unwrap()),
        date: RecordDate::Within {
            first_ms: T0 - DAY,
            last_ms: T0 + DAY,
        },
    }
}

#[test]
fn a_member_reading_the_chain_cannot_read_consent_codes_or_summary() {
    let w = world();
    let c = schizophrenia_consent(&w);
    let TxBody::ConsentGranted { document, patient } = c.grant_body(&w.patient, &NET).unwrap()
    else {
        panic!("wrong body")
    };
    // Everything a member decrypts: the document and the signature.
    let mut seen = document.clone();
    patient.encode_to(&mut seen);
    for secret in [
        &b"F20.9"[..],
        b"F20",
        ICD10.as_bytes(),
        b"icd-10",
        b"schizophrenia",
    ] {
        assert!(
            !seen.windows(secret.len()).any(|x| x == secret),
            "{} readable on chain",
            String::from_utf8_lossy(secret)
        );
    }
    let on_chain = Consent::from_grant(&NET, &document, &patient).unwrap();
    assert!(on_chain.is_blinded() && on_chain.summary.is_empty());
    // A member with a dictionary of codes but not the patient's key (its own, another
    // patient's) finds no tag: the tags are the patient's PRF.
    let mut rng = ChaCha20Rng::seed_from_u64(21);
    let member = ConsentTagKey::for_patient(&Identity::generate(&mut rng));
    let DataClass::Blinded(tag) = &on_chain.provisions[0].provisions[0].classes[0] else {
        panic!("the code is not blinded")
    };
    for code in ["F20.9", "F20.0", "B20", "Z21", "F32.9"] {
        assert_ne!(member.tag(ICD10, code), *tag);
    }
    // The patient (and a hospital the patient enrolled at) can confirm it.
    assert_eq!(
        ConsentTagKey::for_patient(&w.patient).tag(ICD10, "F20.9"),
        *tag
    );
}

#[test]
fn a_blinded_deny_still_denies_at_the_validator() {
    let w = world();
    let key = ConsentTagKey::for_patient(&w.patient);
    let on_chain = st(schizophrenia_consent(&w).blind(&key));
    let ask = |record| req(&w, w.doctor, vec![], Action::Read, Purpose::Treat, record);
    // A record holding F20.9 among other codes: denied by the nested deny, exactly.
    let d = evaluate(
        &ask(validator_view(&key, &[(ICD10, "F20.9"), (LOINC, "4548-4")])),
        std::slice::from_ref(&on_chain),
        T0,
        1,
    );
    assert!(matches!(d, Decision::Deny(DenyReason::DeniedBy(ref r)) if r.path == vec![0, 0]));
    // Another record of the same patient: permitted.
    let d = evaluate(
        &ask(validator_view(&key, &[(ICD10, "J45.909")])),
        std::slice::from_ref(&on_chain),
        T0,
        1,
    );
    assert!(d.is_permit(), "{d:?}");
    // The key holder (clear codes and the class's tags) reaches the same verdicts.
    let holder = RecordFacts {
        codes: Some(vec![(ICD10.into(), "F20.9".into())]),
        ..validator_view(&key, &[(ICD10, "F20.9")])
    };
    assert!(!evaluate(&ask(holder), &[on_chain], T0, 1).is_permit());
}

#[test]
fn attack_tags_of_another_patient_match_nothing() {
    // Mallory copies the blinded deny of Alice's consent into her own (or a writer tags Alice's
    // record with Mallory's key): tags are per patient, so neither matches Alice's F20.9.
    let w = world();
    let alice = ConsentTagKey::for_patient(&w.patient);
    let mut rng = ChaCha20Rng::seed_from_u64(22);
    let mallory = ConsentTagKey::for_patient(&Identity::generate(&mut rng));
    assert_ne!(alice.tag(ICD10, "F20.9"), mallory.tag(ICD10, "F20.9"));
    let foreign = st(schizophrenia_consent(&w).blind(&mallory));
    let d = evaluate(
        &req(
            &w,
            w.doctor,
            vec![],
            Action::Read,
            Purpose::Treat,
            validator_view(&alice, &[(ICD10, "F20.9")]),
        ),
        &[foreign],
        T0,
        1,
    );
    // The foreign tag is not Alice's F20.9: the permit applies (Alice's own deny is what
    // protects her, and only her key makes it).
    assert!(d.is_permit());
}

#[test]
fn attack_plaintext_codes_or_summary_on_chain_are_refused() {
    let w = world();
    let c = schizophrenia_consent(&w);
    // A wallet (or a forger holding the patient's key) signs the clear consent itself.
    let clear = c.to_bytes();
    let sig = PatientSignature::sign(&w.patient, &NET, domain::CONSENT_SIG, &clear);
    let err = Consent::from_grant(&NET, &clear, &sig).unwrap_err();
    assert_eq!(err, ConsentError::NotBlinded);
    assert_eq!(
        err.to_string(),
        "a consent on chain must carry no readable code and no summary"
    );
    // Blinded codes but the summary slipped back in.
    let key = ConsentTagKey::for_patient(&w.patient);
    let with_summary = Consent {
        summary: "F20.9".into(),
        ..c.blind(&key)
    };
    let doc = with_summary.to_bytes();
    let sig = PatientSignature::sign(&w.patient, &NET, domain::CONSENT_SIG, &doc);
    assert_eq!(
        Consent::from_grant(&NET, &doc, &sig).unwrap_err(),
        ConsentError::NotBlinded
    );
    // One clear code next to blinded ones, deep in the tree.
    let mut mixed = c.blind(&key);
    mixed.provisions[0].provisions[0]
        .classes
        .push(DataClass::Code {
            system: ICD10.into(),
            code: "F20.9".into(),
        });
    let doc = mixed.to_bytes();
    let sig = PatientSignature::sign(&w.patient, &NET, domain::CONSENT_SIG, &doc);
    assert_eq!(
        Consent::from_grant(&NET, &doc, &sig).unwrap_err(),
        ConsentError::NotBlinded
    );
}

#[test]
fn a_year_bounds_the_validators_data_period_check() {
    let w = world();
    let y2024 = crate::fhir::parse_datetime_ms("2024").unwrap();
    let y2025 = crate::fhir::parse_datetime_ms("2025").unwrap();
    let march = Period::between(
        crate::fhir::parse_datetime_ms("2024-03-01").unwrap(),
        crate::fhir::parse_datetime_ms("2024-03-31").unwrap(),
    );
    let whole_year = Period::between(y2024, y2025 - 1);
    let facts = |date| RecordFacts {
        date,
        ..obs(&[], None)
    };
    let in_2024 = RecordDate::Within {
        first_ms: y2024,
        last_ms: y2025 - 1,
    };
    let permit = |p: Period| {
        st(consent(
            &w,
            vec![Provision::permit()
                .actor(Actor::Party(w.doctor))
                .data_within(p)],
        ))
    };
    let deny = |p: Period| {
        st(consent(
            &w,
            vec![
                Provision::permit().actor(Actor::Party(w.doctor)),
                Provision::deny().data_within(p),
            ],
        ))
    };
    let verdict = |cs: ConsentState, date| {
        evaluate(
            &req(
                &w,
                w.doctor,
                vec![],
                Action::Read,
                Purpose::Treat,
                facts(date),
            ),
            &[cs],
            T0,
            1,
        )
        .is_permit()
    };
    // A permit for March 2024 may cover a record of 2024 (the key holder decides), never one of
    // 2023; a permit for all of 2024 certainly covers it.
    assert!(verdict(permit(march), in_2024));
    assert!(!verdict(
        permit(march),
        RecordDate::Within {
            first_ms: y2024 - 365 * DAY,
            last_ms: y2024 - 1
        }
    ));
    assert!(verdict(permit(whole_year), in_2024));
    // A deny for March 2024 is left to the key holder; a deny for all of 2024 is enforced.
    assert!(verdict(deny(march), in_2024));
    assert!(!verdict(deny(whole_year), in_2024));
    // The key holder, with the exact date, is strict both ways.
    let in_march = RecordDate::At(crate::fhir::parse_datetime_ms("2024-03-15").unwrap());
    let in_may = RecordDate::At(crate::fhir::parse_datetime_ms("2024-05-15").unwrap());
    assert!(!verdict(deny(march), in_march));
    assert!(verdict(deny(march), in_may));
    assert!(!verdict(permit(march), in_may));
    // A withheld date (a Patient's class) may be in any period; an undated record is in none.
    assert!(verdict(permit(march), RecordDate::Unknown));
    assert!(verdict(deny(march), RecordDate::Unknown));
    assert!(!verdict(permit(march), RecordDate::Undated));
}

#[test]
fn denials_tell_the_requester_nothing_of_the_consent() {
    let w = world();
    let key = ConsentTagKey::for_patient(&w.patient);
    let on_chain = st(schizophrenia_consent(&w).blind(&key));
    let d = evaluate(
        &req(
            &w,
            w.doctor,
            vec![],
            Action::Read,
            Purpose::Treat,
            validator_view(&key, &[(ICD10, "F20.9")]),
        ),
        std::slice::from_ref(&on_chain),
        T0,
        1,
    );
    let Decision::Deny(reason) = d else {
        panic!("not denied")
    };
    let denial = Denial::new(reason.clone());
    // The requester's view: generic, whatever the reason.
    for r in [
        reason.clone(),
        DenyReason::NoConsent,
        DenyReason::Revoked,
        DenyReason::OutOfPeriod,
        DenyReason::EmergencyRefused,
    ] {
        let told = Denial::new(r).to_string();
        assert_eq!(told, Denial::GENERIC);
    }
    let dbg = format!("{denial:?}");
    assert!(!dbg.contains("provision") && !dbg.contains(&on_chain.id.to_string()[..12]));
    // What concerns the request itself is said.
    assert_eq!(
        Denial::new(DenyReason::NotAClinician).to_string(),
        "emergency access needs a clinician credential from a member institution"
    );
    // The patient's view: which consent, which provision.
    let DenyReason::DeniedBy(by) = denial.detail() else {
        panic!("detail lost")
    };
    assert_eq!(by.consent, on_chain.id);
    assert!(denial.detail().to_string().ends_with("provision 1.1"));
}

#[test]
fn a_blinded_consent_round_trips_through_fhir_and_bytes() {
    let w = world();
    let blinded = schizophrenia_consent(&w).blind(&ConsentTagKey::for_patient(&w.patient));
    assert_eq!(Consent::from_bytes(&blinded.to_bytes()).unwrap(), blinded);
    let fhir = consent_to_fhir(&blinded);
    let text = fhir.to_string();
    assert!(text.contains("urn:medchain:code-tag") && !text.contains("F20.9"));
    assert_eq!(consent_from_fhir(&fhir).unwrap(), blinded);
    // A tag that is not 32 hex digits is refused.
    let bad = text.replace(
        &ConsentTagKey::for_patient(&w.patient)
            .tag(ICD10, "F20.9")
            .to_string(),
        "not-hex",
    );
    assert!(consent_from_fhir(&serde_json::from_str(&bad).unwrap()).is_err());
    // Search grants are made from the clear copy only.
    let genesis = crate::genesis::tests::network(2, 0, 1).0;
    let err = search_grants(&blinded, &w.patient, &w.doctor, &[], &genesis, &[], T0).unwrap_err();
    assert_eq!(err, SearchDelegationError::Blinded);
}
