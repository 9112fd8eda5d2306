//! Research datasets: consent per patient, de-identification, typed columns.

use std::collections::HashMap;

use medchain_core::consent::{
    deidentify, evaluate, AccessRequest, Action, ConsentState, Purpose, RecordDate, RecordFacts,
    ReleaseClock, StudyKey,
};
use medchain_core::credential::Role;
use medchain_core::fhir;
use medchain_core::keys::{Identity, VerifyKey};
use medchain_core::seal::NetworkKey;
use medchain_core::tx::TxBody;
use medchain_store::Ledger;
use serde_json::Value;

use crate::errors::Result;
use crate::ledger::Stats;

/// Who asks for what, and who releases it.
pub struct DatasetRequest<'a> {
    /// The institution (or patient) that holds the records' keys and releases the data.
    pub holder: &'a Identity,
    /// The study's pseudonymisation key (derived by the holder).
    pub study: StudyKey,
    /// The researcher.
    pub researcher: VerifyKey,
    /// The researcher's institution (the role's attester).
    pub institution: VerifyKey,
    /// The research topic the consents must cover.
    pub topic: Option<String>,
    /// The consent evaluation time: the host's clock (never a caller's choice). The
    /// de-identification clock is the ledger tip's time moved to this time if later
    /// ([`ReleaseClock`]).
    pub now_ms: u64,
}

/// The typed columns of a dataset, one entry per resource.
#[derive(Debug, Default)]
pub struct Columns {
    /// The patient's study pseudonym.
    pub pseudonym: Vec<String>,
    /// FHIR resource type.
    pub resource_type: Vec<String>,
    /// System of the main code.
    pub code_system: Vec<Option<String>>,
    /// The main code (Observation/Condition `code`, MedicationRequest medication).
    pub code: Vec<Option<String>>,
    /// Numeric value (valueQuantity).
    pub value: Vec<Option<f64>>,
    /// Unit of the value.
    pub unit: Vec<Option<String>>,
    /// Coded value: the code of `valueCodeableConcept` (never free text: `valueString` is not
    /// released).
    pub value_text: Vec<Option<String>>,
    /// Year of the clinical date.
    pub effective_year: Vec<Option<i32>>,
    /// Patient birth year.
    pub birth_year: Vec<Option<i32>>,
    /// Patient gender.
    pub gender: Vec<Option<String>>,
    /// Patient state.
    pub state: Vec<Option<String>>,
}

fn year_of(v: Option<&Value>) -> Option<i32> {
    let s = v?.as_str()?;
    let digits: String = s.chars().take(4).collect();
    if digits.len() == 4 && digits.chars().all(|c| c.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

fn first_coding(v: Option<&Value>) -> (Option<String>, Option<String>) {
    let coding = v.and_then(|c| c.get("coding")).and_then(|c| c.get(0));
    let get = |k: &str| {
        coding
            .and_then(|c| c.get(k))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    (get("system"), get("code"))
}

impl Columns {
    /// Appends one de-identified resource.
    pub fn push(&mut self, pseudonym: String, r: &Value) {
        let rt = r
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let code_field = match rt.as_str() {
            "MedicationRequest" | "MedicationStatement" | "MedicationAdministration" => {
                r.get("medicationCodeableConcept")
            }
            "Immunization" => r.get("vaccineCode"),
            _ => r.get("code"),
        };
        let (system, code) = first_coding(code_field);
        let q = r.get("valueQuantity");
        let value = q.and_then(|q| q.get("value")).and_then(Value::as_f64);
        let unit = q
            .and_then(|q| q.get("unit").or_else(|| q.get("code")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let value_text = first_coding(r.get("valueCodeableConcept")).1;
        let effective = [
            "effectiveDateTime",
            "effectiveInstant",
            "issued",
            "onsetDateTime",
            "recordedDate",
            "authoredOn",
            "occurrenceDateTime",
            "date",
        ]
        .iter()
        .find_map(|k| year_of(r.get(*k)))
        .or_else(|| year_of(r.get("effectivePeriod").and_then(|p| p.get("start"))));
        let (birth, gender, state) = if rt == "Patient" {
            let address = r.get("address").map(|a| a.get(0).unwrap_or(a));
            (
                year_of(r.get("birthDate")),
                r.get("gender").and_then(Value::as_str).map(str::to_owned),
                address
                    .and_then(|a| a.get("state"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            )
        } else {
            (None, None, None)
        };
        self.pseudonym.push(pseudonym);
        self.resource_type.push(rt);
        self.code_system.push(system);
        self.code.push(code);
        self.value.push(value);
        self.unit.push(unit);
        self.value_text.push(value_text);
        self.effective_year.push(effective);
        self.birth_year.push(birth);
        self.gender.push(gender);
        self.state.push(state);
    }
}

/// Walks the ledger's records; for each one the holder can open, evaluates the patient's
/// consents for this researcher (ResearchUse, HRESCH + topic, Researcher role, strict record
/// facts) and de-identifies only permitted records.
pub fn research_rows(
    ledger: &Ledger,
    network: &NetworkKey,
    req: &DatasetRequest<'_>,
) -> Result<(Columns, Stats)> {
    let mut cols = Columns::default();
    let mut stats: Stats = HashMap::new();
    for k in [
        "records",
        "rows",
        "denied",
        "not_readable",
        "erased",
        "patients",
        "patients_permitted",
    ] {
        stats.insert(k, 0);
    }
    let mut bump = |k: &'static str| *stats.entry(k).or_insert(0) += 1;
    let height = ledger.height();
    let clock = ReleaseClock::at_tip(ledger.tip()).no_earlier_than(req.now_ms);
    let mut consents: HashMap<[u8; 32], Vec<ConsentState>> = HashMap::new();
    let mut permitted_patients: HashMap<[u8; 32], bool> = HashMap::new();
    for block in ledger.blocks_from(1) {
        let block = block?;
        for tx in block.transactions {
            if tx.kind() != medchain_core::tx::TxKind::RecordAdded {
                continue;
            }
            let body = tx.verify()?.open_body(network)?;
            let TxBody::RecordAdded {
                patient,
                sealed,
                class,
                ..
            } = body
            else {
                continue;
            };
            bump("records");
            let Some(sealed) = sealed else {
                bump("erased");
                continue;
            };
            let Ok(opened) = sealed.open(req.holder) else {
                bump("not_readable");
                continue;
            };
            let Ok(resource) = serde_json::from_slice::<Value>(opened.payload()) else {
                bump("not_readable");
                continue;
            };
            let key = patient.sign.to_byte_array();
            if let std::collections::hash_map::Entry::Vacant(slot) = consents.entry(key) {
                slot.insert(ledger.consents_of(&patient.sign)?);
                bump("patients");
            }
            let states = consents.get(&key).map_or(&[][..], Vec::as_slice);
            let request = AccessRequest {
                requester: req.researcher,
                roles: vec![Role::Researcher {
                    institution: req.institution,
                }],
                action: Action::ResearchUse,
                purpose: Purpose::Research {
                    topic: req.topic.clone(),
                },
                record: RecordFacts {
                    resource_type: resource
                        .get("resourceType")
                        .and_then(Value::as_str)
                        .unwrap_or("")
                        .to_owned(),
                    codes: Some(fhir::codings(&resource)),
                    // Consents on chain name codes blinded: the record's class carries them
                    // blinded under the same patient key.
                    code_tags: Some(class.code_tags.clone()),
                    date: RecordDate::exact(fhir::clinical_date_ms(&resource)),
                },
                emergency: false,
            };
            if !evaluate(&request, states, req.now_ms, height).is_permit() {
                bump("denied");
                continue;
            }
            let Ok(clean) = deidentify(&resource, &req.study, &clock) else {
                bump("not_readable");
                continue;
            };
            if permitted_patients.insert(key, true).is_none() {
                bump("patients_permitted");
            }
            cols.push(req.study.pseudonym(&patient.to_text()), &clean);
            bump("rows");
        }
    }
    Ok((cols, stats))
}
