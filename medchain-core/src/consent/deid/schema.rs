//! The allow-lists: for each FHIR R4 resource type research may receive, the elements it may
//! keep and what each one is. An element that is not listed here is dropped, whatever it holds.
//!
//! The lists never name an element of a person-bearing type (`HumanName`, `Address` beyond
//! the state, `ContactPoint`, `Identifier`, `string`, `markdown`, `uri`/`url`/`canonical`,
//! `Attachment` content, `Annotation`, `Narrative`, a `Reference`'s display or identifier), in
//! a resource or in an extension; `schema_names_no_person_bearing_element` (in the tests)
//! checks that no kept name ends in `Identifier`/`Id` or names a uid or URL.

/// How a kept element is reduced. Every kind keeps only structure it knows.
#[derive(Clone, Copy, Debug)]
pub(super) enum Kind {
    /// A FHIR `code` from exactly these values.
    Code(&'static [&'static str]),
    /// A `boolean`.
    Bool,
    /// An `integer`, `positiveInt` or `unsignedInt` (a JSON integer).
    Int,
    /// A `decimal`.
    Decimal,
    /// A `CodeableConcept`: its codings that [`super::terms::coding_allowed`] accepts; `text`
    /// and displays are dropped.
    Concept,
    /// A `Coding`: `system` and `code` when accepted.
    Coding,
    /// A `Quantity` (also `Duration`, `Count`, `Distance`, `SimpleQuantity`): the value, a
    /// comparator, a unit from the units table; a time quantity over 89 years is 90 or older.
    Quantity,
    /// An `Age`: as [`Kind::Quantity`], a value without a time unit counts as years, and the
    /// age is checked against the release year as well (see the module docs).
    Age,
    /// A number that is an age in years (a `valueInteger` under an age code).
    AgeNumber,
    /// A `Range` of ages.
    AgeRange,
    /// `Money`: the value and an ISO 4217 currency.
    Money,
    /// A `Range` of quantities.
    Range,
    /// A `Ratio` of quantities.
    Ratio,
    /// A `date`, `dateTime` or `instant` (or anything date-like): reduced to its year.
    Date,
    /// `Patient.birthDate`: its year, or nothing (and the 90-or-older marker) when the year
    /// makes the patient 90 or older at the release.
    BirthDate,
    /// A `Period`: the years of its start and end.
    Period,
    /// A `Reference`: its `reference` pseudonymised, its resource `type`; display and
    /// identifier dropped.
    Ref,
    /// `Bundle.entry.fullUrl`: pseudonymised as a reference is.
    FullUrl,
    /// `Bundle.entry.response.status`: the three-digit HTTP status code only.
    HttpStatus,
    /// A questionnaire `linkId` of structural shape (see [`super::terms::link_id`]).
    LinkId,
    /// An attachment's MIME type without parameters.
    MimeType,
    /// An `Address`: the US state (USPS code) and the country code, nothing else.
    Address,
    /// A backbone element or complex type with its own allow-list.
    Object(&'static [Field]),
    /// A whole resource (a Bundle entry, a contained resource), de-identified by its own
    /// allow-list.
    Resource,
}

impl Kind {
    /// The kind of a `value[x]` under an age code: the value is an age whatever its type.
    pub(super) fn as_age(self) -> Self {
        match self {
            Self::Quantity => Self::Age,
            Self::Int | Self::Decimal => Self::AgeNumber,
            Self::Range => Self::AgeRange,
            other => other,
        }
    }
}

/// One kept element of an allow-list.
#[derive(Clone, Copy, Debug)]
pub(super) enum Field {
    /// The element `name`.
    One(&'static str, Kind),
    /// The choice element `prefix[x]` with these type suffixes (`valueQuantity`, …); the
    /// suffixes that are not listed (`valueString`, `onsetString`, …) are dropped.
    Choice(&'static str, &'static [(&'static str, Kind)]),
}

impl Field {
    /// The kind of the JSON key `key` if this field keeps it.
    fn kind_of(&self, key: &str) -> Option<Kind> {
        match *self {
            Self::One(name, kind) => (name == key).then_some(kind),
            Self::Choice(prefix, types) => {
                let suffix = key.strip_prefix(prefix)?;
                types.iter().find(|(t, _)| *t == suffix).map(|(_, k)| *k)
            }
        }
    }

    /// Every JSON key this field keeps.
    #[cfg(test)]
    pub(super) fn keys(&self) -> Vec<String> {
        match *self {
            Self::One(name, _) => vec![name.to_owned()],
            Self::Choice(prefix, types) => {
                types.iter().map(|(t, _)| format!("{prefix}{t}")).collect()
            }
        }
    }

    /// The kinds this field can take.
    #[cfg(test)]
    pub(super) fn kinds(&self) -> Vec<Kind> {
        match *self {
            Self::One(_, kind) => vec![kind],
            Self::Choice(_, types) => types.iter().map(|(_, k)| *k).collect(),
        }
    }
}

/// The kind of `key` in `fields`, if the allow-list keeps it.
pub(super) fn lookup(fields: &[Field], key: &str) -> Option<Kind> {
    fields.iter().find_map(|f| f.kind_of(key))
}

/// An extension research may keep: its URL, the one `value[x]` it may carry, and the
/// sub-extensions it may hold. Every other extension is dropped.
#[derive(Debug)]
pub(super) struct ExtRule {
    /// The extension's URL.
    pub url: &'static str,
    /// The `value[x]` suffix and kind.
    pub value: Option<(&'static str, Kind)>,
    /// Sub-extensions.
    pub sub: &'static [ExtRule],
}

use Field::{Choice, One};
use Kind::*;

const OMB_PARTS: &[ExtRule] = &[
    ExtRule {
        url: "ombCategory",
        value: Some(("Coding", Coding)),
        sub: &[],
    },
    ExtRule {
        url: "detailed",
        value: Some(("Coding", Coding)),
        sub: &[],
    },
];

/// US Core race, ethnicity (the coded parts; the `text` part is free text and dropped), birth
/// sex, and this de-identifier's own "90 or older" marker (so that de-identifying an output
/// again keeps it).
const PATIENT_EXTENSIONS: &[ExtRule] = &[
    ExtRule {
        url: AGE_90_OR_OLDER,
        value: Some(("Boolean", Bool)),
        sub: &[],
    },
    ExtRule {
        url: "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race",
        value: None,
        sub: OMB_PARTS,
    },
    ExtRule {
        url: "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity",
        value: None,
        sub: OMB_PARTS,
    },
    ExtRule {
        url: "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
        value: Some(("Code", Code(&["F", "M", "UNK"]))),
        sub: &[],
    },
];

/// The extensions research may keep on a resource of type `resource_type`.
pub(super) fn extensions(resource_type: &str) -> &'static [ExtRule] {
    match resource_type {
        "Patient" => PATIENT_EXTENSIONS,
        _ => &[],
    }
}

/// The extension that replaces a birth date making the patient 90 or older.
pub(super) const AGE_90_OR_OLDER: &str = "urn:medchain:age-90-or-older";

// ---- value sets of the kept `code` elements ----------------------------------------------

const GENDER: &[&str] = &["male", "female", "other", "unknown"];
const OBS_STATUS: &[&str] = &[
    "registered",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const EVENT_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "not-done",
    "on-hold",
    "stopped",
    "completed",
    "entered-in-error",
    "unknown",
];
const REQUEST_STATUS: &[&str] = &[
    "draft",
    "active",
    "on-hold",
    "revoked",
    "completed",
    "entered-in-error",
    "unknown",
];
const REQUEST_INTENT: &[&str] = &[
    "proposal",
    "plan",
    "directive",
    "order",
    "original-order",
    "reflex-order",
    "filler-order",
    "instance-order",
    "option",
];
const REQUEST_PRIORITY: &[&str] = &["routine", "urgent", "asap", "stat"];
const MEDREQ_STATUS: &[&str] = &[
    "active",
    "on-hold",
    "cancelled",
    "completed",
    "entered-in-error",
    "stopped",
    "draft",
    "unknown",
];
const MEDSTMT_STATUS: &[&str] = &[
    "active",
    "completed",
    "entered-in-error",
    "intended",
    "stopped",
    "on-hold",
    "unknown",
    "not-taken",
];
const MEDDISP_STATUS: &[&str] = &[
    "preparation",
    "in-progress",
    "cancelled",
    "on-hold",
    "completed",
    "entered-in-error",
    "stopped",
    "declined",
    "unknown",
];
const MED_STATUS: &[&str] = &["active", "inactive", "entered-in-error"];
const IMM_STATUS: &[&str] = &["completed", "entered-in-error", "not-done"];
const ALLERGY_TYPE: &[&str] = &["allergy", "intolerance"];
const ALLERGY_CATEGORY: &[&str] = &["food", "medication", "environment", "biologic"];
const CRITICALITY: &[&str] = &["low", "high", "unable-to-assess"];
const SEVERITY: &[&str] = &["mild", "moderate", "severe"];
const ENC_STATUS: &[&str] = &[
    "planned",
    "arrived",
    "triaged",
    "in-progress",
    "onleave",
    "finished",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const DR_STATUS: &[&str] = &[
    "registered",
    "partial",
    "preliminary",
    "final",
    "amended",
    "corrected",
    "appended",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const DOCREF_STATUS: &[&str] = &["current", "superseded", "entered-in-error"];
const DOC_STATUS: &[&str] = &["preliminary", "final", "amended", "entered-in-error"];
const APPT_STATUS: &[&str] = &[
    "proposed",
    "pending",
    "booked",
    "arrived",
    "fulfilled",
    "cancelled",
    "noshow",
    "entered-in-error",
    "checked-in",
    "waitlist",
];
const PARTICIPANT_REQUIRED: &[&str] = &["required", "optional", "information-only"];
const PARTICIPATION_STATUS: &[&str] = &["accepted", "declined", "tentative", "needs-action"];
const QR_STATUS: &[&str] = &[
    "in-progress",
    "completed",
    "amended",
    "entered-in-error",
    "stopped",
];
const FMH_STATUS: &[&str] = &["partial", "completed", "entered-in-error", "health-unknown"];
const ACCOUNT_STATUS: &[&str] = &[
    "active",
    "inactive",
    "entered-in-error",
    "on-hold",
    "unknown",
];
const FM_STATUS: &[&str] = &["active", "cancelled", "draft", "entered-in-error"];
const CLAIM_USE: &[&str] = &["claim", "preauthorization", "predetermination"];
const DEVICE_STATUS: &[&str] = &["active", "inactive", "entered-in-error", "unknown"];
const IMAGING_STATUS: &[&str] = &[
    "registered",
    "available",
    "cancelled",
    "entered-in-error",
    "unknown",
];
const SPECIMEN_STATUS: &[&str] = &[
    "available",
    "unavailable",
    "unsatisfactory",
    "entered-in-error",
];
const CAREPLAN_INTENT: &[&str] = &["proposal", "plan", "order", "option"];
const CAREPLAN_ACTIVITY_KIND: &[&str] = &[
    "Appointment",
    "CommunicationRequest",
    "DeviceRequest",
    "MedicationRequest",
    "NutritionOrder",
    "Task",
    "ServiceRequest",
    "VisionPrescription",
];
const CAREPLAN_ACTIVITY_STATUS: &[&str] = &[
    "not-started",
    "scheduled",
    "in-progress",
    "on-hold",
    "completed",
    "cancelled",
    "stopped",
    "unknown",
    "entered-in-error",
];
const GOAL_LIFECYCLE: &[&str] = &[
    "proposed",
    "planned",
    "accepted",
    "active",
    "on-hold",
    "completed",
    "cancelled",
    "entered-in-error",
    "rejected",
];
const LOCATION_STATUS: &[&str] = &["active", "suspended", "inactive"];
const BUNDLE_TYPE: &[&str] = &[
    "document",
    "message",
    "transaction",
    "transaction-response",
    "batch",
    "batch-response",
    "history",
    "searchset",
    "collection",
];
const HTTP_VERB: &[&str] = &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"];
const UNITS_OF_TIME: &[&str] = &["s", "min", "h", "d", "wk", "mo", "a"];
const DAYS_OF_WEEK: &[&str] = &["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

// ---- choice types --------------------------------------------------------------------------

/// `value[x]` of observations and their components: no `String`, `Time`, `SampledData`.
const OBS_VALUE: &[(&str, Kind)] = &[
    ("Quantity", Quantity),
    ("CodeableConcept", Concept),
    ("Boolean", Bool),
    ("Integer", Int),
    ("Range", Range),
    ("Ratio", Ratio),
    ("DateTime", Date),
    ("Period", Period),
];
const EFFECTIVE: &[(&str, Kind)] = &[
    ("DateTime", Date),
    ("Period", Period),
    ("Instant", Date),
    ("Timing", Object(TIMING)),
];
const DATE_OR_PERIOD: &[(&str, Kind)] = &[("DateTime", Date), ("Period", Period)];
/// `onset[x]`, `abatement[x]`, `performed[x]`: no `String` (`"at age 94"`).
const ONSET: &[(&str, Kind)] = &[
    ("DateTime", Date),
    ("Age", Age),
    ("Period", Period),
    ("Range", AgeRange),
];
const MEDICATION: &[(&str, Kind)] = &[("CodeableConcept", Concept), ("Reference", Ref)];
const AS_NEEDED: &[(&str, Kind)] = &[("Boolean", Bool), ("CodeableConcept", Concept)];
const BOOL: &[(&str, Kind)] = &[("Boolean", Bool)];
const CONCEPT: &[(&str, Kind)] = &[("CodeableConcept", Concept)];
const POSITIVE_INT: &[(&str, Kind)] = &[("PositiveInt", Int)];

// ---- data types ------------------------------------------------------------------------------

/// `Period`.
pub(super) const PERIOD: &[Field] = &[One("start", Date), One("end", Date)];

const TIMING_REPEAT: &[Field] = &[
    Choice(
        "bounds",
        &[("Duration", Quantity), ("Range", Range), ("Period", Period)],
    ),
    One("count", Int),
    One("countMax", Int),
    One("duration", Decimal),
    One("durationMax", Decimal),
    One("durationUnit", Code(UNITS_OF_TIME)),
    One("frequency", Int),
    One("frequencyMax", Int),
    One("period", Decimal),
    One("periodMax", Decimal),
    One("periodUnit", Code(UNITS_OF_TIME)),
    One("dayOfWeek", Code(DAYS_OF_WEEK)),
    One("offset", Int),
];

/// `Timing`: `event` dates (an array) become years.
const TIMING: &[Field] = &[
    One("event", Date),
    One("repeat", Object(TIMING_REPEAT)),
    One("code", Concept),
];

const DOSE_AND_RATE: &[Field] = &[
    One("type", Concept),
    Choice("dose", &[("Range", Range), ("Quantity", Quantity)]),
    Choice(
        "rate",
        &[("Ratio", Ratio), ("Range", Range), ("Quantity", Quantity)],
    ),
];

/// `Dosage`: no `text`, `patientInstruction`.
const DOSAGE: &[Field] = &[
    One("sequence", Int),
    One("additionalInstruction", Concept),
    One("timing", Object(TIMING)),
    Choice("asNeeded", AS_NEEDED),
    One("site", Concept),
    One("route", Concept),
    One("method", Concept),
    One("doseAndRate", Object(DOSE_AND_RATE)),
    One("maxDosePerPeriod", Ratio),
    One("maxDosePerAdministration", Quantity),
    One("maxDosePerLifetime", Quantity),
];

/// `Attachment`: the content type only (no `data`, `url`, `title`, `hash`).
const ATTACHMENT: &[Field] = &[One("contentType", MimeType)];

// ---- resources -------------------------------------------------------------------------------

const PATIENT: &[Field] = &[
    One("active", Bool),
    One("gender", Code(GENDER)),
    One("birthDate", BirthDate),
    Choice("deceased", &[("Boolean", Bool), ("DateTime", Date)]),
    One("address", Address),
    One("maritalStatus", Concept),
    Choice("multipleBirth", BOOL),
    One(
        "communication",
        Object(&[One("language", Concept), One("preferred", Bool)]),
    ),
];

const REFERENCE_RANGE: &[Field] = &[
    One("low", Quantity),
    One("high", Quantity),
    One("type", Concept),
    One("appliesTo", Concept),
    One("age", AgeRange),
];

const OBS_COMPONENT: &[Field] = &[
    One("code", Concept),
    Choice("value", OBS_VALUE),
    One("dataAbsentReason", Concept),
    One("interpretation", Concept),
    One("referenceRange", Object(REFERENCE_RANGE)),
];

const OBSERVATION: &[Field] = &[
    One("status", Code(OBS_STATUS)),
    One("category", Concept),
    One("code", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    Choice("effective", EFFECTIVE),
    One("issued", Date),
    Choice("value", OBS_VALUE),
    One("dataAbsentReason", Concept),
    One("interpretation", Concept),
    One("bodySite", Concept),
    One("method", Concept),
    One("referenceRange", Object(REFERENCE_RANGE)),
    One("hasMember", Ref),
    One("derivedFrom", Ref),
    One("component", Object(OBS_COMPONENT)),
];

const CONDITION: &[Field] = &[
    One("clinicalStatus", Concept),
    One("verificationStatus", Concept),
    One("category", Concept),
    One("severity", Concept),
    One("code", Concept),
    One("bodySite", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    Choice("onset", ONSET),
    Choice("abatement", ONSET),
    One("recordedDate", Date),
    One(
        "stage",
        Object(&[One("summary", Concept), One("type", Concept)]),
    ),
    One("evidence", Object(&[One("code", Concept)])),
];

const PROCEDURE: &[Field] = &[
    One("status", Code(EVENT_STATUS)),
    One("statusReason", Concept),
    One("category", Concept),
    One("code", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    Choice("performed", ONSET),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("bodySite", Concept),
    One("outcome", Concept),
    One("complication", Concept),
    One("followUp", Concept),
    One("usedCode", Concept),
];

const MEDICATION_REQUEST: &[Field] = &[
    One("status", Code(MEDREQ_STATUS)),
    One("statusReason", Concept),
    One("intent", Code(REQUEST_INTENT)),
    One("category", Concept),
    One("priority", Code(REQUEST_PRIORITY)),
    One("doNotPerform", Bool),
    Choice("reported", BOOL),
    Choice("medication", MEDICATION),
    One("subject", Ref),
    One("encounter", Ref),
    One("authoredOn", Date),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("basedOn", Ref),
    One("courseOfTherapyType", Concept),
    One("dosageInstruction", Object(DOSAGE)),
    One(
        "dispenseRequest",
        Object(&[
            One("validityPeriod", Period),
            One("numberOfRepeatsAllowed", Int),
            One("quantity", Quantity),
            One("expectedSupplyDuration", Quantity),
            One("dispenseInterval", Quantity),
            One(
                "initialFill",
                Object(&[One("quantity", Quantity), One("duration", Quantity)]),
            ),
        ]),
    ),
    One(
        "substitution",
        Object(&[Choice("allowed", AS_NEEDED), One("reason", Concept)]),
    ),
    One("priorPrescription", Ref),
];

const MEDICATION_STATEMENT: &[Field] = &[
    One("status", Code(MEDSTMT_STATUS)),
    One("statusReason", Concept),
    One("category", Concept),
    Choice("medication", MEDICATION),
    One("subject", Ref),
    One("context", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    Choice("effective", DATE_OR_PERIOD),
    One("dateAsserted", Date),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("dosage", Object(DOSAGE)),
];

const MEDICATION_ADMINISTRATION: &[Field] = &[
    One("status", Code(EVENT_STATUS)),
    One("statusReason", Concept),
    One("category", Concept),
    Choice("medication", MEDICATION),
    One("subject", Ref),
    One("context", Ref),
    One("partOf", Ref),
    Choice("effective", DATE_OR_PERIOD),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("request", Ref),
    One(
        "dosage",
        Object(&[
            One("site", Concept),
            One("route", Concept),
            One("method", Concept),
            One("dose", Quantity),
            Choice("rate", &[("Ratio", Ratio), ("Quantity", Quantity)]),
        ]),
    ),
];

const MEDICATION_DISPENSE: &[Field] = &[
    One("status", Code(MEDDISP_STATUS)),
    Choice("statusReason", CONCEPT),
    One("category", Concept),
    Choice("medication", MEDICATION),
    One("subject", Ref),
    One("context", Ref),
    One("authorizingPrescription", Ref),
    One("type", Concept),
    One("quantity", Quantity),
    One("daysSupply", Quantity),
    One("whenPrepared", Date),
    One("whenHandedOver", Date),
    One("dosageInstruction", Object(DOSAGE)),
    One(
        "substitution",
        Object(&[
            One("wasSubstituted", Bool),
            One("type", Concept),
            One("reason", Concept),
        ]),
    ),
];

const MEDICATION_RESOURCE: &[Field] = &[
    One("code", Concept),
    One("status", Code(MED_STATUS)),
    One("form", Concept),
    One("amount", Ratio),
    One(
        "ingredient",
        Object(&[
            Choice("item", MEDICATION),
            One("isActive", Bool),
            One("strength", Ratio),
        ]),
    ),
];

const IMMUNIZATION: &[Field] = &[
    One("status", Code(IMM_STATUS)),
    One("statusReason", Concept),
    One("vaccineCode", Concept),
    One("patient", Ref),
    One("encounter", Ref),
    Choice("occurrence", &[("DateTime", Date)]),
    One("recorded", Date),
    One("primarySource", Bool),
    One("reportOrigin", Concept),
    One("site", Concept),
    One("route", Concept),
    One("doseQuantity", Quantity),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("isSubpotent", Bool),
    One("subpotentReason", Concept),
    One("programEligibility", Concept),
    One("fundingSource", Concept),
    One(
        "reaction",
        Object(&[One("date", Date), One("reported", Bool)]),
    ),
    One(
        "protocolApplied",
        Object(&[
            One("targetDisease", Concept),
            Choice("doseNumber", POSITIVE_INT),
            Choice("seriesDoses", POSITIVE_INT),
        ]),
    ),
];

const ALLERGY_INTOLERANCE: &[Field] = &[
    One("clinicalStatus", Concept),
    One("verificationStatus", Concept),
    One("type", Code(ALLERGY_TYPE)),
    One("category", Code(ALLERGY_CATEGORY)),
    One("criticality", Code(CRITICALITY)),
    One("code", Concept),
    One("patient", Ref),
    One("encounter", Ref),
    Choice("onset", ONSET),
    One("recordedDate", Date),
    One("lastOccurrence", Date),
    One(
        "reaction",
        Object(&[
            One("substance", Concept),
            One("manifestation", Concept),
            One("onset", Date),
            One("severity", Code(SEVERITY)),
            One("exposureRoute", Concept),
        ]),
    ),
];

const ENCOUNTER: &[Field] = &[
    One("status", Code(ENC_STATUS)),
    One("class", Coding),
    One("type", Concept),
    One("serviceType", Concept),
    One("priority", Concept),
    One("subject", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    One("period", Period),
    One("length", Quantity),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One(
        "diagnosis",
        Object(&[One("condition", Ref), One("use", Concept), One("rank", Int)]),
    ),
    One(
        "hospitalization",
        Object(&[
            One("admitSource", Concept),
            One("reAdmission", Concept),
            One("dietPreference", Concept),
            One("specialCourtesy", Concept),
            One("specialArrangement", Concept),
            One("dischargeDisposition", Concept),
        ]),
    ),
];

const DIAGNOSTIC_REPORT: &[Field] = &[
    One("status", Code(DR_STATUS)),
    One("category", Concept),
    One("code", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    Choice("effective", DATE_OR_PERIOD),
    One("issued", Date),
    One("specimen", Ref),
    One("result", Ref),
    One("imagingStudy", Ref),
    One("conclusionCode", Concept),
];

const DOCUMENT_REFERENCE: &[Field] = &[
    One("status", Code(DOCREF_STATUS)),
    One("docStatus", Code(DOC_STATUS)),
    One("type", Concept),
    One("category", Concept),
    One("subject", Ref),
    One("date", Date),
    One("securityLabel", Concept),
    One(
        "content",
        Object(&[One("attachment", Object(ATTACHMENT)), One("format", Coding)]),
    ),
    One(
        "context",
        Object(&[
            One("encounter", Ref),
            One("event", Concept),
            One("period", Period),
            One("facilityType", Concept),
            One("practiceSetting", Concept),
            One("related", Ref),
        ]),
    ),
];

const MEDIA: &[Field] = &[
    One("status", Code(EVENT_STATUS)),
    One("type", Concept),
    One("modality", Concept),
    One("view", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    Choice("created", DATE_OR_PERIOD),
    One("issued", Date),
    One("reasonCode", Concept),
    One("bodySite", Concept),
    One("height", Int),
    One("width", Int),
    One("frames", Int),
    One("duration", Decimal),
    One("content", Object(ATTACHMENT)),
];

const COMMUNICATION: &[Field] = &[
    One("status", Code(EVENT_STATUS)),
    One("statusReason", Concept),
    One("category", Concept),
    One("priority", Code(REQUEST_PRIORITY)),
    One("medium", Concept),
    One("subject", Ref),
    One("topic", Concept),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    One("inResponseTo", Ref),
    One("sent", Date),
    One("received", Date),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
];

const APPOINTMENT: &[Field] = &[
    One("status", Code(APPT_STATUS)),
    One("cancelationReason", Concept),
    One("serviceCategory", Concept),
    One("serviceType", Concept),
    One("specialty", Concept),
    One("appointmentType", Concept),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("priority", Int),
    One("start", Date),
    One("end", Date),
    One("minutesDuration", Int),
    One("created", Date),
    One("basedOn", Ref),
    One(
        "participant",
        Object(&[
            One("type", Concept),
            One("actor", Ref),
            One("required", Code(PARTICIPANT_REQUIRED)),
            One("status", Code(PARTICIPATION_STATUS)),
            One("period", Period),
        ]),
    ),
];

/// Coded answers only: no `String`, `Time`, `Uri`, `Attachment`, `Reference`.
const QR_ANSWER_VALUE: &[(&str, Kind)] = &[
    ("Boolean", Bool),
    ("Decimal", Decimal),
    ("Integer", Int),
    ("Date", Date),
    ("DateTime", Date),
    ("Coding", Coding),
    ("Quantity", Quantity),
];

static QR_ANSWER: [Field; 2] = [
    Choice("value", QR_ANSWER_VALUE),
    One("item", Object(&QR_ITEM)),
];

/// Questionnaire items: the structural `linkId` and the coded answers; no `text`.
static QR_ITEM: [Field; 3] = [
    One("linkId", LinkId),
    One("answer", Object(&QR_ANSWER)),
    One("item", Object(&QR_ITEM)),
];

const QUESTIONNAIRE_RESPONSE: &[Field] = &[
    One("status", Code(QR_STATUS)),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("partOf", Ref),
    One("authored", Date),
    One("item", Object(&QR_ITEM)),
];

/// A relative's history: no `name`, no `born[x]` (a relative's birth date), no
/// `ageString`/`onsetString`/`deceasedString`.
const FAMILY_MEMBER_HISTORY: &[Field] = &[
    One("status", Code(FMH_STATUS)),
    One("dataAbsentReason", Concept),
    One("patient", Ref),
    One("date", Date),
    One("relationship", Concept),
    One("sex", Concept),
    Choice("age", &[("Age", Age), ("Range", AgeRange)]),
    One("estimatedAge", Bool),
    Choice(
        "deceased",
        &[
            ("Boolean", Bool),
            ("Age", Age),
            ("Range", AgeRange),
            ("Date", Date),
        ],
    ),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One(
        "condition",
        Object(&[
            One("code", Concept),
            One("outcome", Concept),
            One("contributedToDeath", Bool),
            Choice(
                "onset",
                &[("Age", Age), ("Range", AgeRange), ("Period", Period)],
            ),
        ]),
    ),
];

const ACCOUNT: &[Field] = &[
    One("status", Code(ACCOUNT_STATUS)),
    One("type", Concept),
    One("subject", Ref),
    One("servicePeriod", Period),
];

/// No `subscriberId`, `dependent`, `network`, class `value`/`name`, `payor`.
const COVERAGE: &[Field] = &[
    One("status", Code(FM_STATUS)),
    One("type", Concept),
    One("subscriber", Ref),
    One("beneficiary", Ref),
    One("relationship", Concept),
    One("period", Period),
    One("class", Object(&[One("type", Concept)])),
];

/// No `insurance.preAuthRef`, `accident.location[x]`, `payee`, `provider`.
const CLAIM: &[Field] = &[
    One("status", Code(FM_STATUS)),
    One("type", Concept),
    One("subType", Concept),
    One("use", Code(CLAIM_USE)),
    One("patient", Ref),
    One("billablePeriod", Period),
    One("created", Date),
    One("priority", Concept),
    One(
        "diagnosis",
        Object(&[
            One("sequence", Int),
            Choice("diagnosis", CONCEPT),
            One("type", Concept),
            One("onAdmission", Concept),
        ]),
    ),
    One(
        "procedure",
        Object(&[
            One("sequence", Int),
            One("type", Concept),
            One("date", Date),
            Choice("procedure", CONCEPT),
        ]),
    ),
    One(
        "insurance",
        Object(&[
            One("sequence", Int),
            One("focal", Bool),
            One("coverage", Ref),
        ]),
    ),
    One(
        "accident",
        Object(&[One("date", Date), One("type", Concept)]),
    ),
    One(
        "item",
        Object(&[
            One("sequence", Int),
            One("revenue", Concept),
            One("category", Concept),
            One("productOrService", Concept),
            One("modifier", Concept),
            Choice("serviced", &[("Date", Date), ("Period", Period)]),
            One("quantity", Quantity),
            One("unitPrice", Money),
            One("factor", Decimal),
            One("net", Money),
            One("bodySite", Concept),
            One("subSite", Concept),
        ]),
    ),
    One("total", Money),
];

/// No `udiCarrier`, `distinctIdentifier`, `serialNumber`, `lotNumber`, `deviceName`,
/// `modelNumber`, manufacture or expiry dates.
const DEVICE: &[Field] = &[
    One("status", Code(DEVICE_STATUS)),
    One("type", Concept),
    One("patient", Ref),
    One("safety", Concept),
];

/// No study, series or instance `uid`s, no `endpoint`, no `description`.
const IMAGING_STUDY: &[Field] = &[
    One("status", Code(IMAGING_STATUS)),
    One("modality", Coding),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("started", Date),
    One("numberOfSeries", Int),
    One("numberOfInstances", Int),
    One("procedureCode", Concept),
    One("reasonCode", Concept),
    One(
        "series",
        Object(&[
            One("number", Int),
            One("modality", Coding),
            One("numberOfInstances", Int),
            One("bodySite", Coding),
            One("laterality", Coding),
            One("started", Date),
            One("instance", Object(&[One("number", Int)])),
        ]),
    ),
];

/// No `accessionIdentifier`.
const SPECIMEN: &[Field] = &[
    One("status", Code(SPECIMEN_STATUS)),
    One("type", Concept),
    One("subject", Ref),
    One("receivedTime", Date),
    One("parent", Ref),
    One("request", Ref),
    One(
        "collection",
        Object(&[
            Choice("collected", DATE_OR_PERIOD),
            One("duration", Quantity),
            One("quantity", Quantity),
            One("method", Concept),
            One("bodySite", Concept),
            Choice(
                "fastingStatus",
                &[("CodeableConcept", Concept), ("Duration", Quantity)],
            ),
        ]),
    ),
    One("condition", Concept),
];

/// No `requisition`, `patientInstruction`.
const SERVICE_REQUEST: &[Field] = &[
    One("status", Code(REQUEST_STATUS)),
    One("intent", Code(REQUEST_INTENT)),
    One("category", Concept),
    One("priority", Code(REQUEST_PRIORITY)),
    One("doNotPerform", Bool),
    One("code", Concept),
    One("orderDetail", Concept),
    Choice(
        "quantity",
        &[("Quantity", Quantity), ("Ratio", Ratio), ("Range", Range)],
    ),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("replaces", Ref),
    Choice(
        "occurrence",
        &[
            ("DateTime", Date),
            ("Period", Period),
            ("Timing", Object(TIMING)),
        ],
    ),
    Choice("asNeeded", AS_NEEDED),
    One("authoredOn", Date),
    One("performerType", Concept),
    One("reasonCode", Concept),
    One("reasonReference", Ref),
    One("bodySite", Concept),
];

/// No `title`, `description`, activity `description`.
const CARE_PLAN: &[Field] = &[
    One("status", Code(REQUEST_STATUS)),
    One("intent", Code(CAREPLAN_INTENT)),
    One("category", Concept),
    One("subject", Ref),
    One("encounter", Ref),
    One("basedOn", Ref),
    One("replaces", Ref),
    One("partOf", Ref),
    One("period", Period),
    One("created", Date),
    One("addresses", Ref),
    One("goal", Ref),
    One(
        "activity",
        Object(&[
            One("outcomeCodeableConcept", Concept),
            One(
                "detail",
                Object(&[
                    One("kind", Code(CAREPLAN_ACTIVITY_KIND)),
                    One("code", Concept),
                    One("reasonCode", Concept),
                    One("goal", Ref),
                    One("status", Code(CAREPLAN_ACTIVITY_STATUS)),
                    One("statusReason", Concept),
                    One("doNotPerform", Bool),
                    Choice(
                        "scheduled",
                        &[("Timing", Object(TIMING)), ("Period", Period)],
                    ),
                    Choice("product", MEDICATION),
                    One("dailyAmount", Quantity),
                    One("quantity", Quantity),
                ]),
            ),
        ]),
    ),
];

/// `description` is a CodeableConcept (its codings stay, its text does not).
const GOAL: &[Field] = &[
    One("lifecycleStatus", Code(GOAL_LIFECYCLE)),
    One("achievementStatus", Concept),
    One("category", Concept),
    One("priority", Concept),
    One("description", Concept),
    One("subject", Ref),
    Choice("start", &[("Date", Date), ("CodeableConcept", Concept)]),
    One(
        "target",
        Object(&[
            One("measure", Concept),
            Choice(
                "detail",
                &[
                    ("Quantity", Quantity),
                    ("Range", Range),
                    ("CodeableConcept", Concept),
                    ("Boolean", Bool),
                    ("Integer", Int),
                    ("Ratio", Ratio),
                ],
            ),
            Choice("due", &[("Date", Date), ("Duration", Quantity)]),
        ]),
    ),
    One("statusDate", Date),
    One("addresses", Ref),
    One("outcomeCode", Concept),
];

/// A clinician: gender, qualifications and languages; no name, identifier (NPI), contact.
const PRACTITIONER: &[Field] = &[
    One("active", Bool),
    One("gender", Code(GENDER)),
    One("qualification", Object(&[One("code", Concept)])),
    One("communication", Concept),
];

const PRACTITIONER_ROLE: &[Field] = &[
    One("active", Bool),
    One("practitioner", Ref),
    One("organization", Ref),
    One("code", Concept),
    One("specialty", Concept),
];

const ORGANIZATION: &[Field] = &[
    One("active", Bool),
    One("type", Concept),
    One("address", Address),
];

const LOCATION: &[Field] = &[
    One("status", Code(LOCATION_STATUS)),
    One("type", Concept),
    One("physicalType", Concept),
    One("address", Address),
    One("managingOrganization", Ref),
];

/// Entries keep their resource (de-identified by its own allow-list), a pseudonymised
/// `fullUrl`, the request method and the response status; no request URL, response
/// `location`, `etag`, `link`, `identifier`.
const BUNDLE: &[Field] = &[
    One("type", Code(BUNDLE_TYPE)),
    One("timestamp", Date),
    One("total", Int),
    One(
        "entry",
        Object(&[
            One("fullUrl", FullUrl),
            One("resource", Resource),
            One("request", Object(&[One("method", Code(HTTP_VERB))])),
            One("response", Object(&[One("status", HttpStatus)])),
        ]),
    ),
];

/// Every resource type research may receive, with its allow-list.
pub(super) const RESOURCES: &[(&str, &[Field])] = &[
    ("Account", ACCOUNT),
    ("AllergyIntolerance", ALLERGY_INTOLERANCE),
    ("Appointment", APPOINTMENT),
    ("Bundle", BUNDLE),
    ("CarePlan", CARE_PLAN),
    ("Claim", CLAIM),
    ("Communication", COMMUNICATION),
    ("Condition", CONDITION),
    ("Coverage", COVERAGE),
    ("Device", DEVICE),
    ("DiagnosticReport", DIAGNOSTIC_REPORT),
    ("DocumentReference", DOCUMENT_REFERENCE),
    ("Encounter", ENCOUNTER),
    ("FamilyMemberHistory", FAMILY_MEMBER_HISTORY),
    ("Goal", GOAL),
    ("ImagingStudy", IMAGING_STUDY),
    ("Immunization", IMMUNIZATION),
    ("Location", LOCATION),
    ("Media", MEDIA),
    ("Medication", MEDICATION_RESOURCE),
    ("MedicationAdministration", MEDICATION_ADMINISTRATION),
    ("MedicationDispense", MEDICATION_DISPENSE),
    ("MedicationRequest", MEDICATION_REQUEST),
    ("MedicationStatement", MEDICATION_STATEMENT),
    ("Observation", OBSERVATION),
    ("Organization", ORGANIZATION),
    ("Patient", PATIENT),
    ("Practitioner", PRACTITIONER),
    ("PractitionerRole", PRACTITIONER_ROLE),
    ("Procedure", PROCEDURE),
    ("QuestionnaireResponse", QUESTIONNAIRE_RESPONSE),
    ("ServiceRequest", SERVICE_REQUEST),
    ("Specimen", SPECIMEN),
];

/// The allow-list of `resource_type`, if research may receive it.
pub(super) fn resource(resource_type: &str) -> Option<&'static [Field]> {
    RESOURCES
        .iter()
        .find(|(t, _)| *t == resource_type)
        .map(|(_, f)| *f)
}
