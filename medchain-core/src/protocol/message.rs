//! The wire messages of the consensus protocol and their canonical encoding.
//!
//! Every message is `version (u8 = 1) || tag (u8) || fields`, each field in the canonical codec
//! of [`crate::encoding`]; decoding rejects unknown versions and tags, over-long lists and
//! trailing bytes (see `docs/protocol.md` for the table of tags).

use crate::block::{Block, BlockHeader, Contributor, MAX_BLOCK_TXS};
use crate::chain::CommitProof;
use crate::encoding::{Decode, DecodeError, Encode, Reader, Writer};
use crate::hash::BlockHash;
use crate::index::FilterSegment;
use crate::keys::Signature;
use crate::sharing::{KeyRequest, KeyResponse};
use crate::tx::Transaction;
use crate::vote::{QuorumCertificate, Timeout, TimeoutCertificate, Vote};

/// Format version of [`Message`]. Version 2: `SignRequest` names the indexed positions and
/// `SignResponse` carries the contributor's filter segment.
pub const MESSAGE_VERSION: u8 = 2;

/// Most blocks one sync response may carry (committed and pending together).
pub const MAX_SYNC_BLOCKS: usize = 64;

/// A block header with a quorum certificate for it: proof that the block is certified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertifiedHeader {
    /// The certified block's header.
    pub header: BlockHeader,
    /// Valid votes for it from a quorum.
    pub qc: QuorumCertificate,
}

impl Encode for CertifiedHeader {
    fn encode_to(&self, out: &mut Vec<u8>) {
        self.header.encode_to(out);
        self.qc.encode_to(out);
    }
}

impl Decode for CertifiedHeader {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            header: BlockHeader::decode_from(r)?,
            qc: QuorumCertificate::decode_from(r)?,
        })
    }
}

/// A consensus message between nodes.
#[allow(clippy::large_enum_variant)] // messages are decoded once and moved, never copied
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// Tag 0. The miner of `round` opens the gather phase on `parent` (the paper's
    /// `GetTransactionsFromNode`, sent to every node).
    GatherRequest {
        /// The round.
        round: u64,
        /// The block the miner extends.
        parent: BlockHash,
    },
    /// Tag 1. A node's pending transactions for the miner, with its election ticket for the
    /// block after `parent`.
    Contribution {
        /// The round.
        round: u64,
        /// The block the miner extends.
        parent: BlockHash,
        /// The contributing node and its ticket.
        contributor: Contributor,
        /// The node's transactions (all contributed by it).
        transactions: Vec<Transaction>,
    },
    /// Tag 2. The miner asks a contributor to sign a draft (SignBlock): the header, the
    /// Merkle leaves of all its transactions, so the contributor can check its own are in it,
    /// and the positions of the transactions that carry a secure-index entry, so it can place
    /// its records in the block's filter.
    SignRequest {
        /// The round.
        round: u64,
        /// The draft's header (its filter digest is zero).
        header: BlockHeader,
        /// The Merkle leaf of every transaction, in block order.
        leaves: Vec<[u8; 32]>,
        /// Positions (in block order, strictly ascending) of the indexed transactions.
        indexed: Vec<u32>,
    },
    /// Tag 3. A contributor's signature over a draft's hash and its filter segment.
    SignResponse {
        /// The round.
        round: u64,
        /// The draft's hash.
        block: BlockHash,
        /// The contributor's filter segment over its indexed records in the draft (none when
        /// it has none there).
        segment: Option<FilterSegment>,
        /// The contributor's signature over `contribution_hash(block, segment digest)`.
        signature: Signature,
    },
    /// Tag 4. A proposed block.
    Proposal {
        /// The block.
        block: Block,
    },
    /// Tag 5. A vote (valid or invalid, with its reason).
    Vote {
        /// The vote.
        vote: Vote,
    },
    /// Tag 6. A round timeout, with the sender's highest certified block and the timeout
    /// certificate that brought it into the round, if any.
    Timeout {
        /// The signed timeout.
        timeout: Timeout,
        /// The block of `timeout.high_qc_round` and its certificate (absent for genesis).
        high_qc: Option<CertifiedHeader>,
        /// The certificate for `timeout.round - 1`, if the sender entered its round by one.
        last_tc: Option<TimeoutCertificate>,
    },
    /// Tag 7. Asks for committed blocks from `from_height` on.
    SyncRequest {
        /// The first height wanted.
        from_height: u64,
    },
    /// Tag 8. Committed blocks, the proof that the last of them is committed, the uncommitted
    /// blocks above them that lead to the sender's highest certified block, and that
    /// block's certificate.
    SyncResponse {
        /// Committed blocks in height order.
        blocks: Vec<Block>,
        /// Proof that the last of `blocks` is committed (when it is the sender's head).
        head_proof: Option<CommitProof>,
        /// Uncommitted blocks in height order, continuing `blocks`.
        pending: Vec<Block>,
        /// The sender's highest certificate.
        high_qc: Option<CertifiedHeader>,
    },
    /// Tag 9. A clinician's key request relayed to the record's holder
    /// ([`crate::sharing`]). Answered by the embedding host (`medchain::Host`), which holds
    /// the ledger and the records; a bare [`crate::protocol::Node`] drops it as unexpected.
    KeyRequest {
        /// The request, signed by its grantee.
        request: KeyRequest,
    },
    /// Tag 10. The holder's answer to a key request.
    KeyResponse {
        /// The answer.
        response: KeyResponse,
    },
}

/// The tags of the sharing messages ([`Message::KeyRequest`], [`Message::KeyResponse`]): a
/// host reads the tag byte ([`Message::peek_tag`]) and answers these itself, before any
/// consensus decoding.
pub const SHARING_TAGS: [u8; 2] = [9, 10];

impl Message {
    /// The message's tag.
    pub fn tag(&self) -> u8 {
        match self {
            Self::GatherRequest { .. } => 0,
            Self::Contribution { .. } => 1,
            Self::SignRequest { .. } => 2,
            Self::SignResponse { .. } => 3,
            Self::Proposal { .. } => 4,
            Self::Vote { .. } => 5,
            Self::Timeout { .. } => 6,
            Self::SyncRequest { .. } => 7,
            Self::SyncResponse { .. } => 8,
            Self::KeyRequest { .. } => 9,
            Self::KeyResponse { .. } => 10,
        }
    }

    /// The tag of an encoded message of this version, without decoding it (`None` if `bytes`
    /// is too short or of another version).
    pub fn peek_tag(bytes: &[u8]) -> Option<u8> {
        match bytes {
            [MESSAGE_VERSION, tag, ..] => Some(*tag),
            _ => None,
        }
    }

    /// A short name for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::GatherRequest { .. } => "gather-request",
            Self::Contribution { .. } => "contribution",
            Self::SignRequest { .. } => "sign-request",
            Self::SignResponse { .. } => "sign-response",
            Self::Proposal { .. } => "proposal",
            Self::Vote { .. } => "vote",
            Self::Timeout { .. } => "timeout",
            Self::SyncRequest { .. } => "sync-request",
            Self::SyncResponse { .. } => "sync-response",
            Self::KeyRequest { .. } => "key-request",
            Self::KeyResponse { .. } => "key-response",
        }
    }
}

impl Encode for Message {
    fn encode_to(&self, out: &mut Vec<u8>) {
        out.put_u8(MESSAGE_VERSION);
        out.put_u8(self.tag());
        match self {
            Self::GatherRequest { round, parent } => {
                out.put_u64(*round);
                parent.encode_to(out);
            }
            Self::Contribution {
                round,
                parent,
                contributor,
                transactions,
            } => {
                out.put_u64(*round);
                parent.encode_to(out);
                contributor.encode_to(out);
                out.put_list(transactions);
            }
            Self::SignRequest {
                round,
                header,
                leaves,
                indexed,
            } => {
                out.put_u64(*round);
                header.encode_to(out);
                out.put_list(leaves);
                out.put_list(indexed);
            }
            Self::SignResponse {
                round,
                block,
                segment,
                signature,
            } => {
                out.put_u64(*round);
                block.encode_to(out);
                out.put_option(segment.as_ref());
                signature.encode_to(out);
            }
            Self::Proposal { block } => block.encode_to(out),
            Self::Vote { vote } => vote.encode_to(out),
            Self::Timeout {
                timeout,
                high_qc,
                last_tc,
            } => {
                timeout.encode_to(out);
                out.put_option(high_qc.as_ref());
                out.put_option(last_tc.as_ref());
            }
            Self::SyncRequest { from_height } => out.put_u64(*from_height),
            Self::SyncResponse {
                blocks,
                head_proof,
                pending,
                high_qc,
            } => {
                out.put_list(blocks);
                out.put_option(head_proof.as_ref());
                out.put_list(pending);
                out.put_option(high_qc.as_ref());
            }
            Self::KeyRequest { request } => request.encode_to(out),
            Self::KeyResponse { response } => response.encode_to(out),
        }
    }
}

/// Smallest encoded block (an empty block with no contributor): bounds list lengths.
const MIN_BLOCK_LEN: usize = 200;

impl Decode for Message {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.version("message", MESSAGE_VERSION)?;
        Ok(match r.u8()? {
            0 => Self::GatherRequest {
                round: r.u64()?,
                parent: BlockHash::decode_from(r)?,
            },
            1 => Self::Contribution {
                round: r.u64()?,
                parent: BlockHash::decode_from(r)?,
                contributor: Contributor::decode_from(r)?,
                transactions: r.list("contributed transactions", MAX_BLOCK_TXS, 180)?,
            },
            2 => Self::SignRequest {
                round: r.u64()?,
                header: BlockHeader::decode_from(r)?,
                leaves: r.list("draft leaves", MAX_BLOCK_TXS, 32)?,
                indexed: r.sorted_list("indexed positions", MAX_BLOCK_TXS, 4, |p: &u32| *p)?,
            },
            3 => Self::SignResponse {
                round: r.u64()?,
                block: BlockHash::decode_from(r)?,
                segment: r.option("filter segment")?,
                signature: Signature::decode_from(r)?,
            },
            4 => Self::Proposal {
                block: Block::decode_from(r)?,
            },
            5 => Self::Vote {
                vote: Vote::decode_from(r)?,
            },
            6 => Self::Timeout {
                timeout: Timeout::decode_from(r)?,
                high_qc: r.option("high certificate")?,
                last_tc: r.option("last timeout certificate")?,
            },
            7 => Self::SyncRequest {
                from_height: r.u64()?,
            },
            8 => Self::SyncResponse {
                blocks: r.list("sync blocks", MAX_SYNC_BLOCKS, MIN_BLOCK_LEN)?,
                head_proof: r.option("head proof")?,
                pending: r.list("sync pending blocks", MAX_SYNC_BLOCKS, MIN_BLOCK_LEN)?,
                high_qc: r.option("high certificate")?,
            },
            9 => Self::KeyRequest {
                request: KeyRequest::decode_from(r)?,
            },
            10 => Self::KeyResponse {
                response: KeyResponse::decode_from(r)?,
            },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "message",
                    tag: tag.into(),
                })
            }
        })
    }
}
