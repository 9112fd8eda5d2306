//! The checks medchain adds on top of the structural validation: size and nesting limits,
//! resource ids, the required bindings medchain relies on, US Core, Bundle entries and their
//! references, and `#id` references to contained resources.
//!
//! They run over the JSON tree the structural validator parsed (no second parse). Every
//! resource in the document is checked where it sits: the root, `contained`, Bundle entries
//! and any other place a resource may appear (an object with a `resourceType` is a resource:
//! anywhere else the structural validator reports `resourceType` as an unknown element).

use std::collections::HashSet;

use fhirkit::Json;
use medchain_core::genesis::FhirProfile;

use crate::issue::{Issue, IssueCode};

/// How deeply JSON may nest (objects and arrays). Real resources stay below 30; a Bundle of
/// Questionnaires with deeply nested items below 50.
pub const MAX_DEPTH: usize = 64;

/// Most members one JSON object may have. The largest R4 type has well under 100 elements, each
/// with at most a `_element` twin.
pub const MAX_MEMBERS: usize = 256;

/// One required binding: where, which value set, which codes.
pub(crate) struct Binding {
    /// The resource type.
    pub(crate) resource: &'static str,
    /// The element chain below the resource (arrays are walked at every level).
    pub(crate) path: &'static [&'static str],
    /// Where the element recurses (`Consent.provision.provision`), if it does.
    pub(crate) recursive: Option<&'static str>,
    /// `None` for a `code`; for a `CodeableConcept`, the code system its codings must use.
    pub(crate) system: Option<&'static str>,
    /// The value set's canonical URL.
    pub(crate) value_set: &'static str,
    /// Its codes (R4 4.0.1).
    pub(crate) codes: &'static [&'static str],
}

/// The required bindings checked (`docs/fhir.md`): the status codes medchain's rules, index and
/// research export read, the `Consent` and `AuditEvent` codes medchain writes, the Bundle codes
/// entry validation depends on, and `OperationOutcome` (which medchain renders). The code lists
/// are those of the R4 4.0.1 value sets named.
pub(crate) const BINDINGS: &[Binding] = &[
    Binding {
        resource: "AllergyIntolerance",
        path: &["clinicalStatus"],
        recursive: None,
        system: Some("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"),
        value_set: "http://hl7.org/fhir/ValueSet/allergyintolerance-clinical",
        codes: &["active", "inactive", "resolved"],
    },
    Binding {
        resource: "AllergyIntolerance",
        path: &["verificationStatus"],
        recursive: None,
        system: Some("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"),
        value_set: "http://hl7.org/fhir/ValueSet/allergyintolerance-verification",
        codes: &["unconfirmed", "confirmed", "refuted", "entered-in-error"],
    },
    Binding {
        resource: "AuditEvent",
        path: &["action"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/audit-event-action",
        codes: &["C", "R", "U", "D", "E"],
    },
    Binding {
        resource: "AuditEvent",
        path: &["outcome"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/audit-event-outcome",
        codes: &["0", "4", "8", "12"],
    },
    Binding {
        resource: "Bundle",
        path: &["type"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/bundle-type",
        codes: &[
            "document",
            "message",
            "transaction",
            "transaction-response",
            "batch",
            "batch-response",
            "history",
            "searchset",
            "collection",
        ],
    },
    Binding {
        resource: "Bundle",
        path: &["entry", "request", "method"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/http-verb",
        codes: &["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"],
    },
    Binding {
        resource: "Condition",
        path: &["clinicalStatus"],
        recursive: None,
        system: Some("http://terminology.hl7.org/CodeSystem/condition-clinical"),
        value_set: "http://hl7.org/fhir/ValueSet/condition-clinical",
        codes: &[
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        ],
    },
    Binding {
        resource: "Condition",
        path: &["verificationStatus"],
        recursive: None,
        system: Some("http://terminology.hl7.org/CodeSystem/condition-ver-status"),
        value_set: "http://hl7.org/fhir/ValueSet/condition-ver-status",
        codes: &[
            "unconfirmed",
            "provisional",
            "differential",
            "confirmed",
            "refuted",
            "entered-in-error",
        ],
    },
    Binding {
        resource: "Consent",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/consent-state-codes",
        codes: &[
            "draft",
            "proposed",
            "active",
            "rejected",
            "inactive",
            "entered-in-error",
        ],
    },
    Binding {
        resource: "Consent",
        path: &["provision", "type"],
        recursive: Some("provision"),
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/consent-provision-type",
        codes: &["deny", "permit"],
    },
    Binding {
        resource: "DiagnosticReport",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/diagnostic-report-status",
        codes: &[
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
        ],
    },
    Binding {
        resource: "Encounter",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/encounter-status",
        codes: &[
            "planned",
            "arrived",
            "triaged",
            "in-progress",
            "onleave",
            "finished",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    },
    Binding {
        resource: "Immunization",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/immunization-status",
        codes: &["completed", "entered-in-error", "not-done"],
    },
    Binding {
        resource: "MedicationAdministration",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/medication-admin-status",
        codes: &[
            "in-progress",
            "not-done",
            "on-hold",
            "completed",
            "entered-in-error",
            "stopped",
            "unknown",
        ],
    },
    Binding {
        resource: "MedicationRequest",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/medicationrequest-status",
        codes: &[
            "active",
            "on-hold",
            "cancelled",
            "completed",
            "entered-in-error",
            "stopped",
            "draft",
            "unknown",
        ],
    },
    Binding {
        resource: "MedicationRequest",
        path: &["intent"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/medicationrequest-intent",
        codes: &[
            "proposal",
            "plan",
            "order",
            "original-order",
            "reflex-order",
            "filler-order",
            "instance-order",
            "option",
        ],
    },
    Binding {
        resource: "MedicationStatement",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/medication-statement-status",
        codes: &[
            "active",
            "completed",
            "entered-in-error",
            "intended",
            "stopped",
            "on-hold",
            "unknown",
            "not-taken",
        ],
    },
    Binding {
        resource: "Observation",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/observation-status",
        codes: &[
            "registered",
            "preliminary",
            "final",
            "amended",
            "corrected",
            "cancelled",
            "entered-in-error",
            "unknown",
        ],
    },
    Binding {
        resource: "OperationOutcome",
        path: &["issue", "severity"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/issue-severity",
        codes: &["fatal", "error", "warning", "information"],
    },
    Binding {
        resource: "OperationOutcome",
        path: &["issue", "code"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/issue-type",
        codes: &[
            "invalid",
            "structure",
            "required",
            "value",
            "invariant",
            "security",
            "login",
            "unknown",
            "expired",
            "forbidden",
            "suppressed",
            "processing",
            "not-supported",
            "duplicate",
            "multiple-matches",
            "not-found",
            "deleted",
            "too-long",
            "code-invalid",
            "extension",
            "too-costly",
            "business-rule",
            "conflict",
            "transient",
            "lock-error",
            "no-store",
            "exception",
            "timeout",
            "incomplete",
            "throttled",
            "informational",
        ],
    },
    Binding {
        resource: "Patient",
        path: &["gender"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/administrative-gender",
        codes: &["male", "female", "other", "unknown"],
    },
    Binding {
        resource: "Procedure",
        path: &["status"],
        recursive: None,
        system: None,
        value_set: "http://hl7.org/fhir/ValueSet/event-status",
        codes: &[
            "preparation",
            "in-progress",
            "not-done",
            "on-hold",
            "stopped",
            "completed",
            "entered-in-error",
            "unknown",
        ],
    },
];

/// A US Core requirement: the element (or choice base, ending in `[x]`) and whether its absence
/// is an error (minimum cardinality 1 in the profile) or a warning (must-support).
pub(crate) struct UsCore {
    pub(crate) resource: &'static str,
    pub(crate) element: &'static str,
    required: bool,
}

const fn req(resource: &'static str, element: &'static str) -> UsCore {
    UsCore {
        resource,
        element,
        required: true,
    }
}

const fn ms(resource: &'static str, element: &'static str) -> UsCore {
    UsCore {
        resource,
        element,
        required: false,
    }
}

/// US Core (6.1.0) for the resources medchain's secure index and research export read: the
/// elements the profiles require beyond base R4 (errors) and the must-support elements those
/// readers use — clinical dates, codes, subjects — whose absence is a warning. Elements base R4
/// already requires are checked by the structural validation.
pub(crate) const US_CORE: &[UsCore] = &[
    req("AllergyIntolerance", "code"),
    ms("AllergyIntolerance", "clinicalStatus"),
    ms("AllergyIntolerance", "verificationStatus"),
    req("Condition", "category"),
    req("Condition", "code"),
    ms("Condition", "clinicalStatus"),
    ms("Condition", "verificationStatus"),
    ms("Condition", "onset[x]"),
    ms("Condition", "recordedDate"),
    req("DiagnosticReport", "category"),
    req("DiagnosticReport", "subject"),
    ms("DiagnosticReport", "effective[x]"),
    ms("DiagnosticReport", "issued"),
    req("Encounter", "type"),
    req("Encounter", "subject"),
    ms("Encounter", "period"),
    ms("Immunization", "primarySource"),
    ms("MedicationRequest", "authoredOn"),
    ms("MedicationRequest", "requester"),
    req("Observation", "category"),
    req("Observation", "subject"),
    ms("Observation", "effective[x]"),
    req("Patient", "identifier"),
    req("Patient", "name"),
    req("Patient", "gender"),
    ms("Patient", "birthDate"),
    req("Practitioner", "identifier"),
    req("Practitioner", "name"),
    req("Procedure", "code"),
    ms("Procedure", "performed[x]"),
];

/// One step of a path: an object member or an array position. Paths are rendered only when an
/// issue needs one, so walking the tree allocates nothing.
#[derive(Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

fn render(base: &str, segs: &[Seg<'_>]) -> String {
    let mut out = String::with_capacity(base.len() + segs.len() * 12);
    out.push_str(base);
    for seg in segs {
        match seg {
            Seg::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            Seg::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// Visits every object and array below `v` (pre-order) with the path to it; `f` returns
/// `false` to stop. Recursion is bounded by [`check_limits`], which runs first.
fn walk<'a>(
    v: &'a Json,
    segs: &mut Vec<Seg<'a>>,
    f: &mut dyn FnMut(&'a Json, &[Seg<'a>]) -> bool,
) -> bool {
    if !f(v, segs) {
        return false;
    }
    match v {
        Json::Object(members) => {
            for (k, child) in members {
                if matches!(child, Json::Object(_) | Json::Array(_)) {
                    segs.push(Seg::Key(k));
                    let go_on = walk(child, segs, f);
                    segs.pop();
                    if !go_on {
                        return false;
                    }
                }
            }
        }
        Json::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                if matches!(child, Json::Object(_) | Json::Array(_)) {
                    segs.push(Seg::Index(i));
                    let go_on = walk(child, segs, f);
                    segs.pop();
                    if !go_on {
                        return false;
                    }
                }
            }
        }
        _ => {}
    }
    true
}

/// Checks nesting depth and object sizes before anything walks the tree recursively. (This
/// walk is recursive too, but stops at [`MAX_DEPTH`].)
pub(crate) fn check_limits(root: &Json, resource_type: &str) -> Option<Issue> {
    fn go<'a>(v: &'a Json, segs: &mut Vec<Seg<'a>>) -> Option<IssueCode> {
        fn child<'a>(c: &'a Json, seg: Seg<'a>, segs: &mut Vec<Seg<'a>>) -> Option<IssueCode> {
            if !matches!(c, Json::Object(_) | Json::Array(_)) {
                return None;
            }
            segs.push(seg);
            let found = go(c, segs);
            if found.is_none() {
                segs.pop();
            }
            found
        }
        if segs.len() >= MAX_DEPTH {
            return Some(IssueCode::TooDeep);
        }
        match v {
            Json::Object(m) if m.len() > MAX_MEMBERS => Some(IssueCode::TooManyMembers),
            Json::Object(m) => m.iter().find_map(|(k, c)| child(c, Seg::Key(k), segs)),
            Json::Array(a) => a
                .iter()
                .enumerate()
                .find_map(|(i, c)| child(c, Seg::Index(i), segs)),
            _ => None,
        }
    }
    let mut segs = Vec::new();
    go(root, &mut segs).map(|code| Issue::error(code, render(resource_type, &segs)))
}

/// `Extension.url` is a `uri` (1..1): no whitespace. The structural validator reads it as a
/// plain string, so it is checked here, for every extension and modifier extension of the
/// object `members` at `base` and `segs`.
fn check_extension_urls(
    members: &[(String, Json)],
    base: &str,
    segs: &[Seg<'_>],
    out: &mut Vec<Issue>,
) {
    for (k, child) in members {
        let Json::Array(items) = child else { continue };
        if k != "extension" && k != "modifierExtension" {
            continue;
        }
        for (i, ext) in items.iter().enumerate() {
            if let Some(Json::String(url)) = ext.get("url") {
                if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
                    let p = format!("{}.{k}[{i}].url", render(base, segs));
                    out.push(Issue::error(IssueCode::InvalidFormat, p).expecting("uri"));
                }
            }
        }
    }
}

fn get<'a>(members: &'a [(String, Json)], key: &str) -> Option<&'a Json> {
    members.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// FHIR `id`: 1 to 64 of `A-Z a-z 0-9 - .` (fhirkit's own check, as its `id` primitives get).
pub(crate) use fhirkit::primitive::is_id as is_fhir_id;

/// Runs every check of this module on a parsed document whose root is a resource of type
/// `resource_type`.
pub(crate) fn check(root: &Json, resource_type: &str, profile: FhirProfile, out: &mut Vec<Issue>) {
    // One walk: every extension's url (its issues come first, in document order), and every
    // resource in the document with its path — the root, contained resources, Bundle entries
    // and any other resource position — checked after it, in document order.
    let mut resources = Vec::new();
    walk(root, &mut Vec::new(), &mut |v, segs| {
        if let Json::Object(members) = v {
            check_extension_urls(members, resource_type, segs, out);
            if members
                .iter()
                .any(|(k, v)| k == "resourceType" && v.as_str().is_some())
            {
                resources.push((render(resource_type, segs), members.as_slice()));
            }
        }
        true
    });
    for (path, members) in resources {
        let Some(rt) = get(members, "resourceType").and_then(Json::as_str) else {
            continue;
        };
        if let Some(Json::String(id)) = get(members, "id") {
            if !id.is_empty() && !is_fhir_id(id) {
                out.push(Issue::error(IssueCode::InvalidId, format!("{path}.id")));
            }
        }
        check_bindings(rt, members, &path, out);
        // A contained resource's `#id` references are its container's to resolve (siblings),
        // and profiles apply to the resources a writer shares, not to what they contain.
        let contained = path.contains(".contained[");
        if !contained {
            check_contained_references(rt, members, &path, out);
        }
        if profile == FhirProfile::UsCore && !contained {
            check_us_core(rt, members, &path, out);
        }
        if rt == "Bundle" {
            check_bundle(members, &path, out);
        }
    }
}

fn check_bindings(rt: &str, members: &[(String, Json)], path: &str, out: &mut Vec<Issue>) {
    let mut segs = Vec::new();
    for b in BINDINGS.iter().filter(|b| b.resource == rt) {
        let Some((first, rest)) = b.path.split_first() else {
            continue;
        };
        if let Some(v) = get(members, first) {
            segs.push(Seg::Key(first));
            binding_at(b, v, rest, path, &mut segs, out);
            segs.pop();
        }
    }
}

/// The binding `b` at `v`, which sits at `base` and then `segs` (rendered only for an issue).
fn binding_at<'a>(
    b: &'a Binding,
    v: &Json,
    rest: &'a [&'a str],
    base: &str,
    segs: &mut Vec<Seg<'a>>,
    out: &mut Vec<Issue>,
) {
    if let Json::Array(items) = v {
        for (i, item) in items.iter().enumerate() {
            segs.push(Seg::Index(i));
            binding_at(b, item, rest, base, segs, out);
            segs.pop();
        }
        return;
    }
    match rest.split_first() {
        Some((next, tail)) => {
            if let Some(child) = v.get(next) {
                segs.push(Seg::Key(next));
                binding_at(b, child, tail, base, segs, out);
                segs.pop();
            }
            // `Consent.provision.provision...`: the same binding one level down.
            if let (Some(rec), true) = (b.recursive, tail.is_empty()) {
                if let Some(child) = v.get(rec) {
                    segs.push(Seg::Key(rec));
                    binding_at(b, child, rest, base, segs, out);
                    segs.pop();
                }
            }
        }
        None => check_code(b, v, || render(base, segs), out),
    }
}

fn check_code(b: &Binding, v: &Json, path: impl Fn() -> String, out: &mut Vec<Issue>) {
    let bad = |p: String| Issue::error(IssueCode::CodeNotInValueSet, p).expecting(b.value_set);
    match (b.system, v) {
        // A malformed value is the structural validator's to report.
        (None, Json::String(code)) if !b.codes.contains(&code.as_str()) => {
            out.push(bad(path()));
        }
        (Some(system), Json::Object(_)) => {
            let codings = match v.get("coding") {
                Some(Json::Array(c)) => c.as_slice(),
                _ => &[],
            };
            let mut from_system = 0;
            for (i, coding) in codings.iter().enumerate() {
                if coding.get("system").and_then(Json::as_str) != Some(system) {
                    continue;
                }
                from_system += 1;
                if let Some(code) = coding.get("code").and_then(Json::as_str) {
                    if !b.codes.contains(&code) {
                        out.push(bad(format!("{}.coding[{i}].code", path())));
                    }
                } else {
                    out.push(bad(format!("{}.coding[{i}]", path())));
                }
            }
            if from_system == 0 {
                out.push(bad(path()));
            }
        }
        _ => {}
    }
}

fn check_us_core(rt: &str, members: &[(String, Json)], path: &str, out: &mut Vec<Issue>) {
    for rule in US_CORE.iter().filter(|r| r.resource == rt) {
        let present = match rule.element.strip_suffix("[x]") {
            Some(base) => members.iter().any(|(k, _)| {
                k.strip_prefix(base)
                    .is_some_and(|t| t.starts_with(|c: char| c.is_ascii_uppercase()))
            }),
            None => get(members, rule.element).is_some(),
        };
        if !present {
            let p = format!("{path}.{}", rule.element);
            out.push(if rule.required {
                Issue::error(IssueCode::ProfileRequired, p)
            } else {
                Issue::warning(IssueCode::MustSupportMissing, p)
            });
        }
    }
}

/// Every `reference` string below `v` (Reference.reference) that `unresolved` says resolves to
/// nothing, as an issue at its path (`v` sits at `base()`, which is built only for an issue);
/// nested resources' references included.
fn unresolved_references(
    v: &Json,
    base: &dyn Fn() -> String,
    unresolved: &dyn Fn(&str) -> bool,
    out: &mut Vec<Issue>,
) {
    walk(v, &mut Vec::new(), &mut |node, segs| {
        if let Some(Json::String(r)) = node.as_object().and_then(|m| get(m, "reference")) {
            if unresolved(r) {
                let path = format!("{}.reference", render(&base(), segs));
                out.push(Issue::error(IssueCode::UnresolvedReference, path));
            }
        }
        true
    });
}

/// `#id` references must name a contained resource of the resource (`#` alone is the
/// container itself). Contained resources' own references are checked against the same list.
fn check_contained_references(
    rt: &str,
    members: &[(String, Json)],
    path: &str,
    out: &mut Vec<Issue>,
) {
    let contained: HashSet<&str> = match get(members, "contained") {
        Some(Json::Array(items)) => items
            .iter()
            .filter_map(|r| r.get("id").and_then(Json::as_str))
            .collect(),
        _ => HashSet::new(),
    };
    let unresolved = |r: &str| {
        r.strip_prefix('#')
            .is_some_and(|id| !id.is_empty() && !contained.contains(id))
    };
    for (k, child) in members {
        // A Bundle's entries are resources of their own, checked on their own (`List.entry`,
        // the only other top-level `entry`, is not: its references are this resource's).
        let own_resources = rt == "Bundle" && k == "entry";
        if matches!(child, Json::Object(_) | Json::Array(_)) && !own_resources {
            unresolved_references(child, &|| format!("{path}.{k}"), &unresolved, out);
        }
    }
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
}

/// A Bundle entry's `fullUrl`: `urn:uuid:<uuid>`, `urn:oid:<oid>` or an absolute URL.
pub(crate) fn is_full_url(s: &str) -> bool {
    if let Some(u) = s.strip_prefix("urn:uuid:") {
        return is_uuid(u);
    }
    if let Some(o) = s.strip_prefix("urn:oid:") {
        return is_oid(o);
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https")
        && !rest.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Transaction, batch and collection Bundles: entries, `fullUrl`s, and every `urn:uuid:` /
/// `urn:oid:` reference resolved against the entries' `fullUrl`s.
fn check_bundle(members: &[(String, Json)], path: &str, out: &mut Vec<Issue>) {
    let kind = get(members, "type").and_then(Json::as_str).unwrap_or("");
    let Some(Json::Array(entries)) = get(members, "entry") else {
        return;
    };
    let needs_request = matches!(kind, "transaction" | "batch");
    let mut full_urls: HashSet<&str> = HashSet::new();
    for (i, entry) in entries.iter().enumerate() {
        // Built only for an issue.
        let at = |element: &str| format!("{path}.entry[{i}].{element}");
        if let Some(url) = entry.get("fullUrl").and_then(Json::as_str) {
            if !is_full_url(url) {
                out.push(Issue::error(IssueCode::InvalidFullUrl, at("fullUrl")));
            } else if !full_urls.insert(url) {
                out.push(Issue::error(IssueCode::DuplicateFullUrl, at("fullUrl")));
            }
        }
        let method = entry
            .get("request")
            .and_then(|r| r.get("method"))
            .and_then(Json::as_str);
        if needs_request && entry.get("request").is_none() {
            out.push(Issue::error(IssueCode::MissingEntryRequest, at("request")));
        }
        let resource_optional = matches!(method, Some("GET" | "HEAD" | "DELETE"));
        if matches!(kind, "transaction" | "batch" | "collection")
            && entry.get("resource").is_none()
            && !resource_optional
        {
            out.push(Issue::error(
                IssueCode::MissingEntryResource,
                at("resource"),
            ));
        }
    }
    let unresolved = |r: &str| {
        (r.starts_with("urn:uuid:") || r.starts_with("urn:oid:")) && !full_urls.contains(r)
    };
    for (i, entry) in entries.iter().enumerate() {
        if let Some(resource) = entry.get("resource") {
            let base = || format!("{path}.entry[{i}].resource");
            unresolved_references(resource, &base, &unresolved, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binding_tables_are_well_formed() {
        for b in BINDINGS {
            assert!(!b.codes.is_empty() && !b.path.is_empty(), "{}", b.value_set);
            assert!(
                medchain_core::fhir::is_r4_resource_type(b.resource),
                "{}",
                b.resource
            );
            assert!(b.value_set.starts_with("http://hl7.org/fhir/ValueSet/"));
            let unique: HashSet<_> = b.codes.iter().collect();
            assert_eq!(unique.len(), b.codes.len(), "{}", b.value_set);
        }
        for r in US_CORE {
            assert!(medchain_core::fhir::is_r4_resource_type(r.resource));
        }
    }

    #[test]
    fn ids_uuids_and_full_urls() {
        assert!(is_fhir_id("a-B.9"));
        assert!(is_fhir_id(&"x".repeat(64)));
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(!is_fhir_id(bad), "{bad}");
        }
        assert!(is_full_url("urn:uuid:6d367230-21b3-5816-8d8c-5239028c388f"));
        assert!(is_full_url("urn:oid:1.2.840.10008"));
        assert!(is_full_url("https://ehr.example/fhir/Patient/1"));
        for bad in [
            "urn:uuid:6d367230",
            "urn:oid:1..2",
            "Patient/1",
            "ftp://x/y",
            "http://",
            "https://a b",
        ] {
            assert!(!is_full_url(bad), "{bad}");
        }
    }

    #[test]
    fn limits() {
        let deep = format!(
            "{{\"resourceType\":\"Basic\",\"extension\":{}{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        let json = Json::parse(&deep).unwrap();
        let issue = check_limits(&json, "Basic").unwrap();
        assert_eq!(issue.code, IssueCode::TooDeep);
        assert!(issue.path.starts_with("Basic.extension[0][0]"));
        let wide: String = (0..=MAX_MEMBERS).map(|i| format!(",\"k{i}\":1")).collect();
        let json = Json::parse(&format!("{{\"resourceType\":\"Basic\"{wide}}}")).unwrap();
        assert_eq!(
            check_limits(&json, "Basic").unwrap().code,
            IssueCode::TooManyMembers
        );
        let ok = Json::parse(r#"{"resourceType":"Basic","code":{"text":"x"}}"#).unwrap();
        assert_eq!(check_limits(&ok, "Basic"), None);
    }
}
