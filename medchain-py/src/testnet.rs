//! A local, single-process test network of real consensus nodes (`medchain::Host`s driven by
//! `medchain::MemoryNetwork`) whose committed chain is also written to a ledger at a
//! location of the caller's choosing: for tests, demos, notebooks and benchmarks. Not a
//! production node.

use std::sync::Mutex;

use getrandom::SysRng;
use medchain::MemoryNetwork;
use medchain::{Event, Host, RecordDraft, RuleError, SubmitTxError};
use medchain_core::consent::{
    deidentify, Consent as CoreConsent, ConsentId, ReleaseClock, StudyKey,
};
use medchain_core::election::VrfSecret;
use medchain_core::encoding::Decode;
use medchain_core::genesis::{Genesis, Member, Quorum, Timing};
use medchain_core::hash::TxId;
use medchain_core::index::{SealedWriterKey, WriterKeyError};
use medchain_core::keys::Identity as CoreIdentity;
use medchain_core::protocol::SubmitError;
use medchain_core::seal::NetworkKey as CoreNetworkKey;
use medchain_core::store::LedgerStore;
use medchain_core::testkit::TestNet;
use medchain_core::tx::{TxBody, TxKind};
use medchain_store::{Ledger as CoreLedger, LedgerError};
use pyo3::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_core::UnwrapErr;
use serde_json::{json, Value};

use crate::consent::Consent;
use crate::convert::{bytes_arg, json_arg, u64_arg, wrong_type};
use crate::dataset::Columns;
use crate::errors::{guard, Error, Kind, Result};
use crate::keys::{identity_arg, public_arg, Identity, NetworkKey};
use crate::ledger::columns_to_py;

/// Steps of the cluster between two looks at its events while committing.
const STEPS_PER_LOOK: usize = 2_000;
/// At most this many steps per commit (a bound; a healthy local network needs far fewer).
const MAX_COMMIT_STEPS: usize = 2_000_000;
/// The most transactions a block holds (the genesis's limit).
const MAX_BLOCK_TXS: u32 = 10_000;

struct State {
    cluster: MemoryNetwork,
    /// The ledger at `location`: every block the nodes commit, appended (and validated) as a
    /// follower appends a peer's blocks.
    archive: CoreLedger,
    network: CoreNetworkKey,
    /// Submitted and not yet committed.
    pending: Vec<TxId>,
    /// Submitted and refused by the ledger rules (reported by the next `commit`).
    refused: Vec<(String, RuleError)>,
    /// The nodes' own ledgers (removed with the network).
    _dir: tempfile::TempDir,
}

/// A local test network of `validators` validator nodes and `members` member nodes: real
/// consensus nodes (`medchain::Host`) in this process, each with its own ledger in a private
/// temporary directory, on an in-memory wire with virtual time. `add_record`, `grant`,
/// `revoke` and `log_release` submit through a node; `commit` runs the network until every
/// submitted transaction is committed (or refused) and appends the committed blocks to the
/// ledger at `location`.
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
        let n = state.cluster.hosts().len();
        if node < n {
            Ok(node)
        } else {
            Err(Error::new(
                Kind::InvalidArgument,
                format!("no node {node} (the network has {n})"),
            ))
        }
    }

    /// Submits `body` (signed by the patient, or this node's own) through node `node`. A
    /// refusal by the ledger rules against the committed state is kept for `commit` to report
    /// (as one refused later is); any other refusal is raised now.
    fn submit(s: &mut State, node: usize, body: &TxBody) -> Result<()> {
        let n = Self::node_index(s, node)?;
        let now = Self::tick(s);
        match s.cluster.host_mut(n).submit_patient_signed(body, now) {
            Ok(id) => s.pending.push(id),
            Err(SubmitTxError::Node(SubmitError::Rejected(rule))) => {
                s.refused.push((format!("a {:?}", body.kind()), rule));
            }
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    /// Brings the network's virtual clock up to the host's clock (it never goes back), so
    /// that what is submitted and committed is stamped as a live network would stamp it.
    fn tick(s: &mut State) -> u64 {
        s.cluster.advance_clock(crate::convert::now_ms());
        s.cluster.now_ms()
    }

    /// Appends to the archive what node 0 committed since the last call (validated again
    /// there, against node 0's head proof).
    fn archive(s: &mut State) -> Result<()> {
        let ledger = s.cluster.host(0).ledger();
        let from = s.archive.height() + 1;
        if ledger.height() < from {
            return Ok(());
        }
        let blocks = ledger
            .blocks_from(from)
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(LedgerError::from)?;
        let proof = LedgerStore::head(ledger.store())
            .map_err(LedgerError::from)?
            .and_then(|h| h.proof)
            .ok_or_else(|| Error::new(Kind::Internal, "node 0's head has no commit proof"))?;
        s.archive.append_committed_chain(blocks, &proof)?;
        Ok(())
    }
}

#[pymethods]
impl LocalNetwork {
    /// Founds the network (keys from `seed`) and creates its ledger at `location` (a path or a
    /// PostgreSQL URL; it must not exist yet).
    #[new]
    #[pyo3(signature = (location, *, seed = 7, validators = 4, members = 1))]
    fn new(
        py: Python<'_>,
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
        let state = py.detach(|| guard(|| found(&location, seed, validators, members)))?;
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
                inner: s.network.duplicate(),
            })
        })
    }

    /// The chain id (hex): the genesis hash, which every signature on this network binds.
    #[getter]
    fn chain_id(&self) -> Result<String> {
        self.with(|s| Ok(s.archive.genesis().chain_id().to_string()))
    }

    /// Node `index`'s identity (validators first, then members): an institution.
    fn node(&self, index: usize) -> Result<Identity> {
        self.with(|s| {
            let i = Self::node_index(s, index)?;
            Ok(Identity::copy_of(s.cluster.host(i).identity()))
        })
    }

    /// How many nodes.
    #[getter]
    fn node_count(&self) -> Result<usize> {
        self.with(|s| Ok(s.cluster.hosts().len()))
    }

    /// The committed height (of the ledger at `location`).
    #[getter]
    fn height(&self) -> Result<u64> {
        self.with(|s| Ok(s.archive.height()))
    }

    /// Node `writer` (the contributing institution) adds a FHIR record for `patient`: sealed
    /// for the patient and the writer, classified under the patient's consent tag key and
    /// indexed under the patient's writer key, both taken from `enrolment` (the bytes of
    /// `IndexKey.export_writer_key(patient, writer, chain_id)`, sealed to the writer). With an
    /// enrolment, `patient` may be public (`PublicIdentity` or its text); without one it must
    /// be the patient's `Identity`, and the enrolment is made from it here. Returns the record
    /// id; `commit` commits it.
    #[pyo3(signature = (fhir, patient, *, writer = 0, enrolment = None))]
    fn add_record(
        &self,
        fhir: &Bound<'_, PyAny>,
        patient: &Bound<'_, PyAny>,
        writer: usize,
        enrolment: Option<&Bound<'_, PyAny>>,
    ) -> Result<String> {
        let value = json_arg(fhir, "fhir")?;
        let bytes =
            serde_json::to_vec(&value).map_err(|e| Error::new(Kind::NotFhir, e.to_string()))?;
        let sealed = match enrolment {
            Some(e) => {
                let sealed = SealedWriterKey::from_bytes(&bytes_arg(e, "enrolment")?)?;
                if *sealed.patient() != public_arg(patient, "patient")? {
                    return Err(WriterKeyError::WrongPatient.into());
                }
                Some(sealed)
            }
            None => None,
        };
        let patient_id = match sealed {
            Some(_) => None,
            None => Some(identity_arg(patient, "patient").map_err(|_| {
                wrong_type(
                    patient,
                    "patient",
                    "an Identity (or pass the patient's enrolment)",
                )
            })?),
        };
        self.with(|s| {
            let w = Self::node_index(s, writer)?;
            let now = Self::tick(s);
            let host = s.cluster.host_mut(w);
            let enrolment = match (sealed, patient_id) {
                (Some(sealed), _) => sealed,
                (None, Some(p)) => SealedWriterKey::export(
                    &p.get().inner,
                    &host.genesis().chain_id(),
                    &host.public(),
                    &mut UnwrapErr(SysRng),
                )?,
                (None, None) => return Err(Error::new(Kind::Internal, "no patient")),
            };
            let draft = RecordDraft {
                fhir: &bytes,
                enrolment: &enrolment,
                readers: &[],
            };
            let receipt = host.add_record(draft, now)?;
            s.pending.push(receipt.tx_id);
            Ok(receipt.record_id.to_string())
        })
    }

    /// Node `node` submits the patient's signed grant of `consent`. Returns the consent id.
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
            let body = consent
                .get()
                .inner
                .grant_body(&patient.get().inner, &s.archive.genesis().chain_id())?;
            Self::submit(s, node, &body)?;
            Ok(id)
        })
    }

    /// Node `node` submits the patient's revocation of the consent `consent_id` (hex).
    #[pyo3(signature = (consent_id, patient, *, node = 0))]
    fn revoke(&self, consent_id: &str, patient: &Bound<'_, PyAny>, node: usize) -> Result<()> {
        let id: ConsentId = consent_id
            .trim()
            .parse()
            .map_err(|_| Error::new(Kind::Decode, "a consent id is 64 hexadecimal characters"))?;
        let patient = identity_arg(patient, "patient")?;
        self.with(|s| {
            let chain = s.archive.genesis().chain_id();
            let body = CoreConsent::revoke_body(&patient.get().inner, &chain, &id);
            Self::submit(s, node, &body)
        })
    }

    /// Node `node`, the releasing institution, submits a research release's log
    /// (`ResearchRelease.log`, the canonical `ResearchReleased` body).
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
            body.check(&s.archive.genesis().chain_id())?;
            Self::submit(s, node, &body)
        })
    }

    /// Runs the network until every submitted transaction is committed by every node or
    /// refused by the ledger rules, then appends the new blocks to the ledger at `location`.
    /// The miner cuts the blocks (at most 10,000 transactions each); `block_size` is accepted
    /// for compatibility and not used. Raises `ConsentDenied` (with the rule) after committing
    /// the rest if the rules refused a submitted transaction. Returns the new height.
    #[pyo3(signature = (*, block_size = 500))]
    fn commit(&self, py: Python<'_>, block_size: usize) -> Result<u64> {
        let _ = block_size;
        py.detach(|| {
            self.with(|s| {
                let mut refused = std::mem::take(&mut s.refused);
                for i in 0..s.cluster.hosts().len() {
                    s.cluster.pump(i);
                }
                let mut budget = MAX_COMMIT_STEPS;
                loop {
                    let done = s
                        .cluster
                        .run_until_committed(&s.pending, STEPS_PER_LOOK)?;
                    for (_, event) in s.cluster.take_events() {
                        if let Event::Refused { id, reason } = event {
                            if s.pending.contains(&id) {
                                s.pending.retain(|p| *p != id);
                                refused.push((format!("transaction {id}"), reason));
                            }
                        }
                    }
                    if done {
                        break;
                    }
                    budget = budget.saturating_sub(STEPS_PER_LOOK);
                    if budget == 0 {
                        return Err(Error::new(
                            Kind::Internal,
                            format!(
                                "the network did not commit {} transaction(s) in {MAX_COMMIT_STEPS} steps",
                                s.pending.len()
                            ),
                        ));
                    }
                }
                s.pending.clear();
                Self::archive(s)?;
                match refused.first() {
                    None => Ok(s.archive.height()),
                    Some((what, rule)) => Err(Error::rule(
                        rule,
                        format!(
                            "{} submitted transaction(s) refused by the ledger rules, the first ({what}): {rule}",
                            refused.len()
                        ),
                    )),
                }
            })
        })
    }

    fn __repr__(&self) -> String {
        format!("LocalNetwork({:?})", self.location)
    }
}

/// Founds the network: identities and network key from `seed`, a genesis naming `validators`
/// validators then `members` members (stamped with the host's clock), a host per member in a
/// temporary directory, and the archive ledger at `location`.
fn found(location: &str, seed: u64, validators: usize, members: usize) -> Result<State> {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let ids: Vec<CoreIdentity> = (0..validators + members)
        .map(|_| CoreIdentity::generate(&mut rng))
        .collect();
    let network = CoreNetworkKey::generate(&mut rng);
    let mut list = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let validator = i < validators;
        list.push(Member {
            name: if validator {
                format!("validator-{i}")
            } else {
                format!("member-{i}")
            },
            identity: id.public(),
            vrf: VrfSecret::derive(id)
                .map_err(|e| Error::new(Kind::Internal, e.to_string()))?
                .public(),
            validator,
        });
    }
    let now = crate::convert::now_ms();
    let genesis = Genesis::new(
        "medchain-testnet",
        now,
        network.fingerprint(),
        list,
        Quorum::TWO_THIRDS,
        Timing::DEFAULT,
        MAX_BLOCK_TXS,
    )
    .map_err(|e| Error::new(Kind::Internal, e.to_string()))?;
    let archive = CoreLedger::create(location, &genesis, network.duplicate())?;
    let dir = tempfile::Builder::new()
        .prefix("medchain-local-network")
        .tempdir()
        .map_err(|e| Error::new(Kind::Store, format!("the nodes' directory: {e}")))?;
    let mut hosts = Vec::with_capacity(ids.len());
    for (i, id) in ids.into_iter().enumerate() {
        let path = dir.path().join(format!("node-{i}.sqlite"));
        hosts.push(Host::create(path, &genesis, id, network.duplicate(), now)?);
    }
    Ok(State {
        cluster: MemoryNetwork::new(hosts, now),
        archive,
        network,
        pending: Vec::new(),
        refused: Vec::new(),
        _dir: dir,
    })
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
