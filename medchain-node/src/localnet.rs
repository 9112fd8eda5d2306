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

use crate::config::{LogConfig, NodeConfig, PeerEntry, TransportTuning};
use crate::keyfile::{self, GenesisSpec, KeyFileError};

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
    let ports = ports(spec)?;
    std::fs::create_dir_all(&spec.dir)?;
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
        nodes.push(LocalNode {
            name,
            key: identity.verify_key(),
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
    for node in &nodes {
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
            auth: None,
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
            clinicians: Vec::new(),
        };
        keyfile::write_new(&node.config, config.to_toml().as_bytes(), false)?;
    }
    Ok(LocalNet {
        genesis: founded.genesis,
        genesis_path,
        nodes,
    })
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
}
