//! Research releases: the one implementation of the research policy.
//!
//! A researcher never receives a record key. A **member institution** that holds records (it
//! added them, so it can open them) releases a de-identified dataset for a **study**, at the
//! request of a researcher who signed that request and holds a researcher credential of a member
//! institution. [`ReleaseBuilder`] (and its one-call form [`release`]) is the only code that
//! decides what leaves; `medchain_store::Ledger::research_release`, the Python binding, the
//! clinic example and the `medchain` CLI all call it.
//!
//! ```text
//! researcher: ResearchRequest::sign(identity, chain, Study, Credential) ──▶ releaser
//! releaser:   ReleaseBuilder::new   the validators' own rule on the release log first
//!                                   (credential: member issuer, holder = the researcher who
//!                                   signed, not expired, bound to the network; role researcher)
//!             offer(record) × n     only records it added and that are not erased; opened;
//!                                   in the study's classes; the patient's consents evaluated
//!                                   strictly (codes, dates) as validators would at the next
//!                                   block; then de-identified (`consent::deidentify`)
//!             finish                cells of fewer than 11 patients suppressed; rows ordered
//!                                   by a release-private key; pseudonyms salted per release
//!                                   (per study if longitudinal); one ResearchReleased log
//! chain:      ResearchReleased { request, commitment, counts rounded at random to tens, time }
//! ```
//!
//! What each party learns is stated in `docs/consent.md` ("Research releases").

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use hmac::{Hmac, KeyInit, Mac};
use rand_core::{CryptoRng, Rng};
use serde_json::Value;
use sha2::Sha256;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::access::LedgerView;
use crate::block::TxContext;
use crate::consent::{
    deidentify, evaluate, AccessRequest, Action, ConsentState, DataClass, Purpose, RecordDate,
    RecordFacts, ReleaseClock, StudyKey, RESEARCH_CODES,
};
use crate::credential::Credential;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::fhir;
use crate::hash::{digest_newtype, domain, tagged_hash_parts, ChainId, MerkleRoot, RecordId};
use crate::keys::{Identity, PublicIdentity, Signature, VerifyKey};
use crate::ledger::{rules_over, PreviewError, RecordEntry, RuleError, StateError, StateView};
use crate::merkle::{self, MerkleProof, MerkleTree};
use crate::seal::SealedRecord;
use crate::tx::{TxBody, TxError};

/// Format version of [`Study`].
pub const STUDY_VERSION: u8 = 1;

/// A cell of a release (the rows of one resource type and main code) is released only when at
/// least this many distinct patients contribute to it.
pub const MIN_CELL_PATIENTS: usize = 11;

/// The counts a release log shows every member are rounded at random to a multiple of this.
pub const COUNT_BASE: u64 = 10;

/// Longest study id (bytes).
pub const MAX_STUDY_ID: usize = 64;

/// Most data classes a study may ask for.
pub const MAX_STUDY_CLASSES: usize = 64;

const MAX_PURPOSE: usize = 32;
const MAX_TOPIC: usize = 256;

digest_newtype!(
    /// A research release's commitment: `tagged_hash(RESEARCH_RELEASE, merkle root || patients
    /// || rows)` over the salted leaves of the released records and the exact counts. Hiding:
    /// without the release's private secret nobody can test whether a record is in it.
    ReleaseCommitment
);

/// A study is not usable as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StudyError {
    /// The id is empty, longer than [`MAX_STUDY_ID`] or has a character outside
    /// `A–Z a–z 0–9 . _ : -`.
    #[error("a study id is 1 to 64 characters of A-Z a-z 0-9 . _ : -")]
    BadId,
    /// The purpose is not a code of the HL7 v3 research hierarchy ([`RESEARCH_CODES`]).
    #[error(
        "a study's purpose is a code of the HL7 v3 research hierarchy (HRESCH, CLINTRCH, ...)"
    )]
    NotResearch,
    /// The topic is empty or longer than 256 bytes.
    #[error("a research topic is 1 to 256 bytes")]
    BadTopic,
    /// The study asks for no data class, or for more than [`MAX_STUDY_CLASSES`].
    #[error("a study names the resource types or codes it needs (1 to 64 of them)")]
    BadClasses,
}

/// What a study is and what it needs: the only data a release selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Study {
    /// The study's id (for example `northgate-dm2-2026`).
    pub id: String,
    /// Its purpose: a code of the HL7 v3 research hierarchy ([`RESEARCH_CODES`]).
    pub purpose: String,
    /// The research topic the patients' consents must cover (`None`: only consents to any
    /// research cover it).
    pub topic: Option<String>,
    /// The data the study needs: FHIR resource types and codes. A record is selected when it
    /// matches any of them (its type, or a code anywhere in it).
    pub classes: Vec<DataClass>,
    /// Whether the study follows patients across releases: its pseudonyms are then stable
    /// across the releases of one releaser for this study and research institution; otherwise
    /// every release has its own.
    pub longitudinal: bool,
}

impl Study {
    /// Checks the study's fields.
    ///
    /// # Errors
    /// A [`StudyError`].
    pub fn check(&self) -> Result<(), StudyError> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= MAX_STUDY_ID
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !id_ok {
            return Err(StudyError::BadId);
        }
        if !RESEARCH_CODES.contains(&self.purpose.as_str()) {
            return Err(StudyError::NotResearch);
        }
        if self
            .topic
            .as_ref()
            .is_some_and(|t| t.is_empty() || t.len() > MAX_TOPIC)
        {
            return Err(StudyError::BadTopic);
        }
        if self.classes.is_empty() || self.classes.len() > MAX_STUDY_CLASSES {
            return Err(StudyError::BadClasses);
        }
        Ok(())
    }

    /// The purpose as consents are evaluated against it.
    pub fn purpose_of_use(&self) -> Purpose {
        Purpose::Research {
            topic: self.topic.clone(),
        }
    }

    /// Whether a record with these facts is data the study needs.
    fn wants(&self, facts: &RecordFacts) -> bool {
        self.classes.iter().any(|c| match c {
            DataClass::ResourceType(t) => *t == facts.resource_type,
            DataClass::Code { system, code } => facts
                .codes
                .as_ref()
                .is_some_and(|cs| cs.iter().any(|(s, k)| s == system && k == code)),
            DataClass::Blinded(tag) => facts
                .code_tags
                .as_ref()
                .is_some_and(|tags| tags.contains(tag)),
        })
    }
}

/// `version (1) || id: string || purpose: string || topic: option<string> || classes:
/// list<DataClass> || longitudinal: bool`.
impl Encode for Study {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(STUDY_VERSION);
        out.put_bytes(self.id.as_bytes());
        out.put_bytes(self.purpose.as_bytes());
        match &self.topic {
            Some(t) => {
                out.put_u8(1);
                out.put_bytes(t.as_bytes());
            }
            None => out.put_u8(0),
        }
        out.put_list(&self.classes);
        out.put_bool(self.longitudinal);
    }
}

impl Decode for Study {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("study", STUDY_VERSION)?;
        let study = Self {
            id: r.string("study id", MAX_STUDY_ID)?,
            purpose: r.string("study purpose", MAX_PURPOSE)?,
            topic: if r.bool("study topic flag")? {
                Some(r.string("study topic", MAX_TOPIC)?)
            } else {
                None
            },
            classes: r.list("study classes", MAX_STUDY_CLASSES, 5)?,
            longitudinal: r.bool("longitudinal flag")?,
        };
        study.check().map_err(|e| DecodeError::InvalidValue {
            what: "study",
            reason: match e {
                StudyError::BadId => "bad study id",
                StudyError::NotResearch => "not a research purpose",
                StudyError::BadTopic => "bad topic",
                _ => "bad data classes",
            },
        })?;
        Ok(study)
    }
}

/// A researcher's request for a study's data: the study, the researcher, the researcher's
/// credential, and the researcher's signature over them for one network (label
/// `medchain/v1/research-request-signature`). Whoever presents it can only have the data
/// released *to that researcher's name*, and only with a credential naming that researcher.
#[derive(Clone, PartialEq, Eq)]
pub struct ResearchRequest {
    /// The study.
    pub study: Study,
    /// The researcher.
    pub researcher: PublicIdentity,
    /// The researcher's credential (a member institution attests the researcher role).
    pub credential: Credential,
    /// The researcher's signature over `study || researcher || credential`.
    pub signature: Signature,
}

impl fmt::Debug for ResearchRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResearchRequest")
            .field("study", &self.study.id)
            .field("researcher", &self.researcher.sign)
            .finish_non_exhaustive()
    }
}

impl ResearchRequest {
    /// The researcher signs a request for `study` on the network `chain`, presenting
    /// `credential`.
    ///
    /// # Errors
    /// A [`StudyError`] if the study is not usable.
    pub fn sign(
        researcher: &Identity,
        chain: &ChainId,
        study: Study,
        credential: Credential,
    ) -> Result<Self, StudyError> {
        study.check()?;
        let mut request = Self {
            study,
            researcher: researcher.public(),
            credential,
            signature: Signature::from_byte_array([0; 64]),
        };
        request.signature =
            researcher.sign(chain, domain::RESEARCH_REQUEST_SIG, &request.signed_bytes());
        Ok(request)
    }

    fn signed_bytes(&self) -> Vec<u8> {
        let mut out = self.study.to_bytes();
        self.researcher.encode_to(&mut out);
        self.credential.encode_to(&mut out);
        out
    }

    /// Checks the researcher's signature for the network `chain`.
    ///
    /// # Errors
    /// [`TxError::InvalidBody`] if it does not verify.
    pub fn verify_signature(&self, chain: &ChainId) -> Result<(), TxError> {
        self.researcher
            .sign
            .verify(
                chain,
                domain::RESEARCH_REQUEST_SIG,
                &self.signed_bytes(),
                &self.signature,
            )
            .map_err(|_| {
                TxError::InvalidBody("the research request is not signed by its researcher")
            })
    }
}

/// `study || researcher: PublicIdentity || credential: Credential || signature [64]`.
impl Encode for ResearchRequest {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.signed_bytes());
        self.signature.encode_to(out);
    }
}

impl Decode for ResearchRequest {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            study: Study::decode_from(r)?,
            researcher: PublicIdentity::decode_from(r)?,
            credential: Credential::decode_from(r)?,
            signature: Signature::decode_from(r)?,
        })
    }
}

/// The dataset-level log of a research release (the body of a `ResearchReleased`
/// transaction): the researcher's signed request, a commitment to the released set and counts
/// rounded at random to tens. It names no patient and no record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseLog {
    /// The researcher's signed request (study, researcher, credential).
    pub request: ResearchRequest,
    /// The commitment to the released records and the exact counts.
    pub commitment: ReleaseCommitment,
    /// Patients released, rounded at random to a multiple of [`COUNT_BASE`].
    pub patients: u64,
    /// Rows released, rounded at random to a multiple of [`COUNT_BASE`].
    pub rows: u64,
    /// The release time (the 90-or-older rule's clock), checked against the block's time.
    pub released_at_ms: u64,
}

impl ReleaseLog {
    /// The checks that need no ledger state: the researcher's signature for the network
    /// `chain`, and counts rounded to tens with at least ten patients.
    ///
    /// # Errors
    /// [`TxError::InvalidBody`].
    pub fn check(&self, chain: &ChainId) -> Result<(), TxError> {
        self.request.verify_signature(chain)?;
        let rounded = |n: u64| n >= COUNT_BASE && n.is_multiple_of(COUNT_BASE);
        if !rounded(self.patients) || !rounded(self.rows) {
            return Err(TxError::InvalidBody(
                "release counts are multiples of ten, at least ten",
            ));
        }
        Ok(())
    }
}

/// `request || commitment [32] || patients u64 || rows u64 || released_at_ms u64`.
impl Encode for ReleaseLog {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.request.encode_to(out);
        self.commitment.encode_to(out);
        out.put_u64(self.patients);
        out.put_u64(self.rows);
        out.put_u64(self.released_at_ms);
    }
}

impl Decode for ReleaseLog {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            request: ResearchRequest::decode_from(r)?,
            commitment: ReleaseCommitment::decode_from(r)?,
            patients: r.u64()?,
            rows: r.u64()?,
            released_at_ms: r.u64()?,
        })
    }
}

/// A research release could not be made; nothing was released.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ResearchError {
    /// Only a member institution of the network releases research data (its release log
    /// must go on chain, and it holds the records it added).
    #[error("research data are released by a member institution of this network")]
    NotAMember,
    /// The release log would not be a valid transaction (the researcher's signature).
    #[error("the research request is not valid: {0}")]
    Request(TxError),
    /// Validators would refuse the release log: the credential (issuer not a member, another
    /// holder, expired, another network), a role other than researcher, the time.
    #[error("the network would refuse this release: {0}")]
    Rule(RuleError),
    /// Every cell of the study has fewer than [`MIN_CELL_PATIENTS`] consenting patients.
    #[error("no part of the study has at least 11 consenting patients: nothing is released")]
    TooFewPatients,
    /// The ledger state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
}

impl From<PreviewError> for ResearchError {
    fn from(e: PreviewError) -> Self {
        match e {
            PreviewError::Rule(r) => Self::Rule(r),
            PreviewError::State(s) => Self::State(s),
        }
    }
}

/// One row of a release: a de-identified FHIR resource and its patient's pseudonym.
#[derive(Clone, PartialEq)]
pub struct ResearchRow {
    /// The patient's pseudonym in this release (or study, if longitudinal).
    pub pseudonym: String,
    /// The resource, de-identified ([`deidentify`]).
    pub resource: Value,
}

impl fmt::Debug for ResearchRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Health data, even de-identified: not in logs.
        f.debug_struct("ResearchRow").finish_non_exhaustive()
    }
}

/// The element that holds a resource's main code: `code`, or the medication or vaccine code.
fn main_code_element(resource: &Value) -> Option<&Value> {
    match resource.get("resourceType").and_then(Value::as_str)? {
        "MedicationRequest"
        | "MedicationStatement"
        | "MedicationAdministration"
        | "MedicationDispense" => resource.get("medicationCodeableConcept"),
        "Immunization" => resource.get("vaccineCode"),
        _ => resource.get("code"),
    }
}

/// The first coding (`system`, `code`) of a resource's main code: `code` (Observation,
/// Condition, Procedure, ...), `medicationCodeableConcept` (MedicationRequest, ...) or
/// `vaccineCode` (Immunization).
pub fn main_coding(resource: &Value) -> Option<(String, String)> {
    let coding = main_code_element(resource)?.get("coding")?.get(0)?;
    let get = |k: &str| coding.get(k).and_then(Value::as_str).map(str::to_owned);
    Some((get("system")?, get("code")?))
}

/// The cell a de-identified resource belongs to: its resource type and main coding.
type Cell = (String, Option<(String, String)>);

fn cell_of(resource: &Value) -> Cell {
    (
        resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        main_coding(resource),
    )
}

/// A released row before ordering: its record, patient and de-identified resource.
struct Candidate {
    record: RecordId,
    patient: VerifyKey,
    pseudonym: String,
    resource: Value,
}

/// Fewer records than this per extra thread are judged on the caller's thread.
const MIN_RECORDS_PER_THREAD: usize = 32;

/// What judging one record needs besides the ledger state, shared by the threads of
/// [`ReleaseBuilder::offer_all`].
struct Judge<'j> {
    releaser: &'j Identity,
    request: &'j ResearchRequest,
    clock: ReleaseClock,
    height: u64,
    study_key: &'j StudyKey,
}

impl Judge<'_> {
    /// The record as a row, if the releaser can open it, the study needs it, its patient's
    /// consents permit this research and it can be de-identified (its entry was checked).
    fn take(
        &self,
        sealed: &SealedRecord,
        entry: &RecordEntry,
        consents: &[ConsentState],
    ) -> Option<Candidate> {
        let opened = sealed.open(self.releaser).ok()?;
        let resource = opened.resource().ok()?;
        let facts = RecordFacts {
            resource_type: resource.resource_type().to_owned(),
            codes: Some(fhir::codings(resource.json())),
            // Consents on chain name codes blinded: the record's class carries its codes
            // blinded under the same patient key.
            code_tags: Some(entry.class.code_tags.clone()),
            date: RecordDate::exact(fhir::clinical_date_ms(resource.json())),
        };
        if !self.request.study.wants(&facts) {
            return None;
        }
        let patient = entry.patient;
        let ask = AccessRequest {
            requester: self.request.researcher.sign,
            roles: vec![self.request.credential.role],
            action: Action::ResearchUse,
            purpose: self.request.study.purpose_of_use(),
            record: facts,
            emergency: false,
        };
        if !evaluate(&ask, consents, self.clock.time_ms(), self.height).is_permit() {
            return None;
        }
        let clean = deidentify(resource.json(), self.study_key, &self.clock).ok()?;
        Some(Candidate {
            record: sealed.record_id(),
            patient: patient.sign,
            pseudonym: self.study_key.pseudonym(&patient.to_text()),
            resource: clean,
        })
    }
}

/// HMAC-SHA256 under a release's secret, for one purpose.
fn derive(secret: &[u8; 32], purpose: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(domain::RESEARCH_RELEASE_KEY.as_bytes());
    mac.update(&[0]);
    mac.update(purpose);
    mac.update(&[0]);
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// The leaf of a released record: `SHA-256(0x00 || salt || record id)` (RFC 6962), the salt
/// derived from the release's secret and the record.
fn leaf(salt: &[u8; 32], record: &RecordId) -> [u8; 32] {
    let mut data = [0u8; 64];
    data[..32].copy_from_slice(salt);
    data[32..].copy_from_slice(record.as_byte_array());
    merkle::leaf_hash(&data)
}

fn commit_to(root: &MerkleRoot, patients: u64, rows: u64) -> ReleaseCommitment {
    ReleaseCommitment::from_byte_array(tagged_hash_parts(
        domain::RESEARCH_RELEASE,
        &[
            root.as_byte_array(),
            &patients.to_be_bytes(),
            &rows.to_be_bytes(),
        ],
    ))
}

/// `n` rounded at random to a multiple of [`COUNT_BASE`]: up with probability
/// `(n mod 10) / 10`, so the expected value is `n` and a count one higher or lower changes the
/// distribution of what is shown by at most 1/10 in total variation.
fn round_at_random<R: Rng + CryptoRng>(n: u64, rng: &mut R) -> u64 {
    let bound = u32::MAX - u32::MAX % COUNT_BASE as u32;
    let u = loop {
        let x = rng.next_u32();
        if x < bound {
            break u64::from(x) % COUNT_BASE;
        }
    };
    let down = n - n % COUNT_BASE;
    if u < n % COUNT_BASE {
        down + COUNT_BASE
    } else {
        down
    }
}

/// A research release in the making: [`ReleaseBuilder::new`] checks the releaser and the
/// request, [`ReleaseBuilder::offer`] judges one record at a time, [`ReleaseBuilder::finish`]
/// suppresses small cells, orders the rows and makes the log.
pub struct ReleaseBuilder<'a> {
    releaser: &'a Identity,
    request: &'a ResearchRequest,
    ledger: LedgerView<'a>,
    clock: ReleaseClock,
    height: u64,
    secret: Zeroizing<[u8; 32]>,
    study_key: StudyKey,
    consents: HashMap<VerifyKey, Consents>,
    seen: HashSet<RecordId>,
    candidates: Vec<Candidate>,
}

/// A patient's consents, as validators take them, shared by the release's threads.
type Consents = Arc<Vec<ConsentState>>;

/// Records offered in one batch to a release's threads.
const PIPELINE_BATCH: usize = 256;

/// What [`ReleaseBuilder::offer_all`] reads from the ledger state, on the caller's thread.
struct StateReader<'s, 'a> {
    state: &'a dyn StateView,
    releaser: VerifyKey,
    seen: &'s mut HashSet<RecordId>,
    consents: &'s mut HashMap<VerifyKey, Consents>,
}

impl StateReader<'_, '_> {
    /// The record's entry and its patient's consents, if it is offered for the first time, the
    /// ledger says the releaser added it, it is not erased and its patient is the sealed one's.
    fn read(
        &mut self,
        sealed: &SealedRecord,
    ) -> Result<Option<(RecordEntry, Consents)>, ResearchError> {
        let id = sealed.record_id();
        if !self.seen.insert(id) {
            return Ok(None);
        }
        let Some(entry) = self.state.record(&id)? else {
            return Ok(None);
        };
        if entry.erased || entry.contributor != self.releaser || &entry.patient != sealed.patient()
        {
            return Ok(None);
        }
        let patient = entry.patient;
        let consents = match self.consents.get(&patient.sign) {
            Some(c) => Arc::clone(c),
            None => {
                // As validators take them: only consents whose document names this patient.
                let mut states = self.state.consents_of(&patient.sign)?;
                states.retain(|c| c.consent.patient == patient && c.consent.id() == c.id);
                let states = Arc::new(states);
                self.consents.insert(patient.sign, Arc::clone(&states));
                states
            }
        };
        Ok(Some((entry, consents)))
    }
}

impl fmt::Debug for ReleaseBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReleaseBuilder")
            .field("study", &self.request.study.id)
            .finish_non_exhaustive()
    }
}

impl<'a> ReleaseBuilder<'a> {
    /// Starts a release by `releaser` for `request` over `ledger`, at `clock` (made from the
    /// chain: [`ReleaseClock::at_tip`], moved no earlier than the host's clock). Before any
    /// record is looked at, the release log is judged by the validators' own rule as if in the
    /// next block at the clock's time: the researcher's signature, the credential (issued by a
    /// member institution, held by the researcher, not expired, signed for this network), the
    /// researcher role.
    ///
    /// # Errors
    /// [`ResearchError::NotAMember`], [`ResearchError::Request`], [`ResearchError::Rule`],
    /// [`ResearchError::State`].
    pub fn new<R: Rng + CryptoRng>(
        releaser: &'a Identity,
        request: &'a ResearchRequest,
        ledger: LedgerView<'a>,
        clock: ReleaseClock,
        rng: &mut R,
    ) -> Result<Self, ResearchError> {
        if ledger.genesis.member(&releaser.verify_key()).is_none() {
            return Err(ResearchError::NotAMember);
        }
        let mut secret = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(&mut *secret);
        let study = &request.study;
        let study_key = if study.longitudinal {
            // Stable across this releaser's releases of the study for the research
            // institution named in the credential; unlinkable with any other study.
            let mut context = study.id.as_bytes().to_vec();
            context.push(0);
            context.extend_from_slice(request.credential.role.institution().as_byte_array());
            StudyKey::from_secret(
                *releaser.derive_secret(domain::STUDY_PSEUDONYM, &context),
                &study.id,
            )
        } else {
            StudyKey::from_secret(derive(&secret, b"pseudonyms", &[]), &study.id)
        };
        let builder = Self {
            releaser,
            request,
            ledger,
            clock,
            height: ledger.state.height().saturating_add(1),
            secret,
            study_key,
            consents: HashMap::new(),
            seen: HashSet::new(),
            candidates: Vec::new(),
        };
        let probe = ReleaseLog {
            request: request.clone(),
            commitment: ReleaseCommitment::default(),
            patients: COUNT_BASE,
            rows: COUNT_BASE,
            released_at_ms: clock.time_ms(),
        };
        builder.judge(&probe)?;
        Ok(builder)
    }

    /// Judges a release log as validators would in the next block at the clock's time.
    fn judge(&self, log: &ReleaseLog) -> Result<(), ResearchError> {
        let body = TxBody::ResearchReleased(Box::new(log.clone()));
        body.check(&self.ledger.genesis.chain_id())
            .map_err(ResearchError::Request)?;
        let ctx = TxContext {
            height: self.height,
            block_time_ms: self.clock.time_ms(),
        };
        let mut rules = rules_over(self.ledger.state, self.ledger.genesis, self.ledger.network);
        rules.preview(&ctx, &self.releaser.verify_key(), &body)?;
        Ok(())
    }

    /// Offers one record. It is taken only if the ledger says the releaser added it and it is
    /// not erased; the releaser can open it; it is data the study needs; the consents of its
    /// patient permit this research for this researcher, judged strictly with the record's
    /// codes and date, at the clock's time and the next block's height (revocations and
    /// expiries count); and it can be de-identified. Anything else is skipped and counted
    /// nowhere. Returns whether it was taken.
    ///
    /// # Errors
    /// [`ResearchError::State`] if the ledger state could not be read.
    pub fn offer(&mut self, sealed: &SealedRecord) -> Result<bool, ResearchError> {
        Ok(self.offer_all(std::slice::from_ref(sealed), 1)? == 1)
    }

    /// Offers many records, judged as [`offer`](Self::offer) judges each, on up to `threads`
    /// threads: what needs the ledger state (the record's entry, its patient's consents) is read
    /// on the caller's thread, in batches handed as they are read to the threads, which open,
    /// evaluate the consents and de-identify (the bulk of the cost) while the caller reads the
    /// next batch (`std::thread::scope`; one thread, or a batch too small to share, stays on the
    /// caller's). The result does not depend on `threads`. Returns how many records were taken.
    ///
    /// # Errors
    /// [`ResearchError::State`] if the ledger state could not be read.
    pub fn offer_all(
        &mut self,
        records: &[SealedRecord],
        threads: usize,
    ) -> Result<usize, ResearchError> {
        let judge = Judge {
            releaser: self.releaser,
            request: self.request,
            clock: self.clock,
            height: self.height,
            study_key: &self.study_key,
        };
        let mut reader = StateReader {
            state: self.ledger.state,
            releaser: self.releaser.verify_key(),
            seen: &mut self.seen,
            consents: &mut self.consents,
        };
        let threads = threads.clamp(1, records.len().div_ceil(MIN_RECORDS_PER_THREAD).max(1));
        let taken: Vec<Candidate> = if threads == 1 {
            let mut taken = Vec::new();
            for sealed in records {
                if let Some((entry, consents)) = reader.read(sealed)? {
                    taken.extend(judge.take(sealed, &entry, &consents));
                }
            }
            taken
        } else {
            type Batch<'r> = Vec<(&'r SealedRecord, RecordEntry, Consents)>;
            let (send, receive) = std::sync::mpsc::sync_channel::<Batch<'_>>(2 * threads);
            let receive = Mutex::new(receive);
            std::thread::scope(|scope| {
                let (judge, receive) = (&judge, &receive);
                let workers: Vec<_> = (0..threads)
                    .map(|_| {
                        scope.spawn(move || {
                            let mut taken = Vec::new();
                            // The lock is held only to take the next batch.
                            while let Ok(batch) = receive
                                .lock()
                                .map_err(|_| ())
                                .and_then(|r| r.recv().map_err(|_| ()))
                            {
                                taken.extend(
                                    batch.iter().filter_map(|(s, e, c)| judge.take(s, e, c)),
                                );
                            }
                            taken
                        })
                    })
                    .collect();
                let read = (|| -> Result<(), ResearchError> {
                    let mut batch: Batch<'_> = Vec::with_capacity(PIPELINE_BATCH);
                    for sealed in records {
                        if let Some((entry, consents)) = reader.read(sealed)? {
                            batch.push((sealed, entry, consents));
                        }
                        if batch.len() == PIPELINE_BATCH {
                            let full =
                                std::mem::replace(&mut batch, Vec::with_capacity(PIPELINE_BATCH));
                            // Only a worker that panicked drops the receiver: what it would
                            // have taken is left out, a smaller release, never a wrong one.
                            let _ = send.send(full);
                        }
                    }
                    if !batch.is_empty() {
                        let _ = send.send(batch);
                    }
                    Ok(())
                })();
                drop(send);
                // A worker that panicked takes nothing: a smaller release, never a wrong one.
                let taken: Vec<Candidate> = workers
                    .into_iter()
                    .flat_map(|w| w.join().unwrap_or_default())
                    .collect();
                read.map(|()| taken)
            })?
        };
        let n = taken.len();
        self.candidates.extend(taken);
        Ok(n)
    }

    /// Suppresses every cell (resource type and main code) with fewer than
    /// [`MIN_CELL_PATIENTS`] patients, orders the rows by a key derived from the release's
    /// private secret (never by chain order), commits to the released set and makes the
    /// release log, judged once more by the validators' rule.
    ///
    /// # Errors
    /// [`ResearchError::TooFewPatients`] if no cell is large enough; as
    /// [`ReleaseBuilder::new`] for the log.
    pub fn finish<R: Rng + CryptoRng>(
        mut self,
        rng: &mut R,
    ) -> Result<ResearchRelease, ResearchError> {
        let candidates = std::mem::take(&mut self.candidates);
        let mut cells: BTreeMap<Cell, BTreeSet<VerifyKey>> = BTreeMap::new();
        for c in &candidates {
            cells
                .entry(cell_of(&c.resource))
                .or_default()
                .insert(c.patient);
        }
        let large = |c: &Candidate| {
            cells
                .get(&cell_of(&c.resource))
                .is_some_and(|p| p.len() >= MIN_CELL_PATIENTS)
        };
        let mut kept: Vec<([u8; 32], Candidate)> = candidates
            .into_iter()
            .filter(large)
            .map(|c| {
                let salt = derive(&self.secret, b"leaf", c.record.as_byte_array());
                (leaf(&salt, &c.record), c)
            })
            .collect();
        if kept.is_empty() {
            return Err(ResearchError::TooFewPatients);
        }
        // The leaves are keyed hashes of the record ids: sorting by them orders the rows by the
        // release's private key, whatever order the records came in.
        kept.sort_by_key(|a| a.0);
        let leaves: Vec<[u8; 32]> = kept.iter().map(|(l, _)| *l).collect();
        let patients = kept
            .iter()
            .map(|(_, c)| c.patient)
            .collect::<HashSet<_>>()
            .len() as u64;
        let rows = kept.len() as u64;
        let tree = MerkleTree::new(&leaves)
            .unwrap_or_else(|_| unreachable!("record ids are distinct, so are their leaves"));
        let log = ReleaseLog {
            request: self.request.clone(),
            commitment: commit_to(&tree.root(), patients, rows),
            patients: round_at_random(patients, rng),
            rows: round_at_random(rows, rng),
            released_at_ms: self.clock.time_ms(),
        };
        self.judge(&log)?;
        let (records, rows_out): (Vec<RecordId>, Vec<ResearchRow>) = kept
            .into_iter()
            .map(|(_, c)| {
                (
                    c.record,
                    ResearchRow {
                        pseudonym: c.pseudonym,
                        resource: c.resource,
                    },
                )
            })
            .unzip();
        Ok(ResearchRelease {
            rows: rows_out,
            patients,
            clock: self.clock,
            log,
            opening: ReleaseOpening {
                secret: self.secret,
                records,
                tree,
                patients,
                rows,
            },
        })
    }
}

/// What only the releaser keeps of a release: its secret, the released records in row order
/// and the Merkle tree over their leaves. Zeroized on drop; never printed.
struct ReleaseOpening {
    secret: Zeroizing<[u8; 32]>,
    records: Vec<RecordId>,
    tree: MerkleTree,
    patients: u64,
    rows: u64,
}

/// A research release: the rows for the researcher, and the log for the chain.
///
/// Hand the rows to the researcher named in the request (encrypted to that identity) once the
/// log is committed: submit [`ResearchRelease::log_body`] from the releaser's node. Keep the release
/// to answer a patient's question "was my record in it?" with
/// [`ResearchRelease::inclusion`].
pub struct ResearchRelease {
    /// The rows, in an order derived from the release's private secret.
    pub rows: Vec<ResearchRow>,
    /// Distinct patients in the rows.
    pub patients: u64,
    /// The release time (the 90-or-older rule's clock and the consents' evaluation time).
    pub clock: ReleaseClock,
    log: ReleaseLog,
    opening: ReleaseOpening,
}

impl fmt::Debug for ResearchRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResearchRelease")
            .field("rows", &self.rows.len())
            .field("patients", &self.patients)
            .finish_non_exhaustive()
    }
}

impl ResearchRelease {
    /// The release log: what every member will read on chain.
    pub fn log(&self) -> &ReleaseLog {
        &self.log
    }

    /// The `ResearchReleased` body the releaser's node submits.
    pub fn log_body(&self) -> TxBody {
        TxBody::ResearchReleased(Box::new(self.log.clone()))
    }

    /// The proof that `record` is in this release, for its patient (or an auditor): it opens
    /// one leaf of the commitment and nothing else. `None` if the record was not released.
    pub fn inclusion(&self, record: &RecordId) -> Option<ReleaseInclusion> {
        let index = self.opening.records.iter().position(|r| r == record)?;
        let proof = self.opening.tree.proof(index).ok()?;
        Some(ReleaseInclusion {
            salt: derive(&self.opening.secret, b"leaf", record.as_byte_array()),
            proof,
            patients: self.opening.patients,
            rows: self.opening.rows,
        })
    }
}

/// A proof that one record is in a research release: its leaf's salt, the Merkle path and the
/// exact counts the commitment binds. Reveals no other record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseInclusion {
    salt: [u8; 32],
    proof: MerkleProof,
    /// The exact number of patients released.
    pub patients: u64,
    /// The exact number of rows released.
    pub rows: u64,
}

impl ReleaseInclusion {
    /// Whether this proves that `record` is in the release committed to by `commitment`.
    pub fn verify(&self, commitment: &ReleaseCommitment, record: &RecordId) -> bool {
        self.proof
            .root_from(&leaf(&self.salt, record))
            .is_ok_and(|root| commit_to(&root, self.patients, self.rows) == *commitment)
    }
}

/// `salt [32] || proof: MerkleProof || patients u64 || rows u64`.
impl Encode for ReleaseInclusion {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_raw(&self.salt);
        self.proof.encode_to(out);
        out.put_u64(self.patients);
        out.put_u64(self.rows);
    }
}

impl Decode for ReleaseInclusion {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            salt: r.array()?,
            proof: MerkleProof::decode_from(r)?,
            patients: r.u64()?,
            rows: r.u64()?,
        })
    }
}

/// Makes a research release in one call: [`ReleaseBuilder::new`], [`ReleaseBuilder::offer`]
/// for each of `records`, [`ReleaseBuilder::finish`].
///
/// # Errors
/// As the builder's steps.
pub fn release<R: Rng + CryptoRng>(
    releaser: &Identity,
    request: &ResearchRequest,
    records: impl IntoIterator<Item = SealedRecord>,
    ledger: LedgerView<'_>,
    clock: ReleaseClock,
    rng: &mut R,
) -> Result<ResearchRelease, ResearchError> {
    let mut builder = ReleaseBuilder::new(releaser, request, ledger, clock, rng)?;
    for sealed in records {
        builder.offer(&sealed)?;
    }
    builder.finish(rng)
}

#[cfg(test)]
mod tests;
