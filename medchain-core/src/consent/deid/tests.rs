use super::schema::{self, Field, Kind};
use super::*;
use crate::testkit::TestNet;

fn key(study: &str) -> StudyKey {
    StudyKey::from_secret([7; 32], study)
}

/// A release clock at 2026-11-25 (the chain's time in these tests).
fn clock() -> ReleaseClock {
    let mut tip = TestNet::new(1, 1, 0).tip().clone();
    tip.timestamp_ms = fhir::parse_datetime_ms("2026-11-25").unwrap();
    ReleaseClock::at_tip(&tip)
}

fn deid(v: &Value) -> Value {
    deidentify(v, &key("s1"), &clock()).unwrap()
}

#[test]
fn safe_harbor_patient() {
    let p = json!({
        "resourceType": "Patient", "id": "pat-1",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.4.1", "value": "123-45-6789"}],
        "name": [{"family": "Ruiz", "given": ["Ana"]}],
        "telecom": [{"system": "phone", "value": "+1 555 0100"}],
        "gender": "female", "birthDate": "1931-04-02",
        "address": [{"line": ["1 Main St"], "city": "Springfield", "postalCode": "62701", "state": "IL", "country": "US"}],
        "contact": [{"name": {"family": "Ruiz"}}],
        "text": {"status": "generated", "div": "<div>Ana Ruiz</div>"}
    });
    let out = deid(&p);
    let s = out.to_string();
    for secret in [
        "Ruiz",
        "Ana",
        "555",
        "Main",
        "Springfield",
        "627",
        "123-45-6789",
        "pat-1",
        "1931",
    ] {
        assert!(!s.contains(secret), "{secret} leaked: {s}");
    }
    assert_eq!(out["address"][0], json!({"state": "IL", "country": "US"}));
    assert_eq!(out["gender"], "female");
    assert_eq!(out["extension"][0]["url"], "urn:medchain:age-90-or-older");
    assert!(out.get("identifier").is_none() && out.get("birthDate").is_none());
}

#[test]
fn dates_to_year_and_references_pseudonymised_per_study() {
    let o = json!({
        "resourceType": "Observation", "id": "obs-9", "status": "final",
        "subject": {"reference": "Patient/pat-1", "display": "Ana Ruiz"},
        "effectiveDateTime": "2024-03-05T10:00:00Z", "issued": "2024-03-05T11:00:00Z",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}], "text": "A1c for Ana"},
        "valueQuantity": {"value": 6.1, "unit": "%"},
        "note": [{"text": "patient says her neighbour John..."}]
    });
    let a = deid(&o);
    let a2 = deid(&o);
    let b = deidentify(&o, &key("s2"), &clock()).unwrap();
    assert_eq!(a["effectiveDateTime"], "2024");
    assert_eq!(a["issued"], "2024");
    assert_eq!(
        a["code"],
        json!({"coding": [{"system": "http://loinc.org", "code": "4548-4"}]})
    );
    assert_eq!(a["valueQuantity"], json!({"value": 6.1, "unit": "%"}));
    assert!(a.get("note").is_none());
    assert_eq!(
        a["subject"].as_object().unwrap().len(),
        1,
        "display dropped"
    );
    let r = a["subject"]["reference"].as_str().unwrap();
    assert!(r.starts_with("Patient/") && !r.contains("pat-1"));
    assert_eq!(a, a2, "stable within a study");
    assert_ne!(
        a["subject"]["reference"], b["subject"]["reference"],
        "unlinkable across studies"
    );
    // The patient's own pseudonymised id is what the reference points at.
    let p = deid(&json!({"resourceType": "Patient", "id": "pat-1"}));
    assert_eq!(format!("Patient/{}", p["id"].as_str().unwrap()), r);
}

#[test]
fn references_of_every_shape_link_and_hide() {
    let k = key("s1");
    let walk = Walk {
        study: &k,
        release_year: 2026,
        earliest_year: None,
        ages: Vec::new(),
        ninety: false,
        nesting: Nesting::Entry(0),
    };
    let local = walk.pseudo_reference("Patient/123");
    assert_eq!(
        walk.pseudo_reference("https://ehr.example.org/fhir/Patient/123"),
        local
    );
    assert_eq!(
        walk.pseudo_reference("Patient/123/_history/4"),
        local,
        "versions do not split a patient"
    );
    let urn = walk.pseudo_reference("urn:uuid:8d7c6f9e-0000-4000-8000-000000000001");
    assert_eq!(urn.len(), 32);
    assert!(!urn.contains("8d7c6f9e"));
    assert_eq!(walk.pseudo_reference("#"), "#");
    let contained = walk.pseudo_reference("#med1");
    assert!(contained.starts_with('#') && !contained.contains("med1"));
    assert_eq!(
        walk.pseudo_reference("https://ehr.example.org/patients?mrn=998877"),
        k.pseudonym("https://ehr.example.org/patients?mrn=998877")
    );
}

#[test]
fn ages_over_89_capped_and_errors() {
    let o = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]},
        "valueQuantity": {"value": 97, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}});
    let a = deid(&o);
    assert_eq!(
        a["valueQuantity"],
        json!({"value": 90, "comparator": ">=", "unit": "a", "system": terms::UCUM, "code": "a"})
    );
    let err = deidentify(&json!({"x": 1}), &key("s"), &clock()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "not a FHIR resource: missing \"resourceType\""
    );
    assert_eq!(
        deidentify(&json!([1]), &key("s"), &clock()).unwrap_err(),
        DeidError::NotFhir(FhirError::NotAnObject)
    );
    assert_eq!(
        deidentify(&json!({"resourceType": "Patientt"}), &key("s"), &clock()).unwrap_err(),
        DeidError::NotFhir(FhirError::UnknownResourceType)
    );
    assert!(!format!("{:?}", key("s")).contains("7, 7"));
}

#[test]
fn unsupported_types_and_modifier_extensions_release_nothing() {
    let err = deidentify(
        &json!({"resourceType": "RelatedPerson", "name": [{"family": "Ruiz"}]}),
        &key("s"),
        &clock(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        DeidError::Unsupported {
            resource_type: "RelatedPerson"
        }
    );
    assert_eq!(
        err.to_string(),
        "no research allow-list for RelatedPerson resources: nothing of them is released"
    );
    let modified = json!({"resourceType": "Condition",
        "modifierExtension": [{"url": "http://example.org/not-really", "valueBoolean": true}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}});
    let err = deidentify(&modified, &key("s"), &clock()).unwrap_err();
    assert_eq!(err, DeidError::ModifierExtension);
    assert_eq!(
        err.to_string(),
        "the resource carries a modifier extension, which may change its meaning: it is not released"
    );
    // A modified element inside is dropped, the rest stays.
    let inner = json!({"resourceType": "Observation", "status": "final",
    "component": [
        {"modifierExtension": [{"url": "http://example.org/x", "valueBoolean": true}],
         "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}},
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}}
    ]});
    let out = deid(&inner);
    assert_eq!(out["component"].as_array().unwrap().len(), 1);
    assert_eq!(out["component"][0]["code"]["coding"][0]["code"], "8462-4");
    // Supported types are listed.
    assert!(supported_resource_types().any(|t| t == "Observation"));
    assert!(!supported_resource_types().any(|t| t == "RelatedPerson"));
}

#[test]
fn release_clock_never_moves_earlier() {
    let c = clock();
    assert_eq!(c.year(), 2026);
    assert_eq!(c.no_earlier_than(0), c);
    let later = c.no_earlier_than(fhir::parse_datetime_ms("2030-01-01").unwrap());
    assert_eq!(later.year(), 2030);
    assert_eq!(later.no_earlier_than(c.time_ms()), later);
    // The chain's time decides: a birth year that is 90+ at the tip stays removed whatever
    // later time the host adds.
    let p = json!({"resourceType": "Patient", "birthDate": "1936-06-01"});
    let at_chain = deidentify(&p, &key("s"), &c).unwrap();
    assert!(at_chain.get("birthDate").is_none());
    let mut net = TestNet::new(3, 1, 0);
    let (block, _, _) = net
        .next_block(&crate::store::MemoryStore::default(), vec![])
        .unwrap();
    let at_block = ReleaseClock::at_block(block.header());
    assert_eq!(at_block.time_ms(), block.header().timestamp_ms);
    assert_eq!(at_block, ReleaseClock::at_tip(&block.tip()));
}

#[test]
fn terminology_checks_accept_real_codes_and_refuse_identifiers() {
    for (system, code) in [
        ("http://loinc.org", "4548-4"),
        ("http://loinc.org", "8867-4"),
        ("http://loinc.org", "30525-0"),
        ("http://loinc.org", "85354-9"),
        ("http://loinc.org", "LA6576-8"),
        ("http://snomed.info/sct", "44054006"),
        ("http://snomed.info/sct", "38341003"),
        ("http://snomed.info/sct", "73211009"),
        ("http://snomed.info/sct", "271649006"),
        ("http://snomed.info/sct", "424144002"),
        ("http://snomed.info/sct", "397659008"),
        ("http://snomed.info/sct", "195967001"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "E11.9"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "S72.001A"),
        ("http://hl7.org/fhir/sid/icd-10", "I10"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "250.00"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "V45.81"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "860975"),
        ("http://hl7.org/fhir/sid/cvx", "208"),
        ("http://hl7.org/fhir/sid/ndc", "0777-3105-02"),
        ("http://www.ama-assn.org/go/cpt", "99213"),
        ("http://nucc.org/provider-taxonomy", "207Q00000X"),
        ("urn:oid:2.16.840.1.113883.6.238", "2106-3"),
        ("urn:oid:2.16.840.1.113883.6.238", "2135-2"),
        ("urn:oid:2.16.840.1.113883.6.238", "2186-5"),
        ("urn:ietf:bcp:47", "en-US"),
        ("http://unitsofmeasure.org", "mm[Hg]"),
        (
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "vital-signs",
        ),
        ("http://terminology.hl7.org/CodeSystem/v3-ActCode", "AMB"),
    ] {
        assert!(terms::coding_allowed(system, code), "{system}|{code}");
    }
    for (system, code) in [
        ("http://loinc.org", "4548-5"),           // wrong check digit
        ("http://loinc.org", "123-45-6789"),      // an SSN
        ("http://snomed.info/sct", "44054007"),   // wrong check digit
        ("http://snomed.info/sct", "5550101234"), // a phone number
        ("http://hl7.org/fhir/sid/icd-10-cm", "Ruiz"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "MRN998877"),
        ("http://hl7.org/fhir/sid/ndc", "5550101234"),
        ("http://hl7.org/fhir/sid/cvx", "ana@example.org"),
        ("urn:ietf:bcp:47", "Ruiz"),
        ("http://unitsofmeasure.org", "{Ana Ruiz}"),
        (
            "http://terminology.hl7.org/CodeSystem/observation-category",
            "ana-ruiz",
        ),
        ("urn:oid:2.16.840.1.113883.4.1", "123-45-6789"), // the SSN system itself
        ("http://hospital.example.org/mrn", "998877"),    // a local system
    ] {
        assert!(!terms::coding_allowed(system, code), "{system}|{code}");
    }
}

#[test]
fn anything_date_like_gives_its_year() {
    for (s, y) in [
        ("2024", Some(2024)),
        ("2024-03", Some(2024)),
        ("2024-03-05", Some(2024)),
        ("2024-03-05T10:00:00", Some(2024)),
        ("2024-03-05T10:00:00+02:00", Some(2024)),
        ("2024/03/05", Some(2024)),
        ("03/05/2024", Some(2024)),
        ("5 March 2024", Some(2024)),
        ("March 5, 2024 10:30", Some(2024)),
        ("05.03.2024", Some(2024)),
        ("20240305", Some(2024)),
        ("03/05/24", None),
        ("yesterday", None),
        ("2024 to 2025", None),
        ("at age 94", None),
        ("Mar 2024", Some(2024)),
        ("3rd of March 2024", None),
        ("March 3rd, 2024", Some(2024)),
        ("2024-03-05 10:00", Some(2024)),
        ("2024-03-05 10:30 pm", Some(2024)),
        ("2024 Ana Ruiz", None),
        ("3-5-2024", Some(2024)),
        ("123-45-1987", None),     // an SSN is not a date
        ("+1-212-555-2024", None), // nor a phone number
        ("2024-55-1234", None),
        ("2024-13-01", None),
    ] {
        assert_eq!(terms::year_of(s), y, "{s}");
    }
}

#[test]
fn every_ucum_time_unit_is_converted() {
    for (unit, code, years) in [
        ("s", "s", 1.0 / 31_557_600.0),
        ("min", "min", 1.0 / 525_960.0),
        ("h", "h", 1.0 / 8766.0),
        ("d", "d", 1.0 / 365.25),
        ("wk", "wk", 7.0 / 365.25),
        ("mo", "mo", 1.0 / 12.0),
        ("a", "a", 1.0),
        ("Years", "a", 1.0),
        ("Months", "mo", 1.0 / 12.0),
        ("weeks", "wk", 7.0 / 365.25),
        ("Days", "d", 1.0 / 365.25),
        ("yr", "a", 1.0),
    ] {
        let (c, y) = terms::time_unit(unit).unwrap();
        assert_eq!((c, y), (code, years), "{unit}");
    }
    assert!(
        terms::time_unit("M").is_none(),
        "M is not months (it is metres)"
    );
    assert!(terms::time_unit("kg").is_none());
}

#[test]
fn states_and_countries() {
    assert_eq!(terms::us_state("IL"), Some("IL"));
    assert_eq!(terms::us_state("illinois"), Some("IL"));
    assert_eq!(terms::us_state("Springfield"), None);
    assert_eq!(terms::country("USA"), Some("US"));
    assert_eq!(terms::country("fr"), Some("FR"));
    assert_eq!(terms::country("Ruiz"), None);
    // A state is kept only for a US (or unspecified) country.
    assert_eq!(
        address(&json!({"state": "ON", "country": "CA", "postalCode": "K1A 0B1"})),
        Some(json!({"country": "CA"}))
    );
    assert_eq!(
        address(&json!({"state": "CA", "country": "Mexico"})),
        None,
        "an unknown country keeps no state"
    );
    assert_eq!(
        address(&json!({"state": "California", "postalCode": "90210"})),
        Some(json!({"state": "CA"}))
    );
}

fn walk_fields(fields: &'static [Field], seen: &mut Vec<usize>, f: &mut impl FnMut(&Field)) {
    let id = fields.as_ptr() as usize;
    if seen.contains(&id) {
        return;
    }
    seen.push(id);
    for field in fields {
        f(field);
        for kind in field.kinds() {
            match kind {
                Kind::Object(sub) => walk_fields(sub, seen, f),
                Kind::Period => walk_fields(schema::PERIOD, seen, f),
                _ => {}
            }
        }
    }
}

/// The lists name no element of a person-bearing type or name: nothing ending in
/// `Identifier`/`Id`, no uid or URL, no name, text, address line or telecom, no `value[x]` of
/// type string, HumanName, Address, ContactPoint, Identifier, uri/url, Attachment, ….
#[test]
fn schema_names_no_person_bearing_element() {
    const FORBIDDEN_NAMES: &[&str] = &[
        "identifier",
        "name",
        "alias",
        "telecom",
        "contact",
        "photo",
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
        "url",
        "location",
        "endpoint",
        "udiCarrier",
        "serialNumber",
        "lotNumber",
        "deviceName",
        "modelNumber",
        "born",
        "patientInstruction",
        "preAuthRef",
        "requisition",
        "masterIdentifier",
        "link",
        "meta",
    ];
    const FORBIDDEN_TYPES: &[&str] = &[
        "String",
        "Markdown",
        "HumanName",
        "Address",
        "ContactPoint",
        "Identifier",
        "Uri",
        "Url",
        "Canonical",
        "Oid",
        "Uuid",
        "Id",
        "Attachment",
        "Annotation",
        "Base64Binary",
        "Signature",
        "SampledData",
        "Time",
        "Narrative",
        "Meta",
    ];
    let mut seen = Vec::new();
    let mut count = 0;
    for (rt, fields) in schema::RESOURCES {
        assert!(fhir::is_r4_resource_type(rt), "{rt}");
        walk_fields(fields, &mut seen, &mut |field| {
            count += 1;
            for key in field.keys() {
                if key == "fullUrl" {
                    continue; // pseudonymised like a reference (Kind::FullUrl)
                }
                // `linkId` is kept only when structural (`1.2`, a LOINC code: Kind::LinkId).
                let structural = field.kinds().iter().all(|k| matches!(k, Kind::LinkId));
                assert!(
                    !key.ends_with("Identifier")
                        && (structural || !key.ends_with("Id"))
                        && key != "id",
                    "{rt}.{key}"
                );
                assert!(
                    !["uid", "url", "uri", "Uid", "Url", "Uri"]
                        .iter()
                        .any(|w| key.starts_with(w)
                            || (w.starts_with(char::is_uppercase) && key.contains(w))),
                    "{rt}.{key}"
                );
                // A name that usually holds text is fine where it is a CodeableConcept
                // (`Goal.description`): only its codings are kept.
                let coded = field.kinds().iter().all(|k| matches!(k, Kind::Concept));
                assert!(
                    coded || !FORBIDDEN_NAMES.contains(&key.as_str()),
                    "{rt}.{key}"
                );
            }
            if let Field::Choice(prefix, types) = field {
                for (t, _) in *types {
                    assert!(!FORBIDDEN_TYPES.contains(t), "{rt}.{prefix}{t}");
                }
            }
        });
    }
    assert!(count > 300, "{count} fields walked");
    for rt in supported_resource_types() {
        for rule in schema::extensions(rt) {
            let mut rules = vec![rule];
            while let Some(r) = rules.pop() {
                if let Some((t, _)) = r.value {
                    assert!(
                        !FORBIDDEN_TYPES.contains(&t) && t != "Reference",
                        "{rt} extension {} value{t}",
                        r.url
                    );
                }
                rules.extend(r.sub.iter());
            }
        }
    }
    let types: Vec<&str> = supported_resource_types().collect();
    let mut sorted = types.clone();
    sorted.sort_unstable();
    assert_eq!(types, sorted);
}
