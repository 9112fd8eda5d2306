//! Public JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037) a client registers, and the three
//! signature algorithms a client assertion may use: `ES384` (EC P-384, JOSE `r || s`),
//! `RS384` (RSA PKCS#1 v1.5, 2048 to 8192 bits) and `EdDSA` (Ed25519), all verified with ring.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use medchain_core::keys::VerifyKey;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};
use thiserror::Error;

/// Most keys in one client's JWK Set.
pub const MAX_KEYS: usize = 16;

/// The smallest RSA modulus accepted, in bits (SMART Backend Services, RFC 7518 §3.3).
pub const MIN_RSA_BITS: usize = 2048;

/// The largest RSA modulus accepted, in bits (ring's limit).
pub const MAX_RSA_BITS: usize = 8192;

/// Members of a JWK that hold private or symmetric key material: a key with any of them is
/// refused (a client registers public keys only).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

pub use medchain_core::jwt::Alg;

/// A public key of one of the three kinds.
#[derive(Clone, PartialEq, Eq)]
enum Key {
    /// The uncompressed point `04 || x || y`.
    P384(Vec<u8>),
    /// Modulus and exponent, big-endian, no leading zero.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An ed25519 key (checked: a valid point of large order).
    Ed25519(VerifyKey),
}

/// One public key with its id.
#[derive(Clone, PartialEq, Eq)]
pub struct Jwk {
    kid: String,
    key: Key,
}

impl std::fmt::Debug for Jwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwk")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish()
    }
}

impl Jwk {
    /// Its `kid`.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> Alg {
        match self.key {
            Key::P384(_) => Alg::Es384,
            Key::Rsa { .. } => Alg::Rs384,
            Key::Ed25519(_) => Alg::EdDsa,
        }
    }

    /// A P-384 key from its uncompressed point (`04 || x || y`, what ring's
    /// `EcdsaKeyPair::public_key` gives).
    ///
    /// # Errors
    /// [`JwkError::Malformed`] for anything but 97 bytes starting `04`.
    pub fn p384(kid: &str, point: &[u8]) -> Result<Self, JwkError> {
        if point.len() != 97 || point[0] != 4 {
            return Err(JwkError::Malformed(
                kid.into(),
                "not an uncompressed P-384 point",
            ));
        }
        Ok(Self {
            kid: kid.into(),
            key: Key::P384(point.to_vec()),
        })
    }

    /// An RSA key from its modulus and exponent (big-endian), checked as a JWK Set's are.
    ///
    /// # Errors
    /// [`JwkError`] as [`JwkSet::parse`] gives for such a key.
    pub fn rsa(kid: &str, n: &[u8], e: &[u8]) -> Result<Self, JwkError> {
        let json = serde_json::json!({
            "kty": "RSA", "kid": kid, "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e),
        });
        parse_key(0, &json)
    }

    /// An Ed25519 key.
    pub fn ed25519(kid: &str, key: VerifyKey) -> Self {
        Self {
            kid: kid.into(),
            key: Key::Ed25519(key),
        }
    }

    /// Whether `signature` is this key's signature with `alg` over `input`. Always `false`
    /// when `alg` is not this key's algorithm.
    pub fn verify(&self, alg: Alg, input: &[u8], signature: &[u8]) -> bool {
        if alg != self.alg() {
            return false;
        }
        match &self.key {
            Key::P384(point) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(input, signature)
                .is_ok(),
            Key::Rsa { n, e } => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA384, input, signature)
                .is_ok(),
            Key::Ed25519(key) => UnparsedPublicKey::new(&signature::ED25519, key.as_byte_array())
                .verify(input, signature)
                .is_ok(),
        }
    }

    /// The key as a public JWK (what a client's JWK Set file holds).
    pub fn to_json(&self) -> Value {
        let b64 = |bytes: &[u8]| Value::String(URL_SAFE_NO_PAD.encode(bytes));
        let mut out = Map::new();
        let mut put = |k: &str, v: Value| {
            out.insert(k.into(), v);
        };
        match &self.key {
            Key::P384(point) => {
                put("kty", "EC".into());
                put("crv", "P-384".into());
                put("x", b64(&point[1..49]));
                put("y", b64(&point[49..]));
            }
            Key::Rsa { n, e } => {
                put("kty", "RSA".into());
                put("n", b64(n));
                put("e", b64(e));
            }
            Key::Ed25519(key) => {
                put("kty", "OKP".into());
                put("crv", "Ed25519".into());
                put("x", b64(key.as_byte_array()));
            }
        }
        put("kid", self.kid.clone().into());
        put("alg", self.alg().name().into());
        put("use", "sig".into());
        Value::Object(out)
    }
}

/// A JWK Set file is unusable. Messages name the key by position and `kid`, never quote key
/// material.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum JwkError {
    /// Not JSON, or not `{"keys": [...]}`.
    #[error("not a JWK Set ({0})")]
    NotASet(String),
    /// No keys, or more than [`MAX_KEYS`].
    #[error("a JWK Set holds 1 to {MAX_KEYS} keys")]
    Count,
    /// A key without a `kid` (or an empty one).
    #[error("key {0} has no \"kid\"")]
    NoKid(usize),
    /// Two keys with one `kid`.
    #[error("two keys have the kid {0:?}")]
    DuplicateKid(String),
    /// A key holds private or symmetric material (`d`, `p`, `q`, ..., `k`).
    #[error("key {0:?} holds private key material (\"{1}\"): a JWK Set lists public keys only")]
    Private(String, &'static str),
    /// A key type or curve other than EC P-384, RSA, OKP Ed25519.
    #[error("key {0:?}: {1} (EC P-384, RSA or OKP Ed25519 only)")]
    Unsupported(String, &'static str),
    /// A member is missing or not what it must be.
    #[error("key {0:?}: {1}")]
    Malformed(String, &'static str),
    /// An RSA modulus under [`MIN_RSA_BITS`] or over [`MAX_RSA_BITS`].
    #[error("key {kid:?}: an RSA modulus of {bits} bits (2048 to 8192 accepted)")]
    RsaSize {
        /// The key.
        kid: String,
        /// Its modulus's size.
        bits: usize,
    },
}

/// A client's public keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwkSet {
    keys: Vec<Jwk>,
}

impl JwkSet {
    /// A set of these keys (at least one, distinct `kid`s).
    ///
    /// # Errors
    /// [`JwkError::Count`], [`JwkError::DuplicateKid`].
    pub fn new(keys: Vec<Jwk>) -> Result<Self, JwkError> {
        if keys.is_empty() || keys.len() > MAX_KEYS {
            return Err(JwkError::Count);
        }
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].iter().any(|other| other.kid == k.kid) {
                return Err(JwkError::DuplicateKid(k.kid.clone()));
            }
        }
        Ok(Self { keys })
    }

    /// Parses a JWK Set: `{"keys": [...]}`, each key public, with a `kid`, of a supported type.
    ///
    /// # Errors
    /// [`JwkError`].
    pub fn parse(json: &[u8]) -> Result<Self, JwkError> {
        let value: Value = serde_json::from_slice(json)
            .map_err(|e| JwkError::NotASet(format!("line {} column {}", e.line(), e.column())))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwkError::NotASet("no \"keys\" array".into()))?;
        if keys.len() > MAX_KEYS {
            return Err(JwkError::Count);
        }
        Self::new(
            keys.iter()
                .enumerate()
                .map(|(i, k)| parse_key(i, k))
                .collect::<Result<_, _>>()?,
        )
    }

    /// The keys.
    pub fn keys(&self) -> &[Jwk] {
        &self.keys
    }

    /// The key an assertion signed with `alg` names: by `kid` when given (and it must be of
    /// `alg`'s type), else the only key of that type.
    pub fn select(&self, alg: Alg, kid: Option<&str>) -> Option<&Jwk> {
        let mut of_type = self.keys.iter().filter(|k| k.alg() == alg);
        match kid {
            Some(kid) => of_type.find(|k| k.kid == kid),
            None => match (of_type.next(), of_type.next()) {
                (Some(only), None) => Some(only),
                _ => None,
            },
        }
    }

    /// The set as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::json!({ "keys": self.keys.iter().map(Jwk::to_json).collect::<Vec<_>>() })
    }
}

/// The bytes of a member in unpadded base64url (non-empty).
fn b64_member(
    object: &Map<String, Value>,
    kid: &str,
    name: &'static str,
    malformed: &'static str,
) -> Result<Vec<u8>, JwkError> {
    object
        .get(name)
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| JwkError::Malformed(kid.into(), malformed))
}

fn parse_key(index: usize, value: &Value) -> Result<Jwk, JwkError> {
    let object = value
        .as_object()
        .ok_or_else(|| JwkError::NotASet(format!("key {index} is not an object")))?;
    let kid = object
        .get("kid")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or(JwkError::NoKid(index))?
        .to_owned();
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(JwkError::Private(kid, member));
    }
    let text = |name: &str| object.get(name).and_then(Value::as_str);
    if object.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err(JwkError::Malformed(kid, "\"use\" must be \"sig\""));
    }
    if let Some(ops) = object.get("key_ops") {
        let verifies = ops
            .as_array()
            .is_some_and(|ops| ops.iter().any(|o| o.as_str() == Some("verify")));
        if !verifies {
            return Err(JwkError::Malformed(
                kid,
                "\"key_ops\" must include \"verify\"",
            ));
        }
    }
    let key = match (text("kty"), text("crv")) {
        (Some("EC"), Some("P-384")) => {
            let x = b64_member(object, &kid, "x", "\"x\" is not 48 bytes of base64url")?;
            let y = b64_member(object, &kid, "y", "\"y\" is not 48 bytes of base64url")?;
            if x.len() != 48 || y.len() != 48 {
                return Err(JwkError::Malformed(
                    kid,
                    "\"x\" and \"y\" are 48 bytes each",
                ));
            }
            let mut point = Vec::with_capacity(97);
            point.push(4);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Key::P384(point)
        }
        (Some("EC"), _) => return Err(JwkError::Unsupported(kid, "an EC curve other than P-384")),
        (Some("RSA"), _) => {
            let n = b64_member(object, &kid, "n", "\"n\" is not base64url")?;
            let e = b64_member(object, &kid, "e", "\"e\" is not base64url")?;
            if n[0] == 0 || e[0] == 0 {
                return Err(JwkError::Malformed(
                    kid,
                    "\"n\" or \"e\" has a leading zero byte",
                ));
            }
            let bits = n.len() * 8 - n[0].leading_zeros() as usize;
            if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                return Err(JwkError::RsaSize { kid, bits });
            }
            // ring's bounds: an odd exponent from 3 to 2^33 - 1.
            let odd = e.last().is_some_and(|b| b & 1 == 1);
            if e.len() > 4 || !odd || e == [1] {
                return Err(JwkError::Malformed(
                    kid,
                    "\"e\" is not an odd exponent from 3 to 2^32 - 1",
                ));
            }
            Key::Rsa { n, e }
        }
        (Some("OKP"), Some("Ed25519")) => {
            let x = b64_member(object, &kid, "x", "\"x\" is not base64url")?;
            let bytes: [u8; 32] = x
                .try_into()
                .map_err(|_| JwkError::Malformed(kid.clone(), "\"x\" is not 32 bytes"))?;
            Key::Ed25519(VerifyKey::from_byte_array(bytes).map_err(|_| {
                JwkError::Malformed(kid.clone(), "\"x\" is not a valid Ed25519 key")
            })?)
        }
        (Some("OKP"), _) => {
            return Err(JwkError::Unsupported(
                kid,
                "an OKP curve other than Ed25519",
            ))
        }
        (Some(_), _) => {
            return Err(JwkError::Unsupported(
                kid,
                "a key type other than EC, RSA, OKP",
            ))
        }
        (None, _) => return Err(JwkError::Malformed(kid, "no \"kty\"")),
    };
    let jwk = Jwk { kid, key };
    if let Some(alg) = object.get("alg") {
        if alg.as_str() != Some(jwk.alg().name()) {
            return Err(JwkError::Malformed(
                jwk.kid,
                "\"alg\" does not match the key type (ES384 for P-384, RS384 for RSA, EdDSA for Ed25519)",
            ));
        }
    }
    Ok(jwk)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn ed_key() -> (medchain_core::keys::Identity, Value) {
        let id =
            medchain_core::keys::Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
        let jwk = Jwk::ed25519("ed", id.verify_key()).to_json();
        (id, jwk)
    }

    fn rsa_n(bits: usize) -> Vec<u8> {
        let mut n = vec![0xa5; bits.div_ceil(8)];
        n[0] = 0x80 >> ((8 - bits % 8) % 8);
        n
    }

    fn set(keys: Vec<Value>) -> Result<JwkSet, JwkError> {
        JwkSet::parse(json!({ "keys": keys }).to_string().as_bytes())
    }

    #[test]
    fn supported_keys_parse_and_round_trip() {
        let (_, ed) = ed_key();
        let ec = json!({"kty": "EC", "crv": "P-384", "kid": "ec", "x": b64(&[1; 48]), "y": b64(&[2; 48])});
        let rsa = json!({"kty": "RSA", "kid": "rsa", "n": b64(&rsa_n(2048)), "e": "AQAB", "use": "sig", "key_ops": ["verify"]});
        let keys = set(vec![ed, ec, rsa]).unwrap();
        assert_eq!(
            keys.keys().iter().map(Jwk::alg).collect::<Vec<_>>(),
            [Alg::EdDsa, Alg::Es384, Alg::Rs384]
        );
        assert_eq!(
            JwkSet::parse(keys.to_json().to_string().as_bytes()).unwrap(),
            keys
        );
        // Selection: by kid within the algorithm's type, or the only key of that type.
        assert_eq!(keys.select(Alg::Es384, Some("ec")).unwrap().kid(), "ec");
        assert_eq!(keys.select(Alg::Es384, None).unwrap().kid(), "ec");
        assert!(keys.select(Alg::Es384, Some("rsa")).is_none());
        assert!(keys.select(Alg::Es384, Some("nope")).is_none());
        let (_, ed2) = ed_key();
        let mut ed2 = ed2;
        ed2["kid"] = "ed2".into();
        let (_, ed1) = ed_key();
        let two = set(vec![ed1, ed2]).unwrap();
        assert!(
            two.select(Alg::EdDsa, None).is_none(),
            "ambiguous without a kid"
        );
        assert_eq!(two.select(Alg::EdDsa, Some("ed2")).unwrap().kid(), "ed2");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let (_, ed) = ed_key();
        let with = |extra: Value| {
            let mut k = ed.clone();
            for (name, v) in extra.as_object().unwrap() {
                if v.is_null() {
                    k.as_object_mut().unwrap().remove(name);
                } else {
                    k[name] = v.clone();
                }
            }
            set(vec![k]).unwrap_err()
        };
        assert!(matches!(
            with(json!({"d": "AAAA"})),
            JwkError::Private(_, "d")
        ));
        assert!(matches!(with(json!({"kid": null})), JwkError::NoKid(0)));
        assert!(matches!(with(json!({"kid": ""})), JwkError::NoKid(0)));
        assert!(matches!(
            with(json!({"use": "enc"})),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            with(json!({"key_ops": ["sign"]})),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            with(json!({"alg": "ES384"})),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            with(json!({"crv": "X25519"})),
            JwkError::Unsupported(..)
        ));
        assert!(matches!(
            with(json!({"kty": "oct"})),
            JwkError::Unsupported(..)
        ));
        assert!(matches!(
            with(json!({"kty": null})),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            with(json!({"x": b64(&[0; 31])})),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            with(json!({"x": "a+b/"})),
            JwkError::Malformed(..)
        ));
        // Padding is not base64url without padding.
        let padded = format!("{}=", b64(&[9; 32]));
        assert!(matches!(
            with(json!({"x": padded})),
            JwkError::Malformed(..)
        ));
        // A small-order point is no key.
        assert!(matches!(
            with(json!({"x": b64(&[0; 32])})),
            JwkError::Malformed(..)
        ));
        let ec = |x: usize, crv: &str| {
            set(vec![
                json!({"kty": "EC", "crv": crv, "kid": "ec", "x": b64(&vec![1; x]), "y": b64(&[2; 48])}),
            ])
        };
        assert!(matches!(
            ec(47, "P-384").unwrap_err(),
            JwkError::Malformed(..)
        ));
        assert!(matches!(
            ec(48, "P-256").unwrap_err(),
            JwkError::Unsupported(..)
        ));
        let rsa = |n: Vec<u8>, e: &[u8]| {
            set(vec![
                json!({"kty": "RSA", "kid": "rsa", "n": b64(&n), "e": b64(e)}),
            ])
        };
        assert_eq!(
            rsa(rsa_n(2047), &[1, 0, 1]).unwrap_err(),
            JwkError::RsaSize {
                kid: "rsa".into(),
                bits: 2047
            }
        );
        assert_eq!(
            rsa(rsa_n(1024), &[1, 0, 1]).unwrap_err(),
            JwkError::RsaSize {
                kid: "rsa".into(),
                bits: 1024
            }
        );
        assert!(rsa(rsa_n(8193), &[1, 0, 1]).is_err());
        assert!(rsa(rsa_n(4096), &[1, 0, 1]).is_ok());
        let mut leading = rsa_n(2048);
        leading.insert(0, 0);
        assert!(matches!(
            rsa(leading, &[1, 0, 1]).unwrap_err(),
            JwkError::Malformed(..)
        ));
        for e in [&[1u8][..], &[2], &[1, 0, 0, 0, 1]] {
            assert!(
                matches!(rsa(rsa_n(2048), e).unwrap_err(), JwkError::Malformed(..)),
                "{e:?}"
            );
        }
        // Sets: JSON, shape, count, duplicate kids.
        assert!(matches!(
            JwkSet::parse(b"{").unwrap_err(),
            JwkError::NotASet(_)
        ));
        assert!(matches!(
            JwkSet::parse(b"[]").unwrap_err(),
            JwkError::NotASet(_)
        ));
        assert_eq!(set(vec![]).unwrap_err(), JwkError::Count);
        assert_eq!(
            set(vec![ed.clone(); MAX_KEYS + 1]).unwrap_err(),
            JwkError::Count
        );
        assert_eq!(
            set(vec![ed.clone(), ed.clone()]).unwrap_err(),
            JwkError::DuplicateKid("ed".into())
        );
        // No message quotes key material.
        let secret = b64(&[7; 32]);
        let err = with(json!({"d": secret.clone()})).to_string();
        assert!(!err.contains(&secret), "{err}");
    }

    #[test]
    fn each_key_verifies_only_its_own_algorithm() {
        let (id, ed) = ed_key();
        let keys = set(vec![ed]).unwrap();
        let key = keys.select(Alg::EdDsa, None).unwrap();
        let input = "eyJhbGciOiJFZERTQSJ9.e30";
        let sig = id.sign_jws(input).unwrap();
        assert!(key.verify(Alg::EdDsa, input.as_bytes(), &sig));
        assert!(!key.verify(Alg::Es384, input.as_bytes(), &sig));
        assert!(!key.verify(Alg::EdDsa, b"eyJhbGciOiJFZERTQSJ9.e31", &sig));
        assert!(!key.verify(Alg::EdDsa, input.as_bytes(), &sig[..63]));
        assert_eq!(Alg::from_name("none"), None);
        assert_eq!(Alg::from_name("HS256"), None);
        assert_eq!(Alg::from_name("es384"), None);
        for alg in [Alg::Es384, Alg::Rs384, Alg::EdDsa] {
            assert_eq!(Alg::from_name(alg.name()), Some(alg));
        }
    }
}
