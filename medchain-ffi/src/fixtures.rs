//! Test fixtures for the Kotlin, Swift and Python tests: a real chain made by the core's
//! deterministic `TestNet` (validated blocks, real votes, commit proofs), with a patient whose
//! wallet is made by this crate. Not part of the wallet API (not exported through uniffi).
//!
//! `cargo run -p medchain-ffi --features fixtures --example make-fixtures -- <dir>` writes the files of
//! [`build`] into `<dir>`; the Rust tests use [`build`] directly.
//!
//! The chain, block by block (validators 0–3, member institutions 4–5; node 0 contributes):
//!
//! 1. three `RecordAdded`: two records of the patient (sealed to the patient and node 0), one of
//!    another patient;
//! 2. the wallet's consent (the doctor may read Observations for treatment) and its emergency
//!    preference (allow), as signed by [`crate::Wallet`];
//! 3. a key release to the doctor under that consent (`KeyShared` + `AccessLogged`);
//! 4. a break-glass release to an emergency physician credentialed by institution 4;
//! 5. the erasure of the patient's second record, as signed by the wallet.

use std::collections::BTreeMap;
use std::sync::Arc;

use medchain_core::access::{record_class, release_key, LedgerView, ReleaseRequest};
use medchain_core::block::CheckedBlock;
use medchain_core::chain::CommitProof;
use medchain_core::consent::{ConsentTagKey, Purpose};
use medchain_core::credential::{Credential, Role};
use medchain_core::encoding::{Decode, Encode};
use medchain_core::index::SealedWriterKey;
use medchain_core::keys::{Identity, PublicIdentity};
use medchain_core::ledger::LedgerState;
use medchain_core::light::InclusionProof;
use medchain_core::seal::{seal_record, SealedRecord};
use medchain_core::testkit::TestNet;
use medchain_core::tx::{Transaction, TxBody};
use medchain_core::vote::{QuorumCertificate, Vote};

use crate::audit::encode_audit_trail;
use crate::consent::{
    ConsentAction, ConsentDraft, ConsentRule, EmergencyAccess, Grantee, PurposeOfUse, RuleEffect,
};
use crate::store::InMemoryWalletStore;
use crate::wallet::Wallet;

/// The password of the fixture patient's backup.
pub const PASSWORD: &str = "correct horse battery staple";

/// An HbA1c result.
pub const OBSERVATION: &str = r#"{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{"coding":[{"system":"http://loinc.org","code":"4548-4"}]},"valueQuantity":{"value":6.1,"unit":"%"}}"#;
/// A diagnosis.
pub const CONDITION: &str = r#"{"resourceType":"Condition","recordedDate":"2026-09-12","code":{"coding":[{"system":"http://snomed.info/sct","code":"44054006"}]}}"#;

/// When the fixture consent was issued.
pub const CONSENT_ISSUED_MS: u64 = 1_790_000_000_000;

/// The fixture files, by name.
pub type Files = BTreeMap<String, Vec<u8>>;

fn fail(what: &str) -> impl Fn(String) -> String + '_ {
    move |e| format!("fixture {what}: {e}")
}

struct Chain {
    net: TestNet,
    state: LedgerState,
    blocks: Vec<(CheckedBlock, CommitProof)>,
}

impl Chain {
    fn commit(&mut self, txs: Vec<Transaction>) -> Result<(), String> {
        let (block, effects, proof) = self
            .net
            .next_block(&self.state, txs)
            .map_err(|e| format!("fixture block {}: {e}", self.blocks.len() + 1))?;
        self.state
            .commit(effects)
            .map_err(|e| format!("fixture commit: {e}"))?;
        self.blocks.push((block, proof));
        Ok(())
    }

    /// Node 0 (the record's holder) releases the key of `record` to `reader` under the
    /// patient's consents, and the key release and its access log are committed in one block.
    fn release(
        &mut self,
        record: &SealedRecord,
        reader: &PublicIdentity,
        credential: Option<Credential>,
        purpose: Purpose,
    ) -> Result<(), String> {
        let release = release_key(
            &self.net.nodes[0],
            record,
            ReleaseRequest {
                grantee: *reader,
                credential,
                purpose,
            },
            LedgerView {
                state: &self.state,
                genesis: &self.net.genesis,
                network: &self.net.network,
            },
            self.net.now_ms,
            &mut self.net.rng,
        )
        .map_err(|e| fail("release")(e.to_string()))?;
        let txs = vec![
            self.net.tx(0, &release.key_shared, Vec::new()),
            self.net.tx(0, &release.access_logged, Vec::new()),
        ];
        self.commit(txs)
    }

    fn proof(&self, block: usize, index: usize) -> Result<InclusionProof, String> {
        let (b, c) = &self.blocks[block];
        InclusionProof::new(b, index, c.clone()).map_err(|e| format!("fixture proof: {e}"))
    }

    /// A record node 0 writes for `patient`, its codes blinded under the patient's tag `key`.
    fn record(
        &mut self,
        payload: &str,
        patient: &PublicIdentity,
        key: &ConsentTagKey,
    ) -> Result<(SealedRecord, Transaction), String> {
        let node = self.net.nodes[0].public();
        let sealed = seal_record(payload.as_bytes(), patient, &[node], &mut self.net.rng)
            .map_err(|e| fail("seal")(e.to_string()))?;
        let class = record_class(payload.as_bytes(), key, &mut self.net.rng)
            .map_err(|e| fail("class")(e.to_string()))?;
        let tx = self
            .net
            .tx(0, &TxBody::record_added(sealed.clone(), class), Vec::new());
        Ok((sealed, tx))
    }
}

fn body(bytes: &[u8]) -> Result<TxBody, String> {
    TxBody::from_bytes(bytes).map_err(|e| fail("request body")(e.to_string()))
}

/// Builds the chain and returns the fixture files (see the module docs and `docs/mobile.md`).
///
/// # Errors
/// A description of what failed (a bug in the fixture or the core).
pub fn build() -> Result<Files, String> {
    let mut c = Chain {
        net: TestNet::new(2026, 4, 2),
        state: LedgerState::new(),
        blocks: Vec::new(),
    };
    let mut files = Files::new();
    let store: Arc<dyn crate::WalletStore> = Arc::new(InMemoryWalletStore::new());
    let wallet =
        Wallet::create(store, PASSWORD.into()).map_err(|e| fail("wallet")(e.to_string()))?;
    let patient = PublicIdentity::from_text(&wallet.public_identity())
        .map_err(|e| fail("patient")(e.to_string()))?;
    // The wallet signs for the network it pins.
    wallet
        .trust_network(c.net.genesis.to_bytes(), None)
        .map_err(|e| fail("trust network")(e.to_string()))?;
    let doctor = Identity::generate(&mut c.net.rng);
    let er_doctor = Identity::generate(&mut c.net.rng);
    let other_patient = Identity::generate(&mut c.net.rng);

    // Enrolment: the wallet seals its keys to node 0, which writes the patient's records.
    let enrolment = wallet
        .export_writer_key(c.net.nodes[0].public().to_text())
        .map_err(|e| fail("enrolment")(e.to_string()))?;
    let tag_key = SealedWriterKey::from_bytes(&enrolment)
        .map_err(|e| fail("enrolment")(e.to_string()))?
        .import_tag_key(&c.net.nodes[0], &c.net.genesis.chain_id(), &patient)
        .map_err(|e| fail("enrolment")(e.to_string()))?;
    let other_key = ConsentTagKey::for_patient(&other_patient);

    // Block 1: records.
    let (mine, t1) = c.record(OBSERVATION, &patient, &tag_key)?;
    let (erased, t2) = c.record(CONDITION, &patient, &tag_key)?;
    let (foreign, t3) = c.record(OBSERVATION, &other_patient.public(), &other_key)?;
    c.commit(vec![t1, t2, t3])?;

    // Block 2: the wallet's consent and emergency preference.
    let consent = wallet
        .sign_consent(ConsentDraft {
            summary: "Dr. Ruiz may read my lab results for my treatment".into(),
            // Fixed, so that the Kotlin tests sign the very consent the chain committed.
            issued_ms: CONSENT_ISSUED_MS,
            start_ms: None,
            end_ms: None,
            emergency: None,
            rules: vec![ConsentRule {
                effect: RuleEffect::Permit,
                grantees: vec![Grantee::Party {
                    identity: doctor.public().to_text(),
                }],
                actions: vec![ConsentAction::Read],
                purposes: vec![PurposeOfUse::Treatment],
                resource_types: vec!["Observation".into()],
                codes: Vec::new(),
                start_ms: None,
                end_ms: None,
                data_start_ms: None,
                data_end_ms: None,
            }],
        })
        .map_err(|e| fail("consent")(e.to_string()))?;
    let emergency = wallet
        .sign_emergency_preference(EmergencyAccess::Allow, c.net.now_ms)
        .map_err(|e| fail("emergency preference")(e.to_string()))?;
    let g1 = c.net.tx(0, &body(&consent.body)?, Vec::new());
    let g2 = c.net.tx(0, &body(&emergency.body)?, Vec::new());
    c.commit(vec![g1, g2])?;

    // Block 3: the doctor reads under the consent.
    let now = c.net.now_ms;
    c.release(&mine, &doctor.public(), None, Purpose::Treat)?;

    // Block 4: break-glass by an emergency physician of institution 4.
    let institution = &c.net.nodes[4];
    let credential = Credential::issue(
        institution,
        &c.net.genesis.chain_id(),
        er_doctor.verify_key(),
        Role::Clinician {
            institution: institution.verify_key(),
        },
        now + 365 * 24 * 3600 * 1000,
    );
    c.release(
        &mine,
        &er_doctor.public(),
        Some(credential),
        Purpose::EmergencyTreat,
    )?;

    // Block 5: the patient erases the second record.
    let erasure = wallet
        .request_erasure(erased.record_id().to_string())
        .map_err(|e| fail("erasure")(e.to_string()))?;
    let t = c.net.tx(0, &body(&erasure.body)?, Vec::new());
    c.commit(vec![t])?;

    // Block 6: a stranger asked node 0 for the first record for treatment; the patient's
    // consents do not permit it, and node 0 logs the refusal.
    let stranger = Identity::generate(&mut c.net.rng);
    let denial = TxBody::AccessDenied {
        record_id: mine.record_id(),
        requester: stranger.public(),
        purpose: Purpose::Treat.code().to_owned(),
        rule: "denied".into(),
        requested_at_ms: c.net.now_ms,
        relayed_by: c.net.nodes[4].verify_key(),
    };
    let t = c.net.tx(0, &denial, Vec::new());
    c.commit(vec![t])?;
    files.insert(
        "stranger.id".into(),
        stranger.public().to_text().into_bytes(),
    );
    files.insert("proof-denial.bin".into(), c.proof(5, 0)?.to_bytes());
    files.insert(
        "relay.key".into(),
        c.net.nodes[4].verify_key().to_string().into_bytes(),
    );

    // Proofs.
    let record_proof = c.proof(0, 0)?;
    files.insert("proof-record.bin".into(), record_proof.to_bytes());
    files.insert("proof-consent.bin".into(), c.proof(1, 0)?.to_bytes());
    files.insert(
        "proof-emergency-access.bin".into(),
        c.proof(3, 1)?.to_bytes(),
    );
    files.insert("proof-erasure.bin".into(), c.proof(4, 0)?.to_bytes());

    let mut p = record_proof.clone();
    p.header = c.blocks[1].0.header().clone();
    p.commit = c.blocks[1].1.clone();
    files.insert("proof-other-block.bin".into(), p.to_bytes());

    let mut p = record_proof.clone();
    p.header.timestamp_ms += 1;
    files.insert("proof-tampered-header.bin".into(), p.to_bytes());

    // Votes from outside the trusted set: the two member institutions (in genesis, not
    // validators) and two fresh keys, all correctly signed.
    let mut p = record_proof.clone();
    let child = p.commit.child.hash();
    let outsiders: Vec<Identity> = (0..2).map(|_| Identity::generate(&mut c.net.rng)).collect();
    let votes: Vec<Vote> = outsiders
        .iter()
        .chain(&c.net.nodes[4..6])
        .map(|n| {
            Vote::cast(
                n,
                &c.net.genesis.chain_id(),
                p.commit.child.prev,
                child,
                Ok(()),
                now,
            )
        })
        .collect();
    p.commit.child_qc = QuorumCertificate::from_votes(&votes, &child);
    files.insert("proof-outsider-votes.bin".into(), p.to_bytes());

    let mut p = record_proof;
    let one = p.commit.child_qc.votes()[..1].to_vec();
    p.commit.child_qc = QuorumCertificate::from_votes(&one, &child);
    files.insert("proof-no-quorum.bin".into(), p.to_bytes());

    // The network, the patient, the parties.
    files.insert("genesis.bin".into(), c.net.genesis.to_bytes());
    // A sibling network with the same members (a staging net): signatures made for one are
    // refused on the other.
    let g = &c.net.genesis;
    let staging = medchain_core::genesis::Genesis::new(
        "staging",
        g.created_at_ms,
        g.network_key_fingerprint,
        g.members.clone(),
        g.quorum,
        g.timing,
        g.max_block_txs,
    )
    .map_err(|e| fail("staging genesis")(e.to_string()))?;
    files.insert("genesis-staging.bin".into(), staging.to_bytes());
    files.insert(
        "genesis.hash".into(),
        c.net.genesis.hash().to_string().into_bytes(),
    );
    files.insert(
        "genesis-other.bin".into(),
        TestNet::new(99, 4, 0).genesis.to_bytes(),
    );
    files.insert(
        "patient.backup".into(),
        wallet.backup().map_err(|e| fail("backup")(e.to_string()))?,
    );
    files.insert("patient.password".into(), PASSWORD.as_bytes().to_vec());
    files.insert("patient.id".into(), patient.to_text().into_bytes());
    files.insert("doctor.id".into(), doctor.public().to_text().into_bytes());
    files.insert(
        "emergency-doctor.id".into(),
        er_doctor.public().to_text().into_bytes(),
    );
    files.insert(
        "institution.id".into(),
        c.net.nodes[4].public().to_text().into_bytes(),
    );
    files.insert("consent.id".into(), consent.subject_id.into_bytes());
    files.insert("record-mine.sealed".into(), mine.to_bytes());
    files.insert(
        "record-mine.id".into(),
        mine.record_id().to_string().into_bytes(),
    );
    files.insert(
        "record-erased.id".into(),
        erased.record_id().to_string().into_bytes(),
    );
    files.insert("record-foreign.sealed".into(), foreign.to_bytes());
    files.insert(
        "tx-emergency-access.id".into(),
        c.blocks[3].0.tx_ids()[1].to_string().into_bytes(),
    );
    files.insert(
        "audit.bin".into(),
        encode_audit_trail(c.state.audit_of_patient(&patient.sign)),
    );
    Ok(files)
}
