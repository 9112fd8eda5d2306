//! Enrolment at a hospital: the wallet seals the patient's writer index key to the hospital
//! ([`crate::Wallet::export_writer_key`]), so the hospital can index the patient's records
//! (and find them again) without the patient's identity. The bytes go to the hospital over
//! any channel: they hold the key only encrypted to the hospital, and the patient's signature
//! (bound to the pinned network) tells the hospital they come from the patient.
//!
//! [`inspect_writer_key`] checks what anyone can check (the network, the patient's signature)
//! and names the patient and the hospital; only the hospital's node can open the key
//! (`medchain_core::index::SealedWriterKey::import`). See `docs/consent.md`.

use std::sync::Arc;

use medchain_core::encoding::Decode;
use medchain_core::index::{SealedWriterKey, SEALED_WRITER_KEY_LEN};

use crate::error::{guard, WalletError};
use crate::light::TrustedNetwork;

/// What a sealed writer key says, once its patient signature is checked.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct WriterKeyInfo {
    /// The patient who sealed it (printable identity).
    pub patient: String,
    /// The hospital it is sealed to (printable identity).
    pub hospital: String,
}

/// Decodes a sealed writer key ([`crate::Wallet::export_writer_key`] output) and checks it was
/// signed by its patient for `network`.
///
/// # Errors
/// [`WalletError::Malformed`] for bytes that are not a sealed writer key,
/// [`WalletError::BadSignature`] if the patient's signature does not verify for this network
/// (one sealed on another network does not).
#[uniffi::export]
pub fn inspect_writer_key(
    sealed: Vec<u8>,
    network: Arc<TrustedNetwork>,
) -> Result<WriterKeyInfo, WalletError> {
    guard(|| {
        if sealed.len() > 2 * SEALED_WRITER_KEY_LEN {
            return Err(WalletError::Malformed {
                what: "sealed writer key".into(),
                reason: format!("{} bytes, expected {SEALED_WRITER_KEY_LEN}", sealed.len()),
            });
        }
        let s = SealedWriterKey::from_bytes(&sealed)
            .map_err(|e| crate::error::malformed("sealed writer key", &e))?;
        s.verify(&network.chain_id())?;
        Ok(WriterKeyInfo {
            patient: s.patient().to_text(),
            hospital: s.writer().to_text(),
        })
    })
}
