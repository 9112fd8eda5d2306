//! Client assertions (RFC 7523 §2.2, SMART Backend Services): a JWT in JWS compact
//! serialization, read strictly. [`ClientAssertion`], the one way medchain code (this node's
//! tests and tools, the Python client, the wallet) makes one, is `medchain_core::jwt`'s.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
pub use medchain_core::jwt::{patient_client_id, ClientAssertion};
use medchain_core::keys::VerifyKey;
use serde_json::{Map, Value};
use thiserror::Error;

use super::jwk::Alg;

/// The longest client assertion accepted, in bytes.
pub const MAX_ASSERTION: usize = 8 * 1024;

/// The deepest nesting of arrays and objects accepted in a header or claims set (a claims
/// set is one object of strings and numbers: 1; an `aud` array: 2).
pub const MAX_JSON_DEPTH: usize = 3;

/// The longest `jti` accepted.
pub const MAX_JTI: usize = 256;

/// The prefix of a patient's self-asserted client id: `patient:` and the 64 hex digits of the
/// patient's ed25519 verify key.
pub const PATIENT_PREFIX: &str = medchain_core::jwt::PATIENT_CLIENT_PREFIX;

/// Why a client assertion is refused. Every one is `invalid_client` at the token endpoint
/// (RFC 7523 §3.2); the description is fixed text, never the assertion or a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AssertionError {
    /// Not three base64url parts separated by dots, or too long.
    #[error("the client assertion is not a JWS compact serialization")]
    Malformed,
    /// The JOSE header is not a small JSON object with a string `alg`.
    #[error("the client assertion's header is not a JSON object with \"alg\"")]
    Header,
    /// `alg` is not ES384, RS384 or EdDSA (`none` and HMAC included).
    #[error("the client assertion's alg is not ES384, RS384 or EdDSA")]
    Alg,
    /// The header has `crit`: no extension is understood here.
    #[error("the client assertion's header has \"crit\" extensions, none of which is supported")]
    Crit,
    /// `typ` is present and not `JWT`.
    #[error("the client assertion's typ is not JWT")]
    Typ,
    /// The claims set is not a small JSON object, or a claim has the wrong type.
    #[error("the client assertion's claims are not a JSON object of the right types")]
    Claims,
    /// A required claim is absent: the name says which.
    #[error("the client assertion has no {0:?} claim")]
    Missing(&'static str),
    /// The client is not registered, no key of it matches `kid` and `alg`, or the signature
    /// does not verify. One answer for all three: the endpoint does not tell which clients
    /// exist.
    #[error("the client assertion does not verify under a registered key of its issuer")]
    Unverified,
    /// `iss` and `sub` differ.
    #[error("the client assertion's iss and sub differ")]
    IssSub,
    /// A `client_id` parameter names another client than the assertion.
    #[error("client_id does not match the client assertion's issuer")]
    ClientId,
    /// `aud` is not this node's token endpoint.
    #[error("the client assertion's aud is not this token endpoint")]
    Audience,
    /// `exp` has passed.
    #[error("the client assertion has expired")]
    Expired,
    /// `exp` is more than five minutes ahead.
    #[error("the client assertion's exp is more than five minutes ahead")]
    TooLong,
    /// `nbf` or `iat` is in the future (beyond the allowed clock skew).
    #[error("the client assertion is not valid yet (nbf or iat in the future)")]
    NotYet,
    /// This `jti` was presented before.
    #[error("the client assertion's jti was used before")]
    Replayed,
}

/// A parsed, not yet verified, client assertion.
#[derive(Debug, Clone)]
pub(crate) struct Unverified<'a> {
    /// `header '.' payload`: what the signature covers.
    pub signing_input: &'a str,
    pub alg: Alg,
    pub kid: Option<String>,
    pub signature: Vec<u8>,
    pub claims: Claims,
}

/// The claims a node reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: u64,
    pub jti: String,
    pub nbf: Option<u64>,
    pub iat: Option<u64>,
}

/// Splits and decodes a compact JWS, checks the header and reads the claims. Nothing is
/// verified yet.
pub(crate) fn parse(assertion: &str) -> Result<Unverified<'_>, AssertionError> {
    if assertion.len() > MAX_ASSERTION {
        return Err(AssertionError::Malformed);
    }
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AssertionError::Malformed);
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| AssertionError::Malformed)
    };
    let header = json_object(&decode(header_b64)?).ok_or(AssertionError::Header)?;
    let payload = json_object(&decode(payload_b64)?).ok_or(AssertionError::Claims)?;
    let signature = decode(signature)?;
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(AssertionError::Header)?;
    let alg = Alg::from_name(alg).ok_or(AssertionError::Alg)?;
    if header.contains_key("crit") {
        return Err(AssertionError::Crit);
    }
    if header.get("typ").is_some_and(|t| t.as_str() != Some("JWT")) {
        return Err(AssertionError::Typ);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(AssertionError::Header),
    };
    let signing_input = &assertion[..header_b64.len() + 1 + payload_b64.len()];
    Ok(Unverified {
        signing_input,
        alg,
        kid,
        signature,
        claims: claims(&payload)?,
    })
}

fn claims(payload: &Map<String, Value>) -> Result<Claims, AssertionError> {
    let string = |name: &'static str| match payload.get(name) {
        None => Err(AssertionError::Missing(name)),
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(_) => Err(AssertionError::Claims),
    };
    let date = |name: &'static str| match payload.get(name) {
        None => Ok(None),
        Some(v) => numeric_date(v).map(Some).ok_or(AssertionError::Claims),
    };
    let aud = match payload.get("aud") {
        None => return Err(AssertionError::Missing("aud")),
        Some(Value::String(a)) => vec![a.clone()],
        Some(Value::Array(all)) if !all.is_empty() && all.len() <= 8 => all
            .iter()
            .map(|a| a.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or(AssertionError::Claims)?,
        Some(_) => return Err(AssertionError::Claims),
    };
    let jti = string("jti")?;
    if jti.len() > MAX_JTI {
        return Err(AssertionError::Claims);
    }
    Ok(Claims {
        iss: string("iss")?,
        sub: string("sub")?,
        aud,
        exp: date("exp")?.ok_or(AssertionError::Missing("exp"))?,
        jti,
        nbf: date("nbf")?,
        iat: date("iat")?,
    })
}

/// A NumericDate (RFC 7519 §2): seconds since the epoch, a non-negative number; a fraction is
/// dropped.
fn numeric_date(value: &Value) -> Option<u64> {
    let n = value.as_number()?;
    n.as_u64().or_else(|| {
        n.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
            .map(|f| f as u64)
    })
}

/// A JSON object no deeper than [`MAX_JSON_DEPTH`], or `None`. The depth is checked on the
/// bytes before the parser sees them.
fn json_object(bytes: &[u8]) -> Option<Map<String, Value>> {
    if json_depth(bytes)? > MAX_JSON_DEPTH {
        return None;
    }
    match serde_json::from_slice(bytes).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The deepest nesting of `[` and `{` outside strings; `None` if the brackets do not balance.
fn json_depth(bytes: &[u8]) -> Option<usize> {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.checked_sub(1)?,
            _ => {}
        }
    }
    (depth == 0).then_some(deepest)
}

/// The patient a self-asserted client id names, if it is one.
pub(crate) fn patient_of(client_id: &str) -> Option<VerifyKey> {
    let hex_key = client_id.strip_prefix(PATIENT_PREFIX)?;
    // Lower-case hex only: one spelling per patient.
    if hex_key.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    crate::config::parse_key(hex_key).filter(|k| hex_key.len() == 64 && k.to_string() == hex_key)
}

/// The body of a token request (`application/x-www-form-urlencoded`) presenting `assertion`
/// for `scope` (space-separated SMART scopes).
pub fn token_request(assertion: &str, scope: &str) -> String {
    format!(
        "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={}",
        form_encode(scope),
        form_encode(super::ASSERTION_TYPE),
        form_encode(assertion)
    )
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(char::from(b));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use medchain_core::keys::Identity;

    fn rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
        rand_core::UnwrapErr(getrandom::SysRng)
    }

    fn identity() -> Identity {
        Identity::generate(&mut rng())
    }

    fn encode(json: &str) -> String {
        URL_SAFE_NO_PAD.encode(json)
    }

    #[test]
    fn made_assertions_parse_back() {
        let id = identity();
        let a = ClientAssertion::new(
            "city-ehr",
            "https://n.example/fhir/auth/token",
            1000,
            &mut rng(),
        )
        .with_kid("k1");
        let jwt = a.sign_eddsa(&id).unwrap();
        let parsed = parse(&jwt).unwrap();
        assert_eq!(
            (parsed.alg, parsed.kid.as_deref()),
            (Alg::EdDsa, Some("k1"))
        );
        assert_eq!(parsed.signing_input, a.signing_input(Alg::EdDsa));
        assert_eq!(parsed.signature.len(), 64);
        let c = parsed.claims;
        assert_eq!((c.iss.as_str(), c.sub.as_str()), ("city-ehr", "city-ehr"));
        assert_eq!(c.aud, ["https://n.example/fhir/auth/token"]);
        assert_eq!((c.exp, c.iat, c.nbf), (1060, Some(1000), None));
        assert_eq!(c.jti.len(), 32);
        assert_ne!(
            ClientAssertion::new("a", "b", 1, &mut rng()).jti,
            ClientAssertion::new("a", "b", 1, &mut rng()).jti
        );
    }

    #[test]
    fn broken_assertions_are_refused_by_kind() {
        let claims = encode(r#"{"iss":"a","sub":"a","aud":"x","exp":5,"jti":"j"}"#);
        let with_header = |h: &str| format!("{}.{claims}.c2ln", encode(h));
        let cases = [
            ("", AssertionError::Malformed),
            ("a.b", AssertionError::Malformed),
            ("a.b.c.d", AssertionError::Malformed),
            ("e30.e30.+/", AssertionError::Malformed),
            (
                &format!("{}.{claims}.c2ln=", encode(r#"{"alg":"EdDSA"}"#)),
                AssertionError::Malformed,
            ),
            (&"a".repeat(MAX_ASSERTION + 1), AssertionError::Malformed),
            (&with_header("[]"), AssertionError::Header),
            (&with_header("{}"), AssertionError::Header),
            (&with_header(r#"{"alg":5}"#), AssertionError::Header),
            (&with_header(r#"{"alg":"none"}"#), AssertionError::Alg),
            (&with_header(r#"{"alg":"HS256"}"#), AssertionError::Alg),
            (&with_header(r#"{"alg":"HS384"}"#), AssertionError::Alg),
            (&with_header(r#"{"alg":"RS256"}"#), AssertionError::Alg),
            (&with_header(r#"{"alg":"ES256"}"#), AssertionError::Alg),
            (&with_header(r#"{"alg":"PS384"}"#), AssertionError::Alg),
            (
                &with_header(r#"{"alg":"EdDSA","crit":["exp"]}"#),
                AssertionError::Crit,
            ),
            (
                &with_header(r#"{"alg":"EdDSA","typ":"JOSE+JSON"}"#),
                AssertionError::Typ,
            ),
            (
                &with_header(r#"{"alg":"EdDSA","kid":7}"#),
                AssertionError::Header,
            ),
            // Deep JSON is refused before it is parsed.
            (
                &with_header(&format!(
                    r#"{{"alg":"EdDSA","x":{}1{}}}"#,
                    "[".repeat(100),
                    "]".repeat(100)
                )),
                AssertionError::Header,
            ),
            (&with_header(r#"{"alg":"EdDSA""#), AssertionError::Header),
        ];
        for (jwt, expected) in cases {
            assert_eq!(
                parse(jwt).unwrap_err(),
                expected,
                "{}",
                &jwt[..jwt.len().min(80)]
            );
        }
        let header = encode(r#"{"alg":"EdDSA"}"#);
        let with_claims = |c: &str| format!("{header}.{}.c2ln", encode(c));
        let cases = [
            ("[]", AssertionError::Claims),
            (
                r#"{"sub":"a","aud":"x","exp":5,"jti":"j"}"#,
                AssertionError::Missing("iss"),
            ),
            (
                r#"{"iss":"a","aud":"x","exp":5,"jti":"j"}"#,
                AssertionError::Missing("sub"),
            ),
            (
                r#"{"iss":"a","sub":"a","exp":5,"jti":"j"}"#,
                AssertionError::Missing("aud"),
            ),
            (
                r#"{"iss":"a","sub":"a","aud":"x","jti":"j"}"#,
                AssertionError::Missing("exp"),
            ),
            (
                r#"{"iss":"a","sub":"a","aud":"x","exp":5}"#,
                AssertionError::Missing("jti"),
            ),
            (
                r#"{"iss":"","sub":"a","aud":"x","exp":5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":1,"sub":"a","aud":"x","exp":5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":[],"exp":5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":[1],"exp":5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":"x","exp":"5","jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":"x","exp":-5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":"x","exp":5,"nbf":"x","jti":"j"}"#,
                AssertionError::Claims,
            ),
            (
                r#"{"iss":"a","sub":"a","aud":[[["x"]]],"exp":5,"jti":"j"}"#,
                AssertionError::Claims,
            ),
        ];
        for (c, expected) in cases {
            assert_eq!(parse(&with_claims(c)).unwrap_err(), expected, "{c}");
        }
        let long_jti = format!(
            r#"{{"iss":"a","sub":"a","aud":"x","exp":5,"jti":"{}"}}"#,
            "j".repeat(MAX_JTI + 1)
        );
        assert_eq!(
            parse(&with_claims(&long_jti)).unwrap_err(),
            AssertionError::Claims
        );
        // Accepted forms: an aud array, a fractional date.
        let jwt = with_claims(r#"{"iss":"a","sub":"a","aud":["y","x"],"exp":5.9,"jti":"j"}"#);
        let ok = parse(&jwt).unwrap();
        assert_eq!((ok.claims.aud.len(), ok.claims.exp), (2, 5));
    }

    #[test]
    fn json_depth_is_measured_outside_strings() {
        assert_eq!(json_depth(br#"{"a":"[[[{{{"}"#), Some(1));
        assert_eq!(json_depth(br#"{"a":"\"[[[","b":[{}]}"#), Some(3));
        assert_eq!(json_depth(b"{"), None);
        assert_eq!(json_depth(b"}{"), None);
    }

    #[test]
    fn patient_ids_name_exactly_one_key() {
        let id = identity();
        let key = id.verify_key();
        let client = patient_client_id(&key);
        assert_eq!(patient_of(&client), Some(key));
        assert_eq!(
            patient_of(&client.to_uppercase().replace("PATIENT:", "patient:")),
            None
        );
        assert_eq!(patient_of(&format!("{client}0")), None);
        assert_eq!(patient_of(&format!("Patient:{key}")), None);
        assert_eq!(patient_of(&format!("patient:{}", "00".repeat(32))), None);
        assert_eq!(patient_of("city-ehr"), None);
    }

    #[test]
    fn token_requests_are_form_encoded() {
        let body = token_request("a.b.c", "system/*.rs patient/Observation.r");
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=system%2F*.rs+patient%2FObservation.r\
             &client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer\
             &client_assertion=a.b.c"
        );
    }
}
