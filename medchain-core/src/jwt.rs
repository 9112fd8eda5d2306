//! SMART Backend Services client assertions (RFC 7523 §2.2): a JWT in JWS compact
//! serialization that a client signs to get a bearer token from a node's token endpoint.
//!
//! [`ClientAssertion`] is the one builder medchain has: the node's tests and tools
//! (`medchain_node::auth` re-exports it), the phone wallet (`medchain-ffi`:
//! `Wallet.patientClientAssertion`) and the Python client (`Identity.client_assertion`) all make
//! their assertions with it. Reading and checking assertions is the node's (`medchain_node::auth`).
//!
//! ```text
//! header  {"alg":<alg>,"typ":"JWT"[,"kid":<kid>]}
//! claims  {"iss":<client id>,"sub":<client id>,"aud":<token endpoint URL>,
//!          "exp":now+60,"iat":now,"jti":<32 random hex digits>}
//! ```
//!
//! A patient asserts for themself with no registration: the client id is
//! [`patient_client_id`] (`patient:` and the 64 lower-case hex digits of their ed25519 key), and
//! the assertion is signed `EdDSA` (RFC 8037) with that key ([`ClientAssertion::sign_eddsa`]).
//!
//! ```
//! use medchain_core::jwt::{patient_client_id, ClientAssertion};
//! use medchain_core::keys::Identity;
//!
//! let mut rng = rand_core::UnwrapErr(getrandom::SysRng);
//! let alice = Identity::generate(&mut rng);
//! let audience = "https://node.example/fhir/auth/token";
//! let assertion = ClientAssertion::for_patient(&alice.verify_key(), audience, 1_790_000_000, &mut rng);
//! assert_eq!(assertion.client_id, patient_client_id(&alice.verify_key()));
//! let jwt = assertion.sign_eddsa(&alice).expect("a JWS signing input");
//! assert_eq!(jwt.split('.').count(), 3);
//! ```

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand_core::{CryptoRng, Rng};
use serde_json::{Map, Value};

use crate::keys::{Identity, JwsError, VerifyKey};

/// The prefix of a patient's self-asserted client id: `patient:` and the 64 lower-case hex
/// digits of the patient's ed25519 key.
pub const PATIENT_CLIENT_PREFIX: &str = "patient:";

/// The longest audience (token endpoint URL) an assertion is made for, in bytes.
pub const MAX_AUDIENCE: usize = 2048;

/// The latest `now` an assertion is made at: 9999-12-31T23:59:59Z, in seconds since the Unix
/// epoch. Anything later is a clock or unit error (milliseconds passed as seconds).
pub const MAX_NOW_SECONDS: u64 = 253_402_300_799;

/// Why [`ClientAssertion::check_arguments`] refuses what an assertion would be made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArgumentError {
    /// The client id is empty or not printable ASCII.
    #[error("the client id must be printable ASCII, not empty")]
    ClientId,
    /// The audience is not an `http://` or `https://` URL of printable ASCII of at most
    /// [`MAX_AUDIENCE`] bytes.
    #[error("the audience must be the token endpoint's http:// or https:// URL (printable ASCII, at most 2048 bytes)")]
    Audience,
    /// `now` is past [`MAX_NOW_SECONDS`].
    #[error("now must be seconds since the Unix epoch (not milliseconds)")]
    Time,
}

/// The audience rule, one for the assertion's builders and the node's `[auth] audience`: an
/// `http://` or `https://` URL with something after the scheme, of printable ASCII, at most
/// [`MAX_AUDIENCE`] bytes. A node configured with an audience outside it could not be named by
/// any assertion this library builds.
///
/// # Errors
/// [`ArgumentError::Audience`].
pub fn check_audience(audience: &str) -> Result<(), ArgumentError> {
    let rest = audience
        .strip_prefix("https://")
        .or_else(|| audience.strip_prefix("http://"));
    if audience.len() > MAX_AUDIENCE
        || rest.is_none_or(str::is_empty)
        || !audience.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(ArgumentError::Audience);
    }
    Ok(())
}

/// The client id of `patient`'s self-assertion: `patient:` and the key's 64 lower-case hex
/// digits.
pub fn patient_client_id(patient: &VerifyKey) -> String {
    format!("{PATIENT_CLIENT_PREFIX}{patient}")
}

/// A client assertion's signature algorithm: the three a node accepts, nothing else (no
/// `none`, no HMAC).
///
/// Exhaustive on purpose: a node's verification matches on it without a wildcard arm, so an
/// algorithm added here cannot be accepted before its verification is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA on P-384 with SHA-384; the signature is `r || s`, 48 bytes each.
    Es384,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    Rs384,
    /// Ed25519 (RFC 8037).
    EdDsa,
}

impl Alg {
    /// The JOSE name, or `None` for any other algorithm.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "ES384" => Some(Self::Es384),
            "RS384" => Some(Self::Rs384),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Es384 => "ES384",
            Self::Rs384 => "RS384",
            Self::EdDsa => "EdDSA",
        }
    }
}

/// A client assertion to sign: the claims SMART Backend Services asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAssertion {
    /// `iss` (and `sub`): the client id.
    pub client_id: String,
    /// `aud`: the node's token endpoint URL.
    pub audience: String,
    /// `exp`, seconds since the epoch.
    pub exp: u64,
    /// `iat`, seconds since the epoch.
    pub iat: Option<u64>,
    /// `jti`: unique per assertion.
    pub jti: String,
    /// The header's `kid`.
    pub kid: Option<String>,
}

impl ClientAssertion {
    /// Lifetime of the assertions [`ClientAssertion::new`] makes, in seconds (a node accepts at
    /// most 300).
    pub const LIFETIME: u64 = 60;

    /// Checks what an assertion would be made from, for callers that take it from outside
    /// (the wallet's and the Python package's arguments): a printable client id, an `http(s)://`
    /// audience of printable ASCII of at most [`MAX_AUDIENCE`] bytes, a `now` in seconds.
    ///
    /// # Errors
    /// The first [`ArgumentError`].
    pub fn check_arguments(client_id: &str, audience: &str, now: u64) -> Result<(), ArgumentError> {
        if client_id.is_empty() || !client_id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ArgumentError::ClientId);
        }
        check_audience(audience)?;
        if now > MAX_NOW_SECONDS {
            return Err(ArgumentError::Time);
        }
        Ok(())
    }

    /// An assertion by `client_id` for `audience` made at `now` (seconds since the epoch):
    /// valid for [`ClientAssertion::LIFETIME`], with a `jti` of 16 random bytes from `rng`.
    pub fn new<R: Rng + CryptoRng + ?Sized>(
        client_id: &str,
        audience: &str,
        now: u64,
        rng: &mut R,
    ) -> Self {
        let mut jti = [0u8; 16];
        rng.fill_bytes(&mut jti);
        Self {
            client_id: client_id.into(),
            audience: audience.into(),
            exp: now.saturating_add(Self::LIFETIME),
            iat: Some(now),
            jti: hex::encode(jti),
            kid: None,
        }
    }

    /// A patient's self-assertion (to be signed with [`ClientAssertion::sign_eddsa`] by the
    /// patient's identity): the client id is [`patient_client_id`].
    pub fn for_patient<R: Rng + CryptoRng + ?Sized>(
        patient: &VerifyKey,
        audience: &str,
        now: u64,
        rng: &mut R,
    ) -> Self {
        Self::new(&patient_client_id(patient), audience, now, rng)
    }

    /// The same assertion naming the key `kid`.
    #[must_use]
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// `BASE64URL(header) '.' BASE64URL(claims)` for `alg`.
    pub fn signing_input(&self, alg: Alg) -> String {
        let mut header = Map::new();
        header.insert("alg".into(), alg.name().into());
        header.insert("typ".into(), "JWT".into());
        if let Some(kid) = &self.kid {
            header.insert("kid".into(), kid.clone().into());
        }
        let mut claims = Map::new();
        claims.insert("iss".into(), self.client_id.clone().into());
        claims.insert("sub".into(), self.client_id.clone().into());
        claims.insert("aud".into(), self.audience.clone().into());
        claims.insert("exp".into(), self.exp.into());
        if let Some(iat) = self.iat {
            claims.insert("iat".into(), iat.into());
        }
        claims.insert("jti".into(), self.jti.clone().into());
        let encode =
            |map: Map<String, Value>| URL_SAFE_NO_PAD.encode(Value::Object(map).to_string());
        format!("{}.{}", encode(header), encode(claims))
    }

    /// The compact JWS for `alg`, signed by `sign` (which gets the signing input and returns
    /// the signature in the algorithm's JOSE form: `r || s` for ES384).
    pub fn sign_with(&self, alg: Alg, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
        let input = self.signing_input(alg);
        let signature = sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The compact JWS signed `EdDSA` by a medchain identity (a member's own key listed in its
    /// client's JWK Set, or a patient's key for a self-assertion), through
    /// [`Identity::sign_jws`].
    ///
    /// # Errors
    /// [`JwsError`] (never for an input this type made).
    pub fn sign_eddsa(&self, identity: &Identity) -> Result<String, JwsError> {
        let input = self.signing_input(Alg::EdDsa);
        let signature = identity.sign_jws(&input)?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn part(jwt: &str, i: usize) -> Value {
        let bytes = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(i).expect("part"))
            .expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON")
    }

    #[test]
    fn a_patients_self_assertion_has_the_claims_the_node_reads_and_verifies() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let alice = Identity::generate(&mut rng);
        let audience = "https://node.example/fhir/auth/token";
        let a =
            ClientAssertion::for_patient(&alice.verify_key(), audience, 1_790_000_000, &mut rng);
        let jwt = a.sign_eddsa(&alice).unwrap();
        let header = part(&jwt, 0);
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "JWT"}));
        let claims = part(&jwt, 1);
        let id = format!("patient:{}", alice.verify_key());
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some(id.as_str()), Some(id.as_str()))
        );
        assert_eq!(claims["aud"], audience);
        assert_eq!(
            (claims["iat"].as_u64(), claims["exp"].as_u64()),
            (Some(1_790_000_000), Some(1_790_000_060))
        );
        assert_eq!(claims["jti"].as_str().map(str::len), Some(32));
        // The signature is ed25519 over the signing input, under the patient's key.
        let (input, signature) = jwt.rsplit_once('.').unwrap();
        assert_eq!(input, a.signing_input(Alg::EdDsa));
        let signature: [u8; 64] = URL_SAFE_NO_PAD
            .decode(signature)
            .unwrap()
            .try_into()
            .unwrap();
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&alice.verify_key().to_byte_array()).unwrap();
        key.verify_strict(
            input.as_bytes(),
            &ed25519_dalek::Signature::from_bytes(&signature),
        )
        .unwrap();
    }

    #[test]
    fn each_assertion_has_its_own_jti_and_a_kid_only_when_named() {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(8);
        let one =
            ClientAssertion::new("city-ehr", "https://n.example/fhir/auth/token", 5, &mut rng);
        let two =
            ClientAssertion::new("city-ehr", "https://n.example/fhir/auth/token", 5, &mut rng);
        assert_ne!(one.jti, two.jti);
        let with_kid = one.clone().with_kid("ehr-1");
        let jwt = with_kid.sign_with(Alg::Es384, |input| input[..4].to_vec());
        assert_eq!(part(&jwt, 0)["kid"], "ehr-1");
        assert_eq!(part(&jwt, 0)["alg"], "ES384");
        assert!(part(&one.sign_with(Alg::Rs384, |_| vec![1]), 0)
            .get("kid")
            .is_none());
        for alg in [Alg::Es384, Alg::Rs384, Alg::EdDsa] {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
        for other in ["none", "HS256", "ES256", "eddsa", ""] {
            assert_eq!(Alg::from_name(other), None);
        }
        // Arguments from outside are checked before anything is made.
        let aud = "https://n.example/fhir/auth/token";
        assert_eq!(ClientAssertion::check_arguments("c", aud, 5), Ok(()));
        for (client, audience, now, err) in [
            ("", aud, 5, ArgumentError::ClientId),
            ("city ehr", aud, 5, ArgumentError::ClientId),
            ("c", "ftp://n.example", 5, ArgumentError::Audience),
            ("c", "https://", 5, ArgumentError::Audience),
            ("c", "https://n.example/a b", 5, ArgumentError::Audience),
            (
                "c",
                &format!("https://{}", "a".repeat(MAX_AUDIENCE)),
                5,
                ArgumentError::Audience,
            ),
            ("c", aud, MAX_NOW_SECONDS + 1, ArgumentError::Time),
        ] {
            assert_eq!(
                ClientAssertion::check_arguments(client, audience, now),
                Err(err)
            );
        }
        // A time at the end of the clock saturates rather than wrapping.
        let late = ClientAssertion::new("c", "https://n.example/t", u64::MAX, &mut rng);
        assert_eq!(late.exp, u64::MAX);
    }
}
