//! Sealed FHIR records.

use getrandom::SysRng;
use medchain_core::genesis::FhirProfile;
use medchain_core::seal::{KeyEnvelope, SealedRecord as CoreSealed};
use medchain_fhir::{seal_validated, seal_validated_as, Options};
use pyo3::prelude::*;
use rand_core::UnwrapErr;

use crate::convert::{json_arg, value_to_py, wrong_type};
use crate::errors::{Error, Kind, Result};
use crate::keys::{identity_arg, public_arg, Identity, PublicIdentity};

/// A FHIR resource sealed (AES-256-GCM under a fresh key) for its patient and readers.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct SealedRecord {
    pub(crate) inner: CoreSealed,
}

#[pymethods]
impl SealedRecord {
    /// The record id (hex).
    #[getter]
    fn record_id(&self) -> String {
        self.inner.record_id().to_string()
    }

    /// The patient the record belongs to.
    #[getter]
    fn patient(&self) -> PublicIdentity {
        PublicIdentity {
            inner: *self.inner.patient(),
        }
    }

    /// How many readers hold a key envelope (the patient included).
    #[getter]
    fn reader_count(&self) -> usize {
        self.inner.envelopes().len()
    }

    /// `True` when the writer holds a self envelope (sealed with `seal(..., writer=...)`).
    #[getter]
    fn has_writer_envelope(&self) -> bool {
        self.inner.envelopes().iter().any(KeyEnvelope::is_self)
    }

    /// Decrypts the record with `identity` (the patient or a reader) and returns the FHIR
    /// resource as a dict. Raises `NotAReader` if `identity` has no envelope, `DecodeError`
    /// if the ciphertext was altered.
    fn open(&self, py: Python<'_>, identity: &Bound<'_, PyAny>) -> Result<Py<PyAny>> {
        let identity = identity_arg(identity, "identity")?;
        let id = identity.get();
        let value = py.detach(|| -> Result<serde_json::Value> {
            let opened = self.inner.open(&id.inner)?;
            serde_json::from_slice(opened.payload())
                .map_err(|e| Error::new(Kind::NotFhir, format!("the payload is not JSON: {e}")))
        })?;
        value_to_py(py, &value)
    }

    fn __repr__(&self) -> String {
        format!(
            "SealedRecord(record_id='{}', readers={})",
            self.inner.record_id(),
            self.inner.envelopes().len()
        )
    }
}

/// Validation options from the Python arguments (`profile`: `"r4"` or `"us-core"`).
pub(crate) fn fhir_options(profile: &str, lenient: bool) -> Result<Options> {
    let profile = FhirProfile::from_name(profile).ok_or_else(|| {
        Error::new(
            Kind::InvalidArgument,
            "profile must be \"r4\" or \"us-core\"",
        )
    })?;
    let options = Options::new(profile);
    Ok(if lenient {
        options.lenient_for_migration()
    } else {
        options
    })
}

/// Validates a FHIR R4 resource (a dict or JSON text) against `profile` and, if it is valid,
/// seals it for `patient` and the extra `readers` (usually the contributing institution).
/// Raises `NotFhir` for anything that is not a FHIR R4 resource, its subclass `InvalidFhir`
/// (with the problems as an OperationOutcome) for an invalid one: nothing is sealed then.
/// `lenient=True` (for migrating old data only) turns validation errors into warnings.
///
/// `writer` (an `Identity`: the institution writing the record) gets a self envelope: it can
/// open the record later with its own secret alone (about 7 µs instead of an X25519 exchange,
/// ~60 µs), which is how a node seals what it writes (docs/crypto.md §7). The writer need not
/// be in `readers`; if it is, it still holds one envelope. Without `writer` every reader's
/// envelope is an ordinary X25519 one.
#[pyfunction]
#[pyo3(signature = (fhir, patient, readers = None, *, profile = "r4", lenient = false, writer = None))]
pub fn seal(
    fhir: &Bound<'_, PyAny>,
    patient: &Bound<'_, PyAny>,
    readers: Option<&Bound<'_, PyAny>>,
    profile: &str,
    lenient: bool,
    writer: Option<&Bound<'_, PyAny>>,
) -> Result<SealedRecord> {
    let options = fhir_options(profile, lenient)?;
    let writer: Option<&Bound<'_, Identity>> = match writer {
        Some(w) if !w.is_none() => Some(identity_arg(w, "writer")?),
        _ => None,
    };
    let value = json_arg(fhir, "fhir")?;
    let patient = public_arg(patient, "patient")?;
    let mut list = Vec::new();
    if let Some(readers) = readers {
        if readers.is_instance_of::<pyo3::types::PyString>() {
            return Err(wrong_type(readers, "readers", "a list of identities"));
        }
        let iter = readers
            .try_iter()
            .map_err(|_| wrong_type(readers, "readers", "a list of identities"))?;
        for r in iter {
            list.push(public_arg(&r?, "a reader")?);
        }
    }
    let bytes = serde_json::to_vec(&value)
        .map_err(|e| Error::new(Kind::NotFhir, format!("fhir cannot be encoded: {e}")))?;
    let mut rng = UnwrapErr(SysRng);
    let sealed = match writer {
        Some(w) => seal_validated_as(&w.get().inner, &bytes, &options, &patient, &list, &mut rng)?,
        None => seal_validated(&bytes, &options, &patient, &list, &mut rng)?,
    };
    Ok(SealedRecord {
        inner: sealed.record,
    })
}
