//! Who is asking: SMART App Launch 2.x "Backend Services" authentication on the client API
//! (`docs/node.md`, "Authentication (SMART Backend Services)").
//!
//! A client signs a JWT client assertion (RFC 7523) with one of its registered keys and trades
//! it at `POST /fhir/auth/token` (RFC 6749 §4.4, `client_credentials`) for a short-lived,
//! opaque bearer token carrying SMART v2 scopes. A patient needs no registration: an `EdDSA`
//! assertion signed with the patient's own key, issued as `patient:<64 hex of that key>`, gets
//! `patient/` read and search scopes (and creating consents) over the patient's own
//! compartment.
//!
//! | path | without a token |
//! | --- | --- |
//! | `GET /health`, `GET /fhir/metadata`, `GET /fhir/.well-known/smart-configuration`, `POST /fhir/auth/token` | served |
//! | every other `/fhir` path | `401` OperationOutcome |
//! | `/v1/*`, `/metrics` | with `[auth]`: `401`; a token of a client with `operator = true` is needed (else `403`). Without `[auth]`: served (the loopback operator API) |
//!
//! `protect` puts the check in front of a whole router (routes merged later included); a
//! handler reads the caller's [`Principal`] (an extractor) and calls [`Principal::require`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use medchain_core::jwt::check_audience;
use medchain_core::keys::VerifyKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

mod jwk;
mod jws;
mod scope;
mod store;

pub use jwk::{Alg, Jwk, JwkError, JwkSet, MAX_KEYS, MAX_RSA_BITS, MIN_RSA_BITS};
pub use jws::{
    patient_client_id, token_request, AssertionError, ClientAssertion, MAX_ASSERTION,
    MAX_JSON_DEPTH, MAX_JTI, PATIENT_PREFIX,
};
pub use scope::{Context, Permission, Scope, ScopeError, Scopes, MAX_SCOPES};
pub use store::{MAX_JTIS, MAX_TOKENS};

use store::{Fresh, ReplayCache, TokenStore};

/// The token endpoint.
pub const TOKEN_PATH: &str = "/fhir/auth/token";

/// The SMART configuration document.
pub const SMART_CONFIGURATION_PATH: &str = "/fhir/.well-known/smart-configuration";

/// The FHIR CapabilityStatement: public.
pub const METADATA_PATH: &str = "/fhir/metadata";

/// The health check: public.
pub const HEALTH_PATH: &str = "/health";

/// `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The largest token request body, in bytes.
pub const MAX_FORM: usize = 16 * 1024;

/// How far a client's clock may run ahead of the node's, in seconds (`nbf`, `iat`, `exp`).
pub const CLOCK_SKEW: u64 = 30;

/// The furthest ahead an assertion's `exp` may be, in seconds (SMART: five minutes).
pub const MAX_ASSERTION_LIFETIME: u64 = 300;

/// The default access token lifetime, in seconds.
pub const DEFAULT_TOKEN_LIFETIME: u64 = 300;

/// The accepted range of `token_lifetime_seconds`.
pub const TOKEN_LIFETIME_RANGE: std::ops::RangeInclusive<u64> = 1..=3600;

/// The longest client id.
const MAX_CLIENT_ID: usize = 128;

/// What a patient's self-assertion may be granted: read and search of the patient's own
/// compartment, and creating consents.
pub const PATIENT_SCOPES: &str = "patient/*.rs patient/Consent.c";

/// The `[auth]` table of `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The `aud` client assertions must carry: this node's token endpoint URL as clients reach
    /// it. Default: `http(s)://{api}/fhir/auth/token` (`https` with `[api_tls]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// How long an access token lives, in seconds ([`TOKEN_LIFETIME_RANGE`], default 300).
    #[serde(default = "default_lifetime")]
    pub token_lifetime_seconds: u64,
    /// The registered clients.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientConfig>,
}

fn default_lifetime() -> u64 {
    DEFAULT_TOKEN_LIFETIME
}

/// One registered client (`[[auth.clients]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The client id: its assertions' `iss` and `sub`.
    pub client_id: String,
    /// Its JWK Set file: public EC P-384, RSA (2048 bits or more) or OKP Ed25519 keys, each
    /// with a `kid` (relative to `node.toml`).
    pub jwks: PathBuf,
    /// The most it may be granted: SMART `system/` or `user/` scopes.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Names of the node's clinicians this client may act for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clinicians: Vec<String>,
    /// Whether it may call the operator API (`/v1/*`, `/metrics`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub operator: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// The `[auth]` table is unusable. Nothing was started (`medchaind run` exits with status 2).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AuthConfigError {
    /// `token_lifetime_seconds` out of [`TOKEN_LIFETIME_RANGE`].
    #[error("token_lifetime_seconds must be from 1 to 3600 (it is {0})")]
    Lifetime(u64),
    /// `audience` is not an `http://` or `https://` URL of printable ASCII with a host, at most
    /// 2,048 bytes ([`check_audience`], the rule the assertion builders apply).
    #[error("audience must be an http:// or https:// URL with a host, of printable ASCII, at most 2048 bytes")]
    Audience,
    /// The API listens on an unspecified address: the default audience would name no host.
    #[error("the API listens on {0}: set [auth] audience to the token endpoint URL clients use")]
    NeedAudience(SocketAddr),
    /// A client id that is empty, too long, not printable ASCII, or starts with `patient:`.
    #[error("client {0}: client_id must be 1 to 128 printable ASCII characters without spaces, not starting with \"patient:\"")]
    ClientId(usize),
    /// Two clients with one id.
    #[error("client {0:?} is listed twice")]
    DuplicateClient(String),
    /// A registered scope does not parse.
    #[error("client {client:?}: {source}")]
    Scope {
        /// The client.
        client: String,
        /// Why.
        source: ScopeError,
    },
    /// A registered client with `patient/` scopes (those are for patients' own assertions).
    #[error("client {0:?}: patient/ scopes are granted only to a patient's own assertion; register system/ or user/ scopes")]
    PatientScope(String),
    /// A client with no scopes that is not an operator: it could never get a token.
    #[error("client {0:?} has no scopes and is not an operator")]
    NoScopes(String),
    /// A JWK Set file cannot be read.
    #[error("client {client:?}: cannot read {path}: {source}")]
    ReadJwks {
        /// The client.
        client: String,
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A JWK Set file is not a usable set of public keys.
    #[error("client {client:?}: {path}: {source}")]
    Jwks {
        /// The client.
        client: String,
        /// The file.
        path: PathBuf,
        /// Why.
        source: JwkError,
    },
}

impl AuthConfig {
    /// Checks the table without reading the key files.
    ///
    /// # Errors
    /// [`AuthConfigError`] (not `ReadJwks`, `Jwks`).
    pub fn check(&self, api: SocketAddr) -> Result<(), AuthConfigError> {
        if !TOKEN_LIFETIME_RANGE.contains(&self.token_lifetime_seconds) {
            return Err(AuthConfigError::Lifetime(self.token_lifetime_seconds));
        }
        match &self.audience {
            Some(a) if check_audience(a).is_err() => return Err(AuthConfigError::Audience),
            None if api.ip().is_unspecified() => return Err(AuthConfigError::NeedAudience(api)),
            _ => {}
        }
        for (i, c) in self.clients.iter().enumerate() {
            let id = &c.client_id;
            let printable = id.bytes().all(|b| b.is_ascii_graphic());
            if id.is_empty()
                || id.len() > MAX_CLIENT_ID
                || !printable
                || id.starts_with(PATIENT_PREFIX)
            {
                return Err(AuthConfigError::ClientId(i));
            }
            if self.clients[..i].iter().any(|o| &o.client_id == id) {
                return Err(AuthConfigError::DuplicateClient(id.clone()));
            }
            let scopes = c.scopes()?;
            if scopes.iter().any(|s| s.context() == Context::Patient) {
                return Err(AuthConfigError::PatientScope(id.clone()));
            }
            if scopes.is_empty() && !c.operator {
                return Err(AuthConfigError::NoScopes(id.clone()));
            }
        }
        Ok(())
    }

    /// Checks the table and reads every client's JWK Set.
    ///
    /// # Errors
    /// [`AuthConfigError`].
    pub fn load(&self, api: SocketAddr) -> Result<AuthSettings, AuthConfigError> {
        self.check(api)?;
        let mut clients = Vec::with_capacity(self.clients.len());
        for c in &self.clients {
            let read_error = |source| AuthConfigError::ReadJwks {
                client: c.client_id.clone(),
                path: c.jwks.clone(),
                source,
            };
            let text = read_small(&c.jwks).map_err(read_error)?;
            let keys = JwkSet::parse(&text).map_err(|source| AuthConfigError::Jwks {
                client: c.client_id.clone(),
                path: c.jwks.clone(),
                source,
            })?;
            clients.push(Client {
                id: c.client_id.clone(),
                keys,
                scopes: c.scopes()?,
                clinicians: c.clinicians.clone(),
                operator: c.operator,
            });
        }
        Ok(AuthSettings {
            audience: self.audience.clone(),
            token_lifetime_seconds: self.token_lifetime_seconds,
            clients,
        })
    }
}

impl ClientConfig {
    fn scopes(&self) -> Result<Scopes, AuthConfigError> {
        Scopes::parse_all(self.scopes.iter().map(String::as_str)).map_err(|source| {
            AuthConfigError::Scope {
                client: self.client_id.clone(),
                source,
            }
        })
    }
}

/// Reads a file of at most 1 MiB.
fn read_small(path: &std::path::Path) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read as _;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(1 << 20)
        .read_to_end(&mut bytes)?;
    if bytes.len() >= 1 << 20 {
        return Err(std::io::Error::other("larger than 1 MiB"));
    }
    Ok(bytes)
}

/// A registered client, its keys loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    /// Its id.
    pub id: String,
    /// Its public keys.
    pub keys: JwkSet,
    /// The most it may be granted.
    pub scopes: Scopes,
    /// The clinicians it may act for.
    pub clinicians: Vec<String>,
    /// Whether it may call the operator API.
    pub operator: bool,
}

/// `[auth]` with its key files read: what [`crate::service::ServiceConfig`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    /// The configured audience (`None`: derived from the API's bound address).
    pub audience: Option<String>,
    /// Access token lifetime, in seconds.
    pub token_lifetime_seconds: u64,
    /// The registered clients.
    pub clients: Vec<Client>,
}

/// Who a bearer token speaks for: what the check puts in a request's extensions and a
/// handler extracts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The client id (`patient:<hex>` for a patient's own token).
    pub client_id: String,
    /// The scopes granted.
    pub scopes: Scopes,
    /// For a patient's own token: the patient. Its `patient/` scopes reach only this
    /// patient's compartment.
    pub patient: Option<VerifyKey>,
    /// The node's clinicians this client may act for.
    pub clinicians: Vec<String>,
    /// Whether it may call the operator API.
    pub operator: bool,
}

impl Principal {
    /// Whether a scope grants `permission` on `resource_type`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.scopes.allows(resource_type, permission)
    }

    /// [`Principal::allows`], as the error a handler returns.
    ///
    /// # Errors
    /// [`AuthError::InsufficientScope`] (`403`).
    pub fn require(&self, resource_type: &str, permission: Permission) -> Result<(), AuthError> {
        if self.allows(resource_type, permission) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                resource_type: resource_type.to_owned(),
                permission,
            })
        }
    }

    /// Whether the client may act for the node's clinician `clinician`.
    pub fn may_act_for(&self, clinician: &str) -> bool {
        self.clinicians.iter().any(|c| c == clinician)
    }

    /// Whether the token reaches `patient`'s data: a patient's own token only the patient's,
    /// any other token every patient's (its scopes still apply).
    pub fn reaches_patient(&self, patient: &VerifyKey) -> bool {
        self.patient.is_none_or(|own| own == *patient)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, AuthError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(AuthError::MissingToken)
    }
}

/// A request is refused for want of a (good enough) bearer token. As a response: a FHIR
/// `OperationOutcome` (`application/fhir+json`), with `WWW-Authenticate: Bearer` on a `401`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The node has no `[auth]`: no token can be issued, so none is accepted.
    #[error("authentication is not configured on this node")]
    NotConfigured,
    /// No `Authorization: Bearer` header.
    #[error("a bearer token is required (SMART Backend Services: POST /fhir/auth/token)")]
    MissingToken,
    /// The token is malformed, unknown or expired.
    #[error("the access token is invalid or has expired")]
    InvalidToken,
    /// The token's scopes do not grant this.
    #[error("the access token's scopes do not allow {} on {resource_type}", .permission.letter())]
    InsufficientScope {
        /// The resource type asked for.
        resource_type: String,
        /// What was to be done.
        permission: Permission,
    },
    /// The token's client is not an operator.
    #[error("the operator API needs a token of a client registered with operator = true")]
    NotOperator,
}

impl AuthError {
    /// The HTTP status: `401` or `403`.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotConfigured | Self::MissingToken | Self::InvalidToken => {
                StatusCode::UNAUTHORIZED
            }
            Self::InsufficientScope { .. } | Self::NotOperator => StatusCode::FORBIDDEN,
        }
    }

    /// The `WWW-Authenticate` challenge (RFC 6750 §3).
    fn challenge(&self) -> &'static str {
        match self {
            Self::NotConfigured | Self::MissingToken => "Bearer realm=\"medchain\"",
            Self::InvalidToken => "Bearer realm=\"medchain\", error=\"invalid_token\"",
            Self::InsufficientScope { .. } | Self::NotOperator => {
                "Bearer realm=\"medchain\", error=\"insufficient_scope\""
            }
        }
    }

    /// The error as the operator API's JSON (`{"error": {"code", "message"}}`) rather than
    /// an `OperationOutcome`.
    fn operator_response(&self) -> Response {
        let code = if self.status() == StatusCode::UNAUTHORIZED {
            "unauthorized"
        } else {
            "forbidden"
        };
        let body = crate::api::ErrorBody {
            error: crate::api::ErrorDetail {
                code: code.into(),
                message: self.to_string(),
                rule: None,
                issues: Vec::new(),
            },
        };
        let mut response = (self.status(), Json(body)).into_response();
        set_challenge(&mut response, self.challenge());
        response
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        let code = if self.status() == StatusCode::UNAUTHORIZED {
            "login"
        } else {
            "forbidden"
        };
        let mut response = operation_outcome(self.status(), code, &self.to_string());
        set_challenge(&mut response, self.challenge());
        response
    }
}

fn set_challenge(response: &mut Response, challenge: &'static str) {
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
}

/// The FHIR JSON media type.
pub const FHIR_JSON: &str = "application/fhir+json";

/// A FHIR `OperationOutcome` with one error issue: `code` an issue type (`login`,
/// `forbidden`, `not-found`, ...), `diagnostics` fixed text (never what the client sent, never
/// health data).
pub fn operation_outcome(status: StatusCode, code: &str, diagnostics: &str) -> Response {
    let body = serde_json::json!({
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "error", "code": code, "diagnostics": diagnostics }],
    });
    (
        status,
        [(header::CONTENT_TYPE, FHIR_JSON)],
        body.to_string(),
    )
        .into_response()
}

/// `403` `OperationOutcome` (issue type `forbidden`), for a handler's own refusals (another
/// patient's compartment, a clinician the client may not act for).
pub fn forbidden(diagnostics: &str) -> Response {
    operation_outcome(StatusCode::FORBIDDEN, "forbidden", diagnostics)
}

/// A token request is refused (RFC 6749 §5.2). The description is fixed text: never the
/// assertion, a claim or a parameter's value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TokenError {
    /// A parameter is missing, repeated or malformed, or the body is not a small form.
    #[error("{0}")]
    InvalidRequest(&'static str),
    /// `grant_type` is not `client_credentials`.
    #[error("only grant_type=client_credentials is supported")]
    UnsupportedGrantType,
    /// The client assertion does not authenticate a client (RFC 7523 §3.2).
    #[error(transparent)]
    InvalidClient(#[from] AssertionError),
    /// An assertion type other than a JWT bearer assertion.
    #[error("client_assertion_type must be {ASSERTION_TYPE}")]
    AssertionType,
    /// The scopes do not parse, or none of them may be granted to this client.
    #[error("{0}")]
    InvalidScope(&'static str),
    /// The node holds as many live tokens (or assertion ids) as it may, or has no randomness.
    #[error("the node cannot issue a token now; retry later")]
    Unavailable,
}

impl TokenError {
    /// The RFC 6749 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidClient(_) | Self::AssertionType => "invalid_client",
            Self::InvalidScope(_) => "invalid_scope",
            Self::Unavailable => "temporarily_unavailable",
        }
    }

    /// The HTTP status: `401` for `invalid_client`, `503` when full, else `400`.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidClient(_) | Self::AssertionType => StatusCode::UNAUTHORIZED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// A token endpoint error's body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenErrorBody {
    /// The RFC 6749 code.
    pub error: String,
    /// What went wrong, for people.
    pub error_description: String,
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let body = TokenErrorBody {
            error: self.code().into(),
            error_description: self.to_string(),
        };
        let mut response = (self.status(), no_store(), Json(body)).into_response();
        if self.status() == StatusCode::UNAUTHORIZED {
            set_challenge(&mut response, "Bearer realm=\"medchain\"");
        }
        response
    }
}

fn no_store() -> [(header::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

/// A token response (RFC 6749 §5.1).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    /// The bearer token: 32 random bytes, base64url.
    pub access_token: String,
    /// `bearer`.
    pub token_type: String,
    /// Its lifetime, in seconds.
    pub expires_in: u64,
    /// The scopes granted, space-separated.
    pub scope: String,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"***")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// The token endpoint's state: the clients, the tokens issued, the assertion ids seen.
#[derive(Debug)]
pub struct AuthState {
    audience: String,
    lifetime: u64,
    clients: HashMap<String, Client>,
    patient_scopes: Scopes,
    tokens: Mutex<TokenStore>,
    replay: Mutex<ReplayCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every update under these locks is one map operation: a panic leaves consistent data.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl AuthState {
    /// The state for `settings` on an API bound at `api` (`tls`: with `[api_tls]`), which
    /// gives the default audience.
    pub fn new(settings: AuthSettings, api: SocketAddr, tls: bool) -> Self {
        let audience = settings.audience.unwrap_or_else(|| {
            format!("{}://{api}{TOKEN_PATH}", if tls { "https" } else { "http" })
        });
        Self {
            audience,
            lifetime: settings.token_lifetime_seconds,
            clients: settings
                .clients
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect(),
            patient_scopes: Scopes::parse(PATIENT_SCOPES)
                .unwrap_or_else(|_| unreachable!("the patient scopes parse")),
            tokens: Mutex::new(TokenStore::new(MAX_TOKENS)),
            replay: Mutex::new(ReplayCache::new(MAX_JTIS)),
        }
    }

    /// The `aud` assertions must carry: the token endpoint's URL.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// Answers a token request: `form` is the `application/x-www-form-urlencoded` body, `now`
    /// seconds since the epoch.
    ///
    /// # Errors
    /// [`TokenError`]: nothing was issued and nothing remembered (an assertion refused for its
    /// scopes can be presented again).
    pub fn issue(&self, form: &[u8], now: u64) -> Result<TokenResponse, TokenError> {
        let params = parse_form(form)?;
        let param = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        match param("grant_type") {
            None => return Err(TokenError::InvalidRequest("grant_type is required")),
            Some("client_credentials") => {}
            Some(_) => return Err(TokenError::UnsupportedGrantType),
        }
        match param("client_assertion_type") {
            None => {
                return Err(TokenError::InvalidRequest(
                    "client_assertion_type is required",
                ))
            }
            Some(ASSERTION_TYPE) => {}
            Some(_) => return Err(TokenError::AssertionType),
        }
        let assertion = param("client_assertion")
            .ok_or(TokenError::InvalidRequest("client_assertion is required"))?;
        let requested = param("scope")
            .map(|s| {
                Scopes::parse_request(s).map_err(|_| {
                    TokenError::InvalidScope("scope is not a list of SMART resource scopes")
                })
            })
            .transpose()?;
        let assertion = jws::parse(assertion)?;
        let claims = &assertion.claims;
        // The issuer's key: a registered client's, or a patient's own.
        let patient = jws::patient_of(&claims.iss);
        let patient_key;
        let (key, registered, client) = match patient {
            Some(p) => {
                patient_key = Jwk::ed25519("patient", p);
                (Some(&patient_key), &self.patient_scopes, None)
            }
            None => match self.clients.get(&claims.iss) {
                Some(c) => (
                    c.keys.select(assertion.alg, assertion.kid.as_deref()),
                    &c.scopes,
                    Some(c),
                ),
                None => (None, &self.patient_scopes, None),
            },
        };
        let verified = key.is_some_and(|k| {
            k.verify(
                assertion.alg,
                assertion.signing_input.as_bytes(),
                &assertion.signature,
            )
        });
        if !verified {
            return Err(AssertionError::Unverified.into());
        }
        if claims.sub != claims.iss {
            return Err(AssertionError::IssSub.into());
        }
        if param("client_id").is_some_and(|id| id != claims.iss) {
            return Err(AssertionError::ClientId.into());
        }
        if !claims.aud.contains(&self.audience) {
            return Err(AssertionError::Audience.into());
        }
        if claims.exp <= now {
            return Err(AssertionError::Expired.into());
        }
        if claims.exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW {
            return Err(AssertionError::TooLong.into());
        }
        if [claims.nbf, claims.iat]
            .into_iter()
            .flatten()
            .any(|t| t > now + CLOCK_SKEW)
        {
            return Err(AssertionError::NotYet.into());
        }
        // Without `scope`, everything registered is asked for (RFC 6749 §3.3).
        let granted = requested
            .as_ref()
            .unwrap_or(registered)
            .granted_under(registered);
        let operator = client.is_some_and(|c| c.operator);
        if granted.is_empty() && !operator {
            return Err(TokenError::InvalidScope(
                "none of the scopes asked for may be granted to this client",
            ));
        }
        match lock(&self.replay).check_and_remember(&claims.iss, &claims.jti, claims.exp, now) {
            Fresh::Yes => {}
            Fresh::Replayed => return Err(AssertionError::Replayed.into()),
            Fresh::Full => return Err(TokenError::Unavailable),
        }
        let principal = Principal {
            client_id: claims.iss.clone(),
            scopes: granted,
            patient,
            clinicians: client.map(|c| c.clinicians.clone()).unwrap_or_default(),
            operator,
        };
        let mut token = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *token).map_err(|_| TokenError::Unavailable)?;
        let access_token = URL_SAFE_NO_PAD.encode(*token);
        let scope = principal.scopes.to_string();
        lock(&self.tokens)
            .insert(access_token.as_bytes(), principal, now + self.lifetime, now)
            .map_err(|_| TokenError::Unavailable)?;
        tracing::info!(
            client = client.map_or("patient", |c| c.id.as_str()),
            scope = %scope,
            expires_in = self.lifetime,
            "access token issued"
        );
        Ok(TokenResponse {
            access_token,
            token_type: "bearer".into(),
            expires_in: self.lifetime,
            scope,
        })
    }

    /// The principal of a live access token.
    pub fn principal(&self, token: &str, now: u64) -> Option<Principal> {
        lock(&self.tokens).get(token.as_bytes(), now)
    }

    /// The SMART configuration document (`/.well-known/smart-configuration`).
    pub fn smart_configuration(&self) -> serde_json::Value {
        let mut scopes: Vec<String> = self
            .clients
            .values()
            .flat_map(|c| c.scopes.iter().map(ToString::to_string))
            .chain(self.patient_scopes.iter().map(ToString::to_string))
            .collect();
        scopes.sort();
        scopes.dedup();
        serde_json::json!({
            "token_endpoint": self.audience,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES384", "RS384", "EdDSA"],
            "scopes_supported": scopes,
            "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        })
    }
}

/// Parses `application/x-www-form-urlencoded`: each parameter at most once (RFC 6749 §3.2).
fn parse_form(body: &[u8]) -> Result<Vec<(String, String)>, TokenError> {
    const MAX_PARAMS: usize = 16;
    let text = std::str::from_utf8(body)
        .map_err(|_| TokenError::InvalidRequest("the body is not a UTF-8 form"))?;
    let mut params: Vec<(String, String)> = Vec::new();
    for pair in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let bad = || TokenError::InvalidRequest("the body is not a form (percent-encoding)");
        let (k, v) = (
            form_decode(k).ok_or_else(bad)?,
            form_decode(v).ok_or_else(bad)?,
        );
        if params.iter().any(|(seen, _)| *seen == k) {
            return Err(TokenError::InvalidRequest("a parameter is given twice"));
        }
        if params.len() == MAX_PARAMS {
            return Err(TokenError::InvalidRequest("too many parameters"));
        }
        params.push((k, v));
    }
    Ok(params)
}

/// One form-encoded component: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn form_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3)?;
                let mut byte = [0u8];
                hex::decode_to_slice(hex, &mut byte).ok()?;
                out.push(byte[0]);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Seconds since the Unix epoch.
fn now_secs() -> u64 {
    crate::service::now_ms() / 1000
}

/// The token endpoint and the SMART configuration (with `auth`); without it, the token
/// endpoint refuses every request (`invalid_client`) and there is no SMART configuration.
/// Merge beside the other routes and wrap the whole router in [`protect`].
pub(crate) fn routes(auth: Option<Arc<AuthState>>) -> Router {
    let router = Router::new().route(TOKEN_PATH, post(token));
    match auth {
        Some(_) => router.route(SMART_CONFIGURATION_PATH, get(smart_configuration)),
        None => router,
    }
    .with_state(auth)
}

async fn token(
    State(auth): State<Option<Arc<AuthState>>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, TokenError> {
    let Some(auth) = auth else {
        tracing::info!("token request refused: no [auth] configured");
        return Err(TokenError::InvalidClient(AssertionError::Unverified));
    };
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| {
            media
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(TokenError::InvalidRequest(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let body = axum::body::to_bytes(body, MAX_FORM)
        .await
        .map_err(|_| TokenError::InvalidRequest("the body is unreadable or larger than 16 KiB"))?;
    let answer = auth.issue(&body, now_secs());
    match answer {
        Ok(response) => Ok((no_store(), Json(response)).into_response()),
        Err(e) => {
            tracing::info!(error = e.code(), reason = %e, "token request refused");
            Err(e)
        }
    }
}

async fn smart_configuration(State(auth): State<Option<Arc<AuthState>>>) -> Response {
    match auth {
        Some(auth) => Json(auth.smart_configuration()).into_response(),
        None => operation_outcome(StatusCode::NOT_FOUND, "not-found", "no SMART configuration"),
    }
}

/// Which rule a path falls under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Area {
    /// Served to anyone.
    Public,
    /// The operator API: `/v1/*`, `/metrics`.
    Operator,
    /// `/fhir` and everything else: a bearer token always.
    Fhir,
    /// Any other path: a bearer token when `[auth]` is configured (else the API's `404`).
    Other,
}

impl Area {
    fn of(path: &str) -> Self {
        match path {
            HEALTH_PATH | METADATA_PATH | SMART_CONFIGURATION_PATH | TOKEN_PATH => Self::Public,
            "/metrics" | "/v1" => Self::Operator,
            p if p.starts_with("/v1/") => Self::Operator,
            "/fhir" => Self::Fhir,
            p if p.starts_with("/fhir/") => Self::Fhir,
            _ => Self::Other,
        }
    }
}

/// The bearer token's principal.
fn bearer(headers: &HeaderMap, auth: &AuthState) -> Result<Principal, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Err(AuthError::MissingToken),
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Err(AuthError::InvalidToken),
    };
    let value = value.to_str().map_err(|_| AuthError::InvalidToken)?;
    let (scheme, token) = value.split_once(' ').ok_or(AuthError::InvalidToken)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::MissingToken);
    }
    let token = token.trim();
    if token.len() != 43
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(AuthError::InvalidToken);
    }
    auth.principal(token, now_secs())
        .ok_or(AuthError::InvalidToken)
}

/// The check in front of every route (`docs/node.md`, "Authentication"): public paths pass;
/// the operator API needs an operator's token when `[auth]` is set; everything else needs a
/// token, and without `[auth]` every `/fhir` path but the public ones is `401`.
async fn guard(
    State(auth): State<Option<Arc<AuthState>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let area = Area::of(request.uri().path());
    let Some(auth) = auth else {
        return match area {
            Area::Fhir => AuthError::NotConfigured.into_response(),
            Area::Public | Area::Operator | Area::Other => next.run(request).await,
        };
    };
    if area == Area::Public {
        return next.run(request).await;
    }
    let principal = bearer(request.headers(), &auth);
    match (area, principal) {
        (Area::Operator, Ok(p)) if !p.operator => AuthError::NotOperator.operator_response(),
        (Area::Operator, Err(e)) => e.operator_response(),
        (_, Err(e)) => e.into_response(),
        (_, Ok(p)) => {
            request.extensions_mut().insert(p);
            next.run(request).await
        }
    }
}

/// `router` behind the bearer check (applied to every route and the fallback). Call it once,
/// on the whole router, after every merge.
pub(crate) fn protect(router: Router, auth: Option<Arc<AuthState>>) -> Router {
    router.layer(axum::middleware::from_fn_with_state(auth, guard))
}

#[cfg(test)]
mod tests;
