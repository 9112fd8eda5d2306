//! The client API: HTTP/1.1 and JSON, on loopback by default, without authentication
//! (`docs/node.md`, "Client API" and "Threat model").
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /v1/transactions` | `{"hex": …}` or `{"base64": …}`: a patient-signed body (consent grant, consent revocation, erasure request) in its canonical encoding; this node contributes it. `202` `{"id", "status": "pending"}` |
//! | `GET /v1/transactions/{id}` | `{"id", "status": "pending" \| "committed" \| "rejected", "height"?, "rule"?}` |
//! | `GET /v1/transactions/{id}/proof` | `{"id", "height", "proof"}`: a light-client inclusion proof (hex of its canonical bytes) |
//! | `GET /v1/blocks/{height}` | the committed block: header fields, transaction ids, its canonical bytes in hex |
//! | `GET /v1/status` | member, network, height, head, round, mempool size, peers connected, submissions pending |
//! | `GET /health` | `200 {"status": "ok"}` while the host loop runs, `503` after |
//! | `GET /metrics` | Prometheus text ([`crate::prom`]) |
//!
//! Every error is JSON, `{"error": {"code", "message", "rule"?}}`, with the status of its
//! [`ApiError`]; a refused request changes nothing. No error echoes what the client sent.

use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use medchain::{SubmitTxError, TxBody};
use medchain_core::block::Block;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::{ChainId, TxId};
use medchain_core::protocol::SubmitError;
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::prom;
use crate::service::{Command, NodeState, TxStatus};

/// The largest request body accepted (a patient-signed body is a few KiB).
pub const MAX_REQUEST: usize = 256 * 1024;

/// A request the API refuses, or could not serve. Each has an HTTP status and a stable code.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not the JSON the endpoint takes.
    #[error("the body must be a JSON object {{\"hex\": …}} or {{\"base64\": …}} ({0})")]
    BadJson(String),
    /// Neither or both of `hex` and `base64`.
    #[error("give the transaction as exactly one of \"hex\" or \"base64\"")]
    Encoding,
    /// The `hex` field is not hex.
    #[error("\"hex\" is not an even number of hex digits")]
    BadHex,
    /// The `base64` field is not standard base64.
    #[error("\"base64\" is not standard base64 with padding")]
    BadBase64,
    /// The bytes are not a transaction body in its canonical encoding.
    #[error("the bytes are not a transaction body: {0}")]
    Malformed(String),
    /// Only patient-signed bodies may be submitted over the API.
    #[error("a {0} body cannot be submitted here: only patient-signed bodies (consent grants, consent revocations, erasure requests)")]
    UnsupportedKind(&'static str),
    /// The body fails its own checks (a patient signature that does not verify, a field rule).
    #[error("the transaction is invalid: {0}")]
    Invalid(String),
    /// The ledger rules refuse it against the committed state.
    #[error("the transaction breaks the ledger rule {0}")]
    Rejected(&'static str),
    /// It is pending or committed already.
    #[error("the transaction is pending or committed already")]
    Duplicate,
    /// The node's mempool is full.
    #[error("the node's mempool is full; retry later")]
    MempoolFull,
    /// The body is larger than [`MAX_REQUEST`].
    #[error("the request body is larger than {MAX_REQUEST} bytes")]
    TooLarge,
    /// The transaction id is not 64 hex digits.
    #[error("a transaction id is 64 hex digits")]
    BadTxId,
    /// The height is not a positive integer.
    #[error("a block height is an integer from 1")]
    BadHeight,
    /// No such thing here.
    #[error("no such {0}")]
    NotFound(&'static str),
    /// The method is not served at this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many requests wait for the node.
    #[error("the node is busy; retry later")]
    Busy,
    /// The node is stopping or stopped.
    #[error("the node is not running")]
    Unavailable,
    /// The node failed to serve the request (details in its log).
    #[error("internal error (see the node's log)")]
    Internal,
}

impl ApiError {
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadJson(_)
            | Self::Encoding
            | Self::BadHex
            | Self::BadBase64
            | Self::Malformed(_)
            | Self::Invalid(_)
            | Self::BadTxId
            | Self::BadHeight => StatusCode::BAD_REQUEST,
            Self::UnsupportedKind(_) | Self::Rejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Duplicate => StatusCode::CONFLICT,
            Self::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::MempoolFull | Self::Busy | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable error code clients match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::Encoding => "bad_encoding",
            Self::BadHex => "bad_hex",
            Self::BadBase64 => "bad_base64",
            Self::Malformed(_) => "malformed_transaction",
            Self::UnsupportedKind(_) => "unsupported_kind",
            Self::Invalid(_) => "invalid_transaction",
            Self::Rejected(_) => "rejected",
            Self::Duplicate => "duplicate",
            Self::MempoolFull => "mempool_full",
            Self::TooLarge => "too_large",
            Self::BadTxId => "bad_tx_id",
            Self::BadHeight => "bad_height",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Busy => "busy",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The error's JSON body.
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code().into(),
                message: self.to_string(),
                rule: match self {
                    Self::Rejected(rule) => Some((*rule).into()),
                    _ => None,
                },
            },
        }
    }
}

impl From<SubmitTxError> for ApiError {
    fn from(e: SubmitTxError) -> Self {
        match e {
            SubmitTxError::Node(SubmitError::Rejected(rule)) => Self::Rejected(rule.name()),
            SubmitTxError::Node(SubmitError::Duplicate(_) | SubmitError::AlreadyCommitted(_)) => {
                Self::Duplicate
            }
            SubmitTxError::Node(SubmitError::MempoolFull(_)) => Self::MempoolFull,
            SubmitTxError::Node(e) => Self::Invalid(e.to_string()),
            SubmitTxError::Build(e) => Self::Invalid(e.to_string()),
            e => {
                tracing::error!(error = %e, "submission failed");
                Self::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status(), Json(self.body())).into_response()
    }
}

/// An error's JSON body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// An error: its code, a message for people, the rule for `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// [`ApiError::code`].
    pub code: String,
    /// What went wrong.
    pub message: String,
    /// The ledger rule, for `rejected` ([`medchain::RuleError::name`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// `POST /v1/transactions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The body's canonical bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// The body's canonical bytes in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

/// A transaction's status (`GET /v1/transactions/{id}`, and the submit answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxStatusView {
    /// The transaction id (hex).
    pub id: String,
    /// `pending`, `committed` or `rejected`.
    pub status: String,
    /// For `committed`: the block's height.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    /// For `rejected`: the ledger rule's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl TxStatusView {
    fn new(id: &TxId, status: TxStatus) -> Self {
        let (name, height, rule) = match status {
            TxStatus::Pending => ("pending", None, None),
            TxStatus::Committed(h) => ("committed", Some(h), None),
            TxStatus::Rejected(r) => ("rejected", None, Some(r.to_owned())),
        };
        Self {
            id: id.to_string(),
            status: name.into(),
            height,
            rule,
        }
    }
}

/// A light-client inclusion proof (`GET /v1/transactions/{id}/proof`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofView {
    /// The transaction id (hex).
    pub id: String,
    /// The height of its block.
    pub height: u64,
    /// The canonical bytes of its `medchain_core::light::InclusionProof` (hex): what a wallet
    /// checks against the genesis it pinned, trusting nothing else.
    pub proof: String,
}

/// A committed block (`GET /v1/blocks/{height}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockView {
    /// Its height.
    pub height: u64,
    /// Its hash.
    pub hash: String,
    /// Its parent's hash.
    pub prev: String,
    /// Its consensus round.
    pub round: u64,
    /// The miner's timestamp (milliseconds since the Unix epoch).
    pub timestamp_ms: u64,
    /// The miner's signing key.
    pub miner: String,
    /// Its transactions' ids, in block order.
    pub txs: Vec<String>,
    /// The block's canonical bytes (hex): transactions' bodies stay sealed under the network
    /// key.
    pub encoded: String,
}

impl BlockView {
    fn new(block: &Block) -> Self {
        let h = &block.header;
        Self {
            height: h.height,
            hash: block.hash().to_string(),
            prev: h.prev.to_string(),
            round: h.round,
            timestamp_ms: h.timestamp_ms,
            miner: h.miner.to_string(),
            txs: block
                .transactions
                .iter()
                .map(|t| t.id().to_string())
                .collect(),
            encoded: hex::encode(block.to_bytes()),
        }
    }
}

/// The node's status (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusView {
    /// This member's signing key.
    pub member: String,
    /// Its name in genesis.
    pub name: String,
    /// `validator` or `member`.
    pub role: String,
    /// The chain's name.
    pub chain: String,
    /// The genesis hash.
    pub genesis: String,
    /// The committed height.
    pub height: u64,
    /// The committed head's hash.
    pub head: String,
    /// The consensus round the node is in (0 from a node that does not report it).
    #[serde(default)]
    pub round: u64,
    /// Transactions in the node's mempool: submitted here or received from other members, not
    /// committed yet (0 from a node that does not report it).
    #[serde(default)]
    pub mempool_transactions: u64,
    /// Peers with an authenticated connection now.
    pub peers_connected: u64,
    /// The other members of the network.
    pub peers_total: usize,
    /// Transactions submitted here, not yet committed or refused.
    pub pending_submissions: u64,
    /// Seconds since the node started.
    pub uptime_seconds: u64,
    /// Whether the host loop runs.
    pub running: bool,
}

impl StatusView {
    fn new(s: &NodeState) -> Self {
        Self {
            member: s.member.to_string(),
            name: s.name.clone(),
            role: if s.validator { "validator" } else { "member" }.into(),
            chain: s.chain_name.clone(),
            genesis: s.genesis.to_string(),
            height: s.height(),
            head: s.head().to_string(),
            round: s.round(),
            mempool_transactions: s.mempool(),
            peers_connected: s.transport().peers_connected(),
            peers_total: s.peers_total,
            pending_submissions: s.stats().pending,
            uptime_seconds: s.uptime().as_secs(),
            running: s.running(),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    state: Arc<NodeState>,
    commands: mpsc::Sender<Command>,
}

impl ApiState {
    pub(crate) fn new(state: Arc<NodeState>, commands: mpsc::Sender<Command>) -> Self {
        Self { state, commands }
    }

    /// Sends a command to the host's thread and waits for its answer.
    async fn ask<T>(
        &self,
        command: impl FnOnce(oneshot::Sender<T>) -> Command,
    ) -> Result<T, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .try_send(command(reply))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => ApiError::Busy,
                mpsc::error::TrySendError::Closed(_) => ApiError::Unavailable,
            })?;
        answer.await.map_err(|_| ApiError::Unavailable)
    }
}

/// The API's routes over `state`.
pub(crate) fn router(state: ApiState) -> Router {
    Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(tx_status))
        .route("/v1/transactions/{id}/proof", get(proof))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(|| async { ApiError::NotFound("endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
}

/// The kind's name, for error messages.
fn kind_name(body: &TxBody) -> &'static str {
    match body {
        TxBody::RecordAdded { .. } => "record_added",
        TxBody::ConsentGranted { .. } => "consent_granted",
        TxBody::ConsentRevoked { .. } => "consent_revoked",
        TxBody::KeyShared { .. } => "key_shared",
        TxBody::AccessLogged { .. } => "access_logged",
        TxBody::RecordErased { .. } => "record_erased",
        TxBody::ResearchReleased(_) => "research_released",
        _ => "unknown",
    }
}

/// Parses and checks a submission without touching the node: JSON, encoding, canonical body,
/// kind (patient-signed only), the body's own checks for `chain`.
///
/// # Errors
/// The [`ApiError`] of the first problem.
pub fn parse_submission(bytes: &[u8], chain: &ChainId) -> Result<TxBody, ApiError> {
    let request: SubmitRequest = serde_json::from_slice(bytes).map_err(|e| {
        // Position only: serde's messages can quote the input.
        ApiError::BadJson(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let raw = match (&request.hex, &request.base64) {
        (Some(h), None) => hex::decode(h.trim()).map_err(|_| ApiError::BadHex)?,
        (None, Some(b)) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|_| ApiError::BadBase64)?,
        _ => return Err(ApiError::Encoding),
    };
    let body = TxBody::from_bytes(&raw).map_err(|e| ApiError::Malformed(e.to_string()))?;
    match body {
        TxBody::ConsentGranted { .. }
        | TxBody::ConsentRevoked { .. }
        | TxBody::RecordErased { .. } => {}
        ref other => return Err(ApiError::UnsupportedKind(kind_name(other))),
    }
    body.check(chain)
        .map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(body)
}

/// Whether reading a body failed on [`MAX_REQUEST`].
fn over_limit(e: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if c.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = c.source();
    }
    false
}

async fn submit(
    State(api): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<TxStatusView>), ApiError> {
    let bytes = axum::body::to_bytes(body, MAX_REQUEST).await.map_err(|e| {
        if over_limit(&e) {
            ApiError::TooLarge
        } else {
            ApiError::BadJson("the body could not be read".into())
        }
    })?;
    let chain = ChainId::from_byte_array(api.state.genesis.to_byte_array());
    let body = parse_submission(&bytes, &chain)?;
    let id = api
        .ask(|reply| Command::Submit {
            body: Box::new(body),
            reply,
        })
        .await??;
    Ok((
        StatusCode::ACCEPTED,
        Json(TxStatusView::new(&id, TxStatus::Pending)),
    ))
}

async fn tx_status(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<TxStatusView>, ApiError> {
    let id = TxId::from_str(&id).map_err(|_| ApiError::BadTxId)?;
    let status = api
        .ask(|reply| Command::Status { id, reply })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "transaction status lookup failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::NotFound("transaction"))?;
    Ok(Json(TxStatusView::new(&id, status)))
}

async fn proof(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<ProofView>, ApiError> {
    let id = TxId::from_str(&id).map_err(|_| ApiError::BadTxId)?;
    let (height, proof) = api
        .ask(|reply| Command::Proof { id, reply })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "inclusion proof failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::NotFound(
            "committed transaction with a provable commit",
        ))?;
    Ok(Json(ProofView {
        id: id.to_string(),
        height,
        proof: hex::encode(proof.to_bytes()),
    }))
}

async fn block(
    State(api): State<ApiState>,
    Path(height): Path<String>,
) -> Result<Json<BlockView>, ApiError> {
    let height = height
        .parse::<u64>()
        .ok()
        .filter(|h| *h > 0)
        .ok_or(ApiError::BadHeight)?;
    let block = api
        .ask(|reply| Command::Block { height, reply })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "block lookup failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::NotFound("block"))?;
    Ok(Json(BlockView::new(&block)))
}

async fn status(State(api): State<ApiState>) -> Json<StatusView> {
    Json(StatusView::new(&api.state))
}

async fn health(State(api): State<ApiState>) -> Response {
    if api.state.running() {
        (
            StatusCode::OK,
            Json(serde_json::json!({ "status": "ok", "height": api.state.height() })),
        )
            .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({ "status": "stopped" })),
        )
            .into_response()
    }
}

async fn metrics(State(api): State<ApiState>) -> Response {
    (
        [(header::CONTENT_TYPE, prom::CONTENT_TYPE)],
        prom::render(&api.state),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_core::testkit::TestNet;

    fn chain() -> ChainId {
        TestNet::new(3, 1, 0).genesis.chain_id()
    }

    fn json(hex: &str) -> Vec<u8> {
        serde_json::to_vec(&SubmitRequest {
            hex: Some(hex.into()),
            base64: None,
        })
        .unwrap()
    }

    #[test]
    fn bad_submissions_get_typed_errors() {
        let c = chain();
        let case = |bytes: &[u8]| parse_submission(bytes, &c).unwrap_err();
        assert_eq!(case(b"not json").code(), "bad_json");
        assert_eq!(case(b"[1,2]").code(), "bad_json");
        assert_eq!(case(br#"{"hex":"00","extra":1}"#).code(), "bad_json");
        assert_eq!(case(b"{}").code(), "bad_encoding");
        assert_eq!(
            case(br#"{"hex":"00","base64":"AA=="}"#).code(),
            "bad_encoding"
        );
        assert_eq!(case(&json("abc")).code(), "bad_hex");
        assert_eq!(case(br#"{"base64":"***"}"#).code(), "bad_base64");
        assert_eq!(case(&json("")).code(), "malformed_transaction");
        assert_eq!(case(&json("ff00ff")).code(), "malformed_transaction");
        // Errors never quote what the client sent.
        let secret = r#"{"hex": 12345678, "note": "Alice Smith HbA1c 7.9"}"#;
        let message = case(secret.as_bytes()).to_string();
        assert!(
            !message.contains("Alice") && !message.contains("12345678"),
            "{message}"
        );
    }

    #[test]
    fn only_valid_patient_signed_bodies_pass() {
        use medchain::{Actor, Consent, Identity, Provision, Purpose};
        use medchain_core::hash::RecordId;
        let rng = &mut rand_core::UnwrapErr(getrandom::SysRng);
        let (alice, doctor) = (Identity::generate(rng), Identity::generate(rng));
        let c = chain();
        let consent = Consent {
            patient: alice.public(),
            issued_ms: 1_790_000_000_000,
            summary: String::new(),
            period: Default::default(),
            emergency: None,
            provisions: vec![Provision::permit()
                .actor(Actor::Party(doctor.verify_key()))
                .purpose(Purpose::Treat)],
        };
        let grant = consent.grant_body(&alice, &c).unwrap();
        let hex_grant = hex::encode(grant.to_bytes());
        assert_eq!(parse_submission(&json(&hex_grant), &c).unwrap(), grant);
        let b64 = base64::engine::general_purpose::STANDARD.encode(grant.to_bytes());
        let request = serde_json::to_vec(&SubmitRequest {
            hex: None,
            base64: Some(b64),
        })
        .unwrap();
        assert_eq!(parse_submission(&request, &c).unwrap(), grant);
        // Signed for another network: the patient's signature does not hold here.
        let other = TestNet::new(4, 1, 0).genesis.chain_id();
        let err = parse_submission(&json(&hex_grant), &other).unwrap_err();
        assert_eq!(
            (err.code(), err.status().as_u16()),
            ("invalid_transaction", 400)
        );
        // A body the hospital itself must vouch for is not taken from the API.
        let log = TxBody::AccessLogged {
            record_id: RecordId::from_byte_array([1; 32]),
            accessor: doctor.public(),
            purpose: "TREAT".into(),
            consent_id: None,
            emergency: false,
            accessed_at_ms: 1,
        };
        let err = parse_submission(&json(&hex::encode(log.to_bytes())), &c).unwrap_err();
        assert_eq!(
            (err.code(), err.status().as_u16()),
            ("unsupported_kind", 422)
        );
        assert!(err.to_string().contains("access_logged"));
    }

    #[tokio::test]
    async fn bodies_over_the_cap_are_told_apart_from_broken_ones() {
        let over = axum::body::to_bytes(Body::from(vec![b' '; MAX_REQUEST + 1]), MAX_REQUEST)
            .await
            .unwrap_err();
        assert!(over_limit(&over));
        let exact = axum::body::to_bytes(Body::from(vec![b' '; MAX_REQUEST]), MAX_REQUEST).await;
        assert_eq!(exact.unwrap().len(), MAX_REQUEST);
        let broken = axum::Error::new(std::io::Error::other("reset"));
        assert!(!over_limit(&broken));
    }

    #[test]
    fn error_statuses_and_bodies() {
        for (e, status, code) in [
            (ApiError::BadHex, 400, "bad_hex"),
            (
                ApiError::UnsupportedKind("key_shared"),
                422,
                "unsupported_kind",
            ),
            (ApiError::Rejected("consent_exists"), 422, "rejected"),
            (ApiError::Duplicate, 409, "duplicate"),
            (ApiError::TooLarge, 413, "too_large"),
            (ApiError::NotFound("block"), 404, "not_found"),
            (ApiError::MethodNotAllowed, 405, "method_not_allowed"),
            (ApiError::Busy, 503, "busy"),
            (ApiError::Internal, 500, "internal"),
        ] {
            assert_eq!(e.status().as_u16(), status);
            let body = e.body();
            assert_eq!(body.error.code, code);
            assert_eq!(body.error.rule.is_some(), code == "rejected");
        }
        let submit = ApiError::from(SubmitTxError::Node(SubmitError::MempoolFull(5)));
        assert_eq!(submit.code(), "mempool_full");
        let submit = ApiError::from(SubmitTxError::Node(SubmitError::BadSignature));
        assert_eq!(submit.code(), "invalid_transaction");
    }
}
