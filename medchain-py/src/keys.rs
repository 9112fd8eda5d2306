//! Identities, public identities, the network key and secure-index keys.

use getrandom::SysRng;
use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::ChainId;
use medchain_core::index::{IndexKey as CoreIndexKey, SealedWriterKey};
use medchain_core::keys::{BackupParams, Identity as CoreIdentity, PublicIdentity as CorePublic};
use medchain_core::seal::NetworkKey as CoreNetworkKey;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::UnwrapErr;

use crate::convert::{bytes_arg, secret_arg, wrong_type};
use crate::errors::{Error, Kind, Result};

fn params(fast: bool) -> BackupParams {
    if fast {
        BackupParams::dangerous_test_only()
    } else {
        BackupParams::RECOMMENDED
    }
}

/// A party's key pair (ed25519 for signatures, X25519 for sealing): a patient's wallet, a
/// clinician, an institution's node. Secrets never leave the object except as an encrypted
/// backup.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct Identity {
    pub(crate) inner: CoreIdentity,
}

impl Identity {
    /// An explicit, zeroizing copy of a core identity (`Identity::duplicate`: no backup, no
    /// password).
    pub(crate) fn copy_of(id: &CoreIdentity) -> Self {
        Self {
            inner: id.duplicate(),
        }
    }
}

#[pymethods]
impl Identity {
    /// A new random identity.
    #[staticmethod]
    fn generate() -> Self {
        Self {
            inner: CoreIdentity::generate(&mut UnwrapErr(SysRng)),
        }
    }

    /// Restores an identity from `export_backup` output. Raises `WrongPassword` for a wrong
    /// password or altered bytes, `DecodeError` for bytes that are not a backup.
    #[staticmethod]
    fn restore_backup(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        password: &Bound<'_, PyAny>,
    ) -> Result<Self> {
        let data = bytes_arg(data, "data")?;
        let password = secret_arg(password, "password")?;
        let inner = py.detach(|| CoreIdentity::restore_backup(&data, &password))?;
        Ok(Self { inner })
    }

    /// The identity encrypted under `password` (Argon2id + AES-256-GCM). `fast=True` uses a
    /// weak key-derivation setting meant for tests only.
    #[pyo3(signature = (password, *, fast = false))]
    fn export_backup<'py>(
        &self,
        py: Python<'py>,
        password: &Bound<'py, PyAny>,
        fast: bool,
    ) -> Result<Bound<'py, PyBytes>> {
        let password = secret_arg(password, "password")?;
        if password.is_empty() {
            return Err(Error::new(Kind::InvalidArgument, "the password is empty"));
        }
        let bytes = py.detach(|| {
            self.inner
                .export_backup(&password, params(fast), &mut UnwrapErr(SysRng))
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The public identity (what others seal records for).
    #[getter]
    fn public(&self) -> PublicIdentity {
        PublicIdentity {
            inner: self.inner.public(),
        }
    }

    /// The printable public identity (`mcid1…`).
    #[getter]
    fn public_text(&self) -> String {
        self.inner.public().to_text()
    }

    /// The short party id (hex).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// Signs a JWS signing input (`BASE64URL(header) '.' BASE64URL(payload)`, the header a JSON
    /// object) with this identity's ed25519 key: the RFC 8037 `EdDSA` signature (64 bytes) of
    /// a JWT this party presents, e.g. a SMART Backend Services client assertion. Raises
    /// `InvalidArgument` for any other input (nothing is signed): the shape keeps these
    /// signatures apart from medchain's own framed ones.
    fn sign_jws<'py>(
        &self,
        py: Python<'py>,
        signing_input: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyBytes>> {
        let input: String = signing_input
            .extract()
            .map_err(|_| wrong_type(signing_input, "signing_input", "a str"))?;
        let signature = self.inner.sign_jws(&input)?;
        Ok(PyBytes::new(py, &signature))
    }

    /// A SMART Backend Services client assertion signed by this identity: a compact JWS,
    /// `EdDSA`, with `iss` = `sub` = `client_id`, `aud` = `audience` (the node's token
    /// endpoint URL), `iat` = `now` (seconds since the Unix epoch), `exp` 60 s later, a random
    /// `jti`, and `kid` in the header when given (`medchain_core::jwt::ClientAssertion`, the
    /// builder the node and the wallet use). Raises `InvalidArgument` for an empty client id,
    /// an audience that is not an `http(s)://` URL, or a `now` past the year 9999 (milliseconds
    /// given as seconds).
    #[pyo3(signature = (client_id, audience, now, kid=None))]
    fn client_assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: u64,
        kid: Option<&str>,
    ) -> Result<String> {
        medchain_core::jwt::ClientAssertion::check_arguments(client_id, audience, now)
            .map_err(|e| Error::new(Kind::InvalidArgument, e.to_string()))?;
        let mut assertion = medchain_core::jwt::ClientAssertion::new(
            client_id,
            audience,
            now,
            &mut UnwrapErr(SysRng),
        );
        if let Some(kid) = kid {
            assertion = assertion.with_kid(kid);
        }
        Ok(assertion.sign_eddsa(&self.inner)?)
    }

    fn __repr__(&self) -> String {
        format!("Identity(public_text='{}')", self.inner.public().to_text())
    }
}

/// The public half of an identity: what a record is sealed for and what consents name.
#[pyclass(frozen, eq, hash, module = "medchain._medchain")]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PublicIdentity {
    pub(crate) inner: CorePublic,
}

#[pymethods]
impl PublicIdentity {
    /// Parses a printable identity (`mcid1…`). Raises `DecodeError` if it is not one.
    #[staticmethod]
    fn from_text(text: &Bound<'_, PyAny>) -> Result<Self> {
        let s: String = text
            .extract()
            .map_err(|_| wrong_type(text, "text", "a str"))?;
        Ok(Self {
            inner: CorePublic::from_text(s.trim())?,
        })
    }

    /// The printable form (`mcid1…`).
    #[getter]
    fn text(&self) -> String {
        self.inner.to_text()
    }

    /// The short party id (hex).
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The 32 bytes of the ed25519 signing (verification) key: a JWK's `x` (`OKP`, `Ed25519`).
    #[getter]
    fn verify_key_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.inner.sign.as_byte_array())
    }

    /// The signing key's 64 hex digits: what names a patient on a node's FHIR API
    /// (`Patient/{key}`) and a party in a consent (`urn:medchain:key`).
    #[getter]
    fn verify_key_hex(&self) -> String {
        hex::encode(self.inner.sign.as_byte_array())
    }

    fn __str__(&self) -> String {
        self.inner.to_text()
    }

    fn __repr__(&self) -> String {
        format!("PublicIdentity('{}')", self.inner.to_text())
    }
}

/// A public identity from an `Identity`, a `PublicIdentity` or its text.
pub fn public_arg(obj: &Bound<'_, PyAny>, what: &str) -> Result<CorePublic> {
    if let Ok(p) = obj.cast::<PublicIdentity>() {
        return Ok(p.get().inner);
    }
    if let Ok(i) = obj.cast::<Identity>() {
        return Ok(i.get().inner.public());
    }
    if let Ok(s) = obj.extract::<String>() {
        return Ok(CorePublic::from_text(s.trim())?);
    }
    Err(wrong_type(
        obj,
        what,
        "an Identity, a PublicIdentity or an identity text",
    ))
}

/// A chain id argument: 64 hex digits.
pub fn chain_arg(obj: &Bound<'_, PyAny>) -> Result<ChainId> {
    let s: String = obj
        .extract()
        .map_err(|_| wrong_type(obj, "chain_id", "a str of 64 hex digits"))?;
    s.trim()
        .parse()
        .map_err(|e| Error::new(Kind::Decode, format!("chain_id: {e}")))
}

/// An `Identity` argument.
pub fn identity_arg<'a, 'py>(
    obj: &'a Bound<'py, PyAny>,
    what: &str,
) -> Result<&'a Bound<'py, Identity>> {
    obj.cast::<Identity>()
        .map_err(|_| wrong_type(obj, what, "an Identity"))
}

/// The network-shared key: opens what every node may read (transaction bodies, the store's
/// state). Usually loaded from the operator's passphrase-protected key file.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct NetworkKey {
    pub(crate) inner: CoreNetworkKey,
}

impl NetworkKey {
    /// A second handle on the same key (wrapped for and unwrapped by a throw-away identity).
    pub(crate) fn duplicate(key: &CoreNetworkKey) -> Result<CoreNetworkKey> {
        let tmp = CoreIdentity::generate(&mut UnwrapErr(SysRng));
        let envelope = key.wrap_for(&tmp.public(), &mut UnwrapErr(SysRng))?;
        Ok(CoreNetworkKey::unwrap_from(&envelope, &tmp)?)
    }
}

#[pymethods]
impl NetworkKey {
    /// A new random network key (for a new network or a test).
    #[staticmethod]
    fn generate() -> Self {
        Self {
            inner: CoreNetworkKey::generate(&mut UnwrapErr(SysRng)),
        }
    }

    /// Opens a protected key file's bytes. Raises `WrongPassword` for a wrong passphrase.
    #[staticmethod]
    fn import_protected(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        passphrase: &Bound<'_, PyAny>,
    ) -> Result<Self> {
        let data = bytes_arg(data, "data")?;
        let passphrase = secret_arg(passphrase, "passphrase")?;
        let inner = py.detach(|| CoreNetworkKey::import_protected(&data, &passphrase))?;
        Ok(Self { inner })
    }

    /// The key under `passphrase` (Argon2id + AES-256-GCM), as a key file's bytes.
    #[pyo3(signature = (passphrase, *, fast = false))]
    fn export_protected<'py>(
        &self,
        py: Python<'py>,
        passphrase: &Bound<'py, PyAny>,
        fast: bool,
    ) -> Result<Bound<'py, PyBytes>> {
        let passphrase = secret_arg(passphrase, "passphrase")?;
        if passphrase.is_empty() {
            return Err(Error::new(Kind::InvalidArgument, "the passphrase is empty"));
        }
        let bytes = py.detach(|| {
            self.inner
                .export_protected(&passphrase, params(fast), &mut UnwrapErr(SysRng))
        })?;
        Ok(PyBytes::new(py, &bytes))
    }

    /// The key's fingerprint (hex), as genesis names it.
    #[getter]
    fn fingerprint(&self) -> String {
        hex::encode(self.inner.fingerprint())
    }

    fn __repr__(&self) -> String {
        let f = self.fingerprint();
        format!("NetworkKey(fingerprint='{}…')", &f[..16.min(f.len())])
    }
}

/// A secure-index key: the patient's master key, or its key for one writer (institution).
/// Trapdoors made with it find the records that writer indexed, without revealing the keyword.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct IndexKey {
    pub(crate) inner: CoreIndexKey,
    pub(crate) writer: bool,
}

#[pymethods]
impl IndexKey {
    /// The patient's master index key (derived from the patient's identity).
    #[staticmethod]
    fn for_patient(patient: &Bound<'_, PyAny>) -> Result<Self> {
        let patient = identity_arg(patient, "patient")?;
        Ok(Self {
            inner: CoreIndexKey::for_patient(&patient.get().inner),
            writer: false,
        })
    }

    /// The key for the entries `writer` (an institution) wrote for this patient.
    fn for_writer(&self, writer: &Bound<'_, PyAny>) -> Result<Self> {
        if self.writer {
            return Err(Error::new(
                Kind::InvalidArgument,
                "this is already a writer key; derive writer keys from the patient's key",
            ));
        }
        let writer = public_arg(writer, "writer")?;
        Ok(Self {
            inner: self.inner.for_writer(&writer.id()),
            writer: true,
        })
    }

    /// Enrolment, the patient's side: the patient's index key for `writer` (an institution),
    /// sealed to the writer's public identity on the network `chain_id` (hex, `Ledger.chain_id`)
    /// and signed by the patient. Give the bytes to the writer (`import_writer_key`).
    #[staticmethod]
    fn export_writer_key<'py>(
        py: Python<'py>,
        patient: &Bound<'py, PyAny>,
        writer: &Bound<'py, PyAny>,
        chain_id: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyBytes>> {
        let patient = identity_arg(patient, "patient")?;
        let writer = public_arg(writer, "writer")?;
        let chain = chain_arg(chain_id)?;
        let sealed = SealedWriterKey::export(
            &patient.get().inner,
            &chain,
            &writer,
            &mut UnwrapErr(SysRng),
        )?;
        Ok(PyBytes::new(py, &sealed.to_bytes()))
    }

    /// Enrolment, the writer's side: checks that `data` (from `export_writer_key`) was sealed
    /// on `chain_id` to `writer` (this institution's `Identity`) by `patient` (their
    /// signature), and opens it: the writer key that indexes and finds this patient's records
    /// written by `writer`, without the patient's identity.
    #[staticmethod]
    fn import_writer_key(
        data: &Bound<'_, PyAny>,
        writer: &Bound<'_, PyAny>,
        patient: &Bound<'_, PyAny>,
        chain_id: &Bound<'_, PyAny>,
    ) -> Result<Self> {
        let data = bytes_arg(data, "data")?;
        let writer = identity_arg(writer, "writer")?;
        let patient = public_arg(patient, "patient")?;
        let chain = chain_arg(chain_id)?;
        let sealed = SealedWriterKey::from_bytes(&data)?;
        Ok(Self {
            inner: sealed.import(&writer.get().inner, &chain, &patient)?,
            writer: true,
        })
    }

    /// Whether this is a writer key (searches need one).
    #[getter]
    fn is_writer_key(&self) -> bool {
        self.writer
    }

    fn __repr__(&self) -> String {
        format!(
            "IndexKey({})",
            if self.writer { "writer" } else { "patient" }
        )
    }
}
