//! Ledger state: what the committed chain says about records, consents and accesses, and the
//! rules that block validation enforces with it.
//!
//! [`LedgerState`] is built by applying committed blocks in order. [`LedgerState::rules`] gives
//! the [`TxRules`] hook for validating the next block: every transaction is opened with the
//! network key and checked against the state plus the effects of the earlier transactions of
//! the same block:
//!
//! * no transaction is committed twice;
//! * every rule is judged at the **block's** time (checked against the validators' clocks),
//!   never at the time a transaction claims; audit entries record the block time, with the
//!   claimed time beside it, labelled as such;
//! * within a block, records, grants, revocations and erasures apply before key releases and
//!   access logs (`TxKind::phase`): a revocation takes effect from its block;
//! * a record id is added once, with key envelopes for its patient and its contributor; a
//!   consent is signed by its patient for this network and granted once; only its patient
//!   revokes it, once;
//! * a `KeyShared` comes from the node that added the record, and is permitted by a consent of
//!   the record's patient in force ([`crate::consent::evaluate`]) for the grantee (with a
//!   credential verified against genesis, the grantee and the block time), the purpose and the
//!   record's class, under the consent it names — or is an emergency release that the
//!   patient's standing choice allows, which must come with an `AccessLogged` emergency entry
//!   of its own in the same block; research (the whole HL7 v3 research hierarchy) never
//!   receives keys (research data are released de-identified, off chain, and logged once per
//!   release);
//! * an `AccessLogged` comes from the node that added the record, and never has a research
//!   purpose: research is logged once per release;
//! * a `ResearchReleased` log (`crate::research`) presents the researcher's signed request and
//!   a researcher credential checked like a clinician's (a member institution issued it for
//!   this network to that researcher, not expired at the block's time); its release time fits
//!   the block's;
//! * an erased record receives no new keys and no new accesses; only its patient erases it.
//!
//! Each refusal is a [`RuleError`] locally and its coarse [`InvalidReason`] on the wire.
//!
//! The state lives in memory here; `medchain-store` persists it.

use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use crate::block::{check_rules, tx_time_fits, CheckedBlock, TxContext, TxRules};
use crate::consent::{
    evaluate, AccessRequest, Action, Consent, ConsentError, ConsentId, ConsentState, Decision,
    Denial, Purpose, RecordDate, RecordFacts,
};
use crate::credential::CredentialError;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::genesis::Genesis;
use crate::hash::{RecordId, TxId};
use crate::keys::{PublicIdentity, VerifyKey};
use crate::seal::NetworkKey;
use crate::tx::{RecordClass, TxBody, TxError, VerifiedTx};
use crate::vote::InvalidReason;

/// A record as the ledger knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordEntry {
    /// The record id.
    pub record_id: RecordId,
    /// Its patient.
    pub patient: PublicIdentity,
    /// Its network-visible class.
    pub class: RecordClass,
    /// The node that added it.
    pub contributor: VerifyKey,
    /// The `RecordAdded` transaction.
    pub tx_id: TxId,
    /// The block that holds it.
    pub height: u64,
    /// Whether the patient erased it.
    pub erased: bool,
}

/// What an audit entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditKind {
    /// A record's key was released to a reader.
    KeyShared,
    /// A record was accessed.
    Accessed,
    /// A record was erased.
    Erased,
    /// A request for a record's key was refused (by the consent or a ledger rule).
    Denied,
}

/// One line of the audit trail: who did what to which record, when, why, under which consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// What happened.
    pub kind: AuditKind,
    /// The record.
    pub record_id: RecordId,
    /// The record's patient.
    pub patient: VerifyKey,
    /// Who read, received the key, erased, or was refused.
    pub actor: PublicIdentity,
    /// HL7 v3 PurposeOfUse code.
    pub purpose: String,
    /// The consent it happened under.
    pub consent_id: Option<ConsentId>,
    /// Whether it was a break-glass emergency access.
    pub emergency: bool,
    /// When: the time of the block that holds it (milliseconds since the Unix epoch), checked
    /// against the validators' clocks.
    pub at_ms: u64,
    /// The time the transaction claimed (an access log's access time, otherwise the
    /// transaction's timestamp): within the genesis bounds of `at_ms`, not otherwise checked.
    pub claimed_at_ms: u64,
    /// The node that logged it.
    pub node: VerifyKey,
    /// The transaction.
    pub tx_id: TxId,
    /// The block.
    pub height: u64,
    /// For a [`AuditKind::Denied`] entry, the rule that refused (`denied`: the patient's
    /// consents; otherwise a [`RuleError::name`]); `None` for every other kind.
    pub denied_by: Option<String>,
    /// For a [`AuditKind::Denied`] entry, the member whose node relayed the request (the
    /// requester's institution, as far as the network knows); `None` for every other kind.
    pub relayed_by: Option<VerifyKey>,
}

/// Format version of the stored forms of [`RecordEntry`] and [`AuditEntry`]. Version 2: audit
/// entries hold the block time and the claimed time. Version 3: a record's class holds its year
/// and blinded code tags.
pub const STATE_ENTRY_VERSION: u8 = 3;

/// Largest purpose code an audit entry holds (bytes).
const MAX_AUDIT_PURPOSE: usize = 64;

/// Canonical stored form (persistent stores keep it encrypted):
/// `version (3) | record id | patient | class | contributor | tx id | height (u64) | erased`.
impl Encode for RecordEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(STATE_ENTRY_VERSION);
        self.record_id.encode_to(out);
        self.patient.encode_to(out);
        self.class.encode_to(out);
        self.contributor.encode_to(out);
        self.tx_id.encode_to(out);
        out.put_u64(self.height);
        out.put_bool(self.erased);
    }
}

impl Decode for RecordEntry {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("record entry", STATE_ENTRY_VERSION)?;
        Ok(Self {
            record_id: RecordId::decode_from(r)?,
            patient: PublicIdentity::decode_from(r)?,
            class: RecordClass::decode_from(r)?,
            contributor: VerifyKey::decode_from(r)?,
            tx_id: TxId::decode_from(r)?,
            height: r.u64()?,
            erased: r.bool("erased flag")?,
        })
    }
}

impl AuditKind {
    /// The kind's code in the stored form (1 key shared, 2 accessed, 3 erased, 4 denied).
    pub fn code(self) -> u8 {
        match self {
            Self::KeyShared => 1,
            Self::Accessed => 2,
            Self::Erased => 3,
            Self::Denied => 4,
        }
    }

    /// The kind of a code.
    ///
    /// # Errors
    /// [`DecodeError::UnknownTag`] for another code.
    pub fn from_code(code: u8) -> Result<Self, DecodeError> {
        match code {
            1 => Ok(Self::KeyShared),
            2 => Ok(Self::Accessed),
            3 => Ok(Self::Erased),
            4 => Ok(Self::Denied),
            tag => Err(DecodeError::UnknownTag {
                what: "audit kind",
                tag: tag.into(),
            }),
        }
    }
}

/// Canonical stored form (persistent stores keep it encrypted):
/// `version (3) | kind (u8) | [rule (bytes), relaying member?, kind 4 only] | record id | patient | actor
/// | purpose (bytes) | consent id? | emergency | at_ms (u64) | claimed_at_ms (u64) | node | tx id
/// | height (u64)`. Entries of kinds 1 to 3 are encoded as before kind 4 existed.
impl Encode for AuditEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(STATE_ENTRY_VERSION);
        out.put_u8(self.kind.code());
        if self.kind == AuditKind::Denied {
            out.put_bytes(self.denied_by.as_deref().unwrap_or_default().as_bytes());
            out.put_option(self.relayed_by.as_ref());
        }
        self.record_id.encode_to(out);
        self.patient.encode_to(out);
        self.actor.encode_to(out);
        out.put_bytes(self.purpose.as_bytes());
        out.put_option(self.consent_id.as_ref());
        out.put_bool(self.emergency);
        out.put_u64(self.at_ms);
        out.put_u64(self.claimed_at_ms);
        self.node.encode_to(out);
        self.tx_id.encode_to(out);
        out.put_u64(self.height);
    }
}

impl Decode for AuditEntry {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("audit entry", STATE_ENTRY_VERSION)?;
        let kind = AuditKind::from_code(r.u8()?)?;
        let (denied_by, relayed_by) = match kind {
            AuditKind::Denied => {
                let rule = r.string("denial rule", crate::tx::MAX_DENIAL_RULE)?;
                if !crate::tx::is_rule_name(&rule) {
                    return Err(DecodeError::NonCanonical {
                        what: "denial rule",
                    });
                }
                (Some(rule), r.option("relaying member")?)
            }
            _ => (None, None),
        };
        Ok(Self {
            kind,
            denied_by,
            relayed_by,
            record_id: RecordId::decode_from(r)?,
            patient: VerifyKey::decode_from(r)?,
            actor: PublicIdentity::decode_from(r)?,
            purpose: r.string("audit purpose", MAX_AUDIT_PURPOSE)?,
            consent_id: r.option("audit consent id")?,
            emergency: r.bool("emergency flag")?,
            at_ms: r.u64()?,
            claimed_at_ms: r.u64()?,
            node: VerifyKey::decode_from(r)?,
            tx_id: TxId::decode_from(r)?,
            height: r.u64()?,
        })
    }
}

/// Read access to committed ledger state: what the rules for the next block need. Implemented by
/// the in-memory [`LedgerState`] and by persistent stores.
///
/// Reads may fail (a lost database connection); the rules then stop validating and report the
/// failure through [`LedgerRules::take_state_error`], never as an invalid block.
pub trait StateView {
    /// Whether a transaction is committed.
    ///
    /// # Errors
    /// [`StateError`] when the state cannot be read.
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError>;
    /// A record.
    ///
    /// # Errors
    /// [`StateError`] when the state cannot be read.
    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError>;
    /// A consent and its revocation state.
    ///
    /// # Errors
    /// [`StateError`] when the state cannot be read.
    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError>;
    /// Every consent a patient granted, revoked ones included.
    ///
    /// # Errors
    /// [`StateError`] when the state cannot be read.
    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError>;
    /// Height of the last committed block.
    fn height(&self) -> u64;
}

/// The ledger state could not be read (I/O). Not a verdict on the block. The store's own
/// error, when there is one, is kept as the [`source`](std::error::Error::source).
#[derive(Debug, Clone)]
pub struct StateError {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StateError {
    /// A failure described in words (never stored bytes or health data).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            source: None,
        }
    }

    /// A failure caused by the store's `error`, kept as the source; the message is its
    /// `Display`.
    pub fn caused_by(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self {
            message: error.to_string(),
            source: Some(std::sync::Arc::new(error)),
        }
    }

    /// What failed.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ledger state could not be read: {}", self.message)
    }
}

impl std::error::Error for StateError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Two state errors are equal when they say the same (their sources are not compared).
impl PartialEq for StateError {
    fn eq(&self, other: &Self) -> bool {
        self.message == other.message
    }
}

impl Eq for StateError {}

/// The rules for validating the block after `view`'s height, over any state view.
pub fn rules_over<'a>(
    view: &'a dyn StateView,
    genesis: &'a Genesis,
    network: &'a NetworkKey,
) -> LedgerRules<'a> {
    LedgerRules {
        state: view,
        genesis,
        network,
        height: view.height() + 1,
        delta: Delta::default(),
        state_error: None,
        last_error: None,
    }
}

/// The effects of a block's transactions, not yet committed.
#[derive(Debug, Default, Clone)]
struct Delta {
    txs: HashSet<TxId>,
    records: HashMap<RecordId, RecordEntry>,
    erased: HashSet<RecordId>,
    consents: Vec<ConsentState>,
    revoked: HashMap<ConsentId, u64>,
    audit: Vec<AuditEntry>,
    /// Emergency key releases that still need their access log in this block.
    emergency_pending: Vec<(RecordId, VerifyKey)>,
    emergency_logged: Vec<(RecordId, VerifyKey)>,
    /// Records whose payload (or a key release's envelope) is pruned in re-read history.
    pruned: Vec<RecordId>,
}

/// The ledger state after the committed blocks.
#[derive(Debug, Default, Clone)]
pub struct LedgerState {
    height: u64,
    txs: HashSet<TxId>,
    records: HashMap<RecordId, RecordEntry>,
    consents: BTreeMap<ConsentId, ConsentState>,
    by_patient: HashMap<VerifyKey, Vec<ConsentId>>,
    audit: Vec<AuditEntry>,
    pruned: HashSet<RecordId>,
}

/// Applying a block to the state failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum LedgerError {
    /// The block is not the next one.
    #[error("block at height {got} does not follow the state at height {have}")]
    OutOfOrder {
        /// The state's height.
        have: u64,
        /// The block's height.
        got: u64,
    },
    /// A transaction breaks a rule (the block should not have been committed).
    #[error("transaction {index} breaks a ledger rule: {reason}")]
    Rule {
        /// The transaction's index in the block.
        index: usize,
        /// Why.
        reason: InvalidReason,
    },
    /// The state the block applies to could not be read (nothing was judged).
    #[error(transparent)]
    State(#[from] StateError),
}

impl LedgerState {
    /// An empty ledger (only genesis).
    pub fn new() -> Self {
        Self::default()
    }

    /// Height of the last applied block.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Whether a transaction is committed.
    pub fn contains_tx(&self, id: &TxId) -> bool {
        self.txs.contains(id)
    }

    /// A record.
    pub fn record(&self, id: &RecordId) -> Option<&RecordEntry> {
        self.records.get(id)
    }

    /// Every record of a patient.
    pub fn records_of(&self, patient: &VerifyKey) -> Vec<&RecordEntry> {
        let mut out: Vec<&RecordEntry> = self
            .records
            .values()
            .filter(|r| &r.patient.sign == patient)
            .collect();
        out.sort_by_key(|r| (r.height, r.record_id));
        out
    }

    /// A consent and its revocation state.
    pub fn consent(&self, id: &ConsentId) -> Option<&ConsentState> {
        self.consents.get(id)
    }

    /// Every consent a patient granted (revoked ones included, with their revocation height).
    pub fn consents_of(&self, patient: &VerifyKey) -> Vec<ConsentState> {
        self.by_patient
            .get(patient)
            .into_iter()
            .flatten()
            .filter_map(|id| self.consents.get(id).cloned())
            .collect()
    }

    /// The audit trail of one record, oldest first.
    pub fn audit_of_record(&self, id: &RecordId) -> Vec<&AuditEntry> {
        self.audit.iter().filter(|a| &a.record_id == id).collect()
    }

    /// The audit trail of a patient's records, oldest first.
    pub fn audit_of_patient(&self, patient: &VerifyKey) -> Vec<&AuditEntry> {
        self.audit
            .iter()
            .filter(|a| &a.patient == patient)
            .collect()
    }

    /// The whole audit trail, oldest first.
    pub fn audit(&self) -> &[AuditEntry] {
        &self.audit
    }

    /// The rules for validating the next block.
    pub fn rules<'a>(&'a self, genesis: &'a Genesis, network: &'a NetworkKey) -> LedgerRules<'a> {
        rules_over(self, genesis, network)
    }

    /// Commits the effects gathered while validating the block at the next height
    /// ([`LedgerRules::into_effects`]).
    ///
    /// # Errors
    /// [`LedgerError::OutOfOrder`] if the effects are not for the next height.
    pub fn commit(&mut self, effects: BlockEffects) -> Result<(), LedgerError> {
        if effects.height != self.height + 1 {
            return Err(LedgerError::OutOfOrder {
                have: self.height,
                got: effects.height,
            });
        }
        self.commit_delta(effects.height, effects.delta);
        Ok(())
    }

    fn commit_delta(&mut self, height: u64, delta: Delta) {
        self.txs.extend(delta.txs);
        self.records.extend(delta.records);
        for id in delta.erased {
            if let Some(r) = self.records.get_mut(&id) {
                r.erased = true;
            }
        }
        for c in delta.consents {
            self.by_patient
                .entry(c.consent.patient.sign)
                .or_default()
                .push(c.id);
            self.consents.insert(c.id, c);
        }
        for (id, h) in delta.revoked {
            if let Some(c) = self.consents.get_mut(&id) {
                c.revoked_at = Some(h);
            }
        }
        self.audit.extend(delta.audit);
        self.pruned.extend(delta.pruned);
        self.height = height;
    }

    /// Records whose payload or key envelope was found pruned in re-read history although the
    /// record is not erased: a store or a peer removed ciphertext that no erasure explains.
    /// Empty for a sound history.
    pub fn unexplained_pruned(&self) -> Vec<RecordId> {
        let mut out: Vec<RecordId> = self
            .pruned
            .iter()
            .filter(|id| self.records.get(id).is_none_or(|r| !r.erased))
            .copied()
            .collect();
        out.sort();
        out
    }

    /// Applies a committed block (re-checking its rules).
    ///
    /// # Errors
    /// [`LedgerError::OutOfOrder`] or [`LedgerError::Rule`].
    pub fn apply(
        &mut self,
        block: &CheckedBlock,
        genesis: &Genesis,
        network: &NetworkKey,
    ) -> Result<(), LedgerError> {
        let effects = block_effects(self, block, genesis, network)?;
        self.commit_delta(effects.height, effects.delta);
        Ok(())
    }
}

/// The effects of `block` on `view` (the state just before it), its ledger rules checked
/// again: what a node that validated a block without gathering its effects lays over its
/// committed state.
///
/// # Errors
/// [`LedgerError::OutOfOrder`] when `block` is not the one after `view`'s height,
/// [`LedgerError::Rule`], [`LedgerError::State`] when `view` could not be read.
pub fn block_effects(
    view: &dyn StateView,
    block: &CheckedBlock,
    genesis: &Genesis,
    network: &NetworkKey,
) -> Result<BlockEffects, LedgerError> {
    let got = block.header().height;
    let have = view.height();
    if got != have + 1 {
        return Err(LedgerError::OutOfOrder { have, got });
    }
    let mut rules = rules_over(view, genesis, network);
    let txs = block
        .block()
        .transactions
        .iter()
        .enumerate()
        .map(|(index, tx)| {
            tx.clone().verify().map_err(|_| LedgerError::Rule {
                index,
                reason: InvalidReason::BadTransaction,
            })
        });
    let txs = txs.collect::<Result<Vec<_>, _>>()?;
    let checked = check_rules(&mut rules, &TxContext::of(block.header()), &txs);
    if let Some(e) = rules.take_state_error() {
        return Err(LedgerError::State(e));
    }
    checked.map_err(|e| LedgerError::Rule {
        index: e.tx_index.unwrap_or(txs.len()),
        reason: e.reason,
    })?;
    Ok(rules.into_effects())
}

impl StateView for LedgerState {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        Ok(self.txs.contains(id))
    }
    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        Ok(self.records.get(id).cloned())
    }
    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        Ok(self.consents.get(id).cloned())
    }
    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        Ok(LedgerState::consents_of(self, patient))
    }
    fn height(&self) -> u64 {
        self.height
    }
}

/// Why the ledger rules refuse a transaction: one variant per rule, for the node that made
/// it, its embedder and logs ([`RuleError::name`] is a stable name for each rule). On the
/// wire (in votes) every rule travels as its coarse [`InvalidReason`] ([`RuleError::reason`]);
/// the detail stays local. Like every error here, a rule's message is generic: it names no
/// record content, consent provision or code ([`Denial`] is the same for every deny).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum RuleError {
    /// The transaction is committed already, or appears twice in the block.
    #[error("the transaction is committed already or repeated in the block")]
    Duplicate,
    /// The body does not open under the network key, or is malformed.
    #[error("the transaction body does not open: {0}")]
    Unreadable(TxError),
    /// A record with this id exists.
    #[error("a record with this id exists")]
    RecordExists,
    /// A new record lacks a key envelope for its patient or its contributor.
    #[error("a new record must carry key envelopes for its patient and its contributor")]
    MissingEnvelope,
    /// No such record.
    #[error("no such record")]
    UnknownRecord,
    /// The record was erased.
    #[error("the record was erased")]
    Erased,
    /// Only the node that added a record may release its key or log accesses to it.
    #[error("only the node that added the record may release its key or log its accesses")]
    NotTheRecordHolder,
    /// A consent with this id exists.
    #[error("the consent was granted before")]
    ConsentExists,
    /// The consent document does not decode, is unusable, or is not signed by its patient for
    /// this network.
    #[error("the consent is not valid: {0}")]
    BadConsent(ConsentError),
    /// No such consent.
    #[error("no such consent")]
    UnknownConsent,
    /// The signer is not the patient the consent or record belongs to.
    #[error("only the patient may do this")]
    NotThePatient,
    /// The consent named belongs to another patient than the record.
    #[error("the consent named belongs to another patient")]
    ConsentOfAnotherPatient,
    /// The consent is revoked already.
    #[error("the consent is revoked already")]
    AlreadyRevoked,
    /// Research receives de-identified data, never record keys.
    #[error("research is served de-identified, never with record keys")]
    ResearchKeyRelease,
    /// The grantee's credential does not hold.
    #[error("the credential does not hold: {0}")]
    BadCredential(CredentialError),
    /// The patient's consents do not permit the release. Generic for whoever reads it; the
    /// detail ([`Denial::detail`]) is for the patient's own audit view.
    #[error("{0}")]
    Denied(Denial),
    /// The release names another consent than the one that permits it (or names one for an
    /// emergency).
    #[error("the release names another consent than the one that permits it")]
    WrongConsent,
    /// An emergency key release without its emergency access log in the same block (each
    /// release needs a log of its own).
    #[error("an emergency key release needs its own emergency access log in the same block")]
    EmergencyNotLogged,
    /// An access log's emergency flag does not match its purpose and consent.
    #[error("an access log is an emergency exactly when its purpose is ETREAT without a consent")]
    EmergencyFlagMismatch,
    /// An access log's claimed time does not fit its block's.
    #[error("the access time does not fit the block's time")]
    ClaimedTimeOutOfRange,
    /// A research release presents a credential of another role than researcher.
    #[error("a research release needs a researcher credential")]
    NotAResearcher,
    /// Research is logged once per release (`ResearchReleased`), never per record: a
    /// per-record log would tell every member who is in which study.
    #[error("research is logged once per release, never per record")]
    ResearchLoggedPerRecord,
    /// A refusal names as its relaying member a key that is not a member of the network.
    #[error("the member named as relaying the request is not a member of the network")]
    NotAMember,
    /// The transaction's time no longer fits the time of the block it would go into (it was
    /// pending longer than genesis allows): its maker must sign it again. A block rule that the
    /// node applies to its own pending transactions.
    #[error("the transaction's time does not fit the block's time")]
    StaleTimestamp,
    /// The transaction's signature does not verify.
    #[error("the transaction does not verify: {0}")]
    Unverified(TxError),
}

impl RuleError {
    /// The coarse wire reason validators vote with.
    pub fn reason(&self) -> InvalidReason {
        match self {
            Self::Duplicate => InvalidReason::DuplicateTransaction,
            Self::Unreadable(_) | Self::Unverified(_) => InvalidReason::BadTransaction,
            Self::StaleTimestamp => InvalidReason::BadTimestamp,
            _ => InvalidReason::RuleViolation,
        }
    }

    /// The rule's stable name (`snake_case`, e.g. `"not_the_patient"`), for bindings and logs:
    /// the same in every language, and as generic as the message (a consent denial is
    /// `"denied"`, whatever the provision that denied it).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Duplicate => "duplicate",
            Self::Unreadable(_) => "unreadable",
            Self::RecordExists => "record_exists",
            Self::MissingEnvelope => "missing_envelope",
            Self::UnknownRecord => "unknown_record",
            Self::Erased => "erased",
            Self::NotTheRecordHolder => "not_the_record_holder",
            Self::ConsentExists => "consent_exists",
            Self::BadConsent(_) => "bad_consent",
            Self::UnknownConsent => "unknown_consent",
            Self::NotThePatient => "not_the_patient",
            Self::ConsentOfAnotherPatient => "consent_of_another_patient",
            Self::AlreadyRevoked => "already_revoked",
            Self::ResearchKeyRelease => "research_key_release",
            Self::BadCredential(_) => "bad_credential",
            Self::Denied(_) => "denied",
            Self::WrongConsent => "wrong_consent",
            Self::EmergencyNotLogged => "emergency_not_logged",
            Self::EmergencyFlagMismatch => "emergency_flag_mismatch",
            Self::ClaimedTimeOutOfRange => "claimed_time_out_of_range",
            Self::NotAResearcher => "not_a_researcher",
            Self::ResearchLoggedPerRecord => "research_logged_per_record",
            Self::NotAMember => "not_a_member",
            Self::StaleTimestamp => "stale_timestamp",
            Self::Unverified(_) => "unverified",
        }
    }
}

/// The [`TxRules`] of a ledger state for the next block.
pub struct LedgerRules<'a> {
    state: &'a dyn StateView,
    genesis: &'a Genesis,
    network: &'a NetworkKey,
    height: u64,
    delta: Delta,
    state_error: Option<StateError>,
    last_error: Option<RuleError>,
}

impl std::fmt::Debug for LedgerRules<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerRules")
            .field("height", &self.height)
            .finish_non_exhaustive()
    }
}

/// A state view with the effects of validated but not yet committed blocks laid over a
/// committed state, oldest first: what a node validates a proposal against when its parent is
/// certified but not committed.
pub struct Overlay<'a> {
    base: &'a dyn StateView,
    layers: Vec<&'a BlockEffects>,
}

impl<'a> Overlay<'a> {
    /// `base` with `layers` (oldest first) on top.
    pub fn new(base: &'a dyn StateView, layers: Vec<&'a BlockEffects>) -> Self {
        Self { base, layers }
    }
}

impl StateView for Overlay<'_> {
    fn contains_tx(&self, id: &TxId) -> Result<bool, StateError> {
        if self.layers.iter().any(|l| l.delta.txs.contains(id)) {
            return Ok(true);
        }
        self.base.contains_tx(id)
    }

    fn record(&self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        let mut found = self.base.record(id)?;
        for l in &self.layers {
            if let Some(r) = l.delta.records.get(id) {
                found = Some(r.clone());
            }
            if l.delta.erased.contains(id) {
                if let Some(r) = found.as_mut() {
                    r.erased = true;
                }
            }
        }
        Ok(found)
    }

    fn consent(&self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        let mut found = self.base.consent(id)?;
        for l in &self.layers {
            if let Some(c) = l.delta.consents.iter().find(|c| &c.id == id) {
                found = Some(c.clone());
            }
            if let (Some(c), Some(h)) = (found.as_mut(), l.delta.revoked.get(id)) {
                c.revoked_at = Some(*h);
            }
        }
        Ok(found)
    }

    fn consents_of(&self, patient: &VerifyKey) -> Result<Vec<ConsentState>, StateError> {
        let mut all = self.base.consents_of(patient)?;
        for l in &self.layers {
            all.extend(
                l.delta
                    .consents
                    .iter()
                    .filter(|c| &c.consent.patient.sign == patient)
                    .cloned(),
            );
            for c in &mut all {
                if let Some(h) = l.delta.revoked.get(&c.id) {
                    c.revoked_at = Some(*h);
                }
            }
        }
        Ok(all)
    }

    fn height(&self) -> u64 {
        self.layers.last().map_or(self.base.height(), |l| l.height)
    }
}

/// The effects of a validated block on the ledger state, ready to commit.
#[derive(Debug, Clone)]
pub struct BlockEffects {
    height: u64,
    delta: Delta,
}

impl BlockEffects {
    /// The height of the block.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// The audit entries the block adds.
    pub fn audit(&self) -> &[AuditEntry] {
        &self.delta.audit
    }

    /// Records the block erases (stores that honour erasure prune their payloads).
    pub fn erased(&self) -> impl Iterator<Item = &RecordId> {
        self.delta.erased.iter()
    }

    /// Transactions the block commits.
    pub fn tx_ids(&self) -> impl Iterator<Item = &TxId> {
        self.delta.txs.iter()
    }

    /// Records the block adds.
    pub fn records(&self) -> impl Iterator<Item = &RecordEntry> {
        self.delta.records.values()
    }

    /// Consents the block grants.
    pub fn consents(&self) -> &[ConsentState] {
        &self.delta.consents
    }

    /// Consents the block revokes (all at this block's height).
    pub fn revoked(&self) -> impl Iterator<Item = &ConsentId> {
        self.delta.revoked.keys()
    }
}

/// The outcome of one rule: refused with a [`RuleError`], or the state could not be read.
enum Refusal {
    Rule(RuleError),
    State(StateError),
}

impl From<RuleError> for Refusal {
    fn from(e: RuleError) -> Self {
        Self::Rule(e)
    }
}

impl From<StateError> for Refusal {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

/// Who made a transaction the rules judge, and when.
struct Maker<'t> {
    contributor: &'t VerifyKey,
    tx_id: TxId,
    claimed_ms: u64,
}

impl LedgerRules<'_> {
    /// The effects gathered so far (after the last transaction and [`TxRules::finish`]).
    pub fn into_effects(self) -> BlockEffects {
        BlockEffects {
            height: self.height,
            delta: self.delta,
        }
    }

    /// A storage failure met while validating (the block was not judged; retry later).
    pub fn take_state_error(&mut self) -> Option<StateError> {
        self.state_error.take()
    }

    /// The rule the last refused transaction broke (the block's vote carries only its coarse
    /// [`InvalidReason`]).
    pub fn take_rule_error(&mut self) -> Option<RuleError> {
        self.last_error.take()
    }

    /// Judges `body`, not yet in a transaction, as if `contributor` submitted it in a block at
    /// `ctx`, against the state and the effects gathered so far: exactly the rule validators
    /// apply. A key holder calls it before it wraps any key (`access::release_key`).
    ///
    /// # Errors
    /// The [`RuleError`]; [`PreviewError::State`] if the state could not be read.
    pub fn preview(
        &mut self,
        ctx: &TxContext,
        contributor: &VerifyKey,
        body: &TxBody,
    ) -> Result<(), PreviewError> {
        let maker = Maker {
            contributor,
            tx_id: TxId::default(),
            claimed_ms: ctx.block_time_ms,
        };
        match self.check_body(ctx, &maker, body.clone()) {
            Ok(()) => Ok(()),
            Err(Refusal::Rule(e)) => Err(PreviewError::Rule(e)),
            Err(Refusal::State(e)) => Err(PreviewError::State(e)),
        }
    }

    /// The end-of-block rules ([`TxRules::finish`]) for previewed bodies.
    ///
    /// # Errors
    /// [`RuleError::EmergencyNotLogged`].
    pub fn preview_finish(&mut self) -> Result<(), RuleError> {
        self.finish_rules()
    }

    fn record(&mut self, id: &RecordId) -> Result<Option<RecordEntry>, StateError> {
        let found = match self.delta.records.get(id) {
            Some(r) => Some(r.clone()),
            None => self.state.record(id)?,
        };
        Ok(found.map(|mut r| {
            if self.delta.erased.contains(id) {
                r.erased = true;
            }
            r
        }))
    }

    fn consent(&mut self, id: &ConsentId) -> Result<Option<ConsentState>, StateError> {
        let found = match self.delta.consents.iter().find(|c| &c.id == id) {
            Some(c) => Some(c.clone()),
            None => self.state.consent(id)?,
        };
        Ok(found.map(|mut c| {
            if let Some(h) = self.delta.revoked.get(id) {
                c.revoked_at = Some(*h);
            }
            c
        }))
    }

    /// The consents of `patient`: only those whose document names that patient (a store that
    /// returned another patient's consent under this key is not believed).
    fn consents_of(&mut self, patient: &PublicIdentity) -> Result<Vec<ConsentState>, StateError> {
        let mut all = self.state.consents_of(&patient.sign)?;
        all.extend(
            self.delta
                .consents
                .iter()
                .filter(|c| c.consent.patient.sign == patient.sign)
                .cloned(),
        );
        all.retain(|c| &c.consent.patient == patient && c.consent.id() == c.id);
        for c in &mut all {
            if let Some(h) = self.delta.revoked.get(&c.id) {
                c.revoked_at = Some(*h);
            }
        }
        Ok(all)
    }

    /// A record that exists, is not erased, and was added by `contributor`.
    fn held_record(
        &mut self,
        id: &RecordId,
        contributor: &VerifyKey,
    ) -> Result<RecordEntry, Refusal> {
        let record = self.record(id)?.ok_or(RuleError::UnknownRecord)?;
        if record.erased {
            return Err(RuleError::Erased.into());
        }
        if &record.contributor != contributor {
            return Err(RuleError::NotTheRecordHolder.into());
        }
        Ok(record)
    }

    fn check_body(&mut self, ctx: &TxContext, m: &Maker<'_>, body: TxBody) -> Result<(), Refusal> {
        let height = self.height;
        let at_ms = ctx.block_time_ms;
        match body {
            TxBody::RecordAdded {
                record_id,
                patient,
                class,
                sealed,
                ..
            } => {
                if self.record(&record_id)?.is_some() {
                    return Err(RuleError::RecordExists.into());
                }
                match &sealed {
                    // A new record carries key envelopes for its patient and its contributor.
                    Some(sealed) => {
                        let contributor = self
                            .genesis
                            .member(m.contributor)
                            .ok_or(RuleError::MissingEnvelope)?;
                        let has = |k: &crate::keys::AgreementKey| {
                            sealed.envelopes().iter().any(|e| &e.recipient == k)
                        };
                        if !has(&patient.agree) || !has(&contributor.identity.agree) {
                            return Err(RuleError::MissingEnvelope.into());
                        }
                    }
                    // Only history re-read from a store reaches here (`validate_history`):
                    // a later erasure must explain it.
                    None => self.delta.pruned.push(record_id),
                }
                self.delta.records.insert(
                    record_id,
                    RecordEntry {
                        record_id,
                        patient,
                        class,
                        contributor: *m.contributor,
                        tx_id: m.tx_id,
                        height,
                        erased: false,
                    },
                );
            }
            TxBody::ConsentGranted { document, patient } => {
                let consent = Consent::from_grant(&self.genesis.chain_id(), &document, &patient)
                    .map_err(RuleError::BadConsent)?;
                let state = ConsentState::new(consent);
                if self.consent(&state.id)?.is_some() {
                    return Err(RuleError::ConsentExists.into());
                }
                self.delta.consents.push(state);
            }
            TxBody::ConsentRevoked {
                consent_id,
                patient,
            } => {
                let id = ConsentId::from_byte_array(consent_id);
                let c = self.consent(&id)?.ok_or(RuleError::UnknownConsent)?;
                if c.consent.patient != patient.patient {
                    return Err(RuleError::NotThePatient.into());
                }
                if c.revoked_at.is_some() {
                    return Err(RuleError::AlreadyRevoked.into());
                }
                self.delta.revoked.insert(id, height);
            }
            TxBody::KeyShared {
                record_id,
                grantee,
                purpose,
                consent_id,
                credential,
                envelope,
            } => {
                let record = self.held_record(&record_id, m.contributor)?;
                let purpose = Purpose::from_code(&purpose, None);
                if matches!(purpose, Purpose::Research { .. }) {
                    return Err(RuleError::ResearchKeyRelease.into());
                }
                let roles = match &credential {
                    Some(c) => {
                        c.verify(self.genesis, &grantee.sign, at_ms)
                            .map_err(RuleError::BadCredential)?;
                        vec![c.role]
                    }
                    None => Vec::new(),
                };
                let emergency = purpose == Purpose::EmergencyTreat && consent_id.is_none();
                let request = AccessRequest {
                    requester: grantee.sign,
                    roles,
                    action: Action::Read,
                    purpose: purpose.clone(),
                    record: class_facts(&record.class),
                    emergency,
                };
                let consents = self.consents_of(&record.patient)?;
                let under = match (evaluate(&request, &consents, at_ms, height), consent_id) {
                    (Decision::Permit(by), Some(named)) if by.consent.to_byte_array() == named => {
                        Some(by.consent)
                    }
                    (Decision::EmergencyPermit, None) => {
                        self.delta.emergency_pending.push((record_id, grantee.sign));
                        None
                    }
                    (Decision::Deny(reason), _) => {
                        return Err(RuleError::Denied(Denial::new(reason)).into())
                    }
                    _ => return Err(RuleError::WrongConsent.into()),
                };
                if envelope.is_none() {
                    self.delta.pruned.push(record_id);
                }
                self.delta.audit.push(AuditEntry {
                    kind: AuditKind::KeyShared,
                    record_id,
                    patient: record.patient.sign,
                    actor: grantee,
                    purpose: purpose.code().to_owned(),
                    consent_id: under,
                    emergency,
                    at_ms,
                    claimed_at_ms: m.claimed_ms,
                    node: *m.contributor,
                    tx_id: m.tx_id,
                    height,
                    denied_by: None,
                    relayed_by: None,
                });
            }
            TxBody::AccessLogged {
                record_id,
                accessor,
                purpose,
                consent_id,
                emergency,
                accessed_at_ms,
            } => {
                let record = self.held_record(&record_id, m.contributor)?;
                if matches!(Purpose::from_code(&purpose, None), Purpose::Research { .. }) {
                    return Err(RuleError::ResearchLoggedPerRecord.into());
                }
                if emergency != (purpose == "ETREAT" && consent_id.is_none()) {
                    return Err(RuleError::EmergencyFlagMismatch.into());
                }
                if !tx_time_fits(self.genesis, at_ms, accessed_at_ms) {
                    return Err(RuleError::ClaimedTimeOutOfRange.into());
                }
                let consent_id = consent_id.map(ConsentId::from_byte_array);
                if let Some(id) = &consent_id {
                    let c = self.consent(id)?.ok_or(RuleError::UnknownConsent)?;
                    if c.consent.patient != record.patient {
                        return Err(RuleError::ConsentOfAnotherPatient.into());
                    }
                }
                if emergency {
                    self.delta.emergency_logged.push((record_id, accessor.sign));
                }
                self.delta.audit.push(AuditEntry {
                    kind: AuditKind::Accessed,
                    record_id,
                    patient: record.patient.sign,
                    actor: accessor,
                    purpose: Purpose::from_code(&purpose, None).code().to_owned(),
                    consent_id,
                    emergency,
                    at_ms,
                    claimed_at_ms: accessed_at_ms,
                    node: *m.contributor,
                    tx_id: m.tx_id,
                    height,
                    denied_by: None,
                    relayed_by: None,
                });
            }
            TxBody::AccessDenied {
                record_id,
                requester,
                purpose,
                rule,
                requested_at_ms,
                relayed_by,
            } => {
                // Logged by the member that holds the record (the one the request went to), for
                // a record that still exists; research never asks for keys (`TxBody::check`);
                // relayed by a member of this network.
                let record = self.held_record(&record_id, m.contributor)?;
                if !tx_time_fits(self.genesis, at_ms, requested_at_ms) {
                    return Err(RuleError::ClaimedTimeOutOfRange.into());
                }
                if self.genesis.member(&relayed_by).is_none() {
                    return Err(RuleError::NotAMember.into());
                }
                self.delta.audit.push(AuditEntry {
                    kind: AuditKind::Denied,
                    record_id,
                    patient: record.patient.sign,
                    actor: requester,
                    emergency: purpose == "ETREAT",
                    purpose: Purpose::from_code(&purpose, None).code().to_owned(),
                    consent_id: None,
                    at_ms,
                    claimed_at_ms: requested_at_ms,
                    node: *m.contributor,
                    tx_id: m.tx_id,
                    height,
                    denied_by: Some(rule),
                    relayed_by: Some(relayed_by),
                });
            }
            TxBody::ResearchReleased(log) => {
                // The researcher is credentialed like a clinician: a member institution issued
                // the credential, for this network, to the researcher who signed the request,
                // and it has not expired at the block's time.
                let request = &log.request;
                request
                    .credential
                    .verify(self.genesis, &request.researcher.sign, at_ms)
                    .map_err(RuleError::BadCredential)?;
                if !request.credential.role.is_researcher() {
                    return Err(RuleError::NotAResearcher.into());
                }
                if !tx_time_fits(self.genesis, at_ms, log.released_at_ms) {
                    return Err(RuleError::ClaimedTimeOutOfRange.into());
                }
            }
            TxBody::RecordErased { record_id, patient } => {
                let record = self.record(&record_id)?.ok_or(RuleError::UnknownRecord)?;
                if record.erased {
                    return Err(RuleError::Erased.into());
                }
                if record.patient != patient.patient {
                    return Err(RuleError::NotThePatient.into());
                }
                self.delta.erased.insert(record_id);
                self.delta.audit.push(AuditEntry {
                    kind: AuditKind::Erased,
                    record_id,
                    patient: record.patient.sign,
                    actor: patient.patient,
                    purpose: "PATRQT".into(),
                    consent_id: None,
                    emergency: false,
                    at_ms,
                    claimed_at_ms: m.claimed_ms,
                    node: *m.contributor,
                    tx_id: m.tx_id,
                    height,
                    denied_by: None,
                    relayed_by: None,
                });
            }
        }
        Ok(())
    }

    /// Every emergency key release of the block needs an emergency access log of its own.
    fn finish_rules(&mut self) -> Result<(), RuleError> {
        let mut logged = self.delta.emergency_logged.clone();
        for pending in &self.delta.emergency_pending {
            match logged.iter().position(|l| l == pending) {
                Some(i) => {
                    logged.swap_remove(i);
                }
                None => return Err(RuleError::EmergencyNotLogged),
            }
        }
        Ok(())
    }

    fn refuse(&mut self, refusal: Refusal) -> InvalidReason {
        match refusal {
            Refusal::Rule(e) => {
                let reason = e.reason();
                self.last_error = Some(e);
                reason
            }
            Refusal::State(e) => {
                self.state_error = Some(e);
                InvalidReason::RuleViolation
            }
        }
    }
}

/// A previewed body is refused, or the state could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PreviewError {
    /// A rule refuses it.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// The ledger state could not be read.
    #[error(transparent)]
    State(#[from] StateError),
}

/// The facts every member knows of a record from its class: its type, its blinded codes and the
/// year of its date — not its codes, not its exact date. The key holder adds the exact date
/// (`access::release_key`).
pub fn class_facts(class: &RecordClass) -> RecordFacts {
    let date = if class.year == 0 {
        if RecordClass::withholds_date(&class.resource_type) {
            RecordDate::Unknown
        } else {
            RecordDate::Undated
        }
    } else {
        let first = crate::fhir::parse_datetime_ms(&format!("{:04}", class.year));
        let next = crate::fhir::parse_datetime_ms(&format!("{:04}", class.year + 1));
        match (first, next) {
            (Some(first_ms), Some(next_ms)) => RecordDate::Within {
                first_ms,
                last_ms: next_ms - 1,
            },
            // A year before 1970 or after 9998: the evaluator cannot bound it.
            _ => RecordDate::Unknown,
        }
    };
    RecordFacts {
        resource_type: class.resource_type.clone(),
        codes: None,
        code_tags: Some(class.code_tags.clone()),
        date,
    }
}

impl TxRules for LedgerRules<'_> {
    fn check(&mut self, ctx: &TxContext, tx: &VerifiedTx) -> Result<(), InvalidReason> {
        let id = tx.id();
        let committed = match self.state.contains_tx(&id) {
            Ok(c) => c,
            Err(e) => return Err(self.refuse(Refusal::State(e))),
        };
        if committed || !self.delta.txs.insert(id) {
            return Err(self.refuse(RuleError::Duplicate.into()));
        }
        let body = match tx.open_body(self.network) {
            Ok(b) => b,
            Err(e) => return Err(self.refuse(RuleError::Unreadable(e).into())),
        };
        let maker = Maker {
            contributor: tx.contributor(),
            tx_id: id,
            claimed_ms: tx.timestamp_ms(),
        };
        self.check_body(ctx, &maker, body)
            .map_err(|r| self.refuse(r))
    }

    fn finish(&mut self) -> Result<(), InvalidReason> {
        self.finish_rules()
            .map_err(|e| self.refuse(Refusal::Rule(e)))
    }
}

#[cfg(test)]
mod tests;
