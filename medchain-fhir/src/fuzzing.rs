//! The fuzz entry point of the FHIR validator (doc-hidden; see `docs/fuzzing.md`). Like
//! `medchain_core::fuzzing`, it takes any bytes and panics only on a real bug.

use medchain_core::genesis::FhirProfile;
use serde_json::Value;

use crate::{check, validate, validate_exact, Options, Severity, MAX_ISSUES};

/// A fuzz entry point: takes any bytes, panics only on a real bug.
pub type FuzzFn = fn(&[u8]);

/// Every fuzz entry point of this crate by name (the fuzz target's and the corpus directory's
/// name).
pub const TARGETS: &[(&str, FuzzFn)] = &[("validate_fhir", validate_fhir)];

/// Validates `data` as a FHIR R4 resource under both profile levels, strict and lenient, as a
/// writer does before sealing, and checks what every caller relies on:
/// - the verdict is deterministic, and [`check`] agrees with [`validate`];
/// - the report is the exact path's ([`validate_exact`]): the fast path never changes one (it
///   never calls a document with an issue clean);
/// - a valid report names a known R4 resource type, and the bytes are a JSON object;
/// - lenient mode keeps the same issues (same paths and codes) and never has more errors;
/// - at most [`MAX_ISSUES`] issues are kept, errors first;
/// - the `OperationOutcome` is a FHIR resource with at least one issue, whose texts are the
///   fixed texts of their codes (no input is echoed into them: nothing in an error reveals PHI).
pub fn validate_fhir(data: &[u8]) {
    for profile in [FhirProfile::BaseR4, FhirProfile::UsCore] {
        let strict = Options::new(profile);
        let report = validate(data, &strict);
        assert_eq!(
            report,
            validate_exact(data, &strict),
            "the fast path changed the report"
        );
        assert_eq!(
            report,
            validate(data, &strict),
            "validation is not deterministic"
        );
        assert_eq!(check(data, &strict).is_ok(), report.is_valid());
        assert!(report.issues().len() <= MAX_ISSUES);
        assert!(
            report
                .issues()
                .windows(2)
                .all(|w| w[0].severity <= w[1].severity),
            "errors are not listed first"
        );
        if report.is_valid() {
            assert!(
                report.resource_type().is_some(),
                "a valid report without a type"
            );
            let json: Value = serde_json::from_slice(data).expect("a valid resource is JSON");
            assert!(json.is_object());
        }
        let lenient = validate(data, &strict.lenient_for_migration());
        assert_eq!(lenient.issues().len(), report.issues().len());
        assert!(lenient.errors().count() <= report.errors().count());
        for issue in lenient.issues() {
            assert!(
                report
                    .issues()
                    .iter()
                    .any(|i| i.code == issue.code && i.path == issue.path),
                "lenient mode invented an issue"
            );
            if issue.severity == Severity::Error {
                assert!(issue.code.unreadable());
            }
        }
        let outcome = report.operation_outcome();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        let issues = outcome["issue"].as_array().expect("issue is a list");
        assert!(!issues.is_empty());
        for (rendered, issue) in issues.iter().zip(report.issues()) {
            assert_eq!(rendered["details"]["text"], issue.message());
        }
    }
}
