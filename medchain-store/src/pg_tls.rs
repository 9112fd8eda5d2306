//! TLS to PostgreSQL: what a connection string asks for (`sslmode`, `sslrootcert`) and the
//! rustls client that does it (the `ring` provider; no OpenSSL, no aws-lc).
//!
//! Supported, in a `postgres://` / `postgresql://` URL's query:
//!
//! | `sslmode` | `sslrootcert` | connection |
//! | --- | --- | --- |
//! | absent or `disable` | must be absent | plain TCP (the database on the same host or a private network) |
//! | `require`, `verify-ca` | required | TLS; the server's chain must end at a root in the file; its name is not checked |
//! | `verify-full` | required | TLS; chain as above, and the certificate must name the URL's host (DNS name or IP address) |
//!
//! Everything else is refused with a typed [`TlsError`] before any connection is made:
//! `allow` and `prefer` (they fall back to plain text), unknown modes, TLS without a root
//! certificate (unauthenticated TLS is open to a man in the middle), `sslrootcert` without TLS,
//! any other `ssl*` option (client certificates, CRLs, `sslnegotiation`, ...), `requiressl`,
//! an option given twice, and any `ssl*` option in the `key=value` form of the connection
//! string (which is plain text only). A connection that asks for TLS never falls back to plain
//! text: a server that declines TLS, a certificate from another CA, or (with `verify-full`) a
//! certificate for another name fails the connection with [`TlsError::Handshake`].

use std::sync::Arc;

use crate::error::{StoreError, TlsError};
use postgres::config::SslMode;
use postgres::{Client, Config, NoTls};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// The largest root-certificate file read (a bundle of a few hundred roots fits).
const MAX_ROOT_FILE: u64 = 1 << 20;

/// How a PostgreSQL connection is protected (see [`PostgresStore::tls_mode`](crate::PostgresStore::tls_mode)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PgTlsMode {
    /// No TLS: `sslmode=disable`, or no `sslmode` at all.
    Disabled,
    /// TLS; the server's certificate chain is verified against the configured roots, its name
    /// is not (`sslmode=require` or `sslmode=verify-ca`, with `sslrootcert`).
    VerifyCa,
    /// TLS; the chain and the server's name (the host in the URL) are verified
    /// (`sslmode=verify-full`, with `sslrootcert`).
    VerifyFull,
}

/// A parsed connection string: the `postgres` crate's configuration without the TLS options,
/// and the TLS client those options ask for.
#[derive(Clone)]
pub(crate) struct PgTarget {
    config: Config,
    tls: Option<Arc<ClientConfig>>,
    mode: PgTlsMode,
}

impl PgTarget {
    /// Parses a `postgresql://` URL or a `key=value` connection string (see the module docs).
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        let (rest, mode, root) = if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            split_url(s)?
        } else {
            if let Some(key) = keys_of(s).into_iter().find(|k| is_tls_key(k)) {
                return Err(TlsError::NotAUrl(key).into());
            }
            (s.to_owned(), None, None)
        };
        let mode = match (mode.as_deref(), root) {
            (None | Some("disable"), None) => (PgTlsMode::Disabled, None),
            (None | Some("disable"), Some(_)) => return Err(TlsError::RootCertWithoutTls.into()),
            (Some(m @ ("require" | "verify-ca" | "verify-full")), root) => {
                let (name, mode) = match m {
                    "require" => ("require", PgTlsMode::VerifyCa),
                    "verify-ca" => ("verify-ca", PgTlsMode::VerifyCa),
                    _ => ("verify-full", PgTlsMode::VerifyFull),
                };
                let root = root.ok_or(TlsError::MissingRootCert(name))?;
                (mode, Some(root))
            }
            (Some(other), _) => {
                return Err(TlsError::UnsupportedMode(other.chars().take(32).collect()).into())
            }
        };
        let mut config: Config = rest.parse()?;
        let tls = match mode {
            (m, Some(root)) => {
                config.ssl_mode(SslMode::Require);
                Some(Arc::new(client_config(m, &root)?))
            }
            _ => {
                config.ssl_mode(SslMode::Disable);
                None
            }
        };
        Ok(Self {
            config,
            tls,
            mode: mode.0,
        })
    }

    /// The protection this target's connections use.
    pub(crate) fn mode(&self) -> PgTlsMode {
        self.mode
    }

    /// Opens a connection: TLS when asked for (never plain text then), else plain TCP.
    pub(crate) fn connect(&self) -> Result<Client, StoreError> {
        match &self.tls {
            None => Ok(self.config.connect(NoTls)?),
            Some(tls) => self
                .config
                .connect(tokio_postgres_rustls::MakeRustlsConnect::new(
                    (**tls).clone(),
                ))
                .map_err(|e| match handshake_failure(&e) {
                    Some(reason) => TlsError::Handshake(reason).into(),
                    None => StoreError::from(e),
                }),
        }
    }
}

/// `Some(reason)` when a connection failed in TLS negotiation (the server declined TLS, or the
/// handshake failed), found by the `postgres` crate's TLS error and rustls's error below it.
fn handshake_failure(e: &postgres::Error) -> Option<String> {
    if e.as_db_error().is_some() {
        return None;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut last = None;
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<rustls::Error>() {
            return Some(r.to_string());
        }
        if let Some(r) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return Some(r.to_string());
        }
        last = Some(s.to_string());
        source = s.source();
    }
    // The postgres crate's own TLS failures ("server does not support TLS", no host name).
    e.to_string()
        .starts_with("error performing TLS handshake")
        .then(|| last.unwrap_or_else(|| "the TLS handshake failed".into()))
}

fn is_tls_key(key: &str) -> bool {
    key.starts_with("ssl") || key == "requiressl"
}

/// Takes `sslmode` and `sslrootcert` out of a URL's query; returns the rest of the URL (for the
/// `postgres` crate) and the two values. Any other `ssl*` option is refused.
fn split_url(url: &str) -> Result<(String, Option<String>, Option<String>), TlsError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None, None));
    };
    let (mut mode, mut root) = (None, None);
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k)?;
        let slot = match key.as_str() {
            "sslmode" => Some((&mut mode, "sslmode")),
            "sslrootcert" => Some((&mut root, "sslrootcert")),
            k if is_tls_key(k) => return Err(TlsError::UnsupportedOption(key)),
            _ => None,
        };
        match slot {
            Some((slot, name)) => {
                if slot.replace(percent_decode(v)?).is_some() {
                    return Err(TlsError::DuplicateOption(name));
                }
            }
            None => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, mode, root))
}

fn percent_decode(s: &str) -> Result<String, TlsError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b.get(i + 1..i + 3).ok_or(TlsError::BadEncoding)?;
            let hex = std::str::from_utf8(hex).map_err(|_| TlsError::BadEncoding)?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| TlsError::BadEncoding)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| TlsError::BadEncoding)
}

/// The keys of a `key=value` connection string, scanned as the `postgres` crate parses it
/// (values bare or single-quoted, backslash escapes).
fn keys_of(s: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            return keys;
        }
        keys.push(key);
        while it.next_if(|c| c.is_whitespace() || *c == '=').is_some() {}
        let quoted = it.next_if_eq(&'\'').is_some();
        while let Some(c) = it.next() {
            match c {
                '\\' => {
                    it.next();
                }
                '\'' if quoted => break,
                c if c.is_whitespace() && !quoted => break,
                _ => {}
            }
        }
    }
}

fn load_roots(path: &str) -> Result<RootCertStore, TlsError> {
    let fail = |reason: String| TlsError::RootCert {
        path: path.to_owned(),
        reason,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| fail(e.kind().to_string()))?
        .len();
    if len > MAX_ROOT_FILE {
        return Err(fail(format!("larger than {MAX_ROOT_FILE} bytes")));
    }
    let pem = std::fs::read(path).map_err(|e| fail(e.kind().to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| fail(format!("not PEM: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| fail(format!("not a usable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    Ok(roots)
}

fn client_config(mode: PgTlsMode, root_path: &str) -> Result<ClientConfig, TlsError> {
    let roots = Arc::new(load_roots(root_path)?);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Handshake(e.to_string()))?;
    let config = if mode == PgTlsMode::VerifyFull {
        builder.with_root_certificates(roots)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly { roots, provider }))
    };
    Ok(config.with_no_client_auth())
}

/// `verify-ca`: the server's chain must end at a configured root (with the validity period,
/// key usages and signatures checked by webpki, as for `verify-full`), but its name is not
/// compared with the host.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(s: &str) -> TlsError {
        match PgTarget::parse(s) {
            Err(StoreError::Tls(e)) => e,
            Err(e) => panic!("{s}: another error: {e}"),
            Ok(_) => panic!("{s}: accepted"),
        }
    }

    const BASE: &str = "postgresql://u@127.0.0.1:5432/db";

    #[test]
    fn plain_text_when_no_tls_is_asked_for() {
        for s in [
            BASE.to_string(),
            format!("{BASE}?sslmode=disable"),
            format!("{BASE}?application_name=x&sslmode=disable&connect_timeout=5"),
            "host=127.0.0.1 port=5432 user=u dbname=db".to_string(),
            "host='/var/run/x y' user=u".to_string(),
        ] {
            let t = PgTarget::parse(&s).expect(&s);
            assert_eq!(t.mode(), PgTlsMode::Disabled, "{s}");
            assert!(t.tls.is_none());
            assert_eq!(t.config.get_ssl_mode(), SslMode::Disable, "{s}");
        }
        // The options left are the postgres crate's.
        let t = PgTarget::parse(&format!("{BASE}?application_name=x&sslmode=disable")).unwrap();
        assert_eq!(t.config.get_application_name(), Some("x"));
    }

    #[test]
    fn modes_that_may_fall_back_or_are_unknown_are_refused() {
        for m in ["prefer", "allow", "VERIFY-FULL", "verify_full", "", "on"] {
            let s = format!("{BASE}?sslmode={m}&sslrootcert=/nonexistent");
            assert_eq!(refused(&s), TlsError::UnsupportedMode(m.into()), "{s}");
        }
    }

    #[test]
    fn tls_without_a_root_and_a_root_without_tls_are_refused() {
        for (m, name) in [
            ("require", "require"),
            ("verify-ca", "verify-ca"),
            ("verify-full", "verify-full"),
        ] {
            assert_eq!(
                refused(&format!("{BASE}?sslmode={m}")),
                TlsError::MissingRootCert(name)
            );
        }
        for s in [
            format!("{BASE}?sslrootcert=/x.pem"),
            format!("{BASE}?sslmode=disable&sslrootcert=/x.pem"),
        ] {
            assert_eq!(refused(&s), TlsError::RootCertWithoutTls, "{s}");
        }
    }

    #[test]
    fn other_tls_options_duplicates_and_bad_encodings_are_refused() {
        for opt in [
            "sslcert=/c.pem",
            "sslkey=/k.pem",
            "sslcrl=/crl.pem",
            "sslnegotiation=direct",
            "sslpassword=x",
            "requiressl=1",
            "ssl%63ert=/c.pem",
        ] {
            let s = format!("{BASE}?sslmode=verify-full&sslrootcert=/x&{opt}");
            assert!(matches!(refused(&s), TlsError::UnsupportedOption(_)), "{s}");
        }
        assert_eq!(
            refused(&format!(
                "{BASE}?sslmode=verify-full&sslrootcert=/x&sslmode=disable"
            )),
            TlsError::DuplicateOption("sslmode")
        );
        assert_eq!(
            refused(&format!("{BASE}?sslmode=verify-full&sslrootcert=%ZZ")),
            TlsError::BadEncoding
        );
        assert_eq!(
            refused(&format!("{BASE}?sslmode=verify-full&sslrootcert=%FF")),
            TlsError::BadEncoding
        );
        for s in [
            "host=h sslmode=require",
            "host=h   sslmode = prefer user=u",
            "host='a b' sslrootcert='/x y.pem'",
            "user=u password='it\\'s sslmode=disable' requiressl=1",
        ] {
            assert!(matches!(refused(s), TlsError::NotAUrl(_)), "{s}");
        }
        // A value that merely contains "ssl" is no option.
        assert!(PgTarget::parse("host=h dbname='sslmode=require'").is_ok());
    }

    #[test]
    fn root_files_that_hold_no_certificate_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, b"").unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(
            &junk,
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let missing = dir.path().join("missing.pem");
        for path in [&empty, &junk, &missing] {
            let p = path.to_str().unwrap();
            let s = format!("{BASE}?sslmode=verify-full&sslrootcert={p}");
            match refused(&s) {
                TlsError::RootCert { path, .. } => assert_eq!(path, p),
                other => panic!("{s}: {other}"),
            }
        }
    }
}
