//! Attacks on the node from issue #12 (cross-network replay, overflow on hostile numbers),
//! each shown refused.

use super::*;
use crate::encoding::Encode;
use crate::genesis::tests::network;
use crate::genesis::Genesis;
use crate::vote::{Timeout, TimeoutCertificate, VoteError};

fn drops(node: &mut Node) -> Vec<DropReason> {
    let mut out = Vec::new();
    while let Some(o) = node.poll_output() {
        if let Output::Dropped { reason, .. } = o {
            out.push(reason);
        }
    }
    out
}

#[test]
fn timeouts_replayed_from_another_network_do_not_move_a_node() {
    // Issue #12.1: a quorum of timeouts signed on a sibling network with the same validator
    // keys formed a valid timeout certificate here, letting a miner skip past a certified block.
    let (g, mut ids) = network(4, 0, 77);
    let staging = Genesis::new(
        "staging",
        g.created_at_ms,
        g.network_key_fingerprint,
        g.members.clone(),
        g.quorum,
        g.timing,
        g.max_block_txs,
    )
    .unwrap();
    let now = g.created_at_ms;
    let signers: Vec<Timeout> = ids[1..]
        .iter()
        .map(|id| Timeout::sign(id, &staging.chain_id(), 40, 0))
        .collect();
    let tc = TimeoutCertificate::from_timeouts(&signers, 40);
    tc.verify(&staging, 40).unwrap();
    let from = ids[1].verify_key();
    let me = ids.remove(0);
    let mut node = Node::new(NodeConfig::consensus_only(g.clone(), me), now).unwrap();
    drops(&mut node);
    let before = node.current_round();
    let msg = Message::Timeout {
        timeout: signers[0].clone(),
        high_qc: None,
        last_tc: Some(tc.clone()),
    };
    node.handle_message(from, &msg.to_bytes(), now);
    assert_eq!(
        node.current_round(),
        before,
        "the replayed certificate moved the node"
    );
    assert!(drops(&mut node)
        .iter()
        .any(|r| matches!(r, DropReason::BadTimeout(VoteError::BadSignature(_)))));
    // The certificate alone (under an honest timeout of this network) is refused too.
    let honest = Timeout::sign(&ids[0], &g.chain_id(), before, 0);
    let msg = Message::Timeout {
        timeout: honest,
        high_qc: None,
        last_tc: Some(tc),
    };
    node.handle_message(from, &msg.to_bytes(), now);
    assert_eq!(node.current_round(), before);
    assert!(drops(&mut node)
        .iter()
        .any(|r| matches!(r, DropReason::BadCertificate(VoteError::BadSignature(_)))));
}

#[test]
fn hostile_rounds_at_the_top_of_the_range_do_not_panic() {
    // Issue #12.9: `r + 1` on an unverified timeout certificate's round overflowed.
    let (g, mut ids) = network(4, 0, 78);
    let now = g.created_at_ms;
    let from = ids[1].verify_key();
    let forged: Vec<Timeout> = ids[1..]
        .iter()
        .map(|id| Timeout::sign(id, &g.chain_id(), u64::MAX, u64::MAX))
        .collect();
    let mut tc = TimeoutCertificate::from_timeouts(&forged, u64::MAX);
    let me = ids.remove(0);
    let mut node = Node::new(NodeConfig::consensus_only(g.clone(), me), now).unwrap();
    let msg = Message::Timeout {
        timeout: forged[0].clone(),
        high_qc: None,
        last_tc: Some(tc.clone()),
    };
    // Valid signatures, absurd round: handled without overflow (and without a panic).
    node.handle_message(from, &msg.to_bytes(), now);
    node.handle_timeout(u64::MAX);
    // A certificate that does not verify at the top of the range: dropped before arithmetic.
    tc = TimeoutCertificate::from_timeouts(&forged[..1], u64::MAX);
    let msg = Message::Timeout {
        timeout: forged[0].clone(),
        high_qc: None,
        last_tc: Some(tc),
    };
    node.handle_message(from, &msg.to_bytes(), u64::MAX);
    let _ = drops(&mut node);
}
