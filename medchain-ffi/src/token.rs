//! The patient's SMART client assertion: how the wallet gets the app a token from a node
//! without the key leaving the phone and without the wallet doing I/O.
//!
//! A node's token endpoint (`POST /fhir/auth/token`, SMART Backend Services, `docs/node.md`)
//! accepts a patient's *self-assertion*: a JWT in JWS compact serialization whose `iss` and
//! `sub` are both `patient:` followed by the 64 lower-case hex digits of the patient's ed25519
//! key, signed `EdDSA` (RFC 8037) by that key. No registration is needed: the key in the client
//! id is the key the signature verifies under. [`Wallet::patient_client_assertion`] makes one
//! with `medchain_core::jwt::ClientAssertion`, the builder the node and the Python client use:
//!
//! ```text
//! header  {"alg":"EdDSA","typ":"JWT"}
//! claims  {"iss":"patient:<hex>","sub":"patient:<hex>","aud":<token endpoint URL>,
//!          "exp":now+60,"iat":now,"jti":<32 random hex digits>}
//! ```
//!
//! The app posts it as `client_assertion` (with `client_assertion_type`
//! `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, `grant_type=client_credentials`
//! and the scopes it asks for, e.g. `patient/*.rs patient/Consent.c`). The audience is the
//! token endpoint's URL, which a node publishes as `token_endpoint` in
//! `/fhir/.well-known/smart-configuration`. [`Wallet::sign_jws`] signs any other JWS signing
//! input with the same key (a JWT of the app's own making); the core signs only JWS signing
//! inputs, so neither kind of signature can pass for one of medchain's own (`docs/crypto.md`).

use getrandom::SysRng;
use medchain_core::jwt::ClientAssertion;
use medchain_core::keys::Identity;
use rand_core::{CryptoRng, Rng, UnwrapErr};

use crate::error::{guard, WalletError};
use crate::wallet::Wallet;

pub use medchain_core::jwt::{patient_client_id, PATIENT_CLIENT_PREFIX};

/// How long an assertion the wallet makes is valid, in seconds (a node accepts at most 300).
pub const ASSERTION_LIFETIME_SECONDS: u64 = ClientAssertion::LIFETIME;

// A node refuses an assertion whose `exp` is more than five minutes ahead.
const _: () = assert!(ASSERTION_LIFETIME_SECONDS <= 300);

/// The longest audience accepted, in bytes.
pub const MAX_AUDIENCE: usize = medchain_core::jwt::MAX_AUDIENCE;

/// The longest JWS signing input [`Wallet::sign_jws`] signs, in bytes (a node reads client
/// assertions of at most 8 KiB).
pub const MAX_SIGNING_INPUT: usize = 8 * 1024;

fn invalid(reason: &str) -> WalletError {
    WalletError::InvalidArgument {
        reason: reason.into(),
    }
}

/// The compact JWS of `identity`'s self-assertion for `audience` made at `now`, its `jti`
/// from `rng`.
pub(crate) fn patient_assertion<R: Rng + CryptoRng + ?Sized>(
    identity: &Identity,
    audience: &str,
    now: u64,
    rng: &mut R,
) -> Result<String, WalletError> {
    let assertion = ClientAssertion::for_patient(&identity.verify_key(), audience, now, rng);
    ClientAssertion::check_arguments(&assertion.client_id, audience, now)
        .map_err(|e| invalid(&e.to_string()))?;
    Ok(assertion.sign_eddsa(identity)?)
}

#[uniffi::export]
impl Wallet {
    /// A SMART client assertion for this patient (a complete compact JWS, `EdDSA`): `iss` =
    /// `sub` = `patient:<64 hex of the patient's key>`, `aud` = `audience` (the node's token
    /// endpoint URL, its smart-configuration's `token_endpoint`), `iat` = `now_seconds`, `exp`
    /// 60 seconds later, a random `jti`. The app posts it to the token endpoint for a bearer
    /// token with patient scopes (see [`crate::token`]). No I/O; nothing is stored.
    ///
    /// # Errors
    /// [`WalletError::InvalidArgument`] for an audience that is not an `http(s)://` URL of
    /// printable ASCII of at most 2048 bytes, or a `now_seconds` past the year 9999 (a time in
    /// milliseconds).
    pub fn patient_client_assertion(
        &self,
        audience: String,
        now_seconds: u64,
    ) -> Result<String, WalletError> {
        guard(|| {
            patient_assertion(
                self.identity(),
                &audience,
                now_seconds,
                &mut UnwrapErr(SysRng),
            )
        })
    }

    /// Signs a JWS signing input, `BASE64URL(header) '.' BASE64URL(payload)` with a JSON-object
    /// header, with the patient's key: the 64-byte `EdDSA` (ed25519, RFC 8037) signature, which
    /// the app appends base64url-encoded after a `.` to make the compact JWS. For a JWT the app
    /// builds itself; [`Wallet::patient_client_assertion`] makes the usual one.
    ///
    /// # Errors
    /// [`WalletError::InvalidArgument`] for anything but a JWS signing input (nothing is
    /// signed), or one longer than 8 KiB.
    pub fn sign_jws(&self, signing_input: String) -> Result<Vec<u8>, WalletError> {
        guard(|| {
            if signing_input.len() > MAX_SIGNING_INPUT {
                return Err(invalid("the JWS signing input is longer than 8 KiB"));
            }
            Ok(self.identity().sign_jws(&signing_input)?.to_vec())
        })
    }
}
