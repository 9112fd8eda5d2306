//! The consensus node: a sans-I/O state machine (in the style of `quinn-proto` and `rustls`).
//!
//! A [`Node`] does no I/O, reads no clock, starts no thread and draws no randomness: the
//! embedding application feeds it submitted transactions ([`Node::submit`]), received bytes
//! ([`Node::handle_message`]) and the passage of time ([`Node::handle_timeout`], asking
//! [`Node::next_deadline`] when to call it), and drains [`Output`]s with [`Node::poll_output`]:
//! bytes to send, committed blocks with their proof, dropped messages with a typed reason,
//! equivocation evidence, and its own transactions the ledger rules refuse.
//!
//! The protocol (written up in `docs/protocol.md`) is a two-chain, round-based BFT in the style
//! of DiemBFT v4 / Jolteon carrying the paper's algorithm. In every round:
//!
//! 1. **ElectMinerNode** — the miner of round `r` is `elected(seed(H), validators, r - H.round - 1)`
//!    where `H` is the highest certified block it knows;
//! 2. **gather** — the miner asks every node for its pending transactions
//!    ([`Message::GatherRequest`]); each node answers once per round with its transactions and
//!    its election ticket ([`Message::Contribution`]) until the deadline `T = start + window`
//!    (`gather_ms`, backed off with the round timeout and widened after late answers, so that a
//!    slow contributor, such as a member that never mines, gets in);
//! 3. **AssembleBlock** — the miner drafts a block, leaving out transactions already in the
//!    chain or in uncommitted ancestors;
//! 4. **SignBlock** — every contributor checks its transactions are in the draft and signs
//!    ([`Message::SignRequest`], [`Message::SignResponse`]); a contributor that does not answer
//!    in time has its transactions dropped and the draft is re-signed by the others;
//! 5. the miner broadcasts the **proposal**; 6. validators validate it and **vote** under the
//!    voting rule (`round > highest_voted_round`); 7. a quorum of votes makes a **quorum
//!    certificate**, and a certified block whose parent is in the previous round **commits** the
//!    parent (AddBlock, DistributeBlockchain); 8. a **pacemaker** times out silent rounds:
//!    a quorum of signed timeouts makes a timeout certificate and the next-ranked miner takes
//!    over.
//!
//! A node keeps its committed chain in memory, or reads it from the store its host keeps
//! ([`CommittedChain`], [`Node::resume`]): then only the committed blocks the store does not
//! hold yet, and a few recent ones, stay in memory.
//!
//! A node that is behind asks for blocks ([`Message::SyncRequest`]), again each time it hears a
//! certificate for a block it lacks (at most once per round timeout, from the certificate's
//! signers in turn), and validates whatever it gets from its own committed tip; nothing a peer
//! sends is trusted.
//!
//! Malformed or hostile input never panics the node and never changes what it has committed:
//! the message is dropped and an [`Output::Dropped`] names the [`DropReason`].

mod committed;
pub mod driver;
mod message;
mod node;

#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;

pub use crate::block::{BatchVerifier, SerialVerifier, TxVerifier};
pub use committed::{CommittedChain, RECENT_COMMITTED_BLOCKS};
pub use message::{CertifiedHeader, Message, MAX_SYNC_BLOCKS, MESSAGE_VERSION, SHARING_TAGS};
pub use node::{
    DropReason, DurableState, Evidence, IndexMaterial, Judging, Node, NodeConfig, NodeError,
    Output, ProposalEquivocation, Recipient, RestoreError, SafetyState, SubmitError,
    SAFETY_STATE_VERSION,
};
