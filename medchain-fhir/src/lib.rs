//! # medchain-fhir
//!
//! FHIR R4 validation at the door: a chain never forgets, so a writer validates a record before
//! it seals it, and nothing malformed is sealed (`docs/fhir.md`, ADR 0003).
//!
//! * **Structure** of every R4 resource — element names, types, cardinalities, primitive
//!   formats, choice types, contained resources, extensions on primitives — by
//!   [fhirkit](https://docs.rs/fhirkit) (`=0.1.0`), whose model is generated from the official
//!   `hl7.fhir.r4.core` 4.0.1 package. Every problem comes back with its path.
//! * medchain's own checks ([`rules`]): nesting and size limits, resource ids, the **required
//!   bindings** medchain relies on (status codes, the `Consent` and `AuditEvent` codes it
//!   writes), **US Core** when the network's genesis says so
//!   ([`FhirProfile::UsCore`](medchain_core::genesis::FhirProfile)), and **Bundles** entry by
//!   entry with `fullUrl`/`urn:uuid:` references resolved.
//! * A report renders as a FHIR [`OperationOutcome`](Report::operation_outcome).
//! * [`seal_validated`] is the writers' sealing helper: validate, then seal; an invalid
//!   resource is never sealed.
//!
//! Pure: no I/O, no clock, no threads. Messages never quote the resource.
//!
//! ```
//! use medchain_fhir::{validate, IssueCode, Options};
//!
//! let report = validate(
//!     br#"{"resourceType":"Observation","code":{"text":"HbA1c"},"effectiveDateTime":"2026-13-45"}"#,
//!     &Options::default(),
//! );
//! assert!(!report.is_valid());
//! let found: Vec<_> = report.errors().map(|i| (i.code, i.path.as_str())).collect();
//! assert!(found.contains(&(IssueCode::Required, "Observation.status")));
//! assert!(found.contains(&(IssueCode::InvalidFormat, "Observation.effectiveDateTime")));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod fast;
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
pub mod issue;
pub mod rules;

use std::fmt;

use fhirkit::Json;
use medchain_core::fhir::{self, MAX_RESOURCE_BYTES};
use medchain_core::genesis::{FhirProfile, Genesis};
use medchain_core::keys::{Identity, PublicIdentity};
use medchain_core::seal::{seal_record, seal_record_as, SealError, SealedRecord};
use rand_core::{CryptoRng, Rng};
use serde_json::{json, Value};
use thiserror::Error;

pub use issue::{Issue, IssueCode, Severity};

/// Most issues a report keeps (the count of the rest is kept).
pub const MAX_ISSUES: usize = 100;

/// How to validate: the profile level, and whether errors only warn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    profile: FhirProfile,
    lenient: bool,
}

impl Options {
    /// Strict validation against `profile`.
    pub fn new(profile: FhirProfile) -> Self {
        Self {
            profile,
            lenient: false,
        }
    }

    /// Strict validation against the profile the network chose at genesis.
    pub fn for_genesis(genesis: &Genesis) -> Self {
        Self::new(genesis.fhir_profile())
    }

    /// **For migrating old data only.** Lenient mode: problems are reported as warnings and do
    /// not stop sealing — except those that make the payload unreadable or costly to read (not
    /// JSON, not a known resource type, past the size, nesting or member limits), which stay
    /// errors. Off by default.
    #[must_use]
    pub fn lenient_for_migration(mut self) -> Self {
        self.lenient = true;
        self
    }

    /// The profile level.
    pub fn profile(&self) -> FhirProfile {
        self.profile
    }

    /// Whether lenient mode is on.
    pub fn is_lenient(&self) -> bool {
        self.lenient
    }
}

/// What validating one resource found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    resource_type: Option<&'static str>,
    issues: Vec<Issue>,
    dropped: usize,
}

impl Report {
    fn refused(code: IssueCode, path: &str) -> Self {
        Self {
            resource_type: None,
            issues: vec![Issue::error(code, path)],
            dropped: 0,
        }
    }

    /// The resource type, when the payload is one.
    pub fn resource_type(&self) -> Option<&'static str> {
        self.resource_type
    }

    /// Every issue kept (at most [`MAX_ISSUES`]; errors first, then in document order).
    pub fn issues(&self) -> &[Issue] {
        &self.issues
    }

    /// How many issues were found beyond those kept.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Issue> {
        self.issues.iter().filter(|i| i.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Issue> {
        self.issues
            .iter()
            .filter(|i| i.severity == Severity::Warning)
    }

    /// No errors (warnings allowed).
    pub fn is_valid(&self) -> bool {
        self.errors().next().is_none()
    }

    /// The report as a FHIR R4 `OperationOutcome` (what the FHIR API answers a refused write
    /// with). Each issue has its severity, its `issue-type` code, a fixed text in
    /// `details.text` and its path in `expression`; a report without issues gives one
    /// `information` issue, as `OperationOutcome.issue` needs at least one.
    pub fn operation_outcome(&self) -> Value {
        let mut issues: Vec<Value> = self
            .issues
            .iter()
            .map(|i| {
                let mut issue = json!({
                    "severity": i.severity.code(),
                    "code": i.code.fhir_issue_type(),
                    "details": {"text": i.message()},
                });
                // A problem with the whole document (not JSON, ...) has no element path.
                if !i.path.is_empty() {
                    issue["expression"] = json!([i.path]);
                }
                issue
            })
            .collect();
        if self.dropped > 0 {
            issues.push(json!({
                "severity": "information",
                "code": "too-costly",
                "details": {"text": format!("{} more issue(s) not listed", self.dropped)},
            }));
        }
        if issues.is_empty() {
            issues.push(json!({
                "severity": "information",
                "code": "informational",
                "details": {"text": "the resource is valid"},
            }));
        }
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(f, "{errors} error(s), {warnings} warning(s)")?;
        if let Some(first) = self.errors().next().or_else(|| self.warnings().next()) {
            write!(f, "; first: {first}")?;
        }
        Ok(())
    }
}

/// A resource failed validation: it must not be sealed. Carries the whole [`Report`].
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("not a valid FHIR R4 resource: {report}")]
pub struct InvalidResource {
    /// What validation found.
    pub report: Report,
}

/// Validates one FHIR R4 resource in JSON (a Bundle counts as one, its entries included).
///
/// Never fails and never panics on any input: everything wrong becomes an [`Issue`].
///
/// A single pass over the bytes runs first and answers only when it proves there is nothing
/// to report; otherwise the exact path (fhirkit's typed model, then [`rules`]) runs. The
/// report is the same either way (`docs/fhir.md`).
pub fn validate(bytes: &[u8], options: &Options) -> Report {
    if let fast::Verdict::Clean(resource_type) = fast::check(bytes, options.profile) {
        return Report {
            resource_type: Some(resource_type),
            issues: Vec::new(),
            dropped: 0,
        };
    }
    validate_exact(bytes, options)
}

/// The foundation bench's FHIR payload (`medchain-core/benches/foundation.rs`), shared with
/// this crate's tests: a valid R4 collection Bundle of Observations, padded with an
/// `implicitRules` uri to exactly `size` bytes. `None` when `size` is too small for one entry
/// and the padding (below about 700 bytes).
#[doc(hidden)]
pub fn sample_bundle(size: usize) -> Option<Vec<u8>> {
    let entry = |i: usize| {
        format!(
            r#"{{"resource":{{"resourceType":"Observation","id":"obs-{i}","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}}]}},"subject":{{"reference":"Patient/p1"}},"effectiveDateTime":"2024-01-{:02}T08:30:00Z","valueQuantity":{{"value":{}.{},"unit":"mmol/L"}}}}}}"#,
            1 + i % 28,
            4 + i % 5,
            i % 10
        )
    };
    let head = r#"{"resourceType":"Bundle","type":"collection","entry":["#;
    let mut entries: Vec<String> = Vec::new();
    // Leave room for the closing and the padding field.
    while head.len() + entries.iter().map(|e| e.len() + 1).sum::<usize>() + 600 < size {
        entries.push(entry(entries.len()));
    }
    if entries.is_empty() {
        return None;
    }
    let mut out = format!("{head}{}]", entries.join(","));
    // A valid FHIR uri, so the payload is a valid R4 Bundle and validation does full work.
    let pad_field = r#","implicitRules":"urn:x-pad:"#;
    let remaining = size.checked_sub(out.len() + pad_field.len() + 2)?;
    out.push_str(pad_field);
    out.push_str(&"x".repeat(remaining));
    out.push_str("\"}");
    Some(out.into_bytes())
}

/// Whether the fast path alone proves `bytes` clean under `options` (no issue at all): for
/// tests and benches comparing the two paths.
#[doc(hidden)]
pub fn fast_path_is_clean(bytes: &[u8], options: &Options) -> bool {
    matches!(fast::check(bytes, options.profile), fast::Verdict::Clean(_))
}

/// [`validate`] without the fast path: fhirkit's tree and typed model, then [`rules`]. For
/// tests and benches; the report is the one [`validate`] gives.
#[doc(hidden)]
pub fn validate_exact(bytes: &[u8], options: &Options) -> Report {
    let mut report = validate_strict(bytes, options.profile);
    if options.lenient {
        for issue in &mut report.issues {
            if !issue.code.unreadable() {
                issue.severity = Severity::Warning;
            }
        }
        report.issues.sort_by_key(|i| i.severity);
    }
    report
}

/// As [`validate`], with an `Err` carrying the report when there are errors.
///
/// # Errors
/// [`InvalidResource`] when validation found an error.
pub fn check(bytes: &[u8], options: &Options) -> Result<Report, InvalidResource> {
    let report = validate(bytes, options);
    if report.is_valid() {
        Ok(report)
    } else {
        Err(InvalidResource { report })
    }
}

fn validate_strict(bytes: &[u8], profile: FhirProfile) -> Report {
    if bytes.len() > MAX_RESOURCE_BYTES {
        return Report::refused(IssueCode::TooLarge, "");
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Report::refused(IssueCode::NotJson, "");
    };
    let Ok(json) = Json::parse(text) else {
        return Report::refused(IssueCode::NotJson, "");
    };
    let Json::Object(_) = json else {
        return Report::refused(IssueCode::NotAnObject, "");
    };
    let Some(name) = json.get("resourceType").and_then(Json::as_str) else {
        return Report::refused(IssueCode::MissingResourceType, "");
    };
    let Some(resource_type) = fhir::R4_RESOURCE_TYPES
        .binary_search(&name)
        .ok()
        .map(|i| fhir::R4_RESOURCE_TYPES[i])
    else {
        return Report::refused(IssueCode::UnknownResourceType, "");
    };
    // Bounded before anything recursive runs over the tree.
    if let Some(issue) = rules::check_limits(&json, resource_type) {
        return Report {
            resource_type: Some(resource_type),
            issues: vec![issue],
            dropped: 0,
        };
    }
    let (_, found) = fhirkit::decode_json::<fhirkit::r4::Resource>(&json);
    let mut issues: Vec<Issue> = found
        .iter()
        .map(|i| {
            let (code, expected) = issue::classify(&i.message);
            Issue {
                severity: match i.severity {
                    fhirkit::Severity::Error => Severity::Error,
                    fhirkit::Severity::Warning => Severity::Warning,
                },
                code,
                path: issue::clean_path(&i.path),
                expected,
            }
        })
        .collect();
    let structural = issues.len();
    rules::check(&json, resource_type, profile, &mut issues);
    // Rule paths are built from the document's keys: cleaned like the structural ones.
    for issue in &mut issues[structural..] {
        issue.path = issue::clean_path(&issue.path);
    }
    issues.sort_by_key(|i| i.severity);
    let dropped = issues.len().saturating_sub(MAX_ISSUES);
    issues.truncate(MAX_ISSUES);
    Report {
        resource_type: Some(resource_type),
        issues,
        dropped,
    }
}

/// A record sealed after validation, with the warnings validation gave.
#[derive(Debug, Clone)]
pub struct Validated {
    /// The sealed record.
    pub record: SealedRecord,
    /// The validation report (no errors; warnings, if any).
    pub report: Report,
}

/// Validating or sealing failed; nothing was sealed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The resource is not valid.
    #[error(transparent)]
    Invalid(#[from] InvalidResource),
    /// Sealing failed (an unusable reader key, too many readers, ...).
    #[error(transparent)]
    Seal(#[from] SealError),
}

/// The writers' sealing helper: validates `payload` with `options` and, only if it is valid,
/// seals it for `patient` and `readers` ([`seal_record`]).
///
/// # Errors
/// [`WriteError::Invalid`] with the report when validation finds an error (nothing is sealed),
/// [`WriteError::Seal`] when sealing fails.
pub fn seal_validated<R: Rng + CryptoRng>(
    payload: &[u8],
    options: &Options,
    patient: &PublicIdentity,
    readers: &[PublicIdentity],
    rng: &mut R,
) -> Result<Validated, WriteError> {
    let report = check(payload, options)?;
    let record = seal_record(payload, patient, readers, rng)?;
    Ok(Validated { record, report })
}

/// As [`seal_validated`], written by `writer` (the contributing institution), which is a reader
/// and gets a self envelope ([`seal_record_as`]): the helper a node uses for the records it
/// holds, so that it opens them without an X25519 operation.
///
/// # Errors
/// As [`seal_validated`].
pub fn seal_validated_as<R: Rng + CryptoRng>(
    writer: &Identity,
    payload: &[u8],
    options: &Options,
    patient: &PublicIdentity,
    readers: &[PublicIdentity],
    rng: &mut R,
) -> Result<Validated, WriteError> {
    let report = check(payload, options)?;
    let record = seal_record_as(writer, payload, patient, readers, rng)?;
    Ok(Validated { record, report })
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "clinical")]
    use rand_chacha::rand_core::SeedableRng;
    #[cfg(feature = "clinical")]
    use rand_chacha::ChaCha20Rng;

    #[test]
    #[cfg(feature = "clinical")]
    fn the_sample_bundle_has_the_size_asked_and_is_valid() {
        assert_eq!(sample_bundle(0), None);
        assert_eq!(sample_bundle(600), None);
        for size in [700, 1024, 4096, 65_536] {
            let b = sample_bundle(size).unwrap();
            assert_eq!(b.len(), size);
            assert!(validate_exact(&b, &Options::new(FhirProfile::UsCore))
                .issues()
                .is_empty());
        }
    }

    /// The wallet's build (`foundation` and `base` only, docs/mobile.md) fails closed: a
    /// clinical resource is an unknown type there, at the root, contained in a Consent or in a
    /// Bundle, by both paths, while a Consent still validates. Run by the test command with
    /// `--no-default-features --features foundation,base`.
    #[test]
    #[cfg(not(feature = "clinical"))]
    fn a_build_without_the_clinical_group_refuses_clinical_resources() {
        const CONSENT: &str = r#""resourceType":"Consent","status":"active","scope":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/consentscope","code":"patient-privacy"}]},"category":[{"coding":[{"system":"http://loinc.org","code":"59284-0"}]}]"#;
        const OBS: &str =
            r#"{"resourceType":"Observation","status":"final","code":{"text":"HbA1c 9.1 %"}}"#;
        let consent = format!("{{{CONSENT}}}");
        let opts = Options::default();
        assert!(validate(consent.as_bytes(), &opts).issues().is_empty());
        assert!(fast_path_is_clean(consent.as_bytes(), &opts));
        let smuggled = [
            (OBS.to_string(), "Observation"),
            (
                format!(r#"{{{CONSENT},"contained":[{OBS}]}}"#),
                "Consent.contained[0]",
            ),
            (
                format!(
                    r#"{{"resourceType":"Bundle","type":"collection","entry":[{{"fullUrl":"urn:uuid:7c2a3f1e-0b1d-4e7a-9c55-3a8f2d6b9e01","resource":{OBS}}}]}}"#
                ),
                "Bundle.entry[0].resource",
            ),
        ];
        for (doc, at) in smuggled {
            for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
                let opts = Options::new(profile);
                assert!(!fast_path_is_clean(doc.as_bytes(), &opts), "{doc}");
                let report = validate(doc.as_bytes(), &opts);
                assert!(
                    report
                        .errors()
                        .any(|i| i.code == IssueCode::UnknownResourceType && i.path == at),
                    "{profile:?} {doc}: {report}"
                );
                assert_eq!(report, validate_exact(doc.as_bytes(), &opts));
            }
        }
    }

    #[cfg(feature = "clinical")]
    const OBS: &[u8] = br#"{"resourceType":"Observation","status":"final","category":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}]}],"code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"subject":{"reference":"Patient/p1"},"effectiveDateTime":"2026-01-02T08:00:00Z","valueQuantity":{"value":6.10,"unit":"%"}}"#;

    #[test]
    #[cfg(feature = "clinical")]
    fn a_valid_observation_passes_both_profiles() {
        for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
            let r = validate(OBS, &Options::new(profile));
            assert!(r.issues().is_empty(), "{profile:?}: {r}");
            assert_eq!(r.resource_type(), Some("Observation"));
        }
    }

    #[test]
    #[cfg(feature = "clinical")]
    fn lenient_mode_warns_but_keeps_the_hard_limits() {
        let bad = br#"{"resourceType":"Observation","code":{"text":"x"},"foo":1}"#;
        let strict = validate(bad, &Options::default());
        assert_eq!(strict.errors().count(), 2, "{strict}");
        let lenient = validate(bad, &Options::default().lenient_for_migration());
        assert!(lenient.is_valid());
        assert_eq!(lenient.warnings().count(), 2);
        for hard in [&b"[]"[..], b"{", br#"{"resourceType":"Nope"}"#] {
            assert!(!validate(hard, &Options::default().lenient_for_migration()).is_valid());
        }
        assert!(!Options::default().is_lenient(), "off by default");
    }

    #[test]
    #[cfg(feature = "clinical")]
    fn invalid_resources_are_not_sealed() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let patient = Identity::generate(&mut rng);
        let bad =
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":7}"#;
        let err =
            seal_validated(bad, &Options::default(), &patient.public(), &[], &mut rng).unwrap_err();
        let WriteError::Invalid(InvalidResource { report }) = &err else {
            panic!("{err}")
        };
        assert_eq!(report.errors().next().unwrap().path, "Observation.subject");
        assert_eq!(
            err.to_string(),
            "not a valid FHIR R4 resource: 1 error(s), 0 warning(s); first: error at \
             Observation.subject: wrong JSON type: expected an object"
        );
        let ok =
            seal_validated(OBS, &Options::default(), &patient.public(), &[], &mut rng).unwrap();
        assert_eq!(ok.record.open(&patient).unwrap().payload(), OBS);
        // The writer's helper refuses the same way, and seals a valid one with the writer's
        // self envelope after the patient's.
        let hospital = Identity::generate(&mut rng);
        let opts = Options::default();
        let err = seal_validated_as(&hospital, bad, &opts, &patient.public(), &[], &mut rng);
        assert!(matches!(err, Err(WriteError::Invalid(_))));
        let ok =
            seal_validated_as(&hospital, OBS, &opts, &patient.public(), &[], &mut rng).unwrap();
        let selfs: Vec<bool> = ok.record.envelopes().iter().map(|e| e.is_self()).collect();
        assert_eq!(selfs, [false, true]);
        assert_eq!(ok.record.open(&hospital).unwrap().payload(), OBS);
        assert_eq!(ok.record.open(&patient).unwrap().payload(), OBS);
    }

    #[test]
    #[cfg(feature = "clinical")]
    fn operation_outcome_is_itself_valid_fhir() {
        let bad = br#"{"resourceType":"Patient","gender":"F","birthDate":"1970-02-30x","foo":[]}"#;
        let report = validate(bad, &Options::new(FhirProfile::UsCore));
        let oo = report.operation_outcome();
        assert_eq!(oo["resourceType"], "OperationOutcome");
        let issues = oo["issue"].as_array().unwrap();
        assert_eq!(issues.len(), report.issues().len());
        assert!(issues.iter().any(|i| i["expression"][0] == "Patient.gender"
            && i["code"] == "code-invalid"
            && i["severity"] == "error"));
        let bytes = serde_json::to_vec(&oo).unwrap();
        let again = validate(&bytes, &Options::default());
        assert!(again.issues().is_empty(), "{again}");
        // No issue: one informational issue (issue is 1..*).
        let clean = validate(OBS, &Options::default()).operation_outcome();
        assert_eq!(clean["issue"][0]["severity"], "information");
        let bytes = serde_json::to_vec(&clean).unwrap();
        assert!(validate(&bytes, &Options::default()).is_valid());
        // A whole-document problem has no expression (an empty string is not FHIR).
        let not_json = validate(b"{", &Options::default()).operation_outcome();
        assert!(not_json["issue"][0].get("expression").is_none());
        let bytes = serde_json::to_vec(&not_json).unwrap();
        assert!(validate(&bytes, &Options::default()).issues().is_empty());
        // Nothing of the input is in the outcome.
        let text = oo.to_string();
        assert!(!text.contains("1970-02-30x") && !text.contains("\"F\""));
    }

    #[test]
    fn reports_cap_their_issues() {
        let many: String = (0..200).map(|i| format!(",\"x{i}\":1")).collect();
        let bad = format!("{{\"resourceType\":\"Basic\",\"code\":{{\"text\":\"t\"}}{many}}}");
        let r = validate(bad.as_bytes(), &Options::default());
        assert_eq!(r.issues().len(), MAX_ISSUES);
        assert_eq!(r.dropped(), 100);
        let oo = r.operation_outcome();
        assert_eq!(oo["issue"].as_array().unwrap().len(), MAX_ISSUES + 1);
    }
}
