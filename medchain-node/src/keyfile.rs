//! The operator's files: the identity backup, the public identity file, the genesis, the
//! network key wrapped to a member, and the passphrase that protects the backup.
//!
//! | file | written by | content |
//! | --- | --- | --- |
//! | `identity.backup` | `keygen` | both secret keys under Argon2id + AES-256-GCM ([`Identity::export_backup`]); mode 0600 |
//! | `identity.pub` | `keygen` | TOML: `name`, `identity` (`mcid1…`), `vrf` (hex): what a member hands the founder |
//! | `genesis.bin` | `genesis` | the canonical genesis bytes; its hash is printed for out-of-band comparison |
//! | `<name>.network.key` | `genesis` | the network key wrapped to that member's agreement key ([`NetworkKey::wrap_for`]) |
//!
//! Secret files are created new (never overwritten) and readable by their owner only.

use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use medchain_core::election::{VrfPublicKey, VrfSecret};
use medchain_core::encoding::{Decode, DecodeError};
use medchain_core::genesis::{FhirProfile, Genesis, GenesisError, Member, Quorum, Timing};
use medchain_core::keys::{BackupError, BackupParams, Identity, PublicIdentity};
use medchain_core::seal::{KeyEnvelope, NetworkKey, SealError};
use rand_core::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use zeroize::Zeroizing;

/// The environment variable a passphrase may come from.
pub const PASSPHRASE_ENV: &str = "MEDCHAIND_PASSPHRASE";

/// The shortest passphrase `keygen` accepts for a new backup.
pub const MIN_PASSPHRASE_LEN: usize = 8;

/// A key file could not be written or read. Nothing was overwritten.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// The file could not be read or written (a secret file that exists is never replaced).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// The identity backup does not open: wrong passphrase, damaged or not a backup.
    #[error("identity backup {path}: {source}")]
    Backup {
        /// The file.
        path: PathBuf,
        /// Why.
        source: BackupError,
    },
    /// A file does not hold what it should.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The network key file is not for this identity, or does not open.
    #[error("network key {path}: {source}")]
    NetworkKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: SealError,
    },
    /// The network key does not match the genesis's fingerprint.
    #[error("network key {0}: its fingerprint is not the genesis's")]
    WrongNetworkKey(PathBuf),
    /// No passphrase: no file, no environment variable and no terminal to ask on.
    #[error("no passphrase: give a passphrase file, set {PASSPHRASE_ENV}, or run on a terminal")]
    NoPassphrase,
    /// The passphrase is too short for a new backup.
    #[error("the passphrase must be at least {MIN_PASSPHRASE_LEN} bytes")]
    WeakPassphrase,
    /// The two passphrases typed differ.
    #[error("the passphrases do not match")]
    PassphraseMismatch,
    /// The public identity's VRF key does not derive (a broken identity).
    #[error("cannot derive the VRF key: {0}")]
    Vrf(String),
    /// The genesis breaks a rule.
    #[error("genesis: {0}")]
    Genesis(#[from] GenesisError),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyFileError + '_ {
    move |source| KeyFileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn malformed(path: &Path, reason: impl ToString) -> KeyFileError {
    KeyFileError::Malformed {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Creates `path` (which must not exist) with `bytes`; `secret` files get mode 0600.
///
/// # Errors
/// [`KeyFileError::Io`] (also when the file exists).
pub fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), KeyFileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut file = options.open(path).map_err(io_err(path))?;
    file.write_all(bytes).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

fn read(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    std::fs::read(path).map_err(io_err(path))
}

/// What a member hands the founder: its name, public identity and VRF key (`identity.pub`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicIdentityFile {
    /// The member's name in genesis ("St. Mary's Hospital node 1").
    pub name: String,
    /// Its public identity, `mcid1…` ([`PublicIdentity::to_text`]).
    pub identity: String,
    /// Its VRF public key (64 hex digits), for the miner election.
    pub vrf: String,
}

impl PublicIdentityFile {
    /// The public file of `identity` under `name`.
    ///
    /// # Errors
    /// [`KeyFileError::Vrf`].
    pub fn of(name: &str, identity: &Identity) -> Result<Self, KeyFileError> {
        let vrf = VrfSecret::derive(identity).map_err(|e| KeyFileError::Vrf(e.to_string()))?;
        Ok(Self {
            name: name.to_owned(),
            identity: identity.public().to_text(),
            vrf: hex::encode(vrf.public().to_byte_array()),
        })
    }

    /// Reads and checks a public identity file.
    ///
    /// # Errors
    /// [`KeyFileError::Io`], [`KeyFileError::Malformed`].
    pub fn load(path: &Path) -> Result<Self, KeyFileError> {
        let text = std::fs::read_to_string(path).map_err(io_err(path))?;
        let file: Self = toml::from_str(&text).map_err(|e| malformed(path, e))?;
        file.member(true)
            .map_err(|reason| malformed(path, reason))?;
        Ok(file)
    }

    /// The genesis entry for this member.
    ///
    /// # Errors
    /// What is wrong with the identity or the VRF key.
    pub fn member(&self, validator: bool) -> Result<Member, String> {
        let identity =
            PublicIdentity::from_text(&self.identity).map_err(|e| format!("identity: {e}"))?;
        let mut vrf = [0u8; 32];
        hex::decode_to_slice(self.vrf.trim(), &mut vrf)
            .map_err(|_| "vrf: expected 64 hex digits".to_owned())?;
        let vrf = VrfPublicKey::from_byte_array(vrf).map_err(|e| format!("vrf: {e}"))?;
        Ok(Member {
            name: self.name.clone(),
            identity,
            vrf,
            validator,
        })
    }

    /// The file's TOML text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_else(|_| unreachable!("three strings serialise"))
    }
}

/// A new identity, written as `identity.backup` (under `passphrase`) and `identity.pub` in
/// `dir`. Returns the public file.
///
/// # Errors
/// [`KeyFileError::Io`] (a file exists), [`KeyFileError::WeakPassphrase`].
pub fn keygen<R: Rng + CryptoRng>(
    dir: &Path,
    name: &str,
    passphrase: &[u8],
    params: BackupParams,
    rng: &mut R,
) -> Result<(Identity, PublicIdentityFile), KeyFileError> {
    if passphrase.len() < MIN_PASSPHRASE_LEN {
        return Err(KeyFileError::WeakPassphrase);
    }
    let identity = Identity::generate(rng);
    let public = PublicIdentityFile::of(name, &identity)?;
    let backup = identity
        .export_backup(passphrase, params, rng)
        .map_err(|source| KeyFileError::Backup {
            path: dir.join("identity.backup"),
            source,
        })?;
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    write_new(&dir.join("identity.backup"), &backup, true)?;
    write_new(
        &dir.join("identity.pub"),
        public.to_toml().as_bytes(),
        false,
    )?;
    Ok((identity, public))
}

/// Opens the identity backup at `path`.
///
/// # Errors
/// [`KeyFileError::Io`], [`KeyFileError::Backup`] (wrong passphrase or damaged).
pub fn load_identity(path: &Path, passphrase: &[u8]) -> Result<Identity, KeyFileError> {
    let bytes = read(path)?;
    Identity::restore_backup(&bytes, passphrase).map_err(|source| KeyFileError::Backup {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a genesis file.
///
/// # Errors
/// [`KeyFileError::Io`], [`KeyFileError::Malformed`].
pub fn load_genesis(path: &Path) -> Result<Genesis, KeyFileError> {
    let bytes = read(path)?;
    Genesis::from_bytes(&bytes).map_err(|e: DecodeError| malformed(path, e))
}

/// Opens the network key wrapped to `identity` at `path` and checks it against `genesis`.
///
/// # Errors
/// [`KeyFileError::Io`], [`KeyFileError::Malformed`], [`KeyFileError::NetworkKey`],
/// [`KeyFileError::WrongNetworkKey`].
pub fn load_network_key(
    path: &Path,
    identity: &Identity,
    genesis: &Genesis,
) -> Result<NetworkKey, KeyFileError> {
    let bytes = read(path)?;
    let envelope = KeyEnvelope::from_bytes(&bytes).map_err(|e| malformed(path, e))?;
    let key = NetworkKey::unwrap_from(&envelope, identity).map_err(|source| {
        KeyFileError::NetworkKey {
            path: path.to_path_buf(),
            source,
        }
    })?;
    if key.fingerprint() != genesis.network_key_fingerprint {
        return Err(KeyFileError::WrongNetworkKey(path.to_path_buf()));
    }
    Ok(key)
}

/// What the founder chooses besides the members.
#[derive(Debug, Clone)]
pub struct GenesisSpec {
    /// The chain's name.
    pub chain_name: String,
    /// Creation time (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// Protocol timing.
    pub timing: Timing,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    /// The FHIR profile writers validate against.
    pub fhir_profile: FhirProfile,
}

/// A founded network: its genesis and the network key wrapped to each member.
#[derive(Debug)]
pub struct Founded {
    /// The genesis.
    pub genesis: Genesis,
    /// For each member (genesis order): its name and its wrapped network key.
    pub envelopes: Vec<(String, KeyEnvelope)>,
}

/// Builds a genesis for `members` (each with its validator flag) and a fresh network key,
/// wrapped to every member. The key itself is dropped (zeroized) here: only the members hold
/// it.
///
/// # Errors
/// [`KeyFileError::Genesis`], [`KeyFileError::Malformed`] for an unusable member entry,
/// [`KeyFileError::NetworkKey`] for a member key that cannot receive it.
pub fn found<R: Rng + CryptoRng>(
    spec: &GenesisSpec,
    members: &[(PublicIdentityFile, bool)],
    rng: &mut R,
) -> Result<Founded, KeyFileError> {
    let network = NetworkKey::generate(rng);
    let mut entries = Vec::with_capacity(members.len());
    for (i, (file, _)) in members.iter().enumerate() {
        if members[..i]
            .iter()
            .any(|(other, _)| other.name == file.name)
        {
            return Err(malformed(
                Path::new(&file.name),
                "two members have this name (names pick peers in node.toml)",
            ));
        }
    }
    for (file, validator) in members {
        let member = file
            .member(*validator)
            .map_err(|reason| malformed(Path::new(&file.name), reason))?;
        entries.push(member);
    }
    let genesis = Genesis::new(
        spec.chain_name.clone(),
        spec.created_at_ms,
        network.fingerprint(),
        entries,
        Quorum::TWO_THIRDS,
        spec.timing,
        spec.max_block_txs,
    )?
    .with_fhir_profile(spec.fhir_profile);
    let mut envelopes = Vec::with_capacity(genesis.members.len());
    for m in &genesis.members {
        let envelope =
            network
                .wrap_for(&m.identity, rng)
                .map_err(|source| KeyFileError::NetworkKey {
                    path: PathBuf::from(&m.name),
                    source,
                })?;
        envelopes.push((m.name.clone(), envelope));
    }
    Ok(Founded { genesis, envelopes })
}

/// A file name for a member's name: ASCII letters, digits, `-` and `_` kept, the rest `_`.
pub fn file_stem(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if stem.is_empty() {
        "member".into()
    } else {
        stem
    }
}

/// Where a passphrase comes from, in this order: a file, [`PASSPHRASE_ENV`], a prompt on the
/// terminal (echo off).
///
/// # Errors
/// [`KeyFileError::Io`] for an unreadable file or terminal, [`KeyFileError::NoPassphrase`]
/// without a file, variable or terminal, [`KeyFileError::PassphraseMismatch`] when `confirm`
/// and the two entries differ.
pub fn read_passphrase(
    file: Option<&Path>,
    prompt: &str,
    confirm: bool,
) -> Result<Zeroizing<String>, KeyFileError> {
    if let Some(path) = file {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(io_err(path))?);
        let line = text.lines().next().unwrap_or_default();
        return Ok(Zeroizing::new(line.to_owned()));
    }
    if let Ok(value) = std::env::var(PASSPHRASE_ENV) {
        return Ok(Zeroizing::new(value));
    }
    let stdin = std::io::stdin();
    if !rustix::termios::isatty(&stdin) {
        return Err(KeyFileError::NoPassphrase);
    }
    let first = prompt_hidden(prompt)?;
    if confirm {
        let second = prompt_hidden("Repeat the passphrase: ")?;
        if *first != *second {
            return Err(KeyFileError::PassphraseMismatch);
        }
    }
    Ok(first)
}

/// Reads one line from the terminal with echo off, restoring the terminal after.
fn prompt_hidden(prompt: &str) -> Result<Zeroizing<String>, KeyFileError> {
    let tty = Path::new("/dev/tty");
    let stdin = std::io::stdin();
    let saved = rustix::termios::tcgetattr(&stdin).map_err(|e| io_err(tty)(e.into()))?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(rustix::termios::LocalModes::ECHO);
    eprint!("{prompt}");
    rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &quiet)
        .map_err(|e| io_err(tty)(e.into()))?;
    let mut line = Zeroizing::new(String::new());
    let read = stdin.lock().read_line(&mut line);
    let restored =
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &saved);
    eprintln!();
    read.map_err(io_err(tty))?;
    restored.map_err(|e| io_err(tty)(e.into()))?;
    let trimmed = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(trimmed);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use getrandom::SysRng;
    use medchain_core::encoding::Encode;
    use rand_core::UnwrapErr;

    fn spec() -> GenesisSpec {
        GenesisSpec {
            chain_name: "test".into(),
            created_at_ms: 1_790_000_000_000,
            timing: Timing::DEFAULT,
            max_block_txs: 100,
            fhir_profile: FhirProfile::BaseR4,
        }
    }

    #[test]
    fn keygen_then_genesis_then_every_member_opens_its_network_key() {
        let dir = tempfile::tempdir().unwrap();
        let rng = &mut UnwrapErr(SysRng);
        let params = BackupParams::dangerous_test_only();
        let mut publics = Vec::new();
        for name in ["A", "B", "C"] {
            let d = dir.path().join(name);
            keygen(&d, name, b"correct horse", params, rng).unwrap();
            publics.push((
                PublicIdentityFile::load(&d.join("identity.pub")).unwrap(),
                true,
            ));
        }
        let founded = found(&spec(), &publics, rng).unwrap();
        assert_eq!(founded.genesis.members.len(), 3);
        for (name, envelope) in &founded.envelopes {
            let d = dir.path().join(name);
            let id = load_identity(&d.join("identity.backup"), b"correct horse").unwrap();
            let path = d.join("network.key");
            write_new(&path, &envelope.to_bytes(), true).unwrap();
            load_network_key(&path, &id, &founded.genesis).unwrap();
        }
        // A's key file does not open for B.
        let b = load_identity(&dir.path().join("B/identity.backup"), b"correct horse").unwrap();
        let err = load_network_key(&dir.path().join("A/network.key"), &b, &founded.genesis);
        assert!(matches!(err, Err(KeyFileError::NetworkKey { .. })));
        // Another network's genesis does not accept the key.
        let other = found(&spec(), &publics, rng).unwrap().genesis;
        let a = load_identity(&dir.path().join("A/identity.backup"), b"correct horse").unwrap();
        let err = load_network_key(&dir.path().join("A/network.key"), &a, &other);
        assert!(matches!(err, Err(KeyFileError::WrongNetworkKey(_))));
    }

    #[test]
    fn key_files_refuse_bad_input_and_are_never_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let rng = &mut UnwrapErr(SysRng);
        let params = BackupParams::dangerous_test_only();
        assert!(matches!(
            keygen(dir.path(), "A", b"short", params, rng),
            Err(KeyFileError::WeakPassphrase)
        ));
        keygen(dir.path(), "A", b"long enough", params, rng).unwrap();
        let before = std::fs::read(dir.path().join("identity.backup")).unwrap();
        assert!(matches!(
            keygen(dir.path(), "A", b"long enough", params, rng),
            Err(KeyFileError::Io { .. })
        ));
        assert_eq!(
            std::fs::read(dir.path().join("identity.backup")).unwrap(),
            before
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("identity.backup"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "the backup is readable by others");
        }
        let err = load_identity(&dir.path().join("identity.backup"), b"wrong passphrase");
        assert!(err.unwrap_err().to_string().contains("wrong password"));
        // A public file with a damaged identity or VRF key is refused with the field named.
        let mut public = PublicIdentityFile::load(&dir.path().join("identity.pub")).unwrap();
        public.vrf = "00".into();
        assert!(public.member(true).unwrap_err().starts_with("vrf"));
        public.identity.push('0');
        assert!(public.member(true).unwrap_err().starts_with("identity"));
        let bad = dir.path().join("bad.pub");
        write_new(&bad, b"name = 1", false).unwrap();
        assert!(matches!(
            PublicIdentityFile::load(&bad),
            Err(KeyFileError::Malformed { .. })
        ));
        write_new(&dir.path().join("genesis.bin"), b"\x02garbage", false).unwrap();
        assert!(matches!(
            load_genesis(&dir.path().join("genesis.bin")),
            Err(KeyFileError::Malformed { .. })
        ));
    }

    #[test]
    fn passphrase_comes_from_the_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pass");
        write_new(&path, b"from the file\nsecond line\n", true).unwrap();
        let p = read_passphrase(Some(&path), "", false).unwrap();
        assert_eq!(p.as_str(), "from the file");
        assert!(matches!(
            read_passphrase(Some(&dir.path().join("missing")), "", false),
            Err(KeyFileError::Io { .. })
        ));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("St. Mary's / 1"), "St__Mary_s___1");
        assert_eq!(file_stem(""), "member");
        assert_eq!(file_stem("../x"), "___x");
    }
}
