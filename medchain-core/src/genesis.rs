//! The genesis configuration: it fixes the network.
//!
//! Genesis names the chain, the member nodes (institutions that may contribute transactions)
//! and among them the **trusted validators** that vote and mine, the fingerprint of the
//! network-shared key, the vote quorum, the protocol's timing, and the FHIR profile level that
//! writers validate records against ([`FhirProfile`]). Its tagged hash (`medchain/v1/genesis`)
//! is the chain id and the hash of block 0.

use std::fmt;

use thiserror::Error;

use crate::election::{genesis_seed, ElectionSeed, VrfPublicKey};
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::{domain, tagged_hash, BlockHash, ChainId};
use crate::keys::{PublicIdentity, VerifyKey};

/// Format version of [`Genesis`]. Version 2 added `timing.max_tx_age_ms` and the FHIR profile
/// byte at the end.
pub const GENESIS_VERSION: u8 = 2;

/// Most members a network may have.
pub const MAX_MEMBERS: usize = 1024;

const MAX_NAME: usize = 128;

/// A member node of the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// A human-readable name ("St. Mary's Hospital node 1").
    pub name: String,
    /// The node's identity.
    pub identity: PublicIdentity,
    /// The node's VRF key, for election tickets.
    pub vrf: VrfPublicKey,
    /// Whether the node is a trusted validator (votes and mines).
    pub validator: bool,
}

impl Encode for Member {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_bytes(self.name.as_bytes());
        self.identity.encode_to(out);
        self.vrf.encode_to(out);
        out.put_bool(self.validator);
    }
}

impl Decode for Member {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            name: r.string("member name", MAX_NAME)?,
            identity: PublicIdentity::decode_from(r)?,
            vrf: VrfPublicKey::decode_from(r)?,
            validator: r.bool("validator flag")?,
        })
    }
}

/// The fraction of validators whose votes commit a block: strictly more than
/// `numerator / denominator` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quorum {
    /// Numerator.
    pub numerator: u16,
    /// Denominator.
    pub denominator: u16,
}

impl Quorum {
    /// More than two thirds: tolerates `f` byzantine validators out of `3f + 1`.
    pub const TWO_THIRDS: Self = Self {
        numerator: 2,
        denominator: 3,
    };
}

/// Protocol timing, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The message-distribution phase: how long a miner gathers transactions (the paper's T).
    pub gather_ms: u64,
    /// How long a validator waits in a round before it times out and the next-ranked miner
    /// takes over.
    pub round_timeout_ms: u64,
    /// How far ahead of a node's clock a block's timestamp may be, and how far ahead of its
    /// block's timestamp a transaction's may be.
    pub max_clock_skew_ms: u64,
    /// How far behind its block's timestamp a transaction's timestamp may be: a transaction
    /// pending longer is refused (`BadTimestamp`) and must be signed again. Ledger rules judge
    /// every transaction at its block's time, so this bounds only the *claimed* time an audit
    /// entry shows next to the block time.
    pub max_tx_age_ms: u64,
}

impl Timing {
    /// Defaults for a hospital network on a LAN/WAN: gather 500 ms, round timeout 4 s, skew 30 s,
    /// transactions at most 10 minutes older than their block.
    pub const DEFAULT: Self = Self {
        gather_ms: 500,
        round_timeout_ms: 4_000,
        max_clock_skew_ms: 30_000,
        max_tx_age_ms: 600_000,
    };
}

/// The FHIR profile level a network's writers validate records against before sealing them
/// (`docs/fhir.md`). Chosen once, at genesis; encoded as one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum FhirProfile {
    /// Base FHIR R4 (4.0.1): structure, primitive formats and the required bindings medchain
    /// relies on (tag `0`).
    #[default]
    BaseR4,
    /// Base R4 plus the US Core required and must-support elements of the resources the index
    /// and the research export read (tag `1`).
    UsCore,
}

impl FhirProfile {
    /// The encoding tag.
    pub fn tag(self) -> u8 {
        match self {
            Self::BaseR4 => 0,
            Self::UsCore => 1,
        }
    }

    /// The profile of an encoding tag.
    pub fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(Self::BaseR4),
            1 => Some(Self::UsCore),
            _ => None,
        }
    }

    /// A short name: `"r4"` or `"us-core"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::BaseR4 => "r4",
            Self::UsCore => "us-core",
        }
    }

    /// The profile of a short name ([`FhirProfile::name`]).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "r4" => Some(Self::BaseR4),
            "us-core" => Some(Self::UsCore),
            _ => None,
        }
    }
}

/// The genesis configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Genesis {
    /// The chain's name.
    pub chain_name: String,
    /// When the network was created (milliseconds since the Unix epoch).
    pub created_at_ms: u64,
    /// Fingerprint of the network-shared key ([`crate::seal::NetworkKey::fingerprint`]).
    pub network_key_fingerprint: [u8; 32],
    /// Members, strictly ascending by signing key.
    pub members: Vec<Member>,
    /// The vote quorum.
    pub quorum: Quorum,
    /// Protocol timing.
    pub timing: Timing,
    /// Most transactions in one block.
    pub max_block_txs: u32,
    fhir_profile: FhirProfile,
    validators: Vec<VerifyKey>,
    hash: BlockHash,
}

impl fmt::Debug for Genesis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Genesis")
            .field("chain_name", &self.chain_name)
            .field("hash", &self.hash)
            .field("members", &self.members.len())
            .field("validators", &self.validators.len())
            .field("fhir_profile", &self.fhir_profile)
            .finish_non_exhaustive()
    }
}

/// A genesis configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// There is no validator.
    #[error("genesis needs at least one trusted validator")]
    NoValidators,
    /// Two members share a signing key.
    #[error("two members share the signing key {0}")]
    DuplicateMember(VerifyKey),
    /// The quorum is below a strict majority or not below one.
    #[error("quorum {numerator}/{denominator} must be at least 1/2 and below 1")]
    BadQuorum {
        /// Numerator.
        numerator: u16,
        /// Denominator.
        denominator: u16,
    },
    /// Too many members.
    #[error("too many members: {0}, at most {MAX_MEMBERS}")]
    TooManyMembers(usize),
    /// A timing value is zero or a block may hold no transaction.
    #[error("timing values and the block size must be positive")]
    BadTiming,
    /// A name is too long.
    #[error("a name is longer than {MAX_NAME} bytes")]
    NameTooLong,
    /// Malformed bytes.
    #[error("malformed genesis: {0}")]
    Decode(#[from] DecodeError),
}

impl Genesis {
    /// Builds and checks a genesis configuration. Members are sorted by signing key. The FHIR
    /// profile is [`FhirProfile::BaseR4`]; [`Genesis::with_fhir_profile`] chooses another.
    ///
    /// # Errors
    /// A [`GenesisError`] for an unusable configuration.
    pub fn new(
        chain_name: impl Into<String>,
        created_at_ms: u64,
        network_key_fingerprint: [u8; 32],
        mut members: Vec<Member>,
        quorum: Quorum,
        timing: Timing,
        max_block_txs: u32,
    ) -> Result<Self, GenesisError> {
        let chain_name = chain_name.into();
        if chain_name.len() > MAX_NAME || members.iter().any(|m| m.name.len() > MAX_NAME) {
            return Err(GenesisError::NameTooLong);
        }
        if members.len() > MAX_MEMBERS {
            return Err(GenesisError::TooManyMembers(members.len()));
        }
        members.sort_by_key(|m| m.identity.sign);
        if let Some(w) = members
            .windows(2)
            .find(|w| w[0].identity.sign == w[1].identity.sign)
        {
            return Err(GenesisError::DuplicateMember(w[0].identity.sign));
        }
        let (n, d) = (u32::from(quorum.numerator), u32::from(quorum.denominator));
        if d == 0 || 2 * n < d || n >= d {
            return Err(GenesisError::BadQuorum {
                numerator: quorum.numerator,
                denominator: quorum.denominator,
            });
        }
        if timing.gather_ms == 0
            || timing.round_timeout_ms == 0
            || timing.max_tx_age_ms == 0
            || max_block_txs == 0
        {
            return Err(GenesisError::BadTiming);
        }
        let validators: Vec<VerifyKey> = members
            .iter()
            .filter(|m| m.validator)
            .map(|m| m.identity.sign)
            .collect();
        if validators.is_empty() {
            return Err(GenesisError::NoValidators);
        }
        let mut g = Self {
            chain_name,
            created_at_ms,
            network_key_fingerprint,
            members,
            quorum,
            timing,
            max_block_txs,
            fhir_profile: FhirProfile::BaseR4,
            validators,
            hash: BlockHash::default(),
        };
        g.rehash();
        Ok(g)
    }

    fn rehash(&mut self) {
        self.hash = BlockHash::from_byte_array(tagged_hash(domain::GENESIS, &self.to_bytes()));
    }

    /// The same configuration with writers validating records against `profile` (a different
    /// network: the genesis hash changes).
    #[must_use]
    pub fn with_fhir_profile(mut self, profile: FhirProfile) -> Self {
        self.fhir_profile = profile;
        self.rehash();
        self
    }

    /// The FHIR profile level writers validate records against before sealing them.
    pub fn fhir_profile(&self) -> FhirProfile {
        self.fhir_profile
    }

    /// The genesis hash: the chain id, and the hash of block 0.
    pub fn hash(&self) -> BlockHash {
        self.hash
    }

    /// The chain id every signature of this network binds: the genesis hash.
    pub fn chain_id(&self) -> ChainId {
        ChainId::from_byte_array(self.hash.to_byte_array())
    }

    /// The election seed of block 0.
    pub fn seed(&self) -> ElectionSeed {
        genesis_seed(&self.hash)
    }

    /// The trusted validators' signing keys, ascending.
    pub fn validators(&self) -> &[VerifyKey] {
        &self.validators
    }

    /// Whether `key` is a trusted validator.
    pub fn is_validator(&self, key: &VerifyKey) -> bool {
        self.validators.binary_search(key).is_ok()
    }

    /// The member with signing key `key`.
    pub fn member(&self, key: &VerifyKey) -> Option<&Member> {
        self.members
            .binary_search_by(|m| m.identity.sign.cmp(key))
            .ok()
            .map(|i| &self.members[i])
    }

    /// Votes needed to certify a block: the least count strictly above the quorum fraction.
    pub fn quorum_size(&self) -> usize {
        let n = self.validators.len() as u64;
        let q = n * u64::from(self.quorum.numerator) / u64::from(self.quorum.denominator) + 1;
        q as usize
    }

    /// How many byzantine validators safety tolerates: `n - quorum` for quorum intersection
    /// (two quorums share more than `f` validators, so at least one honest one).
    pub fn fault_tolerance(&self) -> usize {
        let n = self.validators.len();
        let q = self.quorum_size();
        // Two quorums overlap in 2q - n validators; safety needs 2q - n > f, liveness needs
        // n - f >= q.
        (2 * q).saturating_sub(n + 1).min(n - q)
    }
}

impl Encode for Genesis {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(GENESIS_VERSION);
        out.put_bytes(self.chain_name.as_bytes());
        out.put_u64(self.created_at_ms);
        out.put_raw(&self.network_key_fingerprint);
        out.put_list(&self.members);
        out.put_u16(self.quorum.numerator);
        out.put_u16(self.quorum.denominator);
        out.put_u64(self.timing.gather_ms);
        out.put_u64(self.timing.round_timeout_ms);
        out.put_u64(self.timing.max_clock_skew_ms);
        out.put_u64(self.timing.max_tx_age_ms);
        out.put_u32(self.max_block_txs);
        out.put_u8(self.fhir_profile.tag());
    }
}

impl Decode for Genesis {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("genesis", GENESIS_VERSION)?;
        let chain_name = r.string("chain name", MAX_NAME)?;
        let created_at_ms = r.u64()?;
        let fingerprint = r.array()?;
        let members = r.sorted_list("members", MAX_MEMBERS, 4 + 64 + 32 + 1, |m: &Member| {
            m.identity.sign
        })?;
        let quorum = Quorum {
            numerator: r.u16()?,
            denominator: r.u16()?,
        };
        let timing = Timing {
            gather_ms: r.u64()?,
            round_timeout_ms: r.u64()?,
            max_clock_skew_ms: r.u64()?,
            max_tx_age_ms: r.u64()?,
        };
        let max_block_txs = r.u32()?;
        let tag = r.u8()?;
        let fhir_profile = FhirProfile::from_tag(tag).ok_or(DecodeError::UnknownTag {
            what: "FHIR profile",
            tag: u64::from(tag),
        })?;
        Self::new(
            chain_name,
            created_at_ms,
            fingerprint,
            members,
            quorum,
            timing,
            max_block_txs,
        )
        .map_err(|e| match e {
            GenesisError::Decode(d) => d,
            _ => DecodeError::InvalidValue {
                what: "genesis",
                reason: "configuration is not usable",
            },
        })
        .map(|g| g.with_fhir_profile(fhir_profile))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::election::VrfSecret;
    use crate::keys::Identity;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    /// `n` validators plus `extra` non-validating members, for tests.
    pub(crate) fn network(n: usize, extra: usize, seed: u64) -> (Genesis, Vec<Identity>) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let ids: Vec<Identity> = (0..n + extra)
            .map(|_| Identity::generate(&mut rng))
            .collect();
        let members = ids
            .iter()
            .enumerate()
            .map(|(i, id)| Member {
                name: format!("node-{i}"),
                identity: id.public(),
                vrf: VrfSecret::derive(id).unwrap().public(),
                validator: i < n,
            })
            .collect();
        let g = Genesis::new(
            "test",
            0,
            [0; 32],
            members,
            Quorum::TWO_THIRDS,
            Timing::DEFAULT,
            10_000,
        )
        .unwrap();
        (g, ids)
    }

    #[test]
    fn quorum_sizes_and_fault_tolerance() {
        for (n, q, f) in [
            (1, 1, 0),
            (3, 3, 0),
            (4, 3, 1),
            (5, 4, 1),
            (7, 5, 2),
            (10, 7, 3),
        ] {
            let (g, _) = network(n, 0, n as u64);
            assert_eq!(g.quorum_size(), q, "n={n}");
            assert_eq!(g.fault_tolerance(), f, "n={n}");
        }
    }

    #[test]
    fn fhir_profile_is_encoded_and_changes_the_chain() {
        let (g, _) = network(4, 0, 9);
        assert_eq!(g.fhir_profile(), FhirProfile::BaseR4);
        let us = g.clone().with_fhir_profile(FhirProfile::UsCore);
        assert_ne!(us.hash(), g.hash(), "another profile is another network");
        let bytes = us.to_bytes();
        assert_eq!(bytes[0], GENESIS_VERSION);
        assert_eq!(*bytes.last().unwrap(), 1);
        let back = Genesis::from_bytes(&bytes).unwrap();
        assert_eq!(back, us);
        assert_eq!(back.hash(), us.hash());
        assert_eq!(back.fhir_profile(), FhirProfile::UsCore);
        // An unknown profile tag, a version-1 genesis (no profile byte) and a missing byte are
        // refused.
        let mut bad = bytes.clone();
        *bad.last_mut().unwrap() = 2;
        assert_eq!(
            Genesis::from_bytes(&bad).unwrap_err().to_string(),
            "FHIR profile: unknown tag 2"
        );
        let mut v1 = bytes.clone();
        v1[0] = 1;
        v1.pop();
        assert!(matches!(
            Genesis::from_bytes(&v1),
            Err(DecodeError::UnknownVersion { found: 1, .. })
        ));
        assert!(Genesis::from_bytes(&bytes[..bytes.len() - 1]).is_err());
        for p in [FhirProfile::BaseR4, FhirProfile::UsCore] {
            assert_eq!(FhirProfile::from_tag(p.tag()), Some(p));
            assert_eq!(FhirProfile::from_name(p.name()), Some(p));
        }
        assert_eq!(FhirProfile::from_name("R4"), None);
    }

    #[test]
    fn round_trip_and_rejections() {
        let (g, ids) = network(4, 2, 1);
        let bytes = g.to_bytes();
        let back = Genesis::from_bytes(&bytes).unwrap();
        assert_eq!(back, g);
        assert_eq!(back.hash(), g.hash());
        assert_eq!(g.validators().len(), 4);
        assert!(g.member(&ids[5].verify_key()).is_some());
        assert!(!g.is_validator(&ids[5].verify_key()));
        let err = Genesis::new(
            "x",
            0,
            [0; 32],
            g.members.clone(),
            Quorum {
                numerator: 1,
                denominator: 3,
            },
            Timing::DEFAULT,
            10,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "quorum 1/3 must be at least 1/2 and below 1"
        );
        let mut dup = g.members.clone();
        dup.push(dup[0].clone());
        assert!(matches!(
            Genesis::new(
                "x",
                0,
                [0; 32],
                dup,
                Quorum::TWO_THIRDS,
                Timing::DEFAULT,
                10
            ),
            Err(GenesisError::DuplicateMember(_))
        ));
        let none: Vec<Member> = g
            .members
            .iter()
            .cloned()
            .map(|mut m| {
                m.validator = false;
                m
            })
            .collect();
        assert_eq!(
            Genesis::new(
                "x",
                0,
                [0; 32],
                none,
                Quorum::TWO_THIRDS,
                Timing::DEFAULT,
                10
            )
            .unwrap_err(),
            GenesisError::NoValidators
        );
    }
}
