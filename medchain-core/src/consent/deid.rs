//! De-identification of FHIR R4 resources for research, after HIPAA Safe Harbor (45 CFR
//! 164.514(b)(2)).
//!
//! [`deidentify`] builds a new resource from an **allow-list per resource type**: what research
//! may keep. Nothing is copied because it was not foreseen as dangerous; an element is copied
//! only because its resource type's list names it, and only in the reduced form its kind
//! allows. `docs/consent.md` lists, per resource type, what is kept. In short:
//!
//! * **kept**: codings of known terminologies (`CodeableConcept`/`Coding`: `system` and `code`
//!   only, each code checked against its terminology's syntax or value list; no `text`, no
//!   `display`), `code` elements from their fixed value sets, quantities (value, comparator,
//!   a unit from a fixed table), booleans, integers, years, the US state and the country of an
//!   address, the content type of an attachment, US Core race/ethnicity/birth-sex codes;
//! * **pseudonymised**: the resource `id`, every `Reference.reference` and a Bundle entry's
//!   `fullUrl` become `HMAC-SHA256(study key, …)`, stable within one study and unlinkable
//!   across studies; references to the same resource get the same pseudonym, so links survive;
//! * **dropped**: everything else — names (`HumanName` anywhere), addresses below the state
//!   (zip codes included), telecom, identifiers under any key, URLs and uids, attachments'
//!   data, title and url, free text (`valueString`, `note`, `comment`, `description`,
//!   `conclusion`, `text`, questionnaire text answers, `Communication.payload`), every
//!   extension not on the list (`valueHumanName`, `valueAddress`, `valueIdentifier`,
//!   `valueContactPoint`, `valueUrl`, `valueString`, …), primitive extensions (`_family`,
//!   `_birthDate`), `meta`, `contained` resources of unknown types, any element carrying a
//!   `modifierExtension`;
//! * **dates** at the positions the lists keep become their year (`"2024"`), whatever their
//!   shape (ISO with or without time zone, `03/05/2024`, `5 March 2024`, arrays of them);
//! * **ages over 89** become the single category "90 or older": a time quantity over 89 years
//!   in any UCUM time unit (`s`, `min`, `h`, `d`, `wk`, `mo`, `a`, and printed forms such as
//!   `Years`, `months`) becomes `{"value": 90, "comparator": ">=", "unit": "a", …}`; an age
//!   (`Age`, an observation under an age code, its `valueInteger`) that the release year
//!   makes 90 or older (the age plus the years since the resource's earliest kept date)
//!   becomes 90 or older too; a `birthDate` whose year makes the patient 90 or older at the
//!   release is removed and replaced by the extension `urn:medchain:age-90-or-older`.
//!
//! The release year comes from a [`ReleaseClock`], made from the chain's tip (consensus
//! time), which the caller may move later but never earlier: a caller cannot choose an old
//! reference time that would let a 95-year-old's birth year through.
//!
//! Safe Harbor also requires that the releaser has no actual knowledge that the rest could
//! identify the patient; codes and values stay, so rare conditions can still single a patient
//! out. `docs/consent.md` says so.

mod schema;
mod terms;
#[cfg(test)]
mod tests;

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Map, Value};
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::block::{BlockHeader, ChainTip};
use crate::fhir::{self, FhirError};
use crate::hash::domain;
use crate::keys::Identity;

use schema::{ExtRule, Field, Kind};

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

/// The time of a research release, which the 90-or-older rule is applied at.
///
/// It is made from the chain (the committed tip's consensus timestamp, or a block header's),
/// never from a number the caller picks; [`ReleaseClock::no_earlier_than`] can move it later
/// (for example to the host's wall clock when the chain has been idle), never earlier. A later
/// clock only puts more ages into "90 or older", so no choice the caller can make lets a birth
/// year through that the chain's time would have removed.
///
/// ```
/// # use medchain_core::{block::ChainTip, consent::ReleaseClock, election::ElectionSeed, hash::BlockHash};
/// let tip = ChainTip {
///     hash: BlockHash::default(),
///     prev: BlockHash::default(),
///     height: 12,
///     round: 12,
///     timestamp_ms: 1_790_000_000_000,
///     seed: ElectionSeed::default(),
/// };
/// let clock = ReleaseClock::at_tip(&tip);
/// assert_eq!(clock.no_earlier_than(0), clock, "never earlier");
/// assert!(clock.no_earlier_than(clock.time_ms() + 1).time_ms() > clock.time_ms());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReleaseClock {
    ms: u64,
}

impl ReleaseClock {
    /// The clock of a release made on a chain whose committed tip is `tip`.
    pub fn at_tip(tip: &ChainTip) -> Self {
        Self {
            ms: tip.timestamp_ms,
        }
    }

    /// The clock of a release recorded in the block with header `header`.
    pub fn at_block(header: &BlockHeader) -> Self {
        Self {
            ms: header.timestamp_ms,
        }
    }

    /// This clock moved to `ms` if that is later; never earlier.
    #[must_use]
    pub fn no_earlier_than(self, ms: u64) -> Self {
        Self {
            ms: self.ms.max(ms),
        }
    }

    /// The release time, in milliseconds since the Unix epoch.
    pub fn time_ms(&self) -> u64 {
        self.ms
    }

    /// The release year (UTC).
    pub fn year(&self) -> i64 {
        fhir::year(self.ms)
    }
}

/// A resource could not be de-identified; nothing of it may be released.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DeidError {
    /// The input is not a FHIR resource.
    #[error(transparent)]
    NotFhir(#[from] FhirError),
    /// Research has no allow-list for this resource type.
    #[error("no research allow-list for {resource_type} resources: nothing of them is released")]
    Unsupported {
        /// The resource type.
        resource_type: &'static str,
    },
    /// The resource carries a `modifierExtension`: its meaning may differ from what its
    /// elements say, so releasing the allowed elements alone could mislead.
    #[error("the resource carries a modifier extension, which may change its meaning: it is not released")]
    ModifierExtension,
}

/// How deep elements may nest (questionnaire items nest freely); deeper ones are dropped.
const MAX_DEPTH: usize = 32;
/// How deep Bundles may nest in Bundles.
const MAX_NESTED_RESOURCES: usize = 4;
/// The key of an age placeholder in the output under construction (see [`Walk::ages`]); no
/// allow-list names it, so it can never come from the input.
const AGE_SLOT: &str = "\u{0}age";

/// Where a resource sits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nesting {
    /// The resource given to [`deidentify`], or a Bundle entry `depth` Bundles down.
    Entry(usize),
    /// A contained resource (which contains nothing itself).
    Contained,
}

/// The form an age was found in, for its "90 or older" replacement.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AgeForm {
    /// A `Quantity`/`Age` that may carry a comparator.
    Quantity,
    /// A quantity in a `Range` (`SimpleQuantity`: no comparator).
    Simple,
    /// A bare number (`valueInteger` under an age code).
    Number,
}

/// An age kept under 90 while walking, decided once the resource's earliest year is known.
struct AgeSlot {
    years: f64,
    kept: Value,
    form: AgeForm,
}

/// One resource's de-identification.
struct Walk<'a> {
    study: &'a StudyKey,
    release_year: i64,
    /// The earliest year kept in the resource.
    earliest_year: Option<i64>,
    /// Ages kept so far; the output holds `{AGE_SLOT: index}` placeholders for them.
    ages: Vec<AgeSlot>,
    /// The birth date made the patient 90 or older.
    ninety: bool,
    /// Where the resource sits.
    nesting: Nesting,
}

fn ninety_or_older(form: AgeForm) -> Value {
    match form {
        AgeForm::Number => json!(90),
        AgeForm::Simple => {
            json!({"value": 90, "unit": "a", "system": terms::UCUM, "code": "a"})
        }
        AgeForm::Quantity => {
            json!({"value": 90, "comparator": ">=", "unit": "a", "system": terms::UCUM, "code": "a"})
        }
    }
}

/// Whether an object's `code` names an age (its `value[x]` is then an age).
fn has_age_code(map: &Map<String, Value>) -> bool {
    let codings = map.get("code").and_then(|c| c.get("coding"));
    let one = |c: &Value| {
        let s = c.get("system").and_then(Value::as_str);
        let k = c.get("code").and_then(Value::as_str);
        terms::AGE_CODES
            .iter()
            .any(|(system, code)| s == Some(system) && k == Some(code))
    };
    match codings {
        Some(Value::Array(items)) => items.iter().any(one),
        Some(single) => one(single),
        None => false,
    }
}

/// Whether an object carries a modifier extension (an empty list carries none).
fn has_modifier(map: &Map<String, Value>) -> bool {
    match map.get("modifierExtension") {
        None => false,
        Some(Value::Array(items)) => !items.is_empty(),
        Some(_) => true,
    }
}

fn non_empty(out: Map<String, Value>) -> Option<Value> {
    (!out.is_empty()).then_some(Value::Object(out))
}

impl Walk<'_> {
    /// The pseudonym of a literal reference: `Type/id` (relative or absolute, any version)
    /// becomes `Type/<pseudonym of Type/id>`, so it matches the pseudonymised `id` of the
    /// resource it points at; `#id` (a contained resource) becomes `#<pseudonym of #id>`;
    /// anything else (`urn:uuid:…`) becomes its pseudonym.
    fn pseudo_reference(&self, r: &str) -> String {
        if r == "#" {
            return r.to_owned();
        }
        if r.starts_with('#') {
            return format!("#{}", self.study.pseudonym(r));
        }
        let path = r.split("/_history/").next().unwrap_or(r);
        let mut segs = path.rsplit('/');
        if let (Some(id), Some(kind)) = (segs.next(), segs.next()) {
            if !id.is_empty() && fhir::is_r4_resource_type(kind) {
                return format!("{kind}/{}", self.study.pseudonym(&format!("{kind}/{id}")));
            }
        }
        self.study.pseudonym(r)
    }

    fn year(&mut self, v: &Value) -> Option<Value> {
        let y = terms::year_of(v.as_str()?)?;
        self.earliest_year = Some(self.earliest_year.map_or(y, |e| e.min(y)));
        Some(Value::String(format!("{y:04}")))
    }

    /// Keeps `value` (an age of `years` years) for now, or gives 90 or older.
    fn age(&mut self, years: f64, kept: Value, form: AgeForm) -> Value {
        if years > 89.0 {
            return ninety_or_older(form);
        }
        self.ages.push(AgeSlot { years, kept, form });
        json!({ AGE_SLOT: self.ages.len() - 1 })
    }

    /// Replaces the age placeholders: an age whose holder is 90 or older at the release (the
    /// age plus the years from the resource's earliest kept year to the release year) becomes
    /// 90 or older, the others their kept value.
    fn settle_ages(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                if let Some(i) = map.get(AGE_SLOT).and_then(Value::as_u64) {
                    let since = self.release_year - self.earliest_year.unwrap_or(self.release_year);
                    *v = match self.ages.get(i as usize) {
                        Some(a) if a.years + since.max(0) as f64 <= 89.0 => a.kept.clone(),
                        Some(a) => ninety_or_older(a.form),
                        None => ninety_or_older(AgeForm::Number),
                    };
                    return;
                }
                for child in map.values_mut() {
                    self.settle_ages(child);
                }
            }
            Value::Array(items) => {
                for child in items {
                    self.settle_ages(child);
                }
            }
            _ => {}
        }
    }

    /// An element of `kind`: an array is walked item by item (strings included), dropping the
    /// items that keep nothing.
    fn element(&mut self, v: &Value, kind: Kind, depth: usize) -> Option<Value> {
        if depth > MAX_DEPTH {
            return None;
        }
        match v {
            Value::Array(items) => {
                let out: Vec<Value> = items
                    .iter()
                    .filter_map(|item| self.single(item, kind, depth))
                    .collect();
                (!out.is_empty()).then_some(Value::Array(out))
            }
            other => self.single(other, kind, depth),
        }
    }

    fn single(&mut self, v: &Value, kind: Kind, depth: usize) -> Option<Value> {
        match kind {
            Kind::Code(set) => v
                .as_str()
                .filter(|s| set.contains(s))
                .map(|s| Value::String(s.to_owned())),
            Kind::Bool => v.is_boolean().then(|| v.clone()),
            Kind::Int => (v.is_i64() || v.is_u64()).then(|| v.clone()),
            Kind::Decimal => v.is_number().then(|| v.clone()),
            Kind::Concept => self.concept(v),
            Kind::Coding => coding(v),
            Kind::Quantity => self.quantity(v, false, AgeForm::Quantity),
            Kind::Age => self.quantity(v, true, AgeForm::Quantity),
            Kind::AgeNumber => {
                let years = v.as_f64()?;
                Some(self.age(years, v.clone(), AgeForm::Number))
            }
            Kind::AgeRange => self.quantities(v, ["low", "high"], true, AgeForm::Simple),
            Kind::Range => self.quantities(v, ["low", "high"], false, AgeForm::Simple),
            Kind::Ratio => {
                self.quantities(v, ["numerator", "denominator"], false, AgeForm::Quantity)
            }
            Kind::Money => {
                let m = v.as_object()?;
                let mut out = Map::new();
                if let Some(x) = m.get("value").filter(|x| x.is_number()) {
                    out.insert("value".into(), x.clone());
                }
                if let Some(c) = m
                    .get("currency")
                    .and_then(Value::as_str)
                    .filter(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
                {
                    out.insert("currency".into(), Value::String(c.to_owned()));
                }
                non_empty(out)
            }
            Kind::Date => self.year(v),
            Kind::BirthDate => {
                let y = terms::year_of(v.as_str()?)?;
                if self.release_year - y >= 90 {
                    self.ninety = true;
                    None
                } else {
                    self.year(v)
                }
            }
            Kind::Period => self.object(v, schema::PERIOD, depth + 1),
            Kind::Ref => {
                let m = v.as_object()?;
                let mut out = Map::new();
                if let Some(r) = m.get("reference").and_then(Value::as_str) {
                    out.insert("reference".into(), Value::String(self.pseudo_reference(r)));
                }
                if let Some(t) = m
                    .get("type")
                    .and_then(Value::as_str)
                    .filter(|t| fhir::is_r4_resource_type(t))
                {
                    out.insert("type".into(), Value::String(t.to_owned()));
                }
                non_empty(out)
            }
            Kind::FullUrl => v.as_str().map(|r| Value::String(self.pseudo_reference(r))),
            Kind::HttpStatus => {
                let s = v.as_str()?;
                let code = s
                    .get(..3)
                    .filter(|c| c.bytes().all(|b| b.is_ascii_digit()))?;
                Some(Value::String(code.to_owned()))
            }
            Kind::LinkId => v
                .as_str()
                .filter(|s| terms::link_id(s))
                .map(|s| Value::String(s.to_owned())),
            Kind::MimeType => v
                .as_str()
                .filter(|s| terms::mime_type(s))
                .map(|s| Value::String(s.to_owned())),
            Kind::Address => address(v),
            Kind::Object(fields) => self.object(v, fields, depth + 1),
            Kind::Resource => match self.nesting {
                Nesting::Entry(level) if level < MAX_NESTED_RESOURCES => {
                    deidentify_at(v, self.study, self.release_year, Nesting::Entry(level + 1)).ok()
                }
                _ => None,
            },
        }
    }

    /// An object with its own allow-list; `None` when nothing is kept or it carries a
    /// modifier extension.
    fn object(&mut self, v: &Value, fields: &[Field], depth: usize) -> Option<Value> {
        let map = v.as_object()?;
        let mut out = Map::new();
        self.fields(map, fields, &mut out, depth)?;
        non_empty(out)
    }

    /// Copies the fields of `map` that `fields` keeps into `out`. `None` when `map` carries a
    /// modifier extension.
    fn fields(
        &mut self,
        map: &Map<String, Value>,
        fields: &[Field],
        out: &mut Map<String, Value>,
        depth: usize,
    ) -> Option<()> {
        if has_modifier(map) {
            return None;
        }
        let ages_here = has_age_code(map);
        for (key, v) in map {
            let Some(mut kind) = schema::lookup(fields, key) else {
                continue;
            };
            if ages_here && key.starts_with("value") {
                kind = kind.as_age();
            }
            if let Some(x) = self.element(v, kind, depth) {
                out.insert(key.clone(), x);
            }
        }
        Some(())
    }

    fn concept(&mut self, v: &Value) -> Option<Value> {
        let codings = v.as_object()?.get("coding")?;
        let kept: Vec<Value> = match codings {
            Value::Array(items) => items.iter().filter_map(coding).collect(),
            single => coding(single).into_iter().collect(),
        };
        (!kept.is_empty()).then(|| json!({ "coding": kept }))
    }

    /// The two quantities of a `Range` (`low`, `high`: simple quantities) or a `Ratio`.
    fn quantities(
        &mut self,
        v: &Value,
        keys: [&str; 2],
        is_age: bool,
        form: AgeForm,
    ) -> Option<Value> {
        let m = v.as_object()?;
        let mut out = Map::new();
        for k in keys {
            if let Some(q) = m.get(k).and_then(|q| self.quantity(q, is_age, form)) {
                out.insert(k.to_owned(), q);
            }
        }
        non_empty(out)
    }

    /// A quantity: the value, a comparator (not in a `Range`), a unit from the table (a time
    /// unit normalised to UCUM); over 89 years it is 90 or older. With `is_age`, a value
    /// without a time unit counts as years and the age is settled against the release year.
    fn quantity(&mut self, v: &Value, is_age: bool, form: AgeForm) -> Option<Value> {
        let m = v.as_object()?;
        let text = |k: &str| m.get(k).and_then(Value::as_str);
        let ucum_code =
            text("code").filter(|c| text("system") == Some(terms::UCUM) && terms::unit_allowed(c));
        // The longest reading of the unit wins: a quantity whose code says `a` and whose unit
        // says `mo` is checked as years.
        let time = [ucum_code, text("unit")]
            .into_iter()
            .flatten()
            .filter_map(terms::time_unit)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let mut out = Map::new();
        if let Some(value) = m.get("value").filter(|x| x.is_number()) {
            out.insert("value".into(), value.clone());
        }
        if form == AgeForm::Quantity {
            if let Some(c) = text("comparator").filter(|c| matches!(*c, "<" | "<=" | ">=" | ">")) {
                out.insert("comparator".into(), Value::String(c.to_owned()));
            }
        }
        if let Some((code, _)) = time {
            out.insert("unit".into(), Value::String(code.to_owned()));
            out.insert("system".into(), Value::String(terms::UCUM.to_owned()));
            out.insert("code".into(), Value::String(code.to_owned()));
        } else {
            if let Some(u) = text("unit").filter(|u| terms::unit_allowed(u)) {
                out.insert("unit".into(), Value::String(u.to_owned()));
            }
            if let Some(c) = ucum_code {
                out.insert("system".into(), Value::String(terms::UCUM.to_owned()));
                out.insert("code".into(), Value::String(c.to_owned()));
            }
        }
        let value = out.get("value").and_then(Value::as_f64);
        let years = match (value, time) {
            (Some(x), Some((_, per_year))) => Some(x * per_year),
            (Some(x), None) if is_age => Some(x),
            _ => None,
        };
        match years {
            Some(y) if is_age => Some(self.age(y, Value::Object(out), form)),
            Some(y) if y > 89.0 => Some(ninety_or_older(form)),
            _ => non_empty(out),
        }
    }

    /// Kept extensions of `list` under `rules`.
    fn extensions(&mut self, list: &Value, rules: &[ExtRule], depth: usize) -> Vec<Value> {
        let items: &[Value] = match list {
            Value::Array(items) => items,
            _ => return Vec::new(),
        };
        let mut kept = Vec::new();
        for item in items {
            let Some(m) = item.as_object() else { continue };
            let Some(rule) = m
                .get("url")
                .and_then(Value::as_str)
                .and_then(|u| rules.iter().find(|r| r.url == u))
            else {
                continue;
            };
            if has_modifier(m) {
                continue;
            }
            let mut out = Map::new();
            if let Some((suffix, kind)) = rule.value {
                if let Some(x) = m
                    .get(&format!("value{suffix}"))
                    .and_then(|x| self.element(x, kind, depth + 1))
                {
                    out.insert(format!("value{suffix}"), x);
                }
            }
            if !rule.sub.is_empty() {
                if let Some(sub) = m.get("extension") {
                    let sub = self.extensions(sub, rule.sub, depth + 1);
                    if !sub.is_empty() {
                        out.insert("extension".into(), Value::Array(sub));
                    }
                }
            }
            if !out.is_empty() {
                out.insert("url".into(), Value::String(rule.url.to_owned()));
                kept.push(Value::Object(out));
            }
        }
        kept
    }
}

/// A `Coding`: `system` and `code` when the terminology keeps them; nothing else.
fn coding(v: &Value) -> Option<Value> {
    let m = v.as_object()?;
    let system = m.get("system")?.as_str()?;
    let code = m.get("code")?.as_str()?;
    terms::coding_allowed(system, code).then(|| json!({"system": system, "code": code}))
}

/// An `Address`: the USPS code of a US state and the country code; no line, city, district,
/// postal code (not even its first three digits), period or text.
fn address(v: &Value) -> Option<Value> {
    let m = v.as_object()?;
    let mut out = Map::new();
    let country = m
        .get("country")
        .map(|c| c.as_str().and_then(terms::country));
    if let Some(Some(c)) = country {
        out.insert("country".into(), Value::String(c.to_owned()));
    }
    let in_us = match country {
        None => true,
        Some(c) => c == Some("US"),
    };
    if let Some(state) = m
        .get("state")
        .and_then(Value::as_str)
        .and_then(terms::us_state)
        .filter(|_| in_us)
    {
        out.insert("state".into(), Value::String(state.to_owned()));
    }
    non_empty(out)
}

fn deidentify_at(
    resource: &Value,
    study: &StudyKey,
    release_year: i64,
    nesting: Nesting,
) -> Result<Value, DeidError> {
    let map = resource.as_object().ok_or(FhirError::NotAnObject)?;
    let name = map
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(FhirError::MissingResourceType)?;
    let resource_type = fhir::R4_RESOURCE_TYPES
        .binary_search(&name)
        .map(|i| fhir::R4_RESOURCE_TYPES[i])
        .map_err(|_| FhirError::UnknownResourceType)?;
    let fields = schema::resource(resource_type).ok_or(DeidError::Unsupported { resource_type })?;
    let mut walk = Walk {
        study,
        release_year,
        earliest_year: None,
        ages: Vec::new(),
        ninety: false,
        nesting,
    };
    let mut out = Map::new();
    out.insert(
        "resourceType".into(),
        Value::String(resource_type.to_owned()),
    );
    walk.fields(map, fields, &mut out, 0)
        .ok_or(DeidError::ModifierExtension)?;
    if let Some(id) = map.get("id").and_then(Value::as_str) {
        let key = if nesting == Nesting::Contained {
            format!("#{id}")
        } else {
            format!("{resource_type}/{id}")
        };
        out.insert("id".into(), Value::String(study.pseudonym(&key)));
    }
    let mut extensions = map
        .get("extension")
        .map(|list| walk.extensions(list, schema::extensions(resource_type), 0))
        .unwrap_or_default();
    if walk.ninety
        && !extensions
            .iter()
            .any(|e| e["url"] == schema::AGE_90_OR_OLDER)
    {
        extensions.push(json!({"url": schema::AGE_90_OR_OLDER, "valueBoolean": true}));
    }
    if !extensions.is_empty() {
        out.insert("extension".into(), Value::Array(extensions));
    }
    if nesting != Nesting::Contained {
        if let Some(Value::Array(items)) = map.get("contained") {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|c| deidentify_at(c, study, release_year, Nesting::Contained).ok())
                .collect();
            if !kept.is_empty() {
                out.insert("contained".into(), Value::Array(kept));
            }
        }
    }
    let mut out = Value::Object(out);
    if !walk.ages.is_empty() {
        walk.settle_ages(&mut out);
    }
    Ok(out)
}

/// De-identifies a FHIR R4 resource for study `study`, released at `clock` (see the module
/// docs and `docs/consent.md` for exactly what is kept). The input is not changed; the output
/// is a new resource holding only what the allow-list of its type keeps.
///
/// # Errors
/// [`DeidError::NotFhir`] if the input is not a FHIR R4 resource;
/// [`DeidError::Unsupported`] if research has no allow-list for its type;
/// [`DeidError::ModifierExtension`] if it carries a `modifierExtension`.
pub fn deidentify(
    resource: &Value,
    study: &StudyKey,
    clock: &ReleaseClock,
) -> Result<Value, DeidError> {
    deidentify_at(resource, study, clock.year(), Nesting::Entry(0))
}

/// The resource types [`deidentify`] has an allow-list for, in alphabetical order.
pub fn supported_resource_types() -> impl Iterator<Item = &'static str> {
    schema::RESOURCES.iter().map(|(t, _)| *t)
}
