//! Ledger state: what the committed chain says about records, consents and accesses, and the
//! rules that block validation enforces with it.
//!
//! [`LedgerState`] is built by applying committed blocks in order. [`LedgerState::rules`] gives
//! the [`TxRules`] hook for validating the next block: every transaction is opened with the
//! network key and checked against the state plus the effects of the earlier transactions of
//! the same block:
//!
//! * no transaction is committed twice;
//! * a record id is added once; a consent is signed by its patient and granted once; only its
//!   patient revokes it, once;
//! * a `KeyShared` is permitted by a consent in force ([`crate::consent::evaluate`]) for the
//!   grantee, the purpose and the record's class, under the consent it names — or is an
//!   emergency release that the patient's standing choice allows, which must come with an
//!   `AccessLogged` emergency entry in the same block; research never receives keys (research
//!   data are released de-identified, off chain, and logged);
//! * an erased record receives no new keys and no new accesses; only its patient erases it.
//!
//! The state lives in memory here; `medchain-store` persists it.

use std::collections::{BTreeMap, HashMap, HashSet};

use thiserror::Error;

use crate::block::{CheckedBlock, TxRules};
use crate::consent::{
    evaluate, AccessRequest, Action, Consent, ConsentId, ConsentState, Decision, Purpose,
    RecordFacts,
};
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::genesis::Genesis;
use crate::hash::{RecordId, TxId};
use crate::keys::{PublicIdentity, VerifyKey};
use crate::seal::NetworkKey;
use crate::tx::{RecordClass, TxBody, VerifiedTx};
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
    /// Who read, received the key, or erased.
    pub actor: PublicIdentity,
    /// HL7 v3 PurposeOfUse code.
    pub purpose: String,
    /// The consent it happened under.
    pub consent_id: Option<ConsentId>,
    /// Whether it was a break-glass emergency access.
    pub emergency: bool,
    /// When (milliseconds since the Unix epoch).
    pub at_ms: u64,
    /// The node that logged it.
    pub node: VerifyKey,
    /// The transaction.
    pub tx_id: TxId,
    /// The block.
    pub height: u64,
}

/// Format version of the stored forms of [`RecordEntry`] and [`AuditEntry`].
pub const STATE_ENTRY_VERSION: u8 = 1;

/// Largest purpose code an audit entry holds (bytes).
const MAX_AUDIT_PURPOSE: usize = 64;

/// Canonical stored form (persistent stores keep it encrypted):
/// `version (1) | record id | patient | class | contributor | tx id | height (u64) | erased`.
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
    /// The kind's code in the stored form (1 key shared, 2 accessed, 3 erased).
    pub fn code(self) -> u8 {
        match self {
            Self::KeyShared => 1,
            Self::Accessed => 2,
            Self::Erased => 3,
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
            tag => Err(DecodeError::UnknownTag {
                what: "audit kind",
                tag: tag.into(),
            }),
        }
    }
}

/// Canonical stored form (persistent stores keep it encrypted):
/// `version (1) | kind (u8) | record id | patient | actor | purpose (bytes) | consent id?
/// | emergency | at_ms (u64) | node | tx id | height (u64)`.
impl Encode for AuditEntry {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(STATE_ENTRY_VERSION);
        out.put_u8(self.kind.code());
        self.record_id.encode_to(out);
        self.patient.encode_to(out);
        self.actor.encode_to(out);
        out.put_bytes(self.purpose.as_bytes());
        out.put_option(self.consent_id.as_ref());
        out.put_bool(self.emergency);
        out.put_u64(self.at_ms);
        self.node.encode_to(out);
        self.tx_id.encode_to(out);
        out.put_u64(self.height);
    }
}

impl Decode for AuditEntry {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("audit entry", STATE_ENTRY_VERSION)?;
        Ok(Self {
            kind: AuditKind::from_code(r.u8()?)?,
            record_id: RecordId::decode_from(r)?,
            patient: VerifyKey::decode_from(r)?,
            actor: PublicIdentity::decode_from(r)?,
            purpose: r.string("audit purpose", MAX_AUDIT_PURPOSE)?,
            consent_id: r.option("audit consent id")?,
            emergency: r.bool("emergency flag")?,
            at_ms: r.u64()?,
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

/// The ledger state could not be read (I/O). Not a verdict on the block.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("ledger state could not be read: {0}")]
pub struct StateError(pub String);

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
        self.height = height;
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
        let got = block.header().height;
        if got != self.height + 1 {
            return Err(LedgerError::OutOfOrder {
                have: self.height,
                got,
            });
        }
        let mut rules = self.rules(genesis, network);
        for (index, tx) in block.block().transactions.iter().enumerate() {
            let verified = tx.clone().verify().map_err(|_| LedgerError::Rule {
                index,
                reason: InvalidReason::BadTransaction,
            })?;
            rules
                .check(&verified)
                .map_err(|reason| LedgerError::Rule { index, reason })?;
        }
        rules.finish().map_err(|reason| LedgerError::Rule {
            index: block.block().transactions.len(),
            reason,
        })?;
        let delta = rules.delta;
        self.commit_delta(got, delta);
        Ok(())
    }
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

/// The [`TxRules`] of a ledger state for the next block.
pub struct LedgerRules<'a> {
    state: &'a dyn StateView,
    genesis: &'a Genesis,
    network: &'a NetworkKey,
    height: u64,
    delta: Delta,
    state_error: Option<StateError>,
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

    fn io<T>(&mut self, r: Result<T, StateError>) -> Result<T, InvalidReason> {
        r.map_err(|e| {
            self.state_error = Some(e);
            InvalidReason::RuleViolation
        })
    }

    fn record(&mut self, id: &RecordId) -> Result<Option<RecordEntry>, InvalidReason> {
        let found = match self.delta.records.get(id) {
            Some(r) => Some(r.clone()),
            None => {
                let r = self.state.record(id);
                self.io(r)?
            }
        };
        Ok(found.map(|mut r| {
            if self.delta.erased.contains(id) {
                r.erased = true;
            }
            r
        }))
    }

    fn consent(&mut self, id: &ConsentId) -> Result<Option<ConsentState>, InvalidReason> {
        let found = match self.delta.consents.iter().find(|c| &c.id == id) {
            Some(c) => Some(c.clone()),
            None => {
                let c = self.state.consent(id);
                self.io(c)?
            }
        };
        Ok(found.map(|mut c| {
            if let Some(h) = self.delta.revoked.get(id) {
                c.revoked_at = Some(*h);
            }
            c
        }))
    }

    fn consents_of(&mut self, patient: &VerifyKey) -> Result<Vec<ConsentState>, InvalidReason> {
        let all = self.state.consents_of(patient);
        let mut all = self.io(all)?;
        all.extend(
            self.delta
                .consents
                .iter()
                .filter(|c| &c.consent.patient.sign == patient)
                .cloned(),
        );
        for c in &mut all {
            if let Some(h) = self.delta.revoked.get(&c.id) {
                c.revoked_at = Some(*h);
            }
        }
        Ok(all)
    }

    fn check_body(&mut self, tx: &VerifiedTx, body: TxBody) -> Result<(), InvalidReason> {
        use InvalidReason::RuleViolation as No;
        let height = self.height;
        match body {
            TxBody::RecordAdded {
                record_id,
                patient,
                class,
                sealed,
                ..
            } => {
                if self.record(&record_id)?.is_some() {
                    return Err(No);
                }
                // A new record carries key envelopes for its patient and its contributor (a
                // pruned one, replayed after an erasure, no longer has them).
                if let Some(sealed) = &sealed {
                    let contributor = self.genesis.member(tx.contributor()).ok_or(No)?;
                    let has = |k: &crate::keys::AgreementKey| {
                        sealed.envelopes().iter().any(|e| &e.recipient == k)
                    };
                    if !has(&patient.agree) || !has(&contributor.identity.agree) {
                        return Err(No);
                    }
                }
                self.delta.records.insert(
                    record_id,
                    RecordEntry {
                        record_id,
                        patient,
                        class,
                        contributor: *tx.contributor(),
                        tx_id: tx.id(),
                        height,
                        erased: false,
                    },
                );
            }
            TxBody::ConsentGranted { document, patient } => {
                let consent = Consent::from_grant(&document, &patient).map_err(|_| No)?;
                let state = ConsentState::new(consent);
                if self.consent(&state.id)?.is_some() {
                    return Err(No);
                }
                self.delta.consents.push(state);
            }
            TxBody::ConsentRevoked {
                consent_id,
                patient,
            } => {
                let id = ConsentId::from_byte_array(consent_id);
                let c = self.consent(&id)?.ok_or(No)?;
                if c.consent.patient != patient.patient || c.revoked_at.is_some() {
                    return Err(No);
                }
                self.delta.revoked.insert(id, height);
            }
            TxBody::KeyShared {
                record_id,
                grantee,
                purpose,
                consent_id,
                credential,
                ..
            } => {
                let record = self.record(&record_id)?.ok_or(No)?;
                if record.erased {
                    return Err(No);
                }
                let purpose = Purpose::from_code(&purpose, None);
                if matches!(purpose, Purpose::Research { .. }) {
                    // Research receives de-identified data, never a record key.
                    return Err(No);
                }
                let roles = match &credential {
                    Some(c) => {
                        c.verify(self.genesis, &grantee.sign, tx.timestamp_ms())
                            .map_err(|_| No)?;
                        vec![c.role]
                    }
                    None => Vec::new(),
                };
                let emergency = consent_id.is_none();
                let request = AccessRequest {
                    requester: grantee.sign,
                    roles,
                    action: Action::Read,
                    purpose: purpose.clone(),
                    record: facts(&record.class),
                    emergency,
                };
                let consents = self.consents_of(&record.patient.sign)?;
                let decision = evaluate(&request, &consents, tx.timestamp_ms(), height);
                let under = match (decision, consent_id) {
                    (Decision::Permit(by), Some(named)) if by.consent.to_byte_array() == named => {
                        Some(by.consent)
                    }
                    (Decision::EmergencyPermit, None) => {
                        self.delta.emergency_pending.push((record_id, grantee.sign));
                        None
                    }
                    _ => return Err(No),
                };
                self.delta.audit.push(AuditEntry {
                    kind: AuditKind::KeyShared,
                    record_id,
                    patient: record.patient.sign,
                    actor: grantee,
                    purpose: purpose.code().to_owned(),
                    consent_id: under,
                    emergency,
                    at_ms: tx.timestamp_ms(),
                    node: *tx.contributor(),
                    tx_id: tx.id(),
                    height,
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
                let record = self.record(&record_id)?.ok_or(No)?;
                if record.erased {
                    return Err(No);
                }
                if emergency != (purpose == "ETREAT" && consent_id.is_none()) {
                    return Err(No);
                }
                let consent_id = consent_id.map(ConsentId::from_byte_array);
                if let Some(id) = &consent_id {
                    let c = self.consent(id)?.ok_or(No)?;
                    if c.consent.patient != record.patient {
                        return Err(No);
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
                    purpose,
                    consent_id,
                    emergency,
                    at_ms: accessed_at_ms,
                    node: *tx.contributor(),
                    tx_id: tx.id(),
                    height,
                });
            }
            TxBody::RecordErased { record_id, patient } => {
                let record = self.record(&record_id)?.ok_or(No)?;
                if record.erased || record.patient != patient.patient {
                    return Err(No);
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
                    at_ms: tx.timestamp_ms(),
                    node: *tx.contributor(),
                    tx_id: tx.id(),
                    height,
                });
            }
        }
        Ok(())
    }
}

/// The facts a validator knows of a record: its class, not its codes.
fn facts(class: &RecordClass) -> RecordFacts {
    let date_ms = (class.month != 0).then(|| {
        let y = class.month / 100;
        let m = class.month % 100;
        crate::fhir::parse_datetime_ms(&format!("{y:04}-{m:02}")).unwrap_or(0)
    });
    RecordFacts {
        resource_type: class.resource_type.clone(),
        codes: None,
        date_ms,
    }
}

impl TxRules for LedgerRules<'_> {
    fn check(&mut self, tx: &VerifiedTx) -> Result<(), InvalidReason> {
        let id = tx.id();
        let committed = self.state.contains_tx(&id);
        if self.io(committed)? || !self.delta.txs.insert(id) {
            return Err(InvalidReason::DuplicateTransaction);
        }
        let body = tx
            .open_body(self.network)
            .map_err(|_| InvalidReason::BadTransaction)?;
        self.check_body(tx, body)
    }

    fn finish(&mut self) -> Result<(), InvalidReason> {
        let logged = &self.delta.emergency_logged;
        if self
            .delta
            .emergency_pending
            .iter()
            .all(|p| logged.contains(p))
        {
            Ok(())
        } else {
            Err(InvalidReason::RuleViolation)
        }
    }
}

#[cfg(test)]
mod tests;
