#![allow(missing_docs)]
use medchain_core::encoding::Decode;
use medchain_core::keys::{Identity, BackupParams, VerifyKey, PublicIdentity};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[test]
fn overflow() {
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    let id = Identity::generate(&mut rng);
    let mut b = id.export_backup(b"pw", BackupParams::dangerous_test_only(), &mut rng).unwrap();
    b[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    let r = std::panic::catch_unwind(|| Identity::restore_backup(&b, b"pw").map(|_| ()));
    println!("overflow result: {:?}", r.map_err(|_| "PANIC"));
}

#[test]
fn noncanonical() {
    // p = 2^255 - 19; y = p + k for k in 0..19 => bytes of p+k little endian
    for k in 0u8..19 {
        for sign in [0u8, 0x80] {
            let mut b = [0xffu8; 32];
            b[0] = 0xed + k; // p = ...ffed (LE: ed ff ff ... 7f)
            b[31] = 0x7f | sign;
            if 0xedu16 + k as u16 > 0xff { continue; }
            let r = VerifyKey::from_byte_array(b);
            if let Ok(vk) = r {
                let canon = vk.as_dalek().to_edwards().compress().to_bytes();
                println!("k={k} sign={sign:#x} accepted; canonical={} same={}", hex::encode(canon), canon == b);
                let mut pi = [0u8;64]; pi[..32].copy_from_slice(&b);
                println!("  public identity decodes: {}", PublicIdentity::from_bytes(&pi).is_ok());
            }
        }
    }
}
