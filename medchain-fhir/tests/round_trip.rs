//! Property tests: generated valid R4 resources (Observations, Patients, Conditions and
//! collection Bundles of them with `urn:uuid:` references) validate with no issue under both
//! profiles, and round-trip unchanged through validate → seal → open.

use medchain_core::genesis::FhirProfile;
use medchain_core::keys::Identity;
use medchain_fhir::{fast_path_is_clean, seal_validated, validate, validate_exact, Options};
use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fn text() -> impl Strategy<Value = String> {
    // FHIR strings: non-empty; any characters but controls (JSON-escaped below).
    "[^\u{0}-\u{1f}]{1,24}".prop_map(|s| serde_json::to_string(&s).expect("a JSON string"))
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][A-Za-z0-9.-]{0,15}"
}

fn decimal() -> impl Strategy<Value = String> {
    (
        any::<bool>(),
        0u32..1_000_000,
        proptest::option::of(0u32..10_000),
    )
        .prop_map(|(neg, int, frac)| {
            let sign = if neg && int > 0 { "-" } else { "" };
            match frac {
                Some(f) => format!("{sign}{int}.{f:04}"),
                None => format!("{sign}{int}"),
            }
        })
}

fn date() -> impl Strategy<Value = String> {
    (1900u32..2100, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| format!("{y}-{m:02}-{d:02}"))
}

fn date_time() -> impl Strategy<Value = String> {
    (
        date(),
        0u32..24,
        0u32..60,
        0u32..60,
        prop_oneof![
            Just("Z".to_owned()),
            (0u32..14, prop_oneof![Just('+'), Just('-')])
                .prop_map(|(h, s)| format!("{s}{h:02}:00"))
        ],
    )
        .prop_map(|(d, h, m, s, z)| format!("{d}T{h:02}:{m:02}:{s:02}{z}"))
}

fn uuid() -> impl Strategy<Value = String> {
    any::<[u8; 16]>().prop_map(|b| {
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "urn:uuid:{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    })
}

fn observation(subject: String) -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("final"), Just("amended"), Just("preliminary"), Just("registered")],
        token(),
        date_time(),
        decimal(),
        text(),
    )
        .prop_map(move |(status, code, when, value, unit)| {
            format!(
                r#"{{"resourceType":"Observation","status":"{status}","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"{code}"}}]}},"subject":{{"reference":"{subject}"}},"effectiveDateTime":"{when}","valueQuantity":{{"value":{value},"unit":{unit}}}}}"#
            )
        })
}

fn patient() -> impl Strategy<Value = String> {
    (
        token(),
        prop_oneof![Just("female"), Just("male"), Just("other"), Just("unknown")],
        date(),
        text(),
        proptest::collection::vec(text(), 1..3),
    )
        .prop_map(|(id, gender, born, family, given)| {
            format!(
                r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"urn:oid:1.2.3","value":"{id}"}}],"name":[{{"family":{family},"given":[{}]}}],"gender":"{gender}","birthDate":"{born}"}}"#,
                given.join(",")
            )
        })
}

fn condition(subject: String) -> impl Strategy<Value = String> {
    (
        prop_oneof![Just("active"), Just("resolved"), Just("remission")],
        token(),
        date(),
    )
        .prop_map(move |(clinical, code, recorded)| {
            format!(
                r#"{{"resourceType":"Condition","clinicalStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"{clinical}"}}]}},"verificationStatus":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-ver-status","code":"confirmed"}}]}},"category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/condition-category","code":"problem-list-item"}}]}}],"code":{{"coding":[{{"system":"http://snomed.info/sct","code":"{code}"}}]}},"subject":{{"reference":"{subject}"}},"onsetDateTime":"{recorded}","recordedDate":"{recorded}"}}"#
            )
        })
}

/// A collection Bundle: a Patient and Observations and Conditions referring to it by its
/// `urn:uuid:` fullUrl.
fn bundle() -> impl Strategy<Value = String> {
    (uuid(), patient()).prop_flat_map(|(pid, p)| {
        let entries = proptest::collection::vec(
            (
                uuid(),
                prop_oneof![observation(pid.clone()), condition(pid.clone())],
            ),
            0..6,
        );
        entries.prop_map(move |rest| {
            let mut all = vec![format!(r#"{{"fullUrl":"{pid}","resource":{p}}}"#)];
            // Distinct fullUrls (a repeated random uuid would be a different, invalid case).
            for (i, (u, r)) in rest.iter().enumerate() {
                let u = format!("{}{:02x}", &u[..u.len() - 2], i);
                all.push(format!(r#"{{"fullUrl":"{u}","resource":{r}}}"#));
            }
            format!(
                r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#,
                all.join(",")
            )
        })
    })
}

fn resource() -> impl Strategy<Value = String> {
    prop_oneof![
        observation("Patient/p1".into()),
        patient(),
        condition("Patient/p1".into()),
        bundle(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn valid_resources_validate_and_round_trip_through_seal_and_open(
        json in resource(),
        seed in any::<u64>(),
    ) {
        let bytes = json.as_bytes();
        for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
            let report = validate(bytes, &Options::new(profile));
            prop_assert!(report.issues().is_empty(), "{:?}: {}\n{}", profile, report, json);
            // Valid resources take the fast path, with the exact path's (empty) report.
            prop_assert!(fast_path_is_clean(bytes, &Options::new(profile)), "{:?}\n{}", profile, json);
            prop_assert_eq!(&report, &validate_exact(bytes, &Options::new(profile)));
        }
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let patient = Identity::generate(&mut rng);
        let reader = Identity::generate(&mut rng);
        let options = Options::new(FhirProfile::UsCore);
        let sealed = seal_validated(bytes, &options, &patient.public(), &[reader.public()], &mut rng)
            .expect("a valid resource seals");
        for who in [&patient, &reader] {
            let opened = sealed.record.open(who).expect("a reader opens");
            prop_assert_eq!(opened.payload(), bytes);
            prop_assert_eq!(validate(opened.payload(), &options), sealed.report.clone());
        }
    }

    #[test]
    fn validation_never_panics_on_mutated_resources(
        json in resource(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
    ) {
        let mut bytes = json.into_bytes();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        // Any outcome is fine; a panic or a hang is not.
        for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
            let options = Options::new(profile);
            let report = validate(&bytes, &options);
            // Soundness: the fast path answers only for what has no issue at all.
            prop_assert_eq!(&report, &validate_exact(&bytes, &options));
            if fast_path_is_clean(&bytes, &options) {
                prop_assert!(report.issues().is_empty());
            }
        }
    }
}
