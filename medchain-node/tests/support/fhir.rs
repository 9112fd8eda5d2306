//! The FHIR API's test helpers (`tests/fhir_api.rs`, `benches/fhir.rs`): clients registered
//! with their keys and node-held clinicians, tokens, FHIR exchanges, a patient's bundle.

use std::time::{Duration, Instant};

use base64::Engine as _;
use getrandom::SysRng;
use hyper::Method;
use medchain::{Identity, SealedWriterKey};
use medchain_core::encoding::Encode;
use medchain_core::keys::BackupParams;
use medchain_node::auth::{AuthConfig, ClientAssertion, ClientConfig, Jwk};
use medchain_node::client::{metric_value, ApiClient};
use medchain_node::keyfile;
use medchain_node::people::{create_clinician, Issuer};
use medchain_node::service::now_ms;
use rand_core::UnwrapErr;
use serde_json::{json, Value};

use super::Net;

const DAY: u64 = 86_400_000;

pub fn rng() -> UnwrapErr<SysRng> {
    UnwrapErr(SysRng)
}

pub fn hex_key(identity: &Identity) -> String {
    hex::encode(identity.verify_key().as_byte_array())
}

/// One FHIR exchange: status, `Location`, JSON body.
pub async fn fhir(
    api: &ApiClient,
    method: Method,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, Option<String>, Value) {
    let (status, headers, value) = fhir_with_headers(api, method, path, token, extra, body).await;
    let location = header_text(&headers, "location");
    (status, location, value)
}

/// One FHIR exchange: status, every response header, JSON body.
pub async fn fhir_with_headers(
    api: &ApiClient,
    method: Method,
    path: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
    body: Option<Vec<u8>>,
) -> (u16, hyper::HeaderMap, Value) {
    let bearer = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(b) = &bearer {
        headers.push(("authorization", b));
    }
    headers.extend_from_slice(extra);
    let raw = api
        .call_with(
            method,
            path,
            "application/fhir+json",
            &headers,
            body.unwrap_or_default(),
        )
        .await
        .expect("exchange");
    let value = serde_json::from_slice(&raw.body).unwrap_or(Value::Null);
    (raw.status, raw.headers, value)
}

/// A response header as text.
pub fn header_text(headers: &hyper::HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn wait_until<F, Fut>(limit: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

pub fn json_body(value: &Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(value).expect("json"))
}

/// The stable code of an OperationOutcome's first issue.
pub fn code(outcome: &Value) -> String {
    assert_eq!(outcome["resourceType"], "OperationOutcome", "{outcome}");
    outcome["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .or_else(|| outcome["issue"][0]["code"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A bearer token for a signed client assertion, with `scope`.
pub async fn token(api: &ApiClient, assertion: String, scope: &str) -> String {
    api.token(&assertion, scope)
        .await
        .expect("token")
        .access_token
        .clone()
}

pub fn audience(api: &ApiClient) -> String {
    format!("http://{}/fhir/auth/token", api.addr())
}

pub async fn ehr_token(api: &ApiClient, client: &str, key: &Identity, scope: &str) -> String {
    let assertion = ClientAssertion::new(client, &audience(api), now_ms() / 1000, &mut rng())
        .with_kid("ehr-1")
        .sign_eddsa(key)
        .expect("assertion");
    token(api, assertion, scope).await
}

pub async fn patient_token(api: &ApiClient, patient: &Identity) -> String {
    let assertion = ClientAssertion::for_patient(
        &patient.verify_key(),
        &audience(api),
        now_ms() / 1000,
        &mut rng(),
    )
    .sign_eddsa(patient)
    .expect("assertion");
    token(api, assertion, "patient/*.rs patient/Consent.c").await
}

/// Registers `client` (EdDSA key `key`, every system scope, acting for `clinicians`) and
/// creates `clinicians` at node `i`.
pub fn register(
    net: &mut Net,
    i: usize,
    client: &str,
    key: &Identity,
    clinicians: &[&str],
) -> Vec<Identity> {
    let node = &mut net.nodes[i];
    let dir = node.config_path.parent().expect("dir").to_path_buf();
    let jwks = dir.join(format!("{client}.jwks.json"));
    let set = json!({"keys": [Jwk::ed25519("ehr-1", key.verify_key()).to_json()]});
    std::fs::write(&jwks, set.to_string()).expect("jwks");
    let member = node.identity();
    let pass = keyfile::read_passphrase(node.config.passphrase_file.as_deref(), "", false)
        .expect("passphrase");
    let chain = net.genesis.chain_id();
    let mut identities = Vec::new();
    for name in clinicians {
        let entry = create_clinician(
            &dir.join("clinicians"),
            name,
            Issuer {
                member: &member,
                chain,
                expires_ms: now_ms() + 365 * DAY,
            },
            pass.as_bytes(),
            BackupParams::dangerous_test_only(),
            &mut rng(),
        )
        .expect("clinician");
        identities.push(keyfile::load_identity(&entry.identity, pass.as_bytes()).expect("load"));
        node.config.clinicians.push(entry);
    }
    node.config.auth = Some(AuthConfig {
        audience: None,
        token_lifetime_seconds: 300,
        clients: vec![ClientConfig {
            client_id: client.into(),
            jwks,
            scopes: vec!["system/*.cruds".into()],
            clinicians: clinicians.iter().map(|c| (*c).to_owned()).collect(),
            operator: true,
        }],
    });
    node.save_config();
    identities
}

pub fn enrolment_parameters(alice: &Identity, net: &Net, i: usize) -> Value {
    let member = net.nodes[i].identity();
    let sealed =
        SealedWriterKey::export(alice, &net.genesis.chain_id(), &member.public(), &mut rng())
            .expect("enrolment");
    json!({"resourceType": "Parameters", "parameter": [{"name": "enrolment",
        "valueBase64Binary": base64::engine::general_purpose::STANDARD.encode(sealed.to_bytes())}]})
}

/// Alice's US Core-style transaction Bundle: Patient, Encounter, HbA1c, Condition, linked by
/// `urn:uuid:` references.
pub fn alice_bundle(alice_key: &str) -> Value {
    json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:0b7a4ad8-7d3e-4b0e-9f59-0d7f0f3c9e01",
             "resource": {"resourceType": "Observation", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
                "subject": {"reference": "urn:uuid:6b3f4c2e-1d2a-4f5e-8a7b-9c0d1e2f3a4b"},
                "encounter": {"reference": "urn:uuid:9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a"},
                "effectiveDateTime": "2026-10-14T09:30:00Z",
                "valueQuantity": {"value": 7.9, "unit": "%", "system": "http://unitsofmeasure.org", "code": "%"}},
             "request": {"method": "POST", "url": "Observation"}},
            {"fullUrl": "urn:uuid:9d8c7b6a-5f4e-4d3c-b2a1-0f9e8d7c6b5a",
             "resource": {"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": "urn:uuid:6b3f4c2e-1d2a-4f5e-8a7b-9c0d1e2f3a4b"},
                "period": {"start": "2026-10-14T09:00:00Z", "end": "2026-10-14T10:00:00Z"}},
             "request": {"method": "POST", "url": "Encounter"}},
            {"fullUrl": "urn:uuid:6b3f4c2e-1d2a-4f5e-8a7b-9c0d1e2f3a4b",
             "resource": {"resourceType": "Patient",
                "identifier": [{"system": "urn:medchain:patient-key", "value": alice_key}],
                "name": [{"family": "Example", "given": ["Alice"]}], "gender": "female", "birthDate": "1970-03-02"},
             "request": {"method": "POST", "url": "Patient"}},
            {"fullUrl": "urn:uuid:1f2e3d4c-5b6a-4978-8695-a4b3c2d1e0f9",
             "resource": {"resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}]},
                "subject": {"reference": "urn:uuid:6b3f4c2e-1d2a-4f5e-8a7b-9c0d1e2f3a4b"},
                "onsetDateTime": "2019-05-01"},
             "request": {"method": "POST", "url": "Condition"}}
        ]
    })
}

pub fn submitted(text: &str) -> f64 {
    metric_value(text, "medchain_transactions_submitted_total").unwrap_or(0.0)
}

/// Waits until the APIs of `ehrs`' nodes answer, takes each EHR's token (EdDSA, every system
/// scope), and waits until each of those nodes has its 3 peers: per EHR, the client without a
/// token, the client with it, and the token.
pub async fn connect_ehrs(
    net: &Net,
    ehrs: &[(usize, &str, &Identity)],
) -> Vec<(ApiClient, ApiClient, String)> {
    let mut out = Vec::with_capacity(ehrs.len());
    for (i, _, _) in ehrs {
        let raw = net.nodes[*i].api().with_timeout(Duration::from_secs(120));
        let up = wait_until(Duration::from_secs(60), || async {
            raw.request(Method::GET, "/health", None)
                .await
                .is_ok_and(|(s, _)| s == 200)
        })
        .await;
        assert!(up, "a node did not start\n{}", net.logs());
    }
    for (i, client, key) in ehrs {
        let raw = net.nodes[*i].api().with_timeout(Duration::from_secs(120));
        let token = ehr_token(&raw, client, key, "system/*.cruds").await;
        let api = raw.clone().with_bearer(&token);
        let connected = wait_until(Duration::from_secs(60), || async {
            api.status().await.is_ok_and(|s| s.peers_connected >= 3)
        })
        .await;
        assert!(connected, "not connected in time\n{}", net.logs());
        out.push((raw, api, token));
    }
    out
}

/// `patient`'s signed consent for `reader` to read for treatment, as a FHIR Consent whose
/// `sourceAttachment` carries the signed body; and the body.
pub fn treatment_consent(
    patient: &Identity,
    reader: &Identity,
    chain: &medchain_core::hash::ChainId,
) -> (Value, medchain::TxBody) {
    let grant = medchain::Consent {
        patient: patient.public(),
        issued_ms: now_ms(),
        summary: "this clinician may read my results for my treatment".into(),
        period: medchain_core::consent::Period::default(),
        emergency: None,
        provisions: vec![medchain::Provision::permit()
            .actor(medchain::Actor::Party(reader.verify_key()))
            .action(medchain_core::consent::Action::Read)
            .purpose(medchain::Purpose::Treat)],
    }
    .grant_body(patient, chain)
    .expect("grant");
    let resource = json!({"resourceType": "Consent", "status": "active",
        "sourceAttachment": {"contentType": "application/vnd.medchain.signed-body",
            "data": base64::engine::general_purpose::STANDARD.encode(grant.to_bytes())}});
    (resource, grant)
}
