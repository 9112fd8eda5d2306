//! Keywords: what a secure-index entry makes searchable about a FHIR R4 resource.
//!
//! [`extract_keywords`] reads a resource (`serde_json::Value`) and returns, deduplicated and
//! capped at [`MAX_KEYWORDS`]:
//!
//! 1. the resource type, `type:Observation`;
//! 2. coarse dates of the resource's own date fields ([`DATE_FIELDS`], and `start`/`end` of
//!    [`PERIOD_FIELDS`]): the year `date:2024` and, when the month is given, `date:2024-03`.
//!    The date is read as written (no time-zone conversion). Only top-level fields count;
//!    dates deeper inside (`meta.lastUpdated`, a contained resource's dates) do not;
//! 3. every coded concept anywhere in the resource, `code:http://loinc.org|4548-4`: any JSON
//!    object with a string `system` and a string `code` and no `value` member (a FHIR `Coding`;
//!    the `value` test leaves out `Quantity` and its kin, whose `system|code` is a unit).
//!
//! When more than [`MAX_KEYWORDS`] distinct keywords are found, the resource type is kept first,
//! then the dates in field order, then the codes in breadth-first order of the JSON tree (object
//! members in sorted key order, array items in order), so the codes nearest the top (the
//! resource's own `code`, `category`) win over deeply nested ones. The choice never depends on
//! the order of members in the JSON text. [`Keywords::dropped`] says how many were left out.
//!
//! Keywords fall into [`KeywordClass`]es (`type`, `date`, and one class per code system); a class
//! is the unit of delegated search (see [`crate::index::ClassKey`]).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;
use std::str::FromStr;

use serde_json::{Map, Value};
use thiserror::Error;

use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};

/// Most keywords taken from one resource. Typical resources have 4 to 12; a large
/// `DiagnosticReport` or `Bundle` is cut to this many (see the module docs for which stay).
pub const MAX_KEYWORDS: usize = 64;

/// Longest resource type name, in bytes.
pub const MAX_RESOURCE_TYPE_LEN: usize = 64;

/// Longest code system URI, in bytes.
pub const MAX_SYSTEM_LEN: usize = 256;

/// Longest code, in bytes.
pub const MAX_CODE_LEN: usize = 256;

/// Top-level `date`, `dateTime` and `instant` fields read for date keywords, in priority order.
pub const DATE_FIELDS: &[&str] = &[
    "effectiveDateTime",
    "effectiveInstant",
    "issued",
    "onsetDateTime",
    "abatementDateTime",
    "recordedDate",
    "recorded",
    "authoredOn",
    "occurrenceDateTime",
    "performedDateTime",
    "servicedDate",
    "dateAsserted",
    "date",
    "created",
    "whenHandedOver",
    "birthDate",
    "deceasedDateTime",
];

/// Top-level `Period` fields whose `start` and `end` are read for date keywords.
pub const PERIOD_FIELDS: &[&str] = &[
    "effectivePeriod",
    "onsetPeriod",
    "abatementPeriod",
    "occurrencePeriod",
    "performedPeriod",
    "servicedPeriod",
    "period",
];

/// A keyword or keyword class is invalid, or a resource cannot be read for keywords.
///
/// Messages never quote the input: it may be health data.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum KeywordError {
    /// A part of the keyword is empty.
    #[error("{what} is empty")]
    Empty {
        /// The part.
        what: &'static str,
    },
    /// A part of the keyword is longer than its limit.
    #[error("{what} is {len} bytes long, above the limit of {max}")]
    TooLong {
        /// The part.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A part of the keyword holds a character it may not hold.
    #[error("{what} contains a character that is not allowed")]
    InvalidCharacter {
        /// The part.
        what: &'static str,
    },
    /// A year outside 1..=9999.
    #[error("year is outside 1 to 9999")]
    YearOutOfRange,
    /// A month outside 1..=12.
    #[error("month is outside 1 to 12")]
    MonthOutOfRange,
    /// Keyword text with an unknown prefix.
    #[error("keyword text must start with `type:`, `code:` or `date:`")]
    UnknownPrefix,
    /// Keyword text that does not have the shape of its kind.
    #[error("{what} is malformed")]
    Malformed {
        /// What was being parsed.
        what: &'static str,
    },
    /// The resource is not a JSON object.
    #[error("a FHIR resource must be a JSON object")]
    NotAnObject,
    /// The resource has no `resourceType` string.
    #[error("the resource has no resourceType string")]
    MissingResourceType,
}

impl KeywordError {
    /// A static description, for [`DecodeError::InvalidValue`].
    fn reason(&self) -> &'static str {
        match self {
            Self::Empty { .. } => "empty",
            Self::TooLong { .. } => "too long",
            Self::InvalidCharacter { .. } => "character not allowed",
            Self::YearOutOfRange => "year out of range",
            Self::MonthOutOfRange => "month out of range",
            Self::UnknownPrefix | Self::Malformed { .. } => "malformed",
            Self::NotAnObject | Self::MissingResourceType => "not a resource",
        }
    }
}

fn check_len(what: &'static str, s: &str, max: usize) -> Result<(), KeywordError> {
    if s.is_empty() {
        return Err(KeywordError::Empty { what });
    }
    if s.len() > max {
        return Err(KeywordError::TooLong {
            what,
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_resource_type(s: &str) -> Result<(), KeywordError> {
    const WHAT: &str = "resource type";
    check_len(WHAT, s, MAX_RESOURCE_TYPE_LEN)?;
    let mut chars = s.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_uppercase());
    if first_ok && chars.all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(KeywordError::InvalidCharacter { what: WHAT })
    }
}

fn check_system(s: &str) -> Result<(), KeywordError> {
    const WHAT: &str = "code system";
    check_len(WHAT, s, MAX_SYSTEM_LEN)?;
    if s.chars()
        .any(|c| c == '|' || c.is_whitespace() || c.is_control())
    {
        return Err(KeywordError::InvalidCharacter { what: WHAT });
    }
    Ok(())
}

fn check_code(s: &str) -> Result<(), KeywordError> {
    const WHAT: &str = "code";
    check_len(WHAT, s, MAX_CODE_LEN)?;
    let padded = s.starts_with(char::is_whitespace) || s.ends_with(char::is_whitespace);
    if padded || s.chars().any(char::is_control) {
        return Err(KeywordError::InvalidCharacter { what: WHAT });
    }
    Ok(())
}

fn check_year(year: u16) -> Result<(), KeywordError> {
    if (1..=9999).contains(&year) {
        Ok(())
    } else {
        Err(KeywordError::YearOutOfRange)
    }
}

fn check_month(month: u8) -> Result<(), KeywordError> {
    if (1..=12).contains(&month) {
        Ok(())
    } else {
        Err(KeywordError::MonthOutOfRange)
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Repr {
    ResourceType(String),
    Code {
        system: String,
        code: String,
    },
    /// A year, and the month if given.
    Date(u16, Option<u8>),
}

/// One searchable fact about a record, checked when made.
///
/// Text form ([`Display`](fmt::Display) / [`FromStr`]): `type:Observation`,
/// `code:http://loinc.org|4548-4`, `date:2024`, `date:2024-03`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Keyword(Repr);

impl Keyword {
    /// The resource type keyword (`type:Observation`): 1 to 64 ASCII letters, the first one
    /// upper case.
    ///
    /// # Errors
    /// [`KeywordError::Empty`], [`KeywordError::TooLong`], [`KeywordError::InvalidCharacter`].
    pub fn resource_type(name: &str) -> Result<Self, KeywordError> {
        check_resource_type(name)?;
        Ok(Self(Repr::ResourceType(name.to_owned())))
    }

    /// A coded concept (`code:system|code`). The system is 1 to 256 bytes without whitespace,
    /// control characters or `|`; the code is 1 to 256 bytes without control characters or
    /// leading/trailing whitespace. Both are compared exactly (codes are case sensitive).
    ///
    /// # Errors
    /// [`KeywordError::Empty`], [`KeywordError::TooLong`], [`KeywordError::InvalidCharacter`].
    pub fn code(system: &str, code: &str) -> Result<Self, KeywordError> {
        check_system(system)?;
        check_code(code)?;
        Ok(Self(Repr::Code {
            system: system.to_owned(),
            code: code.to_owned(),
        }))
    }

    /// A year (`date:2024`).
    ///
    /// # Errors
    /// [`KeywordError::YearOutOfRange`] outside 1..=9999.
    pub fn year(year: u16) -> Result<Self, KeywordError> {
        check_year(year)?;
        Ok(Self(Repr::Date(year, None)))
    }

    /// A month (`date:2024-03`).
    ///
    /// # Errors
    /// [`KeywordError::YearOutOfRange`], [`KeywordError::MonthOutOfRange`].
    pub fn month(year: u16, month: u8) -> Result<Self, KeywordError> {
        check_year(year)?;
        check_month(month)?;
        Ok(Self(Repr::Date(year, Some(month))))
    }

    /// The class this keyword belongs to.
    pub fn class(&self) -> KeywordClass {
        match &self.0 {
            Repr::ResourceType(_) => KeywordClass::RESOURCE_TYPE,
            Repr::Code { system, .. } => KeywordClass(ClassRepr::Code(system.clone())),
            Repr::Date(..) => KeywordClass::DATE,
        }
    }

    /// The resource type, for a `type:` keyword.
    pub fn as_resource_type(&self) -> Option<&str> {
        match &self.0 {
            Repr::ResourceType(name) => Some(name),
            _ => None,
        }
    }

    /// The system and code, for a `code:` keyword.
    pub fn as_code(&self) -> Option<(&str, &str)> {
        match &self.0 {
            Repr::Code { system, code } => Some((system, code)),
            _ => None,
        }
    }

    /// The year and, for a month keyword, the month, for a `date:` keyword.
    pub fn as_date(&self) -> Option<(u16, Option<u8>)> {
        match self.0 {
            Repr::Date(y, m) => Some((y, m)),
            _ => None,
        }
    }
}

impl fmt::Display for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::ResourceType(name) => write!(f, "type:{name}"),
            Repr::Code { system, code } => write!(f, "code:{system}|{code}"),
            Repr::Date(y, None) => write!(f, "date:{y:04}"),
            Repr::Date(y, Some(m)) => write!(f, "date:{y:04}-{m:02}"),
        }
    }
}

impl fmt::Debug for Keyword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Keyword({self})")
    }
}

/// Parses exactly `n` ASCII digits.
fn digits(s: &str, n: usize) -> Option<u16> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl FromStr for Keyword {
    type Err = KeywordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(name) = s.strip_prefix("type:") {
            Self::resource_type(name)
        } else if let Some(rest) = s.strip_prefix("code:") {
            let (system, code) = rest.split_once('|').ok_or(KeywordError::Malformed {
                what: "code keyword",
            })?;
            Self::code(system, code)
        } else if let Some(date) = s.strip_prefix("date:") {
            const MALFORMED: KeywordError = KeywordError::Malformed {
                what: "date keyword",
            };
            match date.split_once('-') {
                None => Self::year(digits(date, 4).ok_or(MALFORMED)?),
                Some((y, m)) => {
                    let y = digits(y, 4).ok_or(MALFORMED)?;
                    let m = digits(m, 2).ok_or(MALFORMED)?;
                    Self::month(y, u8::try_from(m).map_err(|_| MALFORMED)?)
                }
            }
        } else {
            Err(KeywordError::UnknownPrefix)
        }
    }
}

const KW_TYPE: u8 = 1;
const KW_CODE: u8 = 2;
const KW_YEAR: u8 = 3;
const KW_MONTH: u8 = 4;

/// Canonical encoding: a kind byte, then `1 | string name`, `2 | string system | string code`,
/// `3 | u16 year` or `4 | u16 year | u8 month`. It is also the PRF input of the keyword's
/// trapdoor.
impl Encode for Keyword {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            Repr::ResourceType(name) => {
                out.put_u8(KW_TYPE);
                out.put_bytes(name.as_bytes());
            }
            Repr::Code { system, code } => {
                out.put_u8(KW_CODE);
                out.put_bytes(system.as_bytes());
                out.put_bytes(code.as_bytes());
            }
            Repr::Date(y, None) => {
                out.put_u8(KW_YEAR);
                out.put_u16(*y);
            }
            Repr::Date(y, Some(m)) => {
                out.put_u8(KW_MONTH);
                out.put_u16(*y);
                out.put_u8(*m);
            }
        }
    }
}

fn invalid(what: &'static str) -> impl Fn(KeywordError) -> DecodeError {
    move |e| DecodeError::InvalidValue {
        what,
        reason: e.reason(),
    }
}

impl Decode for Keyword {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        const WHAT: &str = "keyword";
        match r.u8()? {
            KW_TYPE => {
                let name = r.string(WHAT, MAX_RESOURCE_TYPE_LEN)?;
                Self::resource_type(&name).map_err(invalid(WHAT))
            }
            KW_CODE => {
                let system = r.string(WHAT, MAX_SYSTEM_LEN)?;
                let code = r.string(WHAT, MAX_CODE_LEN)?;
                Self::code(&system, &code).map_err(invalid(WHAT))
            }
            KW_YEAR => Self::year(r.u16()?).map_err(invalid(WHAT)),
            KW_MONTH => {
                let y = r.u16()?;
                let m = r.u8()?;
                Self::month(y, m).map_err(invalid(WHAT))
            }
            tag => Err(DecodeError::UnknownTag {
                what: WHAT,
                tag: tag.into(),
            }),
        }
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ClassRepr {
    ResourceType,
    Code(String),
    Date,
}

/// A class of keywords, the unit of delegated search: all resource types, all dates, or all
/// codes of one code system.
///
/// Text form: `type`, `date`, `code:http://loinc.org`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeywordClass(ClassRepr);

impl KeywordClass {
    /// Every `type:` keyword.
    pub const RESOURCE_TYPE: Self = Self(ClassRepr::ResourceType);
    /// Every `date:` keyword (years and months).
    pub const DATE: Self = Self(ClassRepr::Date);

    /// Every code of one code system (for example `http://loinc.org`).
    ///
    /// # Errors
    /// As [`Keyword::code`] for the system.
    pub fn code_system(system: &str) -> Result<Self, KeywordError> {
        check_system(system)?;
        Ok(Self(ClassRepr::Code(system.to_owned())))
    }

    /// The code system, for a code class.
    pub fn as_code_system(&self) -> Option<&str> {
        match &self.0 {
            ClassRepr::Code(system) => Some(system),
            _ => None,
        }
    }

    /// Whether `keyword` belongs to this class.
    pub fn contains(&self, keyword: &Keyword) -> bool {
        match (&self.0, &keyword.0) {
            (ClassRepr::ResourceType, Repr::ResourceType(_)) => true,
            (ClassRepr::Date, Repr::Date(..)) => true,
            (ClassRepr::Code(a), Repr::Code { system, .. }) => a == system,
            _ => false,
        }
    }
}

impl fmt::Display for KeywordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ClassRepr::ResourceType => f.write_str("type"),
            ClassRepr::Code(system) => write!(f, "code:{system}"),
            ClassRepr::Date => f.write_str("date"),
        }
    }
}

impl fmt::Debug for KeywordClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeywordClass({self})")
    }
}

impl FromStr for KeywordClass {
    type Err = KeywordError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "type" => Ok(Self::RESOURCE_TYPE),
            "date" => Ok(Self::DATE),
            _ => match s.strip_prefix("code:") {
                Some(system) => Self::code_system(system),
                None => Err(KeywordError::UnknownPrefix),
            },
        }
    }
}

const CLASS_TYPE: u8 = 1;
const CLASS_CODE: u8 = 2;
const CLASS_DATE: u8 = 3;

/// Canonical encoding: `1` (type), `2 | string system` (code), `3` (date). It is also the PRF
/// input of the class key.
impl Encode for KeywordClass {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match &self.0 {
            ClassRepr::ResourceType => out.put_u8(CLASS_TYPE),
            ClassRepr::Code(system) => {
                out.put_u8(CLASS_CODE);
                out.put_bytes(system.as_bytes());
            }
            ClassRepr::Date => out.put_u8(CLASS_DATE),
        }
    }
}

impl Decode for KeywordClass {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        const WHAT: &str = "keyword class";
        match r.u8()? {
            CLASS_TYPE => Ok(Self::RESOURCE_TYPE),
            CLASS_CODE => {
                let system = r.string(WHAT, MAX_SYSTEM_LEN)?;
                Self::code_system(&system).map_err(invalid(WHAT))
            }
            CLASS_DATE => Ok(Self::DATE),
            tag => Err(DecodeError::UnknownTag {
                what: WHAT,
                tag: tag.into(),
            }),
        }
    }
}

/// The keywords of one resource: a set, at most [`MAX_KEYWORDS`] long.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keywords {
    set: BTreeSet<Keyword>,
    dropped: usize,
}

impl Keywords {
    /// The keywords in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = &Keyword> + '_ {
        self.set.iter()
    }

    /// How many keywords there are.
    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    /// Whether `keyword` is one of them.
    pub fn contains(&self, keyword: &Keyword) -> bool {
        self.set.contains(keyword)
    }

    /// How many distinct keywords the resource had beyond [`MAX_KEYWORDS`] (left out).
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

impl<'a> IntoIterator for &'a Keywords {
    type Item = &'a Keyword;
    type IntoIter = std::collections::btree_set::Iter<'a, Keyword>;

    fn into_iter(self) -> Self::IntoIter {
        self.set.iter()
    }
}

/// Keywords in priority order, deduplicated.
#[derive(Default)]
struct Collector {
    ordered: Vec<Keyword>,
    seen: BTreeSet<Keyword>,
}

impl Collector {
    fn push(&mut self, keyword: Keyword) {
        if self.seen.insert(keyword.clone()) {
            self.ordered.push(keyword);
        }
    }

    fn push_date(&mut self, text: &str) {
        if let Some((year, month)) = coarse_date(text) {
            if let Ok(k) = Keyword::year(year) {
                self.push(k);
            }
            if let Some(Ok(k)) = month.map(|m| Keyword::month(year, m)) {
                self.push(k);
            }
        }
    }

    fn finish(mut self) -> Keywords {
        let dropped = self.ordered.len().saturating_sub(MAX_KEYWORDS);
        self.ordered.truncate(MAX_KEYWORDS);
        Keywords {
            set: self.ordered.into_iter().collect(),
            dropped,
        }
    }
}

/// The year and month of a FHIR `date`/`dateTime`/`instant` as written (`YYYY`, `YYYY-MM`,
/// `YYYY-MM-DD...`). `None` if it does not start like one.
fn coarse_date(text: &str) -> Option<(u16, Option<u8>)> {
    let year = digits(text.get(..4)?, 4)?;
    if !(1..=9999).contains(&year) {
        return None;
    }
    let rest = &text[4..];
    if rest.is_empty() {
        return Some((year, None));
    }
    let month_text = rest.strip_prefix('-')?.get(..2)?;
    let month = u8::try_from(digits(month_text, 2)?).ok()?;
    let after = &rest[3..];
    if !(1..=12).contains(&month) || !(after.is_empty() || after.starts_with('-')) {
        return None;
    }
    Some((year, Some(month)))
}

/// The keyword of a `Coding`-shaped object: string `system` and `code`, no `value`.
fn coding_keyword(map: &Map<String, Value>) -> Option<Keyword> {
    if map.contains_key("value") {
        return None;
    }
    let system = map.get("system")?.as_str()?;
    let code = map.get("code")?.as_str()?;
    Keyword::code(system, code).ok()
}

/// The keywords of a FHIR R4 resource (see the module docs for what is taken and in which order
/// when there are too many). Deterministic: the same resource always gives the same set,
/// whatever the order of members in its JSON text.
///
/// Codings with an invalid system or code and unparseable dates are skipped, not errors: the
/// resource was already checked as FHIR when it was sealed.
///
/// # Errors
/// [`KeywordError::NotAnObject`], [`KeywordError::MissingResourceType`], or the error of
/// [`Keyword::resource_type`] for an invalid resource type name.
pub fn extract_keywords(resource: &Value) -> Result<Keywords, KeywordError> {
    let object = resource.as_object().ok_or(KeywordError::NotAnObject)?;
    let resource_type = object
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or(KeywordError::MissingResourceType)?;
    let mut out = Collector::default();
    out.push(Keyword::resource_type(resource_type)?);

    for field in DATE_FIELDS {
        if let Some(text) = object.get(*field).and_then(Value::as_str) {
            out.push_date(text);
        }
    }
    for field in PERIOD_FIELDS {
        if let Some(period) = object.get(*field).and_then(Value::as_object) {
            for end in ["start", "end"] {
                if let Some(text) = period.get(end).and_then(Value::as_str) {
                    out.push_date(text);
                }
            }
        }
    }

    // Breadth first and iterative: no recursion, so no depth limit to hit.
    let mut queue: VecDeque<&Value> = VecDeque::from([resource]);
    while let Some(value) = queue.pop_front() {
        match value {
            Value::Object(map) => {
                if let Some(keyword) = coding_keyword(map) {
                    out.push(keyword);
                }
                let mut children: Vec<(&String, &Value)> = map.iter().collect();
                children.sort_unstable_by(|a, b| a.0.cmp(b.0));
                queue.extend(
                    children
                        .into_iter()
                        .map(|(_, v)| v)
                        .filter(|v| v.is_object() || v.is_array()),
                );
            }
            Value::Array(items) => {
                queue.extend(items.iter().filter(|v| v.is_object() || v.is_array()));
            }
            _ => {}
        }
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kw(s: &str) -> Keyword {
        s.parse().unwrap()
    }

    fn texts(k: &Keywords) -> Vec<String> {
        k.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn observation_keywords() {
        let obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": "laboratory"}]}],
            "code": {"coding": [
                {"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"},
                {"system": "http://snomed.info/sct", "code": "43396009"}
            ]},
            "subject": {"reference": "Patient/1", "identifier": {"system": "urn:x", "value": "7"}},
            "effectiveDateTime": "2024-03-31T23:30:00-05:00",
            "issued": "2024-04-01T08:00:00Z",
            "valueQuantity": {"value": 6.3, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"},
            "meta": {"lastUpdated": "2025-01-01T00:00:00Z"}
        });
        let k = extract_keywords(&obs).unwrap();
        assert_eq!(
            texts(&k),
            [
                "type:Observation",
                "code:http://loinc.org|4548-4",
                "code:http://snomed.info/sct|43396009",
                "code:http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                "date:2024",
                "date:2024-03",
                "date:2024-04",
            ]
        );
        assert_eq!(k.dropped(), 0);
        assert!(k.contains(&kw("date:2024-03")));
        assert!(!k.contains(&kw("date:2025")));
    }

    #[test]
    fn periods_contained_resources_and_extensions() {
        let enc = json!({
            "resourceType": "Encounter",
            "period": {"start": "2023-12-30", "end": "2024-01-02"},
            "contained": [{"resourceType": "Condition", "recordedDate": "1999-01-01",
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "E11.9"}]}}],
            "extension": [{"url": "x", "valueCoding": {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}}]
        });
        let k = extract_keywords(&enc).unwrap();
        assert_eq!(
            texts(&k),
            [
                "type:Encounter",
                "code:http://hl7.org/fhir/sid/icd-10|E11.9",
                "code:http://www.nlm.nih.gov/research/umls/rxnorm|860975",
                "date:2023",
                "date:2023-12",
                "date:2024",
                "date:2024-01",
            ]
        );
    }

    #[test]
    fn bad_codings_and_dates_are_skipped() {
        let r = json!({
            "resourceType": "Patient",
            "birthDate": "1980",
            "deceasedDateTime": "20x4-01",
            "maritalStatus": {"coding": [
                {"system": "", "code": "M"},
                {"system": "a b", "code": "M"},
                {"system": "s", "code": " M"},
                {"system": "s", "code": 5},
                {"system": "s", "code": "x".repeat(300)},
                {"system": "s", "code": "M"}
            ]}
        });
        assert_eq!(
            texts(&extract_keywords(&r).unwrap()),
            ["type:Patient", "code:s|M", "date:1980"]
        );
        for bad in [
            "2024-13-01",
            "2024-1",
            "2024-01x",
            "0000-01",
            "2024/01",
            "24",
            "",
        ] {
            assert_eq!(coarse_date(bad), None, "{bad}");
        }
        assert_eq!(coarse_date("2024-02"), Some((2024, Some(2))));
        assert_eq!(coarse_date("2024-02-29T00:00:00Z"), Some((2024, Some(2))));
        assert_eq!(coarse_date("2024"), Some((2024, None)));
    }

    #[test]
    fn capped_deterministically_with_shallow_codes_first() {
        let deep: Vec<Value> = (0..100)
            .map(
                |i| json!({"nested": {"coding": [{"system": "s", "code": format!("deep{i:03}")}]}}),
            )
            .collect();
        let r = json!({
            "resourceType": "Bundle",
            "zz": deep,
            "code": {"coding": [{"system": "s", "code": "top"}]},
            "date": "2020-05-05",
        });
        let k = extract_keywords(&r).unwrap();
        assert_eq!(k.len(), MAX_KEYWORDS);
        assert_eq!(k.dropped(), 104 - MAX_KEYWORDS);
        assert!(k.contains(&kw("type:Bundle")));
        assert!(k.contains(&kw("date:2020-05")));
        assert!(k.contains(&kw("code:s|top")));
        assert!(k.contains(&kw("code:s|deep000")));
        assert!(!k.contains(&kw("code:s|deep099")));
        // Same resource, members in another order: same keywords.
        let text = serde_json::to_string(&r).unwrap();
        let again: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(extract_keywords(&again).unwrap(), k);
    }

    #[test]
    fn extraction_errors() {
        let e = extract_keywords(&json!([1])).unwrap_err();
        assert_eq!(e.to_string(), "a FHIR resource must be a JSON object");
        let e = extract_keywords(&json!({"resourceType": 3})).unwrap_err();
        assert_eq!(e.to_string(), "the resource has no resourceType string");
        let e = extract_keywords(&json!({"resourceType": "observation"})).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resource type contains a character that is not allowed"
        );
    }

    #[test]
    fn text_round_trip_and_errors() {
        for s in [
            "type:Observation",
            "code:http://loinc.org|4548-4",
            "code:s|a|b",
            "code:s|two words",
            "date:0001",
            "date:2024-12",
        ] {
            assert_eq!(kw(s).to_string(), s);
            let k = kw(s);
            assert_eq!(Keyword::from_bytes(&k.to_bytes()).unwrap(), k);
        }
        let cases = [
            ("type:", "resource type is empty"),
            (
                "type:Obs1",
                "resource type contains a character that is not allowed",
            ),
            ("code:s", "code keyword is malformed"),
            ("code:|c", "code system is empty"),
            ("code:s|", "code is empty"),
            (
                "code:s|c\n",
                "code contains a character that is not allowed",
            ),
            ("date:2024-13", "month is outside 1 to 12"),
            ("date:0000", "year is outside 1 to 9999"),
            ("date:24", "date keyword is malformed"),
            ("date:2024-1", "date keyword is malformed"),
            ("date:2024-+1", "date keyword is malformed"),
            (
                "when:2024",
                "keyword text must start with `type:`, `code:` or `date:`",
            ),
        ];
        for (text, msg) in cases {
            assert_eq!(
                text.parse::<Keyword>().unwrap_err().to_string(),
                msg,
                "{text}"
            );
        }
        let long = format!("code:{}|c", "s".repeat(300));
        assert_eq!(
            long.parse::<Keyword>().unwrap_err().to_string(),
            "code system is 300 bytes long, above the limit of 256"
        );
        assert_eq!(format!("{:?}", kw("date:2024")), "Keyword(date:2024)");
    }

    #[test]
    fn classes() {
        let loinc = KeywordClass::code_system("http://loinc.org").unwrap();
        assert_eq!(kw("code:http://loinc.org|1-8").class(), loinc);
        assert!(loinc.contains(&kw("code:http://loinc.org|1-8")));
        assert!(!loinc.contains(&kw("code:http://snomed.info/sct|1")));
        assert!(KeywordClass::DATE.contains(&kw("date:2024-01")));
        assert!(KeywordClass::DATE.contains(&kw("date:2024")));
        assert!(KeywordClass::RESOURCE_TYPE.contains(&kw("type:Patient")));
        assert!(!KeywordClass::RESOURCE_TYPE.contains(&kw("date:2024")));
        for s in ["type", "date", "code:http://loinc.org"] {
            let c: KeywordClass = s.parse().unwrap();
            assert_eq!(c.to_string(), s);
            assert_eq!(KeywordClass::from_bytes(&c.to_bytes()).unwrap(), c);
        }
        assert_eq!(
            "codes".parse::<KeywordClass>().unwrap_err(),
            KeywordError::UnknownPrefix
        );
        assert_eq!(loinc.as_code_system(), Some("http://loinc.org"));
        assert_eq!(format!("{loinc:?}"), "KeywordClass(code:http://loinc.org)");
        assert_eq!(kw("date:2024-02").as_date(), Some((2024, Some(2))));
        assert_eq!(kw("type:Patient").as_resource_type(), Some("Patient"));
        assert_eq!(kw("code:s|c").as_code(), Some(("s", "c")));
    }

    #[test]
    fn decoding_rejects_invalid_keywords() {
        let mut bad = vec![KW_TYPE];
        bad.put_bytes(b"lower");
        assert_eq!(
            Keyword::from_bytes(&bad).unwrap_err().to_string(),
            "keyword: invalid value (character not allowed)"
        );
        assert_eq!(
            Keyword::from_bytes(&[KW_MONTH, 0x07, 0xe8, 13])
                .unwrap_err()
                .to_string(),
            "keyword: invalid value (month out of range)"
        );
        assert_eq!(
            Keyword::from_bytes(&[KW_YEAR, 0, 0])
                .unwrap_err()
                .to_string(),
            "keyword: invalid value (year out of range)"
        );
        assert_eq!(
            Keyword::from_bytes(&[9]).unwrap_err().to_string(),
            "keyword: unknown tag 9"
        );
        assert_eq!(
            KeywordClass::from_bytes(&[9]).unwrap_err().to_string(),
            "keyword class: unknown tag 9"
        );
        let mut bad = vec![CLASS_CODE];
        bad.put_bytes(b"");
        assert_eq!(
            KeywordClass::from_bytes(&bad).unwrap_err().to_string(),
            "keyword class: invalid value (empty)"
        );
        let mut bad = vec![KW_CODE];
        bad.put_bytes(b"s");
        bad.put_bytes(&[0xff]);
        assert_eq!(
            Keyword::from_bytes(&bad).unwrap_err().to_string(),
            "keyword: invalid value (not UTF-8)"
        );
    }

    proptest::proptest! {
        #[test]
        fn extraction_never_panics(text in "\\PC{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&text) {
                let _ = extract_keywords(&v);
            }
            let _ = text.parse::<Keyword>();
            let _ = Keyword::from_bytes(text.as_bytes());
        }
    }
}
