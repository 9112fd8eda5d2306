//! Consents: FHIR Consent import and export, ledger consent states, evaluation.

use medchain_core::consent::ConsentId as CoreConsentId;
use medchain_core::consent::{
    consent_from_fhir, consent_to_fhir, evaluate as core_evaluate, AccessRequest, Action,
    Consent as CoreConsent, ConsentState as CoreState, Decision as CoreDecision, Purpose,
    RecordDate, RecordFacts,
};
use medchain_core::credential::Role;
use medchain_core::encoding::Encode;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::convert::{json_arg, u64_arg, value_to_py, wrong_type};
use crate::errors::{Error, Kind, Result};
use crate::keys::{chain_arg, identity_arg, public_arg, PublicIdentity};

/// A patient's consent: the executable contract (FHIR R4 Consent compatible).
#[pyclass(frozen, module = "medchain._medchain")]
#[derive(Clone)]
pub struct Consent {
    pub(crate) inner: CoreConsent,
}

#[pymethods]
impl Consent {
    /// Builds a consent from a FHIR R4 Consent resource (a dict or JSON text). Raises
    /// `InvalidConsent` if it is not an active Consent medchain can enforce, `NotFhir` if it
    /// is not JSON.
    #[staticmethod]
    fn from_fhir(resource: &Bound<'_, PyAny>) -> Result<Self> {
        let value = json_arg(resource, "resource")?;
        let inner = consent_from_fhir(&value)?;
        inner.check()?;
        Ok(Self { inner })
    }

    /// The consent as a FHIR R4 Consent resource (a dict).
    fn to_fhir(&self, py: Python<'_>) -> Result<Py<PyAny>> {
        value_to_py(py, &consent_to_fhir(&self.inner))
    }

    /// The consent id (hex): the hash of its canonical document.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_string()
    }

    /// The patient.
    #[getter]
    fn patient(&self) -> PublicIdentity {
        PublicIdentity {
            inner: self.inner.patient,
        }
    }

    /// The patient's own words.
    #[getter]
    fn summary(&self) -> String {
        self.inner.summary.clone()
    }

    /// When it was issued (ms since the epoch).
    #[getter]
    fn issued_ms(&self) -> u64 {
        self.inner.issued_ms
    }

    /// How many top-level provisions it has.
    #[getter]
    fn provision_count(&self) -> usize {
        self.inner.provisions.len()
    }

    /// The patient-signed `ConsentGranted` body (its canonical bytes), what a wallet produces
    /// and a node's `POST /fhir/Consent` takes: the consent blinded under `patient`'s consent
    /// tag key and signed by `patient` for the network `chain_id` (64 hex digits). Raises
    /// `InvalidSignature` if `patient` is not the consent's patient, `InvalidConsent` if it is
    /// unusable.
    fn grant_body<'py>(
        &self,
        py: Python<'py>,
        patient: &Bound<'py, PyAny>,
        chain_id: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyBytes>> {
        let patient = identity_arg(patient, "patient")?;
        let chain = chain_arg(chain_id)?;
        let body = self.inner.grant_body(&patient.get().inner, &chain)?;
        Ok(PyBytes::new(py, &body.to_bytes()))
    }

    /// The id (hex) the consent gets on chain once `grant_body` blinded it for `patient` (the
    /// id a node answers in `Location: Consent/{id}`).
    fn granted_id(&self, patient: &Bound<'_, PyAny>) -> Result<String> {
        let patient = identity_arg(patient, "patient")?;
        Ok(self.inner.granted_id(&patient.get().inner).to_string())
    }

    /// The patient-signed `ConsentRevoked` body (its canonical bytes) for the consent
    /// `consent_id` (hex), signed by `patient` for the network `chain_id`: what a node's
    /// `POST /fhir/Consent/{id}/$revoke` takes.
    #[staticmethod]
    fn revoke_body<'py>(
        py: Python<'py>,
        patient: &Bound<'py, PyAny>,
        chain_id: &Bound<'py, PyAny>,
        consent_id: &Bound<'py, PyAny>,
    ) -> Result<Bound<'py, PyBytes>> {
        let patient = identity_arg(patient, "patient")?;
        let chain = chain_arg(chain_id)?;
        let id: String = consent_id
            .extract()
            .map_err(|_| wrong_type(consent_id, "consent_id", "a str of 64 hex digits"))?;
        let id: CoreConsentId = id
            .trim()
            .parse()
            .map_err(|e| Error::new(Kind::Decode, format!("consent_id: {e}")))?;
        let body = CoreConsent::revoke_body(&patient.get().inner, &chain, &id);
        Ok(PyBytes::new(py, &body.to_bytes()))
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Consent>()
            .is_ok_and(|o| o.get().inner.id() == self.inner.id())
    }

    fn __hash__(&self) -> u64 {
        let b = self.inner.id().to_byte_array();
        u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
    }

    fn __repr__(&self) -> String {
        format!(
            "Consent(id='{}…', summary={:?})",
            &self.inner.id().to_string()[..12],
            self.inner.summary
        )
    }
}

/// A consent as the ledger holds it: granted, and perhaps revoked at some height.
#[pyclass(frozen, module = "medchain._medchain")]
#[derive(Clone)]
pub struct ConsentState {
    pub(crate) inner: CoreState,
}

#[pymethods]
impl ConsentState {
    /// The consent.
    #[getter]
    fn consent(&self) -> Consent {
        Consent {
            inner: self.inner.consent.clone(),
        }
    }

    /// The consent id (hex).
    #[getter]
    fn id(&self) -> String {
        self.inner.id.to_string()
    }

    /// The block height of the revocation, or None while it stands.
    #[getter]
    fn revoked_at(&self) -> Option<u64> {
        self.inner.revoked_at
    }

    /// Whether it has not been revoked.
    #[getter]
    fn active(&self) -> bool {
        self.inner.revoked_at.is_none()
    }

    fn __repr__(&self) -> String {
        format!(
            "ConsentState(id='{}…', revoked_at={:?})",
            &self.inner.id.to_string()[..12],
            self.inner.revoked_at
        )
    }
}

/// The outcome of a consent evaluation.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct Decision {
    pub(crate) inner: CoreDecision,
}

#[pymethods]
impl Decision {
    /// Whether access is permitted (emergency permits included).
    #[getter]
    fn permitted(&self) -> bool {
        self.inner.is_permit()
    }

    /// `"permit"`, `"emergency"` or `"deny"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.inner {
            CoreDecision::Permit(_) => "permit",
            CoreDecision::EmergencyPermit => "emergency",
            CoreDecision::Deny(_) => "deny",
        }
    }

    /// Why: the permitting provision or the denial reason.
    #[getter]
    fn reason(&self) -> String {
        match &self.inner {
            CoreDecision::Permit(p) => format!("permitted by {p}"),
            CoreDecision::EmergencyPermit => "emergency access (always logged)".into(),
            CoreDecision::Deny(r) => r.to_string(),
        }
    }

    /// The id (hex) of the consent that permits, if any.
    #[getter]
    fn consent_id(&self) -> Option<String> {
        match &self.inner {
            CoreDecision::Permit(p) => Some(p.consent.to_string()),
            _ => None,
        }
    }

    /// Raises `ConsentDenied` (with the reason) unless permitted.
    fn raise_if_denied(&self) -> Result<()> {
        match &self.inner {
            CoreDecision::Deny(r) => Err(Error::new(
                Kind::ConsentDenied,
                format!("access denied: {r}"),
            )),
            _ => Ok(()),
        }
    }

    fn __bool__(&self) -> bool {
        self.inner.is_permit()
    }

    fn __repr__(&self) -> String {
        format!("Decision({}: {})", self.kind(), self.reason())
    }
}

/// Parses an action name.
pub fn parse_action(action: &str) -> Result<Action> {
    Ok(match action.to_ascii_lowercase().as_str() {
        "read" => Action::Read,
        "search" => Action::Search,
        "research" | "research_use" | "researchuse" => Action::ResearchUse,
        other => {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("unknown action {other:?} (read, search, research)"),
            ))
        }
    })
}

/// Parses a role (`"researcher"`, `"clinician"`) of an institution.
pub fn parse_role(role: &str, institution: medchain_core::keys::VerifyKey) -> Result<Role> {
    Ok(match role.to_ascii_lowercase().as_str() {
        "researcher" => Role::Researcher { institution },
        "clinician" => Role::Clinician { institution },
        other => {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!("unknown role {other:?} (researcher, clinician)"),
            ))
        }
    })
}

/// Consent states from a list of `ConsentState` or `Consent` objects (a bare consent counts as
/// granted and never revoked).
pub fn consents_arg(obj: &Bound<'_, PyAny>) -> Result<Vec<CoreState>> {
    if !obj.is_instance_of::<PyList>() && !obj.is_instance_of::<pyo3::types::PyTuple>() {
        return Err(wrong_type(
            obj,
            "consents",
            "a list of Consent or ConsentState",
        ));
    }
    let mut out = Vec::new();
    for item in obj.try_iter()? {
        let item = item?;
        if let Ok(s) = item.cast::<ConsentState>() {
            out.push(s.get().inner.clone());
        } else if let Ok(c) = item.cast::<Consent>() {
            out.push(CoreState::new(c.get().inner.clone()));
        } else {
            return Err(wrong_type(
                &item,
                "a consent",
                "a Consent or a ConsentState",
            ));
        }
    }
    Ok(out)
}

/// Evaluates a request against a patient's consents (deny overrides permit).
///
/// `purpose` is an HL7 PurposeOfUse code (`TREAT`, `ETREAT`, `HRESCH`, `PATRQT`); `topic`
/// narrows research. `role` and `institution` state the requester's attested role.
#[pyfunction]
#[pyo3(signature = (consents, requester, *, action = "read", purpose = "TREAT", topic = None,
    role = None, institution = None, resource_type = "Observation", codes = None, date_ms = None,
    emergency = false, now_ms = None, height = None))]
#[allow(clippy::too_many_arguments)]
pub fn evaluate(
    consents: &Bound<'_, PyAny>,
    requester: &Bound<'_, PyAny>,
    action: &str,
    purpose: &str,
    topic: Option<String>,
    role: Option<&str>,
    institution: Option<&Bound<'_, PyAny>>,
    resource_type: &str,
    codes: Option<Vec<(String, String)>>,
    date_ms: Option<&Bound<'_, PyAny>>,
    emergency: bool,
    now_ms: Option<&Bound<'_, PyAny>>,
    height: Option<&Bound<'_, PyAny>>,
) -> Result<Decision> {
    let states = consents_arg(consents)?;
    let requester = public_arg(requester, "requester")?;
    let roles = match role {
        None => Vec::new(),
        Some(r) => {
            let inst = match institution {
                Some(i) => public_arg(i, "institution")?.sign,
                None => {
                    return Err(Error::new(
                        Kind::InvalidArgument,
                        "a role needs the institution that attests it",
                    ))
                }
            };
            vec![parse_role(r, inst)?]
        }
    };
    let date_ms = date_ms.map(|d| u64_arg(d, "date_ms")).transpose()?;
    let now = now_ms
        .map(|d| u64_arg(d, "now_ms"))
        .transpose()?
        .unwrap_or_else(crate::convert::now_ms);
    let height = height
        .map(|d| u64_arg(d, "height"))
        .transpose()?
        .unwrap_or(u64::MAX);
    let req = AccessRequest {
        requester: requester.sign,
        roles,
        action: parse_action(action)?,
        purpose: Purpose::from_code(purpose, topic),
        record: RecordFacts {
            resource_type: resource_type.to_owned(),
            codes,
            code_tags: None,
            date: RecordDate::exact(date_ms),
        },
        emergency,
    };
    Ok(Decision {
        inner: core_evaluate(&req, &states, now, height),
    })
}
