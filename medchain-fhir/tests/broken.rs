//! The broken-resource corpus: each case is one distinct defect, refused with the right code
//! at the right path (and nothing of its content in the messages).

use medchain_core::genesis::FhirProfile;
use medchain_fhir::{
    fast_path_is_clean, validate, validate_exact, IssueCode as C, Options, Severity,
};

struct Case {
    name: &'static str,
    json: String,
    profile: FhirProfile,
    code: C,
    path: &'static str,
}

const OBS_HEAD: &str = r#""resourceType":"Observation","status":"final","code":{"text":"glucose"}"#;
const PAT_HEAD: &str = r#""resourceType":"Patient""#;

fn obs(rest: &str) -> String {
    format!("{{{OBS_HEAD}{rest}}}")
}

fn pat(rest: &str) -> String {
    format!("{{{PAT_HEAD}{rest}}}")
}

fn r4(name: &'static str, json: String, code: C, path: &'static str) -> Case {
    Case {
        name,
        json,
        profile: FhirProfile::BaseR4,
        code,
        path,
    }
}

fn us(name: &'static str, json: String, code: C, path: &'static str) -> Case {
    Case {
        profile: FhirProfile::UsCore,
        ..r4(name, json, code, path)
    }
}

const CONSENT: &str = r#""resourceType":"Consent","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}]"#;
const AUDIT: &str = r#""resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest"},"recorded":"2026-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"node"}}"#;
const UUID_A: &str = "urn:uuid:6d367230-21b3-5816-8d8c-5239028c388f";
const UUID_B: &str = "urn:uuid:1cf7ba1a-baa1-562d-bc6d-331d77ebaed7";

fn entry(full_url: &str, resource: &str, request: &str) -> String {
    format!(r#"{{"fullUrl":"{full_url}","resource":{resource}{request}}}"#)
}

fn post(rt: &str) -> String {
    format!(r#","request":{{"method":"POST","url":"{rt}"}}"#)
}

fn cases() -> Vec<Case> {
    let patient = pat("");
    let obs_of = |subject: &str| obs(&format!(r#","subject":{{"reference":"{subject}"}}"#));
    let deep = format!(
        r#"{{{PAT_HEAD},"extension":[{}{}]}}"#,
        r#"{"url":"urn:x","extension":["#.repeat(40),
        "]}".repeat(40)
    );
    let wide: String = (0..300).map(|i| format!(r#","k{i}":1"#)).collect();
    vec![
        // Not a resource at all.
        r4("not json", "{\"resourceType\":".into(), C::NotJson, ""),
        r4("not an object", "[1,2]".into(), C::NotAnObject, ""),
        r4("no resourceType", r#"{"id":"x"}"#.into(), C::MissingResourceType, ""),
        r4("resourceType not a string", r#"{"resourceType":7}"#.into(), C::MissingResourceType, ""),
        r4("unknown resourceType", r#"{"resourceType":"SecretDiagnosis"}"#.into(), C::UnknownResourceType, ""),
        r4("too deep", deep, C::TooDeep, Box::leak(format!("Patient{}", ".extension[0]".repeat(32)).into_boxed_str())),

        r4("too many members", pat(&wide), C::TooManyMembers, "Patient"),
        // Cardinality and element names.
        r4("missing status", r#"{"resourceType":"Observation","code":{"text":"x"}}"#.into(), C::Required, "Observation.status"),
        r4("missing code", r#"{"resourceType":"Observation","status":"final"}"#.into(), C::Required, "Observation.code"),
        r4("unknown element", obs(r#","foo":1"#), C::UnknownElement, "Observation.foo"),
        r4("unknown nested element", r#"{"resourceType":"Observation","status":"final","code":{"text":"x","foo":1}}"#.into(), C::UnknownElement, "Observation.code.foo"),
        r4("element name of another type", obs(r#","birthDate":"1970-01-01""#), C::UnknownElement, "Observation.birthDate"),
        r4("resource where a datatype belongs", obs(r#","subject":{"resourceType":"Patient"}"#), C::UnknownElement, "Observation.subject.resourceType"),
        r4("array for a single element", r#"{"resourceType":"Observation","status":"final","code":[{"text":"x"}]}"#.into(), C::NotASingleValue, "Observation.code"),
        r4("object for a repeating element", obs(r#","category":{"text":"lab"}"#), C::NotAnArray, "Observation.category"),
        r4("string for a repeating primitive", pat(r#","name":[{"given":"Jane"}]"#), C::NotAnArray, "Patient.name[0].given"),
        r4("empty array", pat(r#","name":[]"#), C::EmptyArray, "Patient.name"),
        r4("empty string", pat(r#","name":[{"family":""}]"#), C::EmptyValue, "Patient.name[0].family"),
        r4("null primitive", pat(r#","active":null"#), C::Null, "Patient.active"),
        r4("null in an array of complex values", pat(r#","name":[null]"#), C::Null, "Patient.name[0]"),
        r4("duplicate key", r#"{"resourceType":"Observation","status":"final","status":"final","code":{"text":"x"}}"#.into(), C::DuplicateKey, "Observation.status"),
        r4("missing required element of a datatype", obs(r#","text":{"div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"}"#), C::Required, "Observation.text.status"),
        r4("missing required element of a backbone", r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"component":[{"valueString":"x"}]}"#.into(), C::Required, "Observation.component[0].code"),
        // JSON types.
        r4("quantity as a string", obs(r#","valueQuantity":"7 mmol/L""#), C::WrongType, "Observation.valueQuantity"),
        r4("reference as a number", obs(r#","subject":7"#), C::WrongType, "Observation.subject"),
        r4("decimal as a string", obs(r#","valueQuantity":{"value":"7.2"}"#), C::WrongType, "Observation.valueQuantity.value"),
        r4("boolean as a string", pat(r#","active":"true""#), C::WrongType, "Patient.active"),
        r4("integer as a string", obs(r#","valueInteger":"7""#), C::WrongType, "Observation.valueInteger"),
        r4("string as a number", obs(r#","valueQuantity":{"value":7,"unit":5}"#), C::WrongType, "Observation.valueQuantity.unit"),
        r4("coding as a string", r#"{"resourceType":"Observation","status":"final","code":{"coding":["4548-4"]}}"#.into(), C::WrongType, "Observation.code.coding[0]"),
        r4("reference text as a number", obs(r#","subject":{"reference":5}"#), C::WrongType, "Observation.subject.reference"),
        r4("period as a string", obs(r#","effectivePeriod":"2026""#), C::WrongType, "Observation.effectivePeriod"),
        r4("decimal in a backbone as a string", obs(r#","component":[{"code":{"text":"a"}},{"code":{"text":"b"},"valueQuantity":{"value":"1"}}]"#), C::WrongType, "Observation.component[1].valueQuantity.value"),
        // Primitive formats.
        r4("dateTime with month 13", obs(r#","effectiveDateTime":"2026-13-45""#), C::InvalidFormat, "Observation.effectiveDateTime"),
        r4("dateTime with a time and no zone", obs(r#","effectiveDateTime":"2026-01-01T10:00:00""#), C::InvalidFormat, "Observation.effectiveDateTime"),
        r4("instant without a time", obs(r#","issued":"2026-01-01""#), C::InvalidFormat, "Observation.issued"),
        r4("date with one-digit month", pat(r#","birthDate":"1970-1-01""#), C::InvalidFormat, "Patient.birthDate"),
        r4("period start not a dateTime", obs(r#","effectivePeriod":{"start":"yesterday"}"#), C::InvalidFormat, "Observation.effectivePeriod.start"),
        r4("time out of range", obs(r#","valueTime":"25:00:00""#), C::InvalidFormat, "Observation.valueTime"),
        r4("code with surrounding space", r#"{"resourceType":"Observation","status":" final","code":{"text":"x"}}"#.into(), C::InvalidFormat, "Observation.status"),
        r4("uri with a space", r#"{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc .org","code":"1"}]}}"#.into(), C::InvalidFormat, "Observation.code.coding[0].system"),
        r4("extension url with a space", pat(r#","extension":[{"url":"a b","valueString":"x"}]"#), C::InvalidFormat, "Patient.extension[0].url"),
        r4("integer with a fraction", obs(r#","valueInteger":1.5"#), C::InvalidFormat, "Observation.valueInteger"),
        r4("integer beyond 32 bits", obs(r#","valueInteger":2147483648"#), C::OutOfRange, "Observation.valueInteger"),
        r4("positiveInt zero", r#"{"resourceType":"MedicationRequest","status":"active","intent":"order","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"},"dosageInstruction":[{"timing":{"repeat":{"count":0}}}]}"#.into(), C::OutOfRange, "MedicationRequest.dosageInstruction[0].timing.repeat.count"),
        r4("unsignedInt negative", r#"{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"size":-1}}]}"#.into(), C::OutOfRange, "DocumentReference.content[0].attachment.size"),
        r4("base64 with bad characters", r#"{"resourceType":"DocumentReference","status":"current","content":[{"attachment":{"data":"@@@@"}}]}"#.into(), C::InvalidFormat, "DocumentReference.content[0].attachment.data"),
        r4("oid not an oid", pat(r#","extension":[{"url":"urn:x","valueOid":"1.2.x"}]"#), C::InvalidFormat, "Patient.extension[0].valueOid"),
        r4("uuid not a uuid", pat(r#","extension":[{"url":"urn:x","valueUuid":"not-a-uuid"}]"#), C::InvalidFormat, "Patient.extension[0].valueUuid"),
        r4("resource id with a space", pat(r#","id":"a b""#), C::InvalidId, "Patient.id"),
        r4("resource id too long", pat(&format!(r#","id":"{}""#, "x".repeat(65))), C::InvalidId, "Patient.id"),
        // Choice types.
        r4("two types for one choice", obs(r#","valueString":"a","valueBoolean":true"#), C::ChoiceConflict, "Observation.value[x]"),
        r4("choice type the element does not allow", obs(r#","effectiveString":"yesterday""#), C::UnknownElement, "Observation.effectiveString"),
        r4("choice type that does not exist", obs(r#","valueFoo":1"#), C::UnknownElement, "Observation.valueFoo"),
        // Extensions on primitives.
        r4("primitive extension without url", pat(r#","birthDate":"1970-01-01","_birthDate":{"extension":[{"valueString":"x"}]}"#), C::Required, "Patient.birthDate.extension[0].url"),
        r4("primitive extension with an unknown member", pat(r#","_birthDate":{"foo":1}"#), C::UnknownElement, "Patient.birthDate.foo"),
        r4("primitive arrays out of line", pat(r#","name":[{"given":["a","b"],"_given":[null]}]"#), C::MisalignedArrays, "Patient.name[0].given"),
        r4("null in a primitive array without extension", pat(r#","name":[{"given":[null]}]"#), C::NullWithoutExtension, "Patient.name[0].given[0]"),
        r4("extension without url", pat(r#","extension":[{"valueString":"x"}]"#), C::Required, "Patient.extension[0].url"),
        // Contained resources.
        r4("contained resource invalid", obs(r#","contained":[{"resourceType":"Patient","gender":7}]"#), C::WrongType, "Observation.contained[0].gender"),
        r4("contained without resourceType", obs(r#","contained":[{"id":"p"}]"#), C::MissingResourceType, "Observation.contained[0]"),
        r4("contained of an unknown type", obs(r#","contained":[{"resourceType":"Foo"}]"#), C::UnknownResourceType, "Observation.contained[0]"),
        r4("reference to a missing contained resource", obs(r##","contained":[{"resourceType":"Patient","id":"p1"}],"subject":{"reference":"#p2"}"##), C::UnresolvedReference, "Observation.subject.reference"),
        r4("list entry naming a missing contained resource", r##"{"resourceType":"List","status":"current","mode":"working","contained":[{"resourceType":"Patient","id":"p1"}],"entry":[{"item":{"reference":"#p1"}},{"item":{"reference":"#q"}}]}"##.into(), C::UnresolvedReference, "List.entry[1].item.reference"),
        // Required bindings.
        r4("observation status not in value set", r#"{"resourceType":"Observation","status":"done","code":{"text":"x"}}"#.into(), C::CodeNotInValueSet, "Observation.status"),
        r4("gender not in value set", pat(r#","gender":"F""#), C::CodeNotInValueSet, "Patient.gender"),
        r4("condition clinical status wrong code", r#"{"resourceType":"Condition","subject":{"reference":"Patient/1"},"clinicalStatus":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/condition-clinical","code":"sick"}]}}"#.into(), C::CodeNotInValueSet, "Condition.clinicalStatus.coding[0].code"),
        r4("condition verification status as text only", r#"{"resourceType":"Condition","subject":{"reference":"Patient/1"},"verificationStatus":{"text":"sure"}}"#.into(), C::CodeNotInValueSet, "Condition.verificationStatus"),
        r4("medication request intent not in value set", r#"{"resourceType":"MedicationRequest","status":"active","intent":"wish","medicationCodeableConcept":{"text":"x"},"subject":{"reference":"Patient/1"}}"#.into(), C::CodeNotInValueSet, "MedicationRequest.intent"),
        r4("consent status not in value set", format!(r#"{{{CONSENT},"status":"approved"}}"#), C::CodeNotInValueSet, "Consent.status"),
        r4("nested consent provision type", format!(r#"{{{CONSENT},"status":"active","provision":{{"type":"deny","provision":[{{"type":"allow"}}]}}}}"#), C::CodeNotInValueSet, "Consent.provision.provision[0].type"),
        r4("audit event action not in value set", format!(r#"{{{AUDIT},"action":"X"}}"#), C::CodeNotInValueSet, "AuditEvent.action"),
        r4("audit event outcome not in value set", format!(r#"{{{AUDIT},"outcome":"1"}}"#), C::CodeNotInValueSet, "AuditEvent.outcome"),
        r4("bundle type not in value set", r#"{"resourceType":"Bundle","type":"bag"}"#.into(), C::CodeNotInValueSet, "Bundle.type"),
        // Bundles.
        r4("bundle entry invalid", format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#, entry(UUID_A, r#"{"resourceType":"Observation","code":{"text":"x"}}"#, "")), C::Required, "Bundle.entry[0].resource.status"),
        r4("bundle reference to no entry", format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{},{}]}}"#, entry(UUID_A, &patient, &post("Patient")), entry(UUID_B, &obs_of("urn:uuid:00000000-0000-0000-0000-000000000000"), &post("Observation"))), C::UnresolvedReference, "Bundle.entry[1].resource.subject.reference"),
        r4("bundle fullUrl relative", format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#, entry("Patient/1", &patient, "")), C::InvalidFullUrl, "Bundle.entry[0].fullUrl"),
        r4("bundle fullUrl urn:uuid malformed", format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{}]}}"#, entry("urn:uuid:1234", &patient, "")), C::InvalidFullUrl, "Bundle.entry[0].fullUrl"),
        r4("bundle fullUrl twice", format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{},{}]}}"#, entry(UUID_A, &patient, ""), entry(UUID_A, &patient, "")), C::DuplicateFullUrl, "Bundle.entry[1].fullUrl"),
        r4("transaction entry without request", format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#, entry(UUID_A, &patient, "")), C::MissingEntryRequest, "Bundle.entry[0].request"),
        r4("transaction request method not in value set", format!(r#"{{"resourceType":"Bundle","type":"transaction","entry":[{}]}}"#, entry(UUID_A, &patient, r#","request":{"method":"FETCH","url":"Patient"}"#)), C::CodeNotInValueSet, "Bundle.entry[0].request.method"),
        r4("collection entry without resource", format!(r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"fullUrl":"{UUID_A}"}}]}}"#), C::MissingEntryResource, "Bundle.entry[0].resource"),
        r4("bundle entry of an unknown type", r#"{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Nope"}}]}"#.into(), C::UnknownResourceType, "Bundle.entry[0].resource"),
        // US Core.
        us("us core patient without identifier", r#"{"resourceType":"Patient","name":[{"family":"Doe"}],"gender":"female"}"#.into(), C::ProfileRequired, "Patient.identifier"),
        us("us core observation without category", r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/1"},"effectiveDateTime":"2026"}"#.into(), C::ProfileRequired, "Observation.category"),
        us("us core condition without category", r#"{"resourceType":"Condition","code":{"text":"x"},"subject":{"reference":"Patient/1"}}"#.into(), C::ProfileRequired, "Condition.category"),
        us("us core encounter without type", r#"{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/1"}}"#.into(), C::ProfileRequired, "Encounter.type"),
    ]
}

#[test]
fn every_broken_resource_is_refused_at_the_right_path() {
    let cases = cases();
    assert!(cases.len() >= 60, "{} cases", cases.len());
    let mut names = std::collections::HashSet::new();
    let mut failures = Vec::new();
    for case in &cases {
        assert!(names.insert(case.name), "duplicate case {}", case.name);
        let report = validate(case.json.as_bytes(), &Options::new(case.profile));
        // The fast path never vouches for a broken resource, under either profile.
        for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
            let options = Options::new(profile);
            let bytes = case.json.as_bytes();
            if fast_path_is_clean(bytes, &options) {
                assert!(
                    validate_exact(bytes, &options).issues().is_empty(),
                    "{}: the fast path said clean under {profile:?}",
                    case.name
                );
            }
        }
        assert!(
            !fast_path_is_clean(case.json.as_bytes(), &Options::new(case.profile)),
            "{}: the fast path said clean",
            case.name
        );
        assert_eq!(
            report,
            validate_exact(case.json.as_bytes(), &Options::new(case.profile))
        );
        let hit = report
            .errors()
            .any(|i| i.code == case.code && i.path == case.path);
        if !hit || report.is_valid() {
            failures.push(format!(
                "{}: wanted {:?} at {:?}, got {:?}",
                case.name,
                case.code,
                case.path,
                report
                    .issues()
                    .iter()
                    .map(|i| format!("{:?} {} {:?}", i.severity, i.path, i.code))
                    .collect::<Vec<_>>()
            ));
        }
        // Messages and the OperationOutcome never carry the resource's values.
        let outcome = report.operation_outcome().to_string();
        for secret in [
            "7 mmol/L",
            "2026-13-45",
            "yesterday",
            "Jane",
            "sick",
            "not-a-uuid",
        ] {
            if case.json.contains(secret) {
                assert!(!outcome.contains(secret), "{}: {secret} leaked", case.name);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn too_large_and_not_utf8() {
    let big = vec![b' '; medchain_core::fhir::MAX_RESOURCE_BYTES + 1];
    let r = validate(&big, &Options::default());
    assert_eq!(r.errors().next().map(|i| i.code), Some(C::TooLarge));
    let r = validate(
        b"{\"resourceType\":\"Patient\",\"x\":\"\xff\"}",
        &Options::default(),
    );
    assert_eq!(r.errors().next().map(|i| i.code), Some(C::NotJson));
}

#[test]
fn must_support_gaps_are_warnings_not_errors() {
    let p = br#"{"resourceType":"Patient","identifier":[{"value":"1"}],"name":[{"family":"Doe"}],"gender":"female"}"#;
    let r = validate(p, &Options::new(FhirProfile::UsCore));
    assert!(r.is_valid(), "{r}");
    let w: Vec<_> = r.warnings().map(|i| (i.code, i.path.as_str())).collect();
    assert_eq!(w, [(C::MustSupportMissing, "Patient.birthDate")]);
    assert!(r.issues().iter().all(|i| i.severity == Severity::Warning));
    // Base R4 does not ask for any of it.
    assert!(validate(p, &Options::default()).issues().is_empty());
}

#[test]
fn valid_edge_cases_pass() {
    let cases = [
        // Contained siblings refer to each other by #id; `#` alone is the container.
        obs(
            r##","contained":[{"resourceType":"Patient","id":"p1"},{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"subject":{"reference":"#p1"},"focus":[{"reference":"#"}]}],"subject":{"reference":"#p1"}"##,
        ),
        // A primitive array with a null placeholder that carries an extension.
        pat(
            r#","name":[{"given":["a",null],"_given":[null,{"extension":[{"url":"http://hl7.org/fhir/StructureDefinition/data-absent-reason","valueCode":"unknown"}]}]}]"#,
        ),
        // A transaction that deletes: no resource needed; relative references stay external.
        format!(
            r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"request":{{"method":"DELETE","url":"Patient/1"}}}},{}]}}"#,
            entry(
                UUID_A,
                &obs(r#","subject":{"reference":"Patient/elsewhere"}"#),
                &post("Observation")
            )
        ),
        // Decimals keep any precision; exponents are decimals too.
        obs(
            r#","valueQuantity":{"value":6.10,"unit":"%"},"referenceRange":[{"low":{"value":1e2}}]"#,
        ),
    ];
    for json in cases {
        let r = validate(json.as_bytes(), &Options::default());
        assert!(r.issues().is_empty(), "{r}\n{json}");
        assert_eq!(r, validate_exact(json.as_bytes(), &Options::default()));
    }
    // US Core applies to what is shared, not to what it contains.
    let p = r#"{"resourceType":"Patient","identifier":[{"value":"1"}],"name":[{"family":"D"}],"gender":"male","birthDate":"1970","contained":[{"resourceType":"Patient","id":"x"}]}"#;
    let r = validate(p.as_bytes(), &Options::new(FhirProfile::UsCore));
    assert!(r.issues().is_empty(), "{r}");
}

#[test]
fn odd_keys_never_reach_a_path() {
    // An unknown element whose name is health data, holding a dangling contained reference.
    let json = obs(r##","SSN 123-45-6789":{"reference":"#nobody"}"##);
    let r = validate(json.as_bytes(), &Options::default());
    assert!(!r.is_valid());
    let text = r.operation_outcome().to_string();
    assert!(!text.contains("123-45-6789"), "{text}");
    assert!(r.issues().iter().any(|i| i.path == "Observation.?"));
}
