//! Who a node acts for on the FHIR API: the clinicians whose keys it holds (custodial, as an EHR
//! integration does), and the patients enrolled at it (their writer and tag keys, sealed to this
//! member by their wallets).
//!
//! * A **clinician** is an identity backup under the node's passphrase and a credential this
//!   member issued (`medchaind clinician`, [`create_clinician`]). The node signs key requests in
//!   the clinician's name and opens what is released to the clinician; the access log on chain
//!   names the clinician. Which authenticated client may act for which clinician is the
//!   client's registration (`docs/fhir-api.md`, "Who is asking").
//! * An **enrolment** is the patient's `SealedWriterKey` for this member, exactly what the
//!   wallet exports. It holds its keys only encrypted to this member, so it is kept as it came,
//!   one file per patient in the node's enrolment directory, written atomically.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use medchain::{Identity, SealedWriterKey, VerifyKey};
use medchain_core::credential::{Credential, Role};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::genesis::Genesis;
use medchain_core::hash::ChainId;
use medchain_core::keys::BackupParams;
use rand_core::{CryptoRng, Rng};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::keyfile::{self, KeyFileError};

/// One `[[clinicians]]` entry of `node.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClinicianEntry {
    /// The name clients use for the clinician (`X-Medchain-Clinician`).
    pub name: String,
    /// The clinician's identity backup, under the node's passphrase.
    pub identity: PathBuf,
    /// The credential this member issued to the clinician (its canonical bytes).
    pub credential: PathBuf,
}

/// A clinician whose key this node holds. `Debug` shows the name and the public key only.
pub struct Clinician {
    /// Its name.
    pub name: String,
    /// Its identity.
    pub identity: Identity,
    /// Its credential, issued by this member.
    pub credential: Credential,
}

impl std::fmt::Debug for Clinician {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clinician")
            .field("name", &self.name)
            .field("key", &self.identity.verify_key())
            .finish_non_exhaustive()
    }
}

/// A clinician or enrolment file is unusable.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PeopleError {
    /// A key or credential file could not be read or written.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// A credential file is not a credential this member issued to that clinician, for this
    /// network, of the clinician role, unexpired.
    #[error("clinician {name:?}: the credential is not valid here ({reason})")]
    Credential {
        /// The clinician.
        name: String,
        /// Why.
        reason: String,
    },
    /// Two clinicians share a name, or a name is empty or not printable ASCII.
    #[error("clinician name {0:?} is empty, repeated or not [A-Za-z0-9._-]")]
    Name(String),
    /// The enrolment directory could not be read or written.
    #[error("enrolment directory {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A stored enrolment is not a `SealedWriterKey` for this member.
    #[error("enrolment file {0} is damaged or not for this member")]
    Enrolment(PathBuf),
}

/// Whether `name` is a usable clinician name (1–64 of `A-Za-z0-9._-`).
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Loads the clinicians of `entries`: each identity opened with `passphrase`, each credential
/// checked as validators will check it (issued by `member` for `genesis`'s network, of the
/// clinician role of this institution, to that identity, unexpired at `now_ms`).
///
/// # Errors
/// [`PeopleError`] for the first unusable entry.
pub fn load_clinicians(
    entries: &[ClinicianEntry],
    passphrase: &[u8],
    member: &VerifyKey,
    genesis: &Genesis,
    now_ms: u64,
) -> Result<Vec<Clinician>, PeopleError> {
    let mut out: Vec<Clinician> = Vec::with_capacity(entries.len());
    for entry in entries {
        if !valid_name(&entry.name) || out.iter().any(|c| c.name == entry.name) {
            return Err(PeopleError::Name(entry.name.clone()));
        }
        let identity = keyfile::load_identity(&entry.identity, passphrase)?;
        let bytes = fs::read(&entry.credential).map_err(|source| {
            PeopleError::KeyFile(KeyFileError::Io {
                path: entry.credential.clone(),
                source,
            })
        })?;
        let bad = |reason: String| PeopleError::Credential {
            name: entry.name.clone(),
            reason,
        };
        let credential = Credential::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        credential
            .verify(genesis, &identity.verify_key(), now_ms)
            .map_err(|e| bad(e.to_string()))?;
        if credential.role
            != (Role::Clinician {
                institution: *member,
            })
        {
            return Err(bad("not a clinician of this institution".into()));
        }
        out.push(Clinician {
            name: entry.name.clone(),
            identity,
            credential,
        });
    }
    Ok(out)
}

/// Who issues a clinician's credential: this member, on its network, until when.
#[derive(Debug, Clone, Copy)]
pub struct Issuer<'a> {
    /// The member institution (the node's identity).
    pub member: &'a Identity,
    /// The network.
    pub chain: ChainId,
    /// When the credential expires (milliseconds since the Unix epoch).
    pub expires_ms: u64,
}

/// Creates a clinician in `dir`: a new identity (`NAME.backup`, under `passphrase` with
/// `params`) and the credential `issuer` issues it (`NAME.credential`). Returns the
/// `[[clinicians]]` entry to add to `node.toml` (paths as given under `dir`).
///
/// # Errors
/// [`PeopleError::Name`], [`PeopleError::KeyFile`] (a file exists, a weak passphrase).
pub fn create_clinician<R: Rng + CryptoRng>(
    dir: &Path,
    name: &str,
    issuer: Issuer<'_>,
    passphrase: &[u8],
    params: BackupParams,
    rng: &mut R,
) -> Result<ClinicianEntry, PeopleError> {
    let Issuer {
        member,
        chain,
        expires_ms,
    } = issuer;
    if !valid_name(name) {
        return Err(PeopleError::Name(name.to_owned()));
    }
    if passphrase.len() < keyfile::MIN_PASSPHRASE_LEN {
        return Err(KeyFileError::WeakPassphrase.into());
    }
    let identity = Identity::generate(rng);
    let backup_path = dir.join(format!("{name}.backup"));
    let backup = identity
        .export_backup(passphrase, params, rng)
        .map_err(|source| KeyFileError::Backup {
            path: backup_path.clone(),
            source,
        })?;
    let credential = Credential::issue(
        member,
        &chain,
        identity.verify_key(),
        Role::Clinician {
            institution: member.verify_key(),
        },
        expires_ms,
    );
    fs::create_dir_all(dir).map_err(|source| PeopleError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let credential_path = dir.join(format!("{name}.credential"));
    keyfile::write_new(&backup_path, &backup, true)?;
    keyfile::write_new(&credential_path, &credential.to_bytes(), false)?;
    Ok(ClinicianEntry {
        name: name.to_owned(),
        identity: backup_path,
        credential: credential_path,
    })
}

/// The patients enrolled at this node: their `SealedWriterKey`s, one file each
/// (`<patient key hex>.enrolment`) in a directory, loaded at start.
#[derive(Debug)]
pub struct Enrolments {
    dir: PathBuf,
    by_patient: HashMap<VerifyKey, SealedWriterKey>,
}

impl Enrolments {
    /// Loads the enrolments in `dir` (created if missing). Each must open for `member` on
    /// `chain` (`check`), so a file copied from another node is refused at start.
    ///
    /// # Errors
    /// [`PeopleError::Io`], [`PeopleError::Enrolment`].
    pub fn load(dir: &Path, check: impl Fn(&SealedWriterKey) -> bool) -> Result<Self, PeopleError> {
        let io = |source| PeopleError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(io)?;
        let mut by_patient = HashMap::new();
        for entry in fs::read_dir(dir).map_err(io)? {
            let path = entry.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("enrolment") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io)?;
            let enrolment = SealedWriterKey::from_bytes(&bytes)
                .ok()
                .filter(|e| check(e))
                .ok_or_else(|| PeopleError::Enrolment(path.clone()))?;
            by_patient.insert(enrolment.patient().sign, enrolment);
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            by_patient,
        })
    }

    /// The enrolment of `patient`, if the patient enrolled here.
    pub fn get(&self, patient: &VerifyKey) -> Option<&SealedWriterKey> {
        self.by_patient.get(patient)
    }

    /// How many patients are enrolled here.
    pub fn len(&self) -> usize {
        self.by_patient.len()
    }

    /// Whether no patient is enrolled here.
    pub fn is_empty(&self) -> bool {
        self.by_patient.is_empty()
    }

    /// Keeps `enrolment` (already checked to open for this member), replacing the patient's
    /// earlier one: written to a temporary file, synced, then renamed over the old one, so a
    /// crash leaves the old or the new, never half of one.
    ///
    /// # Errors
    /// [`PeopleError::Io`]; nothing changed.
    pub fn insert(&mut self, enrolment: SealedWriterKey) -> Result<(), PeopleError> {
        let patient = enrolment.patient().sign;
        let name = hex::encode(patient.as_byte_array());
        let path = self.dir.join(format!("{name}.enrolment"));
        let tmp = self.dir.join(format!("{name}.enrolment.tmp"));
        let io = |source| PeopleError::Io {
            path: path.clone(),
            source,
        };
        let _ = fs::remove_file(&tmp);
        keyfile::write_new(&tmp, &enrolment.to_bytes(), false).map_err(|e| match e {
            KeyFileError::Io { source, .. } => io(source),
            other => PeopleError::KeyFile(other),
        })?;
        fs::rename(&tmp, &path).map_err(io)?;
        if let Ok(dir) = fs::File::open(&self.dir) {
            let _ = dir.sync_all();
        }
        self.by_patient.insert(patient, enrolment);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use getrandom::SysRng;
    use medchain_core::testkit::TestNet;
    use rand_core::UnwrapErr;

    const PASS: &[u8] = b"correct horse battery staple";

    #[test]
    fn a_created_clinician_loads_and_a_foreign_or_expired_one_is_refused() {
        let net = TestNet::new(7, 2, 0);
        let dir = tempfile::tempdir().expect("dir");
        let rng = &mut UnwrapErr(SysRng);
        let member = &net.nodes[0];
        let chain = net.genesis.chain_id();
        let now = 1_000_000;
        let params = BackupParams::dangerous_test_only();
        let issuer = |member, expires_ms| Issuer {
            member,
            chain,
            expires_ms,
        };
        let entry = create_clinician(
            dir.path(),
            "okafor",
            issuer(member, now + 1_000),
            PASS,
            params,
            rng,
        )
        .expect("created");
        let loaded = load_clinicians(
            std::slice::from_ref(&entry),
            PASS,
            &member.verify_key(),
            &net.genesis,
            now,
        )
        .expect("loads");
        assert_eq!(loaded[0].name, "okafor");
        assert!(!format!("{:?}", loaded[0]).contains("secret"));
        // Another member's clinician is not this node's.
        let err = load_clinicians(
            std::slice::from_ref(&entry),
            PASS,
            &net.nodes[1].verify_key(),
            &net.genesis,
            now,
        )
        .unwrap_err();
        assert!(matches!(err, PeopleError::Credential { .. }), "{err}");
        // Expired.
        let err = load_clinicians(
            std::slice::from_ref(&entry),
            PASS,
            &member.verify_key(),
            &net.genesis,
            now + 2_000,
        )
        .unwrap_err();
        assert!(matches!(err, PeopleError::Credential { .. }), "{err}");
        // A repeated name, a bad name, a wrong passphrase.
        let twice = [entry.clone(), entry.clone()];
        assert!(matches!(
            load_clinicians(&twice, PASS, &member.verify_key(), &net.genesis, now),
            Err(PeopleError::Name(_))
        ));
        assert!(matches!(
            create_clinician(dir.path(), "../x", issuer(member, now), PASS, params, rng),
            Err(PeopleError::Name(_))
        ));
        assert!(load_clinicians(
            std::slice::from_ref(&entry),
            b"another passphrase entirely",
            &member.verify_key(),
            &net.genesis,
            now
        )
        .is_err());
    }

    #[test]
    fn enrolments_survive_a_reload_and_a_foreign_file_is_refused() {
        let net = TestNet::new(7, 2, 0);
        let dir = tempfile::tempdir().expect("dir");
        let rng = &mut UnwrapErr(SysRng);
        let chain = net.genesis.chain_id();
        let hospital = &net.nodes[0];
        let patient = Identity::generate(rng);
        let opens = |e: &SealedWriterKey| e.import(hospital, &chain, e.patient()).is_ok();
        let mut enrolments = Enrolments::load(dir.path(), opens).expect("empty");
        assert!(enrolments.is_empty());
        let enrolment =
            SealedWriterKey::export(&patient, &chain, &hospital.public(), rng).expect("export");
        enrolments.insert(enrolment.clone()).expect("kept");
        // Again: replaced, not duplicated.
        enrolments.insert(enrolment).expect("kept");
        let reloaded = Enrolments::load(dir.path(), opens).expect("reload");
        assert_eq!(reloaded.len(), 1);
        assert!(reloaded.get(&patient.verify_key()).is_some());
        // A file sealed to another member is refused at load.
        let foreign =
            SealedWriterKey::export(&patient, &chain, &net.nodes[1].public(), rng).expect("export");
        fs::write(dir.path().join("x.enrolment"), foreign.to_bytes()).expect("write");
        assert!(matches!(
            Enrolments::load(dir.path(), opens),
            Err(PeopleError::Enrolment(_))
        ));
    }
}
