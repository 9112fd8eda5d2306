//! Research export (harness = false): one `Ledger::research_release` over a stored SQLite
//! ledger of `MEDCHAIN_BENCH_PATIENTS` consenting patients (default 5,000), each with an HbA1c
//! and a diabetes diagnosis written by one member, so every record is the releaser's and every
//! one is opened, consent-checked and de-identified. Prints records per second next to the raw
//! cryptographic bound measured in the same run: per record the releaser verifies one ed25519
//! signature (strict single verification) and opens one record (`SealedRecord::open` through the
//! holder's self envelope: HKDF + two AES-GCM decryptions, no X25519), so one core cannot do
//! better than 1 / (verify + open); the bound for the machine is that times its cores. The
//! release verifies in batches, so a second bound uses a batch verification's share per record.
//!
//! `cargo bench -p medchain-store --bench research`
#![allow(missing_docs)]

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use medchain_core::keys::Identity;
use medchain_core::research::ResearchRequest;
use medchain_core::seal::NetworkKey;
use medchain_core::testkit::TestNet;
use medchain_core::tx::Transaction;
use medchain_store::Ledger;

#[path = "../tests/common/research.rs"]
mod fixture;
use fixture::{
    credential, diabetes_study, hba1c, record, research_grant, DIAGNOSIS, HOLDER, INSTITUTE,
};

fn main() {
    let patients: usize = std::env::var("MEDCHAIN_BENCH_PATIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut net = TestNet::new(41, 4, 2);
    net.now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let env = net
        .network
        .wrap_for(&net.nodes[0].public(), &mut net.rng)
        .expect("wrap");
    let key = NetworkKey::unwrap_from(&env, &net.nodes[0]).expect("unwrap");
    let mut ledger =
        Ledger::create_sqlite(dir.path().join("research.db"), &net.genesis, key).expect("create");
    let built = Instant::now();
    let mut sample = Vec::new();
    let mut pending = Vec::new();
    for i in 0..patients {
        let p = Identity::generate(&mut net.rng);
        let (obs, t1) = record(&mut net, &p, &hba1c(i));
        let (_, t2) = record(&mut net, &p, DIAGNOSIS);
        let grant = research_grant(&mut net, &p);
        if sample.len() < 1_000 {
            sample.push((obs, t1.clone(), p));
        }
        pending.extend([t1, t2, grant]);
        if pending.len() >= 999 || i + 1 == patients {
            let (b, _, proof) = net
                .next_block(ledger.store(), std::mem::take(&mut pending))
                .expect("block");
            ledger
                .append_committed(b.into_block(), &proof)
                .expect("append");
        }
    }
    let records = patients * 2;
    println!(
        "ledger: {patients} patients, {records} records of the releaser, {} blocks (built in {:.1} s)",
        ledger.height(),
        built.elapsed().as_secs_f64()
    );

    // The raw bound, in this run: one strict verification and one opening per record (the
    // holder's self envelope: no X25519). Also measured: a batch verification's share per
    // record (what the release does), and an X25519 envelope's opening (the patient's), for
    // what a record sealed without a self envelope would cost the holder.
    let holder = &net.nodes[HOLDER];
    let t = Instant::now();
    for (_, tx, _) in &sample {
        std::hint::black_box(tx.clone().verify().expect("verify"));
    }
    let verify_s = t.elapsed().as_secs_f64() / sample.len() as f64;
    let txs: Vec<_> = sample.iter().map(|(_, tx, _)| tx.clone()).collect();
    let t = Instant::now();
    let verified = Transaction::verify_batch(txs);
    let batch_s = t.elapsed().as_secs_f64() / sample.len() as f64;
    assert!(verified.iter().all(Result::is_ok), "the sample verifies");
    let t = Instant::now();
    for (sealed, _, _) in &sample {
        std::hint::black_box(sealed.open(holder).expect("open"));
    }
    let open_s = t.elapsed().as_secs_f64() / sample.len() as f64;
    let t = Instant::now();
    for (sealed, _, patient) in &sample {
        std::hint::black_box(sealed.open(patient).expect("open"));
    }
    let x25519_open_s = t.elapsed().as_secs_f64() / sample.len() as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per_core = 1.0 / (verify_s + open_s);
    let batch_per_core = 1.0 / (batch_s + open_s);
    println!(
        "bound: verify {:.1} µs + open {:.1} µs per record = {per_core:.0} records/s per core, {:.0} on {cores} core(s)",
        verify_s * 1e6,
        open_s * 1e6,
        per_core * cores as f64
    );
    println!(
        "  with batch verification ({:.1} µs per record): {:.0} records/s on {cores} core(s); an X25519 envelope opens in {:.1} µs",
        batch_s * 1e6,
        batch_per_core * cores as f64,
        x25519_open_s * 1e6
    );

    let researcher = Identity::generate(&mut net.rng);
    let request = ResearchRequest::sign(
        &researcher,
        &net.genesis.chain_id(),
        diabetes_study("dm2-bench"),
        credential(&net, INSTITUTE, &researcher),
    )
    .expect("request");
    let mut best = f64::INFINITY;
    let mut rows = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let release = ledger
            .research_release(holder, &request)
            .expect("research release");
        best = best.min(t.elapsed().as_secs_f64());
        rows = release.rows.len();
    }
    assert_eq!(rows, records, "every record is released");
    let rate = records as f64 / best;
    println!(
        "research_release: {records} records opened, consent-checked and de-identified in {:.3} s = {rate:.0} records/s; ratio to the {cores}-core bound {:.2}, to one core's {:.2}, to the batch bound {:.2}",
        best,
        rate / (per_core * cores as f64),
        rate / per_core,
        rate / (batch_per_core * cores as f64)
    );
}
