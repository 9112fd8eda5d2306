//! Research credentials and requests: what a researcher presents to a releasing institution.
//! The release itself is `medchain_store::Ledger::research_release` (`ledger.rs`), the one
//! implementation of the research policy.

use medchain_core::consent::DataClass;
use medchain_core::credential::{Credential as CoreCredential, Role};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::research::{ResearchRequest as CoreRequest, Study};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::convert::{bytes_arg, u64_arg, wrong_type};
use crate::errors::{Error, Kind, Result};
use crate::keys::{chain_arg, identity_arg, public_arg, PublicIdentity};
use crate::ledger::vk_hex;

/// A member institution's signed statement that a party holds a role (researcher or
/// clinician) until an expiry, on one network.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct Credential {
    pub(crate) inner: CoreCredential,
}

#[pymethods]
impl Credential {
    /// The institution (an `Identity`: its node's key) attests that `holder` has `role`
    /// (`"researcher"` or `"clinician"`) of the institution on the network `chain_id` until
    /// `expires_ms`.
    #[staticmethod]
    #[pyo3(signature = (institution, holder, *, chain_id, expires_ms, role = "researcher"))]
    fn issue(
        institution: &Bound<'_, PyAny>,
        holder: &Bound<'_, PyAny>,
        chain_id: &Bound<'_, PyAny>,
        expires_ms: &Bound<'_, PyAny>,
        role: &str,
    ) -> Result<Self> {
        let institution = identity_arg(institution, "institution")?;
        let holder = public_arg(holder, "holder")?;
        let chain = chain_arg(chain_id)?;
        let expires = u64_arg(expires_ms, "expires_ms")?;
        let key = institution.get().inner.verify_key();
        let role = match role {
            "researcher" => Role::Researcher { institution: key },
            "clinician" => Role::Clinician { institution: key },
            other => {
                return Err(Error::new(
                    Kind::InvalidArgument,
                    format!("role must be \"researcher\" or \"clinician\", not {other:?}"),
                ))
            }
        };
        Ok(Self {
            inner: CoreCredential::issue(
                &institution.get().inner,
                &chain,
                holder.sign,
                role,
                expires,
            ),
        })
    }

    /// A credential from its canonical bytes. Raises `DecodeError`.
    #[staticmethod]
    fn from_bytes(data: &Bound<'_, PyAny>) -> Result<Self> {
        Ok(Self {
            inner: CoreCredential::from_bytes(&bytes_arg(data, "data")?)?,
        })
    }

    /// The canonical bytes.
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// The holder's signing key (hex).
    #[getter]
    fn holder(&self) -> String {
        vk_hex(&self.inner.holder)
    }

    /// `"researcher"` or `"clinician"`.
    #[getter]
    fn role(&self) -> &'static str {
        if self.inner.role.is_researcher() {
            "researcher"
        } else {
            "clinician"
        }
    }

    /// The attesting institution's signing key (hex).
    #[getter]
    fn institution(&self) -> String {
        vk_hex(self.inner.role.institution())
    }

    /// When it expires (milliseconds since the Unix epoch).
    #[getter]
    fn expires_ms(&self) -> u64 {
        self.inner.expires_ms
    }

    fn __repr__(&self) -> String {
        format!(
            "Credential(role='{}', holder='{}…')",
            self.role(),
            &self.holder()[..12]
        )
    }
}

fn class_args(resource_types: Vec<String>, codes: Vec<(String, String)>) -> Result<Vec<DataClass>> {
    let mut classes: Vec<DataClass> = resource_types
        .into_iter()
        .map(DataClass::ResourceType)
        .collect();
    classes.extend(
        codes
            .into_iter()
            .map(|(system, code)| DataClass::Code { system, code }),
    );
    if classes.is_empty() {
        return Err(Error::new(
            Kind::InvalidArgument,
            "a study names the data it needs: resource_types=[...] and/or codes=[(system, code)]",
        ));
    }
    Ok(classes)
}

/// A researcher's signed request for a study's data: the study (id, purpose, topic, the
/// resource types and codes it needs, whether it is longitudinal), the researcher and their
/// credential, signed by the researcher for one network. The releasing institution passes it
/// to `Ledger.research_release`.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct ResearchRequest {
    pub(crate) inner: CoreRequest,
}

#[pymethods]
impl ResearchRequest {
    /// Signs a request as `researcher` (an `Identity`) with `credential`.
    #[staticmethod]
    #[pyo3(signature = (researcher, credential, *, chain_id, study, topic, resource_types = Vec::new(), codes = Vec::new(), purpose = "HRESCH", longitudinal = false))]
    #[allow(clippy::too_many_arguments)]
    fn sign(
        researcher: &Bound<'_, PyAny>,
        credential: &Bound<'_, PyAny>,
        chain_id: &Bound<'_, PyAny>,
        study: &str,
        topic: Option<String>,
        resource_types: Vec<String>,
        codes: Vec<(String, String)>,
        purpose: &str,
        longitudinal: bool,
    ) -> Result<Self> {
        let researcher = identity_arg(researcher, "researcher")?;
        let credential = credential
            .cast::<Credential>()
            .map_err(|_| wrong_type(credential, "credential", "a Credential"))?;
        let chain = chain_arg(chain_id)?;
        let study = Study {
            id: study.to_owned(),
            purpose: purpose.to_owned(),
            topic,
            classes: class_args(resource_types, codes)?,
            longitudinal,
        };
        let inner = CoreRequest::sign(
            &researcher.get().inner,
            &chain,
            study,
            credential.get().inner.clone(),
        )
        .map_err(|e| Error::new(Kind::InvalidArgument, e.to_string()))?;
        Ok(Self { inner })
    }

    /// A request from its canonical bytes. Raises `DecodeError`.
    #[staticmethod]
    fn from_bytes(data: &Bound<'_, PyAny>) -> Result<Self> {
        Ok(Self {
            inner: CoreRequest::from_bytes(&bytes_arg(data, "data")?)?,
        })
    }

    /// The canonical bytes (what the researcher sends to the releasing institution).
    fn to_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.inner.to_bytes())
    }

    /// The study id.
    #[getter]
    fn study(&self) -> String {
        self.inner.study.id.clone()
    }

    /// The research purpose (an HL7 v3 PurposeOfUse code of the research hierarchy).
    #[getter]
    fn purpose(&self) -> String {
        self.inner.study.purpose.clone()
    }

    /// The research topic.
    #[getter]
    fn topic(&self) -> Option<String> {
        self.inner.study.topic.clone()
    }

    /// Whether pseudonyms stay stable across the study's releases.
    #[getter]
    fn longitudinal(&self) -> bool {
        self.inner.study.longitudinal
    }

    /// The researcher.
    #[getter]
    fn researcher(&self) -> PublicIdentity {
        PublicIdentity {
            inner: self.inner.researcher,
        }
    }

    fn __repr__(&self) -> String {
        format!("ResearchRequest(study='{}')", self.inner.study.id)
    }
}
