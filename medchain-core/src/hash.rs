//! SHA-256 digests, domain separation, and the digest newtypes.
//!
//! Every hash medchain computes outside the Merkle tree is a *tagged hash*:
//! `SHA-256(len(label) as u8 || label || data)`, where `label` is one of the ASCII constants in
//! [`domain`]. Two purposes can therefore never produce the same digest from the same bytes.
//! Signatures use the same framing of their own labels (see [`crate::keys`]).

use sha2::{Digest, Sha256};
use thiserror::Error;

/// Domain-separation labels. Each hash or signature purpose has exactly one.
pub mod domain {
    /// Transaction id: hash of a transaction's signed bytes.
    pub const TX_ID: &str = "medchain/v1/tx-id";
    /// Digest of a transaction's prunable payload (sealed record or wrapped key).
    pub const TX_PAYLOAD: &str = "medchain/v1/tx-payload";
    /// An institution's signature over a role credential.
    pub const CREDENTIAL_SIG: &str = "medchain/v1/credential-signature";
    /// Contributor signature over a transaction's signed bytes.
    pub const TX_SIG: &str = "medchain/v1/tx-signature";
    /// Commitment to a record's payload: over a secret salt and the payload.
    pub const PAYLOAD_COMMITMENT: &str = "medchain/v1/payload-commitment";
    /// Associated data of a sealed record.
    pub const RECORD_AAD: &str = "medchain/v1/record-aad";
    /// HKDF info for wrapping a record key to a reader.
    pub const KEY_WRAP: &str = "medchain/v1/key-wrap";
    /// `Identity::derive_secret` label of the secret a writer wraps its own record keys under
    /// (a self envelope, `seal::seal_record_as`).
    pub const SELF_WRAP: &str = "medchain/v1/self-wrap";
    /// HKDF info for a network-sealed body's per-message key.
    pub const NETWORK_SEAL: &str = "medchain/v1/network-seal";
    /// Fingerprint of the network-shared key (in genesis).
    pub const NETWORK_KEY_FINGERPRINT: &str = "medchain/v1/network-key-fingerprint";
    /// A party's short id: hash of both public keys.
    pub const PARTY_ID: &str = "medchain/v1/party-id";
    /// Checksum of the printable public identity.
    pub const IDENTITY_CHECKSUM: &str = "medchain/v1/identity-checksum";
    /// Associated data of a password-protected network key.
    pub const NETWORK_KEY_BACKUP_AAD: &str = "medchain/v1/network-key-backup";
    /// Associated data of an identity backup.
    pub const BACKUP_AAD: &str = "medchain/v1/identity-backup";
    /// A consent's id: hash of its canonical document.
    pub const CONSENT_ID: &str = "medchain/v1/consent-id";
    /// Study-scoped pseudonyms of de-identified research data.
    pub const STUDY_PSEUDONYM: &str = "medchain/v1/study-pseudonym";
    /// The patient's signature over a consent revocation.
    pub const REVOKE_SIG: &str = "medchain/v1/consent-revocation";
    /// The patient's signature over a consent document.
    pub const CONSENT_SIG: &str = "medchain/v1/consent-signature";
    /// The patient's signature over an erasure request.
    pub const ERASURE_SIG: &str = "medchain/v1/erasure-signature";
    /// `Identity::derive_secret` label of a patient's secure-index key.
    pub const INDEX_KEY: &str = "medchain/v1/index-key";
    /// Secure-index PRF prefix: network index key to a research purpose's index key.
    pub const INDEX_RESEARCH_KEY: &str = "medchain/v1/index-research-key";
    /// Secure-index PRF prefix: a patient's index key to one writer's (contributor's) sub-key.
    pub const INDEX_WRITER_KEY: &str = "medchain/v1/index-writer-key";
    /// Secure-index PRF prefix: index key to a keyword class key.
    pub const INDEX_CLASS_KEY: &str = "medchain/v1/index-class-key";
    /// Secure-index PRF prefix: class key to a keyword's trapdoor.
    pub const INDEX_TRAPDOOR: &str = "medchain/v1/index-trapdoor";
    /// Secure-index PRF prefix: trapdoor and record id to the record's tag.
    pub const INDEX_TAG: &str = "medchain/v1/index-tag";
    /// Secure-index PRF prefix: trapdoor, block context and occurrence to a filter key.
    pub const INDEX_FILTER_KEY: &str = "medchain/v1/index-filter-key";
    /// Digest of a block's encoded secure-index filter (committed by the block header).
    pub const INDEX_FILTER: &str = "medchain/v1/index-filter";
    /// HKDF label deriving a node's VRF secret from its identity.
    pub const VRF_KEY: &str = "medchain/v1/vrf-key";
    /// Prefix of an election ticket's VRF input.
    pub const ELECTION_TICKET: &str = "medchain/v1/election-ticket";
    /// The election seed chain.
    pub const ELECTION_SEED: &str = "medchain/v1/election-seed";
    /// Ranking of candidates for an election.
    pub const ELECTION_RANK: &str = "medchain/v1/election-rank";
    /// The genesis block's hash (over the genesis configuration).
    pub const GENESIS: &str = "medchain/v1/genesis";
    /// Digest of a block header's fields other than the paper's three.
    pub const BLOCK_HEADER: &str = "medchain/v1/block-header";
    /// A block's hash: `prev || c0 || c1 || header digest`.
    pub const BLOCK: &str = "medchain/v1/block";
    /// The miner's and each contributor's signature over a block hash.
    pub const BLOCK_SIG: &str = "medchain/v1/block-signature";
    /// A validator's vote.
    pub const VOTE_SIG: &str = "medchain/v1/vote-signature";
    /// A validator's round timeout.
    pub const TIMEOUT_SIG: &str = "medchain/v1/timeout-signature";
    /// What a contributor signs for its part of a block: the draft hash bound to its filter
    /// segment's digest.
    pub const BLOCK_CONTRIBUTION: &str = "medchain/v1/block-contribution";
    /// Signatures by contributors over a [`BLOCK_CONTRIBUTION`] hash.
    pub const CONTRIBUTION_SIG: &str = "medchain/v1/contribution-signature";
    /// Digest of one party's secure-index filter segment.
    pub const INDEX_SEGMENT: &str = "medchain/v1/index-segment";
    /// Signatures a node makes over a draft hash only to seed its own filter-segment
    /// randomness (never sent).
    pub const FILTER_SEED_SIG: &str = "medchain/v1/filter-seed";
    /// Key-wrap context prefix of a patient's writer index key sealed to a writer (enrolment);
    /// followed by the chain, the patient's and the writer's public identities.
    pub const WRITER_KEY_WRAP: &str = "medchain/v1/writer-index-key";
    /// Signatures by a patient over a writer index key sealed to a writer (enrolment).
    pub const WRITER_KEY_SIG: &str = "medchain/v1/writer-key-signature";
    /// A researcher's signature over a research request (study, researcher, credential).
    pub const RESEARCH_REQUEST_SIG: &str = "medchain/v1/research-request-signature";
    /// A research release's commitment: its Merkle root and exact counts.
    pub const RESEARCH_RELEASE: &str = "medchain/v1/research-release";
    /// A grantee's signature over a cross-institution key request (`crate::sharing`).
    pub const KEY_REQUEST_SIG: &str = "medchain/v1/key-request-signature";
    /// A key request's id: the tagged hash of its signed bytes.
    pub const KEY_REQUEST_ID: &str = "medchain/v1/key-request-id";
    /// Keys a research release derives from its private secret (leaf salts, pseudonyms).
    pub const RESEARCH_RELEASE_KEY: &str = "medchain/v1/research-release-key";
    /// `Identity::derive_secret` label of a patient's consent tag key (blinded consent codes).
    pub const CONSENT_TAG_KEY: &str = "medchain/v1/consent-tag-key";
    /// PRF prefix: a patient's consent tag key and a (system, code) pair to the code's tag.
    pub const CONSENT_CODE_TAG: &str = "medchain/v1/consent-code-tag";
    /// Key-wrap context prefix of a patient's consent tag key sealed to a writer (enrolment);
    /// followed by the chain, the patient's and the writer's public identities.
    pub const CONSENT_TAG_KEY_WRAP: &str = "medchain/v1/consent-tag-key-wrap";
}

/// `SHA-256(len(label) || label || data)`: the tagged hash every digest here uses.
pub fn tagged_hash(label: &str, data: &[u8]) -> [u8; 32] {
    tagged_hash_parts(label, &[data])
}

/// [`tagged_hash`] over the concatenation of `parts`, without copying them together.
pub fn tagged_hash_parts(label: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = TaggedHasher::new(label);
    for p in parts {
        h.update(p);
    }
    h.finalize()
}

/// An incremental [`tagged_hash`], for data that is not in one slice.
#[derive(Clone)]
pub struct TaggedHasher(Sha256);

impl TaggedHasher {
    /// Starts a tagged hash for `label`.
    pub fn new(label: &str) -> Self {
        debug_assert!(label.len() < 256);
        let mut h = Sha256::new();
        h.update([label.len() as u8]);
        h.update(label.as_bytes());
        Self(h)
    }

    /// Feeds bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// Feeds a `u32` length prefix and the bytes, as [`crate::encoding::Writer::put_bytes`] writes them.
    pub fn update_prefixed(&mut self, data: &[u8]) {
        self.0.update((data.len() as u32).to_be_bytes());
        self.0.update(data);
    }

    /// The digest.
    pub fn finalize(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

/// Plain SHA-256 (used by the Merkle tree, whose leaf/node prefixes separate its domains).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// A hex string could not be parsed as a digest or key.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseHexError {
    /// The string is not `2 × N` hex digits.
    #[error("expected {expected} hex digits, found {found} characters")]
    WrongLength {
        /// Digits expected.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// A character is not a hex digit.
    #[error("not a hex string")]
    NotHex,
}

pub(crate) fn parse_hex_array<const N: usize>(s: &str) -> Result<[u8; N], ParseHexError> {
    if s.len() != 2 * N {
        return Err(ParseHexError::WrongLength {
            expected: 2 * N,
            found: s.len(),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| ParseHexError::NotHex)?;
    Ok(out)
}

/// Defines a 32-byte digest newtype with hex `Display`/`FromStr`/`Debug` and canonical encoding.
macro_rules! digest_newtype {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Wraps raw digest bytes.
            pub const fn from_byte_array(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }
            /// The raw digest bytes.
            pub const fn to_byte_array(self) -> [u8; 32] {
                self.0
            }
            /// The raw digest bytes, borrowed.
            pub const fn as_byte_array(&self) -> &[u8; 32] {
                &self.0
            }
        }

        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl std::str::FromStr for $name {
            type Err = $crate::hash::ParseHexError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::hash::parse_hex_array(s).map(Self)
            }
        }

        impl $crate::encoding::Encode for $name {
            fn encode_to(&self, out: &mut Vec<u8>) {
                $crate::encoding::Writer::put_raw(out, &self.0);
            }
        }

        impl $crate::encoding::Decode for $name {
            fn decode_from(
                r: &mut $crate::encoding::Reader<'_>,
            ) -> Result<Self, $crate::encoding::DecodeError> {
                r.array().map(Self)
            }
        }
    };
}
pub(crate) use digest_newtype;

digest_newtype!(
    /// A transaction's id: the tagged hash of its signed bytes.
    TxId
);
digest_newtype!(
    /// A block's hash (see `docs/protocol.md` for the formula).
    BlockHash
);
digest_newtype!(
    /// The network a signature or transaction belongs to: the genesis hash
    /// ([`crate::genesis::Genesis::chain_id`]). Every signature medchain makes binds one
    /// (`docs/crypto.md` §2), so nothing signed for one network is valid on another.
    ChainId
);
digest_newtype!(
    /// A Merkle tree root over a block's transactions.
    MerkleRoot
);
digest_newtype!(
    /// A record's id: 32 random bytes chosen when it is sealed.
    RecordId
);
digest_newtype!(
    /// The on-chain commitment to a record payload: a salted tagged hash.
    PayloadCommitment
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::{Decode, Encode};

    #[test]
    fn tagged_hash_is_domain_separated() {
        assert_ne!(
            tagged_hash(domain::TX_ID, b"x"),
            tagged_hash(domain::TX_SIG, b"x")
        );
        assert_eq!(
            tagged_hash_parts(domain::TX_ID, &[b"ab", b"c"]),
            tagged_hash(domain::TX_ID, b"abc")
        );
        // Vector: SHA-256(0x11 || "medchain/v1/tx-id" || "") computed independently.
        let mut framed = vec![domain::TX_ID.len() as u8];
        framed.extend_from_slice(domain::TX_ID.as_bytes());
        assert_eq!(tagged_hash(domain::TX_ID, b""), sha256(&framed));
    }

    #[test]
    fn hex_round_trip_and_errors() {
        let id = TxId::from_byte_array([0xab; 32]);
        let s = id.to_string();
        assert_eq!(s.len(), 64);
        assert_eq!(s.parse::<TxId>().unwrap(), id);
        assert_eq!(format!("{id:?}"), format!("TxId({s})"));
        assert_eq!(
            "abc".parse::<TxId>().unwrap_err().to_string(),
            "expected 64 hex digits, found 3 characters"
        );
        assert_eq!(
            "zz".repeat(32).parse::<TxId>().unwrap_err().to_string(),
            "not a hex string"
        );
        assert_eq!(TxId::from_bytes(&id.to_bytes()).unwrap(), id);
    }
}
