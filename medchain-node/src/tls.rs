//! TLS on the client API (optional; plain HTTP on loopback is the default): the server's
//! certificate and key from PEM files (`[api_tls]` in `node.toml`), a listener that completes
//! each TLS handshake before axum sees the connection, and the client side for
//! [`ApiClient`](crate::client::ApiClient) (the roots it trusts from a PEM file, never the
//! system's store). rustls with the ring provider, TLS 1.3 and 1.2, the same rustls the
//! PostgreSQL client uses (`docs/node.md`, "TLS").

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The largest certificate or key file read.
const MAX_PEM_FILE: u64 = 1 << 20;

/// TLS handshakes in progress at once; further connections are closed at once.
pub const MAX_PENDING_HANDSHAKES: usize = 64;

/// How long a client has to complete its TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate, key or trust file is unusable. Nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ApiTlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why (the operating system's error kind, or the size limit).
        reason: String,
    },
    /// A certificate file holds no certificate, or something that is not PEM.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The key file holds no private key in PEM (PKCS#8, SEC1 or PKCS#1), or one rustls cannot
    /// use (the message never shows the key).
    #[error("{path}: no usable private key")]
    Key {
        /// The file.
        path: PathBuf,
    },
    /// The certificate and key do not go together, or rustls refuses the configuration.
    #[error("the API's TLS configuration is refused: {0}")]
    Config(String),
    /// The server name to check in the node's certificate is not a DNS name or an IP address.
    #[error("{0:?} is not a DNS name or an IP address")]
    ServerName(String),
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ApiTlsError> {
    let fail = |reason: String| ApiTlsError::Read {
        path: path.to_path_buf(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.kind().to_string()))?
        .len();
    if len > MAX_PEM_FILE {
        return Err(fail(format!("larger than {MAX_PEM_FILE} bytes")));
    }
    std::fs::read(path).map_err(|e| fail(e.kind().to_string()))
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, ApiTlsError> {
    let pem = read_pem(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiTlsError::Certificate {
            path: path.to_path_buf(),
            reason: format!("not PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(ApiTlsError::Certificate {
            path: path.to_path_buf(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The API server's TLS configuration: the certificate chain in `cert` (PEM, the node's
/// certificate first) and its private key in `key` (PEM), HTTP/1.1 by ALPN.
///
/// # Errors
/// [`ApiTlsError`]: a file missing, unreadable, too large or without what it should hold, or
/// a key that does not match the certificate.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, ApiTlsError> {
    let chain = certificates(cert)?;
    let pem = zeroize::Zeroizing::new(read_pem(key)?);
    let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|_| ApiTlsError::Key {
        path: key.to_path_buf(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiTlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| ApiTlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// A client's TLS configuration trusting only the certificates in `ca` (PEM): a CA's, or the
/// node's own self-signed certificate. The node's certificate must chain to one of them and
/// name the server (checked by webpki: validity period, key usage, signatures, name).
///
/// # Errors
/// [`ApiTlsError`].
pub fn client_config(ca: &Path) -> Result<Arc<ClientConfig>, ApiTlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(ca)? {
        roots.add(cert).map_err(|e| ApiTlsError::Certificate {
            path: ca.to_path_buf(),
            reason: format!("not a usable certificate: {e}"),
        })?;
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ApiTlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name a client checks in the node's certificate: a DNS name or an IP address.
///
/// # Errors
/// [`ApiTlsError::ServerName`].
pub fn server_name(name: &str) -> Result<ServerName<'static>, ApiTlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| ApiTlsError::ServerName(name.into()))
}

/// A TCP listener that hands axum only connections whose TLS handshake completed. Handshakes
/// run in tasks of their own (a slow client never holds the others back), at most
/// [`MAX_PENDING_HANDSHAKES`] at once, each within [`HANDSHAKE_TIMEOUT`]; a client that fails
/// its handshake (plain HTTP, an unknown CA on its side, garbage) is closed and never reaches
/// the API.
pub(crate) struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    accept: tokio::task::AbortHandle,
}

impl TlsListener {
    pub(crate) fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, ready) = mpsc::channel(MAX_PENDING_HANDSHAKES);
        let pending = Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES));
        let accept = tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::debug!(error = %e, "client API accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = pending.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many TLS handshakes in progress: closed");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _permit = permit;
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "client API TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "client API TLS handshake timed out"),
                    }
                });
            }
        })
        .abort_handle();
        Ok(Self {
            ready,
            local,
            accept,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
