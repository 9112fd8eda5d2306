//! Patient consent as executable contracts (the paper's "smart contracts").
//!
//! A [`Consent`] is signed by the patient and holds [`Provision`]s that permit or deny, nested
//! like FHIR R4 `Consent.provision`: an actor (a party's key, or a role), an action, a purpose
//! of use (HL7 v3 PurposeOfUse), data classes (FHIR resource types and codes), a period in force
//! and a data period. It travels on chain in a `ConsentGranted` transaction
//! ([`Consent::grant_body`]), is validated by every node, and is evaluated by the pure,
//! deterministic [`evaluate`]:
//!
//! 1. An **emergency** request (purpose `ETREAT`, break-glass) by a credentialed clinician of a
//!    member institution is permitted unless the patient's standing emergency preference (the
//!    most recent consent in force that states one) refuses it; it must be logged as an
//!    emergency access.
//! 2. Otherwise every consent of the patient that is in force (not revoked, within its period)
//!    is walked; a provision applies when it and all its ancestors match the request.
//! 3. **Deny overrides permit**: any applicable deny gives Deny (naming the consent and the
//!    provision); else any applicable permit gives Permit (naming them); else Deny (no consent
//!    permits — the default is deny).
//!
//! On chain a consent is **blinded** ([`Consent::blind`]): its codes are [`CodeTag`]s under the
//! patient's [`ConsentTagKey`], matched against the tags in a record's class, and it carries no
//! summary. A refusal reaches the requester as a generic [`Denial`]; its detail is the patient's.
//!
//! See `docs/consent.md` for the model, the evaluation order, emergency access, erasure and the
//! threat model.

mod blind;
mod deid;
mod fhir_io;
mod search;

pub use blind::{
    tag_bucket, CodeTag, CodeTagError, ConsentTagKey, CODE_TAG_BUCKETS, CODE_TAG_LEN, MAX_CODE_TAGS,
};
pub use deid::{deidentify, supported_resource_types, DeidError, ReleaseClock, StudyKey};
pub use fhir_io::{consent_from_fhir, consent_to_fhir, ConsentFhirError};
pub use search::{search_grants, SearchDelegationError, DEFAULT_CODE_SYSTEMS};

use std::fmt;

use thiserror::Error;

use crate::credential::Role;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{digest_newtype, domain, tagged_hash, ChainId};
use crate::keys::{Identity, PublicIdentity, VerifyKey};
use crate::tx::{revocation_message, PatientSignature, TxBody};

/// Format version of [`Consent`]. Version 2: a data class may be a blinded code
/// ([`DataClass::Blinded`]); on chain every code is blinded and the summary is empty.
pub const CONSENT_VERSION: u8 = 2;

/// Deepest provision nesting accepted.
pub const MAX_DEPTH: usize = 8;

/// Most provisions in one consent (all levels).
pub const MAX_PROVISIONS: usize = 256;

const MAX_LIST: usize = 64;
const MAX_TEXT: usize = 256;

digest_newtype!(
    /// A consent's id: the tagged hash of its canonical document.
    ConsentId
);

/// A time span in milliseconds since the Unix epoch; an open end is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Period {
    /// First instant in the period.
    pub start_ms: Option<u64>,
    /// Last instant in the period.
    pub end_ms: Option<u64>,
}

impl Period {
    /// A period with both ends.
    pub const fn between(start_ms: u64, end_ms: u64) -> Self {
        Self {
            start_ms: Some(start_ms),
            end_ms: Some(end_ms),
        }
    }

    /// Whether `t` is within the period.
    pub fn contains(&self, t: u64) -> bool {
        self.start_ms.is_none_or(|s| t >= s) && self.end_ms.is_none_or(|e| t <= e)
    }
}

impl Encode for Period {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_option(self.start_ms.as_ref());
        out.put_option(self.end_ms.as_ref());
    }
}

impl Decode for Period {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let p = Self {
            start_ms: r.option("period start")?,
            end_ms: r.option("period end")?,
        };
        if let (Some(s), Some(e)) = (p.start_ms, p.end_ms) {
            if s > e {
                return Err(DecodeError::InvalidValue {
                    what: "period",
                    reason: "start after end",
                });
            }
        }
        Ok(p)
    }
}

/// Whether a provision permits or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProvisionType {
    /// The provision permits what it matches.
    Permit,
    /// The provision denies what it matches; deny overrides permit.
    Deny,
}

/// Who a provision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// A given party (by signing key).
    Party(VerifyKey),
    /// Anyone holding a role credential, e.g. any clinician of an institution.
    Role(Role),
    /// Any researcher of any member institution.
    AnyResearcher,
    /// Any clinician of any member institution.
    AnyClinician,
}

impl Encode for Actor {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::Party(k) => {
                out.put_u8(1);
                k.encode_to(out);
            }
            Self::Role(role) => {
                out.put_u8(2);
                role.encode_to(out);
            }
            Self::AnyResearcher => out.put_u8(3),
            Self::AnyClinician => out.put_u8(4),
        }
    }
}

impl Decode for Actor {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::Party(VerifyKey::decode_from(r)?)),
            2 => Ok(Self::Role(Role::decode_from(r)?)),
            3 => Ok(Self::AnyResearcher),
            4 => Ok(Self::AnyClinician),
            tag => Err(DecodeError::UnknownTag {
                what: "consent actor",
                tag: tag.into(),
            }),
        }
    }
}

/// What the actor may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// Read (decrypt) a record.
    Read = 1,
    /// Search the patient's records through the secure index.
    Search = 2,
    /// Use a record, de-identified, for research.
    ResearchUse = 3,
}

impl Action {
    fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(Self::Read),
            2 => Ok(Self::Search),
            3 => Ok(Self::ResearchUse),
            tag => Err(DecodeError::UnknownTag {
                what: "consent action",
                tag: tag.into(),
            }),
        }
    }
}

impl Encode for Action {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(*self as u8);
    }
}

impl Decode for Action {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Self::from_code(r.u8()?)
    }
}

/// The HL7 v3 PurposeOfUse research hierarchy: `HRESCH` (healthcare research) and its
/// specialisations (biomedical, clinical trial, preclinical, disease-specific, population
/// origins, translational research). Each is read as [`Purpose::Research`].
pub const RESEARCH_CODES: &[&str] = &[
    "HRESCH",
    "BIORCH",
    "CLINTRCH",
    "CLINTRCHNPC",
    "CLINTRCHPC",
    "PRECLINRCH",
    "DSRCH",
    "POARCH",
    "TRANSRCH",
];

/// HL7 v3 PurposeOfUse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// `TREAT`: treatment.
    Treat,
    /// `ETREAT`: emergency treatment (break-glass).
    EmergencyTreat,
    /// `HRESCH`: healthcare research, optionally on one topic (e.g. a SNOMED CT or free code).
    /// Every code of the HL7 v3 research hierarchy ([`RESEARCH_CODES`]) reads as this purpose,
    /// so that no research purpose ever receives a record key.
    Research {
        /// The research topic; `None` in a provision means any topic.
        topic: Option<String>,
    },
    /// `PATRQT`: at the patient's request.
    PatientRequest,
    /// Another PurposeOfUse code.
    Other(String),
}

impl Purpose {
    /// The HL7 v3 PurposeOfUse code.
    pub fn code(&self) -> &str {
        match self {
            Self::Treat => "TREAT",
            Self::EmergencyTreat => "ETREAT",
            Self::Research { .. } => "HRESCH",
            Self::PatientRequest => "PATRQT",
            Self::Other(code) => code,
        }
    }

    /// The purpose for a code (and a research topic). Every code of the research hierarchy
    /// ([`RESEARCH_CODES`]) is [`Purpose::Research`].
    pub fn from_code(code: &str, topic: Option<String>) -> Self {
        match code {
            "TREAT" => Self::Treat,
            "ETREAT" => Self::EmergencyTreat,
            "PATRQT" => Self::PatientRequest,
            c if RESEARCH_CODES.contains(&c) => Self::Research { topic },
            other => Self::Other(other.to_owned()),
        }
    }

    /// Whether a provision's purpose covers a request's purpose.
    fn covers(&self, requested: &Purpose) -> bool {
        match (self, requested) {
            (Self::Research { topic: None }, Self::Research { .. }) => true,
            (Self::Research { topic: Some(a) }, Self::Research { topic: Some(b) }) => a == b,
            (Self::Research { .. }, _) | (_, Self::Research { .. }) => false,
            (a, b) => a.code() == b.code(),
        }
    }
}

impl Encode for Purpose {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.code().as_bytes());
        let topic = match self {
            Self::Research { topic } => topic.as_deref(),
            _ => None,
        };
        match topic {
            Some(t) => {
                out.put_u8(1);
                out.put_bytes(t.as_bytes());
            }
            None => out.put_u8(0),
        }
    }
}

impl Decode for Purpose {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let code = r.string("purpose code", 32)?;
        let topic = if r.bool("research topic flag")? {
            Some(r.string("research topic", MAX_TEXT)?)
        } else {
            None
        };
        if topic.is_some() && code != "HRESCH" {
            return Err(DecodeError::InvalidValue {
                what: "purpose",
                reason: "only HRESCH carries a topic",
            });
        }
        if code.is_empty() {
            return Err(DecodeError::InvalidValue {
                what: "purpose",
                reason: "empty code",
            });
        }
        Ok(Self::from_code(&code, topic))
    }
}

/// A class of data: a FHIR resource type, or a code anywhere in the resource (in clear in the
/// patient's own copy, blinded on chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataClass {
    /// A FHIR resource type, e.g. `Observation`.
    ResourceType(String),
    /// A coded concept (`system`, `code`), e.g. LOINC `4548-4`: the patient's clear form. Never
    /// on chain ([`Consent::grant_body`] blinds it, [`Consent::from_grant`] refuses it).
    Code {
        /// Code system URI.
        system: String,
        /// Code.
        code: String,
    },
    /// A coded concept blinded under the patient's [`ConsentTagKey`]: the on-chain form of
    /// [`DataClass::Code`]. It matches a record whose class carries the same tag.
    Blinded(CodeTag),
}

impl Encode for DataClass {
    fn encode_to(&self, out: &mut Vec<u8>) {
        match self {
            Self::ResourceType(t) => {
                out.put_u8(1);
                out.put_bytes(t.as_bytes());
            }
            Self::Code { system, code } => {
                out.put_u8(2);
                out.put_bytes(system.as_bytes());
                out.put_bytes(code.as_bytes());
            }
            Self::Blinded(tag) => {
                out.put_u8(3);
                tag.encode_to(out);
            }
        }
    }
}

impl Decode for DataClass {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        match r.u8()? {
            1 => Ok(Self::ResourceType(r.string("resource type", 64)?)),
            2 => Ok(Self::Code {
                system: r.string("code system", MAX_TEXT)?,
                code: r.string("code", MAX_TEXT)?,
            }),
            3 => Ok(Self::Blinded(CodeTag::decode_from(r)?)),
            tag => Err(DecodeError::UnknownTag {
                what: "data class",
                tag: tag.into(),
            }),
        }
    }
}

/// A rule of a consent. Empty lists match anything; nested provisions apply only where this
/// one matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provision {
    /// Permit or deny.
    pub kind: ProvisionType,
    /// Who (any of).
    pub actors: Vec<Actor>,
    /// What (any of).
    pub actions: Vec<Action>,
    /// Why (any of).
    pub purposes: Vec<Purpose>,
    /// Which data (any of).
    pub classes: Vec<DataClass>,
    /// When the provision is in force.
    pub period: Option<Period>,
    /// Records dated within this period only.
    pub data_period: Option<Period>,
    /// Nested provisions (exceptions and refinements).
    pub provisions: Vec<Provision>,
}

impl Provision {
    /// A permit provision with no conditions.
    pub fn permit() -> Self {
        Self::new(ProvisionType::Permit)
    }

    /// A deny provision with no conditions.
    pub fn deny() -> Self {
        Self::new(ProvisionType::Deny)
    }

    fn new(kind: ProvisionType) -> Self {
        Self {
            kind,
            actors: Vec::new(),
            actions: Vec::new(),
            purposes: Vec::new(),
            classes: Vec::new(),
            period: None,
            data_period: None,
            provisions: Vec::new(),
        }
    }

    /// Adds an actor.
    pub fn actor(mut self, a: Actor) -> Self {
        self.actors.push(a);
        self
    }

    /// Adds an action.
    pub fn action(mut self, a: Action) -> Self {
        self.actions.push(a);
        self
    }

    /// Adds a purpose.
    pub fn purpose(mut self, p: Purpose) -> Self {
        self.purposes.push(p);
        self
    }

    /// Adds a data class.
    pub fn class(mut self, c: DataClass) -> Self {
        self.classes.push(c);
        self
    }

    /// Sets the period in force.
    pub fn in_force(mut self, p: Period) -> Self {
        self.period = Some(p);
        self
    }

    /// Sets the data period.
    pub fn data_within(mut self, p: Period) -> Self {
        self.data_period = Some(p);
        self
    }

    /// Adds a nested provision.
    pub fn nest(mut self, p: Provision) -> Self {
        self.provisions.push(p);
        self
    }

    fn count(&self) -> usize {
        1 + self.provisions.iter().map(Provision::count).sum::<usize>()
    }

    fn depth(&self) -> usize {
        1 + self
            .provisions
            .iter()
            .map(Provision::depth)
            .max()
            .unwrap_or(0)
    }
}

fn encode_provision(p: &Provision, out: &mut Vec<u8>) {
    out.put_u8(match p.kind {
        ProvisionType::Permit => 1,
        ProvisionType::Deny => 2,
    });
    out.put_list(&p.actors);
    out.put_list(&p.actions);
    out.put_list(&p.purposes);
    out.put_list(&p.classes);
    out.put_option(p.period.as_ref());
    out.put_option(p.data_period.as_ref());
    out.put_u32(p.provisions.len() as u32);
    for child in &p.provisions {
        encode_provision(child, out);
    }
}

fn decode_provision(
    r: &mut Reader<'_>,
    depth: usize,
    budget: &mut usize,
) -> Result<Provision, DecodeError> {
    if depth > MAX_DEPTH {
        return Err(DecodeError::TooLong {
            what: "provision nesting",
            len: depth as u64,
            max: MAX_DEPTH as u64,
        });
    }
    if *budget == 0 {
        return Err(DecodeError::TooLong {
            what: "provisions",
            len: MAX_PROVISIONS as u64 + 1,
            max: MAX_PROVISIONS as u64,
        });
    }
    *budget -= 1;
    let kind = match r.u8()? {
        1 => ProvisionType::Permit,
        2 => ProvisionType::Deny,
        tag => {
            return Err(DecodeError::UnknownTag {
                what: "provision type",
                tag: tag.into(),
            })
        }
    };
    let actors = r.list("actors", MAX_LIST, 1)?;
    let actions = r.list("actions", MAX_LIST, 1)?;
    let purposes = r.list("purposes", MAX_LIST, 5)?;
    let classes = r.list("data classes", MAX_LIST, 5)?;
    let period = r.option("provision period")?;
    let data_period = r.option("data period")?;
    let n = r.length("nested provisions", MAX_PROVISIONS, 20)?;
    let mut provisions = Vec::with_capacity(n);
    for _ in 0..n {
        provisions.push(decode_provision(r, depth + 1, budget)?);
    }
    Ok(Provision {
        kind,
        actors,
        actions,
        purposes,
        classes,
        period,
        data_period,
        provisions,
    })
}

/// The patient's standing choice about break-glass emergency access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmergencyPreference {
    /// Credentialed clinicians of member institutions may read in an emergency (logged).
    Allow,
    /// No emergency access.
    Refuse,
}

/// A patient's consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consent {
    /// The patient.
    pub patient: PublicIdentity,
    /// When the patient made it (milliseconds since the Unix epoch).
    pub issued_ms: u64,
    /// A short human-readable statement ("Share my lab results with Dr. Ruiz for treatment").
    pub summary: String,
    /// When the consent is in force.
    pub period: Period,
    /// The patient's standing emergency preference, if this consent states one.
    pub emergency: Option<EmergencyPreference>,
    /// The rules.
    pub provisions: Vec<Provision>,
}

/// A consent is unusable or a request cannot be evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ConsentError {
    /// Malformed consent bytes.
    #[error("malformed consent: {0}")]
    Decode(#[from] DecodeError),
    /// The consent is not signed by its patient.
    #[error("the consent is not signed by its patient")]
    NotSignedByPatient,
    /// Too many or too deeply nested provisions.
    #[error(
        "the consent has more than {MAX_PROVISIONS} provisions or nests deeper than {MAX_DEPTH}"
    )]
    TooComplex,
    /// The consent has no provision and no emergency preference: it says nothing.
    #[error("the consent has no provision and no emergency preference")]
    Empty,
    /// The consent's summary is too long.
    #[error("the consent summary is longer than {MAX_TEXT} bytes")]
    SummaryTooLong,
    /// A consent on chain carries a readable code or summary: every member would read it.
    /// [`Consent::grant_body`] blinds the codes and leaves the summary with the patient.
    #[error("a consent on chain must carry no readable code and no summary")]
    NotBlinded,
}

impl Consent {
    /// Checks structural limits.
    ///
    /// # Errors
    /// [`ConsentError::TooComplex`], [`ConsentError::Empty`], [`ConsentError::SummaryTooLong`].
    pub fn check(&self) -> Result<(), ConsentError> {
        let count: usize = self.provisions.iter().map(Provision::count).sum();
        let depth = self
            .provisions
            .iter()
            .map(Provision::depth)
            .max()
            .unwrap_or(0);
        if count > MAX_PROVISIONS || depth > MAX_DEPTH + 1 {
            return Err(ConsentError::TooComplex);
        }
        if self.provisions.is_empty() && self.emergency.is_none() {
            return Err(ConsentError::Empty);
        }
        if self.summary.len() > MAX_TEXT {
            return Err(ConsentError::SummaryTooLong);
        }
        Ok(())
    }

    /// The consent's id: the tagged hash of its canonical bytes.
    pub fn id(&self) -> ConsentId {
        ConsentId::from_byte_array(tagged_hash(domain::CONSENT_ID, &self.to_bytes()))
    }

    /// The consent as it goes on chain: every [`DataClass::Code`] replaced by its
    /// [`DataClass::Blinded`] tag under the patient's `key`, and no summary (the patient's own
    /// words stay in the patient's copy). Everything else — actors, actions, purposes (research
    /// topics included), resource types, periods, the emergency preference and the provision
    /// tree — is kept as it is: validators need it.
    pub fn blind(&self, key: &ConsentTagKey) -> Consent {
        fn walk(p: &Provision, key: &ConsentTagKey) -> Provision {
            Provision {
                classes: p
                    .classes
                    .iter()
                    .map(|c| match c {
                        DataClass::Code { system, code } => {
                            DataClass::Blinded(key.tag(system, code))
                        }
                        other => other.clone(),
                    })
                    .collect(),
                provisions: p.provisions.iter().map(|c| walk(c, key)).collect(),
                ..p.clone()
            }
        }
        Consent {
            summary: String::new(),
            provisions: self.provisions.iter().map(|p| walk(p, key)).collect(),
            ..self.clone()
        }
    }

    /// Whether the consent is in its on-chain form: no summary and no clear code.
    pub fn is_blinded(&self) -> bool {
        fn clear(ps: &[Provision]) -> bool {
            ps.iter().any(|p| {
                p.classes
                    .iter()
                    .any(|c| matches!(c, DataClass::Code { .. }))
                    || clear(&p.provisions)
            })
        }
        self.summary.is_empty() && !clear(&self.provisions)
    }

    /// The id the consent gets on chain, once [`Consent::grant_body`] blinded it for its
    /// patient: `patient` derives the blinding key. (The id of the clear consent itself,
    /// [`Consent::id`], is not the on-chain one unless the consent has no code and no summary.)
    pub fn granted_id(&self, patient: &Identity) -> ConsentId {
        self.blind(&ConsentTagKey::for_patient(patient)).id()
    }

    /// The `ConsentGranted` body: the consent blinded under the patient's consent tag key
    /// ([`Consent::blind`]), signed by the patient for the network `chain`.
    ///
    /// # Errors
    /// [`ConsentError`] if the consent is unusable or `patient` is not its patient.
    pub fn grant_body(&self, patient: &Identity, chain: &ChainId) -> Result<TxBody, ConsentError> {
        self.check()?;
        if patient.public() != self.patient {
            return Err(ConsentError::NotSignedByPatient);
        }
        let document = self.blind(&ConsentTagKey::for_patient(patient)).to_bytes();
        Ok(TxBody::ConsentGranted {
            patient: PatientSignature::sign(patient, chain, domain::CONSENT_SIG, &document),
            document,
        })
    }

    /// Reads a consent out of a `ConsentGranted` body, checking it is signed by its patient for
    /// the network `chain` and carries no readable code or summary.
    ///
    /// # Errors
    /// [`ConsentError::Decode`], [`ConsentError::NotBlinded`] or
    /// [`ConsentError::NotSignedByPatient`].
    pub fn from_grant(
        chain: &ChainId,
        document: &[u8],
        signature: &PatientSignature,
    ) -> Result<Self, ConsentError> {
        let consent = Self::from_bytes(document)?;
        consent.check()?;
        if !consent.is_blinded() {
            return Err(ConsentError::NotBlinded);
        }
        if signature.patient != consent.patient
            || consent
                .patient
                .sign
                .verify(chain, domain::CONSENT_SIG, document, &signature.signature)
                .is_err()
        {
            return Err(ConsentError::NotSignedByPatient);
        }
        Ok(consent)
    }

    /// The `ConsentRevoked` body for consent `id`, signed by the patient for the network `chain`.
    pub fn revoke_body(patient: &Identity, chain: &ChainId, id: &ConsentId) -> TxBody {
        let id = id.to_byte_array();
        TxBody::ConsentRevoked {
            patient: PatientSignature::sign(
                patient,
                chain,
                domain::REVOKE_SIG,
                &revocation_message(&id),
            ),
            consent_id: id,
        }
    }
}

impl Encode for Consent {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(CONSENT_VERSION);
        self.patient.encode_to(out);
        out.put_u64(self.issued_ms);
        out.put_bytes(self.summary.as_bytes());
        self.period.encode_to(out);
        out.put_u8(match self.emergency {
            None => 0,
            Some(EmergencyPreference::Allow) => 1,
            Some(EmergencyPreference::Refuse) => 2,
        });
        out.put_u32(self.provisions.len() as u32);
        for p in &self.provisions {
            encode_provision(p, out);
        }
    }
}

impl Decode for Consent {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("consent", CONSENT_VERSION)?;
        let patient = PublicIdentity::decode_from(r)?;
        let issued_ms = r.u64()?;
        let summary = r.string("consent summary", MAX_TEXT)?;
        let period = Period::decode_from(r)?;
        let emergency = match r.u8()? {
            0 => None,
            1 => Some(EmergencyPreference::Allow),
            2 => Some(EmergencyPreference::Refuse),
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "emergency preference",
                    tag: tag.into(),
                })
            }
        };
        let n = r.length("provisions", MAX_PROVISIONS, 20)?;
        let mut budget = MAX_PROVISIONS;
        let mut provisions = Vec::with_capacity(n);
        for _ in 0..n {
            provisions.push(decode_provision(r, 1, &mut budget)?);
        }
        Ok(Self {
            patient,
            issued_ms,
            summary,
            period,
            emergency,
            provisions,
        })
    }
}

/// What is known of the record a request is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordFacts {
    /// FHIR resource type.
    pub resource_type: String,
    /// Codes in the record, in clear; `None` when the evaluator cannot see them (a validator
    /// sees only the network-visible class, see `docs/consent.md`). Matched against clear
    /// [`DataClass::Code`]s (a patient's own copy of a consent).
    pub codes: Option<Vec<(String, String)>>,
    /// The record's blinded codes (its class's tags, under its patient's [`ConsentTagKey`]);
    /// `None` when unknown. Matched against [`DataClass::Blinded`] codes (consents on chain).
    pub code_tags: Option<Vec<CodeTag>>,
    /// What is known of the record's clinical date.
    pub date: RecordDate,
}

/// What an evaluator knows of a record's clinical date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDate {
    /// The record has no clinical date: a data period never matches it.
    Undated,
    /// The exact date (milliseconds since the Unix epoch): what a reader of the record knows.
    At(u64),
    /// Somewhere in `[first_ms, last_ms]`: what a validator knows from a record class's year.
    Within {
        /// Earliest possible instant.
        first_ms: u64,
        /// Latest possible instant.
        last_ms: u64,
    },
    /// Not known (a validator, for a record class that withholds its date, such as a
    /// Patient's).
    Unknown,
}

impl RecordDate {
    /// `At(ms)` for `Some(ms)`, `Undated` for `None`.
    pub fn exact(ms: Option<u64>) -> Self {
        ms.map_or(Self::Undated, Self::At)
    }

    fn within(self, period: &Period) -> Match {
        match self {
            Self::Undated => Match::No,
            Self::At(t) => Match::of(period.contains(t)),
            Self::Within { first_ms, last_ms } => {
                if period.contains(first_ms) && period.contains(last_ms) {
                    Match::Yes
                } else if period.start_ms.is_some_and(|s| last_ms < s)
                    || period.end_ms.is_some_and(|e| first_ms > e)
                {
                    Match::No
                } else {
                    Match::Maybe
                }
            }
            Self::Unknown => Match::Maybe,
        }
    }
}

/// A request to act on a patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// Who asks.
    pub requester: VerifyKey,
    /// Roles the requester holds (from verified credentials).
    pub roles: Vec<Role>,
    /// What they want to do.
    pub action: Action,
    /// Why.
    pub purpose: Purpose,
    /// Which record (or, for a search, the class searched).
    pub record: RecordFacts,
    /// Whether this is a break-glass emergency request.
    pub emergency: bool,
}

/// A consent as the ledger holds it: revocation takes effect from the block that holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentState {
    /// The consent.
    pub consent: Consent,
    /// Its id.
    pub id: ConsentId,
    /// Height of the block that revoked it, if any.
    pub revoked_at: Option<u64>,
}

impl ConsentState {
    /// A consent in the ledger, not revoked.
    pub fn new(consent: Consent) -> Self {
        let id = consent.id();
        Self {
            consent,
            id,
            revoked_at: None,
        }
    }
}

/// Where a verdict comes from: a consent and the path of indices to the provision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRef {
    /// The consent.
    pub consent: ConsentId,
    /// Indices from the consent's top-level provisions down to the deciding provision.
    pub path: Vec<usize>,
}

impl fmt::Display for ProvisionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path: Vec<String> = self.path.iter().map(|i| (i + 1).to_string()).collect();
        write!(
            f,
            "consent {}… provision {}",
            &self.consent.to_string()[..12],
            path.join(".")
        )
    }
}

/// A refusal as the requester may learn it: generic. `Display` never names the consent, the
/// provision or a code that matched ("not my HIV results" would tell the requester what the
/// patient hides), nor whether a consent was revoked or expired; it names only what concerns
/// the request itself (an emergency request by a non-clinician, or without `ETREAT`). The
/// [`DenyReason`] is kept for the patient's own audit view ([`Denial::detail`]); `Debug` does
/// not show it either, so it does not reach logs by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Denial(DenyReason);

impl Denial {
    /// The sentence a requester is told for every refusal that comes from the patient's
    /// consents.
    pub const GENERIC: &'static str = "the patient's consent does not permit this request";

    /// Wraps a reason.
    pub fn new(reason: DenyReason) -> Self {
        Self(reason)
    }

    /// The full reason — which consent and provision, revoked or expired — for the patient's
    /// own audit view (`access::denial_audit_event`), never for the requester.
    pub fn detail(&self) -> &DenyReason {
        &self.0
    }
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            DenyReason::NotAClinician | DenyReason::EmergencyPurpose => self.0.fmt(f),
            _ => f.write_str(Self::GENERIC),
        }
    }
}

impl fmt::Debug for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Denial({self})")
    }
}

/// The verdict of [`evaluate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Permitted by a consent's provision.
    Permit(ProvisionRef),
    /// A break-glass emergency access, permitted by the patient's standing preference; it must
    /// be logged as an emergency.
    EmergencyPermit,
    /// Denied.
    Deny(DenyReason),
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_permit(&self) -> bool {
        !matches!(self, Self::Deny(_))
    }
}

/// Why a request was denied. `Display` gives a sentence a person can read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DenyReason {
    /// A deny provision covers the request.
    DeniedBy(ProvisionRef),
    /// No consent in force permits it.
    NoConsent,
    /// The consents that would permit it were revoked.
    Revoked,
    /// The consents that would permit it have expired or are not yet in force.
    OutOfPeriod,
    /// An emergency request by someone who is not a credentialed clinician.
    NotAClinician,
    /// The patient refuses emergency access.
    EmergencyRefused,
    /// An emergency request must have purpose ETREAT.
    EmergencyPurpose,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::DeniedBy(r) => write!(f, "denied by {r}"),
            Self::NoConsent => f.write_str("no consent of the patient permits this request"),
            Self::Revoked => f.write_str("the patient revoked the consent that permitted this"),
            Self::OutOfPeriod => {
                f.write_str("the consent that would permit this is not in force at this time")
            }
            Self::NotAClinician => f.write_str(
                "emergency access needs a clinician credential from a member institution",
            ),
            Self::EmergencyRefused => f.write_str("the patient refuses emergency access"),
            Self::EmergencyPurpose => f.write_str("emergency access must have purpose ETREAT"),
        }
    }
}

/// Three-valued match: the evaluator may not know the record's codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Match {
    No,
    Maybe,
    Yes,
}

impl Match {
    fn and(self, other: Match) -> Match {
        match (self, other) {
            (Match::No, _) | (_, Match::No) => Match::No,
            (Match::Maybe, _) | (_, Match::Maybe) => Match::Maybe,
            _ => Match::Yes,
        }
    }

    fn of(b: bool) -> Match {
        if b {
            Match::Yes
        } else {
            Match::No
        }
    }
}

fn class_match(classes: &[DataClass], rec: &RecordFacts) -> Match {
    if classes.is_empty() {
        return Match::Yes;
    }
    let mut best = Match::No;
    for c in classes {
        let m = match c {
            DataClass::ResourceType(t) => Match::of(*t == rec.resource_type),
            DataClass::Code { system, code } => match &rec.codes {
                Some(codes) => Match::of(codes.iter().any(|(s, c)| s == system && c == code)),
                None => Match::Maybe,
            },
            DataClass::Blinded(tag) => match &rec.code_tags {
                Some(tags) => Match::of(tags.contains(tag)),
                None => Match::Maybe,
            },
        };
        if m == Match::Yes {
            return Match::Yes;
        }
        if m == Match::Maybe {
            best = Match::Maybe;
        }
    }
    best
}

/// Whether a provision's actor list covers `who` holding `roles` (an empty list covers anyone).
pub(crate) fn evaluate_actor(actors: &[Actor], who: &VerifyKey, roles: &[Role]) -> bool {
    actors.is_empty()
        || actors.iter().any(|a| match a {
            Actor::Party(k) => k == who,
            Actor::Role(role) => roles.contains(role),
            Actor::AnyResearcher => roles.iter().any(Role::is_researcher),
            Actor::AnyClinician => roles.iter().any(Role::is_clinician),
        })
}

fn provision_match(p: &Provision, req: &AccessRequest, now_ms: u64) -> Match {
    let actors = evaluate_actor(&p.actors, &req.requester, &req.roles);
    let actions = p.actions.is_empty() || p.actions.contains(&req.action);
    let purposes = p.purposes.is_empty() || p.purposes.iter().any(|x| x.covers(&req.purpose));
    let period = p.period.is_none_or(|per| per.contains(now_ms));
    let data = p
        .data_period
        .map_or(Match::Yes, |per| req.record.date.within(&per));
    Match::of(actors && actions && purposes && period)
        .and(data)
        .and(class_match(&p.classes, &req.record))
}

fn walk(
    provisions: &[Provision],
    req: &AccessRequest,
    now_ms: u64,
    parent: Match,
    path: &mut Vec<usize>,
    id: &ConsentId,
    out: &mut Vec<(ProvisionType, Match, ProvisionRef)>,
) {
    for (i, p) in provisions.iter().enumerate() {
        let m = parent.and(provision_match(p, req, now_ms));
        if m == Match::No {
            continue;
        }
        path.push(i);
        out.push((
            p.kind,
            m,
            ProvisionRef {
                consent: *id,
                path: path.clone(),
            },
        ));
        walk(&p.provisions, req, now_ms, m, path, id, out);
        path.pop();
    }
}

/// Evaluates a request against a patient's consents at time `now_ms` and chain height `height`.
///
/// Pure and deterministic: every node reaches the same verdict. Consents revoked at or below
/// `height` are out of force. Where the record's codes or date are not known well enough to
/// decide (`codes`/`code_tags: None`, a date known only to its year or withheld), a provision
/// that depends on them counts as matching for a permit and as not matching for a deny, so a
/// validator rejects only what certainly is not permitted; the key holder, who sees the exact
/// date, evaluates strictly. Blinded codes are matched exactly by validators and key holders
/// alike: both compare the record class's tags.
pub fn evaluate(
    req: &AccessRequest,
    consents: &[ConsentState],
    now_ms: u64,
    height: u64,
) -> Decision {
    let in_force = |c: &ConsentState| {
        c.revoked_at.is_none_or(|h| h > height) && c.consent.period.contains(now_ms)
    };
    if req.emergency {
        if req.purpose != Purpose::EmergencyTreat {
            return Decision::Deny(DenyReason::EmergencyPurpose);
        }
        if !req.roles.iter().any(Role::is_clinician) {
            return Decision::Deny(DenyReason::NotAClinician);
        }
        let standing = consents
            .iter()
            .filter(|c| in_force(c))
            .filter_map(|c| c.consent.emergency.map(|e| (c.consent.issued_ms, c.id, e)))
            .max_by_key(|(t, id, _)| (*t, *id));
        return match standing {
            Some((_, _, EmergencyPreference::Refuse)) => {
                Decision::Deny(DenyReason::EmergencyRefused)
            }
            _ => Decision::EmergencyPermit,
        };
    }
    let mut hits = Vec::new();
    let mut sorted: Vec<&ConsentState> = consents.iter().collect();
    sorted.sort_by_key(|c| c.id);
    for c in sorted.iter().filter(|c| in_force(c)) {
        walk(
            &c.consent.provisions,
            req,
            now_ms,
            Match::Yes,
            &mut Vec::new(),
            &c.id,
            &mut hits,
        );
    }
    if let Some((_, _, r)) = hits
        .iter()
        .find(|(k, m, _)| *k == ProvisionType::Deny && *m == Match::Yes)
    {
        return Decision::Deny(DenyReason::DeniedBy(r.clone()));
    }
    if let Some((_, _, r)) = hits.iter().find(|(k, _, _)| *k == ProvisionType::Permit) {
        return Decision::Permit(r.clone());
    }
    // Say why, if a consent out of force would have permitted it.
    let would_permit = |c: &ConsentState| {
        let mut h = Vec::new();
        walk(
            &c.consent.provisions,
            req,
            now_ms,
            Match::Yes,
            &mut Vec::new(),
            &c.id,
            &mut h,
        );
        h.iter().any(|(k, _, _)| *k == ProvisionType::Permit)
            && !h
                .iter()
                .any(|(k, m, _)| *k == ProvisionType::Deny && *m == Match::Yes)
    };
    let out_of_force = sorted.iter().copied().filter(|c| !in_force(c));
    let (revoked, expired): (Vec<&ConsentState>, Vec<&ConsentState>) =
        out_of_force.partition(|c| c.revoked_at.is_some_and(|h| h <= height));
    if revoked.into_iter().any(would_permit) {
        return Decision::Deny(DenyReason::Revoked);
    }
    if expired.into_iter().any(would_permit) {
        return Decision::Deny(DenyReason::OutOfPeriod);
    }
    Decision::Deny(DenyReason::NoConsent)
}

#[cfg(test)]
mod tests;
