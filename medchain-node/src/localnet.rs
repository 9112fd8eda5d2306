//! A local network for demos and tests: N members on loopback, each with its keys, its wrapped
//! network key and its `node.toml`, under one directory (`medchaind local-net`).
//!
//! ```text
//! DIR/genesis.bin
//! DIR/node-1/{identity.backup, identity.pub, passphrase, network.key, node.toml}
//! DIR/node-2/…
//! ```
//!
//! Each node's passphrase is random and written next to its backup (mode 0600): convenient on
//! one machine, never how a real member keeps its key (`docs/node.md`).

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use medchain_core::encoding::Encode;
use medchain_core::genesis::{FhirProfile, Genesis, Timing};
use medchain_core::keys::{BackupParams, VerifyKey};
use rand_core::{CryptoRng, Rng};
use thiserror::Error;

use crate::auth::{AuthConfig, ClientConfig, JwkSet};
use crate::config::{LogConfig, NodeConfig, PeerEntry, TransportTuning};
use crate::keyfile::{self, GenesisSpec, KeyFileError};
use crate::people::{create_clinician, ClinicianEntry, Issuer, PeopleError};

/// Most nodes a local network may have.
pub const MAX_LOCAL_NODES: usize = 64;

/// What to write.
#[derive(Debug, Clone)]
pub struct LocalNetSpec {
    /// How many members (all validators).
    pub nodes: usize,
    /// Where.
    pub dir: PathBuf,
    /// Node `i` (from 1) listens on `base_port + 2(i-1)` and serves its API on the next port;
    /// `None` picks free ports.
    pub base_port: Option<u16>,
    /// Protocol timing.
    pub timing: Timing,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// The identity backups' Argon2id cost.
    pub backup: BackupParams,
    /// Creation time of the genesis (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// Clinicians created at every node for the FHIR API (`[[clinicians]]`; identities under
    /// the node's passphrase, credentials issued by the node's member, valid for a year from
    /// `created_at_ms`).
    pub clinicians: Vec<String>,
    /// Clients registered at every node (`[auth]`): with any, every node requires tokens.
    pub clients: Vec<LocalClient>,
}

/// A client registered at every node of a local network: every `system/` scope, acting for
/// every clinician, operator. For demos and tests; a real member grants less
/// (`docs/node.md`, "Who may call the API").
#[derive(Debug, Clone)]
pub struct LocalClient {
    /// Its client id.
    pub id: String,
    /// Its JWK Set (public keys), copied into each node's directory as `client-N.jwks.json`
    /// (N its position among the clients, from 1).
    pub jwks: PathBuf,
}

/// One node of a written local network.
#[derive(Debug, Clone)]
pub struct LocalNode {
    /// Its name in genesis (`node-1`, …).
    pub name: String,
    /// Its signing key.
    pub key: VerifyKey,
    /// Its directory.
    pub dir: PathBuf,
    /// Its `node.toml`.
    pub config: PathBuf,
    /// Its peer transport's address.
    pub listen: SocketAddr,
    /// Its client API's address.
    pub api: SocketAddr,
}

/// A written local network.
#[derive(Debug, Clone)]
pub struct LocalNet {
    /// The genesis.
    pub genesis: Genesis,
    /// Its file.
    pub genesis_path: PathBuf,
    /// The nodes.
    pub nodes: Vec<LocalNode>,
}

/// A local network could not be written.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum LocalNetError {
    /// The node count is outside 1..=[`MAX_LOCAL_NODES`].
    #[error("a local network has 1 to {MAX_LOCAL_NODES} nodes")]
    NodeCount,
    /// The ports would pass 65535.
    #[error("base port {0} leaves no room for the nodes' ports")]
    Ports(u16),
    /// No free port could be found, or a directory not created.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// A key file (exists already, or cannot be written).
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A clinician could not be created (a name outside `A-Za-z0-9._-`, a repeated name).
    #[error(transparent)]
    People(#[from] PeopleError),
    /// The `[auth]` table the clients make is one `medchaind run` refuses (an empty,
    /// unprintable, `patient:` or repeated client id).
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    /// A client's JWK Set file cannot be read or is not a JWK Set the node accepts.
    #[error("client {id}: {reason}")]
    Client {
        /// The client id.
        id: String,
        /// Why.
        reason: String,
    },
}

/// Writes the local network described by `spec`.
///
/// # Errors
/// [`LocalNetError`]; files that exist are never overwritten.
pub fn write_local_net<R: Rng + CryptoRng>(
    spec: &LocalNetSpec,
    rng: &mut R,
) -> Result<LocalNet, LocalNetError> {
    if spec.nodes == 0 || spec.nodes > MAX_LOCAL_NODES {
        return Err(LocalNetError::NodeCount);
    }
    let (auth, jwks) = auth_table(&spec.clients, &spec.clinicians)?;
    for (i, name) in spec.clinicians.iter().enumerate() {
        if spec.clinicians[..i].contains(name) {
            return Err(PeopleError::Name(name.clone()).into());
        }
    }
    let ports = ports(spec)?;
    std::fs::create_dir_all(&spec.dir)?;
    let mut identities = Vec::with_capacity(spec.nodes);
    let mut publics = Vec::with_capacity(spec.nodes);
    let mut nodes = Vec::with_capacity(spec.nodes);
    for (i, (listen, api)) in ports.into_iter().enumerate() {
        let name = format!("node-{}", i + 1);
        let dir = spec.dir.join(&name);
        std::fs::create_dir_all(&dir)?;
        let mut secret = [0u8; 24];
        rng.fill_bytes(&mut secret);
        let passphrase = zeroize::Zeroizing::new(hex::encode(secret));
        keyfile::write_new(&dir.join("passphrase"), passphrase.as_bytes(), true)?;
        let (identity, public) =
            keyfile::keygen(&dir, &name, passphrase.as_bytes(), spec.backup, rng)?;
        publics.push((public, true));
        let key = identity.verify_key();
        identities.push((identity, passphrase));
        nodes.push(LocalNode {
            name,
            key,
            config: dir.join("node.toml"),
            dir,
            listen,
            api,
        });
    }
    let founded = keyfile::found(
        &GenesisSpec {
            chain_name: "local-net".into(),
            created_at_ms: spec.created_at_ms,
            timing: spec.timing,
            max_block_txs: spec.max_block_txs,
            fhir_profile: FhirProfile::BaseR4,
        },
        &publics,
        rng,
    )?;
    let genesis_path = spec.dir.join("genesis.bin");
    keyfile::write_new(&genesis_path, &founded.genesis.to_bytes(), false)?;
    for (name, envelope) in &founded.envelopes {
        if let Some(node) = nodes.iter().find(|n| &n.name == name) {
            keyfile::write_new(&node.dir.join("network.key"), &envelope.to_bytes(), true)?;
        }
    }
    let chain = founded.genesis.chain_id();
    for (node, (identity, passphrase)) in nodes.iter().zip(&identities) {
        let mut clinicians = Vec::with_capacity(spec.clinicians.len());
        for name in &spec.clinicians {
            let entry = create_clinician(
                &node.dir.join("clinicians"),
                name,
                Issuer {
                    member: identity,
                    chain,
                    expires_ms: spec.created_at_ms.saturating_add(365 * 86_400_000),
                },
                passphrase.as_bytes(),
                spec.backup,
                rng,
            )?;
            // Relative to node.toml, like every other path it names.
            clinicians.push(ClinicianEntry {
                name: entry.name,
                identity: Path::new("clinicians").join(format!("{name}.backup")),
                credential: Path::new("clinicians").join(format!("{name}.credential")),
            });
        }
        if let Some(auth) = &auth {
            for (client, set) in auth.clients.iter().zip(&jwks) {
                keyfile::write_new(&node.dir.join(&client.jwks), set, false)?;
            }
        }
        let config = NodeConfig {
            identity: "identity.backup".into(),
            passphrase_file: Some("passphrase".into()),
            genesis: "../genesis.bin".into(),
            network_key: "network.key".into(),
            ledger: "ledger.sqlite".into(),
            listen: node.listen,
            api: node.api,
            api_tls: None,
            allow_remote_api: false,
            auth: auth.clone(),
            peers: nodes
                .iter()
                .filter(|p| p.name != node.name)
                .map(|p| PeerEntry {
                    member: Some(p.name.clone()),
                    key: None,
                    address: p.listen.to_string(),
                })
                .collect(),
            log: LogConfig::default(),
            // Peers that restart are found again within two seconds.
            transport: TransportTuning {
                backoff_initial_ms: None,
                backoff_max_ms: Some(2_000),
            },
            enrolments: "enrolments".into(),
            clinicians,
        };
        keyfile::write_new(&node.config, config.to_toml().as_bytes(), false)?;
    }
    Ok(LocalNet {
        genesis: founded.genesis,
        genesis_path,
        nodes,
    })
}

/// The `[auth]` table every node gets (`None` without clients), checked as `medchaind run`
/// checks it, and each client's JWK Set file, read and parsed: client `i`'s set is copied to
/// `client-{i+1}.jwks.json` beside each `node.toml`.
fn auth_table(
    clients: &[LocalClient],
    clinicians: &[String],
) -> Result<(Option<AuthConfig>, Vec<Vec<u8>>), LocalNetError> {
    if clients.is_empty() {
        return Ok((None, Vec::new()));
    }
    let mut sets = Vec::with_capacity(clients.len());
    for client in clients {
        let fail = |e: &dyn std::fmt::Display| LocalNetError::Client {
            id: client.id.clone(),
            reason: format!("{}: {e}", client.jwks.display()),
        };
        let bytes = std::fs::read(&client.jwks).map_err(|e| fail(&e))?;
        JwkSet::parse(&bytes).map_err(|e| fail(&e))?;
        sets.push(bytes);
    }
    let auth = AuthConfig {
        audience: None,
        token_lifetime_seconds: crate::auth::DEFAULT_TOKEN_LIFETIME,
        clients: clients
            .iter()
            .enumerate()
            .map(|(i, c)| ClientConfig {
                client_id: c.id.clone(),
                jwks: format!("client-{}.jwks.json", i + 1).into(),
                scopes: vec!["system/*.cruds".into()],
                clinicians: clinicians.to_vec(),
                operator: true,
            })
            .collect(),
    };
    auth.check(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    Ok((Some(auth), sets))
}

/// Each node's (transport, API) addresses on 127.0.0.1.
fn ports(spec: &LocalNetSpec) -> Result<Vec<(SocketAddr, SocketAddr)>, LocalNetError> {
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    match spec.base_port {
        Some(base) => {
            let n = u16::try_from(spec.nodes).map_err(|_| LocalNetError::NodeCount)?;
            base.checked_add(2 * n).ok_or(LocalNetError::Ports(base))?;
            Ok((0..n)
                .map(|i| (at(base + 2 * i), at(base + 2 * i + 1)))
                .collect())
        }
        None => {
            // Hold every listener until all ports are chosen, so none is chosen twice. Another
            // process may still take one before the node binds it (then the node says so).
            let listeners = (0..2 * spec.nodes)
                .map(|_| TcpListener::bind(at(0)))
                .collect::<Result<Vec<_>, _>>()?;
            let addrs = listeners
                .iter()
                .map(TcpListener::local_addr)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(addrs.chunks(2).map(|c| (c[0], c[1])).collect())
        }
    }
}

/// The configuration files of a written local network, in node order (`node-1`, …).
///
/// # Errors
/// I/O errors reading `dir`.
pub fn configs_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for i in 1..=MAX_LOCAL_NODES {
        let config = dir.join(format!("node-{i}")).join("node.toml");
        if !config.exists() {
            break;
        }
        out.push(config);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use getrandom::SysRng;
    use rand_core::UnwrapErr;

    fn spec(dir: &Path, nodes: usize, base_port: Option<u16>) -> LocalNetSpec {
        LocalNetSpec {
            nodes,
            dir: dir.to_path_buf(),
            base_port,
            timing: Timing::DEFAULT,
            max_block_txs: 100,
            backup: BackupParams::dangerous_test_only(),
            created_at_ms: 1_790_000_000_000,
            clinicians: Vec::new(),
            clients: Vec::new(),
        }
    }

    #[test]
    fn writes_configs_that_load_and_name_every_other_member() {
        let dir = tempfile::tempdir().unwrap();
        let rng = &mut UnwrapErr(SysRng);
        let net = write_local_net(&spec(dir.path(), 3, Some(40_000)), rng).unwrap();
        assert_eq!(configs_in(dir.path()).unwrap().len(), 3);
        for node in &net.nodes {
            let config = NodeConfig::load(&node.config).unwrap();
            assert_eq!(config.listen, node.listen);
            assert!(config.api.ip().is_loopback());
            let peers = config.resolve_peers(&net.genesis).unwrap();
            assert_eq!(peers.len(), 2);
            assert!(!peers.contains_key(&node.key));
            let pass =
                keyfile::read_passphrase(config.passphrase_file.as_deref(), "", false).unwrap();
            let id = keyfile::load_identity(&config.identity, pass.as_bytes()).unwrap();
            assert_eq!(id.verify_key(), node.key);
            let genesis = keyfile::load_genesis(&config.genesis).unwrap();
            keyfile::load_network_key(&config.network_key, &id, &genesis).unwrap();
        }
        assert_eq!(net.nodes[2].api.port(), 40_005);
        // Written once: a second run into the same directory overwrites nothing.
        assert!(write_local_net(&spec(dir.path(), 3, Some(40_000)), rng).is_err());
    }

    #[test]
    fn refuses_bad_counts_and_ports() {
        let dir = tempfile::tempdir().unwrap();
        let rng = &mut UnwrapErr(SysRng);
        assert!(matches!(
            write_local_net(&spec(dir.path(), 0, None), rng),
            Err(LocalNetError::NodeCount)
        ));
        assert!(matches!(
            write_local_net(&spec(dir.path(), 4, Some(65_530)), rng),
            Err(LocalNetError::Ports(_))
        ));
        let free = write_local_net(&spec(dir.path(), 2, None), rng).unwrap();
        let mut ports: Vec<u16> = free
            .nodes
            .iter()
            .flat_map(|n| [n.listen.port(), n.api.port()])
            .collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
    }

    #[test]
    fn clinicians_and_clients_are_written_at_every_node_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let rng = &mut UnwrapErr(SysRng);
        let ehr = medchain_core::keys::Identity::generate(rng);
        let jwks = dir.path().join("ehr.jwks.json");
        let set = serde_json::json!({"keys": [crate::auth::Jwk::ed25519("k1", ehr.verify_key()).to_json()]});
        std::fs::write(&jwks, set.to_string()).unwrap();
        let mut with_people = spec(&dir.path().join("net"), 2, None);
        with_people.clinicians = vec!["okafor".into(), "reyes".into()];
        with_people.clients = vec![LocalClient {
            id: "ehr".into(),
            jwks: jwks.clone(),
        }];
        let net = write_local_net(&with_people, rng).unwrap();
        for node in &net.nodes {
            let config = NodeConfig::load(&node.config).unwrap();
            let pass =
                keyfile::read_passphrase(config.passphrase_file.as_deref(), "", false).unwrap();
            let loaded = config.service_config(pass.as_bytes()).unwrap();
            let names: Vec<&str> = loaded.clinicians.iter().map(|c| c.name.as_str()).collect();
            assert_eq!(names, ["okafor", "reyes"]);
            let auth = config.auth.as_ref().unwrap();
            assert_eq!(auth.clients[0].client_id, "ehr");
            assert_eq!(auth.clients[0].clinicians, ["okafor", "reyes"]);
            assert!(loaded.auth.is_some());
        }
        // A repeated clinician, a repeated or malformed client id, a JWK Set the node would
        // refuse: nothing is written.
        let mut twice = spec(&dir.path().join("twice"), 2, None);
        twice.clinicians = vec!["okafor".into(), "okafor".into()];
        assert!(matches!(
            write_local_net(&twice, rng),
            Err(LocalNetError::People(_))
        ));
        let not_a_set = dir.path().join("bad.json");
        std::fs::write(&not_a_set, b"{\"keys\": 3}").unwrap();
        for clients in [
            vec![LocalClient {
                id: "a b".into(),
                jwks: jwks.clone(),
            }],
            // A client id posing as a patient's self-assertion.
            vec![LocalClient {
                id: format!("patient:{}", ehr.verify_key()),
                jwks: jwks.clone(),
            }],
            vec![
                LocalClient {
                    id: "ehr".into(),
                    jwks: jwks.clone(),
                },
                LocalClient {
                    id: "ehr".into(),
                    jwks: jwks.clone(),
                },
            ],
            vec![LocalClient {
                id: "ehr".into(),
                jwks: not_a_set,
            }],
            vec![LocalClient {
                id: "ehr".into(),
                jwks: dir.path().join("missing.json"),
            }],
        ] {
            let bad_dir = dir.path().join("bad");
            let mut bad = spec(&bad_dir, 2, None);
            bad.clients = clients;
            assert!(matches!(
                write_local_net(&bad, rng),
                Err(LocalNetError::Client { .. } | LocalNetError::Auth(_))
            ));
            assert!(!bad_dir.exists());
        }
        assert!(!dir.path().join("twice").exists());
    }
}
