//! A small client for a node's API (`medchaind status`, tests, the benchmark): one HTTP/1.1
//! request per connection with hyper's own connection API, bounded by a timeout; over TLS when
//! given the certificates to trust ([`ApiClient::with_ca`]); with a bearer token when the node
//! has `[auth]` ([`ApiClient::token`], [`ApiClient::with_bearer`]).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde::de::DeserializeOwned;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::api::{
    AddRecordRequest, BlockView, Encoded, ErrorBody, KeyRequestView, ProofView, RecordAddedView,
    ReleaseView, StatusView, SubmitRequest, TxStatusView,
};
use crate::auth::{TokenErrorBody, TokenResponse};

/// A request to the API failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The node did not answer in time.
    #[error("no answer from {0} in time")]
    Timeout(SocketAddr),
    /// The connection or the HTTP exchange failed.
    #[error("{addr}: {message}")]
    Http {
        /// The node's API address.
        addr: SocketAddr,
        /// What failed.
        message: String,
    },
    /// The node answered with an error.
    #[error("{status}: {} ({})", .body.error.message, .body.error.code)]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error's body.
        body: ErrorBody,
    },
    /// The token endpoint refused (RFC 6749 §5.2).
    #[error("{status}: {} ({})", .body.error_description, .body.error)]
    Token {
        /// The HTTP status.
        status: u16,
        /// The error's body.
        body: TokenErrorBody,
    },
    /// The answer is not the JSON expected.
    #[error("unexpected answer ({status}): {message}")]
    Unexpected {
        /// The HTTP status.
        status: u16,
        /// What is wrong with it.
        message: String,
    },
}

/// An API URL could not be used. Nothing was sent.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiUrlError {
    /// Not `host:port`, `http://host:port` or `https://host:port`.
    #[error("{0:?} is not host:port, http://host:port or https://host:port")]
    Syntax(String),
    /// The host does not resolve.
    #[error("cannot resolve {0:?}")]
    Resolve(String),
    /// An `https://` URL without certificates to trust.
    #[error("an https API needs the certificate to trust (--ca FILE)")]
    NoTrust,
    /// The certificates to trust, or the server name, are unusable.
    #[error(transparent)]
    Tls(#[from] crate::tls::ApiTlsError),
}

/// A node's API at an address, over plain HTTP or TLS.
#[derive(Clone)]
pub struct ApiClient {
    addr: SocketAddr,
    timeout: Duration,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    bearer: Option<Arc<zeroize::Zeroizing<String>>>,
}

/// An answer as it came: status, headers, body.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The HTTP status.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("addr", &self.addr)
            .field("timeout", &self.timeout)
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .field("bearer", &self.bearer.is_some())
            .finish()
    }
}

impl ApiClient {
    /// A client for the API at `addr` (plain HTTP), with a 10-second timeout per request.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            timeout: Duration::from_secs(10),
            tls: None,
            bearer: None,
        }
    }

    /// A client for `url`: `host:port` or `http://host:port` (plain HTTP), or
    /// `https://host:port` with the certificates in `ca` (PEM) as the only roots trusted; the
    /// node's certificate must name `host` (a DNS name or an IP address).
    ///
    /// # Errors
    /// [`ApiUrlError`].
    pub fn from_url(url: &str, ca: Option<&Path>) -> Result<Self, ApiUrlError> {
        let (https, rest) = if let Some(rest) = url.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, url.strip_prefix("http://").unwrap_or(url))
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        let host = match authority.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty() && !port.is_empty() && !authority.contains('/') =>
            {
                host.trim_start_matches('[').trim_end_matches(']')
            }
            _ => return Err(ApiUrlError::Syntax(url.into())),
        };
        let addr = authority
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| ApiUrlError::Resolve(authority.into()))?;
        let client = Self::new(addr);
        match (https, ca) {
            (false, _) => Ok(client),
            (true, None) => Err(ApiUrlError::NoTrust),
            (true, Some(ca)) => Ok(client.with_ca(ca)?.with_server_name(host)?),
        }
    }

    /// The same client speaking TLS, trusting only the certificates in `ca` (PEM: a CA's, or
    /// the node's own self-signed certificate); the name checked in the node's certificate is
    /// the address's IP until [`with_server_name`](Self::with_server_name).
    ///
    /// # Errors
    /// [`ApiTlsError`](crate::tls::ApiTlsError): the file is unreadable or holds no usable
    /// certificate.
    pub fn with_ca(mut self, ca: &Path) -> Result<Self, crate::tls::ApiTlsError> {
        let config = crate::tls::client_config(ca)?;
        let name = ServerName::IpAddress(self.addr.ip().into());
        self.tls = Some((config, name));
        Ok(self)
    }

    /// The name the node's certificate must carry (with TLS): a DNS name or an IP address.
    ///
    /// # Errors
    /// [`ApiTlsError::ServerName`](crate::tls::ApiTlsError::ServerName).
    pub fn with_server_name(mut self, name: &str) -> Result<Self, crate::tls::ApiTlsError> {
        let name = crate::tls::server_name(name)?;
        if let Some((_, n)) = &mut self.tls {
            *n = name;
        }
        Ok(self)
    }

    /// Whether requests go over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The same client with another per-request timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client sending `Authorization: Bearer {token}` with every request (a token
    /// from [`ApiClient::token`]). `Debug` never shows it.
    #[must_use]
    pub fn with_bearer(mut self, token: &str) -> Self {
        self.bearer = Some(Arc::new(zeroize::Zeroizing::new(token.to_owned())));
        self
    }

    /// One JSON request: its status and body.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Http`].
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<(u16, Bytes), ClientError> {
        let raw = self
            .call(method, path, "application/json", body.unwrap_or_default())
            .await?;
        Ok((raw.status, raw.body))
    }

    /// One request with this content type: the answer with its headers.
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Http`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        self.call_with(method, path, content_type, &[], body).await
    }

    /// [`call`](Self::call) with extra headers (the FHIR API's `X-Medchain-Clinician` and
    /// `X-Medchain-Purpose-Of-Use`; an `authorization` here replaces the client's bearer).
    ///
    /// # Errors
    /// [`ClientError::Timeout`], [`ClientError::Http`].
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        tokio::time::timeout(
            self.timeout,
            self.exchange(method, path, content_type, headers, body),
        )
        .await
        .map_err(|_| ClientError::Timeout(self.addr))?
    }

    /// The address it talks to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `POST /fhir/auth/token`: trades a signed client assertion
    /// ([`crate::auth::ClientAssertion`]) for an access token with (at most) `scope`.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Token`] carries the node's refusal.
    pub async fn token(&self, assertion: &str, scope: &str) -> Result<TokenResponse, ClientError> {
        let body = crate::auth::token_request(assertion, scope).into_bytes();
        let raw = self
            .call(
                Method::POST,
                crate::auth::TOKEN_PATH,
                "application/x-www-form-urlencoded",
                body,
            )
            .await?;
        let unexpected = |e: serde_json::Error| ClientError::Unexpected {
            status: raw.status,
            message: e.to_string(),
        };
        if raw.status == 200 {
            serde_json::from_slice(&raw.body).map_err(unexpected)
        } else {
            Err(ClientError::Token {
                status: raw.status,
                body: serde_json::from_slice(&raw.body).map_err(unexpected)?,
            })
        }
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        let http = |e: &dyn std::fmt::Display| ClientError::Http {
            addr: self.addr,
            message: e.to_string(),
        };
        let stream = TcpStream::connect(self.addr).await.map_err(|e| http(&e))?;
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.addr.to_string())
            .header(CONTENT_TYPE, content_type);
        let explicit = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        let mut request = match &self.bearer {
            Some(token) if !explicit => {
                request.header(AUTHORIZATION, format!("Bearer {}", token.as_str()))
            }
            _ => request,
        };
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let request = request
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| http(&e))?;
        match &self.tls {
            None => self.send(stream, request).await,
            Some((config, name)) => {
                let tls = tokio_rustls::TlsConnector::from(config.clone())
                    .connect(name.clone(), stream)
                    .await
                    .map_err(|e| http(&e))?;
                self.send(tls, request).await
            }
        }
    }

    async fn send<S>(
        &self,
        stream: S,
        request: Request<Full<Bytes>>,
    ) -> Result<RawResponse, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let http = |e: &dyn std::fmt::Display| ClientError::Http {
            addr: self.addr,
            message: e.to_string(),
        };
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| http(&e))?;
        let driver = tokio::spawn(connection);
        let response = sender.send_request(request).await.map_err(|e| http(&e))?;
        let status = response.status().as_u16();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(|e| http(&e))?.to_bytes();
        driver.abort();
        Ok(RawResponse {
            status,
            headers: parts.headers,
            body,
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<T, ClientError> {
        let (status, bytes) = self.request(method, path, body).await?;
        if !(200..300).contains(&status) {
            return Err(match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => ClientError::Api { status, body },
                Err(e) => ClientError::Unexpected {
                    status,
                    message: e.to_string(),
                },
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Unexpected {
            status,
            message: e.to_string(),
        })
    }

    /// `GET /v1/status`.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn status(&self) -> Result<StatusView, ClientError> {
        self.json(Method::GET, "/v1/status", None).await
    }

    /// `POST /v1/transactions` with a body's canonical bytes (sent as hex).
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Api`] carries the node's refusal.
    pub async fn submit(&self, body: &[u8]) -> Result<TxStatusView, ClientError> {
        let request = SubmitRequest {
            hex: Some(hex::encode(body)),
            base64: None,
        };
        self.json(Method::POST, "/v1/transactions", Some(to_json(&request)?))
            .await
    }

    /// `POST /v1/records`: adds `fhir` (a JSON object) for the patient whose enrolment at this
    /// node is `enrolment` (the canonical bytes of their `SealedWriterKey`), readable from the
    /// start by `readers` (canonical bytes of public identities) too.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Api`] carries the node's refusal (`invalid_fhir` with
    /// its issues, `bad_enrolment`, ...).
    pub async fn add_record(
        &self,
        fhir: &serde_json::Value,
        enrolment: &[u8],
        readers: &[Vec<u8>],
    ) -> Result<RecordAddedView, ClientError> {
        let request = AddRecordRequest {
            fhir: fhir.clone(),
            enrolment: Encoded::hex(enrolment),
            readers: readers.iter().map(hex::encode).collect(),
        };
        self.json(Method::POST, "/v1/records", Some(to_json(&request)?))
            .await
    }

    /// `POST /v1/key-requests`: has this node relay a key request (its canonical bytes) that
    /// the clinician signed.
    ///
    /// # Errors
    /// [`ClientError`]; [`ClientError::Api`] carries the node's refusal.
    pub async fn relay_key_request(&self, request: &[u8]) -> Result<KeyRequestView, ClientError> {
        self.json(
            Method::POST,
            "/v1/key-requests",
            Some(to_json(&Encoded::hex(request))?),
        )
        .await
    }

    /// `GET /v1/key-requests/{id}`: a relayed request's status.
    ///
    /// # Errors
    /// [`ClientError`]; `404 not_found` for a request this node did not relay (or forgot).
    pub async fn key_request(&self, id: &str) -> Result<KeyRequestView, ClientError> {
        self.json(Method::GET, &format!("/v1/key-requests/{id}"), None)
            .await
    }

    /// `GET /v1/records/{id}/release?reader=…`: what was released to `reader` (the canonical
    /// bytes of its public identity) for the record `id`.
    ///
    /// # Errors
    /// [`ClientError`]; `404 not_found` when nothing was released to that reader.
    pub async fn release(&self, id: &str, reader: &[u8]) -> Result<ReleaseView, ClientError> {
        let path = format!("/v1/records/{id}/release?reader={}", hex::encode(reader));
        self.json(Method::GET, &path, None).await
    }

    /// `GET /v1/transactions/{id}`.
    ///
    /// # Errors
    /// [`ClientError`] (`not_found` for a transaction the node does not know).
    pub async fn tx_status(&self, id: &str) -> Result<TxStatusView, ClientError> {
        self.json(Method::GET, &format!("/v1/transactions/{id}"), None)
            .await
    }

    /// `GET /v1/transactions/{id}/proof`.
    ///
    /// # Errors
    /// [`ClientError`] (`not_found` until the transaction is committed here).
    pub async fn proof(&self, id: &str) -> Result<ProofView, ClientError> {
        self.json(Method::GET, &format!("/v1/transactions/{id}/proof"), None)
            .await
    }

    /// `GET /v1/blocks/{height}`.
    ///
    /// # Errors
    /// [`ClientError`] (`not_found` above the head).
    pub async fn block(&self, height: u64) -> Result<BlockView, ClientError> {
        self.json(Method::GET, &format!("/v1/blocks/{height}"), None)
            .await
    }

    /// `GET /metrics`, as text.
    ///
    /// # Errors
    /// [`ClientError`].
    pub async fn metrics(&self) -> Result<String, ClientError> {
        let (status, bytes) = self.request(Method::GET, "/metrics", None).await?;
        if status != 200 {
            return Err(ClientError::Unexpected {
                status,
                message: "metrics unavailable".into(),
            });
        }
        String::from_utf8(bytes.to_vec()).map_err(|e| ClientError::Unexpected {
            status,
            message: e.to_string(),
        })
    }
}

/// A request body's JSON.
fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(value).map_err(|e| ClientError::Unexpected {
        status: 0,
        message: e.to_string(),
    })
}

/// The value of an unlabelled metric (or the sum over its labels) in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((key, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let bare = key.split('{').next().unwrap_or(key);
        if let (true, Ok(v)) = (bare == name, value.parse::<f64>()) {
            found = Some(found.unwrap_or(0.0) + v);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_values_are_read_and_summed_over_labels() {
        let text = "# HELP a x\n# TYPE a gauge\na 3\nb{reason=\"x\"} 1\nb{reason=\"y\"} 2\nbc 9\n";
        assert_eq!(metric_value(text, "a"), Some(3.0));
        assert_eq!(metric_value(text, "b"), Some(3.0));
        assert_eq!(metric_value(text, "c"), None);
    }

    #[test]
    fn urls_are_read_and_https_needs_a_trust_file() {
        let c = ApiClient::from_url("127.0.0.1:7700", None).expect("bare");
        assert_eq!((c.addr.port(), c.is_tls()), (7700, false));
        let c = ApiClient::from_url("http://127.0.0.1:7701/", None).expect("http");
        assert_eq!((c.addr.port(), c.is_tls()), (7701, false));
        for (url, expected) in [
            ("https://127.0.0.1:7700", "needs the certificate"),
            ("ftp://127.0.0.1:7700", "is not host:port"),
            ("127.0.0.1", "is not host:port"),
            ("http://127.0.0.1:7700/v1/status", "is not host:port"),
            ("127.0.0.1:notaport", "cannot resolve"),
        ] {
            let err = ApiClient::from_url(url, None).unwrap_err().to_string();
            assert!(err.contains(expected), "{url}: {err}");
        }
        let missing = ApiClient::from_url(
            "https://127.0.0.1:7700",
            Some(Path::new("/nonexistent/ca.pem")),
        )
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("cannot read /nonexistent/ca.pem"),
            "{missing}"
        );
    }
}
