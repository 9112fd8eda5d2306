//! Signature validity through the public API (docs/adr/0005-signature-validity.md): a block's
//! worth of honest signatures passes one batch and every single check, and is accepted by an
//! independent `verify_strict` too (ZIP-215 accepts everything the previous rule accepted);
//! each attack on a signature's binding (network, purpose, message, key, `S`, `R`) is refused by
//! both paths, the batch naming exactly the attacked positions whatever its coefficients.

use medchain_core::hash::{domain, ChainId};
use medchain_core::keys::{
    verify_batch, verify_batch_with_rng, BatchError, Identity, Signature, SignedMessage, VerifyKey,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

const NET: ChainId = ChainId::from_byte_array([0x5a; 32]);
const OTHER_NET: ChainId = ChainId::from_byte_array([0xa5; 32]);

/// One signature as a batch holds it (owned).
struct Owned {
    key: VerifyKey,
    chain: ChainId,
    label: &'static str,
    message: Vec<u8>,
    signature: Signature,
}

impl Owned {
    fn item(&self) -> SignedMessage<'_> {
        SignedMessage {
            key: &self.key,
            chain: &self.chain,
            label: self.label,
            message: &self.message,
            signature: &self.signature,
        }
    }
}

/// 4 contributors' transaction signatures and 4 validators' votes: 200 signatures.
fn block_signatures() -> Vec<Owned> {
    let mut rng = ChaCha20Rng::seed_from_u64(2026);
    let contributors: Vec<Identity> = (0..4).map(|_| Identity::generate(&mut rng)).collect();
    let validators: Vec<Identity> = (0..4).map(|_| Identity::generate(&mut rng)).collect();
    let mut out = Vec::new();
    for i in 0..196u32 {
        let id = &contributors[i as usize % 4];
        let mut tx_id = [0u8; 32];
        tx_id[..4].copy_from_slice(&i.to_be_bytes());
        out.push(Owned {
            key: id.verify_key(),
            chain: NET,
            label: domain::TX_SIG,
            signature: id.sign(&NET, domain::TX_SIG, &tx_id),
            message: tx_id.to_vec(),
        });
    }
    for v in &validators {
        let vote = b"vote: block 7 accepted".to_vec();
        out.push(Owned {
            key: v.verify_key(),
            chain: NET,
            label: domain::VOTE_SIG,
            signature: v.sign(&NET, domain::VOTE_SIG, &vote),
            message: vote,
        });
    }
    out
}

fn strict(o: &Owned) -> bool {
    let mut framed = vec![o.label.len() as u8];
    framed.extend_from_slice(o.label.as_bytes());
    framed.extend_from_slice(o.chain.as_byte_array());
    framed.extend_from_slice(&o.message);
    let key = ed25519_dalek::VerifyingKey::from_bytes(o.key.as_byte_array()).unwrap();
    key.verify_strict(
        &framed,
        &ed25519_dalek::Signature::from_bytes(o.signature.as_byte_array()),
    )
    .is_ok()
}

/// Batch (deterministic and with three RNGs) and singles, checked against `bad`.
fn assert_verdicts(sigs: &[Owned], bad: &[usize]) {
    let items: Vec<SignedMessage<'_>> = sigs.iter().map(Owned::item).collect();
    let expected = if bad.is_empty() {
        Ok(())
    } else {
        Err(BatchError::Invalid {
            invalid: bad.to_vec(),
            total: items.len(),
        })
    };
    assert_eq!(verify_batch(&items), expected);
    for seed in 0..3 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        assert_eq!(verify_batch_with_rng(&items, &mut rng), expected);
    }
    for (i, it) in items.iter().enumerate() {
        let ok = it
            .key
            .verify(it.chain, it.label, it.message, it.signature)
            .is_ok();
        assert_eq!(ok, !bad.contains(&i), "single verdict of {i}");
    }
}

#[test]
fn a_blocks_honest_signatures_pass_batch_single_and_strict() {
    let sigs = block_signatures();
    assert_verdicts(&sigs, &[]);
    assert!(
        sigs.iter().all(strict),
        "ZIP-215 accepts what verify_strict accepted"
    );
    assert_eq!(verify_batch(&[]), Ok(()));
}

#[test]
fn attacks_on_each_binding_are_named_exactly() {
    let mut sigs = block_signatures();
    // Attack: replay on another network.
    sigs[3].chain = OTHER_NET;
    // Attack: reuse for another purpose.
    sigs[10].label = domain::CONSENT_SIG;
    // Attack: another message under the same signature.
    sigs[50].message[31] ^= 1;
    // Attack: claim another contributor signed it.
    sigs[77].key = sigs[78].key;
    // Attack: S + ℓ (third-party malleation of S).
    let ell: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut b = sigs[120].signature.to_byte_array();
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(b[32 + i]) + u16::from(ell[i]) + carry;
        b[32 + i] = v as u8;
        carry = v >> 8;
    }
    sigs[120].signature = Signature::from_byte_array(b);
    // Attack: R replaced by a small-order point in a non-canonical encoding (the identity
    // with the sign bit set), S kept: decodes under ZIP-215, but k changes and the equation fails.
    let mut b = sigs[150].signature.to_byte_array();
    b[..32].copy_from_slice(&[0; 32]);
    b[0] = 1;
    b[31] = 0x80;
    sigs[150].signature = Signature::from_byte_array(b);
    // Attack: the last vote's signature swapped with the one before.
    let n = sigs.len();
    let (a, c) = (sigs[n - 1].signature, sigs[n - 2].signature);
    sigs[n - 1].signature = c;
    sigs[n - 2].signature = a;
    assert_verdicts(&sigs, &[3, 10, 50, 77, 120, 150, n - 2, n - 1]);
    let err = verify_batch(&sigs.iter().map(Owned::item).collect::<Vec<_>>()).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("8 of {n} signatures do not verify")
    );
}

#[test]
fn signed_message_debug_hides_the_message() {
    let sigs = block_signatures();
    let dbg = format!("{:?}", sigs[0].item());
    assert!(dbg.contains("message_len: 32"));
    assert!(!dbg.contains(&format!("{:?}", sigs[0].message)));
}
