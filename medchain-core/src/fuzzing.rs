//! Entry points for the fuzz targets in `fuzz/` and for the corpus replay test
//! (`tests/tests/fuzz_corpus.rs`). Not part of the public API.
//!
//! Each function takes arbitrary bytes, decodes them as one top-level type and, when decoding
//! succeeds, checks that re-encoding gives back exactly the input (the encoding is canonical, so
//! `encode ∘ decode` must be the identity on every accepted input) and runs the cheap checks
//! that follow decoding in real use (signature verification, opening with a fixed key).
//!
//! The functions never panic except on a failed round-trip assertion, which is a real bug.
//!
//! # Adding a target
//! Write one `pub fn decode_xxx(data: &[u8])` here (usually `let Some(v) = round_trip::<T>(data)`
//! and a few checks), add it to [`TARGETS`], add `fuzz/fuzz_targets/decode_xxx.rs` (one line, copy
//! a sibling) with its `[[bin]]` entry in `fuzz/Cargo.toml`, and a few seed files under
//! `fuzz/corpus/decode_xxx/`. The replay test picks it up by name.

use std::any::type_name;

use rand_core::{Infallible, TryCryptoRng, TryRng};

use crate::encoding::{Decode, Encode};
use crate::fhir;
use crate::hash::tagged_hash_parts;
use crate::keys::{BackupParams, Identity, PublicIdentity};
use crate::seal::{KeyEnvelope, NetworkKey, NetworkSealed, SealedRecord};
use crate::tx::{Transaction, TxBody};

/// A fuzz entry point: takes any bytes, panics only on a real bug.
pub type FuzzFn = fn(&[u8]);

/// Every fuzz entry point by name. The name is the fuzz target's name and the name of its corpus
/// directory `fuzz/corpus/<name>/`.
pub const TARGETS: &[(&str, FuzzFn)] = &[
    ("decode_transaction", decode_transaction),
    ("decode_sealed_record", decode_sealed_record),
    ("decode_tx_body", decode_tx_body),
    ("decode_key_envelope", decode_key_envelope),
    ("decode_network_sealed", decode_network_sealed),
    ("decode_public_identity", decode_public_identity),
    ("restore_backup", restore_backup),
    ("parse_fhir", parse_fhir),
    ("identity_text", identity_text),
    ("decode_message", decode_message),
    ("decode_block", decode_block),
    ("decode_vote", decode_vote),
    ("decode_genesis", decode_genesis),
    ("decode_consent", decode_consent),
    ("decode_commit_proof", decode_commit_proof),
    ("decode_merkle_proof", decode_merkle_proof),
    ("decode_index_entry", decode_index_entry),
    ("decode_block_filter", decode_block_filter),
    ("decode_filter_segment", decode_filter_segment),
    ("decode_credential", decode_credential),
    ("decode_inclusion_proof", decode_inclusion_proof),
    ("decode_audit_entry", decode_audit_entry),
    ("decode_sealed_writer_key", decode_sealed_writer_key),
];

/// The password [`restore_backup`] tries. Seed backups in the corpus are made with it.
pub const FUZZ_BACKUP_PASSWORD: &[u8] = b"medchain-fuzz-password";

/// A deterministic byte stream for building fixed test keys: SHA-256 in counter mode over a
/// seed. It is *not* a source of secret randomness (everything it yields is public), which is
/// why it stays private to this module.
struct FixedRng {
    seed: &'static str,
    counter: u64,
    buf: [u8; 32],
    used: usize,
}

impl FixedRng {
    fn new(seed: &'static str) -> Self {
        Self {
            seed,
            counter: 0,
            buf: [0; 32],
            used: 32,
        }
    }
}

impl TryRng for FixedRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        for byte in dest {
            if self.used == 32 {
                self.buf = tagged_hash_parts(
                    "medchain/fuzzing/fixed-rng",
                    &[self.seed.as_bytes(), &self.counter.to_be_bytes()],
                );
                self.counter += 1;
                self.used = 0;
            }
            *byte = self.buf[self.used];
            self.used += 1;
        }
        Ok(())
    }
}

// Needed to call the key constructors; the keys made are public test fixtures (see above).
impl TryCryptoRng for FixedRng {}

/// A fixed identity whose secret is public. Seed records are sealed to it and seed envelopes
/// addressed to it, so fuzzing reaches the decryption paths. Never use it for real data.
pub fn fuzz_identity() -> Identity {
    Identity::generate(&mut FixedRng::new("identity"))
}

/// A fixed network key whose value is public. Seed transactions are made under it, so fuzzing
/// reaches body decryption. Never use it for real data.
pub fn fuzz_network_key() -> NetworkKey {
    NetworkKey::generate(&mut FixedRng::new("network key"))
}

/// Decodes `data` as a whole `T`; if that succeeds, asserts that re-encoding gives `data` back.
///
/// # Panics
/// When the round trip is not byte-identical: the encoding would not be canonical.
pub fn round_trip<T: Decode + Encode>(data: &[u8]) -> Option<T> {
    let value = T::from_bytes(data).ok()?;
    let again = value.to_bytes();
    assert!(
        again == data,
        "{}: re-encoding a decoded value changed its bytes ({} -> {} bytes)",
        type_name::<T>(),
        data.len(),
        again.len()
    );
    Some(value)
}

/// A [`Transaction`]: round trip, id, strict verification, body opening with
/// [`fuzz_network_key`].
pub fn decode_transaction(data: &[u8]) {
    let Some(tx) = round_trip::<Transaction>(data) else {
        return;
    };
    let id = tx.id();
    let direct = Transaction::decode_verified(data).map(|v| v.id());
    match tx.verify() {
        Ok(verified) => {
            assert_eq!(
                verified.id(),
                id,
                "verified id differs from the computed id"
            );
            assert_eq!(
                direct,
                Ok(id),
                "decode_verified disagrees with decode + verify"
            );
            let _ = verified.open_body(&fuzz_network_key());
        }
        Err(_) => assert!(direct.is_err(), "decode_verified accepted a bad signature"),
    }
}

/// A [`SealedRecord`]: round trip, then an attempt to open it as [`fuzz_identity`].
pub fn decode_sealed_record(data: &[u8]) {
    let Some(record) = round_trip::<SealedRecord>(data) else {
        return;
    };
    if let Ok(opened) = record.open(&fuzz_identity()) {
        let _ = opened.resource();
    }
}

/// A [`TxBody`] (the plaintext inside a transaction): round trip and the stateless checks.
pub fn decode_tx_body(data: &[u8]) {
    let Some(body) = round_trip::<TxBody>(data) else {
        return;
    };
    let _ = body.check(&fuzz_chain());
}

/// A [`KeyEnvelope`]: round trip, then an attempt to unwrap it as a network key for
/// [`fuzz_identity`].
pub fn decode_key_envelope(data: &[u8]) {
    let Some(envelope) = round_trip::<KeyEnvelope>(data) else {
        return;
    };
    let _ = NetworkKey::unwrap_from(&envelope, &fuzz_identity());
}

/// A [`NetworkSealed`] message: round trip, then an attempt to open it with
/// [`fuzz_network_key`] and empty associated data.
pub fn decode_network_sealed(data: &[u8]) {
    let Some(sealed) = round_trip::<NetworkSealed>(data) else {
        return;
    };
    let _ = fuzz_network_key().open(&sealed, b"");
}

/// A [`PublicIdentity`]: round trip, and the text form round trips too.
pub fn decode_public_identity(data: &[u8]) {
    let Some(public) = round_trip::<PublicIdentity>(data) else {
        return;
    };
    let _ = public.id();
    let text = public.to_text();
    assert_eq!(
        PublicIdentity::from_text(&text),
        Ok(public),
        "text form does not round trip"
    );
}

/// Backups asking for more Argon2id work than this are only checked for shape, not derived:
/// a fuzzer would otherwise spend seconds per input on accepted-but-costly parameters.
const FUZZ_MAX_BACKUP_COST_KIB: u64 = 1024;

/// An identity backup, restored with [`FUZZ_BACKUP_PASSWORD`]. A restored identity is exported
/// again with the same parameters, salt and nonce, which must reproduce the input exactly.
pub fn restore_backup(data: &[u8]) {
    // Header: version (1), memory KiB, iterations, lanes (u32 each), salt (16), nonce (12).
    if data.len() >= 13 {
        let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
        let (memory, iterations, lanes) = (word(1), word(5), word(9));
        let accepted = (1..=8).contains(&lanes)
            && (8 * lanes..=BackupParams::MAX_MEMORY_KIB).contains(&memory)
            && (1..=16).contains(&iterations);
        if accepted && u64::from(memory) * u64::from(iterations) > FUZZ_MAX_BACKUP_COST_KIB {
            return;
        }
    }
    let Ok(identity) = Identity::restore_backup(data, FUZZ_BACKUP_PASSWORD) else {
        return;
    };
    // Restoring succeeded, so the input is a well-formed backup of 1 + 12 + 16 + 12 + 4 + 80
    // bytes; export it again with the same randomness.
    let word = |i: usize| u32::from_be_bytes([data[i], data[i + 1], data[i + 2], data[i + 3]]);
    let params = BackupParams {
        memory_kib: word(1),
        iterations: word(5),
        parallelism: word(9),
    };
    let mut replay = ReplayRng(&data[13..13 + 16 + 12]);
    let again = identity
        .export_backup(FUZZ_BACKUP_PASSWORD, params, &mut replay)
        .ok();
    assert!(
        again.as_deref() == Some(data),
        "restored identity does not export to the same backup"
    );
}

/// Replays fixed bytes as "randomness" (used to re-export a backup with its own salt and nonce).
struct ReplayRng<'a>(&'a [u8]);

impl TryRng for ReplayRng<'_> {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Infallible> {
        let n = dest.len().min(self.0.len());
        dest[..n].copy_from_slice(&self.0[..n]);
        dest[n..].fill(0);
        self.0 = &self.0[n..];
        Ok(())
    }
}

// Only replays bytes that came from the input, to reproduce it; never used to make secrets.
impl TryCryptoRng for ReplayRng<'_> {}

/// A FHIR R4 resource check. An accepted resource, serialized again, must be accepted again as
/// the same resource type.
pub fn parse_fhir(data: &[u8]) {
    let Ok(resource) = fhir::parse_resource(data) else {
        return;
    };
    let again = serde_json::to_vec(resource.json()).ok();
    let reparsed = again.as_deref().map(fhir::parse_resource);
    assert!(
        matches!(&reparsed, Some(Ok(r)) if r.resource_type() == resource.resource_type()),
        "an accepted FHIR resource is not accepted after re-serialization"
    );
}

/// The printable identity form `mcid1…`. An accepted text, printed again, gives the input in
/// canonical form (trimmed, lower-case hex).
pub fn identity_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(public) = PublicIdentity::from_text(text) else {
        return;
    };
    assert_eq!(
        public.to_text(),
        text.trim().to_ascii_lowercase(),
        "identity text is not canonical after a round trip"
    );
    let _ = round_trip::<PublicIdentity>(&public.to_bytes());
}

/// A consensus [`crate::protocol::Message`]: decoding never panics and an accepted message
/// re-encodes to exactly the input; a node of the fuzz test network handles it (from a member,
/// at the first and at the last instant) without panicking, whatever numbers it carries.
pub fn decode_message(data: &[u8]) {
    let Some(msg) = round_trip::<crate::protocol::Message>(data) else {
        return;
    };
    let _ = msg.name();
    let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
    let config =
        crate::protocol::NodeConfig::consensus_only(net.genesis.clone(), net.nodes[0].duplicate());
    if let Ok(mut node) = crate::protocol::Node::new(config, net.genesis.created_at_ms) {
        let from = net.nodes[1].verify_key();
        node.handle_message(from, data, net.genesis.created_at_ms);
        node.handle_message(from, data, u64::MAX);
        node.handle_timeout(u64::MAX);
    }
}

/// A block: decode, round-trip, hash, and validate against the fuzz test network's genesis
/// (validation must never panic, whatever it is given).
pub fn decode_block(data: &[u8]) {
    let Some(block) = round_trip::<crate::block::Block>(data) else {
        return;
    };
    let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
    let tip = crate::block::ChainTip::genesis(&net.genesis);
    let _ = block.validate(&net.genesis, &tip, &mut crate::block::NoRules);
}

/// A vote: decode, round-trip, verify against the fuzz test network.
pub fn decode_vote(data: &[u8]) {
    let Some(vote) = round_trip::<crate::vote::Vote>(data) else {
        return;
    };
    let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
    let _ = vote.verify(&net.genesis);
}

/// A genesis configuration.
pub fn decode_genesis(data: &[u8]) {
    if let Some(g) = round_trip::<crate::genesis::Genesis>(data) {
        let _ = (g.hash(), g.quorum_size(), g.fault_tolerance());
    }
}

/// A consent document, and its FHIR export/import.
pub fn decode_consent(data: &[u8]) {
    if let Some(c) = round_trip::<crate::consent::Consent>(data) {
        if c.check().is_ok() {
            let _ = crate::consent::consent_from_fhir(&crate::consent::consent_to_fhir(&c));
        }
    }
}

/// A commit proof, checked against the fuzz test network.
pub fn decode_commit_proof(data: &[u8]) {
    if let Some(p) = round_trip::<crate::chain::CommitProof>(data) {
        let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
        let _ = p.verify(&net.genesis, &p.child.prev, p.child.round.saturating_sub(1));
    }
}

/// A Merkle inclusion proof, verified against an arbitrary root.
pub fn decode_merkle_proof(data: &[u8]) {
    if let Some(p) = round_trip::<crate::merkle::MerkleProof>(data) {
        let _ = p.verify(&crate::hash::MerkleRoot::from_byte_array([7; 32]), &[1; 32]);
    }
}

/// A secure-index entry.
pub fn decode_index_entry(data: &[u8]) {
    if let Some(e) = round_trip::<crate::index::IndexEntry>(data) {
        let _ = e.padded_len();
    }
}

/// A block's secure-index filter, and its segments.
pub fn decode_block_filter(data: &[u8]) {
    if let Some(f) = round_trip::<crate::index::BlockFilter>(data) {
        let _ = (f.digest(), f.entry_count());
        for s in f.segments() {
            let _ = (s.digest(), s.key_count());
        }
    }
}

/// One contributor's filter segment (sent in a SignBlock response), joined into a filter.
pub fn decode_filter_segment(data: &[u8]) {
    if let Some(s) = round_trip::<crate::index::FilterSegment>(data) {
        let _ = s.digest();
        let n = s.entry_count();
        let _ = crate::index::BlockFilter::from_segments(n, vec![s]).map(|f| f.to_bytes());
    }
}

/// A light-client inclusion proof (what a wallet receives from a node), verified against the
/// fuzz test network's genesis.
pub fn decode_inclusion_proof(data: &[u8]) {
    if let Some(p) = round_trip::<crate::light::InclusionProof>(data) {
        let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
        let _ = p.verify(&net.genesis);
    }
}

/// An audit entry in its stored form (what a wallet decodes from a node's audit trail), and
/// its FHIR AuditEvent.
pub fn decode_audit_entry(data: &[u8]) {
    if let Some(e) = round_trip::<crate::ledger::AuditEntry>(data) {
        let _ = crate::access::audit_event(&e);
    }
}

/// A role credential, verified against the fuzz test network.
pub fn decode_credential(data: &[u8]) {
    if let Some(c) = round_trip::<crate::credential::Credential>(data) {
        let net = crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1);
        let _ = c.verify(&net.genesis, &c.holder, 0);
    }
}

/// A patient's sealed writer index key (an enrolment): round trip, the public checks on
/// [`fuzz_chain`], then an import as [`fuzz_identity`] (the writer the seeds are sealed to) for
/// the patient it names.
pub fn decode_sealed_writer_key(data: &[u8]) {
    let Some(s) = round_trip::<crate::index::SealedWriterKey>(data) else {
        return;
    };
    let chain = fuzz_chain();
    let _ = s.verify(&chain);
    let patient = *s.patient();
    if let (Ok(key), Ok(kw)) = (
        s.import(&fuzz_identity(), &chain, &patient),
        crate::index::Keyword::resource_type("Observation"),
    ) {
        let _ = key.trapdoor(&kw);
    }
}

/// The chain id of the fuzz test network: what the corpus's signed bodies are signed for.
pub fn fuzz_chain() -> crate::hash::ChainId {
    static CHAIN: std::sync::OnceLock<crate::hash::ChainId> = std::sync::OnceLock::new();
    *CHAIN.get_or_init(|| {
        crate::testkit::TestNet::new(FUZZ_NET_SEED, 4, 1)
            .genesis
            .chain_id()
    })
}

/// The seed of the test network the fuzz targets validate against (the corpus generator uses
/// the same network, so seeds reach deep into validation).
pub const FUZZ_NET_SEED: u64 = 0xf022;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_keys_are_fixed() {
        assert_eq!(fuzz_identity().public(), fuzz_identity().public());
        assert_eq!(
            fuzz_network_key().fingerprint(),
            fuzz_network_key().fingerprint()
        );
    }

    #[test]
    fn targets_survive_trivial_inputs() {
        for (_, f) in TARGETS {
            f(b"");
            f(&[0]);
            f(&[1; 200]);
            f(&[0xff; 200]);
        }
    }

    #[test]
    fn backup_target_round_trips_a_real_backup() {
        let mut rng = FixedRng::new("backup test");
        let backup = fuzz_identity()
            .export_backup(
                FUZZ_BACKUP_PASSWORD,
                BackupParams::dangerous_test_only(),
                &mut rng,
            )
            .unwrap();
        restore_backup(&backup);
    }
}
