//! Research datasets as typed columns: a presentation of the rows that
//! `medchain_store::Ledger::research_release` (the one research policy) released.

use medchain_core::research::main_coding;
use serde_json::Value;

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

fn first_coding(v: Option<&Value>) -> Option<String> {
    v?.get("coding")?
        .get(0)?
        .get("code")?
        .as_str()
        .map(str::to_owned)
}

impl Columns {
    /// Appends one de-identified resource (`pseudonym`: its patient's).
    pub fn push(&mut self, pseudonym: String, r: &Value) {
        let rt = r
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let (system, code) = main_coding(r).unzip();
        let q = r.get("valueQuantity");
        let value = q.and_then(|q| q.get("value")).and_then(Value::as_f64);
        let unit = q
            .and_then(|q| q.get("unit").or_else(|| q.get("code")))
            .and_then(Value::as_str)
            .map(str::to_owned);
        let value_text = first_coding(r.get("valueCodeableConcept"));
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
