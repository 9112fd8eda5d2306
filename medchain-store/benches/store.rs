//! Store benchmarks (harness = false): committed records per second into SQLite (and
//! PostgreSQL when MEDCHAIN_PG_URL is set) with 1,000-record blocks, the append path measured
//! apart from building and validating blocks; and full verification of a large ledger read
//! from SQLite, as a ratio to the raw strict ed25519 rate and with its peak memory.
//!
//! `cargo bench -p medchain-store --bench store [--features postgres]`
//! Environment: MEDCHAIN_BENCH_BLOCKS (1,000-record blocks to append, default 10),
//! MEDCHAIN_BENCH_TXS (transactions in the verification ledger, default 100000).
#![allow(missing_docs)]

use std::time::Instant;

use getrandom::SysRng;
use medchain_core::access::record_class;
use medchain_core::block::CheckedBlock;
use medchain_core::chain::CommitProof;
use medchain_core::keys::Identity;
use medchain_core::ledger::{BlockEffects, LedgerState};
use medchain_core::seal::{seal_record, NetworkKey};
use medchain_core::store::LedgerStore;
use medchain_core::testkit::TestNet;
use medchain_core::tx::TxBody;
use medchain_store::{Ledger, SqliteStore, StoreError};
use rand_core::UnwrapErr;

const VERIFY_SEED: u64 = 77;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn vm_hwm_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn copy_key(net: &mut TestNet) -> NetworkKey {
    let env = net
        .network
        .wrap_for(&net.nodes[0].public(), &mut net.rng)
        .expect("wrap");
    NetworkKey::unwrap_from(&env, &net.nodes[0]).expect("unwrap")
}

type Built = (CheckedBlock, BlockEffects, CommitProof);

/// `blocks` blocks of `per_block` sealed FHIR records each, validated over a shadow state.
fn build_record_blocks(net: &mut TestNet, blocks: u64, per_block: usize) -> Vec<Built> {
    let patient = Identity::generate(&mut net.rng);
    let holder = net.nodes[4].public();
    let mut shadow = LedgerState::new();
    let mut out = Vec::new();
    for b in 0..blocks {
        let txs = (0..per_block)
            .map(|i| {
                let payload = format!(
                    r#"{{"resourceType":"Observation","status":"final","effectiveDateTime":"2026-10-01","code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4"}}]}},"note":[{{"text":"b{b} r{i}"}}]}}"#
                );
                let sealed = seal_record(payload.as_bytes(), &patient.public(), &[holder], &mut net.rng)
                    .expect("seal");
                let class = record_class(payload.as_bytes(), &medchain_core::consent::ConsentTagKey::for_patient(&patient), &mut net.rng).expect("class");
                net.tx(4, &TxBody::record_added(sealed, class), vec![])
            })
            .collect();
        let built = net.next_block(&shadow, txs).expect("block");
        shadow.commit(built.1.clone()).expect("shadow");
        out.push(built);
    }
    out
}

fn append_bench<S: LedgerStore<Error = StoreError>>(
    name: &str,
    mut store: S,
    net: &TestNet,
    blocks: &[Built],
) {
    store.init(&net.genesis).expect("init");
    let records: usize = blocks.iter().map(|b| b.0.tx_ids().len()).sum();
    let t = Instant::now();
    for (b, e, p) in blocks {
        store.append(b, e, Some(p)).expect("append");
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "append  {name:<10} {records} records in {} blocks: {s:.3} s = {:.0} records/s (append path only: encode, encrypt state rows, one transaction + fsync per block)",
        blocks.len(),
        records as f64 / s
    );
}

fn main() {
    if let Ok(path) = std::env::var("MEDCHAIN_BENCH_VERIFY_CHILD") {
        verify_child(&path);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let nblocks = env_u64("MEDCHAIN_BENCH_BLOCKS", 10);

    // 1. Building (sealing, signing, validating) 1,000-record blocks: measured apart.
    let mut net = TestNet::new(5, 4, 2);
    let t = Instant::now();
    let blocks = build_record_blocks(&mut net, nblocks, 1000);
    let s = t.elapsed().as_secs_f64();
    println!(
        "build   {} records in {nblocks} blocks (seal + sign + validate with ledger rules): {s:.2} s = {:.0} records/s",
        nblocks * 1000,
        (nblocks * 1000) as f64 / s
    );

    // 2. The append path into SQLite.
    let key = copy_key(&mut net);
    append_bench(
        "sqlite",
        SqliteStore::create(dir.path().join("append.db"), &key).expect("create"),
        &net,
        &blocks,
    );

    // 3. Validate + append through the Ledger (what a node does with a committed block).
    {
        let mut replay = TestNet::new(5, 4, 2);
        let k = copy_key(&mut replay);
        let mut ledger = Ledger::create_sqlite(dir.path().join("ledger.db"), &replay.genesis, k)
            .expect("ledger");
        let t = Instant::now();
        for (b, _, p) in &blocks {
            ledger
                .append_committed(b.block().clone(), p)
                .expect("append_committed");
        }
        let s = t.elapsed().as_secs_f64();
        println!(
            "ledger  sqlite     {} records: {s:.3} s = {:.0} records/s (validate over the store with ledger rules, parallel signature checks, then append)",
            nblocks * 1000,
            (nblocks * 1000) as f64 / s
        );
    }

    // 4. PostgreSQL.
    #[cfg(feature = "postgres")]
    match std::env::var("MEDCHAIN_PG_URL") {
        Ok(url) if !url.is_empty() => {
            let schema = format!("bench_{}", std::process::id());
            let store =
                medchain_store::PostgresStore::create(&url, &schema, &key).expect("pg create");
            append_bench("postgres", store, &net, &blocks);
        }
        _ => println!(
            "append  postgres   skipped: MEDCHAIN_PG_URL is not set (scripts/with-postgres.sh)"
        ),
    }
    #[cfg(not(feature = "postgres"))]
    println!("append  postgres   skipped: built without the `postgres` feature");
    drop(blocks);

    // 5. Full verification of a large ledger.
    let total = env_u64("MEDCHAIN_BENCH_TXS", 100_000);
    let path = dir.path().join("verify.db");
    let t = Instant::now();
    build_verify_ledger(&path, total);
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    println!(
        "ledger  built {total} transactions for verification in {:.1} s ({:.0} MB file)",
        t.elapsed().as_secs_f64(),
        bytes as f64 / 1e6
    );
    let raw = raw_verify_rate();
    println!("ed25519 strict verify, raw: {raw:.0} signatures/s");
    let out = std::process::Command::new(std::env::current_exe().expect("exe"))
        .env("MEDCHAIN_BENCH_VERIFY_CHILD", &path)
        .output()
        .expect("verify child");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}");
    if !out.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        std::process::exit(1);
    }
    if let Some(rate) = text
        .lines()
        .find_map(|l| l.strip_prefix("verify-rate "))
        .and_then(|r| r.trim().parse::<f64>().ok())
    {
        println!("verify  throughput / raw ed25519 bound = {:.2}", rate / raw);
    }
}

/// A ledger of `total` transactions: one record, then 1,000-transaction blocks of access logs.
fn build_verify_ledger(path: &std::path::Path, total: u64) {
    let mut net = TestNet::new(VERIFY_SEED, 4, 1);
    let patient = Identity::generate(&mut net.rng);
    let key = copy_key(&mut net);
    let mut store = SqliteStore::create(path, &key).expect("create");
    store.init(&net.genesis).expect("init");
    let payload = br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#;
    let sealed = seal_record(
        payload,
        &patient.public(),
        &[net.nodes[4].public()],
        &mut net.rng,
    )
    .expect("seal");
    let class = record_class(
        payload,
        &medchain_core::consent::ConsentTagKey::for_patient(&patient),
        &mut net.rng,
    )
    .expect("class");
    let rec = net.tx(4, &TxBody::record_added(sealed.clone(), class), vec![]);
    let (b, e, p) = net.next_block(&store, vec![rec]).expect("block 1");
    store.append(&b, &e, Some(&p)).expect("append");
    let reader = Identity::generate(&mut UnwrapErr(SysRng)).public();
    let mut done = 1u64;
    while done < total {
        let n = (total - done).min(1000);
        let txs = (0..n)
            .map(|i| {
                let body = TxBody::AccessLogged {
                    record_id: sealed.record_id(),
                    accessor: reader,
                    purpose: "TREAT".into(),
                    consent_id: None,
                    emergency: false,
                    accessed_at_ms: net.now_ms + i,
                };
                net.tx(4, &body, vec![])
            })
            .collect();
        let (b, e, p) = net.next_block(&store, txs).expect("block");
        store.append(&b, &e, Some(&p)).expect("append");
        done += n;
    }
    store.checkpoint().expect("checkpoint");
}

fn raw_verify_rate() -> f64 {
    let id = Identity::generate(&mut UnwrapErr(SysRng));
    let vk = id.verify_key();
    let msgs: Vec<[u8; 32]> = (0..4000u32)
        .map(|i| {
            let mut m = [0u8; 32];
            m[..4].copy_from_slice(&i.to_be_bytes());
            m
        })
        .collect();
    let chain = medchain_core::hash::ChainId::from_byte_array([1; 32]);
    let sigs: Vec<_> = msgs
        .iter()
        .map(|m| id.sign(&chain, "medchain/bench", m))
        .collect();
    let t = Instant::now();
    for (m, s) in msgs.iter().zip(&sigs) {
        vk.verify(&chain, "medchain/bench", m, s).expect("verify");
    }
    msgs.len() as f64 / t.elapsed().as_secs_f64()
}

/// In a fresh process, so that its peak memory is the verification's alone.
fn verify_child(path: &str) {
    let mut net = TestNet::new(VERIFY_SEED, 4, 1);
    let key = copy_key(&mut net);
    let before = vm_hwm_mb();
    let ledger = Ledger::open_sqlite(path, key).expect("open");
    let t = Instant::now();
    let summary = ledger.verify(|_| {}).expect("verify");
    let s = t.elapsed().as_secs_f64();
    let rate = summary.transactions as f64 / s;
    println!(
        "verify  {} transactions in {} blocks from SQLite: {s:.2} s = {rate:.0} tx/s, peak memory (VmHWM) {:.1} MB (at open {before:.1} MB)",
        summary.transactions,
        summary.blocks,
        vm_hwm_mb()
    );
    println!("verify-rate {rate}");
}
