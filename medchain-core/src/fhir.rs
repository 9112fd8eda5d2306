//! What medchain reads out of HL7 FHIR R4 resources.
//!
//! A record is a FHIR R4 resource in JSON. Before a record is sealed, [`parse_resource`] checks
//! that the bytes are a JSON object whose `resourceType` names a resource of FHIR R4 (4.0.1).
//! Error messages never quote the input: it may be health data.

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
        }
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
}
