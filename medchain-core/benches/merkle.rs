//! Merkle root benchmark against the raw SHA-256 bound, measured in the same run.
//!
//! Run: `cargo bench -p medchain-core --bench merkle`
//!
//! For `n` leaves the root costs `n - 1` inner-node hashes (65-byte messages, two SHA-256
//! blocks each); hashing the leaves (33-byte messages, one block each) adds `n` more. Printed:
//!
//! * `merkle_root`: root from leaf hashes vs `n - 1` raw SHA-256 calls on 65-byte messages;
//! * the same vs the pure compression bound: one SHA-256 stream of exactly `2(n - 1)` blocks;
//! * `leaves+root`: leaf hashing of `n` 32-byte transaction ids plus the root vs `n` 33-byte
//!   and `n - 1` 65-byte raw calls;
//! * `merkle_root_checked` (with the duplicate check), the `rs_merkle` tree build, a proof and its
//!   verification, for reference.
//!
//! `ratio` is bound time / measured time: 1.00 means at the bound.

use std::hint::black_box;
use std::time::{Duration, Instant};

use medchain_core::hash::sha256;
use medchain_core::merkle::{self, MerkleTree};
use sha2::{Digest, Sha256};

/// Times every closure `runs` times, interleaved (one of each per round, so that load from
/// other processes hits them alike), with `inner` calls per timing; returns the medians.
fn medians<const K: usize>(
    runs: usize,
    inner: usize,
    fs: &mut [&mut dyn FnMut(); K],
) -> [Duration; K] {
    for f in fs.iter_mut() {
        f(); // warm up
    }
    let mut times = vec![Vec::with_capacity(runs); K];
    for _ in 0..runs {
        for (f, t) in fs.iter_mut().zip(times.iter_mut()) {
            let start = Instant::now();
            for _ in 0..inner {
                f();
            }
            t.push(start.elapsed() / inner as u32);
        }
    }
    let mut out = [Duration::ZERO; K];
    for (o, mut t) in out.iter_mut().zip(times) {
        t.sort();
        *o = t[t.len() / 2];
    }
    out
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn ratio(bound: Duration, actual: Duration) -> f64 {
    bound.as_secs_f64() / actual.as_secs_f64()
}

fn bench(n: usize) {
    let (runs, inner) = if n <= 1_000 { (41, 20) } else { (21, 1) };
    let tx_ids: Vec<[u8; 32]> = (0..n as u64).map(|i| sha256(&i.to_be_bytes())).collect();
    let leaves: Vec<[u8; 32]> = tx_ids.iter().map(|id| merkle::leaf_hash(id)).collect();

    // Raw inputs of the bound: independent messages of the same sizes as the tree's.
    let node_msgs: Vec<[u8; 65]> = (0..n - 1)
        .map(|i| {
            let mut m = [1u8; 65];
            m[1..33].copy_from_slice(&leaves[i]);
            m[33..].copy_from_slice(&leaves[(i + 1) % n]);
            m
        })
        .collect();
    let leaf_msgs: Vec<[u8; 33]> = tx_ids
        .iter()
        .map(|id| {
            let mut m = [0u8; 33];
            m[1..].copy_from_slice(id);
            m
        })
        .collect();
    // 2(n-1) blocks exactly: 64 * 2(n-1) - 9 message bytes + 9 bytes of padding and length.
    let stream = vec![0x5au8; 128 * (n - 1) - 9];

    let root = merkle::merkle_root(&leaves);
    assert_eq!(MerkleTree::new(&leaves).unwrap().root(), root);

    let [t_root, t_node_bound, t_stream_bound, t_full, t_leaf_bound, t_checked] = medians(
        runs,
        inner,
        &mut [
            &mut || {
                black_box(merkle::merkle_root(black_box(&leaves)));
            },
            &mut || {
                for m in black_box(&node_msgs) {
                    black_box(Sha256::digest(m));
                }
            },
            &mut || {
                black_box(Sha256::digest(black_box(&stream)));
            },
            &mut || {
                let leaves: Vec<[u8; 32]> = black_box(&tx_ids)
                    .iter()
                    .map(|id| merkle::leaf_hash(id))
                    .collect();
                black_box(merkle::merkle_root(&leaves));
            },
            &mut || {
                for m in black_box(&leaf_msgs) {
                    black_box(Sha256::digest(m));
                }
            },
            &mut || {
                black_box(merkle::merkle_root_checked(black_box(&leaves)).unwrap());
            },
        ],
    );
    let tree = MerkleTree::new(&leaves).unwrap();
    let index = n / 3;
    let proof = tree.proof(index).unwrap();
    let [t_rs] = medians(
        runs.min(7),
        1,
        &mut [&mut || {
            black_box(MerkleTree::new(black_box(&leaves)).unwrap());
        }],
    );
    let [t_proof, t_verify] = medians(
        runs,
        20,
        &mut [
            &mut || {
                black_box(tree.proof(black_box(index)).unwrap());
            },
            &mut || {
                black_box(&proof).verify(&root, &leaves[index]).unwrap();
            },
        ],
    );

    println!(
        "merkle_root n={n}: {}; raw bound {} ({} SHA-256 calls of 65 bytes); ratio {:.2}",
        ms(t_root),
        ms(t_node_bound),
        n - 1,
        ratio(t_node_bound, t_root)
    );
    println!(
        "merkle_root n={n}: {}; compression bound {} ({} blocks in one stream); ratio {:.2}",
        ms(t_root),
        ms(t_stream_bound),
        2 * (n - 1),
        ratio(t_stream_bound, t_root)
    );
    let full_bound = t_leaf_bound + t_node_bound;
    println!(
        "leaves+root n={n}: {}; raw bound {} ({n} calls of 33 bytes + {} of 65 bytes); ratio {:.2}",
        ms(t_full),
        ms(full_bound),
        n - 1,
        ratio(full_bound, t_full)
    );
    println!(
        "merkle_root_checked n={n}: {}; raw bound {}; ratio {:.2}",
        ms(t_checked),
        ms(t_node_bound),
        ratio(t_node_bound, t_checked)
    );
    println!(
        "rs_merkle tree build n={n}: {}; proof {:.2} us; verify {:.2} us ({} siblings)",
        ms(t_rs),
        t_proof.as_secs_f64() * 1e6,
        t_verify.as_secs_f64() * 1e6,
        proof.siblings().len()
    );
}

fn main() {
    // `cargo bench` passes `--bench`; under `cargo test --benches` run a quick smoke check only.
    if !std::env::args().any(|a| a == "--bench") {
        bench(64);
        return;
    }
    for n in [1_000, 100_000] {
        bench(n);
    }
}
