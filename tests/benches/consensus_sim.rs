//! Committed transactions per second in the simulator: 4 validators, 1,000-transaction blocks,
//! every node validating everything, transaction signatures checked in ZIP-215 batches on 1 or 2
//! threads per node (the store's `ParallelVerifier`, outside the core), against the raw
//! single-verification bound measured in the same run.
//!
//! Run: `cargo bench -p medchain-tests --bench consensus_sim`.

#![allow(missing_docs, clippy::print_stdout)]

use std::time::Instant;

use medchain_core::block::TxVerifier;
use medchain_store::ParallelVerifier;
use medchain_tests::sim;

fn main() {
    let validators = 4;
    let blocks = 20;
    let block_txs = 1_000u32;
    let total = blocks * block_txs as usize;
    // Raw bound: strict single verification rate on one core, in this run.
    let (genesis, _, net) = sim::network(&sim::Scenario::calm(7, validators));
    let id = sim::identity(7, 0);
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
    let sample: Vec<_> = (0..2_000)
        .map(|k| sim::access_tx(&id, &genesis.chain_id(), &net, k, sim::EPOCH_MS, &mut rng))
        .collect();
    let t = Instant::now();
    for tx in sample.iter().cloned() {
        std::hint::black_box(tx.verify().is_ok());
    }
    let per_core = sample.len() as f64 / t.elapsed().as_secs_f64();
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    // Every node verifies every transaction once (its own at submission, the miner at
    // contribution, the others in the block): `validators` verifications per transaction.
    let bound = per_core * cores as f64 / validators as f64;
    for (name, threads) in [("serial", 1usize), ("2-thread", 2)] {
        let r = sim::throughput(
            validators,
            total,
            block_txs,
            Box::new(move || {
                Box::new(ParallelVerifier::with_threads(threads)) as Box<dyn TxVerifier + Send>
            }),
        );
        println!(
            "consensus-sim/{name}: {} transactions in {} blocks committed by {validators} nodes in \
             {:.2?} wall ({} ms virtual): {:.0} tx/s",
            r.transactions,
            r.blocks,
            r.wall,
            r.virtual_ms,
            r.transactions as f64 / r.wall.as_secs_f64()
        );
    }
    println!(
        "consensus-sim/raw-bound: {per_core:.0} strict verifications/s per core x {cores} cores / \
         {validators} verifications per transaction = {bound:.0} tx/s (target >= 10,000 tx/s)"
    );
}

use rand_chacha::rand_core::SeedableRng;
