//! An in-process network of medchain nodes: every message is delivered at once, in order, and
//! time advances to the next deadline when nothing is in flight. The protocol itself
//! (`medchain_core::protocol::Node`) is sans-I/O; this is the smallest possible driver for it.

use std::collections::VecDeque;

use medchain_core::block::CheckedBlock;
use medchain_core::chain::CommitProof;
use medchain_core::keys::VerifyKey;
use medchain_core::protocol::{IndexMaterial, Node, Output, Recipient};
use medchain_core::tx::Transaction;

/// A committed block as one node reported it.
pub struct Commit {
    /// The block.
    pub block: CheckedBlock,
    /// The commit proof of the highest block committed in the same step.
    pub proof: CommitProof,
}

/// The nodes and the wire between them.
pub struct Cluster {
    nodes: Vec<Node>,
    keys: Vec<VerifyKey>,
    wire: VecDeque<(usize, VerifyKey, Vec<u8>)>,
    /// Virtual time (milliseconds since the Unix epoch).
    pub now_ms: u64,
    /// Blocks committed, as reported by node 0 (the archive node that writes the ledger file).
    pub committed: Vec<Commit>,
    /// Messages dropped by any node, with their reasons (hostile input shows up here).
    pub dropped: Vec<String>,
}

impl Cluster {
    /// A cluster of `nodes` starting at `now_ms`.
    pub fn new(nodes: Vec<Node>, now_ms: u64) -> Self {
        let keys = nodes.iter().map(Node::key).collect();
        Self {
            nodes,
            keys,
            wire: VecDeque::new(),
            now_ms,
            committed: Vec::new(),
            dropped: Vec::new(),
        }
    }

    /// Submits transactions at node `i` (their contributor), as one batch.
    ///
    /// # Errors
    /// The node's refusal, as text.
    /// An indexed record comes with its [`IndexMaterial`], so the node can place it in the
    /// block's secure-index filter.
    pub fn submit(
        &mut self,
        i: usize,
        txs: Vec<(Transaction, Option<IndexMaterial>)>,
    ) -> Result<(), String> {
        let now = self.now_ms;
        // One batch: transactions that must share a block (a key release and its access log)
        // reach the miner in one contribution.
        for r in self.nodes[i].submit_batch_indexed(txs, now) {
            r.map_err(|e| e.to_string())?;
        }
        self.pump(i);
        Ok(())
    }

    /// Delivers raw bytes to node `to` as if `from` had sent them.
    pub fn inject(&mut self, to: usize, from: VerifyKey, bytes: Vec<u8>) {
        self.wire.push_back((to, from, bytes));
    }

    fn pump(&mut self, i: usize) {
        while let Some(out) = self.nodes[i].poll_output() {
            match out {
                Output::Send { to, bytes } => {
                    let from = self.keys[i];
                    match to {
                        Recipient::All => {
                            for j in 0..self.nodes.len() {
                                if j != i {
                                    self.wire.push_back((j, from, bytes.clone()));
                                }
                            }
                        }
                        Recipient::Node(k) => {
                            if let Some(j) = self.keys.iter().position(|x| *x == k) {
                                self.wire.push_back((j, from, bytes));
                            }
                        }
                    }
                }
                Output::Committed { block, proof } if i == 0 => {
                    self.committed.push(Commit { block, proof });
                }
                Output::Dropped { reason, .. } => self.dropped.push(format!("node {i}: {reason}")),
                _ => {}
            }
        }
    }

    /// Runs until node 0 has committed every transaction in `ids`, or `limit_ms` of virtual time
    /// passes. Returns whether all committed.
    pub fn run_until_committed(
        &mut self,
        ids: &[medchain_core::hash::TxId],
        limit_ms: u64,
    ) -> bool {
        let end = self.now_ms + limit_ms;
        loop {
            while let Some((to, from, bytes)) = self.wire.pop_front() {
                let now = self.now_ms;
                self.nodes[to].handle_message(from, &bytes, now);
                self.pump(to);
            }
            if ids.iter().all(|id| self.nodes[0].is_committed(id)) {
                return true;
            }
            let next = self.nodes.iter().filter_map(Node::next_deadline).min();
            match next {
                Some(t) if t <= end => {
                    self.now_ms = self.now_ms.max(t);
                    for i in 0..self.nodes.len() {
                        if self.nodes[i]
                            .next_deadline()
                            .is_some_and(|d| d <= self.now_ms)
                        {
                            let now = self.now_ms;
                            self.nodes[i].handle_timeout(now);
                            self.pump(i);
                        }
                    }
                }
                _ => return false,
            }
        }
    }

    /// Takes the commits reported so far.
    pub fn take_commits(&mut self) -> Vec<Commit> {
        std::mem::take(&mut self.committed)
    }
}
