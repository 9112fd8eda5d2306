//! De-identification of FHIR resources for research, after HIPAA Safe Harbor (45 CFR
//! 164.514(b)(2)).
//!
//! [`deidentify`] removes or generalises, anywhere in the resource:
//!
//! * names (`HumanName` values), `telecom`, `contact`, `photo`, narrative `text`, free-text
//!   `note`s, `meta`, device identifiers (`udiCarrier`, `serialNumber`, `lotNumber`), URLs
//!   outside extensions (attachments, endpoints), `Location.position`;
//! * addresses finer than the state: only `state` and `country` are kept;
//! * dates finer than the year: every FHIR `date`/`dateTime`/`instant` becomes `YYYY`;
//! * ages over 89: a birth date that makes the patient 90 or older at the reference time is
//!   removed and replaced by the extension `urn:medchain:age-90-or-older`, and an age quantity
//!   above 89 years becomes 90;
//! * identifiers: `id`, every `identifier` and every `reference` are replaced by a study-scoped
//!   pseudonym: `HMAC-SHA256(study key, original)`, stable within one study and unlinkable
//!   across studies (each study has its own key).
//!
//! Safe Harbor also requires that the releaser has no actual knowledge that the rest could
//! identify the patient; codes and values stay, so rare conditions can still single a patient
//! out. `docs/consent.md` says so.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::fhir::{self, FhirError};
use crate::hash::domain;
use crate::keys::Identity;

/// Pseudonymisation key of one study.
pub struct StudyKey {
    key: Zeroizing<[u8; 32]>,
    study: String,
}

impl fmt::Debug for StudyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StudyKey")
            .field("study", &self.study)
            .finish_non_exhaustive()
    }
}

impl StudyKey {
    /// The study key that a data releaser (a patient's wallet or an institution) derives from
    /// its identity for study `study_id`.
    pub fn derive(releaser: &Identity, study_id: &str) -> Self {
        Self {
            key: releaser.derive_secret(domain::STUDY_PSEUDONYM, study_id.as_bytes()),
            study: study_id.to_owned(),
        }
    }

    /// A study key from raw secret bytes (for example a key shared by the institutions of a
    /// multi-site study).
    pub fn from_secret(secret: [u8; 32], study_id: &str) -> Self {
        Self {
            key: Zeroizing::new(secret),
            study: study_id.to_owned(),
        }
    }

    /// The study id.
    pub fn study(&self) -> &str {
        &self.study
    }

    /// The pseudonym of an identifier: 32 hex digits of `HMAC-SHA256(key, study || 0 || value)`.
    pub fn pseudonym(&self, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&*self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(self.study.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        hex::encode(&mac.finalize().into_bytes()[..16])
    }
}

/// A resource could not be de-identified.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeidError {
    /// The input is not a FHIR resource.
    #[error(transparent)]
    NotFhir(#[from] FhirError),
}

const REMOVE: &[&str] = &[
    "telecom",
    "contact",
    "photo",
    "text",
    "note",
    "meta",
    "udiCarrier",
    "serialNumber",
    "lotNumber",
    "position",
    "implicitRules",
];

/// Keys whose string values are codes or numbers, never dates to generalise.
const NOT_DATES: &[&str] = &[
    "code",
    "system",
    "version",
    "value",
    "unit",
    "display",
    "id",
    "reference",
];

fn is_date(s: &str) -> bool {
    s.len() >= 7 && s.as_bytes()[4] == b'-' && fhir::parse_datetime_signed_ms(s).is_some()
}

fn is_human_name(v: &Value) -> bool {
    let one = |o: &Value| {
        o.as_object().is_some_and(|m| {
            m.contains_key("family")
                || m.contains_key("given")
                || (m.contains_key("text") && m.contains_key("use"))
        })
    };
    match v {
        Value::Array(items) => !items.is_empty() && items.iter().all(one),
        other => one(other),
    }
}

struct Ctx<'a> {
    study: &'a StudyKey,
    reference_ms: u64,
}

impl Ctx<'_> {
    fn pseudo_identifier(&self, v: &Value) -> Value {
        let original = v
            .get("system")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
            + "|"
            + v.get("value").and_then(Value::as_str).unwrap_or("");
        json!({"system": "urn:medchain:study-pseudonym", "value": self.study.pseudonym(&original)})
    }

    fn pseudo_reference(&self, r: &str) -> String {
        match r.split_once('/') {
            Some((kind, _)) if !kind.contains(':') => format!("{kind}/{}", self.study.pseudonym(r)),
            _ => self.study.pseudonym(r),
        }
    }

    fn walk(&self, v: &mut Value, depth: usize) {
        if depth > 64 {
            *v = Value::Null;
            return;
        }
        match v {
            Value::Object(map) => self.walk_object(map, depth),
            Value::Array(items) => {
                for item in items.iter_mut() {
                    self.walk(item, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn walk_object(&self, map: &mut Map<String, Value>, depth: usize) {
        for key in REMOVE {
            map.remove(*key);
        }
        // A URL outside an extension (attachments, endpoints) may point at the patient's data;
        // an extension's `url` names the extension and stays.
        if !map.keys().any(|k| k.starts_with("value")) {
            map.remove("url");
        }
        if map.get("name").is_some_and(is_human_name) {
            map.remove("name");
        }
        if let Some(addr) = map.get_mut("address") {
            let keep = |a: &Value| {
                let mut out = Map::new();
                for k in ["state", "country"] {
                    if let Some(x) = a.get(k) {
                        out.insert(k.into(), x.clone());
                    }
                }
                Value::Object(out)
            };
            let kept = match &*addr {
                Value::Array(items) => Value::Array(items.iter().map(keep).collect()),
                other => keep(other),
            };
            *addr = kept;
        }
        if let Some(Value::Array(ids)) = map.get_mut("identifier") {
            *ids = ids.iter().map(|i| self.pseudo_identifier(i)).collect();
        } else if let Some(id) = map.get_mut("identifier") {
            *id = self.pseudo_identifier(id);
        }
        if let Some(Value::String(id)) = map.get_mut("id") {
            *id = self.study.pseudonym(id);
        }
        if let Some(Value::String(r)) = map.get_mut("reference") {
            *r = self.pseudo_reference(r);
        }
        map.remove("display");
        // Ages over 89.
        if let Some(Value::String(b)) = map.get("birthDate") {
            if let Some(born) = fhir::parse_datetime_signed_ms(b) {
                if fhir::year(self.reference_ms) - fhir::year_signed(born) >= 90 {
                    map.remove("birthDate");
                    map.insert(
                        "extension".into(),
                        json!([{"url": "urn:medchain:age-90-or-older", "valueBoolean": true}]),
                    );
                }
            }
        }
        let is_age = map
            .get("unit")
            .and_then(Value::as_str)
            .is_some_and(|u| matches!(u, "a" | "yr" | "years" | "year"))
            || map.get("code").and_then(Value::as_str) == Some("a");
        if is_age {
            if let Some(val) = map.get_mut("value") {
                if val.as_f64().is_some_and(|x| x > 89.0) {
                    *val = json!(90);
                }
            }
        }
        for (k, val) in map.iter_mut() {
            match val {
                Value::String(s) if !NOT_DATES.contains(&k.as_str()) && is_date(s) => {
                    s.truncate(4);
                }
                _ => self.walk(val, depth + 1),
            }
        }
    }
}

/// De-identifies a FHIR resource for study `study` (see the module docs). `reference_ms` is
/// the time ages are computed at (usually the export time).
///
/// # Errors
/// [`DeidError::NotFhir`] if the input is not a FHIR R4 resource.
pub fn deidentify(
    resource: &Value,
    study: &StudyKey,
    reference_ms: u64,
) -> Result<Value, DeidError> {
    fhir::resource_from_value(resource.clone())?;
    let mut out = resource.clone();
    Ctx {
        study,
        reference_ms,
    }
    .walk(&mut out, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(study: &str) -> StudyKey {
        StudyKey::from_secret([7; 32], study)
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
        let ref_ms = fhir::parse_datetime_ms("2026-11-25").unwrap();
        let out = deidentify(&p, &key("s1"), ref_ms).unwrap();
        let s = out.to_string();
        for secret in [
            "Ruiz",
            "Ana",
            "555",
            "Main",
            "Springfield",
            "62701",
            "123-45-6789",
            "pat-1",
            "1931",
        ] {
            assert!(!s.contains(secret), "{secret} leaked: {s}");
        }
        assert_eq!(out["address"][0], json!({"state": "IL", "country": "US"}));
        assert_eq!(out["gender"], "female");
        assert_eq!(out["extension"][0]["url"], "urn:medchain:age-90-or-older");
    }

    #[test]
    fn dates_to_year_and_references_pseudonymised_per_study() {
        let o = json!({
            "resourceType": "Observation", "id": "obs-9", "status": "final",
            "subject": {"reference": "Patient/pat-1", "display": "Ana Ruiz"},
            "effectiveDateTime": "2024-03-05T10:00:00Z", "issued": "2024-03-05T11:00:00Z",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
            "valueQuantity": {"value": 6.1, "unit": "%"},
            "note": [{"text": "patient says her neighbour John..."}]
        });
        let a = deidentify(&o, &key("s1"), 0).unwrap();
        let a2 = deidentify(&o, &key("s1"), 0).unwrap();
        let b = deidentify(&o, &key("s2"), 0).unwrap();
        assert_eq!(a["effectiveDateTime"], "2024");
        assert_eq!(a["issued"], "2024");
        assert_eq!(a["code"]["coding"][0]["code"], "4548-4");
        assert_eq!(a["valueQuantity"]["value"], 6.1);
        assert!(a.get("note").is_none());
        assert!(a["subject"].get("display").is_none());
        let r = a["subject"]["reference"].as_str().unwrap();
        assert!(r.starts_with("Patient/") && !r.contains("pat-1"));
        assert_eq!(a, a2, "stable within a study");
        assert_ne!(
            a["subject"]["reference"], b["subject"]["reference"],
            "unlinkable across studies"
        );
    }

    #[test]
    fn ages_over_89_capped_and_errors() {
        let o = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "30525-0"}]},
            "valueQuantity": {"value": 97, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}});
        let a = deidentify(&o, &key("s"), 0).unwrap();
        assert_eq!(a["valueQuantity"]["value"], 90);
        let err = deidentify(&json!({"x": 1}), &key("s"), 0).unwrap_err();
        assert_eq!(
            err.to_string(),
            "not a FHIR resource: missing \"resourceType\""
        );
        assert!(!format!("{:?}", key("s")).contains("7, 7"));
    }
}
