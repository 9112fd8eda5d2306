//! Crash safety: a writer process is SIGKILLed at random points many times while it appends
//! blocks; after each kill the store reopens, verifies, holds every block the writer reported
//! committed, and no partial block. Torn WAL tails fall back to the last whole commit.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use medchain_core::store::LedgerStore;
use medchain_core::testkit::TestNet;
use medchain_store::{wal_path, Ledger, SqliteStore};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

const SEED: u64 = 41;
const PER_BLOCK: u64 = 10;

/// Opens the store after a crash and checks it: verifies, holds `committed`, no partial block.
fn check_after_crash(path: &std::path::Path, committed: u64) -> u64 {
    let mut net = TestNet::new(SEED, 4, 1);
    let patient = medchain_core::keys::Identity::generate(&mut net.rng);
    let ledger = Ledger::open_sqlite(path, network_key(&mut net))
        .unwrap_or_else(|e| panic!("the store does not reopen after a kill: {e}"));
    let h = ledger.height();
    assert!(
        h >= committed,
        "block {committed} was reported committed, the store ends at {h}"
    );
    let summary = ledger
        .verify(|_| {})
        .unwrap_or_else(|e| panic!("verify after a kill: {e}"));
    assert_eq!(summary.blocks, h);
    assert_eq!(
        summary.transactions,
        h * PER_BLOCK,
        "a partial block is stored"
    );
    let records = ledger.records_of(&patient.verify_key()).expect("records");
    assert_eq!(
        records.len() as u64,
        h * PER_BLOCK,
        "the state does not match the blocks"
    );
    assert!(ledger.store().block(h + 1).expect("read").is_none());
    h
}

#[test]
fn sigkill_at_random_points_loses_nothing_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    let seed = rand_core::UnwrapErr(getrandom::SysRng).next_u64();
    eprintln!("crash test kill-schedule seed: {seed}");
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let start = Instant::now();
    let mut kills = 0;
    let mut committed = 0u64;
    while kills < 40 && start.elapsed() < Duration::from_secs(50) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_medchain-store-crash-writer"))
            .arg(&path)
            .arg(SEED.to_string())
            .arg(PER_BLOCK.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn writer");
        let stdout = child.stdout.take().expect("stdout");
        let (send, recv) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until the writer has caught up, then let it append for a random while.
        match recv.recv_timeout(Duration::from_secs(30)) {
            Ok(l) if l.starts_with("ready") => {}
            Ok(l) => panic!("unexpected writer output before ready: {l}"),
            Err(e) => panic!(
                "the writer did not get ready: {e}; status {:?}",
                child.try_wait()
            ),
        }
        let delay = Duration::from_micros(rng.next_u64() % 80_000);
        std::thread::sleep(delay);
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the writer exited by itself: {status}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("wait");
        kills += 1;
        reader.join().expect("reader");
        for line in recv.try_iter() {
            let h: u64 = line
                .strip_prefix("committed ")
                .and_then(|h| h.parse().ok())
                .unwrap_or_else(|| panic!("unexpected writer output: {line}"));
            committed = committed.max(h);
        }
        let h = check_after_crash(&path, committed);
        committed = committed.max(h);
    }
    eprintln!(
        "{kills} kills, {committed} blocks committed in {:?}",
        start.elapsed()
    );
    assert!(kills >= 30, "only {kills} kills in the time bound");
    assert!(
        committed >= 10,
        "the writer made too little progress: {committed} blocks"
    );
}

#[test]
fn a_torn_wal_tail_falls_back_to_the_last_whole_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("live.db");
    let mut net = TestNet::new(SEED, 4, 1);
    let patient = medchain_core::keys::Identity::generate(&mut net.rng);
    let key = network_key(&mut net);
    let mut ledger = Ledger::create_sqlite(&path, &net.genesis, key).expect("create");
    ledger.store().checkpoint().expect("checkpoint");
    for _ in 0..6 {
        let txs = (0..PER_BLOCK)
            .map(|_| record_tx(&mut net, &patient, &observation("w")).1)
            .collect();
        commit(&mut ledger, &mut net, txs);
    }
    let wal = std::fs::read(wal_path(&path)).expect("wal");
    let main = std::fs::read(&path).expect("db");
    assert!(wal.len() > 32 + 24 + 8192, "the WAL holds no frames");
    // Cut the WAL at several points: mid last frame, mid earlier frames, inside its header.
    for cut in [wal.len() - 100, wal.len() * 2 / 3, wal.len() / 3, 10] {
        let copy = dir.path().join(format!("torn{cut}.db"));
        std::fs::write(&copy, &main).expect("copy db");
        std::fs::write(wal_path(&copy), &wal[..cut]).expect("copy wal");
        let store = SqliteStore::open(&copy, &network_key(&mut net))
            .unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        let opened = Ledger::with_store(store, None, network_key(&mut net)).expect("ledger");
        let h = opened.height();
        assert!(h < 6, "cut {cut}: a torn commit was accepted (height {h})");
        let summary = opened.verify(|_| {}).expect("verify");
        assert_eq!(
            summary.transactions,
            h * PER_BLOCK,
            "cut {cut}: partial block"
        );
        assert_eq!(
            opened
                .records_of(&patient.verify_key())
                .expect("records")
                .len() as u64,
            h * PER_BLOCK
        );
    }
}
