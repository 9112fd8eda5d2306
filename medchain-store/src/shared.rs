//! What a reader received: the records whose key was released to it, and opening one with the
//! released key ([`Ledger::records_shared_with`], [`Ledger::open_for`]).
//!
//! A release is a committed `KeyShared` transaction: the record's data key wrapped for the
//! grantee, under a consent the validators checked. Revoking that consent later stops further
//! releases; it does not undo this one (the key was delivered, and the reader may hold the
//! record already), so a record released before a revocation stays listed, with the height of
//! the revocation, and still opens. The patient's remedy for what was released is erasure: an
//! erased record is neither listed nor opened (its payload and the released envelopes are
//! pruned).

use std::collections::HashMap;

use medchain_core::consent::ConsentId;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::keys::{Identity, PublicIdentity};
use medchain_core::ledger::{AuditKind, RecordEntry, StateView};
use medchain_core::seal::{KeyEnvelope, OpenedRecord, SealedRecord};
use medchain_core::tx::{TxBody, TxKind};

use crate::error::{Corruption, LedgerError, OpenError, StoreError};
use crate::ledger::{Ledger, PersistentStore};

/// A record whose key was released to a reader ([`Ledger::records_shared_with`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedRecord {
    /// The record (not erased).
    pub record: RecordEntry,
    /// The release: the committed `KeyShared` transaction (the latest, if the key was
    /// released to this reader more than once).
    pub key_shared: TxId,
    /// The block that holds the release.
    pub released_at_height: u64,
    /// The HL7 v3 PurposeOfUse code the key was released for (`TREAT`, `ETREAT`, ...).
    pub purpose: String,
    /// The consent the release was made under (`None` for an emergency access).
    pub consent_id: Option<ConsentId>,
    /// The height at which the patient revoked that consent, if they did (after the release:
    /// validators refuse a release under a revoked consent). The release stands: revocation
    /// stops further releases, it does not recall a delivered key.
    pub consent_revoked_at: Option<u64>,
}

/// The parts of a committed `KeyShared` to `reader`.
struct Release {
    record_id: RecordId,
    purpose: String,
    consent_id: Option<[u8; 32]>,
    envelope: Option<KeyEnvelope>,
}

impl<S: PersistentStore> Ledger<S> {
    /// The records whose key was released to `reader` by a committed `KeyShared` and that are
    /// not erased, in the order of their (latest) release. Reads every committed block once
    /// (the release transactions are sealed under the network key, so no derived table names
    /// their grantee).
    ///
    /// # Errors
    /// Store errors; [`LedgerError::Transaction`] for a stored transaction that does not verify
    /// or open; [`LedgerError::State`].
    pub fn records_shared_with(
        &self,
        reader: &PublicIdentity,
    ) -> Result<Vec<SharedRecord>, LedgerError> {
        let network = self.view().network;
        let mut latest: HashMap<RecordId, (u64, TxId, Release)> = HashMap::new();
        for block in self.blocks_from(1) {
            let block = block?;
            let height = block.header.height;
            for tx in block.transactions {
                if tx.kind() != TxKind::KeyShared {
                    continue;
                }
                let id = tx.id();
                if let Some(release) = release_to(tx.verify()?.open_body(network)?, reader) {
                    latest.insert(release.record_id, (height, id, release));
                }
            }
        }
        let mut out = Vec::with_capacity(latest.len());
        for (_, (height, key_shared, release)) in latest {
            let record = StateView::record(self.store(), &release.record_id)
                .map_err(LedgerError::State)?
                .ok_or_else(|| StoreError::corrupt("a released record has no entry"))?;
            if record.erased {
                continue;
            }
            let consent_id = release.consent_id.map(ConsentId::from_byte_array);
            let consent_revoked_at = match &consent_id {
                Some(c) => StateView::consent(self.store(), c)
                    .map_err(LedgerError::State)?
                    .and_then(|c| c.revoked_at),
                None => None,
            };
            out.push(SharedRecord {
                record,
                key_shared,
                released_at_height: height,
                purpose: release.purpose,
                consent_id,
                consent_revoked_at,
            });
        }
        out.sort_by_key(|s| (s.released_at_height, s.key_shared));
        Ok(out)
    }

    /// What `reader` needs to open `record` itself: the sealed record and the envelope of the
    /// latest committed `KeyShared` of the record to `reader` (found through the record's audit
    /// trail, then read from the signed transaction itself). Only what was released to that
    /// reader: another reader's release gives nothing.
    ///
    /// # Errors
    /// [`OpenError::UnknownRecord`], [`OpenError::Erased`], [`OpenError::NotShared`] (no
    /// committed release to `reader`), all in [`LedgerError::Open`]; store errors, with
    /// [`StoreError::Corrupt`] when the audit trail and the transactions disagree.
    pub fn released_to(
        &self,
        reader: &PublicIdentity,
        record: &RecordId,
    ) -> Result<(SealedRecord, KeyEnvelope), LedgerError> {
        let stored = self.get_record(record)?.ok_or(OpenError::UnknownRecord)?;
        let sealed = match stored.sealed {
            Some(s) if !stored.entry.erased => s,
            _ => return Err(OpenError::Erased.into()),
        };
        let entry = self
            .audit_of_record(record)?
            .into_iter()
            .rev()
            .find(|e| e.kind == AuditKind::KeyShared && e.actor == *reader)
            .ok_or(OpenError::NotShared)?;
        let tx = self
            .store()
            .transaction(&entry.tx_id)?
            .ok_or_else(|| StoreError::corrupt("a key release's transaction is missing"))?;
        let body = tx.verify()?.open_body(self.view().network)?;
        let release = release_to(body, reader)
            .filter(|r| r.record_id == *record)
            .ok_or_else(|| {
                StoreError::corrupt("a key release's audit entry does not match its transaction")
            })?;
        // Only an erasure prunes a release's envelope, and the record is not erased.
        let envelope =
            release
                .envelope
                .ok_or(StoreError::Corrupt(Corruption::UnexplainedPruning {
                    count: 1,
                }))?;
        Ok((sealed, envelope))
    }

    /// Opens `record` for `reader` with the key released to it
    /// ([`released_to`](Self::released_to)).
    ///
    /// # Errors
    /// As [`released_to`](Self::released_to), and [`OpenError::Seal`] (the released envelope
    /// does not open the record for `reader`) in [`LedgerError::Open`].
    pub fn open_for(
        &self,
        reader: &Identity,
        record: &RecordId,
    ) -> Result<OpenedRecord, LedgerError> {
        let (sealed, envelope) = self.released_to(&reader.public(), record)?;
        Ok(sealed
            .open_with(reader, std::slice::from_ref(&envelope))
            .map_err(OpenError::Seal)?)
    }
}

/// The release in `body` if it is a `KeyShared` to `reader`.
fn release_to(body: TxBody, reader: &PublicIdentity) -> Option<Release> {
    match body {
        TxBody::KeyShared {
            record_id,
            grantee,
            purpose,
            consent_id,
            envelope,
            ..
        } if grantee == *reader => Some(Release {
            record_id,
            purpose,
            consent_id,
            envelope,
        }),
        _ => None,
    }
}
