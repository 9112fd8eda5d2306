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
        date_ms: date,
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
    assert_eq!(Consent::from_grant(&NET, &document, &patient).unwrap(), c);
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
    let mut other = c.clone();
    other.summary = "changed".into();
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
                date_ms: Some(T0),
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
