//! What a validation found: [`Issue`]s with a path, a severity and a code, never the input.
//!
//! Paths are FHIRPath-style element locations (`Observation.component[1].valueQuantity.value`).
//! Messages are fixed texts chosen by the [`IssueCode`]: nothing of the resource's values is ever
//! quoted, because the values are health data. The only parts of a path that come from the input
//! are element names; a name that is not a plausible FHIR element name is printed as `?`.

use std::fmt;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The resource is not valid: it is not sealed.
    Error,
    /// Valid, but worth knowing (a US Core must-support element is absent, or an error that
    /// lenient mode let through).
    Warning,
}

impl Severity {
    /// The FHIR `OperationOutcome.issue.severity` code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Warning => "warning",
        }
    }
}

/// The kind of a problem. Each has a fixed message ([`IssueCode::message`]) and an
/// `OperationOutcome` issue type ([`IssueCode::fhir_issue_type`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IssueCode {
    /// The payload is larger than the resource limit.
    TooLarge,
    /// The payload is not JSON (or not UTF-8).
    NotJson,
    /// The JSON is not an object.
    NotAnObject,
    /// No string `resourceType`.
    MissingResourceType,
    /// `resourceType` names no FHIR R4 resource.
    UnknownResourceType,
    /// A `resourceType` other than the one the position requires.
    WrongResourceType,
    /// JSON nested deeper than the limit.
    TooDeep,
    /// An object with more members than the limit.
    TooManyMembers,
    /// A key appears twice in one object.
    DuplicateKey,
    /// An element the type does not define.
    UnknownElement,
    /// A required element (minimum cardinality 1 or more) is missing.
    Required,
    /// A value of the wrong JSON type (a string where an object belongs, ...).
    WrongType,
    /// A single value where the element repeats (an array is needed).
    NotAnArray,
    /// An array where the element does not repeat.
    NotASingleValue,
    /// An empty array.
    EmptyArray,
    /// An empty string.
    EmptyValue,
    /// A `null` outside a primitive array.
    Null,
    /// A primitive whose text does not have its type's form (date, dateTime, instant, id, code,
    /// decimal, uri, ...).
    InvalidFormat,
    /// A number out of its type's range (integer, positiveInt, unsignedInt).
    OutOfRange,
    /// More than one type given for a choice element (`value[x]`).
    ChoiceConflict,
    /// A primitive array and its `_element` twin do not line up.
    MisalignedArrays,
    /// A `null` in a primitive array with no extension in its place.
    NullWithoutExtension,
    /// A resource `id` that is not a FHIR id (1–64 of `A-Z a-z 0-9 - .`).
    InvalidId,
    /// A code outside the value set of a required binding.
    CodeNotInValueSet,
    /// An element the network's profile (US Core) requires is missing.
    ProfileRequired,
    /// A US Core must-support element is absent (a warning).
    MustSupportMissing,
    /// A Bundle entry's `fullUrl` is not an absolute URL, `urn:uuid:` or `urn:oid:`.
    InvalidFullUrl,
    /// Two Bundle entries have the same `fullUrl`.
    DuplicateFullUrl,
    /// A `urn:uuid:`/`urn:oid:` reference to no entry of the Bundle, or a `#id` reference to no
    /// contained resource.
    UnresolvedReference,
    /// A transaction or batch Bundle entry without `request`.
    MissingEntryRequest,
    /// A Bundle entry that must carry a resource and does not.
    MissingEntryResource,
    /// A problem the structural validator reported that has no finer code here.
    Invalid,
}

impl IssueCode {
    /// The payload cannot be read, or is too costly to read (not JSON, not a known resource
    /// type, past the size, nesting or member limits): an error even in lenient mode.
    pub fn unreadable(self) -> bool {
        matches!(
            self,
            Self::TooLarge
                | Self::NotJson
                | Self::NotAnObject
                | Self::MissingResourceType
                | Self::UnknownResourceType
                | Self::TooDeep
                | Self::TooManyMembers
        )
    }

    /// The fixed message (never input).
    pub fn message(self) -> &'static str {
        match self {
            Self::TooLarge => "the resource is larger than the limit",
            Self::NotJson => "not JSON",
            Self::NotAnObject => "not a JSON object",
            Self::MissingResourceType => "a resource needs a resourceType",
            Self::UnknownResourceType => "not a FHIR R4 resource type",
            Self::WrongResourceType => "another resourceType than this position requires",
            Self::TooDeep => "nested deeper than the limit",
            Self::TooManyMembers => "more members in one object than the limit",
            Self::DuplicateKey => "the key appears more than once",
            Self::UnknownElement => "unknown element",
            Self::Required => "required element missing",
            Self::WrongType => "wrong JSON type for this element",
            Self::NotAnArray => "the element repeats: an array is needed",
            Self::NotASingleValue => "the element does not repeat: an array is not allowed",
            Self::EmptyArray => "an empty array is not allowed; leave the element out",
            Self::EmptyValue => "an empty value is not allowed; leave the element out",
            Self::Null => "null is not allowed here",
            Self::InvalidFormat => "the value does not have its type's form",
            Self::OutOfRange => "the number is out of its type's range",
            Self::ChoiceConflict => "only one type may be given for a choice element",
            Self::MisalignedArrays => "a primitive array and its extension array do not line up",
            Self::NullWithoutExtension => "null with no extension in its place",
            Self::InvalidId => "not a valid resource id",
            Self::CodeNotInValueSet => "the code is not in the required value set",
            Self::ProfileRequired => "required by the network's profile (US Core)",
            Self::MustSupportMissing => "US Core must-support element absent",
            Self::InvalidFullUrl => "fullUrl must be an absolute URL, urn:uuid: or urn:oid:",
            Self::DuplicateFullUrl => "two entries have the same fullUrl",
            Self::UnresolvedReference => "the reference resolves to nothing in the resource",
            Self::MissingEntryRequest => "a transaction or batch entry needs a request",
            Self::MissingEntryResource => "this entry needs a resource",
            Self::Invalid => "invalid content",
        }
    }

    /// The `OperationOutcome.issue.code` (value set `issue-type`, a required binding).
    pub fn fhir_issue_type(self) -> &'static str {
        match self {
            Self::TooLarge | Self::TooDeep | Self::TooManyMembers => "too-costly",
            Self::NotJson
            | Self::NotAnObject
            | Self::DuplicateKey
            | Self::UnknownElement
            | Self::WrongType
            | Self::NotAnArray
            | Self::NotASingleValue
            | Self::ChoiceConflict
            | Self::MisalignedArrays
            | Self::MissingResourceType
            | Self::UnknownResourceType
            | Self::WrongResourceType => "structure",
            Self::Required | Self::ProfileRequired | Self::MustSupportMissing => "required",
            Self::EmptyArray
            | Self::EmptyValue
            | Self::Null
            | Self::NullWithoutExtension
            | Self::InvalidFormat
            | Self::OutOfRange
            | Self::InvalidId => "value",
            Self::CodeNotInValueSet => "code-invalid",
            Self::InvalidFullUrl | Self::DuplicateFullUrl | Self::MissingEntryRequest => {
                "invariant"
            }
            Self::MissingEntryResource => "required",
            Self::UnresolvedReference => "not-found",
            Self::Invalid => "invalid",
        }
    }
}

/// One problem: where, how bad, what.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Issue {
    /// How bad it is.
    pub severity: Severity,
    /// What kind of problem.
    pub code: IssueCode,
    /// Where: `Observation.valueQuantity.value` (FHIRPath; array positions in brackets).
    pub path: String,
    /// What was expected, when the code alone does not say: the FHIR type of a malformed
    /// primitive (`dateTime`), the JSON type expected (`an object`), or the value set of a
    /// required binding (its canonical URL). Never input.
    pub expected: Option<&'static str>,
}

impl Issue {
    pub(crate) fn error(code: IssueCode, path: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            code,
            path: path.into(),
            expected: None,
        }
    }

    pub(crate) fn warning(code: IssueCode, path: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(code, path)
        }
    }

    pub(crate) fn expecting(mut self, expected: &'static str) -> Self {
        self.expected = Some(expected);
        self
    }

    /// The readable message: the code's message and, if any, what was expected.
    pub fn message(&self) -> String {
        match (self.code, self.expected) {
            (IssueCode::InvalidFormat, Some(t)) => format!("not a valid {t}"),
            (IssueCode::WrongType, Some(t)) => format!("wrong JSON type: expected {t}"),
            (IssueCode::CodeNotInValueSet, Some(vs)) => {
                format!("the code is not in the required value set {vs}")
            }
            (code, Some(e)) => format!("{} ({e})", code.message()),
            (code, None) => code.message().to_owned(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}: {}",
            self.severity.code(),
            self.path,
            self.message()
        )
    }
}

/// FHIR primitive type names, as `&'static str` (so no text of the input is kept).
const PRIMITIVE_TYPES: &[&str] = &[
    "base64Binary",
    "boolean",
    "canonical",
    "code",
    "date",
    "dateTime",
    "decimal",
    "id",
    "instant",
    "integer",
    "markdown",
    "oid",
    "positiveInt",
    "string",
    "time",
    "unsignedInt",
    "uri",
    "url",
    "uuid",
    "xhtml",
];

/// JSON kinds fhirkit names in "expected ..." messages.
const EXPECTED_KINDS: &[&str] = &[
    "an object",
    "a string",
    "an array",
    "a number",
    "a whole number",
    "true or false",
];

fn primitive_type(name: &str) -> Option<&'static str> {
    PRIMITIVE_TYPES.iter().copied().find(|t| *t == name)
}

/// Classifies one message of the structural validator (fhirkit `=0.1.0`, `decode.rs`,
/// `primitive.rs` and the generated `Resource` decoder) into a code and what was expected. The
/// message itself is dropped: several of them quote the input.
pub(crate) fn classify(message: &str) -> (IssueCode, Option<&'static str>) {
    use IssueCode as C;
    let exact = match message {
        "the key appears more than once" => Some(C::DuplicateKey),
        "unknown element" => Some(C::UnknownElement),
        "required element missing" => Some(C::Required),
        "expected a single value, found an array" => Some(C::NotASingleValue),
        "an empty array is not allowed; leave the element out" => Some(C::EmptyArray),
        "an empty string is not allowed" => Some(C::EmptyValue),
        "null is not allowed; leave the element out"
        | "null is not allowed in an array of complex values" => Some(C::Null),
        "null with no extension in its place" => Some(C::NullWithoutExtension),
        "a resource needs a resourceType" => Some(C::MissingResourceType),
        _ => None,
    };
    if let Some(code) = exact {
        return (code, None);
    }
    if message.starts_with("expected an array, found ") {
        return (C::NotAnArray, None);
    }
    if let Some(rest) = message.strip_prefix("expected ") {
        // "expected an object, found a string", "expected true or false, found ...", and the
        // resourceType check: `expected "Patient", found "Observation"`.
        if rest.starts_with('"') {
            return (C::WrongResourceType, None);
        }
        let kind = rest.split(", found").next().unwrap_or_default();
        return (
            C::WrongType,
            EXPECTED_KINDS.iter().copied().find(|k| *k == kind),
        );
    }
    if message.starts_with("only one type may be given") {
        return (C::ChoiceConflict, None);
    }
    if message.starts_with("needs at least ") {
        return (C::Required, None);
    }
    if message.contains("the two arrays must line up") {
        return (C::MisalignedArrays, None);
    }
    if message.ends_with("is not a FHIR R4 resource type this build knows") {
        return (C::UnknownResourceType, None);
    }
    if message.ends_with(" is not a FHIR decimal") {
        return (C::InvalidFormat, Some("decimal"));
    }
    if message.ends_with(" is not a FHIR integer") {
        return (C::InvalidFormat, Some("integer"));
    }
    if message.contains("is outside the 32-bit range")
        || message.ends_with("is not a positiveInt (1 or more)")
        || message.ends_with("is not an unsignedInt (0 or more)")
    {
        return (C::OutOfRange, None);
    }
    if let Some(rest) = message
        .strip_prefix("an empty ")
        .and_then(|r| r.strip_suffix(" is not allowed; leave the element out"))
    {
        return (C::EmptyValue, primitive_type(rest));
    }
    if let Some((_, ty)) = message.rsplit_once(" is not a valid ") {
        return (C::InvalidFormat, primitive_type(ty));
    }
    (C::Invalid, None)
}

/// The longest element name kept in a path.
const MAX_SEGMENT: usize = 64;

/// Turns a validator path into a FHIRPath expression that carries no input beyond plausible
/// element names: `_birthDate` becomes `birthDate` (FHIRPath has no underscore form), and a
/// segment that is not `[A-Za-z][A-Za-z0-9_]*` (at most 64 characters, an optional `[x]`, and
/// array positions) becomes `?`.
pub(crate) fn clean_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for (i, segment) in split_segments(path).into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        let (name, rest) = match segment.find('[') {
            Some(p) => segment.split_at(p),
            None => (segment, ""),
        };
        let name = name.strip_prefix('_').unwrap_or(name);
        let name_ok = name.len() <= MAX_SEGMENT
            && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        let rest_ok = rest == "[x]"
            || rest.split_inclusive(']').all(|p| {
                p.len() > 2
                    && p.starts_with('[')
                    && p[1..p.len() - 1].bytes().all(|b| b.is_ascii_digit())
            })
            || rest.is_empty();
        if name_ok && rest_ok {
            out.push_str(name);
            out.push_str(rest);
        } else {
            out.push('?');
        }
    }
    out
}

/// Splits `A.b[0].c` at dots that are not inside brackets.
fn split_segments(path: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in path.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            '.' if depth == 0 => {
                parts.push(&path[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&path[start..]);
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification_of_every_structural_message() {
        use IssueCode as C;
        let cases: &[(&str, IssueCode, Option<&str>)] = &[
            ("the key appears more than once", C::DuplicateKey, None),
            ("unknown element", C::UnknownElement, None),
            ("required element missing", C::Required, None),
            ("needs at least 2 entries, found 1", C::Required, None),
            (
                "expected a single value, found an array",
                C::NotASingleValue,
                None,
            ),
            ("expected an array, found an object", C::NotAnArray, None),
            (
                "expected an object, found a string",
                C::WrongType,
                Some("an object"),
            ),
            (
                "expected a string, found a number",
                C::WrongType,
                Some("a string"),
            ),
            (
                "expected true or false, found a string",
                C::WrongType,
                Some("true or false"),
            ),
            (
                "expected a whole number, found a string",
                C::WrongType,
                Some("a whole number"),
            ),
            (
                "expected a number, found a string",
                C::WrongType,
                Some("a number"),
            ),
            (
                "expected \"Patient\", found \"Observation\"",
                C::WrongResourceType,
                None,
            ),
            (
                "an empty array is not allowed; leave the element out",
                C::EmptyArray,
                None,
            ),
            ("an empty string is not allowed", C::EmptyValue, None),
            (
                "an empty code is not allowed; leave the element out",
                C::EmptyValue,
                Some("code"),
            ),
            ("null is not allowed; leave the element out", C::Null, None),
            (
                "null is not allowed in an array of complex values",
                C::Null,
                None,
            ),
            (
                "null with no extension in its place",
                C::NullWithoutExtension,
                None,
            ),
            (
                "has 2 entries but given has 3; the two arrays must line up",
                C::MisalignedArrays,
                None,
            ),
            (
                "only one type may be given, found valueString, valueBoolean",
                C::ChoiceConflict,
                None,
            ),
            (
                "\"1,5\" is not a FHIR decimal",
                C::InvalidFormat,
                Some("decimal"),
            ),
            (
                "1.0 is not a FHIR integer",
                C::InvalidFormat,
                Some("integer"),
            ),
            (
                "2147483648 is outside the 32-bit range of a FHIR integer",
                C::OutOfRange,
                None,
            ),
            ("0 is not a positiveInt (1 or more)", C::OutOfRange, None),
            ("-1 is not an unsignedInt (0 or more)", C::OutOfRange, None),
            (
                "\"2026-13-45\" is not a valid dateTime",
                C::InvalidFormat,
                Some("dateTime"),
            ),
            (
                "\"x y\" is not a valid code",
                C::InvalidFormat,
                Some("code"),
            ),
            (
                "a resource needs a resourceType",
                C::MissingResourceType,
                None,
            ),
            (
                "Foo is not a FHIR R4 resource type this build knows",
                C::UnknownResourceType,
                None,
            ),
            ("something new", C::Invalid, None),
        ];
        for (message, code, expected) in cases {
            assert_eq!(classify(message), (*code, *expected), "{message}");
        }
    }

    #[test]
    fn paths_keep_names_and_positions_only() {
        assert_eq!(
            clean_path("Observation.component[1].valueQuantity.value"),
            "Observation.component[1].valueQuantity.value"
        );
        assert_eq!(
            clean_path("Patient._birthDate.extension[0].url"),
            "Patient.birthDate.extension[0].url"
        );
        assert_eq!(clean_path("Observation.value[x]"), "Observation.value[x]");
        assert_eq!(
            clean_path("Patient.SSN 123-45-6789"),
            "Patient.?",
            "an odd key is not echoed"
        );
        assert_eq!(
            clean_path(&format!("Patient.{}", "a".repeat(65))),
            "Patient.?"
        );
        assert_eq!(clean_path("Patient.name[0][1]"), "Patient.name[0][1]");
        assert_eq!(clean_path("Patient.name[a]"), "Patient.?");
    }

    #[test]
    fn messages_never_quote_input() {
        let i = Issue::error(IssueCode::InvalidFormat, "Observation.effectiveDateTime")
            .expecting("dateTime");
        assert_eq!(
            i.to_string(),
            "error at Observation.effectiveDateTime: not a valid dateTime"
        );
        let w = Issue::warning(IssueCode::MustSupportMissing, "Patient.birthDate");
        assert_eq!(
            w.to_string(),
            "warning at Patient.birthDate: US Core must-support element absent"
        );
    }
}
