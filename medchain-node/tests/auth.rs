//! SMART Backend Services against a real `medchaind` process: each algorithm (ES384, RS384,
//! EdDSA with the member's own key, a patient's self-assertion) gets a token over HTTP; the
//! attacks on the token endpoint are refused with their RFC 6749 error and no token; what a
//! token opens (the operator API only for operators, `/fhir` for any) and what no token opens
//! (health and the public FHIR paths); tokens expire; bad `[auth]` tables stop the node at start.

mod support;

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hyper::Method;
use medchain::Identity;
use medchain_node::auth::{
    token_request, Alg, AuthConfig, ClientAssertion, ClientConfig, Jwk, JwkSet,
};
use medchain_node::client::{ApiClient, ClientError, RawResponse};
use medchain_node::service::now_ms;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair as _, RsaKeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use support::{Net, Node, MEDCHAIND};

/// The checked-in RSA test key (`tests/data/auth/README.md`).
const RSA_PK8: &[u8] = include_bytes!("data/auth/client-rsa.pk8");

const EHR_SCOPES: [&str; 3] = [
    "system/Observation.cruds",
    "system/Condition.rs",
    "system/Consent.crs",
];

struct Keys {
    member: Identity,
    ec: EcdsaKeyPair,
    rsa: RsaKeyPair,
}

impl Keys {
    fn new(member: Identity) -> Self {
        let rng = SystemRandom::new();
        let pk8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).expect("P-384");
        Self {
            member,
            ec: EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pk8.as_ref(), &rng)
                .expect("P-384"),
            rsa: RsaKeyPair::from_pkcs8(RSA_PK8).expect("the test RSA key"),
        }
    }

    /// The client's JWK Set: its P-384 key, its RSA key and the member's own ed25519 key.
    fn jwks(&self) -> serde_json::Value {
        let rsa = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.rsa.public());
        JwkSet::new(vec![
            Jwk::p384("ec", self.ec.public_key().as_ref()).expect("point"),
            Jwk::rsa("rsa", &rsa.n, &rsa.e).expect("rsa"),
            Jwk::ed25519("member", self.member.verify_key()),
        ])
        .expect("set")
        .to_json()
    }

    fn sign(&self, a: &ClientAssertion, alg: Alg) -> String {
        match alg {
            Alg::Es384 => a.sign_with(alg, |input| {
                let sig = self.ec.sign(&SystemRandom::new(), input).expect("signs");
                sig.as_ref().to_vec()
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
                    .expect("signs");
                sig
            }),
            _ => a.sign_eddsa(&self.member).expect("signs"),
        }
    }
}

fn now() -> u64 {
    now_ms() / 1000
}

/// A fresh assertion by `client` for `aud`, made now.
fn assertion(client: &str, aud: &str) -> ClientAssertion {
    ClientAssertion::new(
        client,
        aud,
        now(),
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    )
}

/// A fresh self-assertion by `patient` for `aud`, made now.
fn patient_assertion(patient: &Identity, aud: &str) -> ClientAssertion {
    ClientAssertion::for_patient(
        &patient.verify_key(),
        aud,
        now(),
        &mut rand_core::UnwrapErr(getrandom::SysRng),
    )
}

fn client(id: &str, jwks: &Path, scopes: &[&str], operator: bool) -> ClientConfig {
    ClientConfig {
        client_id: id.into(),
        jwks: jwks.to_path_buf(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        clinicians: vec!["okafor".into()],
        operator,
    }
}

/// One node written by `local-net`, with `[auth]`: `city-ehr` (the three keys) and `ops`
/// (operator, the member key), tokens living `lifetime` seconds. Not started.
fn net_with_auth(lifetime: u64) -> (Net, Keys) {
    let mut net = Net::write(1);
    let node = &mut net.nodes[0];
    let keys = Keys::new(node.identity());
    let jwks = node.config_path.with_file_name("clients.jwks.json");
    std::fs::write(&jwks, keys.jwks().to_string()).expect("jwks written");
    node.config.auth = Some(AuthConfig {
        audience: None,
        token_lifetime_seconds: lifetime,
        clients: vec![
            client("city-ehr", &jwks, &EHR_SCOPES, false),
            client("ops", &jwks, &[], true),
        ],
    });
    node.save_config();
    (net, keys)
}

fn audience(node: &Node) -> String {
    format!("http://{}/fhir/auth/token", node.api_addr())
}

/// Starts node 0 and waits for its (public) health check.
async fn start(net: &mut Net) {
    net.nodes[0].start();
    let api = net.nodes[0].api();
    let up = support::wait_for(Duration::from_secs(60), || {
        let api = api.clone();
        async move {
            matches!(
                api.request(Method::GET, "/health", None).await,
                Ok((200, _))
            )
        }
    })
    .await;
    assert!(up, "node did not come up\n{}", net.logs());
}

async fn get(api: &ApiClient, path: &str) -> RawResponse {
    api.call(Method::GET, path, "application/json", Vec::new())
        .await
        .expect("an answer")
}

fn json(raw: &RawResponse) -> serde_json::Value {
    serde_json::from_slice(&raw.body).expect("JSON")
}

/// A 401 FHIR refusal with its challenge.
fn assert_fhir_401(raw: &RawResponse) {
    assert_eq!(raw.status, 401);
    assert_eq!(raw.headers["content-type"], "application/fhir+json");
    assert!(raw.headers["www-authenticate"]
        .to_str()
        .expect("ascii")
        .starts_with("Bearer"));
    let outcome = json(raw);
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "login");
}

fn token_error(r: Result<medchain_node::auth::TokenResponse, ClientError>) -> (u16, String) {
    match r {
        Err(ClientError::Token { status, body }) => (status, body.error),
        other => panic!("expected a token error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_algorithm_gets_a_token_and_tokens_open_only_their_routes() {
    let (mut net, keys) = net_with_auth(300);
    // First without [auth]: /fhir answers 401 and no token is issued; the operator API is
    // today's open loopback API.
    let with_auth = net.nodes[0].config.auth.take();
    net.nodes[0].save_config();
    start(&mut net).await;
    let api = net.nodes[0].api();
    assert_fhir_401(&get(&api, "/fhir/Observation").await);
    let aud = audience(&net.nodes[0]);
    let jwt = keys.sign(&assertion("city-ehr", &aud), Alg::EdDsa);
    assert_eq!(
        token_error(api.token(&jwt, "system/*.rs").await),
        (401, "invalid_client".into())
    );
    assert!(api.status().await.expect("open without [auth]").running);
    assert_eq!(get(&api, "/metrics").await.status, 200);
    net.nodes[0].terminate(Duration::from_secs(30));

    net.nodes[0].config.auth = with_auth;
    net.nodes[0].save_config();
    start(&mut net).await;
    let node = &net.nodes[0];

    // No token: health and the public FHIR paths only.
    assert_eq!(get(&api, "/health").await.status, 200);
    let smart = get(&api, "/fhir/.well-known/smart-configuration").await;
    assert_eq!(smart.status, 200);
    assert_eq!(json(&smart)["token_endpoint"], aud.as_str());
    assert_ne!(get(&api, "/fhir/metadata").await.status, 401);
    for path in ["/fhir/Observation", "/fhir/Patient/1", "/fhir", "/anything"] {
        assert_fhir_401(&get(&api, path).await);
    }
    for path in ["/v1/status", "/metrics", "/v1/blocks/1"] {
        let raw = get(&api, path).await;
        assert_eq!(raw.status, 401, "{path}");
        assert_eq!(json(&raw)["error"]["code"], "unauthorized");
        assert!(raw.headers.contains_key("www-authenticate"));
    }
    let unknown = api.clone().with_bearer(&URL_SAFE_NO_PAD.encode([7u8; 32]));
    assert_fhir_401(&get(&unknown, "/fhir/Observation").await);

    // Each algorithm of the registered client.
    for (alg, kid) in [
        (Alg::Es384, "ec"),
        (Alg::Rs384, "rsa"),
        (Alg::EdDsa, "member"),
    ] {
        let jwt = keys.sign(&assertion("city-ehr", &aud).with_kid(kid), alg);
        let raw = api
            .call(
                Method::POST,
                "/fhir/auth/token",
                "application/x-www-form-urlencoded",
                token_request(&jwt, "system/Observation.rs system/Patient.r").into_bytes(),
            )
            .await
            .expect("answer");
        assert_eq!(
            raw.status,
            200,
            "{alg:?}: {}",
            String::from_utf8_lossy(&raw.body)
        );
        assert_eq!(raw.headers["cache-control"], "no-store");
        let token = json(&raw);
        assert_eq!(token["token_type"], "bearer");
        assert_eq!(token["expires_in"], 300);
        assert_eq!(
            token["scope"], "system/Observation.rs",
            "only what is registered"
        );
        let ehr = api
            .clone()
            .with_bearer(token["access_token"].as_str().expect("token"));
        // /fhir is open to it: past the bearer check, the search is judged on its own (a
        // search names its patient), never 401.
        let fhir = get(&ehr, "/fhir/Observation").await;
        assert_eq!(fhir.status, 400, "{alg:?}");
        assert_eq!(
            json(&fhir)["issue"][0]["details"]["coding"][0]["code"],
            "patient_required"
        );
        // The operator API is not.
        for path in ["/v1/status", "/metrics"] {
            let raw = get(&ehr, path).await;
            assert_eq!(raw.status, 403, "{path}");
            assert_eq!(json(&raw)["error"]["code"], "forbidden");
        }
    }

    // The operator's token opens the operator API (the member's own key, EdDSA).
    let jwt = keys.sign(&assertion("ops", &aud), Alg::EdDsa);
    let ops = api
        .token(&jwt, "system/*.rs")
        .await
        .expect("operator token");
    assert_eq!(ops.scope, "");
    let ops = api.clone().with_bearer(&ops.access_token);
    assert!(
        ops.status()
            .await
            .expect("status with the operator's token")
            .running
    );
    assert!(ops
        .metrics()
        .await
        .expect("metrics")
        .contains("medchain_height"));

    // A patient's self-assertion: their own key, patient/ scopes, no registration.
    let alice = Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    let own = patient_assertion(&alice, &aud);
    let token = api
        .token(
            &own.sign_eddsa(&alice).expect("signs"),
            "patient/AuditEvent.rs patient/Consent.c",
        )
        .await
        .expect("patient token");
    assert_eq!(token.scope, "patient/AuditEvent.rs patient/Consent.c");
    let wallet = api.clone().with_bearer(&token.access_token);
    // Past the bearer check: the patient's own trail (empty here), not another's.
    let own_trail = format!(
        "/fhir/AuditEvent?patient={}",
        hex::encode(alice.verify_key().as_byte_array())
    );
    assert_eq!(get(&wallet, &own_trail).await.status, 200);
    let other = format!("/fhir/AuditEvent?patient={}", "22".repeat(32));
    assert_eq!(get(&wallet, &other).await.status, 403);
    assert_eq!(get(&wallet, "/v1/status").await.status, 403);
    // Trying system/ scopes: nothing a patient may have.
    let own = patient_assertion(&alice, &aud);
    assert_eq!(
        token_error(
            api.token(&own.sign_eddsa(&alice).expect("signs"), "system/*.rs")
                .await
        ),
        (400, "invalid_scope".into())
    );
    // The node never logs a token or an assertion.
    let log = std::fs::read_to_string(&node.log).expect("log");
    assert!(log.contains("access token issued"), "{log}");
    let signature = jwt.rsplit('.').next().expect("signature");
    assert!(!log.contains(&token.access_token) && !log.contains(signature));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attacks_on_the_token_endpoint_are_refused_and_issue_nothing() {
    let (mut net, keys) = net_with_auth(300);
    start(&mut net).await;
    let api = net.nodes[0].api();
    let aud = audience(&net.nodes[0]);
    let scope = "system/Observation.rs";
    let fresh = || assertion("city-ehr", &aud);
    let b64 = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let payload = |a: &ClientAssertion| {
        let input = a.signing_input(Alg::EdDsa);
        input.split_once('.').expect("two parts").1.to_owned()
    };
    let mut attacks: Vec<(&str, String, &str)> = Vec::new();
    attacks.push((
        "alg none",
        format!("{}.{}.", b64(r#"{"alg":"none"}"#), payload(&fresh())),
        "invalid_client",
    ));
    // HS256 keyed with the client's public key.
    let hs = format!(
        "{}.{}",
        b64(r#"{"alg":"HS256","typ":"JWT"}"#),
        payload(&fresh())
    );
    let key = ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        keys.member.verify_key().as_byte_array(),
    );
    let mac = ring::hmac::sign(&key, hs.as_bytes());
    attacks.push((
        "HS256 with the public key",
        format!("{hs}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref())),
        "invalid_client",
    ));
    // An EdDSA signature in a token claiming ES384 with the P-384 key's kid.
    let confused = fresh().with_kid("ec");
    let input = confused.signing_input(Alg::Es384);
    let sig = keys.member.sign_jws(&input).expect("signs");
    attacks.push((
        "alg/key type mismatch",
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        "invalid_client",
    ));
    attacks.push((
        "wrong kid",
        keys.sign(&fresh().with_kid("nope"), Alg::Es384),
        "invalid_client",
    ));
    let mut unknown = fresh();
    unknown.client_id = "mallory-ehr".into();
    attacks.push((
        "unknown client",
        keys.sign(&unknown, Alg::EdDsa),
        "invalid_client",
    ));
    let iss_sub = serde_json::json!({"iss": "city-ehr", "sub": "ops", "aud": aud, "exp": now() + 60, "jti": "iss-sub"});
    let input = format!(
        "{}.{}",
        b64(r#"{"alg":"EdDSA"}"#),
        b64(&iss_sub.to_string())
    );
    let sig = keys.member.sign_jws(&input).expect("signs");
    attacks.push((
        "iss != sub",
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
        "invalid_client",
    ));
    let mut wrong_aud = fresh();
    wrong_aud.audience = "https://elsewhere.example/fhir/auth/token".into();
    attacks.push((
        "wrong aud",
        keys.sign(&wrong_aud, Alg::Rs384),
        "invalid_client",
    ));
    let mut expired = fresh();
    expired.exp = now() - 10;
    attacks.push(("expired", keys.sign(&expired, Alg::Es384), "invalid_client"));
    let mut far = fresh();
    far.exp = now() + 3600;
    attacks.push((
        "exp too far ahead",
        keys.sign(&far, Alg::EdDsa),
        "invalid_client",
    ));
    let good = keys.sign(&fresh(), Alg::Es384);
    let (input, sig) = good.rsplit_once('.').expect("three parts");
    let mut sig = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    sig[3] ^= 0x80;
    attacks.push((
        "bad signature",
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig)),
        "invalid_client",
    ));
    let signed = keys.sign(&fresh(), Alg::Rs384);
    let mut parts: Vec<String> = signed.split('.').map(str::to_owned).collect();
    let mut later = fresh();
    later.exp += 200;
    parts[1] = payload(&later);
    attacks.push(("tampered claims", parts.join("."), "invalid_client"));
    let deep = format!(
        r#"{{"alg":"EdDSA","x":{}0{}}}"#,
        "[".repeat(64),
        "]".repeat(64)
    );
    attacks.push((
        "deep JSON header",
        format!("{}.{}.AAAA", b64(&deep), payload(&fresh())),
        "invalid_client",
    ));
    for (what, jwt, code) in attacks {
        let refused = api.token(&jwt, scope).await;
        assert_eq!(token_error(refused).1, code, "{what}");
    }
    // Replay: the first presentation buys a token, the second nothing.
    let once = keys.sign(&fresh(), Alg::EdDsa);
    api.token(&once, scope).await.expect("first use");
    assert_eq!(
        token_error(api.token(&once, scope).await),
        (401, "invalid_client".into())
    );
    // Scope escalation: the intersection, or invalid_scope when nothing is left.
    let wide = api
        .token(&keys.sign(&fresh(), Alg::EdDsa), "system/*.cruds")
        .await
        .expect("intersection");
    assert_eq!(
        wide.scope,
        "system/Condition.rs system/Consent.crs system/Observation.cruds"
    );
    assert_eq!(
        token_error(
            api.token(
                &keys.sign(&fresh(), Alg::EdDsa),
                "system/Patient.r user/*.rs"
            )
            .await
        ),
        (400, "invalid_scope".into())
    );
    // Malformed and oversized forms.
    let post = |content_type: &'static str, body: Vec<u8>| {
        let api = api.clone();
        async move {
            let raw = api
                .call(Method::POST, "/fhir/auth/token", content_type, body)
                .await
                .expect("answer");
            (
                raw.status,
                json(&raw)["error"].as_str().unwrap_or_default().to_owned(),
                raw,
            )
        }
    };
    let form = token_request(&keys.sign(&fresh(), Alg::EdDsa), scope).into_bytes();
    let (status, code, raw) = post("application/json", form.clone()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_request"));
    assert!(json(&raw).get("access_token").is_none());
    let mut oversized = form.clone();
    oversized.extend(std::iter::repeat_n(b'a', 17 * 1024));
    assert_eq!(
        post("application/x-www-form-urlencoded", oversized).await.1,
        "invalid_request"
    );
    let twice = [form.as_slice(), b"&grant_type=client_credentials"].concat();
    assert_eq!(
        post("application/x-www-form-urlencoded", twice).await.1,
        "invalid_request"
    );
    assert_eq!(
        post("application/x-www-form-urlencoded", b"%zz=%".to_vec())
            .await
            .1,
        "invalid_request"
    );
    let grant = String::from_utf8(form)
        .expect("utf-8")
        .replace("client_credentials", "password");
    assert_eq!(
        post("application/x-www-form-urlencoded", grant.into_bytes())
            .await
            .1,
        "unsupported_grant_type"
    );
    // The node still serves after all that.
    assert_eq!(get(&api, "/health").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_stops_working_when_it_expires() {
    let (mut net, keys) = net_with_auth(3);
    start(&mut net).await;
    let api = net.nodes[0].api();
    let aud = audience(&net.nodes[0]);
    let jwt = keys.sign(&assertion("ops", &aud), Alg::EdDsa);
    let token = api.token(&jwt, "").await.expect("token");
    assert_eq!(token.expires_in, 3);
    let ops = api.clone().with_bearer(&token.access_token);
    // Good for at least two seconds (expiry is counted in whole seconds), then dead.
    let first = get(&ops, "/v1/status").await.status;
    tokio::time::sleep(Duration::from_millis(4_100)).await;
    let after = get(&ops, "/v1/status").await;
    assert_eq!((first, after.status), (200, 401));
    assert!(after.headers["www-authenticate"]
        .to_str()
        .expect("ascii")
        .contains("invalid_token"));
}

/// Bad `[auth]` tables and JWK Sets stop `medchaind run` with exit status 2 and a message
/// that names the problem, never key material.
#[test]
fn bad_auth_tables_stop_the_node_at_start() {
    let mut net = Net::write(1);
    let node = &mut net.nodes[0];
    let dir = node.config_path.parent().expect("dir").to_path_buf();
    let member = node.identity();
    let ed = Jwk::ed25519("member", member.verify_key()).to_json();
    let write = |name: &str, value: serde_json::Value| {
        let path = dir.join(name);
        std::fs::write(&path, value.to_string()).expect("written");
        path
    };
    let good = write("good.json", serde_json::json!({ "keys": [ed] }));
    let mut private = ed.clone();
    private["d"] = URL_SAFE_NO_PAD.encode([9u8; 32]).into();
    let private = write("private.json", serde_json::json!({ "keys": [private] }));
    let mut weak_n = vec![0xa7u8; 128];
    weak_n[0] = 0xc1;
    let weak = write(
        "weak.json",
        serde_json::json!({"keys": [{"kty": "RSA", "kid": "old", "n": URL_SAFE_NO_PAD.encode(&weak_n), "e": "AQAB"}]}),
    );
    let cases: Vec<(Vec<ClientConfig>, &str)> = vec![
        (
            vec![client("a", &dir.join("missing.json"), &EHR_SCOPES, false)],
            "cannot read",
        ),
        (
            vec![client("a", &private, &EHR_SCOPES, false)],
            "private key material",
        ),
        (vec![client("a", &weak, &EHR_SCOPES, false)], "1024 bits"),
        (
            vec![
                client("a", &good, &EHR_SCOPES, false),
                client("a", &good, &EHR_SCOPES, false),
            ],
            "listed twice",
        ),
        (
            vec![client("a", &good, &["system/Observation.write?x"], false)],
            "not a SMART resource scope",
        ),
        (
            vec![client("a", &good, &["patient/*.rs"], false)],
            "patient/ scopes",
        ),
    ];
    for (clients, expected) in cases {
        node.config.auth = Some(AuthConfig {
            audience: None,
            token_lifetime_seconds: 300,
            clients,
        });
        node.save_config();
        let out = std::process::Command::new(MEDCHAIND)
            .args(["run", "--config"])
            .arg(&node.config_path)
            .output()
            .expect("medchaind runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {stderr}");
        assert!(
            stderr.contains("auth: ") && stderr.contains(expected),
            "{expected}: {stderr}"
        );
        assert!(
            !stderr.contains(&URL_SAFE_NO_PAD.encode([9u8; 32])),
            "{stderr}"
        );
    }
}
