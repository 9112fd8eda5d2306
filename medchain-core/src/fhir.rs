//! What medchain reads out of HL7 FHIR R4 resources.
//!
//! A record is a FHIR R4 resource in JSON. Before a record is sealed, [`parse_resource`] checks
//! that the bytes are a JSON object whose `resourceType` names a resource of FHIR R4 (4.0.1).
//! Full validation (structure, required bindings, US Core, Bundles) is the writers' job, in the
//! `medchain-fhir` crate, before they seal (`docs/fhir.md`). Error messages never quote the
//! input: it may be health data.

use serde_json::Value;
use thiserror::Error;

/// Largest FHIR resource accepted for sealing (16 MiB).
pub const MAX_RESOURCE_BYTES: usize = 16 * 1024 * 1024;

/// Every resource type of FHIR R4 (4.0.1), sorted.
pub const R4_RESOURCE_TYPES: &[&str] = &[
    "Account",
    "ActivityDefinition",
    "AdverseEvent",
    "AllergyIntolerance",
    "Appointment",
    "AppointmentResponse",
    "AuditEvent",
    "Basic",
    "Binary",
    "BiologicallyDerivedProduct",
    "BodyStructure",
    "Bundle",
    "CapabilityStatement",
    "CarePlan",
    "CareTeam",
    "CatalogEntry",
    "ChargeItem",
    "ChargeItemDefinition",
    "Claim",
    "ClaimResponse",
    "ClinicalImpression",
    "CodeSystem",
    "Communication",
    "CommunicationRequest",
    "CompartmentDefinition",
    "Composition",
    "ConceptMap",
    "Condition",
    "Consent",
    "Contract",
    "Coverage",
    "CoverageEligibilityRequest",
    "CoverageEligibilityResponse",
    "DetectedIssue",
    "Device",
    "DeviceDefinition",
    "DeviceMetric",
    "DeviceRequest",
    "DeviceUseStatement",
    "DiagnosticReport",
    "DocumentManifest",
    "DocumentReference",
    "EffectEvidenceSynthesis",
    "Encounter",
    "Endpoint",
    "EnrollmentRequest",
    "EnrollmentResponse",
    "EpisodeOfCare",
    "EventDefinition",
    "Evidence",
    "EvidenceVariable",
    "ExampleScenario",
    "ExplanationOfBenefit",
    "FamilyMemberHistory",
    "Flag",
    "Goal",
    "GraphDefinition",
    "Group",
    "GuidanceResponse",
    "HealthcareService",
    "ImagingStudy",
    "Immunization",
    "ImmunizationEvaluation",
    "ImmunizationRecommendation",
    "ImplementationGuide",
    "InsurancePlan",
    "Invoice",
    "Library",
    "Linkage",
    "List",
    "Location",
    "Measure",
    "MeasureReport",
    "Media",
    "Medication",
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationKnowledge",
    "MedicationRequest",
    "MedicationStatement",
    "MedicinalProduct",
    "MedicinalProductAuthorization",
    "MedicinalProductContraindication",
    "MedicinalProductIndication",
    "MedicinalProductIngredient",
    "MedicinalProductInteraction",
    "MedicinalProductManufactured",
    "MedicinalProductPackaged",
    "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect",
    "MessageDefinition",
    "MessageHeader",
    "MolecularSequence",
    "NamingSystem",
    "NutritionOrder",
    "Observation",
    "ObservationDefinition",
    "OperationDefinition",
    "OperationOutcome",
    "Organization",
    "OrganizationAffiliation",
    "Parameters",
    "Patient",
    "PaymentNotice",
    "PaymentReconciliation",
    "Person",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Procedure",
    "Provenance",
    "Questionnaire",
    "QuestionnaireResponse",
    "RelatedPerson",
    "RequestGroup",
    "ResearchDefinition",
    "ResearchElementDefinition",
    "ResearchStudy",
    "ResearchSubject",
    "RiskAssessment",
    "RiskEvidenceSynthesis",
    "Schedule",
    "SearchParameter",
    "ServiceRequest",
    "Slot",
    "Specimen",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "Subscription",
    "Substance",
    "SubstanceNucleicAcid",
    "SubstancePolymer",
    "SubstanceProtein",
    "SubstanceReferenceInformation",
    "SubstanceSourceMaterial",
    "SubstanceSpecification",
    "SupplyDelivery",
    "SupplyRequest",
    "Task",
    "TerminologyCapabilities",
    "TestReport",
    "TestScript",
    "ValueSet",
    "VerificationResult",
    "VisionPrescription",
];

/// Whether `name` is a FHIR R4 resource type.
pub fn is_r4_resource_type(name: &str) -> bool {
    R4_RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// A payload is not a FHIR R4 resource.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FhirError {
    /// The payload is larger than [`MAX_RESOURCE_BYTES`].
    #[error("FHIR resource is {size} bytes, above the limit of {MAX_RESOURCE_BYTES}")]
    TooLarge {
        /// The payload's size.
        size: usize,
    },
    /// The payload is not valid JSON.
    #[error("not a FHIR resource: invalid JSON at line {line}, column {column}")]
    NotJson {
        /// Line of the first error.
        line: usize,
        /// Column of the first error.
        column: usize,
    },
    /// The JSON is not an object.
    #[error("not a FHIR resource: the JSON is not an object")]
    NotAnObject,
    /// The object has no string `resourceType`.
    #[error("not a FHIR resource: missing \"resourceType\"")]
    MissingResourceType,
    /// `resourceType` is not a FHIR R4 resource type.
    #[error("not a FHIR R4 resource: unknown resourceType")]
    UnknownResourceType,
}

/// A FHIR R4 resource that passed [`parse_resource`].
#[derive(Clone, PartialEq)]
pub struct Resource {
    resource_type: &'static str,
    json: Value,
}

impl Resource {
    /// The resource type, e.g. `"Observation"`.
    pub fn resource_type(&self) -> &'static str {
        self.resource_type
    }

    /// The parsed JSON.
    pub fn json(&self) -> &Value {
        &self.json
    }

    /// Consumes the resource, giving the parsed JSON.
    pub fn into_json(self) -> Value {
        self.json
    }
}

impl std::fmt::Debug for Resource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the content: it is health data.
        f.debug_struct("Resource")
            .field("resource_type", &self.resource_type)
            .finish_non_exhaustive()
    }
}

/// Checks that `bytes` are a FHIR R4 resource in JSON and parses them.
///
/// # Errors
/// A [`FhirError`] saying why the bytes are not a FHIR R4 resource; messages never quote the
/// input.
pub fn parse_resource(bytes: &[u8]) -> Result<Resource, FhirError> {
    if bytes.len() > MAX_RESOURCE_BYTES {
        return Err(FhirError::TooLarge { size: bytes.len() });
    }
    let json: Value = serde_json::from_slice(bytes).map_err(|e| FhirError::NotJson {
        line: e.line(),
        column: e.column(),
    })?;
    resource_from_value(json)
}

/// Checks that `bytes` are a FHIR R4 resource in JSON without building a JSON tree: the whole
/// input is validated as JSON, only `resourceType` is kept. About ten times faster than
/// [`parse_resource`] on large resources; used when sealing.
///
/// # Errors
/// As [`parse_resource`].
pub fn check_resource(bytes: &[u8]) -> Result<&'static str, FhirError> {
    #[derive(serde::Deserialize)]
    struct TypeOnly {
        #[serde(rename = "resourceType")]
        resource_type: Option<Value>,
    }
    if bytes.len() > MAX_RESOURCE_BYTES {
        return Err(FhirError::TooLarge { size: bytes.len() });
    }
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        // Not an object (the rare path): the full parse gives the precise error.
        return parse_resource(bytes).map(|r| r.resource_type);
    }
    let head: TypeOnly = serde_json::from_slice(bytes).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => FhirError::MissingResourceType,
        _ => FhirError::NotJson {
            line: e.line(),
            column: e.column(),
        },
    })?;
    let name = head
        .resource_type
        .as_ref()
        .and_then(Value::as_str)
        .ok_or(FhirError::MissingResourceType)?;
    let idx = R4_RESOURCE_TYPES
        .binary_search(&name)
        .map_err(|_| FhirError::UnknownResourceType)?;
    Ok(R4_RESOURCE_TYPES[idx])
}

/// As [`parse_resource`], for JSON already parsed.
///
/// # Errors
/// As [`parse_resource`].
pub fn resource_from_value(json: Value) -> Result<Resource, FhirError> {
    let obj = json.as_object().ok_or(FhirError::NotAnObject)?;
    let name = obj
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(FhirError::MissingResourceType)?;
    let idx = R4_RESOURCE_TYPES
        .binary_search(&name)
        .map_err(|_| FhirError::UnknownResourceType)?;
    Ok(Resource {
        resource_type: R4_RESOURCE_TYPES[idx],
        json,
    })
}

/// Days from 1970-01-01 to the civil date `y-m-d` (proleptic Gregorian; Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a FHIR `date`, `dateTime` or `instant` (`YYYY`, `YYYY-MM`, `YYYY-MM-DD`, or
/// `YYYY-MM-DDThh:mm:ss[.fff](Z|±hh:mm)`) into milliseconds since the Unix epoch, at the start of
/// the period it names. `None` for anything else, and for dates before 1970 (see
/// [`parse_datetime_signed_ms`] for those).
pub fn parse_datetime_ms(s: &str) -> Option<u64> {
    parse_datetime_signed_ms(s).and_then(|ms| u64::try_from(ms).ok())
}

/// As [`parse_datetime_ms`], with dates before 1970 as negative milliseconds (birth dates).
pub fn parse_datetime_signed_ms(s: &str) -> Option<i64> {
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut parts = date.split('-');
    let y = parts.next().filter(|p| p.len() == 4).and_then(digits)?;
    let m = match parts.next() {
        Some(p) if p.len() == 2 => digits(p)?,
        Some(_) => return None,
        None => 1,
    };
    let d = match parts.next() {
        Some(p) if p.len() == 2 => digits(p)?,
        Some(_) => return None,
        None => 1,
    };
    if parts.next().is_some() || !(1..=12).contains(&m) || d == 0 {
        return None;
    }
    let days_in_month = {
        let next = if m == 12 {
            days_from_civil(i64::from(y) + 1, 1, 1)
        } else {
            days_from_civil(i64::from(y), m + 1, 1)
        };
        next - days_from_civil(i64::from(y), m, 1)
    };
    if i64::from(d) > days_in_month {
        return None;
    }
    let mut ms = days_from_civil(i64::from(y), m, d) * 86_400_000;
    if let Some(t) = time {
        let (clock, offset_min) = if let Some(c) = t.strip_suffix('Z') {
            (c, 0i64)
        } else if t.len() > 6 && matches!(t.as_bytes()[t.len() - 6], b'+' | b'-') {
            let (c, off) = t.split_at(t.len() - 6);
            let sign = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om) = off[1..].split_once(':')?;
            (
                c,
                sign * (i64::from(digits(oh)?) * 60 + i64::from(digits(om)?)),
            )
        } else {
            return None;
        };
        let mut hms = clock.split(':');
        let hh = digits(hms.next()?)?;
        let mm = digits(hms.next()?)?;
        let (ss, frac) = match hms.next() {
            Some(sec) => match sec.split_once('.') {
                Some((a, b)) => (digits(a)?, b),
                None => (digits(sec)?, ""),
            },
            None => (0, ""),
        };
        if hms.next().is_some() || hh > 23 || mm > 59 || ss > 60 {
            return None;
        }
        let frac_ms = if frac.is_empty() {
            0
        } else {
            let f: String = frac.chars().chain(std::iter::repeat('0')).take(3).collect();
            i64::from(digits(&f)?)
        };
        ms += (i64::from(hh) * 3600 + i64::from(mm) * 60 + i64::from(ss)) * 1000 + frac_ms
            - offset_min * 60_000;
    }
    Some(ms)
}

/// Formats milliseconds since the Unix epoch as a FHIR `instant` in UTC
/// (`YYYY-MM-DDThh:mm:ss.sssZ`).
pub fn format_instant(ms: u64) -> String {
    let days = (ms / 86_400_000) as i64;
    let rem = ms % 86_400_000;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

/// Formats milliseconds since the Unix epoch as a FHIR `date` (`YYYY-MM-DD`, UTC).
pub fn format_date(ms: u64) -> String {
    let (y, m, d) = civil_from_days((ms / 86_400_000) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The `yyyymm` month of a time (UTC).
pub fn year_month(ms: u64) -> u32 {
    let (y, m, _) = civil_from_days((ms / 86_400_000) as i64);
    (y as u32) * 100 + m
}

/// The calendar year of a time (UTC).
pub fn year(ms: u64) -> i64 {
    civil_from_days((ms / 86_400_000) as i64).0
}

/// The calendar year of a signed time (UTC), for dates before 1970.
pub fn year_signed(ms: i64) -> i64 {
    civil_from_days(ms.div_euclid(86_400_000)).0
}

/// The clinical date of a resource, from its usual date fields (`effectiveDateTime`,
/// `effectivePeriod.start`, `issued`, `onsetDateTime`, `recordedDate`, `authoredOn`,
/// `occurrenceDateTime`, `performedDateTime`, `period.start`, `date`, `birthDate`), in that order.
pub fn clinical_date_ms(resource: &Value) -> Option<u64> {
    const FIELDS: &[&str] = &[
        "effectiveDateTime",
        "effectiveInstant",
        "issued",
        "onsetDateTime",
        "recordedDate",
        "authoredOn",
        "occurrenceDateTime",
        "performedDateTime",
        "date",
        "birthDate",
    ];
    for f in FIELDS {
        if let Some(ms) = resource
            .get(*f)
            .and_then(Value::as_str)
            .and_then(parse_datetime_ms)
        {
            return Some(ms);
        }
    }
    for f in ["effectivePeriod", "performedPeriod", "period"] {
        if let Some(ms) = resource
            .get(f)
            .and_then(|p| p.get("start"))
            .and_then(Value::as_str)
            .and_then(parse_datetime_ms)
        {
            return Some(ms);
        }
    }
    None
}

/// Every coding (`system`, `code`) anywhere in a resource.
pub fn codings(resource: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, out: &mut Vec<(String, String)>, depth: usize) {
        if depth > 64 {
            return;
        }
        match v {
            Value::Object(map) => {
                if let (Some(Value::String(system)), Some(Value::String(code))) =
                    (map.get("system"), map.get("code"))
                {
                    out.push((system.clone(), code.clone()));
                }
                for child in map.values() {
                    walk(child, out, depth + 1);
                }
            }
            Value::Array(items) => {
                for child in items {
                    walk(child, out, depth + 1);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(resource, &mut out, 0);
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_list_is_sorted_and_complete() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
        assert!(R4_RESOURCE_TYPES.len() > 140);
        assert!(is_r4_resource_type("Observation"));
        assert!(!is_r4_resource_type("observation"));
    }

    #[test]
    fn accepts_fhir_and_refuses_the_rest_with_clear_errors() {
        let r = parse_resource(br#"{"resourceType":"Patient","birthDate":"1970-01-01"}"#).unwrap();
        assert_eq!(r.resource_type(), "Patient");
        assert_eq!(
            format!("{r:?}"),
            "Resource { resource_type: \"Patient\", .. }"
        );
        let cases: [(&[u8], &str); 5] = [
            (
                b"{not json",
                "not a FHIR resource: invalid JSON at line 1, column 2",
            ),
            (b"[1,2]", "not a FHIR resource: the JSON is not an object"),
            (
                br#"{"a":1}"#,
                "not a FHIR resource: missing \"resourceType\"",
            ),
            (
                br#"{"resourceType":7}"#,
                "not a FHIR resource: missing \"resourceType\"",
            ),
            (
                br#"{"resourceType":"SecretDiagnosisHIV"}"#,
                "not a FHIR R4 resource: unknown resourceType",
            ),
        ];
        for (input, msg) in cases {
            assert_eq!(parse_resource(input).unwrap_err().to_string(), msg);
            assert_eq!(
                check_resource(input).unwrap_err().to_string(),
                msg,
                "fast check"
            );
        }
        assert_eq!(
            check_resource(br#"{"a":[1,{"b":2}],"resourceType":"Patient"}"#).unwrap(),
            "Patient"
        );
        assert!(matches!(
            check_resource(b"{\"resourceType\":\"Patient\""),
            Err(FhirError::NotJson { .. })
        ));
        let big = vec![b' '; MAX_RESOURCE_BYTES + 1];
        assert!(matches!(
            parse_resource(&big),
            Err(FhirError::TooLarge { .. })
        ));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000);
        assert!(matches!(
            parse_resource(deep.as_bytes()),
            Err(FhirError::NotJson { .. })
        ));
    }

    #[test]
    fn dates_parse_and_format() {
        assert_eq!(parse_datetime_ms("1970"), Some(0));
        assert_eq!(parse_datetime_ms("1970-01-02"), Some(86_400_000));
        assert_eq!(parse_datetime_ms("2024-02-29"), Some(1_709_164_800_000));
        assert_eq!(parse_datetime_ms("2023-02-29"), None);
        assert_eq!(
            parse_datetime_ms("2026-11-25T03:09:14Z"),
            Some(1_795_576_154_000)
        );
        assert_eq!(
            parse_datetime_ms("2026-11-25T05:09:14+02:00"),
            Some(1_795_576_154_000)
        );
        assert_eq!(
            parse_datetime_ms("2026-11-25T03:09:14.5Z"),
            Some(1_795_576_154_500)
        );
        for bad in [
            "",
            "20",
            "2026-13",
            "2026-1-01",
            "2026-11-25T25:00:00Z",
            "2026-11-25T03:09",
            "x",
        ] {
            assert_eq!(parse_datetime_ms(bad), None, "{bad}");
        }
        assert_eq!(
            format_instant(1_795_576_154_500),
            "2026-11-25T03:09:14.500Z"
        );
        assert_eq!(format_date(1_795_576_154_500), "2026-11-25");
        assert_eq!(year_month(1_795_576_154_500), 202_611);
        assert_eq!(year(0), 1970);
        assert_eq!(parse_datetime_signed_ms("1969-12-31"), Some(-86_400_000));
        assert_eq!(
            year_signed(parse_datetime_signed_ms("1931-04-02").unwrap()),
            1931
        );
        assert_eq!(parse_datetime_ms("1931-04-02"), None);
        for ms in [0u64, 951_782_400_000, 4_102_444_800_000] {
            assert_eq!(parse_datetime_ms(&format_instant(ms)), Some(ms));
        }
    }

    #[test]
    fn clinical_date_and_codings() {
        let v: Value = serde_json::from_str(
            r#"{"resourceType":"Observation","effectivePeriod":{"start":"2024-03-01"},
                "code":{"coding":[{"system":"http://loinc.org","code":"4548-4"},{"system":"http://loinc.org","code":"4548-4"}]},
                "interpretation":[{"coding":[{"system":"x","code":"H"}]}]}"#,
        )
        .unwrap();
        assert_eq!(clinical_date_ms(&v), parse_datetime_ms("2024-03-01"));
        assert_eq!(
            codings(&v),
            vec![
                ("http://loinc.org".into(), "4548-4".into()),
                ("x".into(), "H".into())
            ]
        );
    }
}
