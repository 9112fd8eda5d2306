//! Research releases through the Ledger: the one policy over a stored chain, its log on chain,
//! and the time and randomness the library (not the caller) chooses.

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::research::*;
use common::*;
use medchain_core::credential::{Credential, CredentialError, Role};
use medchain_core::keys::Identity;
use medchain_core::ledger::RuleError;
use medchain_core::research::{ResearchError, ResearchRequest};
use medchain_core::seal::SealedRecord;
use medchain_core::testkit::TestNet;
use medchain_store::{Ledger, LedgerError, SqliteStore};

fn wall_clock_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

struct Fx {
    ledger: Ledger<SqliteStore>,
    net: TestNet,
    patients: Vec<Identity>,
    records: Vec<(SealedRecord, SealedRecord)>,
    researcher: Identity,
    _dir: tempfile::TempDir,
}

/// `n` patients at the holder, each with an HbA1c and a diagnosis, consenting to diabetes
/// research; blocks stamped with the host's clock, as a live network's are.
fn fx(n: usize) -> Fx {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = TestNet::new(31, 4, 2);
    net.now_ms = wall_clock_ms();
    let key = network_key(&mut net);
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("l.db"), &net.genesis, key).expect("create");
    let mut patients = Vec::new();
    let mut records = Vec::new();
    let mut txs = Vec::new();
    for i in 0..n {
        let p = Identity::generate(&mut net.rng);
        let (obs, t1) = record(&mut net, &p, &hba1c(i));
        let (dx, t2) = record(&mut net, &p, DIAGNOSIS);
        let grant = research_grant(&mut net, &p);
        txs.extend([t1, t2, grant]);
        patients.push(p);
        records.push((obs, dx));
    }
    commit(&mut ledger, &mut net, txs);
    let researcher = Identity::generate(&mut net.rng);
    Fx {
        ledger,
        net,
        patients,
        records,
        researcher,
        _dir: dir,
    }
}

impl Fx {
    fn request(&self, credential: Credential) -> ResearchRequest {
        ResearchRequest::sign(
            &self.researcher,
            &self.net.genesis.chain_id(),
            diabetes_study("dm2-2026"),
            credential,
        )
        .expect("request")
    }

    fn credential_from(&self, issuer: usize) -> Credential {
        credential(&self.net, issuer, &self.researcher)
    }
}

#[test]
fn a_release_goes_on_chain_as_one_log_and_no_per_record_entry() {
    let mut f = fx(12);
    let request = f.request(f.credential_from(INSTITUTE));
    let before = wall_clock_ms();
    let release = f
        .ledger
        .research_release(&f.net.nodes[HOLDER], &request)
        .expect("release");
    // The library chose the time: the tip's, or the host's clock if later.
    assert!(release.clock.time_ms() >= before);
    assert!(release.clock.time_ms() >= f.ledger.tip().timestamp_ms);
    assert_eq!((release.rows.len(), release.patients), (24, 12));
    let text: String = release
        .rows
        .iter()
        .map(|r| r.resource.to_string())
        .collect();
    assert!(!text.contains("mrn-") && !text.contains("2026-05"));
    // The log commits; no audit entry names a patient; the chain still verifies.
    let log = f.net.tx(HOLDER, &release.log_body(), vec![]);
    commit(&mut f.ledger, &mut f.net, vec![log]);
    for p in &f.patients {
        assert!(f
            .ledger
            .audit_of_patient(&p.verify_key())
            .expect("audit")
            .is_empty());
    }
    let summary = f.ledger.verify(|_| {}).expect("verify");
    assert!(summary.head_proven);
    // A patient can be shown their record was in it, against the commitment on chain.
    let mine = f.records[3].0.record_id();
    let proof = release.inclusion(&mine).expect("released");
    assert!(proof.verify(&release.log().commitment, &mine));
}

#[test]
fn erased_records_leave_the_next_release() {
    let mut f = fx(12);
    let request = f.request(f.credential_from(INSTITUTE));
    let erase = erase_tx(&mut f.net, &f.patients[0], &f.records[0].0);
    commit(&mut f.ledger, &mut f.net, vec![erase]);
    let after = f
        .ledger
        .research_release(&f.net.nodes[HOLDER], &request)
        .expect("release");
    assert_eq!((after.rows.len(), after.patients), (23, 12));
    assert!(after.inclusion(&f.records[0].0.record_id()).is_none());
    assert!(after.inclusion(&f.records[0].1.record_id()).is_some());
}

#[test]
fn refused_releases_say_why_and_release_nothing() {
    let f = fx(12);
    // A self-issued credential (the researcher attests itself, in the institute's name).
    let forged = Credential::issue(
        &f.researcher,
        &f.net.genesis.chain_id(),
        f.researcher.verify_key(),
        Role::Researcher {
            institution: f.net.nodes[INSTITUTE].verify_key(),
        },
        f.net.now_ms + 86_400_000,
    );
    let err = f
        .ledger
        .research_release(&f.net.nodes[HOLDER], &f.request(forged))
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Research(ResearchError::Rule(RuleError::BadCredential(
            CredentialError::BadSignature
        )))
    ));
    assert_eq!(
        err.to_string(),
        "the network would refuse this release: the credential does not hold: credential signature does not verify"
    );
    // Someone who is not a member institution.
    let stranger = Identity::generate(&mut rand_core::UnwrapErr(getrandom::SysRng));
    let err = f
        .ledger
        .research_release(&stranger, &f.request(f.credential_from(INSTITUTE)))
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Research(ResearchError::NotAMember)
    ));
    // Ten patients: every cell is small.
    let g = fx(10);
    let err = g
        .ledger
        .research_release(
            &g.net.nodes[HOLDER],
            &g.request(g.credential_from(INSTITUTE)),
        )
        .unwrap_err();
    assert!(matches!(
        err,
        LedgerError::Research(ResearchError::TooFewPatients)
    ));
}
