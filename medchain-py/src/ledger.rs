//! The ledger: open, blocks, records, consents, audit, verification, search, research releases.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use medchain_core::block::Block;
use medchain_core::consent::Consent as CoreConsent;
use medchain_core::encoding::Encode;
use medchain_core::hash::RecordId;
use medchain_core::index::Keyword;
use medchain_core::keys::VerifyKey;
use medchain_core::ledger::{AuditEntry, RecordEntry};
use medchain_core::seal::NetworkKey as CoreNetworkKey;
use medchain_core::tx::TxBody;
use medchain_store::Ledger as CoreLedger;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::consent::ConsentState;
use crate::convert::{float_or_none, u64_arg, value_to_py, wrong_type};
use crate::dataset::Columns;
use crate::errors::{guard, Error, Kind, Result};
use crate::keys::{identity_arg, public_arg, IndexKey, NetworkKey};
use crate::records::SealedRecord;
use crate::research::ResearchRequest;

/// Hex of a verify key.
pub fn vk_hex(k: &VerifyKey) -> String {
    hex::encode(k.to_byte_array())
}

/// The native ledger handle. The Python class `medchain.Ledger` wraps it.
/// What a search did, as Python receives it: (indexed blocks, blocks skipped by their filters,
/// blocks searched exhaustively, PRF evaluations).
type SearchCounts = (u64, u64, u64, u64);

#[pyclass(frozen, module = "medchain._medchain")]
pub struct NativeLedger {
    inner: Mutex<CoreLedger>,
    network: CoreNetworkKey,
    location: String,
}

impl NativeLedger {
    fn lock(&self) -> Result<MutexGuard<'_, CoreLedger>> {
        self.inner.lock().map_err(|_| {
            Error::new(
                Kind::Store,
                "the ledger handle is unusable after an earlier failure",
            )
        })
    }
}

fn record_id_arg(s: &str) -> Result<RecordId> {
    s.trim().parse::<RecordId>().map_err(|_| {
        Error::new(
            Kind::Decode,
            "a record id is 64 hexadecimal characters".to_owned(),
        )
    })
}

fn entry_dict<'py>(py: Python<'py>, e: &RecordEntry) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("record_id", e.record_id.to_string())?;
    d.set_item("patient", e.patient.to_text())?;
    d.set_item("resource_type", &e.class.resource_type)?;
    d.set_item("year", e.class.year)?;
    d.set_item("contributor", vk_hex(&e.contributor))?;
    d.set_item("tx_id", e.tx_id.to_string())?;
    d.set_item("height", e.height)?;
    d.set_item("erased", e.erased)?;
    Ok(d)
}

fn audit_dict<'py>(py: Python<'py>, a: &AuditEntry) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("kind", format!("{:?}", a.kind))?;
    d.set_item("record_id", a.record_id.to_string())?;
    d.set_item("patient", vk_hex(&a.patient))?;
    d.set_item("actor", a.actor.to_text())?;
    d.set_item("purpose", &a.purpose)?;
    d.set_item("consent_id", a.consent_id.map(|c| c.to_string()))?;
    d.set_item("emergency", a.emergency)?;
    d.set_item("at_ms", a.at_ms)?;
    d.set_item("claimed_at_ms", a.claimed_at_ms)?;
    d.set_item("node", vk_hex(&a.node))?;
    d.set_item("tx_id", a.tx_id.to_string())?;
    d.set_item("height", a.height)?;
    d.set_item("denied_by", a.denied_by.as_deref())?;
    d.set_item("relayed_by", a.relayed_by.as_ref().map(vk_hex))?;
    Ok(d)
}

fn body_dict<'py>(
    py: Python<'py>,
    body: &TxBody,
    chain: &medchain_core::hash::ChainId,
) -> Result<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match body {
        TxBody::RecordAdded {
            record_id,
            patient,
            class,
            sealed,
            ..
        } => {
            d.set_item("record_id", record_id.to_string())?;
            d.set_item("patient", patient.to_text())?;
            d.set_item("resource_type", &class.resource_type)?;
            d.set_item("year", class.year)?;
            d.set_item("erased", sealed.is_none())?;
        }
        TxBody::ConsentGranted { document, patient } => {
            d.set_item("patient", patient.patient.to_text())?;
            if let Ok(c) = CoreConsent::from_grant(chain, document, patient) {
                d.set_item("consent_id", c.id().to_string())?;
                d.set_item("summary", c.summary)?;
            }
        }
        TxBody::ConsentRevoked {
            consent_id,
            patient,
        } => {
            d.set_item("consent_id", hex::encode(consent_id))?;
            d.set_item("patient", patient.patient.to_text())?;
        }
        TxBody::KeyShared {
            record_id,
            grantee,
            purpose,
            ..
        } => {
            d.set_item("record_id", record_id.to_string())?;
            d.set_item("grantee", grantee.to_text())?;
            d.set_item("purpose", purpose)?;
        }
        TxBody::AccessLogged {
            record_id,
            accessor,
            purpose,
            emergency,
            accessed_at_ms,
            ..
        } => {
            d.set_item("record_id", record_id.to_string())?;
            d.set_item("accessor", accessor.to_text())?;
            d.set_item("purpose", purpose)?;
            d.set_item("emergency", *emergency)?;
            d.set_item("accessed_at_ms", *accessed_at_ms)?;
        }
        TxBody::RecordErased { record_id, .. } => {
            d.set_item("record_id", record_id.to_string())?;
        }
        TxBody::ResearchReleased(log) => {
            let study = &log.request.study;
            d.set_item("study", &study.id)?;
            d.set_item("purpose", &study.purpose)?;
            d.set_item("topic", study.topic.as_deref())?;
            d.set_item("researcher", log.request.researcher.to_text())?;
            d.set_item(
                "institution",
                vk_hex(log.request.credential.role.institution()),
            )?;
            d.set_item("commitment", log.commitment.to_string())?;
            d.set_item("patients", log.patients)?;
            d.set_item("rows", log.rows)?;
            d.set_item("released_at_ms", log.released_at_ms)?;
        }
        TxBody::AccessDenied {
            record_id,
            requester,
            purpose,
            rule,
            requested_at_ms,
            relayed_by,
        } => {
            d.set_item("record_id", record_id.to_string())?;
            d.set_item("requester", requester.to_text())?;
            d.set_item("purpose", purpose)?;
            d.set_item("rule", rule)?;
            d.set_item("requested_at_ms", *requested_at_ms)?;
            d.set_item("relayed_by", vk_hex(relayed_by))?;
        }
        #[allow(unreachable_patterns)]
        _ => {}
    }
    Ok(d)
}

fn block_dict<'py>(py: Python<'py>, b: &Block, network: &CoreNetworkKey) -> Result<Py<PyAny>> {
    let d = PyDict::new(py);
    let h = &b.header;
    d.set_item("height", h.height)?;
    d.set_item("round", h.round)?;
    d.set_item("hash", h.hash().to_string())?;
    d.set_item("prev", h.prev.to_string())?;
    d.set_item("timestamp_ms", h.timestamp_ms)?;
    d.set_item("miner", vk_hex(&h.miner))?;
    d.set_item("contributors", h.contributors.len())?;
    let txs = PyList::empty(py);
    for tx in &b.transactions {
        let t = PyDict::new(py);
        t.set_item("id", tx.id().to_string())?;
        t.set_item("kind", format!("{:?}", tx.kind()))?;
        t.set_item("contributor", vk_hex(tx.contributor()))?;
        t.set_item("timestamp_ms", tx.timestamp_ms())?;
        t.set_item("nonce", tx.nonce())?;
        t.set_item("pruned", tx.is_pruned())?;
        t.set_item("has_index_entry", !tx.index_entry().is_empty())?;
        let body = tx
            .clone()
            .verify()
            .map_err(Error::from)
            .and_then(|v| v.open_body(network).map_err(Error::from));
        match body {
            Ok(body) => t.set_item("body", body_dict(py, &body, &b.header.chain_id())?)?,
            Err(e) if e.kind == Kind::InvalidSignature => {
                return Err(Error::new(
                    Kind::TamperedLedger,
                    format!("block {}: a transaction does not verify", h.height),
                ))
            }
            Err(_) => t.set_item("body", PyDict::new(py))?,
        }
        txs.append(t)?;
    }
    d.set_item("transactions", txs)?;
    Ok(d.into_any().unbind())
}

fn keyword(
    code: Option<(String, String)>,
    resource_type: Option<String>,
    year: Option<u16>,
) -> Result<Vec<Keyword>> {
    let bad =
        |e: medchain_core::index::KeywordError| Error::new(Kind::InvalidArgument, e.to_string());
    let mut out = Vec::new();
    if let Some((system, c)) = code {
        out.push(Keyword::code(&system, &c).map_err(bad)?);
    }
    if let Some(t) = resource_type {
        out.push(Keyword::resource_type(&t).map_err(bad)?);
    }
    if let Some(y) = year {
        out.push(Keyword::year(y).map_err(bad)?);
    }
    if out.is_empty() {
        return Err(Error::new(
            Kind::InvalidArgument,
            "give a keyword: code=(system, code), resource_type= or year=",
        ));
    }
    Ok(out)
}

#[pymethods]
impl NativeLedger {
    /// Opens the ledger at `location` (a SQLite path or a `postgres://` URL) with the network
    /// key; checks that its head verifies.
    #[staticmethod]
    fn open(
        py: Python<'_>,
        location: &Bound<'_, PyAny>,
        network_key: &Bound<'_, PyAny>,
    ) -> Result<Self> {
        let location: String = if let Ok(s) = location.extract::<String>() {
            s
        } else if let Ok(p) = location.extract::<std::path::PathBuf>() {
            p.to_string_lossy().into_owned()
        } else {
            return Err(wrong_type(location, "location", "a path or a URL"));
        };
        let key = network_key
            .cast::<NetworkKey>()
            .map_err(|_| wrong_type(network_key, "network_key", "a NetworkKey"))?;
        let k1 = NetworkKey::duplicate(&key.get().inner)?;
        let k2 = NetworkKey::duplicate(&key.get().inner)?;
        if !location.starts_with("postgres") && !std::path::Path::new(&location).exists() {
            return Err(Error::new(Kind::Store, format!("no ledger at {location}")));
        }
        let loc = location.clone();
        let ledger = py.detach(|| guard(|| Ok(CoreLedger::open(&loc, k1)?)))?;
        Ok(Self {
            inner: Mutex::new(ledger),
            network: k2,
            location,
        })
    }

    /// Where the ledger is.
    #[getter]
    fn location(&self) -> String {
        self.location.clone()
    }

    /// The committed height.
    #[getter]
    fn height(&self) -> Result<u64> {
        Ok(self.lock()?.height())
    }

    /// The chain's name (from genesis).
    #[getter]
    fn chain_name(&self) -> Result<String> {
        Ok(self.lock()?.genesis().chain_name.clone())
    }

    /// The chain id (hex): the genesis hash, which every signature on this network binds.
    #[getter]
    fn chain_id(&self) -> Result<String> {
        Ok(self.lock()?.genesis().chain_id().to_string())
    }

    /// The member institutions: (name, public identity text, validator).
    fn members(&self) -> Result<Vec<(String, String, bool)>> {
        Ok(self
            .lock()?
            .genesis()
            .members
            .iter()
            .map(|m| (m.name.clone(), m.identity.to_text(), m.validator))
            .collect())
    }

    /// The block at `height` as a dict (transactions with their opened bodies).
    fn block(&self, py: Python<'_>, height: &Bound<'_, PyAny>) -> Result<Py<PyAny>> {
        let height = u64_arg(height, "height")?;
        let ledger = self.lock()?;
        if height == 0 || height > ledger.height() {
            return Err(Error::new(
                Kind::InvalidArgument,
                format!(
                    "no block at height {height} (the chain has 1..={})",
                    ledger.height()
                ),
            ));
        }
        let block = guard(|| match ledger.blocks_from(height).next() {
            Some(b) => Ok(b?),
            None => Err(Error::new(
                Kind::Store,
                format!("block {height} is missing"),
            )),
        })?;
        block_dict(py, &block, &self.network)
    }

    /// A record: (entry dict, SealedRecord or None if erased), or None if unknown.
    fn get_record(
        &self,
        py: Python<'_>,
        record_id: &str,
    ) -> Result<Option<(Py<PyAny>, Option<SealedRecord>)>> {
        let id = record_id_arg(record_id)?;
        let ledger = self.lock()?;
        let Some(stored) = guard(|| Ok(ledger.get_record(&id)?))? else {
            return Ok(None);
        };
        Ok(Some((
            entry_dict(py, &stored.entry)?.into_any().unbind(),
            stored.sealed.map(|inner| SealedRecord { inner }),
        )))
    }

    /// A patient's record entries.
    fn records_of(&self, py: Python<'_>, patient: &Bound<'_, PyAny>) -> Result<Vec<Py<PyAny>>> {
        let p = public_arg(patient, "patient")?;
        let entries = guard(|| Ok(self.lock()?.records_of(&p.sign)?))?;
        entries
            .iter()
            .map(|e| Ok(entry_dict(py, e)?.into_any().unbind()))
            .collect()
    }

    /// Every consent the patient granted (revoked ones included).
    fn consents_of(&self, patient: &Bound<'_, PyAny>) -> Result<Vec<ConsentState>> {
        let p = public_arg(patient, "patient")?;
        let states = guard(|| Ok(self.lock()?.consents_of(&p.sign)?))?;
        Ok(states
            .into_iter()
            .map(|inner| ConsentState { inner })
            .collect())
    }

    /// The audit trail of a patient's records (dicts, oldest first).
    fn audit_of_patient(
        &self,
        py: Python<'_>,
        patient: &Bound<'_, PyAny>,
    ) -> Result<Vec<Py<PyAny>>> {
        let p = public_arg(patient, "patient")?;
        let entries = guard(|| Ok(self.lock()?.audit_of_patient(&p.sign)?))?;
        entries
            .iter()
            .map(|a| Ok(audit_dict(py, a)?.into_any().unbind()))
            .collect()
    }

    /// The audit trail of a record (dicts, oldest first).
    fn audit_of_record(&self, py: Python<'_>, record_id: &str) -> Result<Vec<Py<PyAny>>> {
        let id = record_id_arg(record_id)?;
        let entries = guard(|| Ok(self.lock()?.audit_of_record(&id)?))?;
        entries
            .iter()
            .map(|a| Ok(audit_dict(py, a)?.into_any().unbind()))
            .collect()
    }

    /// The audit trail of a patient as FHIR R4 AuditEvent resources.
    fn audit_events_of_patient(
        &self,
        py: Python<'_>,
        patient: &Bound<'_, PyAny>,
    ) -> Result<Vec<Py<PyAny>>> {
        let p = public_arg(patient, "patient")?;
        let events = guard(|| Ok(self.lock()?.audit_events_of_patient(&p.sign)?))?;
        events.iter().map(|e| value_to_py(py, e)).collect()
    }

    /// The audit trail of a record as FHIR R4 AuditEvent resources.
    fn audit_events_of_record(&self, py: Python<'_>, record_id: &str) -> Result<Vec<Py<PyAny>>> {
        let id = record_id_arg(record_id)?;
        let events = guard(|| Ok(self.lock()?.audit_events_of_record(&id)?))?;
        events.iter().map(|e| value_to_py(py, e)).collect()
    }

    /// Verifies the whole chain with the GIL released. `progress(blocks, transactions,
    /// height)` is called at most every `interval` seconds and once at the end. Returns
    /// (blocks, transactions, head_proven, seconds measured in Rust).
    #[pyo3(signature = (progress = None, interval = 0.1))]
    fn verify(
        &self,
        py: Python<'_>,
        progress: Option<Py<PyAny>>,
        interval: f64,
    ) -> PyResult<(u64, u64, bool, f64)> {
        let interval = Duration::from_secs_f64(interval.clamp(0.0, 3600.0));
        let mut callback_error: Option<PyErr> = None;
        let result = py.detach(|| {
            guard(|| {
                let ledger = self.lock()?;
                let start = Instant::now();
                let mut last = Instant::now();
                let mut report = |blocks: u64, txs: u64, height: u64| {
                    if let (Some(cb), None) = (&progress, &callback_error) {
                        Python::attach(|py| {
                            if let Err(e) = cb.call1(py, (blocks, txs, height)) {
                                callback_error = Some(e);
                            }
                        });
                    }
                };
                let summary = ledger.verify(|p| {
                    if progress.is_some() && last.elapsed() >= interval {
                        last = Instant::now();
                        report(p.blocks, p.transactions, p.height);
                    }
                })?;
                let seconds = start.elapsed().as_secs_f64();
                report(summary.blocks, summary.transactions, summary.tip.height);
                Ok((
                    summary.blocks,
                    summary.transactions,
                    summary.head_proven,
                    seconds,
                ))
            })
        });
        // The callback's own exception is re-raised as it was.
        if let Some(e) = callback_error {
            return Err(e);
        }
        Ok(result?)
    }

    /// Searches the secure index with a writer index key. Returns (height, record id) pairs.
    #[pyo3(signature = (index_key, *, code = None, resource_type = None, year = None, from_height = 1))]
    fn search(
        &self,
        py: Python<'_>,
        index_key: &Bound<'_, PyAny>,
        code: Option<(String, String)>,
        resource_type: Option<String>,
        year: Option<u16>,
        from_height: u64,
    ) -> Result<(Vec<(u64, String)>, SearchCounts)> {
        let key = index_key
            .cast::<IndexKey>()
            .map_err(|_| wrong_type(index_key, "index_key", "an IndexKey"))?;
        if !key.get().writer {
            return Err(Error::new(
                Kind::InvalidArgument,
                "search with the key for one writer: IndexKey.for_patient(p).for_writer(institution)",
            ));
        }
        let keywords = keyword(code, resource_type, year)?;
        let query = key
            .get()
            .inner
            .query(&keywords)
            .map_err(|e| Error::new(Kind::InvalidArgument, e.to_string()))?;
        let found =
            py.detach(|| guard(|| Ok(self.lock()?.search_report(&query, from_height)?)))?;
        let stats = (
            found.indexed_blocks,
            found.blocks_skipped,
            found.exhaustive_blocks,
            found.prf_evaluations,
        );
        let hits = found
            .hits
            .into_iter()
            .map(|h| (h.height, h.record_id.to_string()))
            .collect();
        Ok((hits, stats))
    }

    /// A research release by `releaser` (a member institution's `Identity`) for the
    /// researcher's signed `request` (see `medchain.Ledger.research_release`), with the GIL
    /// released: `medchain_store::Ledger::research_release`, the one research policy. The
    /// release time and the release's private key are the library's choice. Returns (columns,
    /// summary, log): the rows as typed columns, what the release says of itself, and the
    /// `ResearchReleased` body (canonical bytes) the releaser's node submits.
    fn research_release(
        &self,
        py: Python<'_>,
        request: &Bound<'_, PyAny>,
        releaser: &Bound<'_, PyAny>,
    ) -> Result<(Py<PyAny>, Py<PyAny>, Py<PyAny>)> {
        let request = request
            .cast::<ResearchRequest>()
            .map_err(|_| wrong_type(request, "request", "a ResearchRequest"))?;
        let releaser = identity_arg(releaser, "releaser")?;
        let (request, releaser) = (&request.get().inner, &releaser.get().inner);
        let (columns, release) = py.detach(|| {
            guard(|| {
                let release = self.lock()?.research_release(releaser, request)?;
                let mut columns = Columns::default();
                for row in &release.rows {
                    columns.push(row.pseudonym.clone(), &row.resource);
                }
                Ok((columns, release))
            })
        })?;
        let log = release.log();
        let study = &log.request.study;
        let summary = PyDict::new(py);
        summary.set_item("study", &study.id)?;
        summary.set_item("purpose", &study.purpose)?;
        summary.set_item("topic", study.topic.as_deref())?;
        summary.set_item("longitudinal", study.longitudinal)?;
        summary.set_item("patients", release.patients)?;
        summary.set_item("rows", release.rows.len())?;
        summary.set_item("released_at_ms", release.clock.time_ms())?;
        summary.set_item("commitment", log.commitment.to_string())?;
        let body = PyBytes::new(py, &release.log_body().to_bytes());
        Ok((
            columns_to_py(py, columns)?,
            summary.into_any().unbind(),
            body.into_any().unbind(),
        ))
    }

    fn __repr__(&self) -> String {
        let h = self.lock().map(|l| l.height()).unwrap_or(0);
        format!("NativeLedger({:?}, height={h})", self.location)
    }
}

/// Dataset columns as a dict of Python lists.
pub fn columns_to_py(py: Python<'_>, c: Columns) -> Result<Py<PyAny>> {
    let d = PyDict::new(py);
    d.set_item("pseudonym", c.pseudonym)?;
    d.set_item("resource_type", c.resource_type)?;
    d.set_item("code_system", c.code_system)?;
    d.set_item("code", c.code)?;
    let values = PyList::empty(py);
    for v in c.value {
        values.append(float_or_none(py, v)?)?;
    }
    d.set_item("value", values)?;
    d.set_item("unit", c.unit)?;
    d.set_item("value_text", c.value_text)?;
    d.set_item("effective_year", c.effective_year)?;
    d.set_item("birth_year", c.birth_year)?;
    d.set_item("gender", c.gender)?;
    d.set_item("state", c.state)?;
    Ok(d.into_any().unbind())
}
