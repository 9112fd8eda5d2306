//! A local, single-process test network (the core's deterministic testkit) that writes a real
//! ledger: for tests, demos, notebooks and benchmarks. Not a production node.

use std::sync::Mutex;

use getrandom::SysRng;
use medchain_core::access::record_class;
use medchain_core::consent::{
    deidentify, Consent as CoreConsent, ConsentId, ReleaseClock, StudyKey,
};
use medchain_core::encoding::Decode;
use medchain_core::index::{extract_keywords, IndexKey};
use medchain_core::testkit::TestNet;
use medchain_core::tx::{Transaction, TxBody, TxKind};
use medchain_store::Ledger as CoreLedger;
use pyo3::prelude::*;
use rand_core::UnwrapErr;
use serde_json::{json, Value};

use crate::consent::Consent;
use crate::convert::{bytes_arg, json_arg, u64_arg, wrong_type};
use crate::dataset::Columns;
use crate::errors::{guard, Error, Kind, Result};
use crate::keys::{identity_arg, Identity, NetworkKey};
use crate::ledger::columns_to_py;

struct State {
    net: TestNet,
    ledger: CoreLedger,
    pending: Vec<Transaction>,
}

/// A local test network of `validators` validator nodes and `members` member nodes, writing
/// committed blocks to a new ledger at `location`. Transactions are queued by `add_record`,
/// `grant`, `revoke` and `log_release` and committed together by `commit`. Blocks are stamped
/// from the host's clock (as a live network's are), one second apart at least.
#[pyclass(frozen, module = "medchain._medchain")]
pub struct LocalNetwork {
    state: Mutex<State>,
    location: String,
}

impl LocalNetwork {
    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut guard_ = self.state.lock().map_err(|_| {
            Error::new(
                Kind::Internal,
                "the network is unusable after an earlier failure",
            )
        })?;
        guard(|| f(&mut guard_))
    }

    fn node_index(state: &State, node: usize) -> Result<usize> {
        if node < state.net.nodes.len() {
            Ok(node)
        } else {
            Err(Error::new(
                Kind::InvalidArgument,
                format!("no node {node} (the network has {})", state.net.nodes.len()),
            ))
        }
    }
}

#[pymethods]
impl LocalNetwork {
    /// Creates the network and its ledger (`location` must not exist yet).
    #[new]
    #[pyo3(signature = (location, *, seed = 7, validators = 4, members = 1))]
    fn new(
        location: &Bound<'_, PyAny>,
        seed: u64,
        validators: usize,
        members: usize,
    ) -> Result<Self> {
        let location: String = location
            .extract::<std::path::PathBuf>()
            .map_err(|_| wrong_type(location, "location", "a path"))?
            .to_string_lossy()
            .into_owned();
        if !(1..=32).contains(&validators) || members > 32 {
            return Err(Error::new(
                Kind::InvalidArgument,
                "between 1 and 32 validators and at most 32 members",
            ));
        }
        let state = guard(|| {
            let mut net = TestNet::new(seed, validators, members);
            net.now_ms = net.now_ms.max(crate::convert::now_ms());
            let key = NetworkKey::duplicate(&net.network)?;
            let ledger = CoreLedger::create(&location, &net.genesis, key)?;
            Ok(State {
                net,
                ledger,
                pending: Vec::new(),
            })
        })?;
        Ok(Self {
            state: Mutex::new(state),
            location,
        })
    }

    /// The ledger's location.
    #[getter]
    fn location(&self) -> String {
        self.location.clone()
    }

    /// The network key (to open the ledger).
    #[getter]
    fn network_key(&self) -> Result<NetworkKey> {
        self.with(|s| {
            Ok(NetworkKey {
                inner: NetworkKey::duplicate(&s.net.network)?,
            })
        })
    }

    /// The chain id (hex): the genesis hash, which every signature on this network binds.
    #[getter]
    fn chain_id(&self) -> Result<String> {
        self.with(|s| Ok(s.net.genesis.chain_id().to_string()))
    }

    /// Node `index`'s identity (validators first, then members): an institution.
    fn node(&self, index: usize) -> Result<Identity> {
        self.with(|s| Ok(Identity::copy_of(&s.net.nodes[Self::node_index(s, index)?])))
    }

    /// How many nodes.
    #[getter]
    fn node_count(&self) -> Result<usize> {
        self.with(|s| Ok(s.net.nodes.len()))
    }

    /// The committed height.
    #[getter]
    fn height(&self) -> Result<u64> {
        self.with(|s| Ok(s.ledger.height()))
    }

    /// Queues a FHIR record for `patient`, sealed for the patient and node `writer` (the
    /// contributing institution), with its secure-index entry. Returns the record id.
    #[pyo3(signature = (fhir, patient, *, writer = 0))]
    fn add_record(
        &self,
        fhir: &Bound<'_, PyAny>,
        patient: &Bound<'_, PyAny>,
        writer: usize,
    ) -> Result<String> {
        let value = json_arg(fhir, "fhir")?;
        let patient = identity_arg(patient, "patient")?;
        let patient = &patient.get().inner;
        let bytes =
            serde_json::to_vec(&value).map_err(|e| Error::new(Kind::NotFhir, e.to_string()))?;
        self.with(|s| {
            let w = Self::node_index(s, writer)?;
            let hospital = &s.net.nodes[w];
            let options = medchain_fhir::Options::for_genesis(&s.net.genesis);
            let sealed = medchain_fhir::seal_validated(
                &bytes,
                &options,
                &patient.public(),
                &[hospital.public()],
                &mut UnwrapErr(SysRng),
            )?
            .record;
            let keywords =
                extract_keywords(&value).map_err(|e| Error::new(Kind::NotFhir, e.to_string()))?;
            let key = IndexKey::for_patient(patient).for_writer(&hospital.id());
            let trapdoors = key.trapdoors(keywords.iter());
            let record_id = sealed.record_id();
            let id = record_id.to_string();
            // The hospital holds the patient's consent tag key from enrolment.
            let class = record_class(
                &bytes,
                &medchain_core::consent::ConsentTagKey::for_patient(patient),
                &mut UnwrapErr(SysRng),
            )?;
            let body = TxBody::record_added(sealed, class);
            // The local network keeps the trapdoors until the block is made, so the block
            // carries a secure-index filter (as the consensus node does).
            let tx = s.net.indexed_tx(w, &body, record_id, trapdoors);
            s.pending.push(tx);
            Ok(id)
        })
    }

    /// Queues the patient's signed grant of `consent`. Returns the consent id.
    #[pyo3(signature = (consent, patient, *, node = 0))]
    fn grant(
        &self,
        consent: &Bound<'_, PyAny>,
        patient: &Bound<'_, PyAny>,
        node: usize,
    ) -> Result<String> {
        let consent = consent
            .cast::<Consent>()
            .map_err(|_| wrong_type(consent, "consent", "a Consent"))?;
        let patient = identity_arg(patient, "patient")?;
        // The id it gets on chain: the consent blinded under the patient's tag key.
        let id = consent
            .get()
            .inner
            .granted_id(&patient.get().inner)
            .to_string();
        self.with(|s| {
            let n = Self::node_index(s, node)?;
            let body = consent
                .get()
                .inner
                .grant_body(&patient.get().inner, &s.net.genesis.chain_id())?;
            let tx = s.net.tx(n, &body, Vec::new());
            s.pending.push(tx);
            Ok(id)
        })
    }

    /// Queues the patient's revocation of the consent `consent_id` (hex).
    #[pyo3(signature = (consent_id, patient, *, node = 0))]
    fn revoke(&self, consent_id: &str, patient: &Bound<'_, PyAny>, node: usize) -> Result<()> {
        let id: ConsentId = consent_id
            .trim()
            .parse()
            .map_err(|_| Error::new(Kind::Decode, "a consent id is 64 hexadecimal characters"))?;
        let patient = identity_arg(patient, "patient")?;
        self.with(|s| {
            let n = Self::node_index(s, node)?;
            let body =
                CoreConsent::revoke_body(&patient.get().inner, &s.net.genesis.chain_id(), &id);
            let tx = s.net.tx(n, &body, Vec::new());
            s.pending.push(tx);
            Ok(())
        })
    }

    /// Queues a research release's log (`ResearchRelease.log`, the canonical `ResearchReleased`
    /// body) from node `node`, the releasing institution.
    #[pyo3(signature = (log, *, node = 0))]
    fn log_release(&self, log: &Bound<'_, PyAny>, node: usize) -> Result<()> {
        let body = TxBody::from_bytes(&bytes_arg(log, "log")?)?;
        if body.kind() != TxKind::ResearchReleased {
            return Err(Error::new(
                Kind::InvalidArgument,
                "log must be a research release's log (ResearchRelease.log)",
            ));
        }
        self.with(|s| {
            let n = Self::node_index(s, node)?;
            // Stamped with the host's clock, as the release time is.
            s.net.now_ms = s.net.now_ms.max(crate::convert::now_ms());
            body.check(&s.net.genesis.chain_id())?;
            let tx = s.net.tx(n, &body, Vec::new());
            s.pending.push(tx);
            Ok(())
        })
    }

    /// Commits the queued transactions in blocks of at most `block_size`, validated with the
    /// ledger's consent rules. Raises `ConsentDenied` (nothing written) if the rules refuse
    /// a block. Returns the new height.
    #[pyo3(signature = (*, block_size = 500))]
    fn commit(&self, py: Python<'_>, block_size: usize) -> Result<u64> {
        let block_size = block_size.max(1);
        py.detach(|| {
            self.with(|s| {
                let pending = std::mem::take(&mut s.pending);
                let mut chunks: Vec<Vec<Transaction>> = Vec::new();
                let mut it = pending.into_iter().peekable();
                while it.peek().is_some() {
                    chunks.push(it.by_ref().take(block_size).collect());
                }
                for txs in chunks {
                    let (checked, _effects, proof) =
                        s.net.next_block(s.ledger.store(), txs).map_err(|e| {
                            Error::new(Kind::ConsentDenied, format!("the block is rejected: {e}"))
                        })?;
                    s.ledger.append_committed(checked.into_block(), &proof)?;
                }
                Ok(s.ledger.height())
            })
        })
    }

    fn __repr__(&self) -> String {
        format!("LocalNetwork({:?})", self.location)
    }
}

/// Benchmark helper: `n` synthetic FHIR resources (Patient, Observation, Condition,
/// MedicationRequest in turn) de-identified in Rust and returned as dataset columns. Measures
/// de-identification and the column hand-over, not decryption or ledger reads.
#[pyfunction]
#[pyo3(signature = (n, *, study = "bench"))]
pub fn _synthetic_dataset_columns(
    py: Python<'_>,
    n: &Bound<'_, PyAny>,
    study: &str,
) -> Result<Py<PyAny>> {
    let n = u64_arg(n, "n")?;
    if n > 10_000_000 {
        return Err(Error::new(Kind::InvalidArgument, "n is at most 10,000,000"));
    }
    let releaser = medchain_core::keys::Identity::generate(&mut UnwrapErr(SysRng));
    let study = StudyKey::derive(&releaser, study);
    let clock = ReleaseClock::at_tip(TestNet::new(0, 1, 0).tip());
    let cols = py.detach(|| {
        guard(|| {
            let mut cols = Columns::default();
            let states = ["CA", "NY", "TX", "WA", "MA"];
            for i in 0..n {
                let p = i / 4;
                let pid = format!("Patient/p{p}");
                let r: Value = match i % 4 {
                    0 => json!({"resourceType": "Patient", "id": format!("p{p}"),
                        "name": [{"family": "Doe", "given": ["J"]}],
                        "gender": if p % 2 == 0 { "female" } else { "male" },
                        "birthDate": format!("{}-03-14", 1940 + (p % 60)),
                        "address": [{"line": ["1 Main St"], "city": "X", "state": states[(p % 5) as usize]}]}),
                    1 => json!({"resourceType": "Observation", "status": "final",
                        "subject": {"reference": pid}, "effectiveDateTime": "2026-05-02T10:00:00Z",
                        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                        "valueQuantity": {"value": 5.0 + (i % 50) as f64 / 10.0, "unit": "%"}}),
                    2 => json!({"resourceType": "Condition", "subject": {"reference": pid},
                        "recordedDate": "2025-11-20",
                        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}),
                    _ => json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                        "subject": {"reference": pid}, "authoredOn": "2026-01-10",
                        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "860975"}]}}),
                };
                let clean = deidentify(&r, &study, &clock)?;
                cols.push(study.pseudonym(&pid), &clean);
            }
            Ok(cols)
        })
    })?;
    columns_to_py(py, cols)
}
