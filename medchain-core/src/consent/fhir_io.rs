//! Consents to and from HL7 FHIR R4 `Consent` JSON.
//!
//! Mapping (also in `docs/consent.md`):
//!
//! * `Consent.patient.identifier` = `{system: "urn:medchain:identity", value: "mcid1…"}`.
//! * `Consent.dateTime` = issue time; `Consent.status` = `active`; `scope` = `patient-privacy`
//!   (or `research` when every provision is about research); `category` = LOINC `59284-0`.
//! * The root `provision` is a `deny` (medchain's default) whose period is the consent's period
//!   and whose nested provisions are the consent's provisions. On import a root `permit` becomes
//!   one top-level permit provision.
//! * `provision.actor`: a party is `{role: v3-ParticipationType IRCP, reference.identifier:
//!   {system: "urn:medchain:key", value: hex key}}`; a role is `{role: urn:medchain:role
//!   clinician|researcher, reference.identifier: {system: "urn:medchain:institution", value: hex
//!   key or "*"}}`.
//! * `provision.action`: consentaction `access` (read), `use` (research use), and
//!   `urn:medchain:action` `search`.
//! * `provision.purpose`: v3-ActReason codes; a research topic is the coding's extension
//!   `urn:medchain:research-topic` (valueString).
//! * `provision.class`: `http://hl7.org/fhir/resource-types` codes; `provision.code`: coded
//!   concepts.
//! * `period`, `dataPeriod`: FHIR dateTimes.
//! * The emergency preference and the summary are extensions `urn:medchain:emergency-access`
//!   (valueCode `allow`/`refuse`) and `urn:medchain:summary` (valueString).

use serde_json::{json, Map, Value};
use thiserror::Error;

use super::{
    Action, Actor, CodeTag, Consent, DataClass, EmergencyPreference, Period, Provision,
    ProvisionType, Purpose, CODE_TAG_LEN,
};
use crate::credential::Role;
use crate::fhir::{format_instant, parse_datetime_ms};
use crate::keys::{PublicIdentity, VerifyKey};

const SYS_IDENTITY: &str = "urn:medchain:identity";
const SYS_KEY: &str = "urn:medchain:key";
const SYS_INSTITUTION: &str = "urn:medchain:institution";
const SYS_ROLE: &str = "urn:medchain:role";
const SYS_ACTION: &str = "urn:medchain:action";
const SYS_PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const SYS_CONSENT_ACTION: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
const SYS_ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const SYS_RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";
const SYS_SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
const EXT_TOPIC: &str = "urn:medchain:research-topic";
const EXT_EMERGENCY: &str = "urn:medchain:emergency-access";
const EXT_SUMMARY: &str = "urn:medchain:summary";
/// The system of a blinded code (`DataClass::Blinded`): the code is the tag in hex.
const SYS_CODE_TAG: &str = "urn:medchain:code-tag";

fn code_tag(hex_tag: &str) -> Result<CodeTag, ConsentFhirError> {
    let mut b = [0u8; CODE_TAG_LEN];
    hex::decode_to_slice(hex_tag, &mut b)
        .map_err(|_| ConsentFhirError::Unsupported("a blinded code is not 32 hex digits"))?;
    Ok(CodeTag::from_byte_array(b))
}

/// A FHIR Consent could not be read as a medchain consent.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConsentFhirError {
    /// Not a FHIR `Consent` resource.
    #[error("not a FHIR Consent resource")]
    NotAConsent,
    /// The consent's status is not `active`.
    #[error("only an active Consent can be imported")]
    NotActive,
    /// No `patient.identifier` with system `urn:medchain:identity`.
    #[error("Consent.patient needs an identifier with system urn:medchain:identity")]
    MissingPatient,
    /// The patient identity text does not parse.
    #[error("Consent.patient identifier is not a valid medchain identity")]
    BadPatient,
    /// A date does not parse.
    #[error("{0} is not a valid FHIR dateTime")]
    BadDate(&'static str),
    /// A field has an unexpected shape or code.
    #[error("unsupported Consent content: {0}")]
    Unsupported(&'static str),
    /// The consent is unusable.
    #[error("consent is not usable: {0}")]
    Invalid(#[from] super::ConsentError),
}

fn coding(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

fn concept(system: &str, code: &str) -> Value {
    json!({"coding": [coding(system, code)]})
}

fn period_json(p: &Period) -> Value {
    let mut m = Map::new();
    if let Some(s) = p.start_ms {
        m.insert("start".into(), Value::String(format_instant(s)));
    }
    if let Some(e) = p.end_ms {
        m.insert("end".into(), Value::String(format_instant(e)));
    }
    Value::Object(m)
}

fn actor_json(a: &Actor) -> Value {
    let (role_sys, role_code, id_sys, id_val) = match a {
        Actor::Party(k) => (SYS_PARTICIPATION, "IRCP", SYS_KEY, k.to_string()),
        Actor::Role(Role::Clinician { institution }) => (
            SYS_ROLE,
            "clinician",
            SYS_INSTITUTION,
            institution.to_string(),
        ),
        Actor::Role(Role::Researcher { institution }) => (
            SYS_ROLE,
            "researcher",
            SYS_INSTITUTION,
            institution.to_string(),
        ),
        Actor::AnyClinician => (SYS_ROLE, "clinician", SYS_INSTITUTION, "*".to_owned()),
        Actor::AnyResearcher => (SYS_ROLE, "researcher", SYS_INSTITUTION, "*".to_owned()),
    };
    json!({"role": concept(role_sys, role_code), "reference": {"identifier": {"system": id_sys, "value": id_val}}})
}

fn provision_json(p: &Provision) -> Value {
    let mut m = Map::new();
    m.insert(
        "type".into(),
        Value::String(
            match p.kind {
                ProvisionType::Permit => "permit",
                ProvisionType::Deny => "deny",
            }
            .into(),
        ),
    );
    if let Some(per) = &p.period {
        m.insert("period".into(), period_json(per));
    }
    if !p.actors.is_empty() {
        m.insert("actor".into(), p.actors.iter().map(actor_json).collect());
    }
    if !p.actions.is_empty() {
        let actions = p
            .actions
            .iter()
            .map(|a| match a {
                Action::Read => concept(SYS_CONSENT_ACTION, "access"),
                Action::ResearchUse => concept(SYS_CONSENT_ACTION, "use"),
                Action::Search => concept(SYS_ACTION, "search"),
            })
            .collect();
        m.insert("action".into(), actions);
    }
    if !p.purposes.is_empty() {
        let purposes = p
            .purposes
            .iter()
            .map(|x| {
                let mut c = coding(SYS_ACT_REASON, x.code());
                if let Purpose::Research { topic: Some(t) } = x {
                    c["extension"] = json!([{"url": EXT_TOPIC, "valueString": t}]);
                }
                c
            })
            .collect();
        m.insert("purpose".into(), purposes);
    }
    let types: Vec<Value> = p
        .classes
        .iter()
        .filter_map(|c| match c {
            DataClass::ResourceType(t) => Some(coding(SYS_RESOURCE_TYPES, t)),
            DataClass::Code { .. } | DataClass::Blinded(_) => None,
        })
        .collect();
    if !types.is_empty() {
        m.insert("class".into(), Value::Array(types));
    }
    let codes: Vec<Value> = p
        .classes
        .iter()
        .filter_map(|c| match c {
            DataClass::Code { system, code } => Some(concept(system, code)),
            DataClass::Blinded(tag) => Some(concept(SYS_CODE_TAG, &tag.to_string())),
            DataClass::ResourceType(_) => None,
        })
        .collect();
    if !codes.is_empty() {
        m.insert("code".into(), Value::Array(codes));
    }
    if let Some(per) = &p.data_period {
        m.insert("dataPeriod".into(), period_json(per));
    }
    if !p.provisions.is_empty() {
        m.insert(
            "provision".into(),
            p.provisions.iter().map(provision_json).collect(),
        );
    }
    Value::Object(m)
}

fn all_research(ps: &[Provision]) -> bool {
    !ps.is_empty()
        && ps.iter().all(|p| {
            !p.purposes.is_empty()
                && p.purposes
                    .iter()
                    .all(|x| matches!(x, Purpose::Research { .. }))
        })
}

/// Exports a consent as a FHIR R4 `Consent` resource.
pub fn consent_to_fhir(c: &Consent) -> Value {
    let mut extension = vec![json!({"url": EXT_SUMMARY, "valueString": c.summary})];
    if let Some(e) = c.emergency {
        extension.push(json!({"url": EXT_EMERGENCY, "valueCode": match e {
            EmergencyPreference::Allow => "allow",
            EmergencyPreference::Refuse => "refuse",
        }}));
    }
    let mut root = Map::new();
    root.insert("type".into(), Value::String("deny".into()));
    if c.period != Period::default() {
        root.insert("period".into(), period_json(&c.period));
    }
    if !c.provisions.is_empty() {
        root.insert(
            "provision".into(),
            c.provisions.iter().map(provision_json).collect(),
        );
    }
    json!({
        "resourceType": "Consent",
        "id": c.id().to_string(),
        "extension": extension,
        "status": "active",
        "scope": concept(SYS_SCOPE, if all_research(&c.provisions) { "research" } else { "patient-privacy" }),
        "category": [concept("http://loinc.org", "59284-0")],
        "patient": {"identifier": {"system": SYS_IDENTITY, "value": c.patient.to_text()}},
        "dateTime": format_instant(c.issued_ms),
        "policyRule": concept("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN"),
        "provision": Value::Object(root),
    })
}

fn codings_of(v: &Value) -> impl Iterator<Item = (&str, &str, &Value)> {
    v.get("coding")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c.get("system")?.as_str()?, c.get("code")?.as_str()?, c)))
}

fn parse_period(v: &Value, what: &'static str) -> Result<Period, ConsentFhirError> {
    let get = |k: &str| -> Result<Option<u64>, ConsentFhirError> {
        match v.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => parse_datetime_ms(s)
                .map(Some)
                .ok_or(ConsentFhirError::BadDate(what)),
            Some(_) => Err(ConsentFhirError::BadDate(what)),
        }
    };
    let p = Period {
        start_ms: get("start")?,
        end_ms: get("end")?,
    };
    if let (Some(s), Some(e)) = (p.start_ms, p.end_ms) {
        if s > e {
            return Err(ConsentFhirError::BadDate(what));
        }
    }
    Ok(p)
}

fn parse_key(s: &str) -> Result<VerifyKey, ConsentFhirError> {
    let bytes: [u8; 32] = crate::hash::parse_hex_array(s)
        .map_err(|_| ConsentFhirError::Unsupported("actor key is not 64 hex digits"))?;
    VerifyKey::from_byte_array(bytes)
        .map_err(|_| ConsentFhirError::Unsupported("actor key is not a valid ed25519 key"))
}

fn parse_actor(v: &Value) -> Result<Actor, ConsentFhirError> {
    let role = v
        .get("role")
        .ok_or(ConsentFhirError::Unsupported("actor without role"))?;
    let ident = v.get("reference").and_then(|r| r.get("identifier")).ok_or(
        ConsentFhirError::Unsupported("actor without reference.identifier"),
    )?;
    let id_sys = ident.get("system").and_then(Value::as_str).unwrap_or("");
    let id_val =
        ident
            .get("value")
            .and_then(Value::as_str)
            .ok_or(ConsentFhirError::Unsupported(
                "actor identifier without value",
            ))?;
    for (sys, code, _) in codings_of(role) {
        match (sys, code, id_sys) {
            (SYS_ROLE, "clinician", SYS_INSTITUTION) if id_val == "*" => {
                return Ok(Actor::AnyClinician)
            }
            (SYS_ROLE, "researcher", SYS_INSTITUTION) if id_val == "*" => {
                return Ok(Actor::AnyResearcher)
            }
            (SYS_ROLE, "clinician", SYS_INSTITUTION) => {
                return Ok(Actor::Role(Role::Clinician {
                    institution: parse_key(id_val)?,
                }))
            }
            (SYS_ROLE, "researcher", SYS_INSTITUTION) => {
                return Ok(Actor::Role(Role::Researcher {
                    institution: parse_key(id_val)?,
                }))
            }
            (_, _, SYS_KEY) => return Ok(Actor::Party(parse_key(id_val)?)),
            _ => {}
        }
    }
    Err(ConsentFhirError::Unsupported(
        "actor role or identifier system",
    ))
}

fn parse_provision(v: &Value, depth: usize) -> Result<Provision, ConsentFhirError> {
    if depth > super::MAX_DEPTH {
        return Err(ConsentFhirError::Invalid(super::ConsentError::TooComplex));
    }
    let kind = match v.get("type").and_then(Value::as_str) {
        Some("permit") | None => ProvisionType::Permit,
        Some("deny") => ProvisionType::Deny,
        Some(_) => return Err(ConsentFhirError::Unsupported("provision.type")),
    };
    let mut p = Provision::new(kind);
    if let Some(per) = v.get("period") {
        p.period = Some(parse_period(per, "provision.period")?);
    }
    if let Some(per) = v.get("dataPeriod") {
        p.data_period = Some(parse_period(per, "provision.dataPeriod")?);
    }
    for a in v
        .get("actor")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        p.actors.push(parse_actor(a)?);
    }
    for a in v
        .get("action")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let action = codings_of(a).find_map(|(sys, code, _)| match (sys, code) {
            (SYS_CONSENT_ACTION, "access") => Some(Action::Read),
            (SYS_CONSENT_ACTION, "use") => Some(Action::ResearchUse),
            (SYS_ACTION, "search") => Some(Action::Search),
            _ => None,
        });
        p.actions
            .push(action.ok_or(ConsentFhirError::Unsupported("provision.action code"))?);
    }
    for c in v
        .get("purpose")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let code = c
            .get("code")
            .and_then(Value::as_str)
            .ok_or(ConsentFhirError::Unsupported(
                "provision.purpose without code",
            ))?;
        let topic = c
            .get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(EXT_TOPIC))
            .and_then(|e| e.get("valueString"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        p.purposes.push(Purpose::from_code(code, topic));
    }
    for c in v
        .get("class")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match (
            c.get("system").and_then(Value::as_str),
            c.get("code").and_then(Value::as_str),
        ) {
            (Some(SYS_RESOURCE_TYPES), Some(t)) => {
                p.classes.push(DataClass::ResourceType(t.to_owned()))
            }
            _ => {
                return Err(ConsentFhirError::Unsupported(
                    "provision.class must be a FHIR resource type",
                ))
            }
        }
    }
    for c in v
        .get("code")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (system, code, _) in codings_of(c) {
            if system == SYS_CODE_TAG {
                p.classes.push(DataClass::Blinded(code_tag(code)?));
                continue;
            }
            p.classes.push(DataClass::Code {
                system: system.to_owned(),
                code: code.to_owned(),
            });
        }
    }
    for child in v
        .get("provision")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        p.provisions.push(parse_provision(child, depth + 1)?);
    }
    Ok(p)
}

/// Imports a FHIR R4 `Consent` resource.
///
/// # Errors
/// A [`ConsentFhirError`] naming what cannot be represented.
pub fn consent_from_fhir(v: &Value) -> Result<Consent, ConsentFhirError> {
    if v.get("resourceType").and_then(Value::as_str) != Some("Consent") {
        return Err(ConsentFhirError::NotAConsent);
    }
    if v.get("status").and_then(Value::as_str) != Some("active") {
        return Err(ConsentFhirError::NotActive);
    }
    let ident = v
        .get("patient")
        .and_then(|p| p.get("identifier"))
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(SYS_IDENTITY))
        .and_then(|i| i.get("value"))
        .and_then(Value::as_str)
        .ok_or(ConsentFhirError::MissingPatient)?;
    let patient = PublicIdentity::from_text(ident).map_err(|_| ConsentFhirError::BadPatient)?;
    let issued_ms = match v.get("dateTime") {
        Some(Value::String(s)) => {
            parse_datetime_ms(s).ok_or(ConsentFhirError::BadDate("Consent.dateTime"))?
        }
        None => 0,
        Some(_) => return Err(ConsentFhirError::BadDate("Consent.dateTime")),
    };
    let ext = |url: &str| {
        v.get("extension")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
            .cloned()
    };
    let summary = ext(EXT_SUMMARY)
        .and_then(|e| {
            e.get("valueString")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let emergency = match ext(EXT_EMERGENCY).and_then(|e| {
        e.get("valueCode")
            .and_then(Value::as_str)
            .map(str::to_owned)
    }) {
        None => None,
        Some(code) if code == "allow" => Some(EmergencyPreference::Allow),
        Some(code) if code == "refuse" => Some(EmergencyPreference::Refuse),
        Some(_) => return Err(ConsentFhirError::Unsupported("emergency-access code")),
    };
    let (period, provisions) = match v.get("provision") {
        None => (Period::default(), Vec::new()),
        Some(root) => {
            let root = parse_provision(root, 0)?;
            match root.kind {
                // Root deny: medchain's default; its children are the rules.
                ProvisionType::Deny
                    if root.actors.is_empty()
                        && root.actions.is_empty()
                        && root.purposes.is_empty()
                        && root.classes.is_empty()
                        && root.data_period.is_none() =>
                {
                    (root.period.unwrap_or_default(), root.provisions)
                }
                _ => (Period::default(), vec![root]),
            }
        }
    };
    let consent = Consent {
        patient,
        issued_ms,
        summary,
        period,
        emergency,
        provisions,
    };
    consent.check()?;
    Ok(consent)
}
