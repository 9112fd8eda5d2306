//! The FHIR R4 REST API (`/fhir`, JSON, `application/fhir+json`): what an EHR calls
//! (`docs/fhir-api.md`).
//!
//! | interaction | path | what the node does |
//! | --- | --- | --- |
//! | capabilities | `GET /fhir/metadata` | the `CapabilityStatement` (no token needed) |
//! | enrol | `POST /fhir/Patient/$enrol` | keeps the patient's enrolment (the wallet's sealed writer key) |
//! | create | `POST /fhir/{type}` | validates, seals for the patient and this member, classifies, indexes, commits; `201` + `Location` |
//! | transaction | `POST /fhir` | a `transaction` Bundle of one patient: `urn:uuid:` references resolved, every entry validated before any is sealed, one batch |
//! | read | `GET /fhir/{type}/{id}` | asks the record's holder for the key in the clinician's name (consent judged as validators will), waits for the release and its access log to commit, opens it |
//! | search | `GET /fhir/{type}?patient=…&code=…` | the patient's records of that type whose blinded codes match, newest first, each read as above; `_count`, `_offset`, `next` links |
//! | consent | `POST /fhir/Consent`, `GET /fhir/Consent/{id}`, `GET /fhir/Consent?patient=…`, `POST /fhir/Consent/{id}/$revoke` | the patient-signed consent and revocation, as the wallet made them |
//! | audit | `GET /fhir/AuditEvent?patient=…` | the patient's audit trail from the chain (IHE BALP-shaped) |
//! | research | `POST /fhir/$export`, `GET /fhir/$export-status/{job}`, `GET /fhir/$export-output/{job}/{type}.ndjson` | FHIR Bulk Data: the researcher's signed request judged by the one research policy, de-identified rows of consenting patients, served once the release log commits |
//!
//! Every request but `metadata` carries a bearer token ([`crate::auth`]); a clinical read or
//! search also names the clinician the client acts for (`X-Medchain-Clinician`) and the purpose of
//! use (`X-Medchain-Purpose-Of-Use`, an HL7 v3 PurposeOfUse code). Every error is an
//! `OperationOutcome` whose `details` carry a stable code (system [`ERROR_SYSTEM`]); none echoes
//! what the client sent or reveals a record's content.

use std::collections::HashMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};
use base64::Engine as _;
use medchain::{
    Consent, KeyAnswer, KeyRequestId, OpenError, Purpose, RecordDraft, RecordError,
    RequestKeyError, SealedWriterKey, TxBody, VerifyKey,
};
use medchain_core::access::audit_event;
use medchain_core::consent::{consent_to_fhir, ConsentState, DEFAULT_CODE_SYSTEMS};
use medchain_core::encoding::Decode;
use medchain_core::hash::{RecordId, TxId};
use medchain_core::ledger::{RecordEntry, StateView};
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::api::{ApiError, ApiState};
use crate::auth::{Permission, Principal};
use crate::service::{now_ms, KeyRequestStatus, Running};

/// The media type of every FHIR body.
pub const FHIR_JSON: &str = "application/fhir+json";
/// The header naming the node-held clinician a request acts for.
pub const CLINICIAN_HEADER: &str = "x-medchain-clinician";
/// The header carrying the purpose of use (`TREAT`, `ETREAT`, ...).
pub const PURPOSE_HEADER: &str = "x-medchain-purpose-of-use";
/// The identifier system of a patient's medchain key (64 hex digits): a `Patient` resource
/// names its patient with it, and every other resource refers to `Patient/{key}`.
pub const PATIENT_KEY_SYSTEM: &str = "urn:medchain:patient-key";
/// The response header naming the transaction a patient-signed act (a Consent, a revocation)
/// was submitted in: its id (hex), for `GET /v1/transactions/{id}` and
/// `GET /v1/transactions/{id}/proof` (the app proves its consent committed with the wallet's
/// light client).
pub const TRANSACTION_HEADER: &str = "x-medchain-transaction";

/// The `contentType` of a `sourceAttachment` (a Consent) or the media type of a parameter that
/// holds a patient-signed body's canonical bytes.
pub const SIGNED_BODY_TYPE: &str = "application/vnd.medchain.signed-body";
/// The code system of the stable error codes in an `OperationOutcome`'s `details`.
pub const ERROR_SYSTEM: &str = "urn:medchain:fhir-error";
/// The largest FHIR request body (a patient's whole bundle).
pub const MAX_FHIR_BODY: usize = 8 * 1024 * 1024;
/// Most entries in one transaction Bundle.
pub const MAX_BUNDLE_ENTRIES: usize = 2_000;
/// Search results per page by default, and at most.
pub const DEFAULT_COUNT: usize = 10;
/// The largest `_count`.
pub const MAX_COUNT: usize = 50;
/// How long a request waits for its transactions to commit (or a key to be released) before it
/// answers `202`/`504`; the work goes on.
pub const COMMIT_WAIT: Duration = Duration::from_secs(30);

const POLL: Duration = Duration::from_millis(25);

/// A refused or failed FHIR request: an HTTP status and an `OperationOutcome`.
#[derive(Debug, Clone)]
pub struct FhirError {
    status: StatusCode,
    issue_type: &'static str,
    code: &'static str,
    diagnostics: String,
    issues: Vec<(String, String, String)>,
}

impl FhirError {
    /// An error with its HTTP status, FHIR issue type, stable code and a message for people.
    pub fn new(
        status: StatusCode,
        issue_type: &'static str,
        code: &'static str,
        diagnostics: impl Into<String>,
    ) -> Self {
        Self {
            status,
            issue_type,
            code,
            diagnostics: diagnostics.into(),
            issues: Vec::new(),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code.
    pub fn code(&self) -> &'static str {
        self.code
    }

    fn bad_request(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid", code, diagnostics)
    }

    fn unprocessable(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "processing",
            code,
            diagnostics,
        )
    }

    fn forbidden(code: &'static str, diagnostics: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", code, diagnostics)
    }

    fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "not_found",
            format!("no such {what}"),
        )
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal",
            "internal error (see the node's log)",
        )
    }

    /// The `OperationOutcome`.
    pub fn outcome(&self) -> Value {
        let mut issue = vec![json!({
            "severity": "error",
            "code": self.issue_type,
            "details": {"coding": [{"system": ERROR_SYSTEM, "code": self.code}], "text": self.diagnostics},
            "diagnostics": self.diagnostics,
        })];
        for (severity, code, path) in &self.issues {
            issue.push(json!({
                "severity": severity,
                "code": code,
                "expression": [path],
            }));
        }
        json!({"resourceType": "OperationOutcome", "issue": issue})
    }
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        fhir_response(self.status, &self.outcome())
    }
}

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let issue_type = match status {
            StatusCode::SERVICE_UNAVAILABLE => "transient",
            StatusCode::CONFLICT => "duplicate",
            StatusCode::PAYLOAD_TOO_LARGE => "too-costly",
            s if s.is_server_error() => "exception",
            _ => "invalid",
        };
        let mut out = Self::new(status, issue_type, e.code(), e.to_string());
        if let ApiError::InvalidFhir(issues) = e {
            out.issue_type = "invalid";
            out.issues = issues
                .into_iter()
                .map(|i| (i.severity, i.code, i.path))
                .collect();
        }
        out
    }
}

fn fhir_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    response
}

/// The FHIR routes over the API's state (merged into the API's router).
pub(crate) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(transaction))
        // The base with its trailing slash, where FHIR clients that join paths onto a base
        // ending in `/` post a Bundle (SMART's fhirclient does).
        .route("/fhir/", post(transaction))
        .route("/fhir/Patient/$enrol", post(enrol))
        .route("/fhir/Consent/{id}/$revoke", post(revoke))
        .route("/fhir/$export", post(export_kickoff))
        .route(
            "/fhir/$export-status/{job}",
            get(export_status).delete(export_delete),
        )
        .route("/fhir/$export-output/{job}/{file}", get(export_output))
        .route("/fhir/{type}", post(create).get(search))
        .route("/fhir/{type}/{id}", get(read))
}

// ---------------------------------------------------------------------------------------------
// Who is asking

/// The authenticated client, and for clinical reads the clinician and purpose it names.
struct Caller {
    principal: Principal,
}

impl Caller {
    fn new(principal: Option<Extension<Principal>>) -> Result<Self, FhirError> {
        let Some(Extension(principal)) = principal else {
            return Err(FhirError::new(
                StatusCode::UNAUTHORIZED,
                "login",
                "unauthenticated",
                "a bearer token is required",
            ));
        };
        Ok(Self { principal })
    }

    fn require(&self, resource_type: &str, permission: Permission) -> Result<(), FhirError> {
        if self.principal.allows(resource_type, permission) {
            Ok(())
        } else {
            Err(FhirError::forbidden(
                "insufficient_scope",
                "the token's scopes do not allow this interaction on this resource type",
            ))
        }
    }

    /// A patient-scoped token reaches its own patient's compartment only.
    fn may_see(&self, patient: &VerifyKey) -> Result<(), FhirError> {
        match &self.principal.patient {
            Some(own) if own != patient => Err(FhirError::forbidden(
                "other_patient",
                "a patient's token reaches that patient's data only",
            )),
            _ => Ok(()),
        }
    }

    /// The clinician this request acts for, and its purpose of use.
    fn clinician(&self, headers: &HeaderMap) -> Result<(String, Purpose), FhirError> {
        if self.principal.patient.is_some() {
            return Err(FhirError::forbidden(
                "patient_token",
                "a patient opens their own records in their wallet; this interaction is for clinicians",
            ));
        }
        let name = header_text(headers, CLINICIAN_HEADER).ok_or_else(|| {
            FhirError::bad_request(
                "clinician_required",
                "name the clinician in the X-Medchain-Clinician header",
            )
        })?;
        if !self.principal.may_act_for(name) {
            return Err(FhirError::forbidden(
                "clinician_not_allowed",
                "this client may not act for that clinician",
            ));
        }
        let code = header_text(headers, PURPOSE_HEADER).ok_or_else(|| {
            FhirError::bad_request(
                "purpose_required",
                "give the purpose of use in the X-Medchain-Purpose-Of-Use header (TREAT, ETREAT, ...)",
            )
        })?;
        if code.is_empty() || code.len() > 32 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(FhirError::bad_request(
                "bad_purpose",
                "the purpose of use is an HL7 v3 PurposeOfUse code",
            ));
        }
        let purpose = Purpose::from_code(code, None);
        if matches!(purpose, Purpose::Research { .. }) {
            return Err(FhirError::forbidden(
                "research",
                "research is served de-identified by the research export, never by reading records",
            ));
        }
        Ok((name.to_owned(), purpose))
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

// ---------------------------------------------------------------------------------------------
// Running on the host's thread

async fn on_host<T: Send + 'static>(
    api: &ApiState,
    f: impl FnOnce(&mut Running) -> T + Send + 'static,
) -> Result<T, FhirError> {
    Ok(api.run(f).await?)
}

/// Waits until every transaction of `ids` is committed here; `false` after [`COMMIT_WAIT`].
async fn wait_committed(api: &ApiState, ids: Vec<TxId>) -> Result<bool, FhirError> {
    let end = Instant::now() + COMMIT_WAIT;
    loop {
        let ids2 = ids.clone();
        if on_host(api, move |r| ids2.iter().all(|id| r.is_committed(id))).await? {
            return Ok(true);
        }
        if Instant::now() >= end {
            return Ok(false);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn ledger_error(e: &impl std::fmt::Display) -> FhirError {
    tracing::error!(error = %e, "ledger read failed");
    FhirError::internal()
}

// ---------------------------------------------------------------------------------------------
// Bodies and ids

async fn read_json(body: Body) -> Result<Value, FhirError> {
    let bytes = axum::body::to_bytes(body, MAX_FHIR_BODY)
        .await
        .map_err(|_| {
            FhirError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-costly",
                "too_large",
                format!("the body is larger than {MAX_FHIR_BODY} bytes"),
            )
        })?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            FhirError::bad_request(
                "bad_json",
                "the body is not a JSON object (or nests deeper than 128 levels)",
            )
        })
}

fn patient_key(text: &str) -> Option<VerifyKey> {
    crate::config::parse_key(text).filter(|_| text.len() == 64)
}

fn patient_param(query: &HashMap<String, String>) -> Result<VerifyKey, FhirError> {
    let value = query
        .get("patient")
        .or_else(|| query.get("subject"))
        .ok_or_else(|| {
            FhirError::bad_request(
                "patient_required",
                "searches name the patient: patient=Patient/{key} (or its 64 hex digits)",
            )
        })?;
    let key = value.strip_prefix("Patient/").unwrap_or(value);
    patient_key(key).ok_or_else(|| {
        FhirError::bad_request(
            "bad_patient",
            "a patient is named by 64 hex digits of its key",
        )
    })
}

/// The query string's parameters (the last value of a repeated one); percent-decoded.
fn query_params(query: Option<&str>) -> Result<HashMap<String, String>, FhirError> {
    let mut out = HashMap::new();
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_decode(s)
                .ok_or_else(|| FhirError::bad_request("bad_query", "the query string is not valid"))
        };
        out.insert(decode(k)?, decode(v)?);
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn resource_type(value: &Value) -> Option<&str> {
    value.get("resourceType").and_then(Value::as_str)
}

/// The patient a resource belongs to: a `Patient`'s identifier of [`PATIENT_KEY_SYSTEM`],
/// otherwise its `subject`, `patient` or `beneficiary` reference to `Patient/{key}`.
fn patient_of(resource: &Value) -> Option<VerifyKey> {
    if resource_type(resource) == Some("Patient") {
        return resource
            .get("identifier")?
            .as_array()?
            .iter()
            .find(|i| i.get("system").and_then(Value::as_str) == Some(PATIENT_KEY_SYSTEM))
            .and_then(|i| i.get("value")?.as_str())
            .and_then(patient_key);
    }
    ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|field| resource.get(*field)?.get("reference")?.as_str())
        .and_then(|r| r.strip_prefix("Patient/"))
        .and_then(patient_key)
}

/// The resource as served: its id and version, and (once known) its block's height.
fn served(mut resource: Value, id: &RecordId, height: u64) -> Value {
    if let Some(map) = resource.as_object_mut() {
        map.insert("id".into(), Value::String(id.to_string()));
        let mut meta = json!({"versionId": "1"});
        if height > 0 {
            meta["tag"] =
                json!([{"system": "urn:medchain:block-height", "code": height.to_string()}]);
        }
        map.insert("meta".into(), meta);
    }
    resource
}

fn searchset(entries: Vec<Value>, links: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
}

fn base64_param(parameters: &Value, name: &str) -> Result<Vec<u8>, FhirError> {
    let missing = || {
        FhirError::bad_request(
            "bad_parameters",
            format!(
                "the body is a Parameters resource with a valueBase64Binary parameter \"{name}\""
            ),
        )
    };
    if resource_type(parameters) != Some("Parameters") {
        return Err(missing());
    }
    let data = parameters
        .get("parameter")
        .and_then(Value::as_array)
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        })
        .and_then(|p| p.get("valueBase64Binary")?.as_str())
        .ok_or_else(missing)?;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map_err(|_| FhirError::bad_request("bad_base64", "the parameter is not standard base64"))
}

// ---------------------------------------------------------------------------------------------
// Capabilities

async fn metadata(State(api): State<ApiState>) -> Response {
    fhir_response(StatusCode::OK, &capability_statement(api.fhir_base()))
}

/// The `CapabilityStatement`: exactly what this API serves. `base` is the absolute FHIR base URL
/// (`https://node.example/fhir`), which makes the SMART token URI absolute, as SMART clients
/// need; without it the URI is relative to the base (`auth/token`).
pub fn capability_statement(base: Option<&str>) -> Value {
    let token = base.map_or_else(|| "auth/token".to_owned(), |b| format!("{b}/auth/token"));
    let search = json!([
        {"name": "patient", "type": "reference", "documentation": "Patient/{64 hex digits of the patient's key}; required"},
        {"name": "code", "type": "token", "documentation": "system|code or code (matched against the record's codes blinded under the patient's tag key; OR across commas)"},
        {"name": "_count", "type": "number"},
        {"name": "_offset", "type": "number"}
    ]);
    let clinical = |t: &str| {
        json!({
            "type": t,
            "interaction": [{"code": "create"}, {"code": "read"}, {"code": "search-type"}],
            "versioning": "no-version",
            "readHistory": false,
            "updateCreate": false,
            "searchParam": search,
        })
    };
    let mut resources: Vec<Value> = [
        "Observation",
        "Condition",
        "MedicationRequest",
        "Procedure",
        "AllergyIntolerance",
        "Immunization",
        "DiagnosticReport",
        "Encounter",
        "Patient",
    ]
    .iter()
    .map(|t| clinical(t))
    .collect();
    resources.push(json!({
        "type": "Consent",
        "interaction": [{"code": "create"}, {"code": "read"}, {"code": "search-type"}],
        "searchParam": [{"name": "patient", "type": "reference"}],
        "operation": [{"name": "revoke", "definition": "urn:medchain:OperationDefinition/Consent-revoke"}]
    }));
    resources.push(json!({
        "type": "AuditEvent",
        "interaction": [{"code": "search-type"}],
        "searchParam": [{"name": "patient", "type": "reference"}]
    }));
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-01",
        "kind": "instance",
        "software": {"name": "medchaind", "version": env!("CARGO_PKG_VERSION")},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Records are sealed on a permissioned chain; every clinical read is released by the record's holder under the patient's consent and logged on chain. Reads and searches name the clinician (X-Medchain-Clinician) and the purpose of use (X-Medchain-Purpose-Of-Use).",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "extension": [{
                    "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                    "extension": [{"url": "token", "valueUri": token}]
                }]
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}],
            "operation": [
                {"name": "enrol", "definition": "urn:medchain:OperationDefinition/Patient-enrol"},
                {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"}
            ]
        }]
    })
}

// ---------------------------------------------------------------------------------------------
// Enrolment

async fn enrol(
    State(api): State<ApiState>,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let bytes = base64_param(&read_json(body).await?, "enrolment")?;
    let enrolment = SealedWriterKey::from_bytes(&bytes)
        .map_err(|_| FhirError::unprocessable("bad_enrolment", "not a sealed writer key"))?;
    let patient = enrolment.patient().sign;
    // The patient's own wallet enrols itself; an EHR needs Patient create.
    if caller.principal.patient != Some(patient) {
        caller.require("Patient", Permission::Create)?;
    }
    caller.may_see(&patient)?;
    on_host(&api, move |r| {
        let chain = r.host.genesis().chain_id();
        let identity = r.host.identity();
        let opens = enrolment
            .import(identity, &chain, enrolment.patient())
            .is_ok()
            && enrolment
                .import_tag_key(identity, &chain, enrolment.patient())
                .is_ok();
        if !opens {
            return Err(FhirError::unprocessable(
                "bad_enrolment",
                "the enrolment does not open for this member on this network",
            ));
        }
        r.people.enrolments.insert(enrolment).map_err(|e| {
            tracing::error!(error = %e, "keeping an enrolment failed");
            FhirError::internal()
        })
    })
    .await??;
    let reference = format!("Patient/{}", hex::encode(patient.as_byte_array()));
    Ok(fhir_response(
        StatusCode::OK,
        &json!({"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": reference}}]}),
    ))
}

// ---------------------------------------------------------------------------------------------
// Create and transaction

/// One resource to add: its JSON (references already resolved) and the `fullUrl` it had.
struct Draft {
    resource: Value,
}

/// Prepares every draft for `patient` on the host thread, in order, resolving each `urn:uuid:`
/// reference to the record id of the entry it names, then submits them in one batch. Nothing is
/// submitted when any entry fails.
fn add_records(
    r: &mut Running,
    patient: VerifyKey,
    drafts: Vec<Draft>,
    full_urls: Vec<Option<String>>,
    order: Vec<usize>,
) -> Result<Vec<(String, RecordId, TxId)>, FhirError> {
    let Some(enrolment) = r.people.enrolments.get(&patient).cloned() else {
        return Err(FhirError::unprocessable(
            "not_enrolled",
            "the patient is not enrolled at this node (POST /fhir/Patient/$enrol)",
        ));
    };
    let mut resolved: HashMap<String, String> = HashMap::new();
    let mut prepared = Vec::with_capacity(drafts.len());
    let mut slots: Vec<Option<(String, RecordId)>> = vec![None; drafts.len()];
    let mut drafts: Vec<Option<Draft>> = drafts.into_iter().map(Some).collect();
    for &i in &order {
        let Some(mut draft) = drafts[i].take() else {
            return Err(FhirError::internal());
        };
        rewrite_references(&mut draft.resource, &resolved);
        if let Some(map) = draft.resource.as_object_mut() {
            map.remove("id");
            map.remove("meta");
        }
        let kind = resource_type(&draft.resource)
            .unwrap_or_default()
            .to_owned();
        let bytes =
            Zeroizing::new(serde_json::to_vec(&draft.resource).map_err(|_| FhirError::internal())?);
        let record = r
            .host
            .prepare_record(RecordDraft {
                fhir: &bytes,
                enrolment: &enrolment,
                readers: &[],
            })
            .map_err(|e| entry_error(e, (order.len() > 1).then_some(i)))?;
        let id = record.record_id();
        if let Some(url) = &full_urls[i] {
            let target = if kind == "Patient" {
                format!("Patient/{}", hex::encode(patient.as_byte_array()))
            } else {
                format!("{kind}/{id}")
            };
            resolved.insert(url.clone(), target);
        }
        slots[i] = Some((kind, id));
        prepared.push(record);
    }
    let result = r.host.submit_records(prepared, now_ms());
    let ids: Vec<TxId> = result
        .as_ref()
        .map(|receipts| receipts.iter().map(|x| x.tx_id).collect())
        .unwrap_or_default();
    r.track_record(result.as_ref().map(|_| ids.as_slice()));
    let receipts = result.map_err(|e| FhirError::from(ApiError::from(e)))?;
    let by_id: HashMap<RecordId, TxId> = receipts
        .iter()
        .map(|receipt| (receipt.record_id, receipt.tx_id))
        .collect();
    slots
        .into_iter()
        .map(|slot| {
            let (kind, id) = slot.ok_or_else(FhirError::internal)?;
            let tx = *by_id.get(&id).ok_or_else(FhirError::internal)?;
            Ok((kind, id, tx))
        })
        .collect()
}

/// A record error, its validation paths put under `Bundle.entry[i].resource` for an entry.
fn entry_error(e: RecordError, entry: Option<usize>) -> FhirError {
    let mut out = FhirError::from(ApiError::from(e));
    if let Some(i) = entry {
        for (_, _, path) in &mut out.issues {
            let rest = path.split_once('.').map_or("", |(_, rest)| rest);
            *path = if rest.is_empty() {
                format!("Bundle.entry[{i}].resource")
            } else {
                format!("Bundle.entry[{i}].resource.{rest}")
            };
        }
        out.diagnostics = format!("Bundle.entry[{i}]: {}", out.diagnostics);
    }
    out
}

/// Replaces every `reference` that names a resolved `fullUrl`.
fn rewrite_references(value: &mut Value, resolved: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "reference" {
                    if let Some(target) = v.as_str().and_then(|s| resolved.get(s)) {
                        *v = Value::String(target.clone());
                    }
                } else {
                    rewrite_references(v, resolved);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| rewrite_references(v, resolved)),
        _ => {}
    }
}

/// The `urn:uuid:`/`urn:oid:` references in `value`.
fn local_references(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v.as_str()) {
                    ("reference", Some(s))
                        if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") =>
                    {
                        out.push(s.to_owned());
                    }
                    _ => local_references(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| local_references(v, out)),
        _ => {}
    }
}

async fn create(
    State(api): State<ApiState>,
    Path(kind): Path<String>,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    if !medchain_core::fhir::is_r4_resource_type(&kind) {
        return Err(FhirError::not_found("resource type"));
    }
    if matches!(kind.as_str(), "Consent") {
        return create_consent(api, caller, body).await;
    }
    if matches!(
        kind.as_str(),
        "Bundle" | "AuditEvent" | "Parameters" | "OperationOutcome"
    ) {
        return Err(FhirError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "not-supported",
            "not_supported",
            "this resource type is not created here (a transaction Bundle goes to POST /fhir)",
        ));
    }
    caller.require(&kind, Permission::Create)?;
    let resource = read_json(body).await?;
    if resource_type(&resource) != Some(kind.as_str()) {
        return Err(FhirError::bad_request(
            "type_mismatch",
            "the resource's resourceType is not the type in the path",
        ));
    }
    let patient = patient_of(&resource).ok_or_else(no_patient)?;
    caller.may_see(&patient)?;
    let served_body = resource.clone();
    let added = on_host(&api, move |r| {
        add_records(r, patient, vec![Draft { resource }], vec![None], vec![0])
    })
    .await??;
    let Some((kind, id, tx)) = added.into_iter().next() else {
        return Err(FhirError::internal());
    };
    let committed = wait_committed(&api, vec![tx]).await?;
    Ok(created(
        committed,
        &served(served_body, &id, 0),
        &format!("{kind}/{id}/_history/1"),
    ))
}

/// `201 Created` (`202 Accepted` when not committed within [`COMMIT_WAIT`]) with `body` and
/// `Location: location`.
fn created(committed: bool, body: &Value, location: &str) -> Response {
    let status = if committed {
        StatusCode::CREATED
    } else {
        StatusCode::ACCEPTED
    };
    let mut response = fhir_response(status, body);
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn no_patient() -> FhirError {
    FhirError::unprocessable(
        "no_patient",
        "the resource must name its patient: subject/patient reference Patient/{key}, or for a Patient an identifier of system urn:medchain:patient-key",
    )
}

async fn transaction(
    State(api): State<ApiState>,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let bundle = read_json(body).await?;
    if resource_type(&bundle) != Some("Bundle")
        || bundle.get("type").and_then(Value::as_str) != Some("transaction")
    {
        return Err(FhirError::bad_request(
            "not_a_transaction",
            "POST /fhir takes a Bundle of type transaction",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .filter(|e| !e.is_empty())
        .ok_or_else(|| FhirError::bad_request("empty_bundle", "the Bundle has no entry"))?;
    if entries.len() > MAX_BUNDLE_ENTRIES {
        return Err(FhirError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-costly",
            "too_many_entries",
            format!("at most {MAX_BUNDLE_ENTRIES} entries"),
        ));
    }
    let mut drafts = Vec::with_capacity(entries.len());
    let mut full_urls = Vec::with_capacity(entries.len());
    let mut patient: Option<VerifyKey> = None;
    for (i, entry) in entries.iter().enumerate() {
        let resource = entry
            .get("resource")
            .filter(|r| r.is_object())
            .ok_or_else(|| {
                FhirError::bad_request("bad_entry", format!("Bundle.entry[{i}] has no resource"))
            })?;
        let method = entry
            .get("request")
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        if method != Some("POST") {
            return Err(FhirError::unprocessable(
                "unsupported_method",
                format!("Bundle.entry[{i}]: only POST (create) entries are supported"),
            ));
        }
        let kind = resource_type(resource).unwrap_or_default();
        if !medchain_core::fhir::is_r4_resource_type(kind)
            || matches!(kind, "Bundle" | "Consent" | "AuditEvent")
        {
            return Err(FhirError::unprocessable(
                "unsupported_type",
                format!("Bundle.entry[{i}]: this resource type is not created in a transaction"),
            ));
        }
        caller.require(kind, Permission::Create)?;
        if kind == "Patient" {
            let key = patient_of(resource).ok_or_else(no_patient)?;
            if patient.is_some_and(|p| p != key) {
                return Err(FhirError::unprocessable(
                    "several_patients",
                    "a transaction holds one patient's resources",
                ));
            }
            patient = Some(key);
        }
        let url = entry
            .get("fullUrl")
            .and_then(Value::as_str)
            .map(str::to_owned);
        drafts.push(Draft {
            resource: resource.clone(),
        });
        full_urls.push(url);
    }
    // The patient: the Patient entry's key, or the one every entry refers to.
    for draft in &drafts {
        if resource_type(&draft.resource) == Some("Patient") {
            continue;
        }
        if let Some(key) = patient_of(&draft.resource) {
            if patient.is_some_and(|p| p != key) {
                return Err(FhirError::unprocessable(
                    "several_patients",
                    "a transaction holds one patient's resources",
                ));
            }
            patient = Some(key);
        }
    }
    let patient = patient.ok_or_else(no_patient)?;
    caller.may_see(&patient)?;
    let order = entry_order(&drafts, &full_urls)?;
    let count = drafts.len();
    let added = on_host(&api, move |r| {
        add_records(r, patient, drafts, full_urls, order)
    })
    .await??;
    let committed = wait_committed(&api, added.iter().map(|(_, _, tx)| *tx).collect()).await?;
    let status = if committed {
        "201 Created"
    } else {
        "202 Accepted"
    };
    let response_entries: Vec<Value> = added
        .iter()
        .map(|(kind, id, _)| {
            json!({"response": {"status": status, "location": format!("{kind}/{id}/_history/1")}})
        })
        .collect();
    debug_assert_eq!(response_entries.len(), count);
    Ok(fhir_response(
        StatusCode::OK,
        &json!({"resourceType": "Bundle", "type": "transaction-response", "entry": response_entries}),
    ))
}

/// The order in which entries are sealed: every entry after the entries it refers to by
/// `fullUrl`. A reference to no entry, or a cycle, is refused.
fn entry_order(drafts: &[Draft], full_urls: &[Option<String>]) -> Result<Vec<usize>, FhirError> {
    let index: HashMap<&str, usize> = full_urls
        .iter()
        .enumerate()
        .filter_map(|(i, u)| u.as_deref().map(|u| (u, i)))
        .collect();
    if index.len() != full_urls.iter().flatten().count() {
        return Err(FhirError::unprocessable(
            "duplicate_full_url",
            "two entries share a fullUrl",
        ));
    }
    let mut deps: Vec<Vec<usize>> = Vec::with_capacity(drafts.len());
    for (i, draft) in drafts.iter().enumerate() {
        let mut refs = Vec::new();
        local_references(&draft.resource, &mut refs);
        let mut d = Vec::new();
        for r in refs {
            let j = *index.get(r.as_str()).ok_or_else(|| {
                FhirError::unprocessable(
                    "unresolved_reference",
                    format!("Bundle.entry[{i}] refers to a urn:uuid that no entry has as fullUrl"),
                )
            })?;
            if j != i && !d.contains(&j) {
                d.push(j);
            }
        }
        deps.push(d);
    }
    let mut order = Vec::with_capacity(drafts.len());
    let mut done = vec![false; drafts.len()];
    while order.len() < drafts.len() {
        let before = order.len();
        for i in 0..drafts.len() {
            if !done[i] && deps[i].iter().all(|&j| done[j]) {
                done[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            return Err(FhirError::unprocessable(
                "reference_cycle",
                "the entries refer to each other in a cycle; a record's id is fixed when it is sealed",
            ));
        }
    }
    Ok(order)
}

// ---------------------------------------------------------------------------------------------
// Read and search: releases in the clinician's name

/// What became of one record a clinician asked for.
enum Outcome {
    /// Opened: the FHIR JSON, and the block height of its record.
    Opened(Zeroizing<Vec<u8>>, u64),
    /// Refused or failed.
    Refused(FhirError),
}

fn answer_error(answer: &KeyAnswer) -> FhirError {
    match answer {
        KeyAnswer::Denied => FhirError::forbidden(
            "denied",
            "the patient's consent does not permit this access",
        ),
        KeyAnswer::RuleRefused { rule } if rule == "erased" => FhirError::new(
            StatusCode::GONE,
            "deleted",
            "erased",
            "the record was erased by its patient",
        ),
        KeyAnswer::RuleRefused { rule } => FhirError::forbidden(
            static_rule(rule),
            format!("the network's rules refuse this release ({rule})"),
        ),
        KeyAnswer::Research => {
            FhirError::forbidden("research", "research never receives record keys")
        }
        KeyAnswer::Stale | KeyAnswer::Unavailable => FhirError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "holder_unavailable",
            "the record's holder cannot answer now; retry",
        ),
        KeyAnswer::Replayed => FhirError::new(
            StatusCode::CONFLICT,
            "conflict",
            "replayed",
            "the holder answered this request already",
        ),
        _ => {
            tracing::warn!(answer = answer.name(), "unexpected key answer");
            FhirError::new(
                StatusCode::BAD_GATEWAY,
                "exception",
                "holder_error",
                "the record's holder refused the request",
            )
        }
    }
}

/// A rule name as a static code (the codes clients see are the ledger's stable rule names).
fn static_rule(rule: &str) -> &'static str {
    const RULES: &[&str] = &[
        "duplicate",
        "unreadable",
        "record_exists",
        "missing_envelope",
        "unknown_record",
        "erased",
        "not_the_record_holder",
        "consent_exists",
        "bad_consent",
        "unknown_consent",
        "not_the_patient",
        "consent_of_another_patient",
        "already_revoked",
        "research_key_release",
        "bad_credential",
        "denied",
        "wrong_consent",
        "emergency_not_logged",
        "emergency_flag_mismatch",
        "claimed_time_out_of_range",
        "not_a_researcher",
        "research_logged_per_record",
        "not_a_member",
        "stale_timestamp",
        "unverified",
    ];
    RULES
        .iter()
        .find(|r| **r == rule)
        .copied()
        .unwrap_or("rule_refused")
}

/// Asks the holders of `records` for their keys in `clinician`'s name, waits for the answers
/// and the releases to commit, and opens what was released.
async fn open_as(
    api: &ApiState,
    clinician: String,
    purpose: Purpose,
    records: Vec<RecordId>,
) -> Result<Vec<Outcome>, FhirError> {
    let n = records.len();
    let name = clinician.clone();
    let records2 = records.clone();
    let sent: Vec<Result<KeyRequestId, FhirError>> = on_host(api, move |r| {
        let now = now_ms();
        records2
            .iter()
            .map(|record| {
                let Some(c) = r.people.clinician(&name) else {
                    return Err(FhirError::forbidden(
                        "unknown_clinician",
                        "this node holds no clinician of that name",
                    ));
                };
                let (identity, credential) = (c.identity.duplicate(), c.credential.clone());
                let id = r
                    .host
                    .request_key(&identity, record, Some(credential), purpose.clone(), now)
                    .map_err(request_error)?;
                r.key_request_sent(id);
                Ok(id)
            })
            .collect()
    })
    .await?;
    let mut outcomes: Vec<Option<Outcome>> = (0..n).map(|_| None).collect();
    let mut pending: Vec<(usize, KeyRequestId)> = Vec::new();
    for (i, s) in sent.into_iter().enumerate() {
        match s {
            Ok(id) => pending.push((i, id)),
            Err(e) => outcomes[i] = Some(Outcome::Refused(e)),
        }
    }
    let end = Instant::now() + COMMIT_WAIT;
    while !pending.is_empty() {
        let ids: Vec<(usize, KeyRequestId, RecordId)> = pending
            .iter()
            .map(|(i, id)| (*i, *id, records[*i]))
            .collect();
        let name = clinician.clone();
        let step: Vec<(usize, Option<Outcome>)> = on_host(api, move |r| {
            ids.iter()
                .map(|(i, id, record)| (*i, poll_release(r, &name, id, record)))
                .collect()
        })
        .await?;
        let waiting: HashMap<usize, KeyRequestId> = pending.drain(..).collect();
        for (i, outcome) in step {
            match (outcome, waiting.get(&i)) {
                (Some(o), _) => outcomes[i] = Some(o),
                (None, Some(id)) => pending.push((i, *id)),
                (None, None) => outcomes[i] = Some(Outcome::Refused(FhirError::internal())),
            }
        }
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= end {
            for (i, _) in &pending {
                outcomes[*i] = Some(Outcome::Refused(FhirError::new(
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout",
                    "release_pending",
                    "the record's holder has not released the key yet; retry",
                )));
            }
            break;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Outcome::Refused(FhirError::internal())))
        .collect())
}

/// One pending request's state: `None` while waiting.
fn poll_release(r: &Running, name: &str, id: &KeyRequestId, record: &RecordId) -> Option<Outcome> {
    let status = match r.key_request(id) {
        Ok(Some(s)) => s,
        Ok(None) => return Some(Outcome::Refused(FhirError::internal())),
        Err(e) => return Some(Outcome::Refused(ledger_error(&e))),
    };
    let KeyRequestStatus::Answered { answer, committed } = status else {
        return None;
    };
    if !matches!(answer, KeyAnswer::Released { .. }) {
        return Some(Outcome::Refused(answer_error(&answer)));
    }
    if !committed {
        return None;
    }
    let clinician = r.people.clinician(name)?;
    let height = StateView::record(r.host.ledger().store(), record)
        .ok()
        .flatten()
        .map_or(0, |e: RecordEntry| e.height);
    Some(match r.host.open_for(&clinician.identity, record) {
        Ok(opened) => Outcome::Opened(Zeroizing::new(opened.payload().to_vec()), height),
        Err(medchain::LedgerError::Open(OpenError::Erased)) => {
            Outcome::Refused(answer_error(&KeyAnswer::RuleRefused {
                rule: "erased".into(),
            }))
        }
        Err(e) => Outcome::Refused(ledger_error(&e)),
    })
}

fn request_error(e: RequestKeyError) -> FhirError {
    match e {
        RequestKeyError::UnknownRecord => FhirError::not_found("record"),
        RequestKeyError::Erased => answer_error(&KeyAnswer::RuleRefused {
            rule: "erased".into(),
        }),
        RequestKeyError::Request(_) => FhirError::forbidden(
            "bad_key_request",
            "the clinician's request does not check out (credential, purpose)",
        ),
        e => {
            tracing::error!(error = %e, "sending a key request failed");
            FhirError::internal()
        }
    }
}

async fn read(
    State(api): State<ApiState>,
    Path((kind, id)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    if kind == "Consent" {
        return read_consent(api, caller, id).await;
    }
    if !medchain_core::fhir::is_r4_resource_type(&kind) {
        return Err(FhirError::not_found("resource type"));
    }
    caller.require(&kind, Permission::Read)?;
    // Who and why first: nothing about a record is answered before the request names them.
    let (clinician, purpose) = caller.clinician(&headers)?;
    let record = RecordId::from_str(&id).map_err(|_| FhirError::not_found("resource"))?;
    let entry = on_host(&api, move |r| {
        StateView::record(r.host.ledger().store(), &record)
    })
    .await?
    .map_err(|e| ledger_error(&e))?
    .filter(|e| e.class.resource_type == kind)
    .ok_or_else(|| FhirError::not_found("resource"))?;
    caller.may_see(&entry.patient.sign)?;
    if entry.erased {
        return Err(answer_error(&KeyAnswer::RuleRefused {
            rule: "erased".into(),
        }));
    }
    let outcome = open_as(&api, clinician, purpose, vec![record])
        .await?
        .into_iter()
        .next()
        .ok_or_else(FhirError::internal)?;
    match outcome {
        Outcome::Opened(payload, height) => {
            let resource: Value =
                serde_json::from_slice(&payload).map_err(|_| FhirError::internal())?;
            Ok(fhir_response(
                StatusCode::OK,
                &served(resource, &record, height),
            ))
        }
        Outcome::Refused(e) => Err(e),
    }
}

async fn search(
    State(api): State<ApiState>,
    Path(kind): Path<String>,
    RawQuery(query): RawQuery,
    principal: Option<Extension<Principal>>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let params = query_params(query.as_deref())?;
    match kind.as_str() {
        "Consent" => return search_consents(api, caller, params).await,
        "AuditEvent" => return search_audit(api, caller, params).await,
        k if !medchain_core::fhir::is_r4_resource_type(k) => {
            return Err(FhirError::not_found("resource type"))
        }
        _ => {}
    }
    caller.require(&kind, Permission::Search)?;
    caller.require(&kind, Permission::Read)?;
    for name in params.keys() {
        if !matches!(
            name.as_str(),
            "patient" | "subject" | "code" | "_count" | "_offset"
        ) {
            return Err(FhirError::bad_request(
                "unsupported_parameter",
                "supported search parameters: patient, code, _count, _offset",
            ));
        }
    }
    let patient = patient_param(&params)?;
    caller.may_see(&patient)?;
    let count = number_param(&params, "_count", DEFAULT_COUNT)?.clamp(1, MAX_COUNT);
    let offset = number_param(&params, "_offset", 0)?;
    let codes = code_param(&params)?;
    let (clinician, purpose) = caller.clinician(&headers)?;
    let kind2 = kind.clone();
    let candidates =
        on_host(&api, move |r| matching_records(r, &patient, &kind2, &codes)).await??;
    let page: Vec<RecordId> = candidates
        .iter()
        .skip(offset)
        .take(count)
        .copied()
        .collect();
    let more = candidates.len() > offset + page.len();
    let outcomes = open_as(&api, clinician, purpose, page.clone()).await?;
    let mut entries = Vec::new();
    let mut withheld: HashMap<&'static str, usize> = HashMap::new();
    for (record, outcome) in page.iter().zip(outcomes) {
        match outcome {
            Outcome::Opened(payload, height) => {
                let Ok(resource) = serde_json::from_slice::<Value>(&payload) else {
                    continue;
                };
                entries.push(json!({
                    "fullUrl": format!("{kind}/{record}"),
                    "resource": served(resource, record, height),
                    "search": {"mode": "match"}
                }));
            }
            Outcome::Refused(e) => *withheld.entry(e.code()).or_default() += 1,
        }
    }
    if !withheld.is_empty() {
        let mut reasons: Vec<_> = withheld.into_iter().collect();
        reasons.sort();
        let issue: Vec<Value> = reasons
            .iter()
            .map(|(code, n)| {
                json!({
                    "severity": "warning",
                    "code": "suppressed",
                    "details": {"coding": [{"system": ERROR_SYSTEM, "code": code}]},
                    "diagnostics": format!("{n} matching record(s) not released: {code}"),
                })
            })
            .collect();
        entries.push(json!({
            "resource": {"resourceType": "OperationOutcome", "issue": issue},
            "search": {"mode": "outcome"}
        }));
    }
    let patient_hex = hex::encode(patient.as_byte_array());
    let code_q = params
        .get("code")
        .map(|c| format!("&code={}", percent_encode(c)))
        .unwrap_or_default();
    let link = |o: usize| {
        fhir_url(
            &api,
            &format!("{kind}?patient={patient_hex}{code_q}&_count={count}&_offset={o}"),
        )
    };
    let mut links = vec![json!({"relation": "self", "url": link(offset)})];
    if more {
        links.push(json!({"relation": "next", "url": link(offset + count)}));
    }
    if offset > 0 {
        links.push(json!({"relation": "previous", "url": link(offset.saturating_sub(count))}));
    }
    Ok(fhir_response(StatusCode::OK, &searchset(entries, links)))
}

/// `path` (what follows `/fhir/`) as the URL a client follows: absolute on the node's FHIR base
/// when it knows it (`crate::api::fhir_base_url`), else rooted at `/fhir/`.
fn fhir_url(api: &ApiState, path: &str) -> String {
    match api.fhir_base() {
        Some(base) => format!("{base}/{path}"),
        None => format!("/fhir/{path}"),
    }
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn number_param(
    params: &HashMap<String, String>,
    name: &str,
    default: usize,
) -> Result<usize, FhirError> {
    match params.get(name) {
        None => Ok(default),
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| *n <= 1_000_000)
            .ok_or_else(|| {
                FhirError::bad_request("bad_number", "_count and _offset are whole numbers")
            }),
    }
}

/// `code=system|code,code,...`: (system, code) pairs; a bare code is tried in every default
/// code system.
fn code_param(params: &HashMap<String, String>) -> Result<Vec<(String, String)>, FhirError> {
    let Some(value) = params.get("code") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for token in value.split(',').filter(|t| !t.is_empty()) {
        match token.split_once('|') {
            Some((system, code)) if !system.is_empty() && !code.is_empty() => {
                out.push((system.to_owned(), code.to_owned()));
            }
            Some(_) => {
                return Err(FhirError::bad_request(
                    "bad_code",
                    "code is system|code or code",
                ))
            }
            None => out.extend(
                DEFAULT_CODE_SYSTEMS
                    .iter()
                    .map(|s| ((*s).to_owned(), token.to_owned())),
            ),
        }
        if out.len() > 64 {
            return Err(FhirError::bad_request("bad_code", "too many codes"));
        }
    }
    if out.is_empty() {
        return Err(FhirError::bad_request(
            "bad_code",
            "code is system|code or code",
        ));
    }
    Ok(out)
}

/// The patient's committed, not erased records of `kind` whose class carries one of `codes`
/// (blinded under the patient's tag key, which this node holds from the patient's enrolment),
/// newest first.
fn matching_records(
    r: &Running,
    patient: &VerifyKey,
    kind: &str,
    codes: &[(String, String)],
) -> Result<Vec<RecordId>, FhirError> {
    let tags = if codes.is_empty() {
        Vec::new()
    } else {
        let enrolment = r.people.enrolments.get(patient).ok_or_else(|| {
            FhirError::unprocessable(
                "not_enrolled",
                "searching by code needs the patient's enrolment at this node",
            )
        })?;
        let chain = r.host.genesis().chain_id();
        let key = enrolment
            .import_tag_key(r.host.identity(), &chain, enrolment.patient())
            .map_err(|_| FhirError::internal())?;
        codes.iter().map(|(s, c)| key.tag(s, c)).collect()
    };
    let mut records: Vec<RecordEntry> = r
        .host
        .records_of(patient)
        .map_err(|e| ledger_error(&e))?
        .into_iter()
        .filter(|e| !e.erased && e.class.resource_type == kind)
        .filter(|e| tags.is_empty() || e.class.code_tags.iter().any(|t| tags.contains(t)))
        .collect();
    records.sort_by_key(|e| std::cmp::Reverse(e.height));
    Ok(records.into_iter().map(|e| e.record_id).collect())
}

// ---------------------------------------------------------------------------------------------
// Consent

fn consent_resource(state: &ConsentState) -> Value {
    let mut value = consent_to_fhir(&state.consent);
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "id".into(),
            Value::String(hex::encode(state.id.to_byte_array())),
        );
        if state.revoked_at.is_some() {
            map.insert("status".into(), Value::String("inactive".into()));
        }
    }
    value
}

/// A patient-signed body from a Consent's `sourceAttachment` or a `Parameters` parameter.
fn signed_body(bytes: &[u8], chain: &medchain_core::hash::ChainId) -> Result<TxBody, FhirError> {
    let body = TxBody::from_bytes(bytes)
        .map_err(|_| FhirError::unprocessable("malformed_body", "not a patient-signed body"))?;
    body.check(chain).map_err(|_| {
        FhirError::unprocessable(
            "invalid_signature",
            "the patient's signature does not verify for this network",
        )
    })?;
    Ok(body)
}

async fn create_consent(api: ApiState, caller: Caller, body: Body) -> Result<Response, FhirError> {
    caller.require("Consent", Permission::Create)?;
    let resource = read_json(body).await?;
    if resource_type(&resource) != Some("Consent") {
        return Err(FhirError::bad_request(
            "type_mismatch",
            "the resource's resourceType is not Consent",
        ));
    }
    let attachment = resource.get("sourceAttachment");
    if attachment
        .and_then(|a| a.get("contentType"))
        .and_then(Value::as_str)
        != Some(SIGNED_BODY_TYPE)
    {
        return Err(FhirError::unprocessable(
            "unsigned_consent",
            "a Consent is created from the patient's signed body: sourceAttachment {contentType: application/vnd.medchain.signed-body, data: base64}",
        ));
    }
    let data = attachment
        .and_then(|a| a.get("data"))
        .and_then(Value::as_str)
        .and_then(|d| {
            base64::engine::general_purpose::STANDARD
                .decode(d.trim())
                .ok()
        })
        .ok_or_else(|| {
            FhirError::bad_request("bad_base64", "sourceAttachment.data is not standard base64")
        })?;
    let chain = api.chain();
    let body = signed_body(&data, &chain)?;
    let TxBody::ConsentGranted { document, .. } = &body else {
        return Err(FhirError::unprocessable(
            "not_a_consent",
            "the signed body is not a consent grant",
        ));
    };
    let consent = Consent::from_bytes(document)
        .map_err(|_| FhirError::unprocessable("malformed_body", "not a consent document"))?;
    caller.may_see(&consent.patient.sign)?;
    let id = consent.id();
    let (tx, committed) = submit_and_wait(&api, body).await?;
    Ok(with_transaction(
        created(
            committed,
            &consent_resource(&ConsentState::new(consent)),
            &format!("Consent/{}", hex::encode(id.to_byte_array())),
        ),
        tx,
    ))
}

async fn read_consent(api: ApiState, caller: Caller, id: String) -> Result<Response, FhirError> {
    caller.require("Consent", Permission::Read)?;
    let id = medchain_core::consent::ConsentId::from_str(&id)
        .map_err(|_| FhirError::not_found("Consent"))?;
    let state = consent_state(&api, id).await?;
    caller.may_see(&state.consent.patient.sign)?;
    Ok(fhir_response(StatusCode::OK, &consent_resource(&state)))
}

/// The committed consent `id`, or `404`.
async fn consent_state(
    api: &ApiState,
    id: medchain_core::consent::ConsentId,
) -> Result<ConsentState, FhirError> {
    on_host(api, move |r| {
        StateView::consent(r.host.ledger().store(), &id)
    })
    .await?
    .map_err(|e| ledger_error(&e))?
    .ok_or_else(|| FhirError::not_found("Consent"))
}

/// Submits a patient-signed body on the host's thread (tracked as this node's).
fn submit_on_host(r: &mut Running, body: &TxBody) -> Result<TxId, FhirError> {
    let result = r.host.submit_patient_signed(body, now_ms());
    r.track_submission(result.as_ref().map(std::slice::from_ref));
    result.map_err(|e| FhirError::from(ApiError::from(e)))
}

/// [`submit_on_host`], then waits for the commit: the transaction, and whether it committed
/// within [`COMMIT_WAIT`].
async fn submit_and_wait(api: &ApiState, body: TxBody) -> Result<(TxId, bool), FhirError> {
    let tx = on_host(api, move |r| submit_on_host(r, &body)).await??;
    Ok((tx, wait_committed(api, vec![tx]).await?))
}

/// `response` with [`TRANSACTION_HEADER`] naming `tx`.
fn with_transaction(mut response: Response, tx: TxId) -> Response {
    if let Ok(value) = HeaderValue::from_str(&tx.to_string()) {
        response.headers_mut().insert(TRANSACTION_HEADER, value);
    }
    response
}

async fn search_consents(
    api: ApiState,
    caller: Caller,
    params: HashMap<String, String>,
) -> Result<Response, FhirError> {
    caller.require("Consent", Permission::Search)?;
    let patient = patient_param(&params)?;
    caller.may_see(&patient)?;
    let states = on_host(&api, move |r| {
        StateView::consents_of(r.host.ledger().store(), &patient)
    })
    .await?
    .map_err(|e| ledger_error(&e))?;
    let entries = states
        .iter()
        .map(|s| json!({"fullUrl": format!("Consent/{}", hex::encode(s.id.to_byte_array())), "resource": consent_resource(s), "search": {"mode": "match"}}))
        .collect();
    Ok(fhir_response(
        StatusCode::OK,
        &searchset(entries, Vec::new()),
    ))
}

async fn revoke(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    // A revocation is the patient's signed act, created like the consent it ends.
    if !caller.principal.allows("Consent", Permission::Update) {
        caller.require("Consent", Permission::Create)?;
    }
    let consent_id = medchain_core::consent::ConsentId::from_str(&id)
        .map_err(|_| FhirError::not_found("Consent"))?;
    let bytes = base64_param(&read_json(body).await?, "revocation")?;
    let chain = api.chain();
    let body = signed_body(&bytes, &chain)?;
    let TxBody::ConsentRevoked {
        consent_id: revoked,
        ..
    } = &body
    else {
        return Err(FhirError::unprocessable(
            "not_a_revocation",
            "the signed body is not a consent revocation",
        ));
    };
    if *revoked != consent_id.to_byte_array() {
        return Err(FhirError::unprocessable(
            "id_mismatch",
            "the revocation names another consent",
        ));
    }
    let state = consent_state(&api, consent_id).await?;
    caller.may_see(&state.consent.patient.sign)?;
    let (tx, committed) = submit_and_wait(&api, body).await?;
    let state = consent_state(&api, consent_id).await?;
    Ok(with_transaction(
        fhir_response(
            if committed {
                StatusCode::OK
            } else {
                StatusCode::ACCEPTED
            },
            &consent_resource(&state),
        ),
        tx,
    ))
}

// ---------------------------------------------------------------------------------------------
// Audit

async fn search_audit(
    api: ApiState,
    caller: Caller,
    params: HashMap<String, String>,
) -> Result<Response, FhirError> {
    caller.require("AuditEvent", Permission::Search)?;
    let patient = patient_param(&params)?;
    caller.may_see(&patient)?;
    let trail = on_host(&api, move |r| r.host.audit_trail(&patient))
        .await?
        .map_err(|e| ledger_error(&e))?;
    let entries = trail
        .iter()
        .rev()
        .map(|entry| {
            let mut event = audit_event(entry);
            if let Some(map) = event.as_object_mut() {
                map.insert("id".into(), Value::String(entry.tx_id.to_string()));
            }
            json!({"fullUrl": format!("AuditEvent/{}", entry.tx_id), "resource": event, "search": {"mode": "match"}})
        })
        .collect();
    Ok(fhir_response(
        StatusCode::OK,
        &searchset(entries, Vec::new()),
    ))
}

// ---------------------------------------------------------------------------------------------
// Research: FHIR Bulk Data export, de-identified, logged on chain before anything leaves

/// Most export jobs a node keeps at once.
pub const MAX_EXPORT_JOBS: usize = 16;
/// How long a finished export stays downloadable.
pub const EXPORT_RETENTION: Duration = Duration::from_secs(3600);

/// One export: who asked, its release log, and the NDJSON files (held until the log commits,
/// then served to that client only).
struct ExportJob {
    client: String,
    log: TxId,
    created: Instant,
    requested_ms: u64,
    files: Vec<(String, usize, Zeroizing<Vec<u8>>)>,
}

/// The export jobs of a node (kept on the host's thread, in memory: a restart forgets them and
/// the researcher asks again; the release log stays on chain either way).
#[derive(Default)]
pub(crate) struct Exports {
    jobs: HashMap<String, ExportJob>,
}

impl Exports {
    fn purge(&mut self) {
        self.jobs
            .retain(|_, j| j.created.elapsed() < EXPORT_RETENTION);
    }
}

impl std::fmt::Debug for Exports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exports")
            .field("jobs", &self.jobs.len())
            .finish()
    }
}

fn research_error(e: medchain::LedgerError) -> FhirError {
    use medchain_core::research::ResearchError;
    match e {
        medchain::LedgerError::Research(ResearchError::TooFewPatients) => FhirError::unprocessable(
            "too_few_patients",
            "no part of the study has at least 11 consenting patients: nothing is released",
        ),
        medchain::LedgerError::Research(ResearchError::Request(_)) => FhirError::unprocessable(
            "invalid_request",
            "the research request's signature does not verify for this network",
        ),
        medchain::LedgerError::Research(ResearchError::Rule(rule)) => FhirError::forbidden(
            static_rule(rule.name()),
            format!("the network would refuse this release ({})", rule.name()),
        ),
        medchain::LedgerError::Research(ResearchError::NotAMember) => {
            FhirError::forbidden("not_a_member", "this node is not a member institution")
        }
        e => ledger_error(&e),
    }
}

async fn export_kickoff(
    State(api): State<ApiState>,
    principal: Option<Extension<Principal>>,
    body: Body,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    if caller.principal.patient.is_some() {
        return Err(FhirError::forbidden(
            "patient_token",
            "research exports are for research systems",
        ));
    }
    let bytes = base64_param(&read_json(body).await?, "researchRequest")?;
    let request = medchain_core::research::ResearchRequest::from_bytes(&bytes).map_err(|_| {
        FhirError::unprocessable("malformed_request", "not a signed research request")
    })?;
    let principal = caller.principal.clone();
    let job = on_host(&api, move |r| -> Result<String, FhirError> {
        r.exports.purge();
        if r.exports.jobs.len() >= MAX_EXPORT_JOBS {
            return Err(FhirError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too_many_exports",
                "too many exports are kept; retry later",
            ));
        }
        let release = r.host.research_release(&request).map_err(research_error)?;
        // The client must be allowed to read every resource type the release holds.
        let mut files: Vec<(String, usize, Zeroizing<Vec<u8>>)> = Vec::new();
        for row in &release.rows {
            let kind = resource_type(&row.resource)
                .unwrap_or("Resource")
                .to_owned();
            if !principal.allows(&kind, Permission::Read) {
                return Err(FhirError::forbidden(
                    "insufficient_scope",
                    "the token's scopes do not cover every resource type of this release",
                ));
            }
            let line = serde_json::to_vec(&row.resource).map_err(|_| FhirError::internal())?;
            let file = match files.iter().position(|(k, _, _)| *k == kind) {
                Some(i) => &mut files[i],
                None => {
                    files.push((kind, 0, Zeroizing::new(Vec::new())));
                    files.last_mut().ok_or_else(FhirError::internal)?
                }
            };
            file.1 += 1;
            file.2.extend_from_slice(&line);
            file.2.push(b'\n');
        }
        let log = submit_on_host(r, &release.log_body())?;
        let mut id = [0u8; 16];
        rand_core::Rng::fill_bytes(&mut rand_core::UnwrapErr(getrandom::SysRng), &mut id);
        let id = hex::encode(id);
        r.exports.jobs.insert(
            id.clone(),
            ExportJob {
                client: principal.client_id.clone(),
                log,
                created: Instant::now(),
                requested_ms: now_ms(),
                files,
            },
        );
        Ok(id)
    })
    .await??;
    let mut response = (StatusCode::ACCEPTED, "").into_response();
    if let Ok(v) = HeaderValue::from_str(&fhir_url(&api, &format!("$export-status/{job}"))) {
        response.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    Ok(response)
}

/// The job `id` of `client`, or 404 (another client's job is not found).
fn job_of<'a>(r: &'a mut Running, id: &str, client: &str) -> Result<&'a ExportJob, FhirError> {
    r.exports.purge();
    r.exports
        .jobs
        .get(id)
        .filter(|j| j.client == client)
        .ok_or_else(|| FhirError::not_found("export"))
}

async fn export_status(
    State(api): State<ApiState>,
    Path(job): Path<String>,
    principal: Option<Extension<Principal>>,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let client = caller.principal.client_id.clone();
    let job2 = job.clone();
    let output_url = fhir_url(&api, &format!("$export-output/{job}/"));
    let request_url = fhir_url(&api, "$export");
    let manifest = on_host(&api, move |r| -> Result<Option<Value>, FhirError> {
        let log = job_of(r, &job2, &client)?.log;
        if !r.is_committed(&log) {
            return Ok(None);
        }
        let j = job_of(r, &job2, &client)?;
        let output: Vec<Value> = j
            .files
            .iter()
            .map(|(kind, count, _)| json!({"type": kind, "url": format!("{output_url}{kind}.ndjson"), "count": count}))
            .collect();
        Ok(Some(json!({
            "transactionTime": medchain_core::fhir::format_instant(j.requested_ms),
            "request": request_url,
            "requiresAccessToken": true,
            "output": output,
            "error": [],
            "extension": {"urn:medchain:release-log": log.to_string()}
        })))
    })
    .await??;
    match manifest {
        Some(m) => {
            let mut response = (StatusCode::OK, m.to_string()).into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        None => {
            let mut response = (StatusCode::ACCEPTED, "").into_response();
            response.headers_mut().insert(
                "x-progress",
                HeaderValue::from_static("waiting for the release log to commit"),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(response)
        }
    }
}

async fn export_delete(
    State(api): State<ApiState>,
    Path(job): Path<String>,
    principal: Option<Extension<Principal>>,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let client = caller.principal.client_id.clone();
    on_host(&api, move |r| -> Result<(), FhirError> {
        job_of(r, &job, &client)?;
        r.exports.jobs.remove(&job);
        Ok(())
    })
    .await??;
    Ok((StatusCode::ACCEPTED, "").into_response())
}

async fn export_output(
    State(api): State<ApiState>,
    Path((job, file)): Path<(String, String)>,
    principal: Option<Extension<Principal>>,
) -> Result<Response, FhirError> {
    let caller = Caller::new(principal)?;
    let client = caller.principal.client_id.clone();
    let kind = file
        .strip_suffix(".ndjson")
        .ok_or_else(|| FhirError::not_found("file"))?
        .to_owned();
    let body = on_host(&api, move |r| -> Result<Vec<u8>, FhirError> {
        let log = job_of(r, &job, &client)?.log;
        if !r.is_committed(&log) {
            return Err(FhirError::not_found(
                "file (the release log is not committed yet)",
            ));
        }
        job_of(r, &job, &client)?
            .files
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, _, bytes)| bytes.to_vec())
            .ok_or_else(|| FhirError::not_found("file"))
    })
    .await??;
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+ndjson"),
    );
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft(value: Value) -> Draft {
        Draft { resource: value }
    }

    #[test]
    fn entries_are_sealed_after_what_they_refer_to_and_cycles_are_refused() {
        let drafts = vec![
            draft(
                json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:p"}, "encounter": {"reference": "urn:uuid:e"}}),
            ),
            draft(json!({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:p"}})),
            draft(json!({"resourceType": "Patient"})),
        ];
        let urls = vec![
            Some("urn:uuid:o".into()),
            Some("urn:uuid:e".into()),
            Some("urn:uuid:p".into()),
        ];
        assert_eq!(entry_order(&drafts, &urls).expect("order"), vec![2, 1, 0]);

        let cyclic = vec![
            draft(json!({"resourceType": "Encounter", "partOf": {"reference": "urn:uuid:b"}})),
            draft(json!({"resourceType": "Encounter", "partOf": {"reference": "urn:uuid:a"}})),
        ];
        let urls = vec![Some("urn:uuid:a".into()), Some("urn:uuid:b".into())];
        assert_eq!(
            entry_order(&cyclic, &urls).unwrap_err().code(),
            "reference_cycle"
        );

        let dangling = vec![draft(
            json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:nobody"}}),
        )];
        assert_eq!(
            entry_order(&dangling, &[None]).unwrap_err().code(),
            "unresolved_reference"
        );

        let twice = vec![
            draft(json!({"resourceType": "Patient"})),
            draft(json!({"resourceType": "Patient"})),
        ];
        let urls = vec![Some("urn:uuid:x".into()), Some("urn:uuid:x".into())];
        assert_eq!(
            entry_order(&twice, &urls).unwrap_err().code(),
            "duplicate_full_url"
        );
        // A self-reference is not a cycle.
        let own = vec![draft(
            json!({"resourceType": "Observation", "focus": [{"reference": "urn:uuid:s"}]}),
        )];
        assert_eq!(
            entry_order(&own, &[Some("urn:uuid:s".into())]).expect("order"),
            vec![0]
        );
    }

    #[test]
    fn references_are_rewritten_everywhere_and_only_resolved_ones() {
        let mut value = json!({"subject": {"reference": "urn:uuid:p"}, "x": [{"reference": "urn:uuid:p"}, {"reference": "Practitioner/1"}], "note": [{"text": "urn:uuid:p"}]});
        let resolved = HashMap::from([("urn:uuid:p".to_owned(), "Patient/abc".to_owned())]);
        rewrite_references(&mut value, &resolved);
        assert_eq!(value["subject"]["reference"], "Patient/abc");
        assert_eq!(value["x"][0]["reference"], "Patient/abc");
        assert_eq!(value["x"][1]["reference"], "Practitioner/1");
        // Only `reference` elements: text that happens to hold the same string is untouched.
        assert_eq!(value["note"][0]["text"], "urn:uuid:p");
    }

    #[test]
    fn a_resource_names_its_patient_by_key_only() {
        let key = "11".repeat(32);
        let valid = crate::config::parse_key(&key);
        let obs = json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{key}")}});
        assert_eq!(patient_of(&obs), valid);
        let patient = json!({"resourceType": "Patient", "identifier": [{"system": "urn:other", "value": "x"}, {"system": PATIENT_KEY_SYSTEM, "value": key}]});
        assert_eq!(patient_of(&patient), valid);
        assert_eq!(
            patient_of(
                &json!({"resourceType": "Observation", "subject": {"reference": "Patient/alice"}})
            ),
            None
        );
        assert_eq!(
            patient_of(
                &json!({"resourceType": "Observation", "subject": {"reference": format!("Group/{key}")}})
            ),
            None
        );
        assert_eq!(
            patient_of(&json!({"resourceType": "Patient", "id": key})),
            None
        );
        assert_eq!(
            patient_of(
                &json!({"resourceType": "Observation", "subject": {"reference": format!("Patient/{key}00")}})
            ),
            None
        );
    }

    #[test]
    fn query_strings_and_codes_parse_strictly() {
        let q = query_params(Some(
            "patient=Patient%2Fab&code=http%3A%2F%2Floinc.org%7C4548-4&_count=5",
        ))
        .expect("query");
        assert_eq!(q["patient"], "Patient/ab");
        assert_eq!(q["code"], "http://loinc.org|4548-4");
        assert!(query_params(Some("code=%zz")).is_err());
        assert!(query_params(Some("code=%e2%28")).is_err(), "not UTF-8");
        assert_eq!(
            code_param(&q).expect("codes"),
            vec![("http://loinc.org".to_owned(), "4548-4".to_owned())]
        );
        let bare = HashMap::from([("code".to_owned(), "4548-4".to_owned())]);
        assert_eq!(
            code_param(&bare).expect("codes").len(),
            DEFAULT_CODE_SYSTEMS.len()
        );
        for bad in ["|4548-4", "http://loinc.org|", ","] {
            let p = HashMap::from([("code".to_owned(), bad.to_owned())]);
            assert_eq!(code_param(&p).unwrap_err().code(), "bad_code", "{bad}");
        }
        let many = HashMap::from([("code".to_owned(), vec!["s|c"; 65].join(","))]);
        assert!(code_param(&many).is_err());
        assert_eq!(
            number_param(&HashMap::new(), "_count", 10).expect("default"),
            10
        );
        let negative = HashMap::from([("_count".to_owned(), "-1".to_owned())]);
        assert!(number_param(&negative, "_count", 10).is_err());
        assert_eq!(percent_encode("a|b c"), "a%7Cb%20c");
    }

    #[test]
    fn errors_are_operation_outcomes_with_a_stable_code_and_nothing_of_the_request() {
        let e = FhirError::forbidden(
            "denied",
            "the patient's consent does not permit this access",
        );
        let outcome = e.outcome();
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(outcome["issue"][0]["code"], "forbidden");
        assert_eq!(
            outcome["issue"][0]["details"]["coding"][0]["system"],
            ERROR_SYSTEM
        );
        assert_eq!(
            outcome["issue"][0]["details"]["coding"][0]["code"],
            "denied"
        );
        assert_eq!(e.status(), StatusCode::FORBIDDEN);
        let invalid = FhirError::from(ApiError::InvalidFhir(vec![crate::api::IssueView {
            severity: "error".into(),
            code: "required".into(),
            message: "a required element is missing".into(),
            path: "Observation.status".into(),
        }]));
        let text = invalid.outcome().to_string();
        assert!(
            text.contains("\"expression\":[\"Observation.status\"]"),
            "{text}"
        );
        assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }

    #[test]
    fn every_refusal_of_a_holder_has_its_status() {
        assert_eq!(
            answer_error(&KeyAnswer::Denied).status(),
            StatusCode::FORBIDDEN
        );
        assert_eq!(
            answer_error(&KeyAnswer::RuleRefused {
                rule: "erased".into()
            })
            .status(),
            StatusCode::GONE
        );
        let rule = answer_error(&KeyAnswer::RuleRefused {
            rule: "bad_credential".into(),
        });
        assert_eq!(
            (rule.status(), rule.code()),
            (StatusCode::FORBIDDEN, "bad_credential")
        );
        // An unknown rule name is not echoed as a code.
        assert_eq!(
            answer_error(&KeyAnswer::RuleRefused {
                rule: "<script>".into()
            })
            .code(),
            "rule_refused"
        );
        assert_eq!(answer_error(&KeyAnswer::Research).code(), "research");
        assert_eq!(
            answer_error(&KeyAnswer::Unavailable).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            answer_error(&KeyAnswer::Replayed).status(),
            StatusCode::CONFLICT
        );
        assert_eq!(
            answer_error(&KeyAnswer::NotHolder).status(),
            StatusCode::BAD_GATEWAY
        );
    }

    #[test]
    fn the_capability_statement_lists_what_is_served() {
        let c = capability_statement(None);
        assert_eq!(c["fhirVersion"], "4.0.1");
        let token = |c: &Value| {
            c["rest"][0]["security"]["extension"][0]["extension"][0]["valueUri"].clone()
        };
        assert_eq!(token(&c), "auth/token");
        let c = capability_statement(Some("https://node.example/fhir"));
        assert_eq!(token(&c), "https://node.example/fhir/auth/token");
        let rest = &c["rest"][0];
        assert_eq!(
            rest["security"]["service"][0]["coding"][0]["code"],
            "SMART-on-FHIR"
        );
        let types: Vec<&str> = rest["resource"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["type"].as_str())
            .collect();
        for t in ["Observation", "Condition", "Consent", "AuditEvent"] {
            assert!(types.contains(&t), "{t}");
        }
    }
}
