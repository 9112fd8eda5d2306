//! The node's configuration file, `node.toml` (reference: `docs/node.md`, "Configuration").
//!
//! ```toml
//! identity = "identity.backup"        # the Argon2id identity backup (`medchaind keygen`)
//! passphrase_file = "passphrase"      # optional; else MEDCHAIND_PASSPHRASE, else a prompt
//! genesis = "../genesis.bin"          # the genesis (`medchaind genesis`)
//! network_key = "network.key"         # the network key, wrapped to this identity
//! ledger = "ledger.sqlite"            # created on the first run; or a PostgreSQL URL:
//! # ledger = "postgresql://medchain@db.example/medchain?sslmode=verify-full&sslrootcert=/etc/medchain/pg-root.pem"
//! listen = "0.0.0.0:7600"             # peer transport
//! api = "127.0.0.1:7700"              # client API (loopback unless allow_remote_api)
//!
//! [api_tls]                           # optional: HTTPS on the client API
//! cert = "api-cert.pem"               # certificate chain (PEM), the node's first
//! key = "api-key.pem"                 # its private key (PEM)
//!
//! [auth]                              # optional: SMART Backend Services (docs/node.md)
//! token_lifetime_seconds = 300
//! [[auth.clients]]
//! client_id = "city-ehr"
//! jwks = "city-ehr.jwks.json"          # its public keys (JWK Set)
//! scopes = ["system/Observation.cruds", "system/Consent.crs"]
//! clinicians = ["okafor"]
//!
//! [[peers]]
//! member = "St. Mary's"               # a member's name in genesis, or `key = "<hex>"`
//! address = "10.0.0.2:7600"
//!
//! [log]
//! format = "json"                     # or "text" (the default)
//! level = "info"
//! ```
//!
//! Relative paths are relative to the directory of the configuration file.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use medchain::LedgerLocation;
use medchain_core::genesis::Genesis;
use medchain_core::keys::VerifyKey;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::auth::{AuthConfig, AuthConfigError, AuthSettings};
use crate::keyfile::{self, KeyFileError};
use crate::people::{load_clinicians, ClinicianEntry, PeopleError};
use crate::service::ServiceConfig;
use crate::tls::{self, ApiTlsError};
use crate::transport::{Limits, TransportConfig};

/// The client API's default address: loopback only.
pub const DEFAULT_API: &str = "127.0.0.1:7700";

/// A node's configuration, as read from `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The identity backup (Argon2id + AES-256-GCM) written by `medchaind keygen`.
    pub identity: PathBuf,
    /// A file holding the backup's passphrase (its first line). Without it the passphrase comes
    /// from the environment variable `MEDCHAIND_PASSPHRASE`, else from a prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passphrase_file: Option<PathBuf>,
    /// The genesis file written by `medchaind genesis`.
    pub genesis: PathBuf,
    /// The network key wrapped to this node's identity (written by `medchaind genesis`).
    pub network_key: PathBuf,
    /// The ledger: a SQLite file's path, or a `postgresql://` URL (the ledger in the database's
    /// schema `medchain`, TLS as the URL's `sslmode` and `sslrootcert` say); created on the
    /// first run, reopened after. Its `Debug` hides a password in the URL.
    #[serde(with = "location")]
    pub ledger: LedgerLocation,
    /// The peer transport's TCP address.
    pub listen: SocketAddr,
    /// The client API's address (loopback unless [`allow_remote_api`](Self::allow_remote_api);
    /// without [`auth`](Self::auth), no authentication).
    #[serde(default = "default_api")]
    pub api: SocketAddr,
    /// TLS on the client API (optional: plain HTTP without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_tls: Option<ApiTlsFiles>,
    /// Lets the client API listen on a non-loopback address. The API has no authentication
    /// or TLS: only behind a proxy that adds both (`docs/node.md`, "Threat model").
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_remote_api: bool,
    /// Authentication on the client API (`[auth]`, SMART Backend Services). Without it, every
    /// `/fhir` path but the public ones answers `401`, and the operator API is open to whoever
    /// reaches the address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthConfig>,
    /// The members this node dials.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<PeerEntry>,
    /// Logging.
    #[serde(default)]
    pub log: LogConfig,
    /// Optional transport timers.
    #[serde(default)]
    pub transport: TransportTuning,
    /// Where the patients' enrolments at this node are kept (a directory, created on the first
    /// run; default `enrolments` beside `node.toml`).
    #[serde(default = "default_enrolments")]
    pub enrolments: PathBuf,
    /// The clinicians whose keys this node holds, for the FHIR API (`medchaind clinician`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clinicians: Vec<ClinicianEntry>,
}

/// The client API's TLS certificate and key (`[api_tls]`), PEM files read at start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiTlsFiles {
    /// The certificate chain, the node's certificate first (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, SEC1 or PKCS#1); keep it mode 0600.
    pub key: PathBuf,
}

/// One member to dial: named by its genesis name or its signing key, exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerEntry {
    /// The member's name in genesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<String>,
    /// The member's signing key (64 hex digits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `host:port` (a name is resolved once, at start).
    pub address: String,
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json` (one object per line).
    #[serde(default)]
    pub format: LogFormat,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default = "default_level")]
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: default_level(),
        }
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Transport timers an operator may tune; everything else keeps the transport's defaults
/// (`docs/operations.md`, "Limits").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransportTuning {
    /// The first reconnect delay, in milliseconds (default 250).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_initial_ms: Option<u64>,
    /// The largest reconnect delay, in milliseconds (default 30,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_max_ms: Option<u64>,
}

fn default_api() -> SocketAddr {
    DEFAULT_API
        .parse()
        .unwrap_or_else(|_| unreachable!("the default API address parses"))
}

fn default_enrolments() -> PathBuf {
    PathBuf::from("enrolments")
}

fn default_level() -> String {
    "info".into()
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `ledger` as written in the file: a path, or a `postgres://` / `postgresql://` URL.
mod location {
    use medchain::LedgerLocation;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(l: &LedgerLocation, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&l.location_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LedgerLocation, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Err(serde::de::Error::custom("`ledger` is empty"));
        }
        Ok(LedgerLocation::parse(&text))
    }
}

/// The configuration file is unusable. Nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigFileError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not fit the schema (unknown or missing keys).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The client API would listen beyond loopback without `allow_remote_api`.
    #[error("the client API address {0} is not loopback; the API has no authentication (set allow_remote_api = true only behind an authenticating proxy)")]
    RemoteApi(SocketAddr),
    /// A `[[peers]]` entry names its member by both or neither of `member` and `key`.
    #[error("peer entry {0}: give exactly one of `member` or `key`")]
    PeerName(usize),
    /// A peer's key is not 64 hex digits of a valid signing key.
    #[error("peer entry {0}: `key` is not a valid signing key")]
    PeerKey(usize),
    /// A peer's member name is not in genesis, or names two members.
    #[error("peer entry {index}: {reason} member named {name:?} in genesis")]
    PeerMember {
        /// The entry.
        index: usize,
        /// Its name.
        name: String,
        /// "no" or "more than one".
        reason: &'static str,
    },
    /// A peer's address does not resolve.
    #[error("peer entry {index}: cannot resolve address {address:?}")]
    PeerAddress {
        /// The entry.
        index: usize,
        /// The address as written.
        address: String,
    },
    /// Two entries name the same member.
    #[error("peer {0} is listed twice")]
    DuplicatePeer(VerifyKey),
    /// The log level is not one of the five.
    #[error("unknown log level {0:?} (error, warn, info, debug, trace)")]
    LogLevel(String),
    /// A transport timer is zero or the backoff bounds are reversed.
    #[error("bad transport timer: {0}")]
    Transport(&'static str),
    /// The `[auth]` table is unusable.
    #[error("auth: {0}")]
    Auth(#[from] AuthConfigError),
}

impl NodeConfig {
    /// Reads and checks `path`; relative paths in it become relative to its directory.
    ///
    /// # Errors
    /// [`ConfigFileError`].
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigFileError::Parse { message, .. } => ConfigFileError::Parse {
                path: path.to_path_buf(),
                message,
            },
            e => e,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [
            &mut config.identity,
            &mut config.genesis,
            &mut config.network_key,
            &mut config.enrolments,
        ] {
            *p = base.join(&*p);
        }
        for c in &mut config.clinicians {
            c.identity = base.join(&c.identity);
            c.credential = base.join(&c.credential);
        }
        config.ledger = config.ledger.relative_to(base);
        if let Some(p) = &mut config.passphrase_file {
            *p = base.join(&*p);
        }
        if let Some(tls) = &mut config.api_tls {
            tls.cert = base.join(&tls.cert);
            tls.key = base.join(&tls.key);
        }
        for client in config.auth.iter_mut().flat_map(|a| &mut a.clients) {
            client.jwks = base.join(&client.jwks);
        }
        Ok(config)
    }

    /// Parses and checks a configuration's text (paths are left as written).
    ///
    /// # Errors
    /// [`ConfigFileError`] (never `Read`).
    pub fn parse(text: &str) -> Result<Self, ConfigFileError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: PathBuf::from("node.toml"),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    /// The configuration as TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|_| unreachable!("a NodeConfig always serialises"))
    }

    fn check(&self) -> Result<(), ConfigFileError> {
        if !self.api.ip().is_loopback() && !self.allow_remote_api {
            return Err(ConfigFileError::RemoteApi(self.api));
        }
        self.log_level()?;
        self.limits()?;
        if let Some(auth) = &self.auth {
            auth.check(self.api)?;
        }
        for (i, peer) in self.peers.iter().enumerate() {
            if peer.member.is_some() == peer.key.is_some() {
                return Err(ConfigFileError::PeerName(i));
            }
        }
        Ok(())
    }

    /// The log level.
    ///
    /// # Errors
    /// [`ConfigFileError::LogLevel`].
    pub fn log_level(&self) -> Result<tracing::Level, ConfigFileError> {
        self.log
            .level
            .parse()
            .map_err(|_| ConfigFileError::LogLevel(self.log.level.clone()))
    }

    /// The transport's limits: the defaults with this file's timers.
    ///
    /// # Errors
    /// [`ConfigFileError::Transport`].
    pub fn limits(&self) -> Result<Limits, ConfigFileError> {
        let mut limits = Limits::default();
        if let Some(ms) = self.transport.backoff_initial_ms {
            limits.backoff_initial = Duration::from_millis(ms);
        }
        if let Some(ms) = self.transport.backoff_max_ms {
            limits.backoff_max = Duration::from_millis(ms);
        }
        if limits.backoff_initial.is_zero() {
            return Err(ConfigFileError::Transport(
                "backoff_initial_ms must be positive",
            ));
        }
        if limits.backoff_max < limits.backoff_initial {
            return Err(ConfigFileError::Transport(
                "backoff_max_ms must be at least backoff_initial_ms",
            ));
        }
        Ok(limits)
    }

    /// The peers to dial, by signing key, resolved against `genesis` (names) and the resolver
    /// (addresses).
    ///
    /// # Errors
    /// [`ConfigFileError::PeerKey`], [`ConfigFileError::PeerMember`],
    /// [`ConfigFileError::PeerAddress`], [`ConfigFileError::DuplicatePeer`].
    pub fn resolve_peers(
        &self,
        genesis: &Genesis,
    ) -> Result<BTreeMap<VerifyKey, SocketAddr>, ConfigFileError> {
        let mut out = BTreeMap::new();
        for (index, peer) in self.peers.iter().enumerate() {
            let key = match (&peer.member, &peer.key) {
                (Some(name), None) => {
                    let mut found = genesis.members.iter().filter(|m| &m.name == name);
                    match (found.next(), found.next()) {
                        (Some(m), None) => m.identity.sign,
                        (first, _) => {
                            return Err(ConfigFileError::PeerMember {
                                index,
                                name: name.clone(),
                                reason: if first.is_none() {
                                    "no"
                                } else {
                                    "more than one"
                                },
                            })
                        }
                    }
                }
                (None, Some(hex_key)) => {
                    parse_key(hex_key).ok_or(ConfigFileError::PeerKey(index))?
                }
                _ => return Err(ConfigFileError::PeerName(index)),
            };
            let addr = peer
                .address
                .to_socket_addrs()
                .ok()
                .and_then(|mut a| a.next())
                .ok_or_else(|| ConfigFileError::PeerAddress {
                    index,
                    address: peer.address.clone(),
                })?;
            if out.insert(key, addr).is_some() {
                return Err(ConfigFileError::DuplicatePeer(key));
            }
        }
        Ok(out)
    }
}

/// The files a configuration names could not be loaded. Nothing was started.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The configuration itself.
    #[error(transparent)]
    Config(#[from] ConfigFileError),
    /// A key, genesis or passphrase file.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The client API's TLS certificate or key (`[api_tls]`).
    #[error("api_tls: {0}")]
    ApiTls(#[from] ApiTlsError),
    /// A `[[clinicians]]` entry.
    #[error("clinicians: {0}")]
    Clinician(#[from] PeopleError),
    /// A client's JWK Set file, or the `[auth]` table (`[auth]`).
    #[error("auth: {0}")]
    Auth(#[from] AuthConfigError),
}

impl NodeConfig {
    /// Loads what the configuration names — the identity (opened with `passphrase`), the
    /// genesis, the network key (checked against the genesis), the peers, the API's TLS
    /// certificate and key, the clients' JWK Sets — into a [`ServiceConfig`].
    ///
    /// # Errors
    /// [`LoadError`].
    pub fn service_config(&self, passphrase: &[u8]) -> Result<ServiceConfig, LoadError> {
        let identity = keyfile::load_identity(&self.identity, passphrase)?;
        let genesis = keyfile::load_genesis(&self.genesis)?;
        let network_key = keyfile::load_network_key(&self.network_key, &identity, &genesis)?;
        let mut transport = TransportConfig::new(self.listen);
        transport.peers = self.resolve_peers(&genesis)?;
        transport.limits = self.limits()?;
        let api_tls = match &self.api_tls {
            Some(files) => Some(tls::server_config(&files.cert, &files.key)?),
            None => None,
        };
        let clinicians = load_clinicians(
            &self.clinicians,
            passphrase,
            &identity.verify_key(),
            &genesis,
            crate::service::now_ms(),
        )?;
        let auth: Option<AuthSettings> = match &self.auth {
            Some(auth) => Some(auth.load(self.api)?),
            None => None,
        };
        Ok(ServiceConfig {
            identity,
            genesis,
            network_key,
            ledger: self.ledger.clone(),
            transport,
            api: self.api,
            api_tls,
            enrolments: self.enrolments.clone(),
            clinicians,
            auth,
        })
    }
}

/// Parses a signing key written as 64 hex digits.
pub fn parse_key(text: &str) -> Option<VerifyKey> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut bytes).ok()?;
    VerifyKey::from_byte_array(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use medchain_core::testkit::TestNet;

    const MINIMAL: &str = r#"
identity = "identity.backup"
genesis = "genesis.bin"
network_key = "network.key"
ledger = "ledger.sqlite"
listen = "127.0.0.1:7600"
"#;

    #[test]
    fn minimal_file_takes_the_defaults() {
        let c = NodeConfig::parse(MINIMAL).unwrap();
        assert_eq!(c.api, DEFAULT_API.parse::<SocketAddr>().unwrap());
        assert!(c.api.ip().is_loopback());
        assert_eq!(c.log.format, LogFormat::Text);
        assert_eq!(c.log_level().unwrap(), tracing::Level::INFO);
        assert_eq!(c.limits().unwrap(), Limits::default());
        assert!(c.peers.is_empty() && c.passphrase_file.is_none());
    }

    #[test]
    fn written_config_reads_back_the_same() {
        let mut c = NodeConfig::parse(MINIMAL).unwrap();
        c.passphrase_file = Some("pass".into());
        c.peers.push(PeerEntry {
            member: Some("B".into()),
            key: None,
            address: "127.0.0.1:7601".into(),
        });
        c.log.format = LogFormat::Json;
        c.transport.backoff_max_ms = Some(1000);
        c.auth = Some(AuthConfig {
            audience: Some("https://node.example/fhir/auth/token".into()),
            token_lifetime_seconds: 120,
            clients: vec![crate::auth::ClientConfig {
                client_id: "city-ehr".into(),
                jwks: "city-ehr.jwks.json".into(),
                scopes: vec!["system/Observation.rs".into()],
                clinicians: vec!["okafor".into()],
                operator: true,
            }],
        });
        assert_eq!(NodeConfig::parse(&c.to_toml()).unwrap(), c);
        // The JWK Set path is relative to the file, like the others.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node.toml");
        std::fs::write(&path, c.to_toml()).unwrap();
        let loaded = NodeConfig::load(&path).unwrap();
        assert_eq!(
            loaded.auth.unwrap().clients[0].jwks,
            dir.path().join("city-ehr.jwks.json")
        );
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let with = |extra: &str| format!("{MINIMAL}{extra}");
        let cases: Vec<(String, &str)> = vec![
            ("listen = \"127.0.0.1:7600\"".into(), "missing field"),
            (with("colour = \"blue\""), "unknown field"),
            (with("api = \"0.0.0.0:7700\""), "not loopback"),
            (with("listen2 = 1"), "unknown field"),
            (with("[log]\nlevel = \"loud\""), "unknown log level"),
            (with("[log]\nformat = \"xml\""), "unknown variant"),
            (
                with("[transport]\nbackoff_initial_ms = 0"),
                "must be positive",
            ),
            (
                with("[transport]\nbackoff_initial_ms = 500\nbackoff_max_ms = 10"),
                "at least",
            ),
            (with("[[peers]]\naddress = \"127.0.0.1:1\""), "exactly one"),
            (with("[auth]\ncolour = 1"), "unknown field"),
            (
                with("[auth]\ntoken_lifetime_seconds = 0"),
                "auth: token_lifetime_seconds",
            ),
            (
                with("[[auth.clients]]\nclient_id = \"a\"\njwks = \"k\"\nscopes = [\"openid\"]"),
                "not a SMART resource scope",
            ),
            (
                with("[[auth.clients]]\nclient_id = \"a\"\njwks = \"k\"\nsecret = \"x\""),
                "unknown field",
            ),
            (
                with("[[peers]]\nmember = \"A\"\nkey = \"00\"\naddress = \"h:1\""),
                "exactly one",
            ),
        ];
        for (text, expected) in &cases {
            let err = NodeConfig::parse(text).unwrap_err().to_string();
            assert!(err.contains(expected), "{text:?}: {err}");
        }
        // A remote API is accepted only when asked for explicitly.
        let remote = format!("{MINIMAL}api = \"0.0.0.0:7700\"\nallow_remote_api = true");
        assert!(!NodeConfig::parse(&remote).unwrap().api.ip().is_loopback());
    }

    #[test]
    fn peers_resolve_by_name_or_key() {
        let net = TestNet::new(1, 3, 0);
        let g = &net.genesis;
        let (a, b) = (&g.members[0], &g.members[1]);
        let text = format!(
            "{MINIMAL}[[peers]]\nmember = {:?}\naddress = \"127.0.0.1:7601\"\n\
             [[peers]]\nkey = \"{}\"\naddress = \"localhost:7602\"\n",
            a.name, b.identity.sign
        );
        let peers = NodeConfig::parse(&text).unwrap().resolve_peers(g).unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[&a.identity.sign].port(), 7601);
        assert_eq!(peers[&b.identity.sign].port(), 7602);

        let resolve = |entry: &str| {
            NodeConfig::parse(&format!("{MINIMAL}[[peers]]\n{entry}"))
                .unwrap()
                .resolve_peers(g)
                .unwrap_err()
                .to_string()
        };
        assert!(resolve("member = \"nobody\"\naddress = \"127.0.0.1:1\"")
            .contains("no member named \"nobody\""));
        assert!(resolve("key = \"zz\"\naddress = \"127.0.0.1:1\"").contains("not a valid"));
        assert!(resolve(&format!(
            "key = \"{}\"\naddress = \"no port\"",
            a.identity.sign
        ))
        .contains("cannot resolve"));
        let twice = format!(
            "member = {:?}\naddress = \"127.0.0.1:1\"\n[[peers]]\nkey = \"{}\"\naddress = \"127.0.0.1:2\"",
            a.name, a.identity.sign
        );
        assert!(resolve(&twice).contains("listed twice"));
    }
}
