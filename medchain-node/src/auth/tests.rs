//! The token endpoint and the bearer check in process: every claim check, every attack refused
//! with its RFC 6749 error and nothing issued.

use super::*;
use medchain_core::keys::Identity;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};

const AUD: &str = "https://node.example/fhir/auth/token";
const NOW: u64 = 1_790_000_000;

/// The checked-in RSA test key (`tests/data/auth/README.md`).
const RSA_PK8: &[u8] = include_bytes!("../../tests/data/auth/client-rsa.pk8");

struct Keys {
    member: Identity,
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let pk8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        Self {
            member: Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng)),
            ec: EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pk8.as_ref(), &rng)
                .unwrap(),
            rsa: RsaKeyPair::from_pkcs8(RSA_PK8).unwrap(),
        }
    }

    fn jwks(&self) -> JwkSet {
        let rsa = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        JwkSet::new(vec![
            Jwk::p384("ec", self.ec.public_key().as_ref()).unwrap(),
            Jwk::rsa("rsa", &rsa.n, &rsa.e).unwrap(),
            Jwk::ed25519("member", self.member.verify_key()),
        ])
        .unwrap()
    }

    fn sign(&self, a: &ClientAssertion, alg: Alg) -> String {
        match alg {
            Alg::Es384 => a.sign_with(alg, |input| {
                self.ec
                    .sign(&SystemRandom::new(), input)
                    .unwrap()
                    .as_ref()
                    .to_vec()
            }),
            Alg::Rs384 => a.sign_with(alg, |input| {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &ring::signature::RSA_PKCS1_SHA384,
                        &SystemRandom::new(),
                        input,
                        &mut sig,
                    )
                    .unwrap();
                sig
            }),
            Alg::EdDsa => a.sign_eddsa(&self.member).unwrap(),
        }
    }
}

fn state(keys: &Keys, operator: bool) -> AuthState {
    AuthState::new(
        AuthSettings {
            audience: Some(AUD.into()),
            token_lifetime_seconds: 300,
            clients: vec![Client {
                id: "city-ehr".into(),
                keys: keys.jwks(),
                scopes: Scopes::parse(
                    "system/Observation.cruds system/Condition.rs system/Consent.crs",
                )
                .unwrap(),
                clinicians: vec!["okafor".into()],
                operator,
            }],
        },
        "127.0.0.1:7700".parse().unwrap(),
        false,
    )
}

fn assertion() -> ClientAssertion {
    ClientAssertion::new(
        "city-ehr",
        AUD,
        NOW,
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    )
}

/// `patient`'s self-assertion for [`AUD`] at [`NOW`].
fn patient_assertion(patient: &Identity) -> ClientAssertion {
    ClientAssertion::for_patient(
        &patient.verify_key(),
        AUD,
        NOW,
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    )
}

fn form(jwt: &str, scope: &str) -> Vec<u8> {
    token_request(jwt, scope).into_bytes()
}

/// Asks for a token; on refusal, checks that nothing was issued or remembered.
fn ask(state: &AuthState, jwt: &str, scope: &str) -> Result<TokenResponse, TokenError> {
    let before = (lock(&state.tokens).len(), lock(&state.replay).len());
    let answer = state.issue(&form(jwt, scope), NOW);
    if answer.is_err() {
        assert_eq!(
            (lock(&state.tokens).len(), lock(&state.replay).len()),
            before
        );
    }
    answer
}

#[test]
fn each_algorithm_gets_a_token_for_the_scopes_it_may_have() {
    let keys = Keys::new();
    let state = state(&keys, false);
    for (alg, kid) in [
        (Alg::Es384, "ec"),
        (Alg::Rs384, "rsa"),
        (Alg::EdDsa, "member"),
    ] {
        // With its kid, and (each key being the only one of its type) without.
        for a in [assertion().with_kid(kid), assertion()] {
            let token = ask(&state, &keys.sign(&a, alg), "system/Observation.rs").unwrap();
            assert_eq!(
                (token.token_type.as_str(), token.expires_in),
                ("bearer", 300)
            );
            assert_eq!(token.scope, "system/Observation.rs");
            assert_eq!(
                URL_SAFE_NO_PAD.decode(&token.access_token).unwrap().len(),
                32
            );
            let p = state.principal(&token.access_token, NOW + 1).unwrap();
            assert_eq!(p.client_id, "city-ehr");
            assert!(p.allows("Observation", Permission::Search));
            assert!(!p.allows("Observation", Permission::Create));
            assert!(p.may_act_for("okafor") && !p.may_act_for("mallory"));
            assert!(p.patient.is_none() && !p.operator);
            // Debug never shows the token.
            assert!(!format!("{token:?}").contains(&token.access_token));
        }
    }
    // Without `scope`, everything registered.
    let body = token_request(&keys.sign(&assertion(), Alg::EdDsa), "");
    let body = body.replace("scope=&", "");
    let token = state.issue(body.as_bytes(), NOW).unwrap();
    assert_eq!(
        token.scope,
        "system/Condition.rs system/Consent.crs system/Observation.cruds"
    );
}

#[test]
fn forged_and_misdirected_assertions_are_invalid_client() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let scope = "system/Observation.rs";
    let refused = |jwt: &str, expected: AssertionError| {
        let err = ask(&state, jwt, scope).unwrap_err();
        assert_eq!(err, TokenError::InvalidClient(expected));
        assert_eq!((err.code(), err.status().as_u16()), ("invalid_client", 401));
    };
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let claims = |a: &ClientAssertion| {
        a.signing_input(Alg::EdDsa)
            .split_once('.')
            .unwrap()
            .1
            .to_owned()
    };
    let a = assertion();
    // alg none, with an empty signature.
    refused(
        &format!("{}.{}.", b64(r#"{"alg":"none"}"#), claims(&a)),
        AssertionError::Alg,
    );
    // HS256 keyed with the public key (the classic confusion): refused on its alg.
    let hs = format!("{}.{}", b64(r#"{"alg":"HS256","typ":"JWT"}"#), claims(&a));
    let mac = ring::hmac::sign(
        &ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            keys.member.verify_key().as_byte_array(),
        ),
        hs.as_bytes(),
    );
    refused(
        &format!("{hs}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())),
        AssertionError::Alg,
    );
    // An EdDSA signature under a header claiming ES384 (and the ES384 key's kid).
    let ed_sig = keys
        .member
        .sign_jws(&a.clone().with_kid("ec").signing_input(Alg::Es384))
        .unwrap();
    refused(
        &format!(
            "{}.{}",
            a.clone().with_kid("ec").signing_input(Alg::Es384),
            URL_SAFE_NO_PAD.encode(ed_sig)
        ),
        AssertionError::Unverified,
    );
    // A kid of another type than the alg, or no such kid.
    refused(
        &keys.sign(&assertion().with_kid("rsa"), Alg::Es384),
        AssertionError::Unverified,
    );
    refused(
        &keys.sign(&assertion().with_kid("nope"), Alg::EdDsa),
        AssertionError::Unverified,
    );
    // Unknown client, signed by a registered key.
    let mut unknown = assertion();
    unknown.client_id = "mallory-ehr".into();
    refused(&keys.sign(&unknown, Alg::EdDsa), AssertionError::Unverified);
    // Another member's key.
    let other = Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    refused(
        &assertion().sign_eddsa(&other).unwrap(),
        AssertionError::Unverified,
    );
    // A bad signature: one bit flipped.
    let jwt = keys.sign(&assertion(), Alg::Es384);
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
    sig[10] ^= 1;
    refused(
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig)),
        AssertionError::Unverified,
    );
    // Tampered claims under a good signature: a later exp swapped in.
    let jwt = keys.sign(&assertion(), Alg::Rs384);
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let mut later = assertion();
    later.exp += 100;
    parts[1] = claims(&later);
    refused(&parts.join("."), AssertionError::Unverified);
    // iss ≠ sub: a well-signed assertion whose subject is someone else.
    let claims_json = serde_json::json!({"iss": "city-ehr", "sub": "other", "aud": AUD, "exp": NOW + 60, "jti": "x1"});
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"EdDSA"}"#),
        b64(&claims_json.to_string())
    );
    let sig = keys.member.sign_jws(&input).unwrap();
    refused(
        &format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        AssertionError::IssSub,
    );
    // Wrong audience, expiry, lifetime, nbf/iat in the future.
    let mut wrong_aud = assertion();
    wrong_aud.audience = "https://other.example/fhir/auth/token".into();
    refused(&keys.sign(&wrong_aud, Alg::EdDsa), AssertionError::Audience);
    let mut expired = assertion();
    expired.exp = NOW - 1;
    refused(&keys.sign(&expired, Alg::EdDsa), AssertionError::Expired);
    expired.exp = NOW;
    refused(&keys.sign(&expired, Alg::EdDsa), AssertionError::Expired);
    let mut long = assertion();
    long.exp = NOW + MAX_ASSERTION_LIFETIME + CLOCK_SKEW + 1;
    refused(&keys.sign(&long, Alg::EdDsa), AssertionError::TooLong);
    let mut future = assertion();
    future.iat = Some(NOW + CLOCK_SKEW + 1);
    refused(&keys.sign(&future, Alg::EdDsa), AssertionError::NotYet);
    // Within the skew: accepted.
    let mut skewed = assertion();
    skewed.iat = Some(NOW + CLOCK_SKEW);
    skewed.exp = NOW + MAX_ASSERTION_LIFETIME + CLOCK_SKEW;
    ask(&state, &keys.sign(&skewed, Alg::EdDsa), scope).unwrap();
    // A client_id parameter that names someone else.
    let body = format!(
        "{}&client_id=other",
        token_request(&keys.sign(&assertion(), Alg::EdDsa), scope)
    );
    assert_eq!(
        state.issue(body.as_bytes(), NOW).unwrap_err(),
        TokenError::InvalidClient(AssertionError::ClientId)
    );
}

#[test]
fn a_jti_buys_one_token() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let jwt = keys.sign(&assertion(), Alg::EdDsa);
    ask(&state, &jwt, "system/Observation.r").unwrap();
    assert_eq!(
        ask(&state, &jwt, "system/Observation.r").unwrap_err(),
        TokenError::InvalidClient(AssertionError::Replayed)
    );
    // Signed again with the same jti: still a replay.
    let mut again = assertion();
    again.jti = jwt_jti(&jwt);
    assert_eq!(
        ask(
            &state,
            &keys.sign(&again, Alg::Es384),
            "system/Observation.r"
        )
        .unwrap_err(),
        TokenError::InvalidClient(AssertionError::Replayed)
    );
}

fn jwt_jti(jwt: &str) -> String {
    jws::parse(jwt).unwrap().claims.jti
}

#[test]
fn scope_escalation_gets_the_intersection_or_invalid_scope() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let granted = |scope: &str| ask(&state, &keys.sign(&assertion(), Alg::EdDsa), scope);
    assert_eq!(
        granted("system/Condition.cruds system/Patient.r system/*.d")
            .unwrap()
            .scope,
        "system/Condition.rs system/Observation.d"
    );
    for only_unregistered in [
        "system/Patient.r",
        "patient/*.rs",
        "user/Observation.r",
        "system/Condition.d",
    ] {
        let err = granted(only_unregistered).unwrap_err();
        assert_eq!((err.code(), err.status().as_u16()), ("invalid_scope", 400));
    }
    for malformed in [
        "Openid",
        "launch/Patient system/Condition.rs",
        "system/Observation",
        "system/Observation.rs?x=1",
    ] {
        assert_eq!(granted(malformed).unwrap_err().code(), "invalid_scope");
    }
    // SMART's non-resource scopes are ignored, never granted; alone, they get nothing.
    assert_eq!(
        granted("launch/patient openid system/Condition.rs offline_access")
            .unwrap()
            .scope,
        "system/Condition.rs"
    );
    for only_non_resource in ["openid", "launch/patient fhirUser"] {
        assert_eq!(
            granted(only_non_resource).unwrap_err().code(),
            "invalid_scope"
        );
    }
}

#[test]
fn a_patient_asserts_for_themself_only_with_their_own_key() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let alice = Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    let own = patient_assertion(&alice);
    let token = ask(
        &state,
        &own.sign_eddsa(&alice).unwrap(),
        "patient/*.rs patient/Consent.crs",
    )
    .unwrap();
    assert_eq!(token.scope, "patient/*.rs patient/Consent.crs");
    let p = state.principal(&token.access_token, NOW).unwrap();
    assert_eq!(p.patient, Some(alice.verify_key()));
    assert_eq!(p.client_id, patient_client_id(&alice.verify_key()));
    assert!(p.allows("AuditEvent", Permission::Search) && p.allows("Consent", Permission::Create));
    assert!(!p.allows("Observation", Permission::Create) && !p.operator);
    assert!(p.reaches_patient(&alice.verify_key()));
    assert!(!p.reaches_patient(&keys.member.verify_key()));
    // system/ scopes: nothing a patient may have.
    let asked = patient_assertion(&alice);
    let err = ask(
        &state,
        &asked.sign_eddsa(&alice).unwrap(),
        "system/*.rs system/Observation.c",
    )
    .unwrap_err();
    assert_eq!(err.code(), "invalid_scope");
    // Mixed: only the patient part.
    let asked = patient_assertion(&alice);
    let token = ask(
        &state,
        &asked.sign_eddsa(&alice).unwrap(),
        "system/*.rs patient/Observation.rs",
    )
    .unwrap();
    assert_eq!(token.scope, "patient/Observation.rs");
    // Alice's id signed by someone else, or by her key with another alg.
    let forged = patient_assertion(&alice);
    assert_eq!(
        ask(
            &state,
            &forged.sign_eddsa(&keys.member).unwrap(),
            "patient/*.rs"
        )
        .unwrap_err(),
        TokenError::InvalidClient(AssertionError::Unverified)
    );
    assert_eq!(
        ask(&state, &keys.sign(&forged, Alg::Es384), "patient/*.rs").unwrap_err(),
        TokenError::InvalidClient(AssertionError::Unverified)
    );
}

#[test]
fn malformed_requests_are_invalid_request_or_unsupported() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let jwt = keys.sign(&assertion(), Alg::EdDsa);
    let good = token_request(&jwt, "system/Observation.r");
    let cases: Vec<(String, &str)> = vec![
        (
            good.replace("client_credentials", "authorization_code"),
            "unsupported_grant_type",
        ),
        (
            good.replace("grant_type=client_credentials&", ""),
            "invalid_request",
        ),
        (good.replace("&client_assertion=", "&x="), "invalid_request"),
        (
            good.replace("client_assertion_type=urn", "x=urn"),
            "invalid_request",
        ),
        (good.replace("jwt-bearer", "saml2-bearer"), "invalid_client"),
        (
            format!("{good}&scope=system%2FObservation.r"),
            "invalid_request",
        ),
        (
            good.replace("scope=system%2F", "scope=%ZZ"),
            "invalid_request",
        ),
        (
            good.replace("scope=system%2F", "scope=%FF"),
            "invalid_request",
        ),
        ("&".repeat(20) + &"a=1&".repeat(17), "invalid_request"),
        (good.replace(&jwt, "not.a.jwt"), "invalid_client"),
    ];
    for (body, code) in cases {
        let err = state.issue(body.as_bytes(), NOW).unwrap_err();
        assert_eq!(err.code(), code, "{body}");
        // Never the assertion, never a claim.
        let text = err.to_string();
        assert!(
            !text.contains("city-ehr") && !text.contains(&jwt[..20]),
            "{text}"
        );
    }
    assert_eq!(
        state.issue(&[0xff, 0xfe], NOW).unwrap_err().code(),
        "invalid_request"
    );
    assert_eq!(lock(&state.tokens).len(), 0);
}

#[test]
fn tokens_expire_and_a_full_store_answers_unavailable() {
    let keys = Keys::new();
    let mut state = state(&keys, true);
    let token = ask(
        &state,
        &keys.sign(&assertion(), Alg::EdDsa),
        "system/Condition.r",
    )
    .unwrap();
    assert!(
        state
            .principal(&token.access_token, NOW + 299)
            .unwrap()
            .operator
    );
    assert!(state.principal(&token.access_token, NOW + 300).is_none());
    assert!(state.principal("x", NOW).is_none());
    // An operator with no scope it may have still gets a token (for the operator API).
    let op = ask(
        &state,
        &keys.sign(&assertion(), Alg::EdDsa),
        "system/Patient.r",
    )
    .unwrap();
    assert_eq!(op.scope, "");
    state.tokens = Mutex::new(TokenStore::new(1));
    ask(
        &state,
        &keys.sign(&assertion(), Alg::EdDsa),
        "system/Condition.r",
    )
    .unwrap();
    let err = state
        .issue(
            &form(&keys.sign(&assertion(), Alg::EdDsa), "system/Condition.r"),
            NOW,
        )
        .unwrap_err();
    assert_eq!(
        (err.code(), err.status().as_u16()),
        ("temporarily_unavailable", 503)
    );
    state.replay = Mutex::new(ReplayCache::new(0));
    let err = ask(
        &state,
        &keys.sign(&assertion(), Alg::EdDsa),
        "system/Condition.r",
    )
    .unwrap_err();
    assert_eq!(err, TokenError::Unavailable);
}

#[test]
fn the_default_audience_follows_the_api_address_and_tls() {
    let settings = AuthSettings {
        audience: None,
        token_lifetime_seconds: 60,
        clients: Vec::new(),
    };
    let api: SocketAddr = "127.0.0.1:7701".parse().unwrap();
    assert_eq!(
        AuthState::new(settings.clone(), api, false).audience(),
        "http://127.0.0.1:7701/fhir/auth/token"
    );
    assert_eq!(
        AuthState::new(settings, api, true).audience(),
        "https://127.0.0.1:7701/fhir/auth/token"
    );
}

#[test]
fn auth_tables_are_checked() {
    let api: SocketAddr = "127.0.0.1:7700".parse().unwrap();
    let client = |id: &str, scopes: &[&str]| ClientConfig {
        client_id: id.into(),
        jwks: "k.json".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        clinicians: Vec::new(),
        operator: false,
    };
    let table = |clients: Vec<ClientConfig>| AuthConfig {
        audience: None,
        token_lifetime_seconds: 300,
        clients,
    };
    assert!(table(vec![client("a", &["system/*.rs"])])
        .check(api)
        .is_ok());
    let cases: Vec<(AuthConfig, &str)> = vec![
        (
            AuthConfig {
                token_lifetime_seconds: 0,
                ..table(vec![])
            },
            "token_lifetime_seconds",
        ),
        (
            AuthConfig {
                token_lifetime_seconds: 3601,
                ..table(vec![])
            },
            "token_lifetime_seconds",
        ),
        (
            AuthConfig {
                audience: Some("ftp://x".into()),
                ..table(vec![])
            },
            "audience must be",
        ),
        // What no assertion builder would name (`medchain_core::jwt::check_audience`): no
        // host, a space, a control character, longer than 2,048 bytes.
        (
            AuthConfig {
                audience: Some("https://".into()),
                ..table(vec![])
            },
            "audience must be",
        ),
        (
            AuthConfig {
                audience: Some("https://node.example/fhir auth/token".into()),
                ..table(vec![])
            },
            "audience must be",
        ),
        (
            AuthConfig {
                audience: Some("https://node.example/\u{7}".into()),
                ..table(vec![])
            },
            "audience must be",
        ),
        (
            AuthConfig {
                audience: Some(format!("https://n.example/{}", "a".repeat(2048))),
                ..table(vec![])
            },
            "audience must be",
        ),
        (
            table(vec![client("", &["system/*.r"])]),
            "client_id must be",
        ),
        (
            table(vec![client("a b", &["system/*.r"])]),
            "client_id must be",
        ),
        (
            table(vec![client("patient:00", &["system/*.r"])]),
            "client_id must be",
        ),
        (
            table(vec![
                client("a", &["system/*.r"]),
                client("a", &["system/*.r"]),
            ]),
            "listed twice",
        ),
        (
            table(vec![client("a", &["system/Obs"])]),
            "not a SMART resource scope",
        ),
        (
            table(vec![client("a", &["patient/*.rs"])]),
            "patient/ scopes",
        ),
        (table(vec![client("a", &[])]), "no scopes"),
    ];
    for (config, expected) in cases {
        let err = config.check(api).unwrap_err().to_string();
        assert!(err.contains(expected), "{expected}: {err}");
    }
    let anywhere: SocketAddr = "0.0.0.0:7700".parse().unwrap();
    assert!(table(vec![])
        .check(anywhere)
        .unwrap_err()
        .to_string()
        .contains("set [auth] audience"));
    let operator_only = ClientConfig {
        operator: true,
        ..client("ops", &[])
    };
    assert!(table(vec![operator_only]).check(api).is_ok());
}

#[test]
fn paths_fall_under_their_rule() {
    for (path, area) in [
        ("/health", Area::Public),
        ("/fhir/metadata", Area::Public),
        ("/fhir/.well-known/smart-configuration", Area::Public),
        ("/fhir/auth/token", Area::Public),
        ("/fhir/metadata/x", Area::Fhir),
        ("/fhir/Observation", Area::Fhir),
        ("/fhir", Area::Fhir),
        ("/fhir/../v1/status", Area::Fhir),
        ("/v1/status", Area::Operator),
        ("/metrics", Area::Operator),
        ("/v1", Area::Operator),
        ("/", Area::Other),
        ("/FHIR/metadata", Area::Other),
        ("/v1x", Area::Other),
    ] {
        assert_eq!(Area::of(path), area, "{path}");
    }
}

#[test]
fn bearer_headers_are_read_strictly() {
    let keys = Keys::new();
    let state = state(&keys, false);
    let token = ask(
        &state,
        &keys.sign(&assertion(), Alg::EdDsa),
        "system/Condition.r",
    )
    .unwrap();
    let headers = |values: &[&str]| {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        h
    };
    let good = format!("Bearer {}", token.access_token);
    // The real clock is far from NOW: the store is asked at now_secs(), so re-insert.
    let principal = state.principal(&token.access_token, NOW).unwrap();
    lock(&state.tokens)
        .insert(token.access_token.as_bytes(), principal, u64::MAX, 0)
        .unwrap();
    assert!(bearer(&headers(&[&good]), &state).is_ok());
    assert!(bearer(&headers(&[&good.replace("Bearer", "bearer")]), &state).is_ok());
    assert_eq!(bearer(&headers(&[]), &state), Err(AuthError::MissingToken));
    assert_eq!(
        bearer(&headers(&["Basic YTpi"]), &state),
        Err(AuthError::MissingToken)
    );
    assert_eq!(
        bearer(&headers(&[&good, &good]), &state),
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        bearer(&headers(&["Bearer"]), &state),
        Err(AuthError::InvalidToken)
    );
    assert_eq!(
        bearer(&headers(&["Bearer abc"]), &state),
        Err(AuthError::InvalidToken)
    );
    let unknown = format!("Bearer {}", URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert_eq!(
        bearer(&headers(&[&unknown]), &state),
        Err(AuthError::InvalidToken)
    );
}

#[test]
fn refusals_are_operation_outcomes_with_a_challenge() {
    let r = AuthError::InvalidToken.into_response();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()[header::CONTENT_TYPE], FHIR_JSON);
    assert!(r.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    let p = Principal {
        client_id: "c".into(),
        scopes: Scopes::parse("system/Observation.r").unwrap(),
        patient: None,
        clinicians: Vec::new(),
        operator: false,
    };
    assert!(p.require("Observation", Permission::Read).is_ok());
    let denied = p.require("Condition", Permission::Read).unwrap_err();
    assert_eq!(
        denied.to_string(),
        "the access token's scopes do not allow r on Condition"
    );
    assert_eq!(denied.into_response().status(), StatusCode::FORBIDDEN);
    assert_eq!(forbidden("another patient").status(), StatusCode::FORBIDDEN);
    let op = AuthError::NotOperator.operator_response();
    assert_eq!(op.status(), StatusCode::FORBIDDEN);
    assert_eq!(op.headers()[header::CONTENT_TYPE], "application/json");
    for e in [
        TokenError::InvalidClient(AssertionError::Expired),
        TokenError::InvalidScope("x"),
    ] {
        let r = e.into_response();
        assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    }
}

#[test]
fn the_smart_configuration_names_what_is_supported() {
    let keys = Keys::new();
    let config = state(&keys, false).smart_configuration();
    assert_eq!(config["token_endpoint"], AUD);
    assert_eq!(
        config["token_endpoint_auth_methods_supported"],
        serde_json::json!(["private_key_jwt"])
    );
    assert_eq!(
        config["token_endpoint_auth_signing_alg_values_supported"],
        serde_json::json!(["ES384", "RS384", "EdDSA"])
    );
    assert_eq!(
        config["grant_types_supported"],
        serde_json::json!(["client_credentials"])
    );
    let scopes = config["scopes_supported"].as_array().unwrap();
    assert!(
        scopes.contains(&"patient/*.rs".into())
            && scopes.contains(&"system/Observation.cruds".into())
    );
}

#[test]
fn form_components_decode() {
    assert_eq!(form_decode("a+b%2Fc").as_deref(), Some("a b/c"));
    assert_eq!(form_decode("%"), None);
    assert_eq!(form_decode("%4"), None);
    assert_eq!(form_decode("%zz"), None);
    assert_eq!(form_decode("%C3%A9").as_deref(), Some("é"));
    assert_eq!(form_decode("%C3"), None);
    let params = parse_form(b"a=1&&b&c=").unwrap();
    assert_eq!(
        params,
        [
            ("a".into(), "1".into()),
            ("b".into(), String::new()),
            ("c".into(), String::new())
        ]
    );
}
