//! The host's resident memory over a long run: a one-member network (a sole validator commits
//! alone, so the figure is the node's and the ledger's, not a driver's) commits `MEDCHAIN_TXS`
//! transactions (default 1,000,000) — patients' consent grants, signed by 1,000 patients — in
//! batches of one full block, and prints RSS at the start and every tenth of the run. The node
//! reads its committed chain from the ledger (`docs/protocol.md` §7): RSS stays flat.
//!
//! `cargo bench -p medchain --bench node_memory`; `MEDCHAIN_TXS=100000` for a shorter run.

use std::time::Instant;

use getrandom::SysRng;
use medchain::{genesis_of, Actor, Consent, Host, Identity, NetworkKey, Provision, Purpose};
use rand_core::UnwrapErr;

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total: usize = std::env::var("MEDCHAIN_TXS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let rng = &mut UnwrapErr(SysRng);
    let dir = tempfile::tempdir()?;
    let (hospital, network) = (Identity::generate(rng), NetworkKey::generate(rng));
    let mut now = 1_790_000_000_000;
    let genesis = genesis_of("memory", &[("St. Mary's", &hospital)], &network, now)?;
    let batch = genesis.max_block_txs as usize;
    let chain = genesis.chain_id();
    let path = dir.path().join("ledger.sqlite");
    let mut host = Host::create(&path, &genesis, hospital, network, now)?;
    let patients: Vec<Identity> = (0..1_000).map(|_| Identity::generate(rng)).collect();
    let doctor = Identity::generate(rng).verify_key();
    let start = Instant::now();
    let mut done = 0usize;
    let mut next_report = 0usize;
    println!("node_memory: {total} transactions, blocks of up to {batch}");
    println!(
        "  {:>9} tx committed, height {:>4}: RSS {:>7.1} MB",
        0,
        0,
        rss_mb()
    );
    while done < total {
        let n = batch.min(total - done);
        let mut last = None;
        for i in 0..n {
            let patient = &patients[(done + i) % patients.len()];
            let consent = Consent {
                patient: patient.public(),
                issued_ms: now + (done + i) as u64,
                summary: String::new(),
                period: Default::default(),
                emergency: None,
                provisions: vec![Provision::permit()
                    .actor(Actor::Party(doctor))
                    .purpose(Purpose::Treat)],
            };
            last = Some(host.submit_patient_signed(&consent.grant_body(patient, &chain)?, now)?);
        }
        let Some(last) = last else { break };
        for _ in 0..10_000 {
            if host.is_committed(&last) {
                break;
            }
            while host.poll_transmit().is_some() {}
            while host.poll_event().is_some() {}
            match host.poll_timeout() {
                Some(t) => {
                    now = now.max(t);
                    host.handle_timeout(now)?;
                }
                None => break,
            }
        }
        if !host.is_committed(&last) {
            return Err(format!("the batch after {done} transactions did not commit").into());
        }
        done += n;
        if done >= next_report {
            let file_mb = std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1e6);
            println!(
                "  {done:>9} tx committed, height {:>4}: RSS {:>7.1} MB, ledger file {file_mb:>7.1} MB ({:.0} tx/s so far)",
                host.ledger().height(),
                rss_mb(),
                done as f64 / start.elapsed().as_secs_f64()
            );
            next_report += (total / 10).max(1);
        }
    }
    Ok(())
}
