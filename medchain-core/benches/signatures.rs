//! Signature verification under medchain's rule (ZIP-215, docs/adr/0005-signature-validity.md):
//! one at a time (`VerifyKey::verify`) and in batches of 64 and of 1,000 (`keys::verify_batch`),
//! against the single strict-verify bound (`ed25519_dalek::VerifyingKey::verify_strict` over the
//! same framed messages), all measured in the same run, interleaved so that machine noise hits
//! each alike.
//!
//! Two sets of 1,000 signatures over 32-byte messages (transaction ids): by 1,000 distinct keys
//! (the worst case for a batch: no key terms merge), and by 4 keys (a block's transaction
//! signatures, which come from its few contributors).
//!
//! Run: `cargo bench -p medchain-core --bench signatures`.
//! Prints signatures/s on one core for each way and the ratio to the strict bound
//! (`strict time / time`: above 1.0 is faster than the bound).

#![allow(missing_docs, clippy::unwrap_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use medchain_core::hash::{domain, ChainId};
use medchain_core::keys::{verify_batch, Identity, Signature, SignedMessage, VerifyKey};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const N: usize = 1_000;
const CHAIN: ChainId = ChainId::from_byte_array([9; 32]);

struct Set {
    keys: Vec<VerifyKey>,
    msgs: Vec<[u8; 32]>,
    sigs: Vec<Signature>,
    /// The framed messages, for the strict bound.
    framed: Vec<Vec<u8>>,
}

fn set(signers: usize) -> Set {
    let mut rng = ChaCha20Rng::seed_from_u64(17);
    let ids: Vec<Identity> = (0..signers).map(|_| Identity::generate(&mut rng)).collect();
    let mut s = Set {
        keys: Vec::new(),
        msgs: Vec::new(),
        sigs: Vec::new(),
        framed: Vec::new(),
    };
    for i in 0..N {
        let id = &ids[i % signers];
        let mut msg = [0u8; 32];
        msg[..8].copy_from_slice(&(i as u64).to_be_bytes());
        s.sigs.push(id.sign(&CHAIN, domain::TX_SIG, &msg));
        s.keys.push(id.verify_key());
        s.msgs.push(msg);
        let mut framed = vec![domain::TX_SIG.len() as u8];
        framed.extend_from_slice(domain::TX_SIG.as_bytes());
        framed.extend_from_slice(CHAIN.as_byte_array());
        framed.extend_from_slice(&msg);
        s.framed.push(framed);
    }
    s
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

fn time(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

fn run(name: &str, s: &Set) {
    let items: Vec<SignedMessage<'_>> = (0..N)
        .map(|i| SignedMessage {
            key: &s.keys[i],
            chain: &CHAIN,
            label: domain::TX_SIG,
            message: &s.msgs[i],
            signature: &s.sigs[i],
        })
        .collect();
    let rounds = 21;
    let (mut strict, mut single, mut b64, mut b1000) = (vec![], vec![], vec![], vec![]);
    for _ in 0..rounds {
        strict.push(time(|| {
            for i in 0..N {
                let sig = ed25519_dalek::Signature::from_bytes(s.sigs[i].as_byte_array());
                s.keys[i]
                    .as_dalek()
                    .verify_strict(black_box(&s.framed[i]), &sig)
                    .unwrap();
            }
        }));
        single.push(time(|| {
            for it in &items {
                it.key
                    .verify(it.chain, it.label, black_box(it.message), it.signature)
                    .unwrap();
            }
        }));
        b64.push(time(|| {
            for chunk in items.chunks(64) {
                verify_batch(black_box(chunk)).unwrap();
            }
        }));
        b1000.push(time(|| verify_batch(black_box(&items)).unwrap()));
    }
    let strict = median(strict);
    let report = |way: &str, t: Duration| {
        println!(
            "signatures/{name}/{way}: {N} in {t:.2?} ({:.0} signatures/s on one core, {:.2}x the strict bound)",
            N as f64 / t.as_secs_f64(),
            strict.as_secs_f64() / t.as_secs_f64()
        );
    };
    report("verify-strict (bound)", strict);
    report("zip215-single", median(single));
    report("zip215-batch-64", median(b64));
    report("zip215-batch-1000", median(b1000));
}

fn main() {
    run("1000-keys", &set(N));
    run("4-keys", &set(4));
}
