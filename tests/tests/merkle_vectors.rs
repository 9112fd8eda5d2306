//! Checks medchain's Merkle trees against the pinned vectors in `tests/data/merkle-vectors.json`
//! (produced independently; see the file's `description`).

use medchain_core::encoding::{Decode, Encode};
use medchain_core::hash::MerkleRoot;
use medchain_core::merkle::{self, MerkleProof, MerkleTree};
use serde_json::Value;

const VECTORS: &str = include_str!("../data/merkle-vectors.json");

fn hex32(v: &Value) -> [u8; 32] {
    let s = v.as_str().expect("hex string");
    hex::decode(s).expect("hex").try_into().expect("32 bytes")
}

#[test]
fn merkle_vectors() {
    let v: Value = serde_json::from_str(VECTORS).expect("valid JSON");
    let data: Vec<Vec<u8>> = v["leaf_data"]
        .as_array()
        .expect("leaf_data")
        .iter()
        .map(|d| hex::decode(d.as_str().expect("hex")).expect("hex"))
        .collect();
    let leaves: Vec<[u8; 32]> = data.iter().map(|d| merkle::leaf_hash(d)).collect();
    let expected_leaves: Vec<[u8; 32]> = v["leaf_hashes"]
        .as_array()
        .expect("leaf_hashes")
        .iter()
        .map(hex32)
        .collect();
    assert_eq!(leaves, expected_leaves, "leaf hashes");

    let cases = v["cases"].as_array().expect("cases");
    let sizes: Vec<u64> = cases.iter().map(|c| c["n"].as_u64().expect("n")).collect();
    assert_eq!(sizes, [0, 1, 2, 3, 4, 5, 7, 8]);
    for case in cases {
        let n = case["n"].as_u64().expect("n") as usize;
        let tree_leaves = &leaves[..n];
        let root = MerkleRoot::from_byte_array(hex32(&case["root"]));
        assert_eq!(merkle::merkle_root(tree_leaves), root, "root n={n}");
        assert_eq!(
            merkle::merkle_root_checked(tree_leaves),
            Ok(root),
            "checked n={n}"
        );
        assert_eq!(MerkleTree::new(tree_leaves).unwrap().root(), root);
        assert_eq!(
            case["root"]
                .as_str()
                .unwrap()
                .parse::<MerkleRoot>()
                .unwrap(),
            root
        );

        let p = &case["proof"];
        if n == 0 {
            assert!(p.is_null());
            assert_eq!(root, merkle::EMPTY_ROOT);
            continue;
        }
        let index = p["leaf_index"].as_u64().expect("leaf_index") as usize;
        assert_eq!(p["leaf_count"].as_u64(), Some(n as u64));
        let siblings: Vec<[u8; 32]> = p["siblings"]
            .as_array()
            .expect("siblings")
            .iter()
            .map(hex32)
            .collect();
        let encoded = hex::decode(p["encoded"].as_str().expect("encoded")).expect("hex");

        let made = merkle::proof(tree_leaves, index).unwrap();
        assert_eq!(made.siblings(), &siblings[..], "siblings n={n}");
        assert_eq!(made.to_bytes(), encoded, "encoding n={n}");

        let decoded = MerkleProof::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, made);
        assert_eq!((decoded.leaf_index(), decoded.leaf_count()), (index, n));
        decoded.verify(&root, &leaves[index]).unwrap();
        for (j, other) in tree_leaves.iter().enumerate() {
            if j != index {
                assert!(decoded.verify(&root, other).is_err(), "n={n} j={j}");
            }
        }
    }
}
