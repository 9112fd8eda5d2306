//! The client API: HTTP/1.1 and JSON, on loopback by default; with `[auth]`, every route but
//! `/health` and the public FHIR ones needs a bearer token ([`crate::auth`]; `docs/node.md`,
//! "Client API", "Authentication" and "Threat model").
//!
//! | method and path | answer |
//! | --- | --- |
//! | `POST /v1/transactions` | `{"hex": …}` or `{"base64": …}`: a patient-signed body (consent grant, consent revocation, erasure request) in its canonical encoding; this node contributes it. `202` `{"id", "status": "pending"}` |
//! | `GET /v1/transactions/{id}` | `{"id", "status": "pending" \| "committed" \| "rejected", "height"?, "rule"?}` |
//! | `GET /v1/transactions/{id}/proof` | `{"id", "height", "proof"}`: a light-client inclusion proof (hex of its canonical bytes) |
//! | `POST /v1/records` | `{"fhir": {…}, "enrolment": {"hex" \| "base64"}, "readers"?: [hex]}`: a FHIR record for a patient enrolled here; `202` `{"id", "record"}`; `422 invalid_fhir` with the issue paths |
//! | `POST /v1/key-requests` | `{"hex" \| "base64"}`: a `KeyRequest` the clinician signed; this node relays it to the record's holder. `202` `{"id", "status": "pending"}` |
//! | `GET /v1/key-requests/{id}` | `{"id", "status": "pending" \| "answered", "answer"?, "key_shared"?, "access_logged"?, "committed"?}` |
//! | `GET /v1/records/{id}/release?reader={hex}` | what was released to that reader: `{"record", "reader", "sealed", "envelope"}` (hex of their canonical bytes) |
//! | `GET /v1/blocks/{height}` | the committed block: header fields, transaction ids, its canonical bytes in hex |
//! | `GET /v1/status` | member, network, height, head, round, mempool size, peers connected, submissions pending |
//! | `GET /health` | `200 {"status": "ok"}` while the host loop runs, `503` after |
//! | `GET /metrics` | Prometheus text ([`crate::prom`]) |
//!
//! Every error is JSON, `{"error": {"code", "message", "rule"?, "issues"?}}`, with the status of its
//! [`ApiError`]; a refused request changes nothing. No error echoes what the client sent.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use medchain::{
    KeyAnswer, KeyRequestId, OpenError, PublicIdentity, RecordError, RequestKeyError,
    SealedWriterKey, SubmitTxError, TxBody, WriteError,
};
use medchain_core::block::Block;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::{ChainId, RecordId, TxId};
use medchain_core::protocol::SubmitError;
use medchain_core::sharing::{KeyRequest, KeyRequestError};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::{mpsc, oneshot};

use crate::auth::{self, AuthState};
use crate::prom;
use crate::service::{Command, KeyRequestStatus, NodeState, TxStatus};

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
    /// The FHIR resource does not pass the network's profile: nothing was sealed or submitted.
    /// The body lists the issues (severity, code, path; never a value).
    #[error("the FHIR resource is not valid for this network ({} issues)", .0.len())]
    InvalidFhir(Vec<IssueView>),
    /// The record could not be sealed, classified or indexed (too many readers, more codes
    /// than a class carries, a keyword over its limit, ...).
    #[error("the record cannot be added: {0}")]
    Unprocessable(&'static str),
    /// The patient's enrolment does not open for this node (another hospital's, another
    /// network's, another patient's, a bad signature, or not a sealed writer key).
    #[error("the patient's enrolment does not open for this node")]
    BadEnrolment,
    /// A reader is not the hex of a public identity's canonical bytes.
    #[error("a reader is the hex of a public identity's canonical bytes (64 bytes)")]
    BadReader,
    /// The bytes are not a key request in its canonical encoding.
    #[error("the bytes are not a key request")]
    MalformedKeyRequest,
    /// The key request does not check out here: its code says why (`bad_signature`,
    /// `not_addressed_here`, `stale`, `bad_purpose`, `foreign_credential`).
    #[error("the key request is refused: {0}")]
    BadKeyRequest(&'static str),
    /// Research is served de-identified, never with record keys.
    #[error("research access is served de-identified, not by releasing record keys")]
    Research,
    /// The record was erased by its patient: its key is gone.
    #[error("the record was erased")]
    Erased,
    /// This key request was relayed by this node already and awaits its answer.
    #[error("this key request was relayed already")]
    AlreadySent,
    /// A key request id or record id is not 64 hex digits.
    #[error("an id is 64 hex digits")]
    BadId,
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
            | Self::BadHeight
            | Self::BadReader
            | Self::MalformedKeyRequest
            | Self::BadId => StatusCode::BAD_REQUEST,
            Self::UnsupportedKind(_)
            | Self::Rejected(_)
            | Self::InvalidFhir(_)
            | Self::Unprocessable(_)
            | Self::BadEnrolment
            | Self::BadKeyRequest(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Research => StatusCode::FORBIDDEN,
            Self::Erased => StatusCode::GONE,
            Self::Duplicate | Self::AlreadySent => StatusCode::CONFLICT,
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
            Self::InvalidFhir(_) => "invalid_fhir",
            Self::Unprocessable(_) => "unprocessable_record",
            Self::BadEnrolment => "bad_enrolment",
            Self::BadReader => "bad_reader",
            Self::MalformedKeyRequest => "malformed_key_request",
            Self::BadKeyRequest(code) => code,
            Self::Research => "research",
            Self::Erased => "erased",
            Self::AlreadySent => "already_sent",
            Self::BadId => "bad_id",
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
                issues: match self {
                    Self::InvalidFhir(issues) => issues.clone(),
                    _ => Vec::new(),
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

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Fhir(WriteError::Invalid(invalid)) => Self::InvalidFhir(
                invalid
                    .report
                    .issues()
                    .iter()
                    .map(|i| IssueView {
                        severity: i.severity.code().into(),
                        code: i.code.fhir_issue_type().into(),
                        message: i.code.message().into(),
                        path: i.path.clone(),
                    })
                    .collect(),
            ),
            RecordError::Fhir(_) => Self::Unprocessable("it could not be sealed for its readers"),
            RecordError::Enrolment(_) => Self::BadEnrolment,
            RecordError::Class(_) => Self::Unprocessable("it cannot be classified"),
            RecordError::Keywords(_) => {
                Self::Unprocessable("its search keywords cannot be extracted")
            }
            RecordError::Index(_) => Self::Unprocessable("its index entry cannot be built"),
            RecordError::Submit(e) => e.into(),
            _ => {
                tracing::error!("adding a record failed");
                Self::Internal
            }
        }
    }
}

impl From<RequestKeyError> for ApiError {
    fn from(e: RequestKeyError) -> Self {
        match e {
            RequestKeyError::Request(KeyRequestError::Research) => Self::Research,
            RequestKeyError::Request(e) => Self::BadKeyRequest(match e {
                KeyRequestError::BadPurpose => "bad_purpose",
                KeyRequestError::ForeignCredential => "foreign_credential",
                KeyRequestError::BadSignature => "bad_signature",
                KeyRequestError::NotAddressedHere => "not_addressed_here",
                KeyRequestError::Stale => "stale",
                _ => "invalid_key_request",
            }),
            RequestKeyError::UnknownRecord => Self::NotFound("committed record"),
            RequestKeyError::Erased => Self::Erased,
            RequestKeyError::AlreadySent => Self::AlreadySent,
            e => {
                tracing::error!(error = %e, "relaying a key request failed");
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
    /// For `invalid_fhir`: what validation found.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub issues: Vec<IssueView>,
}

/// One FHIR validation issue (`invalid_fhir`): fixed texts and a path, never a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueView {
    /// `error` or `warning`.
    pub severity: String,
    /// The `OperationOutcome` issue type (`required`, `value`, `structure`, ...).
    pub code: String,
    /// The fixed message of the issue's kind.
    pub message: String,
    /// Where: `Observation.valueQuantity.value` (FHIRPath; array positions in brackets).
    pub path: String,
}

/// Canonical bytes, in exactly one of hex or standard base64.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Encoded {
    /// The bytes in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hex: Option<String>,
    /// The bytes in standard base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base64: Option<String>,
}

impl Encoded {
    /// Hex of `bytes`.
    pub fn hex(bytes: &[u8]) -> Self {
        Self {
            hex: Some(hex::encode(bytes)),
            base64: None,
        }
    }

    /// The bytes.
    ///
    /// # Errors
    /// [`ApiError::Encoding`], [`ApiError::BadHex`], [`ApiError::BadBase64`].
    pub fn decode(&self) -> Result<Vec<u8>, ApiError> {
        match (&self.hex, &self.base64) {
            (Some(h), None) => hex::decode(h.trim()).map_err(|_| ApiError::BadHex),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .map_err(|_| ApiError::BadBase64),
            _ => Err(ApiError::Encoding),
        }
    }
}

/// `POST /v1/records`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddRecordRequest {
    /// The FHIR R4 resource, a JSON object (stored as its compact serialization).
    pub fhir: serde_json::Value,
    /// The patient's enrolment at this node: the canonical bytes of the `SealedWriterKey` the
    /// patient's wallet made for this member (`SealedWriterKey::export`).
    pub enrolment: Encoded,
    /// Who else may open the record from the start: hex of public identities' canonical
    /// bytes (this node always can).
    #[serde(default)]
    pub readers: Vec<String>,
}

/// The answer to `POST /v1/records`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordAddedView {
    /// The `RecordAdded` transaction's id (follow it at `/v1/transactions/{id}`).
    pub id: String,
    /// The record's id.
    pub record: String,
}

/// A key request relayed by this node (`POST /v1/key-requests`, `GET /v1/key-requests/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRequestView {
    /// The request's id (hex).
    pub id: String,
    /// `pending` or `answered`.
    pub status: String,
    /// For `answered`: [`KeyAnswer::name`] (`released`, `denied`, `replayed`, `stale`, a
    /// ledger rule's name, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<String>,
    /// For `released`: the `KeyShared` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_shared: Option<String>,
    /// For `released`: its `AccessLogged` transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_logged: Option<String>,
    /// For `answered`: whether the release's two transactions are committed on this node
    /// (always `false` for an answer that released nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<bool>,
}

impl KeyRequestView {
    fn new(id: &KeyRequestId, status: KeyRequestStatus) -> Self {
        let mut view = Self {
            id: id.to_string(),
            status: "pending".into(),
            answer: None,
            key_shared: None,
            access_logged: None,
            committed: None,
        };
        if let KeyRequestStatus::Answered { answer, committed } = status {
            view.status = "answered".into();
            view.answer = Some(answer.name().to_owned());
            view.committed = Some(committed);
            if let KeyAnswer::Released {
                key_shared,
                access_logged,
            } = answer
            {
                view.key_shared = Some(key_shared.to_string());
                view.access_logged = Some(access_logged.to_string());
            }
        }
        view
    }
}

/// What was released to one reader (`GET /v1/records/{id}/release?reader=…`): the reader
/// opens it with their own identity (`SealedRecord::open_with(reader, &[envelope])`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseView {
    /// The record's id.
    pub record: String,
    /// The reader (hex of its public identity's canonical bytes).
    pub reader: String,
    /// The sealed record's canonical bytes (hex): ciphertext.
    pub sealed: String,
    /// The reader's key envelope from the committed `KeyShared` (hex of its canonical bytes).
    pub envelope: String,
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

/// The absolute FHIR base URL for links a client follows (the CapabilityStatement's token
/// URI, a search Bundle's paging links): the token endpoint's URL (`audience`) without its
/// `/auth/token` — the URL clients already sign their assertions for — or, without `[auth]`, the
/// API's bound address when it is a specific one. `None` (links stay relative to the base) when
/// neither names a reachable URL: an audience behind a proxy that rewrites paths, or an API bound
/// to an unspecified address without `[auth]`.
pub(crate) fn fhir_base_url(audience: Option<&str>, api: SocketAddr, tls: bool) -> Option<String> {
    match audience {
        Some(audience) => audience
            .strip_suffix("/auth/token")
            .filter(|base| base.ends_with("/fhir"))
            .map(str::to_owned),
        None if api.ip().is_unspecified() => None,
        None => Some(format!(
            "{}://{api}/fhir",
            if tls { "https" } else { "http" }
        )),
    }
}

/// What the handlers share.
#[derive(Clone)]
pub(crate) struct ApiState {
    state: Arc<NodeState>,
    commands: mpsc::Sender<Command>,
    fhir_base: Option<Arc<str>>,
}

impl ApiState {
    pub(crate) fn new(
        state: Arc<NodeState>,
        commands: mpsc::Sender<Command>,
        fhir_base: Option<String>,
    ) -> Self {
        Self {
            state,
            commands,
            fhir_base: fhir_base.map(Arc::from),
        }
    }

    /// The FHIR base URL clients use (`…/fhir`, no trailing slash), when the node knows it
    /// ([`fhir_base_url`]); `None`: links are relative to the base.
    pub(crate) fn fhir_base(&self) -> Option<&str> {
        self.fhir_base.as_deref()
    }

    /// The network's chain id.
    pub(crate) fn chain(&self) -> ChainId {
        ChainId::from_byte_array(self.state.genesis.to_byte_array())
    }

    /// Runs `f` on the host's thread and waits for its result.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::service::Running) -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        self.ask(|reply| {
            Command::Run(Box::new(move |running| {
                let _ = reply.send(f(running));
            }))
        })
        .await
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

/// The API's routes over `state`, behind the bearer check of `auth` ([`crate::auth`]).
pub(crate) fn router(state: ApiState, auth: Option<Arc<AuthState>>) -> Router {
    let routes = Router::new()
        .route("/v1/transactions", post(submit))
        .route("/v1/transactions/{id}", get(tx_status))
        .route("/v1/transactions/{id}/proof", get(proof))
        .route("/v1/records", post(add_record))
        .route("/v1/records/{id}/release", get(release))
        .route("/v1/key-requests", post(relay_key_request))
        .route("/v1/key-requests/{id}", get(key_request_status))
        .route("/v1/blocks/{height}", get(block))
        .route("/v1/status", get(status))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .merge(crate::fhir::routes())
        .fallback(|| async { ApiError::NotFound("endpoint") })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        .merge(auth::routes(auth.clone()));
    // Last, over every route merged above: nothing escapes the check.
    auth::protect(routes, auth)
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
        TxBody::AccessDenied { .. } => "access_denied",
        _ => "unknown",
    }
}

/// Parses a JSON body, reporting only the position of a problem (serde's messages can quote
/// the input).
fn from_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::BadJson(format!(
            "{:?} error at line {} column {}",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// A public identity from the hex of its canonical bytes.
fn parse_reader(text: &str) -> Result<PublicIdentity, ApiError> {
    let bytes = hex::decode(text.trim()).map_err(|_| ApiError::BadReader)?;
    PublicIdentity::from_bytes(&bytes).map_err(|_| ApiError::BadReader)
}

/// Parses a record to add without touching the node: the FHIR bytes, the enrolment, the
/// readers.
///
/// # Errors
/// The [`ApiError`] of the first problem.
pub fn parse_record(
    bytes: &[u8],
) -> Result<(Vec<u8>, SealedWriterKey, Vec<PublicIdentity>), ApiError> {
    let request: AddRecordRequest = from_json(bytes)?;
    if !request.fhir.is_object() {
        return Err(ApiError::BadJson("\"fhir\" must be a JSON object".into()));
    }
    let fhir = serde_json::to_vec(&request.fhir).map_err(|_| ApiError::Internal)?;
    let enrolment = SealedWriterKey::from_bytes(&request.enrolment.decode()?)
        .map_err(|_| ApiError::BadEnrolment)?;
    let readers = request
        .readers
        .iter()
        .map(|r| parse_reader(r))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((fhir, enrolment, readers))
}

/// Parses a key request without touching the node (its checks against the ledger are the
/// host's).
///
/// # Errors
/// The [`ApiError`] of the first problem.
pub fn parse_key_request(bytes: &[u8]) -> Result<KeyRequest, ApiError> {
    let request: Encoded = from_json(bytes)?;
    KeyRequest::from_bytes(&request.decode()?).map_err(|_| ApiError::MalformedKeyRequest)
}

/// Parses and checks a submission without touching the node: JSON, encoding, canonical body,
/// kind (patient-signed only), the body's own checks for `chain`.
///
/// # Errors
/// The [`ApiError`] of the first problem.
pub fn parse_submission(bytes: &[u8], chain: &ChainId) -> Result<TxBody, ApiError> {
    let request: SubmitRequest = from_json(bytes)?;
    let raw = Encoded {
        hex: request.hex,
        base64: request.base64,
    }
    .decode()?;
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

/// The request body, at most [`MAX_REQUEST`] bytes.
async fn read_body(body: Body) -> Result<bytes::Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_REQUEST).await.map_err(|e| {
        if over_limit(&e) {
            ApiError::TooLarge
        } else {
            ApiError::BadJson("the body could not be read".into())
        }
    })
}

async fn submit(
    State(api): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<TxStatusView>), ApiError> {
    let bytes = read_body(body).await?;
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

async fn add_record(
    State(api): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<RecordAddedView>), ApiError> {
    let (fhir, enrolment, readers) = parse_record(&read_body(body).await?)?;
    let receipt = api
        .ask(|reply| Command::AddRecord {
            fhir,
            enrolment: Box::new(enrolment),
            readers,
            reply,
        })
        .await??;
    Ok((
        StatusCode::ACCEPTED,
        Json(RecordAddedView {
            id: receipt.tx_id.to_string(),
            record: receipt.record_id.to_string(),
        }),
    ))
}

async fn relay_key_request(
    State(api): State<ApiState>,
    body: Body,
) -> Result<(StatusCode, Json<KeyRequestView>), ApiError> {
    let request = parse_key_request(&read_body(body).await?)?;
    let id = api
        .ask(|reply| Command::RelayKeyRequest {
            request: Box::new(request),
            reply,
        })
        .await??;
    Ok((
        StatusCode::ACCEPTED,
        Json(KeyRequestView::new(&id, KeyRequestStatus::Pending)),
    ))
}

async fn key_request_status(
    State(api): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<KeyRequestView>, ApiError> {
    let id = KeyRequestId::from_str(&id).map_err(|_| ApiError::BadId)?;
    let status = api
        .ask(|reply| Command::KeyRequestStatus { id, reply })
        .await?
        .map_err(|e| {
            tracing::error!(error = %e, "key request status lookup failed");
            ApiError::Internal
        })?
        .ok_or(ApiError::NotFound("key request relayed by this node"))?;
    Ok(Json(KeyRequestView::new(&id, status)))
}

/// The `reader` parameter of a query string.
fn reader_param(query: Option<&str>) -> Result<PublicIdentity, ApiError> {
    let value = query
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("reader="))
        .ok_or(ApiError::BadReader)?;
    parse_reader(value)
}

async fn release(
    State(api): State<ApiState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Json<ReleaseView>, ApiError> {
    let record = RecordId::from_str(&id).map_err(|_| ApiError::BadId)?;
    let reader = reader_param(query.as_deref())?;
    let (sealed, envelope) = api
        .ask(|reply| Command::Release {
            reader,
            record,
            reply,
        })
        .await?
        .map_err(|e| match e {
            medchain::LedgerError::Open(OpenError::Erased) => ApiError::Erased,
            medchain::LedgerError::Open(_) => {
                ApiError::NotFound("release of this record to this reader")
            }
            e => {
                tracing::error!(error = %e, "release lookup failed");
                ApiError::Internal
            }
        })?;
    Ok(Json(ReleaseView {
        record: record.to_string(),
        reader: hex::encode(reader.to_bytes()),
        sealed: hex::encode(sealed.to_bytes()),
        envelope: hex::encode(envelope.to_bytes()),
    }))
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

    #[test]
    fn the_fhir_base_is_the_audiences_or_the_bound_address_never_a_guess() {
        let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        let audience = Some("https://ehr.example/medchain/fhir/auth/token");
        assert_eq!(
            fhir_base_url(audience, any, false).as_deref(),
            Some("https://ehr.example/medchain/fhir")
        );
        // An audience a proxy rewrites: no base can be derived, links stay relative.
        assert_eq!(
            fhir_base_url(Some("https://ehr.example/token"), bound, false),
            None
        );
        assert_eq!(
            fhir_base_url(None, bound, true).as_deref(),
            Some("https://127.0.0.1:8080/fhir")
        );
        assert_eq!(fhir_base_url(None, any, false), None);
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
    fn bad_records_and_key_requests_get_typed_errors() {
        let case = |json: serde_json::Value| parse_record(json.to_string().as_bytes()).unwrap_err();
        let fhir = serde_json::json!({"resourceType": "Observation"});
        let code = |e: ApiError| (e.code(), e.status().as_u16());
        assert_eq!(
            code(case(
                serde_json::json!({"fhir": "text", "enrolment": {"hex": "00"}})
            )),
            ("bad_json", 400)
        );
        assert_eq!(
            code(case(serde_json::json!({"fhir": fhir, "enrolment": {}}))),
            ("bad_encoding", 400)
        );
        assert_eq!(
            code(case(
                serde_json::json!({"fhir": fhir, "enrolment": {"hex": "00"}})
            )),
            ("bad_enrolment", 422)
        );
        assert_eq!(
            code(case(serde_json::json!({"fhir": fhir, "extra": 1}))),
            ("bad_json", 400)
        );
        assert_eq!(
            code(parse_key_request(b"{}").unwrap_err()),
            ("bad_encoding", 400)
        );
        assert_eq!(
            code(parse_key_request(br#"{"hex":"ff00"}"#).unwrap_err()),
            ("malformed_key_request", 400)
        );
        assert_eq!(
            code(reader_param(Some("other=1")).unwrap_err()),
            ("bad_reader", 400)
        );
        assert_eq!(code(reader_param(None).unwrap_err()), ("bad_reader", 400));
        let rng = &mut rand_core::UnwrapErr(getrandom::SysRng);
        let reader = medchain::Identity::generate(rng).public();
        let query = format!("x=1&reader={}", hex::encode(reader.to_bytes()));
        assert_eq!(reader_param(Some(&query)).unwrap(), reader);
        // The FHIR resource is never quoted back.
        let secret = serde_json::json!({"fhir": {"note": "Alice Smith HbA1c 7.9"}, "enrolment": {"hex": "zz"}});
        let message = case(secret).to_string();
        assert!(!message.contains("Alice"), "{message}");
    }

    #[test]
    fn key_request_refusals_have_stable_codes() {
        for (e, status, code) in [
            (RequestKeyError::UnknownRecord, 404, "not_found"),
            (RequestKeyError::Erased, 410, "erased"),
            (RequestKeyError::AlreadySent, 409, "already_sent"),
            (KeyRequestError::Research.into(), 403, "research"),
            (KeyRequestError::BadSignature.into(), 422, "bad_signature"),
            (
                KeyRequestError::NotAddressedHere.into(),
                422,
                "not_addressed_here",
            ),
            (KeyRequestError::Stale.into(), 422, "stale"),
            (KeyRequestError::BadPurpose.into(), 422, "bad_purpose"),
            (
                KeyRequestError::ForeignCredential.into(),
                422,
                "foreign_credential",
            ),
        ] {
            let api = ApiError::from(e);
            assert_eq!((api.status().as_u16(), api.code()), (status, code));
        }
        let invalid = ApiError::InvalidFhir(vec![IssueView {
            severity: "error".into(),
            code: "required".into(),
            message: "required element missing".into(),
            path: "Observation.status".into(),
        }]);
        assert_eq!(invalid.status().as_u16(), 422);
        assert_eq!(invalid.body().error.issues[0].path, "Observation.status");
        assert!(ApiError::BadHex.body().error.issues.is_empty());
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
