//! De-identification for research (HIPAA Safe Harbor, `consent::deidentify`): the table of
//! FHIR shapes of issue #20 (every leak the privacy review found, each as its own case, and
//! the usual US Core shapes) and the planted-identifier property.
//!
//! Every case checks three things: the listed identifiers are gone from the serialized output,
//! the listed research fields survive with the listed values, and the output as a whole keeps
//! the invariants (no forbidden element name anywhere, no date finer than a year, no age over
//! 89 outside the "90 or older" category).

use medchain_core::consent::{deidentify, ReleaseClock, StudyKey};
use medchain_core::fhir;
use medchain_core::testkit::TestNet;
use proptest::prelude::*;
use serde_json::{json, Value};

const UCUM: &str = "http://unitsofmeasure.org";
const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";

/// The release clock of these tests: the chain's tip at 2026-11-25.
fn clock() -> ReleaseClock {
    clock_at("2026-11-25")
}

fn clock_at(date: &str) -> ReleaseClock {
    let mut tip = TestNet::new(1, 1, 0).tip().clone();
    tip.timestamp_ms = fhir::parse_datetime_ms(date).expect("test date");
    ReleaseClock::at_tip(&tip)
}

fn study() -> StudyKey {
    StudyKey::from_secret([42; 32], "table-study")
}

/// One FHIR shape: what goes in, which strings must be gone, which research fields must
/// survive (JSON pointer → value; `null` = absent, `"$pseudonym"` = a study pseudonym).
struct Case {
    name: &'static str,
    input: Value,
    gone: Vec<&'static str>,
    kept: Vec<(&'static str, Value)>,
}

fn case(
    name: &'static str,
    input: Value,
    gone: &[&'static str],
    kept: &[(&'static str, Value)],
) -> Case {
    Case {
        name,
        input,
        gone: gone.to_vec(),
        kept: kept.to_vec(),
    }
}

fn coding(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

fn ninety() -> Value {
    json!({"value": 90, "comparator": ">=", "unit": "a", "system": UCUM, "code": "a"})
}

fn is_pseudonym(s: &str) -> bool {
    let hex = s
        .rsplit_once('/')
        .map_or(s, |(t, h)| if fhir::is_r4_resource_type(t) { h } else { s });
    let hex = hex.strip_prefix('#').unwrap_or(hex);
    hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Element names that must never appear in a de-identified resource.
const FORBIDDEN_KEYS: &[&str] = &[
    "name",
    "given",
    "family",
    "telecom",
    "contact",
    "photo",
    "identifier",
    "text",
    "div",
    "note",
    "comment",
    "description",
    "conclusion",
    "title",
    "data",
    "display",
    "payload",
    "line",
    "city",
    "district",
    "postalCode",
    "uid",
    "location",
    "udiCarrier",
    "serialNumber",
    "lotNumber",
    "deviceName",
    "modelNumber",
    "distinctIdentifier",
    "masterIdentifier",
    "accessionIdentifier",
    "preAdmissionIdentifier",
    "subscriberId",
    "preAuthRef",
    "requisition",
    "patientInstruction",
    "valueString",
    "valueHumanName",
    "valueAddress",
    "valueContactPoint",
    "valueIdentifier",
    "valueUrl",
    "valueUri",
    "valueAttachment",
    "valueReference",
    "valueMarkdown",
    "valueSampledData",
    "valueTime",
    "onsetString",
    "ageString",
    "bornDate",
    "bornString",
    "bornPeriod",
    "meta",
    "position",
    "etag",
    "endpoint",
    "performer",
    "requester",
    "recorder",
    "asserter",
    "author",
    "sender",
    "recipient",
    "collector",
];

/// Whether `s` holds an ISO-like date finer than a year (`YYYY-MM`) or a slashed date.
fn has_fine_date(s: &str) -> bool {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    (0..b.len()).any(|i| {
        let iso = (0..4).all(|k| digit(i + k))
            && (i == 0 || !digit(i - 1))
            && b.get(i + 4) == Some(&b'-')
            && digit(i + 5)
            && digit(i + 6)
            && matches!(
                &s[i + 5..i + 7],
                "01" | "02" | "03" | "04" | "05" | "06" | "07" | "08" | "09" | "10" | "11" | "12"
            )
            && matches!(b.get(i + 7), None | Some(b'-') | Some(b'T'));
        let slashed = digit(i) && b.get(i + 1).is_some_and(|c| *c == b'/' || digit(i + 1)) && {
            let rest = &s[i..];
            rest.split('/').count() == 3
                && rest
                    .split('/')
                    .all(|p| !p.is_empty() && p.bytes().take(4).all(|c| c.is_ascii_digit()))
        };
        iso || slashed
    })
}

/// The invariants every de-identified resource keeps.
fn check_invariants(name: &str, v: &Value) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                assert!(
                    !FORBIDDEN_KEYS.contains(&k.as_str()) && !k.starts_with('_'),
                    "{name}: forbidden element {k} in {v}"
                );
                if k == "url" {
                    assert!(
                        map.contains_key("extension") || map.keys().any(|k| k.starts_with("value")),
                        "{name}: a url outside an extension: {v}"
                    );
                }
                check_invariants(name, child);
            }
            // Ages: a quantity in a time unit is at most 89 years, or the 90+ category.
            if let (Some(x), Some(code)) = (
                map.get("value").and_then(Value::as_f64),
                map.get("code").and_then(Value::as_str),
            ) {
                let per_year = match code {
                    "s" => 1.0 / 31_557_600.0,
                    "min" => 1.0 / 525_960.0,
                    "h" => 1.0 / 8766.0,
                    "d" => 1.0 / 365.25,
                    "wk" => 7.0 / 365.25,
                    "mo" => 1.0 / 12.0,
                    "a" => 1.0,
                    _ => 0.0,
                };
                assert!(
                    x * per_year <= 89.0 || (x == 90.0 && code == "a"),
                    "{name}: an age over 89 survived: {v}"
                );
            }
        }
        Value::Array(items) => items.iter().for_each(|i| check_invariants(name, i)),
        Value::String(s) => {
            assert!(!has_fine_date(s), "{name}: a date finer than a year: {s}");
        }
        _ => {}
    }
}

fn run(c: &Case) -> Value {
    let out =
        deidentify(&c.input, &study(), &clock()).unwrap_or_else(|e| panic!("{}: {e}", c.name));
    let text = out.to_string();
    for secret in &c.gone {
        assert!(
            !text.contains(secret),
            "{}: {secret:?} survived in {text}",
            c.name
        );
    }
    for (ptr, want) in &c.kept {
        let got = out.pointer(ptr);
        match want {
            Value::Null => assert!(got.is_none(), "{}: {ptr} should be gone: {text}", c.name),
            Value::String(s) if s == "$pseudonym" => assert!(
                got.and_then(Value::as_str).is_some_and(is_pseudonym),
                "{}: {ptr} should be a pseudonym: {text}",
                c.name
            ),
            _ => assert_eq!(got, Some(want), "{}: {ptr} in {text}", c.name),
        }
    }
    check_invariants(c.name, &out);
    out
}

#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    vec![
        // ---- names -------------------------------------------------------------------------
        case(
            "names: mixed HumanName array",
            json!({"resourceType": "Patient", "gender": "female",
                "name": [{"family": "Ruiz", "given": ["Ana"]}, {"text": "Ana Ruiz"}]}),
            &["Ruiz", "Ana"],
            &[("/gender", json!("female")), ("/name", Value::Null)],
        ),
        case(
            "names: _family-only entries",
            json!({"resourceType": "Patient", "gender": "male",
                "name": [{"_family": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/humanname-own-name", "valueString": "Okafor"}]},
                          "_given": [{"extension": [{"url": "http://example.org/given", "valueString": "Chidi"}]}]}]}),
            &["Okafor", "Chidi"],
            &[("/gender", json!("male"))],
        ),
        case(
            "names: extension valueHumanName",
            json!({"resourceType": "Patient", "gender": "male",
                "extension": [{"url": "http://example.org/fhir/StructureDefinition/alias",
                               "valueHumanName": {"family": "Nakamura", "given": ["Kenji"]}}]}),
            &["Nakamura", "Kenji", "alias"],
            &[("/extension", Value::Null)],
        ),
        case(
            "names: mothers-maiden-name valueString",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
                               "valueString": "Whitfield"}]}),
            &["Whitfield", "mothersMaidenName"],
            &[("/extension", Value::Null)],
        ),
        case(
            "names: FamilyMemberHistory.name",
            json!({"resourceType": "FamilyMemberHistory", "status": "completed",
                "patient": {"reference": "Patient/p1"}, "name": "Rosa Delgado",
                "relationship": coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH"),
                "condition": [{"code": coding(SNOMED, "254837009")}]}),
            &["Rosa", "Delgado"],
            &[
                (
                    "/relationship",
                    coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "MTH"),
                ),
                ("/condition/0/code", coding(SNOMED, "254837009")),
                ("/patient/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "names: Account.name",
            json!({"resourceType": "Account", "status": "active", "name": "Ruiz household account",
                "type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "PBILLACCT"),
                "subject": [{"reference": "Patient/p1", "display": "Ana Ruiz"}]}),
            &["Ruiz", "household"],
            &[
                ("/status", json!("active")),
                (
                    "/type",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                        "PBILLACCT",
                    ),
                ),
            ],
        ),
        // ---- addresses ---------------------------------------------------------------------
        case(
            "addresses: extension valueAddress (birthPlace)",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
                               "valueAddress": {"city": "Guadalajara", "state": "Jalisco", "country": "MX"}}]}),
            &["Guadalajara", "Jalisco", "birthPlace"],
            &[("/extension", Value::Null)],
        ),
        case(
            "addresses: Claim.accident.locationAddress",
            json!({"resourceType": "Claim", "status": "active", "use": "claim",
                "type": coding("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
                "patient": {"reference": "Patient/p1"}, "created": "2025-06-02",
                "accident": {"date": "2025-05-30", "type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
                    "locationAddress": {"line": ["42 Elm Road"], "city": "Peoria", "postalCode": "61602", "state": "IL"}}}),
            &["Elm", "Peoria", "61602", "2025-05"],
            &[
                ("/accident/date", json!("2025")),
                ("/accident/locationAddress", Value::Null),
                ("/created", json!("2025")),
                (
                    "/type",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/claim-type",
                        "professional",
                    ),
                ),
            ],
        ),
        // ---- dates -------------------------------------------------------------------------
        case(
            "dates: in arrays (Timing.event)",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
                "dosageInstruction": [{"timing": {"event": ["2025-03-04T08:00:00Z", "2025-03-05T08:00:00Z"]}}]}),
            &["2025-03", "08:00"],
            &[("/dosageInstruction/0/timing/event", json!(["2025", "2025"]))],
        ),
        case(
            "dates: dateTime without a time zone",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "8867-4"),
                "effectiveDateTime": "2024-03-05T10:00:00", "valueQuantity": {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}}),
            &["2024-03", "10:00"],
            &[
                ("/effectiveDateTime", json!("2024")),
                (
                    "/valueQuantity",
                    json!({"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}),
                ),
            ],
        ),
        case(
            "dates: non-ISO dates",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "44054006"),
                "subject": {"reference": "Patient/p1"},
                "onsetDateTime": "03/05/2024", "recordedDate": "5 March 2024",
                "abatementDateTime": "20250611"}),
            &["03/05", "March", "20250611"],
            &[
                ("/onsetDateTime", json!("2024")),
                ("/recordedDate", json!("2024")),
                ("/abatementDateTime", json!("2025")),
                ("/code", coding(SNOMED, "44054006")),
            ],
        ),
        case(
            "dates: patient-birthTime extension of a 95-year-old",
            json!({"resourceType": "Patient", "gender": "female", "birthDate": "1931-04-02",
                "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                              "valueDateTime": "1931-04-02T06:30:00-05:00"}]}}),
            &["1931", "06:30", "birthTime"],
            &[
                ("/birthDate", Value::Null),
                (
                    "/extension/0",
                    json!({"url": "urn:medchain:age-90-or-older", "valueBoolean": true}),
                ),
            ],
        ),
        case(
            "dates: FamilyMemberHistory.bornDate",
            json!({"resourceType": "FamilyMemberHistory", "status": "completed",
                "patient": {"reference": "Patient/p1"}, "bornDate": "1950-07-14",
                "relationship": coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FTH"),
                "sex": coding("http://hl7.org/fhir/administrative-gender", "male")}),
            &["1950", "07-14"],
            &[
                (
                    "/relationship",
                    coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FTH"),
                ),
                (
                    "/sex",
                    coding("http://hl7.org/fhir/administrative-gender", "male"),
                ),
            ],
        ),
        // ---- ages --------------------------------------------------------------------------
        case(
            "ages: valueQuantity {97, \"Years\"}",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "30525-0"),
                "valueQuantity": {"value": 97, "unit": "Years"}}),
            &["97"],
            &[
                ("/valueQuantity", ninety()),
                ("/code", coding(LOINC, "30525-0")),
            ],
        ),
        case(
            "ages: valueInteger under an age LOINC code",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "21612-7"),
                "valueInteger": 94}),
            &["94"],
            &[("/valueInteger", json!(90))],
        ),
        case(
            "ages: onsetAge in months",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "38341003"),
                "onsetAge": {"value": 1130, "unit": "mo", "system": UCUM, "code": "mo"}}),
            &["1130"],
            &[
                ("/onsetAge", ninety()),
                ("/code", coding(SNOMED, "38341003")),
            ],
        ),
        case(
            "ages: onsetString \"at age 94\"",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "38341003"),
                "onsetString": "at age 94"}),
            &["at age", "94"],
            &[
                ("/onsetString", Value::Null),
                ("/code", coding(SNOMED, "38341003")),
            ],
        ),
        case(
            "ages: extension integers",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://example.org/fhir/StructureDefinition/age-years", "valueInteger": 96},
                              {"url": "http://example.org/fhir/StructureDefinition/age", "valueAge": {"value": 96, "unit": "a"}}]}),
            &["age-years", "96"],
            &[("/extension", Value::Null), ("/gender", json!("female"))],
        ),
        case(
            "ages: release time is the chain's (birth year 90 years before the release)",
            json!({"resourceType": "Patient", "gender": "male", "birthDate": "1936-12-31"}),
            &["1936"],
            &[
                ("/birthDate", Value::Null),
                ("/extension/0/url", json!("urn:medchain:age-90-or-older")),
            ],
        ),
        // ---- identifiers under other keys --------------------------------------------------
        case(
            "identifiers: Bundle fullUrl",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [{
                "fullUrl": "https://ehr.example.org/fhir/Patient/MRN-448812",
                "resource": {"resourceType": "Patient", "id": "MRN-448812", "gender": "female"}}]}),
            &["MRN-448812", "ehr.example.org"],
            &[
                ("/entry/0/fullUrl", json!("$pseudonym")),
                ("/entry/0/resource/gender", json!("female")),
                ("/entry/0/resource/id", json!("$pseudonym")),
            ],
        ),
        case(
            "identifiers: Bundle response.location",
            json!({"resourceType": "Bundle", "type": "transaction-response", "entry": [{
                "response": {"status": "201 Created", "location": "Patient/998877/_history/1",
                             "etag": "W/\"1\"", "lastModified": "2026-01-02T03:04:05Z"}}]}),
            &["998877", "_history", "Created", "2026-01"],
            &[("/entry/0/response", json!({"status": "201"}))],
        ),
        case(
            "identifiers: Encounter.hospitalization.preAdmissionIdentifier",
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
                "hospitalization": {"preAdmissionIdentifier": {"system": "http://hospital.example.org/preadmit", "value": "PRE-20240305-77"},
                    "admitSource": coding("http://terminology.hl7.org/CodeSystem/admit-source", "emd")}}),
            &["PRE-20240305-77", "preadmit"],
            &[
                (
                    "/hospitalization",
                    json!({"admitSource": coding("http://terminology.hl7.org/CodeSystem/admit-source", "emd")}),
                ),
                (
                    "/class",
                    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"}),
                ),
            ],
        ),
        case(
            "identifiers: Specimen.accessionIdentifier",
            json!({"resourceType": "Specimen", "status": "available",
                "accessionIdentifier": {"system": "http://lab.example.org/accession", "value": "ACC-2024-556677"},
                "type": coding(SNOMED, "119297000"), "subject": {"reference": "Patient/p1"},
                "receivedTime": "2024-02-01T09:10:00Z"}),
            &["ACC-2024-556677", "accession"],
            &[
                ("/type", coding(SNOMED, "119297000")),
                ("/receivedTime", json!("2024")),
            ],
        ),
        case(
            "identifiers: DocumentReference.masterIdentifier",
            json!({"resourceType": "DocumentReference", "status": "current",
                "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.840.113619.2.55.3.4.998877"},
                "type": coding(LOINC, "18842-5"), "subject": {"reference": "Patient/p1"}}),
            &["113619", "998877"],
            &[
                ("/type", coding(LOINC, "18842-5")),
                ("/masterIdentifier", Value::Null),
            ],
        ),
        case(
            "identifiers: Coverage.subscriberId",
            json!({"resourceType": "Coverage", "status": "active", "subscriberId": "W123456789",
                "beneficiary": {"reference": "Patient/p1"}, "dependent": "01",
                "relationship": coding("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self"),
                "payor": [{"display": "Acme Health Plan"}],
                "class": [{"type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "MCPOL"), "value": "GRP-55521", "name": "Acme Gold"}]}),
            &["W123456789", "Acme", "GRP-55521"],
            &[
                ("/beneficiary/reference", json!("$pseudonym")),
                (
                    "/relationship",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/subscriber-relationship",
                        "self",
                    ),
                ),
                (
                    "/class/0",
                    json!({"type": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "MCPOL")}),
                ),
            ],
        ),
        case(
            "identifiers: Claim.insurance.preAuthRef",
            json!({"resourceType": "Claim", "status": "active", "use": "preauthorization",
                "patient": {"reference": "Patient/p1"},
                "insurance": [{"sequence": 1, "focal": true, "preAuthRef": ["PA-556677"],
                               "identifier": {"value": "INS-7781"}, "coverage": {"reference": "Coverage/c1"}}]}),
            &["PA-556677", "INS-7781"],
            &[
                ("/insurance/0/focal", json!(true)),
                ("/insurance/0/sequence", json!(1)),
                ("/use", json!("preauthorization")),
            ],
        ),
        case(
            "identifiers: Device.distinctIdentifier, UDI, serial and lot numbers",
            json!({"resourceType": "Device", "status": "active", "distinctIdentifier": "DI-00012345",
                "udiCarrier": [{"deviceIdentifier": "09504000059118", "carrierHRF": "(01)09504000059118(17)141120(10)7654321D(21)10987654d321"}],
                "serialNumber": "10987654d321", "lotNumber": "7654321D", "manufactureDate": "2013-02-01",
                "type": coding(SNOMED, "468063009"), "patient": {"reference": "Patient/p1"}}),
            &[
                "DI-00012345",
                "09504000059118",
                "10987654d321",
                "7654321D",
                "2013-02",
            ],
            &[
                ("/type", coding(SNOMED, "468063009")),
                ("/status", json!("active")),
            ],
        ),
        case(
            "identifiers: DICOM uids",
            json!({"resourceType": "ImagingStudy", "status": "available",
                "identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:2.16.124.113543.6003.1154777499.30246.19789.3503430045"}],
                "subject": {"reference": "Patient/p1"}, "started": "2017-01-01T11:01:20+03:00", "numberOfSeries": 1,
                "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
                "series": [{"uid": "2.16.124.113543.6003.2588828330.45298.17418.2723805630", "number": 3,
                    "modality": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"},
                    "instance": [{"uid": "2.16.124.113543.6003.189642796.63084.16748.2599092903",
                        "sopClass": {"system": "urn:ietf:rfc:3986", "code": "urn:oid:1.2.840.10008.5.1.4.1.1.2"}, "number": 1}]}]}),
            &["113543", "1154777499", "2588828330", "189642796", "10008"],
            &[
                (
                    "/modality/0",
                    json!({"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}),
                ),
                ("/numberOfSeries", json!(1)),
                ("/series/0/instance/0", json!({"number": 1})),
                ("/started", json!("2017")),
            ],
        ),
        case(
            "identifiers: extension valueIdentifier (an SSN)",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://example.org/fhir/StructureDefinition/ssn",
                               "valueIdentifier": {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"}}]}),
            &["123-45-6789", "us-ssn"],
            &[("/extension", Value::Null)],
        ),
        case(
            "identifiers: extension valueContactPoint",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://example.org/fhir/StructureDefinition/emergency-contact",
                               "valueContactPoint": {"system": "email", "value": "ana.ruiz@example.com"}}]}),
            &["ana.ruiz@example.com", "emergency-contact"],
            &[("/extension", Value::Null)],
        ),
        case(
            "identifiers: extension valueUrl",
            json!({"resourceType": "Patient", "gender": "female",
                "extension": [{"url": "http://example.org/fhir/StructureDefinition/homepage",
                               "valueUrl": "https://social.example/@anaruiz"}]}),
            &["anaruiz", "social.example"],
            &[("/extension", Value::Null)],
        ),
        // ---- attachments -------------------------------------------------------------------
        case(
            "attachments: Media data and title (a voice print)",
            json!({"resourceType": "Media", "status": "completed",
                "type": coding("http://terminology.hl7.org/CodeSystem/media-type", "audio"),
                "subject": {"reference": "Patient/p1"}, "createdDateTime": "2025-09-01T10:00:00Z",
                "content": {"contentType": "audio/wav", "data": "UklGRiQAAABXQVZFZm10IBAAAAAB",
                    "title": "Voice sample of Ana Ruiz", "url": "https://pacs.example.org/media/77", "size": 28}}),
            &["UklGRiQAAABXQVZF", "Voice", "Ruiz", "pacs.example.org"],
            &[
                ("/content", json!({"contentType": "audio/wav"})),
                (
                    "/type",
                    coding("http://terminology.hl7.org/CodeSystem/media-type", "audio"),
                ),
                ("/createdDateTime", json!("2025")),
            ],
        ),
        case(
            "attachments: DocumentReference photo (data, title, url)",
            json!({"resourceType": "DocumentReference", "status": "current",
                "type": coding(LOINC, "72170-4"), "subject": {"reference": "Patient/p1"},
                "content": [{"attachment": {"contentType": "image/jpeg", "data": "/9j/4AAQSkZJRgABAQ",
                    "title": "Photo of Ana Ruiz", "url": "Binary/photo-77", "hash": "2jmj7l5rSw0yVb/vlWAYkK/YBwk="}}]}),
            &["/9j/4AAQ", "Photo", "photo-77", "2jmj7l5r"],
            &[
                (
                    "/content/0",
                    json!({"attachment": {"contentType": "image/jpeg"}}),
                ),
                ("/type", coding(LOINC, "72170-4")),
            ],
        ),
        // ---- free text ---------------------------------------------------------------------
        case(
            "free text: Observation valueString",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "63512-8"),
                "valueString": "Lives with daughter Maria at 12 Oak St"}),
            &["Maria", "Oak St", "daughter"],
            &[
                ("/code", coding(LOINC, "63512-8")),
                ("/valueString", Value::Null),
            ],
        ),
        case(
            "free text: questionnaire answers",
            json!({"resourceType": "QuestionnaireResponse", "status": "completed",
            "subject": {"reference": "Patient/p1"}, "authored": "2025-04-02T12:00:00Z",
            "questionnaire": "http://clinic.example.org/Questionnaire/intake",
            "item": [
                {"linkId": "1", "text": "Who do you live with?", "answer": [{"valueString": "my husband Joe Ruiz"}]},
                {"linkId": "2", "text": "Little interest?", "answer": [{"valueCoding": {"system": LOINC, "code": "LA6569-3", "display": "Several days"}}]},
                {"linkId": "3", "answer": [{"valueInteger": 7}]}
            ]}),
            &[
                "husband",
                "Joe",
                "Ruiz",
                "Little interest",
                "Several days",
                "clinic.example.org",
            ],
            &[
                ("/item/0", json!({"linkId": "1"})),
                (
                    "/item/1/answer/0/valueCoding",
                    json!({"system": LOINC, "code": "LA6569-3"}),
                ),
                ("/item/2/answer/0/valueInteger", json!(7)),
                ("/authored", json!("2025")),
            ],
        ),
        case(
            "free text: DiagnosticReport.conclusion",
            json!({"resourceType": "DiagnosticReport", "status": "final", "code": coding(LOINC, "24627-2"),
                "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2025-01-10",
                "conclusion": "Ana Ruiz's scan shows a lesion; discussed with husband Joe.",
                "conclusionCode": [coding(SNOMED, "263654008")]}),
            &["Ruiz", "husband", "lesion"],
            &[
                ("/conclusionCode/0", coding(SNOMED, "263654008")),
                ("/effectiveDateTime", json!("2025")),
            ],
        ),
        case(
            "free text: AllergyIntolerance reaction.description",
            json!({"resourceType": "AllergyIntolerance", "patient": {"reference": "Patient/p1"},
                "code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "7980"),
                "reaction": [{"description": "Hives after Dr. Okafor gave penicillin at Mercy",
                    "manifestation": [coding(SNOMED, "247472004")], "severity": "moderate",
                    "note": [{"text": "called husband"}]}]}),
            &["Okafor", "Mercy", "Hives", "husband"],
            &[(
                "/reaction/0",
                json!({"manifestation": [coding(SNOMED, "247472004")], "severity": "moderate"}),
            )],
        ),
        case(
            "free text: DocumentReference.description",
            json!({"resourceType": "DocumentReference", "status": "current", "type": coding(LOINC, "18842-5"),
                "description": "Discharge letter for Ana Ruiz, room 4B", "date": "2025-02-03T04:05:06Z"}),
            &["Discharge letter", "Ruiz", "4B"],
            &[
                ("/date", json!("2025")),
                ("/type", coding(LOINC, "18842-5")),
            ],
        ),
        case(
            "free text: Communication.payload.contentString",
            json!({"resourceType": "Communication", "status": "completed",
                "category": [coding("http://terminology.hl7.org/CodeSystem/communication-category", "notification")],
                "payload": [{"contentString": "Ana, your results are ready, call 555-0147"},
                            {"contentAttachment": {"contentType": "application/pdf", "data": "JVBERi0xLjQK"}}],
                "sent": "2025-07-07T07:07:07Z", "sender": {"display": "Dr. Okafor"}}),
            &["results are ready", "555-0147", "JVBERi0x", "Okafor"],
            &[
                (
                    "/category/0",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/communication-category",
                        "notification",
                    ),
                ),
                ("/sent", json!("2025")),
            ],
        ),
        case(
            "free text: Appointment.comment",
            json!({"resourceType": "Appointment", "status": "booked",
                "comment": "Patient Ana Ruiz prefers mornings; call (217) 555-0147",
                "patientInstruction": "Bring your sister Lucia", "description": "Follow-up for Ana",
                "start": "2026-12-01T09:00:00Z", "end": "2026-12-01T09:30:00Z", "minutesDuration": 30,
                "participant": [{"actor": {"reference": "Patient/p1", "display": "Ana Ruiz"}, "status": "accepted"}]}),
            &["Ruiz", "mornings", "555-0147", "Lucia", "Follow-up"],
            &[
                ("/start", json!("2026")),
                ("/minutesDuration", json!(30)),
                ("/participant/0/status", json!("accepted")),
                ("/participant/0/actor/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "free text: the DataFrame's value_text source keeps the code, not the text",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "72166-2"),
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "449868002", "display": "Smokes tobacco daily"}],
                                          "text": "Ana says she smokes 5 a day since her divorce"}}),
            &["divorce", "Ana", "Smokes tobacco daily"],
            &[("/valueCodeableConcept", coding(SNOMED, "449868002"))],
        ),
        // ---- the rest of the brief: person-bearing elements anywhere --------------------
        case(
            "references: display and identifier dropped, reference pseudonymised",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "subject": {"reference": "Patient/MRN-448812", "display": "Ana Ruiz",
                            "identifier": {"system": "http://hospital.example.org/mrn", "value": "448812"}},
                "performer": [{"reference": "Practitioner/npi-1234567893", "display": "Dr. Chidi Okafor"}]}),
            &["MRN-448812", "448812", "Ruiz", "Okafor", "1234567893"],
            &[
                ("/subject/reference", json!("$pseudonym")),
                ("/subject/display", Value::Null),
                ("/subject/identifier", Value::Null),
                ("/performer", Value::Null),
            ],
        ),
        case(
            "narrative: text.div dropped",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "44054006"),
                "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Ana Ruiz, type 2 diabetes</div>"}}),
            &["Ruiz", "xhtml"],
            &[
                ("/text", Value::Null),
                ("/code", coding(SNOMED, "44054006")),
            ],
        ),
        case(
            "free text: note (Annotation) with its author",
            json!({"resourceType": "Procedure", "status": "completed", "code": coding(SNOMED, "80146002"),
                "note": [{"authorString": "Dr. Okafor", "time": "2024-05-05T05:05:05Z", "text": "Wife Maria waited outside"}]}),
            &["Okafor", "Maria", "2024-05"],
            &[
                ("/code", coding(SNOMED, "80146002")),
                ("/note", Value::Null),
            ],
        ),
        case(
            "free text: CodeableConcept.text and Coding.display",
            json!({"resourceType": "Condition", "code": {"coding": [{"system": SNOMED, "code": "44054006", "display": "Diabetes (Ana's sugar)", "userSelected": true}], "text": "Ana's sugar problem"}}),
            &["Ana", "sugar", "userSelected"],
            &[("/code", coding(SNOMED, "44054006"))],
        ),
        case(
            "free text: a Quantity.unit that is not a unit",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "valueQuantity": {"value": 7, "unit": "per Ana Ruiz", "system": "http://hospital.example.org/units", "code": "ruiz"}}),
            &["Ruiz", "ruiz", "hospital.example.org"],
            &[("/valueQuantity", json!({"value": 7}))],
        ),
        case(
            "identifiers: a local code system carrying an MRN",
            json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://hospital.example.org/mrn", "code": "998877"}, {"system": LOINC, "code": "2339-0"}]}}),
            &["998877", "hospital.example.org"],
            &[("/code", coding(LOINC, "2339-0"))],
        ),
        case(
            "addresses: zip code (and its first 3 digits) and city dropped, state kept",
            json!({"resourceType": "Patient", "gender": "female",
                "address": [{"use": "home", "line": ["1 Main St", "Apt 2"], "city": "Springfield", "district": "Sangamon",
                             "postalCode": "62701-1234", "state": "IL", "country": "US", "period": {"start": "2010-04-01"}}]}),
            &["Main", "Springfield", "Sangamon", "62701", "627", "2010"],
            &[("/address/0", json!({"state": "IL", "country": "US"}))],
        ),
        case(
            "addresses: a state written out is normalised to its USPS code",
            json!({"resourceType": "Patient", "address": [{"city": "Austin", "state": "Texas", "postalCode": "78701"}]}),
            &["Austin", "Texas", "787"],
            &[("/address/0", json!({"state": "TX"}))],
        ),
        case(
            "addresses: a non-US subdivision is dropped, the country kept",
            json!({"resourceType": "Patient", "address": [{"city": "Ottawa", "state": "ON", "postalCode": "K1A 0B1", "country": "CA"}]}),
            &["Ottawa", "ON", "K1A"],
            &[("/address/0", json!({"country": "CA"}))],
        ),
        case(
            "contained: a Practitioner's name dropped, a Medication kept and linked",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "contained": [
                    {"resourceType": "Medication", "id": "med1", "code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975")},
                    {"resourceType": "Practitioner", "id": "doc1", "name": [{"family": "Okafor"}],
                     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]}
                ],
                "medicationReference": {"reference": "#med1"}, "requester": {"reference": "#doc1"}}),
            &["Okafor", "1234567893", "med1", "doc1"],
            &[
                (
                    "/contained/0/code",
                    coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
                ),
                ("/contained/1/id", json!("$pseudonym")),
                ("/contained/1/name", Value::Null),
                ("/contained/1/identifier", Value::Null),
                ("/medicationReference/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "contained: a resource type research has no allow-list for is dropped",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "contained": [{"resourceType": "RelatedPerson", "id": "rp", "name": [{"family": "Delgado"}],
                               "telecom": [{"value": "555-0199"}]}]}),
            &["Delgado", "555-0199", "RelatedPerson"],
            &[("/contained", Value::Null)],
        ),
        case(
            "identifiers: keys ending in Id or naming a uid or URL, at any depth",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "specimenId": "S-0045", "encounterId": "E-7781", "studyUid": "1.2.3.4.5.6",
                "component": [{"code": coding(LOINC, "2339-0"), "labId": "LAB-991", "reportUrl": "https://lab.example.org/r/991"}]}),
            &[
                "S-0045",
                "E-7781",
                "1.2.3.4.5.6",
                "LAB-991",
                "lab.example.org",
            ],
            &[("/component/0", json!({"code": coding(LOINC, "2339-0")}))],
        ),
        case(
            "string arrays under unknown keys",
            json!({"resourceType": "Patient", "gender": "male", "aliases": ["Chidi O.", "C. Okafor"],
                "communication": [{"language": coding("urn:ietf:bcp:47", "ig"), "preferred": true, "notes": ["speaks with son Emeka"]}]}),
            &["Okafor", "Chidi", "Emeka"],
            &[(
                "/communication/0",
                json!({"language": coding("urn:ietf:bcp:47", "ig"), "preferred": true}),
            )],
        ),
        case(
            "Patient: telecom, photo, contact, link, generalPractitioner, managingOrganization",
            json!({"resourceType": "Patient", "gender": "female", "birthDate": "1980-02-29",
                "telecom": [{"system": "phone", "value": "(217) 555-0147"}, {"system": "email", "value": "ana@example.com"}],
                "photo": [{"contentType": "image/png", "data": "iVBORw0KGgo"}],
                "contact": [{"relationship": [coding("http://terminology.hl7.org/CodeSystem/v2-0131", "N")], "name": {"family": "Ruiz", "given": ["Joe"]}, "telecom": [{"value": "555-0148"}]}],
                "link": [{"other": {"reference": "Patient/other-7"}, "type": "seealso"}],
                "generalPractitioner": [{"reference": "Practitioner/p9", "display": "Dr. Okafor"}],
                "managingOrganization": {"display": "Mercy Clinic"}}),
            &[
                "555-0147",
                "ana@example.com",
                "iVBORw0KGgo",
                "Ruiz",
                "555-0148",
                "other-7",
                "Okafor",
                "Mercy",
                "02-29",
            ],
            &[("/birthDate", json!("1980")), ("/gender", json!("female"))],
        ),
        case(
            "Practitioner: name, NPI, telecom and address below the state",
            json!({"resourceType": "Practitioner", "gender": "male",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
                "name": [{"family": "Okafor", "given": ["Chidi"], "prefix": ["Dr."]}],
                "address": [{"line": ["500 Hospital Dr"], "city": "Springfield", "state": "IL"}],
                "qualification": [{"code": coding("http://nucc.org/provider-taxonomy", "207Q00000X"), "issuer": {"display": "Illinois Board"}}]}),
            &[
                "1234567893",
                "Okafor",
                "Chidi",
                "Hospital Dr",
                "Springfield",
                "Illinois Board",
            ],
            &[
                (
                    "/qualification/0",
                    json!({"code": coding("http://nucc.org/provider-taxonomy", "207Q00000X")}),
                ),
                ("/address", Value::Null),
            ],
        ),
        case(
            "Organization: name, telecom, address below the state",
            json!({"resourceType": "Organization", "active": true, "name": "Mercy Clinic of Springfield",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1144221847"}],
                "telecom": [{"value": "(217) 555-0100"}],
                "address": [{"line": ["1 Mercy Way"], "city": "Springfield", "postalCode": "62702", "state": "IL"}],
                "type": [coding("http://terminology.hl7.org/CodeSystem/organization-type", "prov")]}),
            &["Mercy", "1144221847", "555-0100", "62702"],
            &[
                ("/address/0", json!({"state": "IL"})),
                ("/active", json!(true)),
            ],
        ),
        case(
            "Location: name, position, telecom",
            json!({"resourceType": "Location", "status": "active", "name": "Ward 3, bed 12",
                "position": {"longitude": -89.6501, "latitude": 39.7817},
                "physicalType": coding("http://terminology.hl7.org/CodeSystem/location-physical-type", "bd"),
                "address": {"line": ["1 Mercy Way"], "state": "IL"}}),
            &["Ward", "89.65", "39.78"],
            &[
                ("/address", json!({"state": "IL"})),
                ("/status", json!("active")),
            ],
        ),
        case(
            "ages: onsetAge in days",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "38341003"),
                "onsetAge": {"value": 34000, "unit": "days", "system": UCUM, "code": "d"}}),
            &["34000"],
            &[("/onsetAge", ninety())],
        ),
        case(
            "ages: FamilyMemberHistory ageAge in weeks",
            json!({"resourceType": "FamilyMemberHistory", "status": "completed", "patient": {"reference": "Patient/p1"},
                "relationship": coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GRMTH"),
                "ageAge": {"value": 4900, "unit": "wk", "system": UCUM, "code": "wk"}}),
            &["4900"],
            &[("/ageAge", ninety())],
        ),
        case(
            "ages: in hours, minutes and seconds",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "30525-0"),
            "component": [
                {"code": coding(LOINC, "30525-0"), "valueQuantity": {"value": 815_000, "unit": "h", "system": UCUM, "code": "h"}},
                {"code": coding(LOINC, "30525-0"), "valueQuantity": {"value": 49_000_000, "unit": "min", "system": UCUM, "code": "min"}},
                {"code": coding(LOINC, "30525-0"), "valueQuantity": {"value": 2_900_000_000_u64, "unit": "s", "system": UCUM, "code": "s"}}
            ]}),
            &["815000", "49000000", "2900000000"],
            &[
                ("/component/0/valueQuantity", ninety()),
                ("/component/1/valueQuantity", ninety()),
                ("/component/2/valueQuantity", ninety()),
            ],
        ),
        case(
            "ages: an age under 90 survives",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "44054006"), "recordedDate": "2024-01-15",
                "onsetAge": {"value": 45, "unit": "a", "system": UCUM, "code": "a"}}),
            &["01-15"],
            &[
                (
                    "/onsetAge",
                    json!({"value": 45, "unit": "a", "system": UCUM, "code": "a"}),
                ),
                ("/recordedDate", json!("2024")),
            ],
        ),
        case(
            "ages: an age the release year makes 90 or older",
            json!({"resourceType": "Condition", "code": coding(SNOMED, "44054006"), "recordedDate": "2019-06-01",
                "onsetAge": {"value": 85, "unit": "a", "system": UCUM, "code": "a"}}),
            &["85"],
            &[("/onsetAge", ninety()), ("/recordedDate", json!("2019"))],
        ),
        case(
            "ages: valueInteger in a component under an age code",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "8867-4"),
                "component": [{"code": coding(LOINC, "29553-5"), "valueInteger": 101}]}),
            &["101"],
            &[("/component/0/valueInteger", json!(90))],
        ),
        case(
            "ages: referenceRange.age over 89",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": UCUM, "code": "mmol/L"},
                "referenceRange": [{"low": {"value": 3.9, "unit": "mmol/L"}, "high": {"value": 5.5, "unit": "mmol/L"},
                    "age": {"low": {"value": 65, "unit": "a", "system": UCUM, "code": "a"}, "high": {"value": 120, "unit": "a", "system": UCUM, "code": "a"}},
                    "text": "for Ana only"}]}),
            &["120", "for Ana"],
            &[
                (
                    "/referenceRange/0/age/low",
                    json!({"value": 65, "unit": "a", "system": UCUM, "code": "a"}),
                ),
                (
                    "/referenceRange/0/age/high",
                    json!({"value": 90, "unit": "a", "system": UCUM, "code": "a"}),
                ),
                (
                    "/referenceRange/0/low",
                    json!({"value": 3.9, "unit": "mmol/L"}),
                ),
            ],
        ),
        case(
            "ages: a relative's deceasedAge and condition onsetAge",
            json!({"resourceType": "FamilyMemberHistory", "status": "completed", "patient": {"reference": "Patient/p1"},
                "relationship": coding("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "GRFTH"),
                "deceasedAge": {"value": 96, "unit": "a", "system": UCUM, "code": "a"},
                "condition": [{"code": coding(SNOMED, "22298006"), "onsetAge": {"value": 62, "unit": "a", "system": UCUM, "code": "a"}}]}),
            &[],
            &[
                ("/deceasedAge", ninety()),
                (
                    "/condition/0/onsetAge",
                    json!({"value": 62, "unit": "a", "system": UCUM, "code": "a"}),
                ),
            ],
        ),
        case(
            "ages: a birth year under 90 survives as a year",
            json!({"resourceType": "Patient", "gender": "male", "birthDate": "1985-07-14"}),
            &["07-14"],
            &[("/birthDate", json!("1985")), ("/extension", Value::Null)],
        ),
        case(
            "dates: Patient.deceasedDateTime to its year",
            json!({"resourceType": "Patient", "gender": "male", "birthDate": "1950-01-01", "deceasedDateTime": "2023-08-09T23:10:00-05:00"}),
            &["08-09", "23:10"],
            &[
                ("/deceasedDateTime", json!("2023")),
                ("/birthDate", json!("1950")),
            ],
        ),
        case(
            "meta: source, tags, lastUpdated, versionId dropped",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "2339-0"),
                "meta": {"source": "#ehr-node-17", "versionId": "3", "lastUpdated": "2025-01-01T00:00:00Z",
                         "tag": [{"system": "http://hospital.example.org/tags", "code": "vip-ruiz"}]},
                "implicitRules": "http://hospital.example.org/rules", "language": "en-US"}),
            &["ehr-node-17", "vip-ruiz", "hospital.example.org"],
            &[("/meta", Value::Null), ("/status", json!("final"))],
        ),
        case(
            "Encounter: participant, location, serviceProvider dropped",
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "type": [coding(SNOMED, "185349003")], "subject": {"reference": "Patient/p1"},
                "participant": [{"individual": {"display": "Dr. Okafor"}}],
                "location": [{"location": {"display": "Ward 3 bed 12"}}],
                "serviceProvider": {"display": "Mercy Clinic"},
                "period": {"start": "2025-03-03T09:00:00Z", "end": "2025-03-03T09:20:00Z"},
                "length": {"value": 20, "unit": "min", "system": UCUM, "code": "min"}}),
            &["Okafor", "Ward", "Mercy", "09:20"],
            &[
                ("/period", json!({"start": "2025", "end": "2025"})),
                (
                    "/length",
                    json!({"value": 20, "unit": "min", "system": UCUM, "code": "min"}),
                ),
                ("/type/0", coding(SNOMED, "185349003")),
            ],
        ),
        case(
            "MedicationRequest: requester, dosage text and patientInstruction dropped",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
                "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-01-10",
                "requester": {"display": "Dr. Okafor"}, "recorder": {"display": "Nurse Delgado"},
                "dosageInstruction": [{"text": "one tablet daily, ask Ana's daughter to help", "patientInstruction": "with breakfast",
                    "route": coding(SNOMED, "26643006"),
                    "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                    "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg", "system": UCUM, "code": "mg"}}]}]}),
            &["Okafor", "Delgado", "daughter", "breakfast"],
            &[
                ("/dosageInstruction/0/route", coding(SNOMED, "26643006")),
                (
                    "/dosageInstruction/0/timing",
                    json!({"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}),
                ),
                (
                    "/dosageInstruction/0/doseAndRate/0/doseQuantity",
                    json!({"value": 500, "unit": "mg", "system": UCUM, "code": "mg"}),
                ),
                ("/authoredOn", json!("2026")),
            ],
        ),
        case(
            "Immunization: lotNumber, performer, location dropped",
            json!({"resourceType": "Immunization", "status": "completed",
                "vaccineCode": coding("http://hl7.org/fhir/sid/cvx", "208"), "patient": {"reference": "Patient/p1"},
                "occurrenceDateTime": "2021-04-12T10:00:00Z", "lotNumber": "EW0182", "expirationDate": "2021-07-31",
                "performer": [{"actor": {"display": "Pharmacist Delgado"}}], "location": {"display": "CVS #4471"},
                "doseQuantity": {"value": 0.3, "unit": "mL", "system": UCUM, "code": "mL"},
                "protocolApplied": [{"doseNumberPositiveInt": 2, "seriesDosesPositiveInt": 2, "series": "Pfizer primary"}]}),
            &["EW0182", "Delgado", "4471", "2021-04", "Pfizer primary"],
            &[
                ("/vaccineCode", coding("http://hl7.org/fhir/sid/cvx", "208")),
                ("/occurrenceDateTime", json!("2021")),
                (
                    "/protocolApplied/0",
                    json!({"doseNumberPositiveInt": 2, "seriesDosesPositiveInt": 2}),
                ),
            ],
        ),
        case(
            "Goal: description text and notes dropped, codings and targets kept",
            json!({"resourceType": "Goal", "lifecycleStatus": "active", "subject": {"reference": "Patient/p1"},
                "description": {"text": "Ana wants to walk to her daughter's house on Oak St"},
                "target": [{"measure": coding(LOINC, "4548-4"), "detailQuantity": {"value": 7, "unit": "%", "system": UCUM, "code": "%"},
                            "dueDate": "2026-06-30"}]}),
            &["daughter", "Oak St", "06-30"],
            &[
                ("/description", Value::Null),
                ("/target/0/measure", coding(LOINC, "4548-4")),
                ("/target/0/dueDate", json!("2026")),
            ],
        ),
        case(
            "CarePlan: title, description, activity description dropped",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "title": "Ana Ruiz's diabetes plan", "description": "Call husband Joe weekly",
                "category": [coding("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")],
                "subject": {"reference": "Patient/p1"},
                "activity": [{"detail": {"status": "in-progress", "code": coding(SNOMED, "229065009"), "description": "walks with Joe"}}]}),
            &["Ruiz", "Joe", "husband"],
            &[(
                "/activity/0/detail",
                json!({"status": "in-progress", "code": coding(SNOMED, "229065009")}),
            )],
        ),
        case(
            "ServiceRequest: requisition and patientInstruction dropped",
            json!({"resourceType": "ServiceRequest", "status": "active", "intent": "order",
                "requisition": {"value": "REQ-88123"}, "patientInstruction": "fast; Joe will drive",
                "code": coding(LOINC, "4548-4"), "subject": {"reference": "Patient/p1"}, "authoredOn": "2026-02-02"}),
            &["REQ-88123", "Joe"],
            &[
                ("/code", coding(LOINC, "4548-4")),
                ("/authoredOn", json!("2026")),
            ],
        ),
        case(
            "Bundle: an entry of a type without allow-list is dropped",
            json!({"resourceType": "Bundle", "type": "collection", "identifier": {"value": "BNDL-1"},
            "entry": [
                {"resource": {"resourceType": "RelatedPerson", "name": [{"family": "Delgado"}]}},
                {"resource": {"resourceType": "Condition", "code": coding(SNOMED, "44054006")}}
            ]}),
            &["Delgado", "RelatedPerson", "BNDL-1"],
            &[
                ("/entry/0/resource/code", coding(SNOMED, "44054006")),
                ("/entry/1", Value::Null),
            ],
        ),
        case(
            "Observation: valueSampledData, valueTime, valuePeriod of free shape",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "85354-9"),
                "valueSampledData": {"origin": {"value": 0}, "period": 10, "dimensions": 1, "data": "2041 2043 2039 Ruiz"},
                "component": [{"code": coding(LOINC, "8867-4"), "valueTime": "10:41:00"}]}),
            &["2041 2043", "Ruiz", "10:41"],
            &[
                ("/valueSampledData", Value::Null),
                ("/component/0", json!({"code": coding(LOINC, "8867-4")})),
            ],
        ),
        case(
            "Claim: provider, payee, careTeam, supportingInfo dropped; items kept",
            json!({"resourceType": "Claim", "status": "active", "use": "claim", "patient": {"reference": "Patient/p1"},
                "provider": {"display": "Mercy Clinic"}, "payee": {"party": {"display": "Ana Ruiz"}},
                "careTeam": [{"sequence": 1, "provider": {"display": "Dr. Okafor"}}],
                "supportingInfo": [{"sequence": 1, "category": coding("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"), "valueString": "patient's employer: Acme Corp"}],
                "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": coding("http://hl7.org/fhir/sid/icd-10-cm", "E11.9")}],
                "item": [{"sequence": 1, "productOrService": coding("http://www.ama-assn.org/go/cpt", "99213"),
                          "servicedDate": "2025-06-01", "net": {"value": 125.5, "currency": "USD"}}],
                "total": {"value": 125.5, "currency": "USD"}}),
            &["Mercy", "Ruiz", "Okafor", "Acme", "06-01"],
            &[
                (
                    "/diagnosis/0/diagnosisCodeableConcept",
                    coding("http://hl7.org/fhir/sid/icd-10-cm", "E11.9"),
                ),
                (
                    "/item/0/productOrService",
                    coding("http://www.ama-assn.org/go/cpt", "99213"),
                ),
                ("/item/0/net", json!({"value": 125.5, "currency": "USD"})),
                ("/item/0/servicedDate", json!("2025")),
            ],
        ),
        case(
            "Communication: sender and recipient dropped",
            json!({"resourceType": "Communication", "status": "completed", "subject": {"reference": "Patient/p1"},
                "sender": {"reference": "Practitioner/okafor"}, "recipient": [{"reference": "RelatedPerson/joe-ruiz"}],
                "medium": [coding("http://terminology.hl7.org/CodeSystem/v3-ParticipationMode", "PHONE")]}),
            &["okafor", "joe-ruiz"],
            &[
                ("/subject/reference", json!("$pseudonym")),
                ("/status", json!("completed")),
            ],
        ),
        case(
            "QuestionnaireResponse: a linkId that is a word, nested items",
            json!({"resourceType": "QuestionnaireResponse", "status": "completed",
            "item": [
                {"linkId": "mothers-maiden-name", "answer": [{"valueString": "Whitfield"}]},
                {"linkId": "2", "item": [{"linkId": "2.1", "text": "Joe?", "answer": [{"valueBoolean": true}]}]},
                {"linkId": "ana.ruiz", "answer": [{"valueCoding": {"system": LOINC, "code": "LA33-6"}}]}
            ]}),
            &["mothers", "Whitfield", "Joe", "ana.ruiz"],
            &[
                (
                    "/item/0",
                    json!({"linkId": "2", "item": [{"linkId": "2.1", "answer": [{"valueBoolean": true}]}]}),
                ),
                (
                    "/item/1",
                    json!({"answer": [{"valueCoding": {"system": LOINC, "code": "LA33-6"}}]}),
                ),
            ],
        ),
        case(
            "MedicationDispense: performer, receiver, destination dropped",
            json!({"resourceType": "MedicationDispense", "status": "completed",
                "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
                "subject": {"reference": "Patient/p1"}, "performer": [{"actor": {"display": "Pharmacist Delgado"}}],
                "receiver": [{"display": "Joe Ruiz"}], "destination": {"display": "12 Oak St"},
                "quantity": {"value": 30, "unit": "{tbl}", "system": UCUM, "code": "{tbl}"},
                "daysSupply": {"value": 30, "unit": "d", "system": UCUM, "code": "d"}, "whenHandedOver": "2026-01-11T16:00:00Z"}),
            &["Delgado", "Ruiz", "Oak St", "16:00"],
            &[
                (
                    "/quantity",
                    json!({"value": 30, "unit": "{tbl}", "system": UCUM, "code": "{tbl}"}),
                ),
                (
                    "/daysSupply",
                    json!({"value": 30, "unit": "d", "system": UCUM, "code": "d"}),
                ),
                ("/whenHandedOver", json!("2026")),
            ],
        ),
        case(
            "identifiers: the resource id and business identifiers",
            json!({"resourceType": "Condition", "id": "cond-ana-ruiz-1",
                "identifier": [{"system": "http://hospital.example.org/problems", "value": "PRB-77231"}],
                "code": coding(SNOMED, "44054006")}),
            &["ana-ruiz", "PRB-77231"],
            &[("/id", json!("$pseudonym")), ("/identifier", Value::Null)],
        ),
        case(
            "extensions: US Core race and ethnicity text parts dropped, codes kept",
            json!({"resourceType": "Patient", "extension": [
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                    {"url": "text", "valueString": "White, granddaughter of the Ruiz family of Guadalajara"}]},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", "extension": [
                    {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2"}},
                    {"url": "detailed", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "123-45-6789"}}]},
                {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "Ruiz"}]}),
            &[
                "Ruiz",
                "Guadalajara",
                "granddaughter",
                "123-45-6789",
                "birthsex",
            ],
            &[
                (
                    "/extension/0/extension",
                    json!([{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}}]),
                ),
                (
                    "/extension/1/extension",
                    json!([{"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2135-2"}}]),
                ),
                ("/extension/2", Value::Null),
            ],
        ),
        case(
            "extensions: on a nested element",
            json!({"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": LOINC, "code": "2339-0",
                    "extension": [{"url": "http://example.org/ordered-by", "valueString": "Dr. Okafor"}]}]},
                "valueQuantity": {"value": 101, "unit": "mg/dL", "system": UCUM, "code": "mg/dL",
                    "extension": [{"url": "http://example.org/device-serial", "valueIdentifier": {"value": "SN-55-1212"}}]}}),
            &["Okafor", "SN-55-1212", "ordered-by"],
            &[(
                "/valueQuantity",
                json!({"value": 101, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"}),
            )],
        ),
        // ---- US Core shapes: research fields survive ---------------------------------------
        case(
            "US Core Patient",
            json!({"resourceType": "Patient", "id": "example",
                "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-patient"]},
                "extension": [
                    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
                        {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3", "display": "White"}},
                        {"url": "text", "valueString": "Mixed"}]},
                    {"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}],
                "identifier": [{"use": "usual", "type": coding("http://terminology.hl7.org/CodeSystem/v2-0203", "MR"),
                                "system": "http://hospital.smarthealthit.org", "value": "1032702"}],
                "active": true, "name": [{"family": "Shaw", "given": ["Amy", "V."]}],
                "telecom": [{"system": "phone", "value": "555-555-5555", "use": "home"}],
                "gender": "female", "birthDate": "1987-02-20",
                "address": [{"line": ["49 Meadow St"], "city": "Mounds", "state": "OK", "postalCode": "74047", "country": "US"}],
                "maritalStatus": coding("http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "M")}),
            &[
                "1032702",
                "Shaw",
                "Amy",
                "555-555-5555",
                "Meadow",
                "Mounds",
                "74047",
                "02-20",
                "smarthealthit",
            ],
            &[
                ("/gender", json!("female")),
                ("/birthDate", json!("1987")),
                ("/address/0", json!({"state": "OK", "country": "US"})),
                (
                    "/maritalStatus",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
                        "M",
                    ),
                ),
                ("/extension/0/extension/0/valueCoding/code", json!("2106-3")),
                (
                    "/extension/1",
                    json!({"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"}),
                ),
                ("/active", json!(true)),
                ("/id", json!("$pseudonym")),
            ],
        ),
        case(
            "US Core Observation lab (HbA1c)",
            json!({"resourceType": "Observation", "status": "final",
                "category": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory")],
                "code": {"coding": [{"system": LOINC, "code": "4548-4", "display": "Hemoglobin A1c/Hemoglobin.total in Blood"}], "text": "A1c"},
                "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2026-05-02T10:00:00Z", "issued": "2026-05-02T12:00:00Z",
                "valueQuantity": {"value": 7.4, "unit": "%", "system": UCUM, "code": "%"},
                "interpretation": [coding("http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "H")],
                "referenceRange": [{"high": {"value": 5.7, "unit": "%", "system": UCUM, "code": "%"}}]}),
            &["05-02", "12:00"],
            &[
                ("/code", coding(LOINC, "4548-4")),
                (
                    "/valueQuantity",
                    json!({"value": 7.4, "unit": "%", "system": UCUM, "code": "%"}),
                ),
                (
                    "/interpretation/0",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
                        "H",
                    ),
                ),
                (
                    "/category/0",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "laboratory",
                    ),
                ),
                ("/referenceRange/0/high/value", json!(5.7)),
                ("/effectiveDateTime", json!("2026")),
                ("/issued", json!("2026")),
                ("/subject/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "US Core vital signs: blood pressure panel",
            json!({"resourceType": "Observation", "status": "final",
                "category": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")],
                "code": coding(LOINC, "85354-9"), "subject": {"reference": "Patient/example"},
                "effectiveDateTime": "1999-07-02",
                "component": [
                    {"code": coding(LOINC, "8480-6"), "valueQuantity": {"value": 109, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
                    {"code": coding(LOINC, "8462-4"), "valueQuantity": {"value": 44, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}}]}),
            &["07-02"],
            &[
                (
                    "/component/0/valueQuantity",
                    json!({"value": 109, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}),
                ),
                ("/component/1/code", coding(LOINC, "8462-4")),
                ("/effectiveDateTime", json!("1999")),
            ],
        ),
        case(
            "US Core vital signs: BMI and body weight",
            json!({"resourceType": "Bundle", "type": "collection", "entry": [
                {"resource": {"resourceType": "Observation", "status": "final", "code": coding(LOINC, "39156-5"),
                    "valueQuantity": {"value": 16.2, "unit": "kg/m2", "system": UCUM, "code": "kg/m2"}}},
                {"resource": {"resourceType": "Observation", "status": "final", "code": coding(LOINC, "29463-7"),
                    "valueQuantity": {"value": 185, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}}}]}),
            &[],
            &[
                (
                    "/entry/0/resource/valueQuantity",
                    json!({"value": 16.2, "unit": "kg/m2", "system": UCUM, "code": "kg/m2"}),
                ),
                (
                    "/entry/1/resource/valueQuantity",
                    json!({"value": 185, "unit": "lbs", "system": UCUM, "code": "[lb_av]"}),
                ),
            ],
        ),
        case(
            "US Core smoking status",
            json!({"resourceType": "Observation", "status": "final",
                "category": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "social-history")],
                "code": coding(LOINC, "72166-2"), "subject": {"reference": "Patient/example"}, "issued": "2016-12-10T22:00:00Z",
                "valueCodeableConcept": {"coding": [{"system": SNOMED, "code": "449868002", "display": "Smokes tobacco daily"}], "text": "daily"}}),
            &["daily", "12-10"],
            &[
                ("/valueCodeableConcept", coding(SNOMED, "449868002")),
                ("/issued", json!("2016")),
            ],
        ),
        case(
            "US Core Condition: problem list item",
            json!({"resourceType": "Condition",
                "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
                "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"),
                "category": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "problem-list-item")],
                "code": {"coding": [{"system": SNOMED, "code": "44054006"}, {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]},
                "subject": {"reference": "Patient/example"}, "onsetDateTime": "2018-04-03", "recordedDate": "2018-04-10"}),
            &["04-03", "04-10"],
            &[
                (
                    "/code",
                    json!({"coding": [{"system": SNOMED, "code": "44054006"}, {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "E11.9"}]}),
                ),
                (
                    "/clinicalStatus",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/condition-clinical",
                        "active",
                    ),
                ),
                (
                    "/verificationStatus",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "confirmed",
                    ),
                ),
                ("/onsetDateTime", json!("2018")),
            ],
        ),
        case(
            "US Core Condition: encounter diagnosis",
            json!({"resourceType": "Condition",
                "category": [coding("http://terminology.hl7.org/CodeSystem/condition-category", "encounter-diagnosis")],
                "code": coding("http://hl7.org/fhir/sid/icd-10-cm", "I10"), "subject": {"reference": "Patient/example"},
                "encounter": {"reference": "Encounter/enc-1"}, "abatementDateTime": "2020-01-01"}),
            &["enc-1"],
            &[
                (
                    "/category/0",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "encounter-diagnosis",
                    ),
                ),
                ("/encounter/reference", json!("$pseudonym")),
                ("/abatementDateTime", json!("2020")),
            ],
        ),
        case(
            "US Core Procedure",
            json!({"resourceType": "Procedure", "status": "completed", "code": coding(SNOMED, "80146002"),
                "subject": {"reference": "Patient/example"},
                "performedPeriod": {"start": "2019-03-07T13:00:00Z", "end": "2019-03-07T15:00:00Z"},
                "reasonCode": [coding(SNOMED, "74400008")], "bodySite": [coding(SNOMED, "66754008")]}),
            &["03-07", "13:00"],
            &[
                ("/performedPeriod", json!({"start": "2019", "end": "2019"})),
                ("/reasonCode/0", coding(SNOMED, "74400008")),
                ("/code", coding(SNOMED, "80146002")),
            ],
        ),
        case(
            "US Core Immunization",
            json!({"resourceType": "Immunization", "status": "completed", "primarySource": true,
                "vaccineCode": {"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}, {"system": "http://hl7.org/fhir/sid/ndc", "code": "49281-0703-55"}]},
                "patient": {"reference": "Patient/example"}, "occurrenceDateTime": "2015-01-22",
                "route": coding("http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration", "IM")}),
            &["01-22"],
            &[
                (
                    "/vaccineCode",
                    json!({"coding": [{"system": "http://hl7.org/fhir/sid/cvx", "code": "140"}, {"system": "http://hl7.org/fhir/sid/ndc", "code": "49281-0703-55"}]}),
                ),
                ("/primarySource", json!(true)),
                ("/occurrenceDateTime", json!("2015")),
            ],
        ),
        case(
            "US Core AllergyIntolerance",
            json!({"resourceType": "AllergyIntolerance",
                "clinicalStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active"),
                "verificationStatus": coding("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed"),
                "type": "allergy", "category": ["medication"], "criticality": "high",
                "code": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "7980"), "patient": {"reference": "Patient/example"},
                "onsetDateTime": "2004", "recordedDate": "2014-10-09T14:58:00+11:00"}),
            &["10-09"],
            &[
                ("/category", json!(["medication"])),
                ("/criticality", json!("high")),
                ("/type", json!("allergy")),
                ("/onsetDateTime", json!("2004")),
                ("/recordedDate", json!("2014")),
            ],
        ),
        case(
            "US Core Encounter",
            json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "type": [coding("http://www.ama-assn.org/go/cpt", "99201")], "subject": {"reference": "Patient/example"},
                "period": {"start": "2015-11-01T17:00:14-05:00", "end": "2015-11-01T18:00:14-05:00"},
                "reasonCode": [coding(SNOMED, "38341003")],
                "hospitalization": {"dischargeDisposition": coding("http://terminology.hl7.org/CodeSystem/discharge-disposition", "home")}}),
            &["11-01", "17:00", "ambulatory"],
            &[
                (
                    "/class",
                    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}),
                ),
                ("/type/0", coding("http://www.ama-assn.org/go/cpt", "99201")),
                ("/period", json!({"start": "2015", "end": "2015"})),
                (
                    "/hospitalization/dischargeDisposition",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/discharge-disposition",
                        "home",
                    ),
                ),
            ],
        ),
        case(
            "US Core DiagnosticReport (lab)",
            json!({"resourceType": "DiagnosticReport", "status": "final",
                "category": [coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB")],
                "code": coding(LOINC, "58410-2"), "subject": {"reference": "Patient/example"},
                "effectiveDateTime": "2005-07-05", "issued": "2005-07-06T11:45:33+11:00",
                "performer": [{"display": "Acme Laboratory, Inc"}],
                "result": [{"reference": "Observation/cbc-1", "display": "Haemoglobin"}],
                "presentedForm": [{"contentType": "application/pdf", "data": "JVBERi0xLjQK", "title": "HTML Report"}]}),
            &["Acme", "Haemoglobin", "JVBERi0x", "cbc-1", "07-06"],
            &[
                (
                    "/category/0",
                    coding("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB"),
                ),
                ("/result/0/reference", json!("$pseudonym")),
                ("/presentedForm", Value::Null),
                ("/issued", json!("2005")),
            ],
        ),
        case(
            "US Core DocumentReference (clinical note)",
            json!({"resourceType": "DocumentReference", "status": "current", "docStatus": "final",
                "type": coding(LOINC, "34117-2"),
                "category": [coding("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note")],
                "subject": {"reference": "Patient/example"}, "date": "2016-12-10T13:00:00Z",
                "author": [{"display": "Dr. Okafor"}], "custodian": {"display": "Mercy Clinic"},
                "content": [{"attachment": {"contentType": "text/plain", "data": "SGVsbG8gQW5hIFJ1aXo=", "url": "/Binary/1-note"},
                             "format": {"system": "urn:oid:1.3.6.1.4.1.19376.1.2.3", "code": "urn:ihe:pcc:handp:2008"}}],
                "context": {"encounter": [{"reference": "Encounter/enc-1"}], "period": {"start": "2016-12-10T12:00:00Z"}}}),
            &["Okafor", "Mercy", "SGVsbG8g", "1-note", "12-10"],
            &[
                (
                    "/category/0",
                    coding(
                        "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category",
                        "clinical-note",
                    ),
                ),
                (
                    "/content/0",
                    json!({"attachment": {"contentType": "text/plain"}}),
                ),
                ("/context/period", json!({"start": "2016"})),
                ("/docStatus", json!("final")),
            ],
        ),
        case(
            "US Core Implantable Device",
            json!({"resourceType": "Device", "status": "active",
                "udiCarrier": [{"deviceIdentifier": "09504000059118", "issuer": "http://hl7.org/fhir/NamingSystem/gs1-di",
                                "carrierHRF": "(01)09504000059118(17)141120(10)7654321D(21)10987654d321", "entryType": "barcode"}],
                "expirationDate": "2014-11-20", "lotNumber": "7654321D", "serialNumber": "10987654d321",
                "deviceName": [{"name": "Coated femoral stem prosthesis", "type": "user-friendly-name"}], "modelNumber": "AA-11",
                "type": coding(SNOMED, "468063009"), "patient": {"reference": "Patient/example"}}),
            &[
                "09504000059118",
                "7654321D",
                "10987654d321",
                "femoral stem",
                "AA-11",
                "gs1-di",
            ],
            &[
                ("/type", coding(SNOMED, "468063009")),
                ("/patient/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "US Core CarePlan and Goal links",
            json!({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                "category": [coding("http://hl7.org/fhir/us/core/CodeSystem/careplan-category", "assess-plan")],
                "subject": {"reference": "Patient/example"}, "period": {"start": "2026-01-01"},
                "goal": [{"reference": "Goal/g1"}], "addresses": [{"reference": "Condition/c1"}]}),
            &["g1\"", "c1\""],
            &[
                ("/goal/0/reference", json!("$pseudonym")),
                ("/period/start", json!("2026")),
            ],
        ),
        case(
            "US Core MedicationRequest with dispense request",
            json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                "category": [coding("http://terminology.hl7.org/CodeSystem/medicationrequest-category", "outpatient")],
                "reportedBoolean": false, "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "1049221"),
                "subject": {"reference": "Patient/example"}, "authoredOn": "2019-06-24",
                "dispenseRequest": {"numberOfRepeatsAllowed": 1, "quantity": {"value": 10, "unit": "{tbl}", "system": UCUM, "code": "{tbl}"},
                    "expectedSupplyDuration": {"value": 10, "unit": "days", "system": UCUM, "code": "d"},
                    "performer": {"display": "Corner Pharmacy"}}}),
            &["Corner Pharmacy", "06-24"],
            &[
                ("/dispenseRequest/numberOfRepeatsAllowed", json!(1)),
                (
                    "/dispenseRequest/expectedSupplyDuration",
                    json!({"value": 10, "unit": "d", "system": UCUM, "code": "d"}),
                ),
                ("/reportedBoolean", json!(false)),
                (
                    "/category/0",
                    coding(
                        "http://terminology.hl7.org/CodeSystem/medicationrequest-category",
                        "outpatient",
                    ),
                ),
            ],
        ),
        case(
            "MedicationStatement",
            json!({"resourceType": "MedicationStatement", "status": "active",
                "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
                "subject": {"reference": "Patient/example"}, "effectivePeriod": {"start": "2024-02-02"},
                "dateAsserted": "2025-03-03", "informationSource": {"display": "Joe Ruiz"},
                "dosage": [{"text": "as Joe says", "route": coding(SNOMED, "26643006")}]}),
            &["Joe", "Ruiz", "02-02"],
            &[
                ("/effectivePeriod", json!({"start": "2024"})),
                ("/dosage/0", json!({"route": coding(SNOMED, "26643006")})),
            ],
        ),
        case(
            "MedicationAdministration",
            json!({"resourceType": "MedicationAdministration", "status": "completed",
                "medicationCodeableConcept": coding("http://www.nlm.nih.gov/research/umls/rxnorm", "1049221"),
                "subject": {"reference": "Patient/example"}, "effectiveDateTime": "2025-05-05T05:05:05Z",
                "performer": [{"actor": {"display": "Nurse Delgado"}}],
                "dosage": {"text": "given by Delgado", "route": coding(SNOMED, "47625008"),
                           "dose": {"value": 5, "unit": "mg", "system": UCUM, "code": "mg"},
                           "rateRatio": {"numerator": {"value": 5, "unit": "mg"}, "denominator": {"value": 1, "unit": "h"}}}}),
            &["Delgado", "05-05"],
            &[
                (
                    "/dosage/dose",
                    json!({"value": 5, "unit": "mg", "system": UCUM, "code": "mg"}),
                ),
                (
                    "/dosage/rateRatio/denominator",
                    json!({"value": 1, "unit": "h", "system": UCUM, "code": "h"}),
                ),
            ],
        ),
        case(
            "Bundle transaction: references to urn:uuid entries stay linked",
            json!({"resourceType": "Bundle", "type": "transaction", "entry": [
                {"fullUrl": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a",
                 "resource": {"resourceType": "Patient", "gender": "female", "name": [{"family": "Ruiz"}]},
                 "request": {"method": "POST", "url": "Patient?identifier=MRN-448812"}},
                {"fullUrl": "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                 "resource": {"resourceType": "Observation", "status": "final", "code": coding(LOINC, "4548-4"),
                              "subject": {"reference": "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"}},
                 "request": {"method": "POST", "url": "Observation"}}]}),
            &["61ebe359", "88f151c0", "Ruiz", "MRN-448812"],
            &[
                ("/entry/0/request", json!({"method": "POST"})),
                ("/entry/1/resource/code", coding(LOINC, "4548-4")),
                ("/entry/0/fullUrl", json!("$pseudonym")),
            ],
        ),
        case(
            "QuestionnaireResponse: PHQ-9 coded answers",
            json!({"resourceType": "QuestionnaireResponse", "status": "completed",
                "questionnaire": "http://loinc.org/q/44249-1", "subject": {"reference": "Patient/example"},
                "authored": "2026-03-03T10:00:00Z",
                "item": [{"linkId": "44250-9", "answer": [{"valueCoding": {"system": LOINC, "code": "LA6568-5"}}]},
                         {"linkId": "44261-6", "answer": [{"valueInteger": 11}]}]}),
            &["q/44249-1", "03-03"],
            &[
                (
                    "/item/0",
                    json!({"linkId": "44250-9", "answer": [{"valueCoding": {"system": LOINC, "code": "LA6568-5"}}]}),
                ),
                ("/item/1/answer/0/valueInteger", json!(11)),
                ("/authored", json!("2026")),
            ],
        ),
        case(
            "Specimen: collector dropped, collection kept",
            json!({"resourceType": "Specimen", "status": "available", "type": coding(SNOMED, "122555007"),
                "subject": {"reference": "Patient/example"},
                "collection": {"collector": {"display": "Phlebotomist Delgado"}, "collectedDateTime": "2026-02-02T06:00:00Z",
                               "quantity": {"value": 6, "unit": "mL", "system": UCUM, "code": "mL"},
                               "bodySite": coding(SNOMED, "49852007")}}),
            &["Delgado", "02-02"],
            &[(
                "/collection",
                json!({"collectedDateTime": "2026", "quantity": {"value": 6, "unit": "mL", "system": UCUM, "code": "mL"}, "bodySite": coding(SNOMED, "49852007")}),
            )],
        ),
        case(
            "PractitionerRole",
            json!({"resourceType": "PractitionerRole", "active": true,
                "practitioner": {"reference": "Practitioner/okafor", "display": "Dr. Okafor"},
                "code": [coding("http://nucc.org/provider-taxonomy", "207Q00000X")],
                "telecom": [{"value": "555-0100"}], "availabilityExceptions": "not on Ana's birthday"}),
            &["okafor", "Okafor", "555-0100", "birthday"],
            &[
                (
                    "/code/0",
                    coding("http://nucc.org/provider-taxonomy", "207Q00000X"),
                ),
                ("/practitioner/reference", json!("$pseudonym")),
            ],
        ),
        case(
            "ImagingStudy: series coded, description and endpoint dropped",
            json!({"resourceType": "ImagingStudy", "status": "available", "description": "CT head of Ana Ruiz",
                "endpoint": [{"reference": "Endpoint/pacs-7"}], "numberOfInstances": 120,
                "procedureCode": [coding(LOINC, "24725-4")],
                "series": [{"number": 1, "description": "axial for Ana", "numberOfInstances": 120,
                            "bodySite": {"system": SNOMED, "code": "69536005"}, "performer": [{"actor": {"display": "Tech Delgado"}}]}]}),
            &["Ruiz", "pacs-7", "axial", "Delgado"],
            &[
                (
                    "/series/0",
                    json!({"number": 1, "numberOfInstances": 120, "bodySite": {"system": SNOMED, "code": "69536005"}}),
                ),
                ("/procedureCode/0", coding(LOINC, "24725-4")),
            ],
        ),
        case(
            "Observation: the age of the patient under 90 with its year",
            json!({"resourceType": "Observation", "status": "final", "code": coding(LOINC, "30525-0"),
                "effectiveDateTime": "2025-01-01", "valueQuantity": {"value": 45, "unit": "a", "system": UCUM, "code": "a"}}),
            &["01-01"],
            &[(
                "/valueQuantity",
                json!({"value": 45, "unit": "a", "system": UCUM, "code": "a"}),
            )],
        ),
    ]
}

/// The issue's leaks and the usual US Core shapes, each its own named case (>= 75).
#[test]
fn table_of_fhir_shapes() {
    let cases = cases();
    assert!(cases.len() >= 75, "{} cases", cases.len());
    let mut names: Vec<&str> = cases.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), cases.len(), "case names are unique");
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|c| {
            std::panic::catch_unwind(|| run(c)).err().map(|e| {
                format!(
                    "{}: {}",
                    c.name,
                    e.downcast_ref::<String>().cloned().unwrap_or_default()
                )
            })
        })
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} cases failed:\n{}",
        failed.len(),
        cases.len(),
        failed.join("\n")
    );
}

/// The input is never changed, and de-identifying twice gives the same output.
#[test]
fn deidentify_is_pure_and_stable() {
    for c in cases() {
        let before = c.input.clone();
        let a = deidentify(&c.input, &study(), &clock()).unwrap();
        let b = deidentify(&c.input, &study(), &clock()).unwrap();
        assert_eq!(c.input, before, "{}", c.name);
        assert_eq!(a, b, "{}", c.name);
        // De-identified output is a fixed point: nothing more to remove.
        let again = deidentify(&a, &study(), &clock()).unwrap();
        assert_eq!(
            strip_ids(again),
            strip_ids(a),
            "{}: de-identifying the output changes more than pseudonyms",
            c.name
        );
    }
}

/// Pseudonyms are re-keyed when an output is de-identified again; everything else is stable.
fn strip_ids(v: Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(k, _)| !matches!(k.as_str(), "id" | "reference" | "fullUrl"))
                .map(|(k, v)| (k, strip_ids(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(strip_ids).collect()),
        other => other,
    }
}

/// Links between resources survive pseudonymisation: a Bundle entry's `fullUrl` and the
/// references to it get the same pseudonym, a resource's `id` matches references to it.
#[test]
fn links_survive_pseudonymisation() {
    let table = cases();
    let find = |name: &str| {
        let c = table.iter().find(|c| c.name == name).unwrap();
        deidentify(&c.input, &study(), &clock()).unwrap()
    };
    let bundle = find("Bundle transaction: references to urn:uuid entries stay linked");
    assert_eq!(
        bundle["entry"][0]["fullUrl"],
        bundle["entry"][1]["resource"]["subject"]["reference"]
    );
    let bundle = find("identifiers: Bundle fullUrl");
    assert_eq!(
        bundle["entry"][0]["fullUrl"],
        json!(format!(
            "Patient/{}",
            bundle["entry"][0]["resource"]["id"].as_str().unwrap()
        ))
    );
    let contained = find("contained: a Practitioner's name dropped, a Medication kept and linked");
    assert_eq!(
        contained["medicationReference"]["reference"],
        json!(format!(
            "#{}",
            contained["contained"][0]["id"].as_str().unwrap()
        ))
    );
    // Another study cannot link them.
    let c = table
        .iter()
        .find(|c| c.name == "identifiers: Bundle fullUrl")
        .unwrap();
    let other = deidentify(
        &c.input,
        &StudyKey::from_secret([42; 32], "another-study"),
        &clock(),
    )
    .unwrap();
    assert_ne!(other["entry"][0]["fullUrl"], bundle["entry"][0]["fullUrl"]);
}

// ---- the planted-identifier property ---------------------------------------------------------

/// Surnames and given names that appear in no allow-list, code table or URL of the
/// de-identifier.
const NAMES: &[&str] = &[
    "Okonkwo",
    "Delacroix",
    "Fitzgerald",
    "Nakamura",
    "Abernathy",
    "Quintero",
    "Thorvaldsen",
    "Mbeki",
    "Kowalczyk",
    "Yamamoto",
    "Haverford",
    "Ekwueme",
    "Marguerite",
    "Bartholomew",
    "Xiomara",
    "Leopoldine",
];

/// An identifier of one of Safe Harbor's kinds.
fn identifier() -> impl Strategy<Value = String> {
    prop_oneof![
        (prop::sample::select(NAMES), prop::sample::select(NAMES))
            .prop_map(|(g, f)| format!("{g} {f}")),
        prop::sample::select(NAMES).prop_map(str::to_owned),
        "[1-8][0-9]{2}-[0-9]{2}-[0-9]{4}",                       // SSN
        "MRN[0-9]{6,8}",                                           // medical record number
        "\\([2-9][0-9]{2}\\) 555-[0-9]{4}",                       // phone
        "\\+1-[2-9][0-9]{2}-555-[0-9]{4}",                         // phone
        "[a-z]{4,8}\\.[a-z]{4,8}@(mail|post)\\.example\\.org",     // email
        "https://(ehr|portal)\\.example\\.org/(fhir/Patient|u)/[a-z0-9]{6}", // URL
        "(19[3-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])", // day date
        "(19[3-9][0-9]|20[0-2][0-9])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])T[01][0-9]:[0-5][0-9]:00", // no zone
        "(0[1-9]|1[0-2])/(0[1-9]|1[0-9]|2[0-8])/(19[3-9][0-9]|20[0-2][0-9])", // non-ISO date
        "(IP|ACC|SN|DEV)-[0-9]{5,8}",                              // account, accession, serial
    ]
}

/// Where to put an identifier (selectors pick the place in the resource).
#[derive(Debug, Clone)]
enum Plant {
    /// A new element `key` on an object, holding the identifier in shape `shape`.
    NewKey {
        at: usize,
        key: &'static str,
        shape: usize,
        id: String,
    },
    /// An extension on an object, `value[x]` of type `ty` holding the identifier.
    Extension {
        at: usize,
        url: &'static str,
        ty: usize,
        id: String,
    },
    /// An existing string anywhere replaced by the identifier.
    Replace { at: usize, id: String },
    /// The identifier pushed onto an existing array.
    Push { at: usize, id: String },
    /// A primitive extension `_key` holding the identifier.
    PrimitiveExtension { at: usize, id: String },
    /// An age over 89 (in years) written in one of the time units, as an age quantity.
    Age {
        at: usize,
        key: &'static str,
        years: u32,
        unit: usize,
    },
    /// An age over 89 as a `valueInteger` under an age code.
    AgeInteger { at: usize, years: u32 },
}

const KEYS: &[&str] = &[
    "name",
    "text",
    "note",
    "comment",
    "description",
    "title",
    "display",
    "alias",
    "valueString",
    "subscriberId",
    "preAdmissionIdentifier",
    "accessionIdentifier",
    "masterIdentifier",
    "fullUrl",
    "uid",
    "url",
    "location",
    "patientInstruction",
    "conclusion",
    "payload",
    "identifier",
    "city",
    "line",
    "postalCode",
    "state",
    "country",
    "status",
    "code",
    "unit",
    "system",
    "linkId",
    "reference",
    "type",
    "gender",
    "id",
    "effectiveDateTime",
    "birthDate",
    "recordedDate",
    "date",
    "authoredOn",
    "onsetString",
    "contentType",
    "currency",
    "value",
    "family",
    "given",
    "telecom",
];

const EXTENSION_URLS: &[&str] = &[
    "http://example.org/fhir/StructureDefinition/secret",
    "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
    "http://hl7.org/fhir/StructureDefinition/patient-birthPlace",
    "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
    "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
    "ombCategory",
    "text",
];

const AGE_KEYS: &[&str] = &[
    "onsetAge",
    "ageAge",
    "deceasedAge",
    "valueQuantity",
    "valueAge",
    "abatementAge",
    "length",
    "doseQuantity",
    "low",
    "high",
    "quantity",
];

/// Time units an age may arrive in, with their length in years.
const AGE_UNITS: &[(&str, Option<&str>, f64)] = &[
    ("a", Some("a"), 1.0),
    ("Years", None, 1.0),
    ("yr", None, 1.0),
    ("mo", Some("mo"), 1.0 / 12.0),
    ("Months", None, 1.0 / 12.0),
    ("wk", Some("wk"), 7.0 / 365.25),
    ("weeks", None, 7.0 / 365.25),
    ("d", Some("d"), 1.0 / 365.25),
    ("days", None, 1.0 / 365.25),
    ("h", Some("h"), 1.0 / 8766.0),
    ("min", Some("min"), 1.0 / 525_960.0),
    ("s", Some("s"), 1.0 / 31_557_600.0),
];

fn plant() -> impl Strategy<Value = Plant> {
    prop_oneof![
        (
            any::<usize>(),
            prop::sample::select(KEYS),
            0..6usize,
            identifier()
        )
            .prop_map(|(at, key, shape, id)| Plant::NewKey { at, key, shape, id }),
        (
            any::<usize>(),
            prop::sample::select(EXTENSION_URLS),
            0..14usize,
            identifier()
        )
            .prop_map(|(at, url, ty, id)| Plant::Extension { at, url, ty, id }),
        (any::<usize>(), identifier()).prop_map(|(at, id)| Plant::Replace { at, id }),
        (any::<usize>(), identifier()).prop_map(|(at, id)| Plant::Push { at, id }),
        (any::<usize>(), identifier()).prop_map(|(at, id)| Plant::PrimitiveExtension { at, id }),
        (
            any::<usize>(),
            prop::sample::select(AGE_KEYS),
            90..130u32,
            0..AGE_UNITS.len()
        )
            .prop_map(|(at, key, years, unit)| Plant::Age {
                at,
                key,
                years,
                unit
            }),
        (any::<usize>(), 91..130u32).prop_map(|(at, years)| Plant::AgeInteger { at, years }),
    ]
}

/// JSON pointers of every object, array and string in `v` (the resource root first).
fn places(v: &Value, path: &str, out: &mut (Vec<String>, Vec<String>, Vec<String>)) {
    match v {
        Value::Object(map) => {
            out.0.push(path.to_owned());
            for (k, child) in map {
                places(
                    child,
                    &format!("{path}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(items) => {
            out.1.push(path.to_owned());
            for (i, child) in items.iter().enumerate() {
                places(child, &format!("{path}/{i}"), out);
            }
        }
        Value::String(_) if !path.ends_with("/resourceType") => out.2.push(path.to_owned()),
        _ => {}
    }
}

fn shaped(shape: usize, id: &str) -> Value {
    match shape {
        0 => json!(id),
        1 => json!([id, "and more"]),
        2 => json!({"text": id}),
        3 => json!({"value": id, "system": "http://hospital.example.org/ids"}),
        4 => json!({"family": id, "given": [id]}),
        _ => json!([{"line": [id], "city": id, "postalCode": id}]),
    }
}

fn extension_value(ty: usize, id: &str) -> (&'static str, Value) {
    match ty {
        0 => ("valueString", json!(id)),
        1 => (
            "valueHumanName",
            json!({"family": id, "given": [id], "text": id}),
        ),
        2 => (
            "valueAddress",
            json!({"line": [id], "city": id, "state": id, "postalCode": id}),
        ),
        3 => ("valueContactPoint", json!({"system": "phone", "value": id})),
        4 => (
            "valueIdentifier",
            json!({"system": "http://hl7.org/fhir/sid/us-ssn", "value": id}),
        ),
        5 => ("valueUrl", json!(id)),
        6 => ("valueUri", json!(id)),
        7 => (
            "valueAttachment",
            json!({"data": id, "title": id, "url": id, "contentType": "text/plain"}),
        ),
        8 => (
            "valueReference",
            json!({"display": id, "identifier": {"value": id}, "reference": id}),
        ),
        9 => ("valueDateTime", json!(id)),
        10 => ("valueCode", json!(id)),
        11 => (
            "valueCoding",
            json!({"system": "urn:oid:2.16.840.1.113883.6.238", "code": id, "display": id}),
        ),
        12 => (
            "valueCodeableConcept",
            json!({"text": id, "coding": [{"system": LOINC, "code": id, "display": id}]}),
        ),
        _ => ("valueMarkdown", json!(id)),
    }
}

/// Applies one plant; returns the identifier strings that must not survive.
fn apply(resource: &mut Value, p: &Plant) -> Vec<String> {
    let mut at = (Vec::new(), Vec::new(), Vec::new());
    places(resource, "", &mut at);
    let (objects, arrays, strings) = at;
    let object = |i: usize| objects[i % objects.len()].clone();
    match p {
        Plant::NewKey { at, key, shape, id } => {
            if let Some(Value::Object(m)) = resource.pointer_mut(&object(*at)) {
                m.insert((*key).to_owned(), shaped(*shape, id));
            }
            vec![id.clone()]
        }
        Plant::Extension { at, url, ty, id } => {
            let (k, v) = extension_value(*ty, id);
            if let Some(Value::Object(m)) = resource.pointer_mut(&object(*at)) {
                let list = m.entry("extension").or_insert_with(|| json!([]));
                if let Value::Array(items) = list {
                    items.push(json!({"url": url, k: v}));
                } else {
                    *list = json!([{"url": url, k: v}]);
                }
            }
            vec![id.clone()]
        }
        Plant::Replace { at, id } => {
            if !strings.is_empty() {
                if let Some(s) = resource.pointer_mut(&strings[at % strings.len()]) {
                    *s = json!(id);
                }
            }
            vec![id.clone()]
        }
        Plant::Push { at, id } => {
            if !arrays.is_empty() {
                if let Some(Value::Array(items)) = resource.pointer_mut(&arrays[at % arrays.len()])
                {
                    items.push(json!(id));
                }
            }
            vec![id.clone()]
        }
        Plant::PrimitiveExtension { at, id } => {
            if let Some(Value::Object(m)) = resource.pointer_mut(&object(*at)) {
                let key = m
                    .keys()
                    .find(|k| !k.starts_with('_'))
                    .cloned()
                    .unwrap_or_else(|| "x".into());
                m.insert(
                    format!("_{key}"),
                    json!({"extension": [{"url": "http://example.org/x", "valueString": id}]}),
                );
            }
            vec![id.clone()]
        }
        Plant::Age {
            at,
            key,
            years,
            unit,
        } => {
            let (u, code, per_year) = AGE_UNITS[*unit];
            let value = (f64::from(*years) / per_year).ceil();
            let mut q = json!({"value": value, "unit": u});
            if let Some(c) = code {
                q["system"] = json!(UCUM);
                q["code"] = json!(c);
            }
            if let Some(Value::Object(m)) = resource.pointer_mut(&object(*at)) {
                m.insert((*key).to_owned(), q);
            }
            vec![]
        }
        Plant::AgeInteger { at, years } => {
            if let Some(Value::Object(m)) = resource.pointer_mut(&object(*at)) {
                m.insert("code".into(), coding(LOINC, "30525-0"));
                m.insert("valueInteger".into(), json!(years));
            }
            vec![]
        }
    }
}

/// The `valueInteger`s over 89 under an age code in `v`, among the values that occur only once
/// as a `valueInteger` (so that a value found in the output can be traced to its object).
fn aged_integers(v: &Value, out: &mut Vec<u64>) {
    fn walk(v: &Value, aged: &mut Vec<u64>, all: &mut Vec<u64>) {
        match v {
            Value::Object(map) => {
                let age_code = map
                    .get("code")
                    .and_then(|c| c.get("coding"))
                    .and_then(Value::as_array)
                    .is_some_and(|cs| {
                        cs.iter().any(|c| {
                            c["system"] == LOINC
                                && ["30525-0", "21612-7", "29553-5"]
                                    .iter()
                                    .any(|k| c["code"] == *k)
                        })
                    });
                if let Some(n) = map.get("valueInteger").and_then(Value::as_u64) {
                    all.push(n);
                    if age_code && n > 89 {
                        aged.push(n);
                    }
                }
                map.values().for_each(|c| walk(c, aged, all));
            }
            Value::Array(items) => items.iter().for_each(|c| walk(c, aged, all)),
            _ => {}
        }
    }
    let (mut aged, mut all) = (Vec::new(), Vec::new());
    walk(v, &mut aged, &mut all);
    out.extend(
        aged.into_iter()
            .filter(|n| all.iter().filter(|m| *m == n).count() == 1),
    );
}

fn value_integers(v: &Value, out: &mut Vec<u64>) {
    match v {
        Value::Object(map) => {
            if let Some(n) = map.get("valueInteger").and_then(Value::as_u64) {
                out.push(n);
            }
            map.values().for_each(|c| value_integers(c, out));
        }
        Value::Array(items) => items.iter().for_each(|c| value_integers(c, out)),
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// FHIR resources (every shape of the table) with identifiers planted in random elements
    /// and extensions: no planted identifier survives in the serialized output, and the
    /// invariants hold (no date finer than a year, no age over 89).
    #[test]
    fn planted_identifiers_never_survive(
        base in 0..usize::MAX,
        plants in prop::collection::vec(plant(), 1..8),
    ) {
        let table = cases();
        let c = &table[base % table.len()];
        let mut resource = c.input.clone();
        let mut secrets = Vec::new();
        let mut ages: Vec<u64> = Vec::new();
        // Ages go in last, so that no later plant changes the code that makes them ages.
        let mut plants = plants;
        plants.sort_by_key(|p| matches!(p, Plant::Age { .. } | Plant::AgeInteger { .. }));
        for p in &plants {
            secrets.extend(apply(&mut resource, p));
        }
        // The ages that must not survive: every valueInteger over 89 that is under an age
        // code in the final input (a later plant may have replaced the code).
        aged_integers(&resource, &mut ages);
        let Ok(out) = deidentify(&resource, &study(), &clock()) else {
            // A plant that makes the resource unreleasable (a replaced resourceType) releases
            // nothing, which is safe.
            return Ok(());
        };
        let text = out.to_string();
        for s in &secrets {
            prop_assert!(!text.contains(s.as_str()), "{}: planted {s:?} survived: {text}", c.name);
        }
        let mut ints = Vec::new();
        value_integers(&out, &mut ints);
        for a in &ages {
            prop_assert!(!ints.contains(a), "{}: age {a} survived: {text}", c.name);
        }
        check_invariants(c.name, &out);
    }

    /// Any string (any Unicode, any length) in any place of any table shape: de-identification
    /// never panics, and its output keeps the invariants.
    #[test]
    fn arbitrary_strings_never_break_the_invariants(
        base in 0..usize::MAX,
        junk in prop::collection::vec((any::<usize>(), "\\PC{0,40}"), 1..8),
    ) {
        let table = cases();
        let c = &table[base % table.len()];
        let mut resource = c.input.clone();
        for (at, text) in &junk {
            let mut places_ = (Vec::new(), Vec::new(), Vec::new());
            places(&resource, "", &mut places_);
            let strings = places_.2;
            if let Some(s) = strings.get(at % strings.len().max(1)).and_then(|p| resource.pointer_mut(p)) {
                *s = json!(text);
            }
        }
        if let Ok(out) = deidentify(&resource, &study(), &clock()) {
            check_invariants(c.name, &out);
        }
    }

    /// A birth date survives as its year exactly when the patient is under 90 at the release
    /// (by year: a patient who turns 90 in the release year is already 90 or older).
    #[test]
    fn birth_years_implying_90_or_older_never_survive(
        year in 1900..2026i64, month in 1..=12u32, day in 1..=28u32, release in 2020..2040i64,
    ) {
        let p = json!({"resourceType": "Patient", "birthDate": format!("{year:04}-{month:02}-{day:02}")});
        let out = deidentify(&p, &study(), &clock_at(&format!("{release}-06-15"))).unwrap();
        if release - year >= 90 {
            prop_assert!(out.get("birthDate").is_none());
            let y = year.to_string();
            prop_assert!(!out.to_string().contains(&y));
            prop_assert_eq!(&out["extension"][0]["url"], "urn:medchain:age-90-or-older");
        } else {
            prop_assert_eq!(&out["birthDate"], &json!(format!("{year:04}")));
        }
    }
}
