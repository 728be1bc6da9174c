//! Trees of 0, 1, 2, 3 and 7 leaves checked against hashes written out from the
//! definitions, the error cases and the accumulator.

use consign_schemas::{EventHash, Hash32};

use super::*;

mod properties;

/// Leaf `i` of the hand-computed trees: 32 bytes of value `i`.
fn leaf(i: u8) -> EventHash {
    Hash32::from_bytes([i; 32])
}

fn leaves(count: u8) -> Vec<EventHash> {
    (0..count).map(leaf).collect()
}

/// `BLAKE3(0x00 || leaf i)`, written out without the module's helpers.
fn hashed_leaf(i: u8) -> Hash32 {
    let mut input = vec![0x00];
    input.extend_from_slice(&[i; 32]);
    Hash32::from_bytes(*blake3::hash(&input).as_bytes())
}

/// `BLAKE3(0x01 || left || right)`, written out without the module's helpers.
fn node(left: Hash32, right: Hash32) -> Hash32 {
    let mut input = vec![0x01];
    input.extend_from_slice(left.as_bytes());
    input.extend_from_slice(right.as_bytes());
    Hash32::from_bytes(*blake3::hash(&input).as_bytes())
}

/// Root of the seven-leaf tree: ((0 1)(2 3))((4 5) 6).
fn seven_root() -> Hash32 {
    let left = node(
        node(hashed_leaf(0), hashed_leaf(1)),
        node(hashed_leaf(2), hashed_leaf(3)),
    );
    let right = node(node(hashed_leaf(4), hashed_leaf(5)), hashed_leaf(6));
    node(left, right)
}

#[test]
fn empty_tree_root() {
    let expected = Hash32::from_bytes(*blake3::hash(b"").as_bytes());

    assert_eq!(root(&[]), expected);
    assert_eq!(empty_root(), expected);
}

#[test]
fn one_leaf_root() {
    assert_eq!(root(&leaves(1)), hashed_leaf(0));
}

#[test]
fn two_leaf_root() {
    assert_eq!(root(&leaves(2)), node(hashed_leaf(0), hashed_leaf(1)));
}

#[test]
fn three_leaf_root() {
    let expected = node(node(hashed_leaf(0), hashed_leaf(1)), hashed_leaf(2));

    assert_eq!(root(&leaves(3)), expected);
}

#[test]
fn seven_leaf_root() {
    assert_eq!(root(&leaves(7)), seven_root());
}

#[test]
fn seven_leaf_inclusion_proofs() {
    let tree = leaves(7);
    let left_half = node(
        node(hashed_leaf(0), hashed_leaf(1)),
        node(hashed_leaf(2), hashed_leaf(3)),
    );

    let of_four = inclusion_proof(&tree, 4).unwrap();
    assert_eq!(of_four, vec![hashed_leaf(5), hashed_leaf(6), left_half]);
    assert!(verify_inclusion(&leaf(4), 4, 7, &of_four, &seven_root()));

    // Leaf 6 has no sibling on the lowest level, so its proof is one node shorter.
    let of_six = inclusion_proof(&tree, 6).unwrap();
    assert_eq!(
        of_six,
        vec![node(hashed_leaf(4), hashed_leaf(5)), left_half]
    );
    assert!(verify_inclusion(&leaf(6), 6, 7, &of_six, &seven_root()));
}

#[test]
fn one_leaf_inclusion_proof_is_empty() {
    let proof = inclusion_proof(&leaves(1), 0).unwrap();

    assert!(proof.is_empty());
    assert!(verify_inclusion(&leaf(0), 0, 1, &proof, &hashed_leaf(0)));
}

#[test]
fn seven_leaf_consistency_proofs() {
    let tree = leaves(7);
    let three_root = root(&tree[..3]);
    let four_root = root(&tree[..4]);
    let last_three = node(node(hashed_leaf(4), hashed_leaf(5)), hashed_leaf(6));

    let from_three = consistency_proof(&tree, 3).unwrap();
    let expected = vec![
        hashed_leaf(2),
        hashed_leaf(3),
        node(hashed_leaf(0), hashed_leaf(1)),
        last_three,
    ];
    assert_eq!(from_three, expected);
    assert!(verify_consistency(
        3,
        7,
        &three_root,
        &seven_root(),
        &from_three
    ));

    // The old tree of four leaves is the new tree's left subtree, whose root the
    // verifier already has.
    let from_four = consistency_proof(&tree, 4).unwrap();
    assert_eq!(from_four, vec![last_three]);
    assert!(verify_consistency(
        4,
        7,
        &four_root,
        &seven_root(),
        &from_four
    ));
}

#[test]
fn consistency_from_empty_tree() {
    let proof = consistency_proof(&leaves(7), 0).unwrap();

    assert!(proof.is_empty());
    assert!(verify_consistency(
        0,
        7,
        &empty_root(),
        &seven_root(),
        &proof
    ));
    assert!(!verify_consistency(
        0,
        7,
        &seven_root(),
        &seven_root(),
        &proof
    ));
}

#[test]
fn consistency_of_equal_sizes() {
    let proof = consistency_proof(&leaves(7), 7).unwrap();

    assert!(proof.is_empty());
    assert!(verify_consistency(
        7,
        7,
        &seven_root(),
        &seven_root(),
        &proof
    ));
    assert!(!verify_consistency(
        7,
        7,
        &empty_root(),
        &seven_root(),
        &proof
    ));
}

#[test]
fn consistency_rejects_shrinking_tree() {
    let proof = consistency_proof(&leaves(7), 3).unwrap();

    assert!(!verify_consistency(
        7,
        3,
        &seven_root(),
        &root(&leaves(3)),
        &proof
    ));
}

#[test]
fn inclusion_index_out_of_range() {
    let error = inclusion_proof(&leaves(7), 7).unwrap_err();

    assert_eq!(
        error,
        MerkleError::IndexOutOfRange {
            index: 7,
            tree_size: 7
        }
    );
    assert!(error.to_string().contains("leaf index 7"), "{error}");
}

#[test]
fn inclusion_in_empty_tree() {
    let error = inclusion_proof(&[], 0).unwrap_err();

    assert_eq!(
        error,
        MerkleError::IndexOutOfRange {
            index: 0,
            tree_size: 0
        }
    );
}

#[test]
fn consistency_old_size_too_large() {
    let error = consistency_proof(&leaves(3), 4).unwrap_err();

    assert_eq!(
        error,
        MerkleError::OldSizeTooLarge {
            old_size: 4,
            new_size: 3
        }
    );
}

#[test]
fn same_shape_size_is_not_detected() {
    // Leaf 0 sits under the same two left turns in trees of 3 and 4 leaves, so the
    // proof from the 3-leaf tree also verifies with a tree size of 4.
    let tree = leaves(3);
    let proof = inclusion_proof(&tree, 0).unwrap();

    assert!(verify_inclusion(&leaf(0), 0, 4, &proof, &root(&tree)));
}

#[test]
fn other_shape_size_is_rejected() {
    // Leaf 2 is the lone right child in a tree of 3 leaves but has a sibling in a tree
    // of 4, whose proof is one node longer.
    let tree = leaves(3);
    let proof = inclusion_proof(&tree, 2).unwrap();

    assert!(verify_inclusion(&leaf(2), 2, 3, &proof, &root(&tree)));
    assert!(!verify_inclusion(&leaf(2), 2, 4, &proof, &root(&tree)));
}

#[test]
fn accumulator_matches_root() {
    let tree: Vec<EventHash> = (0..1_000_u32)
        .map(|i| Hash32::from_bytes(*blake3::hash(&i.to_be_bytes()).as_bytes()))
        .collect();
    let mut accumulator = MerkleAccumulator::new();

    assert!(accumulator.is_empty());
    assert_eq!(accumulator.root(), root(&[]));
    for (count, leaf) in (1..).zip(&tree) {
        accumulator.push(leaf);
        assert_eq!(accumulator.len(), count);
        assert_eq!(
            accumulator.root(),
            root(&tree[..count as usize]),
            "size {count}"
        );
    }
}
