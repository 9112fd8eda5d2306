//! The wallet: the patient's identity on the phone, and what it signs and opens.
//!
//! State in the app's [`WalletStore`] (and nothing else):
//!
//! | key | value |
//! | --- | --- |
//! | `identity.backup` | the identity's password backup (Argon2id + AES-256-GCM, `docs/crypto.md`) |
//! | `identity.public` | the printable public identity (`mcid1…`), UTF-8 |
//! | `network.genesis` | the trusted genesis, canonical bytes (set by [`Wallet::trust_network`]) |
//!
//! The secret keys live only in memory while a [`Wallet`] object exists (zeroized when it is
//! dropped) and, encrypted, in the backup.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use getrandom::SysRng;
use medchain_core::consent::{consent_from_fhir, Consent, ConsentId};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::{domain, ChainId, RecordId};
use medchain_core::index::SealedWriterKey;
use medchain_core::keys::{BackupParams, Identity, PublicIdentity};
use medchain_core::seal::SealedRecord;
use medchain_core::tx::{PatientSignature, TxBody};
use rand_core::UnwrapErr;
use zeroize::Zeroizing;

use crate::audit::{decode_audit_trail, AuditRecord};
use crate::consent::{
    build_consent, grant_request, ConsentDraft, EmergencyAccess, RequestKind, SignedRequest,
};
use crate::error::{guard, malformed, ProofError, WalletError};
use crate::light::{CommittedTransaction, NetworkInfo, TrustedNetwork};
use crate::store::WalletStore;

/// Store key of the encrypted identity backup.
pub const KEY_BACKUP: &str = "identity.backup";
/// Store key of the printable public identity.
pub const KEY_PUBLIC: &str = "identity.public";
/// Store key of the trusted genesis.
pub const KEY_GENESIS: &str = "network.genesis";

/// Largest identity backup accepted (a real one is about 150 bytes).
const MAX_BACKUP: usize = 4096;

/// A printable identity, parsed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct PublicIdentityInfo {
    /// The printable form (`mcid1…`, what a QR code carries), normalized.
    pub text: String,
    /// The short party id (32 hex digits).
    pub party_id: String,
    /// The ed25519 signing key (hex): how consents and audit entries name the party.
    pub signing_key: String,
}

impl From<PublicIdentity> for PublicIdentityInfo {
    fn from(p: PublicIdentity) -> Self {
        Self {
            text: p.to_text(),
            party_id: p.id().to_string(),
            signing_key: p.sign.to_string(),
        }
    }
}

/// Parses a printable identity (`mcid1…`), checking its checksum and keys.
///
/// # Errors
/// [`WalletError::InvalidIdentity`] saying what is wrong.
#[uniffi::export]
pub fn parse_public_identity(text: String) -> Result<PublicIdentityInfo, WalletError> {
    guard(|| {
        if text.len() > 1024 {
            return Err(WalletError::InvalidIdentity {
                reason: "far too long".into(),
            });
        }
        Ok(PublicIdentity::from_text(&text)?.into())
    })
}

/// Whether `store` holds a wallet (without opening it).
///
/// # Errors
/// [`WalletError::Store`].
#[uniffi::export]
pub fn wallet_exists(store: Arc<dyn WalletStore>) -> Result<bool, WalletError> {
    guard(|| Ok(store.get(KEY_BACKUP.into())?.is_some()))
}

/// Deletes the wallet from `store` (its encrypted backup, public identity and pinned genesis):
/// "sign out" on this phone. Without a copy of the backup elsewhere, the identity is gone.
///
/// # Errors
/// [`WalletError::Store`].
#[uniffi::export]
pub fn delete_wallet(store: Arc<dyn WalletStore>) -> Result<(), WalletError> {
    guard(|| {
        for key in [KEY_BACKUP, KEY_PUBLIC, KEY_GENESIS] {
            store.delete(key.into())?;
        }
        Ok(())
    })
}

/// A record opened on the phone.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct OpenedRecord {
    /// The record's id (hex).
    pub record_id: String,
    /// Its patient (printable identity).
    pub patient: String,
    /// Whether this wallet is the record's patient (rather than another reader).
    pub is_mine: bool,
    /// The FHIR resource type.
    pub resource_type: String,
    /// The FHIR R4 JSON.
    pub fhir_json: String,
}

impl fmt::Debug for OpenedRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the content.
        f.debug_struct("OpenedRecord")
            .field("record_id", &self.record_id)
            .field("resource_type", &self.resource_type)
            .finish_non_exhaustive()
    }
}

/// The patient's wallet: holds the identity, signs requests, opens records, checks proofs.
#[derive(uniffi::Object)]
pub struct Wallet {
    identity: Identity,
    store: Arc<dyn WalletStore>,
}

impl fmt::Debug for Wallet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Wallet({})", self.identity.id())
    }
}

fn password_of(password: String) -> Result<Zeroizing<String>, WalletError> {
    let password = Zeroizing::new(password);
    if password.is_empty() {
        return Err(WalletError::WeakPassword);
    }
    Ok(password)
}

fn restore_identity(backup: &[u8], password: &[u8]) -> Result<Identity, WalletError> {
    if backup.len() > MAX_BACKUP {
        return Err(WalletError::Malformed {
            what: "identity backup".into(),
            reason: format!("{} bytes, at most {MAX_BACKUP}", backup.len()),
        });
    }
    Ok(Identity::restore_backup(backup, password)?)
}

fn hex_id<T: FromStr>(what: &str, text: &str) -> Result<T, WalletError> {
    T::from_str(text.trim()).map_err(|_| WalletError::InvalidArgument {
        reason: format!("{what} must be 64 hex digits"),
    })
}

impl Wallet {
    /// The identity, for the other modules' exported methods.
    pub(crate) fn identity(&self) -> &Identity {
        &self.identity
    }

    fn save(
        store: &dyn WalletStore,
        identity: &Identity,
        backup: Vec<u8>,
    ) -> Result<(), WalletError> {
        store.put(KEY_BACKUP.into(), backup)?;
        store.put(KEY_PUBLIC.into(), identity.public().to_text().into_bytes())?;
        Ok(())
    }

    fn stored_backup(&self) -> Result<Vec<u8>, WalletError> {
        self.store
            .get(KEY_BACKUP.into())?
            .ok_or(WalletError::NoWallet)
    }

    fn sign_consent_core(&self, consent: &Consent) -> Result<SignedRequest, WalletError> {
        let body = consent.grant_body(&self.identity, &self.chain()?)?;
        Ok(grant_request(consent, &body))
    }

    /// The chain id every signature of this wallet binds: the pinned network's.
    fn chain(&self) -> Result<ChainId, WalletError> {
        match self.network() {
            Ok(net) => Ok(net.chain_id()),
            Err(ProofError::NoTrustedNetwork) => Err(WalletError::NoTrustedNetwork),
            Err(ProofError::Store { reason }) => Err(WalletError::Store { reason }),
            Err(other) => Err(WalletError::Malformed {
                what: "pinned genesis".into(),
                reason: other.to_string(),
            }),
        }
    }

    /// The trusted network from the store.
    fn network(&self) -> Result<TrustedNetwork, ProofError> {
        let bytes = self
            .store
            .get(KEY_GENESIS.into())?
            .ok_or(ProofError::NoTrustedNetwork)?;
        TrustedNetwork::from_bytes(&bytes, None)
    }
}

#[uniffi::export]
impl Wallet {
    /// Creates a new identity, protects it with `password` (Argon2id, 19 MiB, 2 passes) and
    /// writes the encrypted backup and the public identity to `store`.
    ///
    /// # Errors
    /// [`WalletError::WeakPassword`] for an empty password, [`WalletError::WalletExists`] if the
    /// store already holds a wallet, [`WalletError::Store`].
    #[uniffi::constructor]
    pub fn create(store: Arc<dyn WalletStore>, password: String) -> Result<Arc<Self>, WalletError> {
        guard(|| {
            let password = password_of(password)?;
            if store.get(KEY_BACKUP.into())?.is_some() {
                return Err(WalletError::WalletExists);
            }
            let identity = Identity::generate(&mut UnwrapErr(SysRng));
            let backup = identity.export_backup(
                password.as_bytes(),
                BackupParams::RECOMMENDED,
                &mut UnwrapErr(SysRng),
            )?;
            Self::save(store.as_ref(), &identity, backup)?;
            Ok(Arc::new(Self { identity, store }))
        })
    }

    /// Opens the wallet kept in `store` with its password.
    ///
    /// # Errors
    /// [`WalletError::NoWallet`], [`WalletError::WrongPassword`], [`WalletError::Malformed`]
    /// for a damaged backup, [`WalletError::Store`].
    #[uniffi::constructor]
    pub fn open(store: Arc<dyn WalletStore>, password: String) -> Result<Arc<Self>, WalletError> {
        guard(|| {
            let password = Zeroizing::new(password);
            let backup = store.get(KEY_BACKUP.into())?.ok_or(WalletError::NoWallet)?;
            let identity = restore_identity(&backup, password.as_bytes())?;
            Ok(Arc::new(Self { identity, store }))
        })
    }

    /// Restores a wallet from a backup (made by [`Wallet::backup`] on this or another device)
    /// into `store`.
    ///
    /// # Errors
    /// [`WalletError::WrongPassword`], [`WalletError::Malformed`], [`WalletError::WalletExists`]
    /// if the store holds a *different* wallet, [`WalletError::Store`].
    #[uniffi::constructor]
    pub fn restore(
        store: Arc<dyn WalletStore>,
        backup: Vec<u8>,
        password: String,
    ) -> Result<Arc<Self>, WalletError> {
        guard(|| {
            let password = Zeroizing::new(password);
            let identity = restore_identity(&backup, password.as_bytes())?;
            if let Some(existing) = store.get(KEY_PUBLIC.into())? {
                if existing != identity.public().to_text().into_bytes() {
                    return Err(WalletError::WalletExists);
                }
            }
            Self::save(store.as_ref(), &identity, backup)?;
            Ok(Arc::new(Self { identity, store }))
        })
    }

    /// The encrypted backup, to keep somewhere safe (it needs the password to open).
    ///
    /// # Errors
    /// [`WalletError::NoWallet`] if the store lost it, [`WalletError::Store`].
    pub fn backup(&self) -> Result<Vec<u8>, WalletError> {
        guard(|| self.stored_backup())
    }

    /// Re-encrypts the backup under a new password.
    ///
    /// # Errors
    /// [`WalletError::WrongPassword`] if `old_password` does not open the stored backup,
    /// [`WalletError::WeakPassword`], [`WalletError::Store`].
    pub fn change_password(
        &self,
        old_password: String,
        new_password: String,
    ) -> Result<(), WalletError> {
        guard(|| {
            let old = Zeroizing::new(old_password);
            let new = password_of(new_password)?;
            let stored = restore_identity(&self.stored_backup()?, old.as_bytes())?;
            if stored.public() != self.identity.public() {
                return Err(WalletError::WalletExists);
            }
            let backup = self.identity.export_backup(
                new.as_bytes(),
                BackupParams::RECOMMENDED,
                &mut UnwrapErr(SysRng),
            )?;
            Self::save(self.store.as_ref(), &self.identity, backup)
        })
    }

    /// The printable public identity (`mcid1…`): what the wallet's QR code shows.
    pub fn public_identity(&self) -> String {
        self.identity.public().to_text()
    }

    /// The public identity, parsed.
    pub fn identity_info(&self) -> PublicIdentityInfo {
        self.identity.public().into()
    }

    /// Signs a consent built from `draft`; the request grants it once a node commits it.
    ///
    /// # Errors
    /// [`WalletError::InvalidArgument`], [`WalletError::InvalidIdentity`] or
    /// [`WalletError::InvalidConsent`] for a draft that cannot be a consent.
    pub fn sign_consent(&self, draft: ConsentDraft) -> Result<SignedRequest, WalletError> {
        guard(|| {
            let consent = build_consent(self.identity.public(), &draft)?;
            self.sign_consent_core(&consent)
        })
    }

    /// Signs a consent that only states the standing emergency preference.
    ///
    /// # Errors
    /// None in practice; [`WalletError::Internal`] on a bug.
    pub fn sign_emergency_preference(
        &self,
        access: EmergencyAccess,
        issued_ms: u64,
    ) -> Result<SignedRequest, WalletError> {
        let summary = match access {
            EmergencyAccess::Allow => "Emergency access by credentialed clinicians is allowed",
            EmergencyAccess::Refuse => "No emergency access to my records",
        };
        self.sign_consent(ConsentDraft {
            summary: summary.into(),
            issued_ms,
            start_ms: None,
            end_ms: None,
            emergency: Some(access),
            rules: Vec::new(),
        })
    }

    /// Signs a consent given as FHIR R4 `Consent` JSON (its patient must be this wallet). The
    /// JSON is validated first (base R4 structure and the required bindings, `docs/fhir.md`):
    /// a patient signs nothing malformed.
    ///
    /// # Errors
    /// [`WalletError::Malformed`] for text that is not JSON, [`WalletError::InvalidFhir`] for
    /// JSON that is not a valid FHIR R4 resource, [`WalletError::InvalidConsent`] for a Consent
    /// medchain cannot represent, [`WalletError::BadSignature`] if its patient is another
    /// identity.
    pub fn sign_fhir_consent(&self, fhir_json: String) -> Result<SignedRequest, WalletError> {
        guard(|| {
            if fhir_json.len() > 256 * 1024 {
                return Err(WalletError::Malformed {
                    what: "FHIR Consent".into(),
                    reason: "longer than 256 KiB".into(),
                });
            }
            let v: serde_json::Value =
                serde_json::from_str(&fhir_json).map_err(|e| WalletError::Malformed {
                    what: "FHIR Consent".into(),
                    reason: format!("invalid JSON at line {}, column {}", e.line(), e.column()),
                })?;
            medchain_fhir::check(fhir_json.as_bytes(), &medchain_fhir::Options::default())?;
            let consent = consent_from_fhir(&v)?;
            self.sign_consent_core(&consent)
        })
    }

    /// Signs the revocation of consent `consent_id` (hex, [`SignedRequest::subject_id`]).
    ///
    /// # Errors
    /// [`WalletError::InvalidArgument`] for an id that is not 64 hex digits.
    pub fn sign_revocation(&self, consent_id: String) -> Result<SignedRequest, WalletError> {
        guard(|| {
            let id: ConsentId = hex_id("a consent id", &consent_id)?;
            let body = Consent::revoke_body(&self.identity, &self.chain()?, &id);
            Ok(SignedRequest {
                kind: RequestKind::ConsentRevocation,
                subject_id: id.to_string(),
                body: body.to_bytes(),
                fhir_json: None,
            })
        })
    }

    /// Signs a request to erase record `record_id` (hex): once committed, stores delete the
    /// record's payload (crypto-shredding) and no key can be shared for it any more.
    ///
    /// # Errors
    /// [`WalletError::InvalidArgument`] for an id that is not 64 hex digits.
    pub fn request_erasure(&self, record_id: String) -> Result<SignedRequest, WalletError> {
        guard(|| {
            let id: RecordId = hex_id("a record id", &record_id)?;
            let body = TxBody::RecordErased {
                record_id: id,
                patient: PatientSignature::sign(
                    &self.identity,
                    &self.chain()?,
                    domain::ERASURE_SIG,
                    id.as_byte_array(),
                ),
            };
            Ok(SignedRequest {
                kind: RequestKind::RecordErasure,
                subject_id: id.to_string(),
                body: body.to_bytes(),
                fhir_json: None,
            })
        })
    }

    /// Enrols this patient at a hospital: seals the patient's writer index key for `hospital`
    /// (its printable identity, `mcid1…`) to the hospital, signed for the pinned network. The
    /// hospital imports it with its own identity and indexes this patient's records with it;
    /// it learns that key only (it cannot search what other hospitals wrote). See
    /// [`crate::enrol`].
    ///
    /// # Errors
    /// [`WalletError::NoTrustedNetwork`] before [`Wallet::trust_network`],
    /// [`WalletError::InvalidIdentity`] for a hospital identity that does not parse or cannot
    /// receive sealed keys.
    pub fn export_writer_key(&self, hospital: String) -> Result<Vec<u8>, WalletError> {
        guard(|| {
            let chain = self.chain()?;
            if hospital.len() > 1024 {
                return Err(WalletError::InvalidIdentity {
                    reason: "far too long".into(),
                });
            }
            let hospital = PublicIdentity::from_text(&hospital)?;
            let sealed =
                SealedWriterKey::export(&self.identity, &chain, &hospital, &mut UnwrapErr(SysRng))?;
            Ok(sealed.to_bytes())
        })
    }

    /// Opens a sealed record (its canonical bytes, as a node serves them) addressed to this
    /// wallet, checking its payload commitment.
    ///
    /// # Errors
    /// [`WalletError::Malformed`], [`WalletError::NotAddressedToMe`],
    /// [`WalletError::RecordDamaged`], [`WalletError::NotFhir`].
    pub fn open_record(&self, sealed: Vec<u8>) -> Result<OpenedRecord, WalletError> {
        guard(|| {
            let sealed =
                SealedRecord::from_bytes(&sealed).map_err(|e| malformed("sealed record", &e))?;
            let opened = sealed.open(&self.identity)?;
            let resource = opened.resource()?;
            let fhir_json =
                String::from_utf8(opened.payload().to_vec()).map_err(|_| WalletError::NotFhir {
                    reason: "not UTF-8".into(),
                })?;
            Ok(OpenedRecord {
                record_id: sealed.record_id().to_string(),
                patient: sealed.patient().to_text(),
                is_mine: *sealed.patient() == self.identity.public(),
                resource_type: resource.resource_type().to_owned(),
                fhir_json,
            })
        })
    }

    /// Decodes the audit trail a node served for this patient (see [`crate::audit`]).
    ///
    /// # Errors
    /// [`WalletError::Malformed`], [`WalletError::ForeignAuditEntry`] if an entry is about
    /// another patient.
    pub fn read_audit_trail(&self, entries: Vec<u8>) -> Result<Vec<AuditRecord>, WalletError> {
        guard(|| decode_audit_trail(&entries, Some(&self.identity.verify_key())))
    }

    /// Pins the network's genesis (its canonical bytes, and optionally the hash the app ships
    /// with) and keeps it in the store for [`Wallet::verify_inclusion`].
    ///
    /// # Errors
    /// [`ProofError::Malformed`], [`ProofError::GenesisMismatch`], [`ProofError::Store`].
    pub fn trust_network(
        &self,
        genesis: Vec<u8>,
        expected_hash: Option<String>,
    ) -> Result<NetworkInfo, ProofError> {
        guard(|| {
            let net = TrustedNetwork::from_bytes(&genesis, expected_hash.as_deref())?;
            self.store.put(KEY_GENESIS.into(), genesis)?;
            Ok(net.info())
        })
    }

    /// The network this wallet trusts.
    ///
    /// # Errors
    /// [`ProofError::NoTrustedNetwork`] before [`Wallet::trust_network`], [`ProofError::Store`].
    pub fn trusted_network(&self) -> Result<Arc<TrustedNetwork>, ProofError> {
        guard(|| self.network().map(Arc::new))
    }

    /// Checks an inclusion proof against the trusted genesis (light client, see
    /// [`crate::light`]).
    ///
    /// # Errors
    /// [`ProofError::NoTrustedNetwork`], and each failure of the proof as its own variant.
    pub fn verify_inclusion(&self, proof: Vec<u8>) -> Result<CommittedTransaction, ProofError> {
        guard(|| self.network()?.verify(&proof))
    }
}
