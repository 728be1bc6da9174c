//! Property tests: proofs over random trees verify, and fail after any change to the
//! leaf, a proof node, the index, the sizes or the roots.

use proptest::prelude::*;

use super::super::*;

/// `count` distinct leaves derived from `seed`.
fn random_leaves(seed: u64, count: usize) -> Vec<EventHash> {
    (0..count as u64)
        .map(|i| {
            let mut hasher = blake3::Hasher::new();
            hasher.update(&seed.to_be_bytes());
            hasher.update(&i.to_be_bytes());
            Hash32::from_bytes(*hasher.finalize().as_bytes())
        })
        .collect()
}

/// Returns `hash` with one bit of its first byte flipped.
fn altered(hash: &Hash32) -> Hash32 {
    let mut bytes = *hash.as_bytes();
    bytes[0] ^= 1;
    Hash32::from_bytes(bytes)
}

/// Returns the split point of a tree of `size >= 2` leaves, counted up by doubling.
fn largest_power_of_two_below(size: u64) -> u64 {
    let mut power = 1;
    while power * 2 < size {
        power *= 2;
    }
    power
}

/// Length of the inclusion proof of leaf `index` in a tree of `size` leaves: the depth
/// of the leaf, counted from the tree shape.
fn path_length(index: u64, size: u64) -> usize {
    if size <= 1 {
        return 0;
    }
    let split = largest_power_of_two_below(size);
    if index < split {
        1 + path_length(index, split)
    } else {
        1 + path_length(index - split, size - split)
    }
}

/// Length of the consistency proof from `old` to `new` leaves, counted from the shape
/// of SUBPROOF in RFC 9162 section 2.1.4.1.
fn consistency_length(old: u64, new: u64) -> usize {
    fn subproof(old: u64, new: u64, complete: bool) -> usize {
        if old == new {
            return usize::from(!complete);
        }
        let split = largest_power_of_two_below(new);
        if old <= split {
            1 + subproof(old, split, complete)
        } else {
            1 + subproof(old - split, new - split, false)
        }
    }
    if old == 0 || old >= new {
        0
    } else {
        subproof(old, new, true)
    }
}

/// Tree sizes: mostly small, where every shape near the edges shows up, and a few of
/// up to 100,000 leaves.
fn tree_size() -> impl Strategy<Value = usize> {
    prop_oneof![10 => 1..=64_usize, 1 => 1_000..=100_000_usize]
}

/// Checks one leaf's inclusion proof and its rejection after each kind of change.
fn check_inclusion(
    tree: &[EventHash],
    tree_root: &Hash32,
    index: u64,
    pick: usize,
) -> Result<(), TestCaseError> {
    let size = tree.len() as u64;
    let leaf = tree[index as usize];
    let proof = inclusion_proof(tree, index).unwrap();

    prop_assert_eq!(proof.len(), path_length(index, size));
    prop_assert!(verify_inclusion(&leaf, index, size, &proof, tree_root));
    prop_assert!(!verify_inclusion(
        &altered(&leaf),
        index,
        size,
        &proof,
        tree_root
    ));
    prop_assert!(!verify_inclusion(
        &leaf,
        index,
        size,
        &proof,
        &altered(tree_root)
    ));
    if !proof.is_empty() {
        let mut changed = proof.clone();
        let node = pick % changed.len();
        changed[node] = altered(&changed[node]);
        prop_assert!(
            !verify_inclusion(&leaf, index, size, &changed, tree_root),
            "node {}",
            node
        );
    }
    let mut longer = proof.clone();
    longer.push(*tree_root);
    prop_assert!(!verify_inclusion(&leaf, index, size, &longer, tree_root));

    if size > 1 {
        let offset = 1 + pick as u64 % (size - 1);
        let other_index = (index + offset) % size;
        prop_assert!(
            !verify_inclusion(&leaf, other_index, size, &proof, tree_root),
            "index {}",
            other_index
        );
    }
    prop_assert!(!verify_inclusion(&leaf, size, size, &proof, tree_root));
    prop_assert!(!verify_inclusion(&leaf, index, index, &proof, tree_root));

    // A size whose tree has the same shape around the leaf verifies (see the module
    // documentation), so only sizes with a different proof length must fail.
    for wrong_size in [size - 1, size + 1, size * 2, size + 1 + pick as u64 % size] {
        if wrong_size != size && path_length(index, wrong_size) != proof.len() {
            prop_assert!(
                !verify_inclusion(&leaf, index, wrong_size, &proof, tree_root),
                "size {}",
                wrong_size
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn inclusion_proofs(seed: u64, size in tree_size(), picks in prop::collection::vec(any::<usize>(), 4)) {
        let tree = random_leaves(seed, size);
        let tree_root = root(&tree);
        for pick in picks {
            let index = (pick % size) as u64;
            check_inclusion(&tree, &tree_root, index, pick / size)?;
        }
    }

    #[test]
    fn consistency_proofs(seed: u64, size in tree_size(), old_pick: usize, pick: usize) {
        let tree = random_leaves(seed, size);
        let new = size as u64;
        let old = (old_pick % (size + 1)) as u64;
        let old_root = root(&tree[..old as usize]);
        let new_root = root(&tree);
        let proof = consistency_proof(&tree, old).unwrap();

        prop_assert_eq!(proof.len(), consistency_length(old, new));
        prop_assert!(verify_consistency(old, new, &old_root, &new_root, &proof));
        prop_assert!(!verify_consistency(old, new, &altered(&old_root), &new_root, &proof));
        // Every tree extends the empty tree, so only a non-empty old tree ties the proof
        // to the new root.
        if old > 0 {
            prop_assert!(!verify_consistency(old, new, &old_root, &altered(&new_root), &proof));
        }
        if !proof.is_empty() {
            let mut changed = proof.clone();
            let node = pick % changed.len();
            changed[node] = altered(&changed[node]);
            prop_assert!(!verify_consistency(old, new, &old_root, &new_root, &changed), "node {}", node);
        }
        if old < new {
            prop_assert!(!verify_consistency(new, old, &new_root, &old_root, &proof));
        }

        let wrong_sizes = [
            (old + 1, new),
            (old.saturating_sub(1), new),
            (old, new + 1),
            (old, new - 1),
            (old, new + pick as u64 % new),
        ];
        for (wrong_old, wrong_new) in wrong_sizes {
            if (wrong_old, wrong_new) != (old, new)
                && wrong_old <= wrong_new
                && consistency_length(wrong_old, wrong_new) != proof.len()
            {
                prop_assert!(
                    !verify_consistency(wrong_old, wrong_new, &old_root, &new_root, &proof),
                    "sizes {} and {}",
                    wrong_old,
                    wrong_new
                );
            }
        }
    }
}

/// A source that returns perfect subtrees from an accumulator's reported roots, as a
/// store of subtree roots would, and counts its lookups.
struct ReportedRoots {
    roots: std::collections::HashMap<(u32, u64), Hash32>,
    lookups: usize,
}

impl source::SubtreeSource for ReportedRoots {
    type Error = MerkleError;

    fn perfect_root(&mut self, level: u32, index: u64) -> Result<Hash32, MerkleError> {
        self.lookups += 1;
        Ok(self.roots[&(level, index)])
    }
}

fn reported_roots(tree: &[EventHash]) -> ReportedRoots {
    let mut accumulator = MerkleAccumulator::new();
    let mut roots = std::collections::HashMap::new();
    for leaf in tree {
        accumulator.push_reporting(leaf, |level, index, root| {
            roots.insert((level, index), *root);
        });
    }
    ReportedRoots { roots, lookups: 0 }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn proofs_from_subtree_roots_equal_proofs_from_leaves(
        seed: u64,
        size in prop_oneof![10 => 1..=300_usize, 1 => 1_000..=20_000_usize],
        picks in prop::collection::vec(any::<u64>(), 3),
    ) {
        let tree = random_leaves(seed, size);
        let mut stored = reported_roots(&tree);
        let new = size as u64;

        prop_assert_eq!(source::tree_root(&mut stored, new)?, root(&tree));
        for pick in picks {
            let index = pick % new;
            stored.lookups = 0;
            let from_roots = source::inclusion_proof_from(&mut stored, index, new)?;
            prop_assert_eq!(&from_roots, &inclusion_proof(&tree, index)?);
            // About two lookups per level: the sibling, and the parts of one right edge.
            prop_assert!(stored.lookups <= 2 * 64, "{} lookups", stored.lookups);

            let old = pick % (new + 1);
            let from_roots = source::consistency_proof_from(&mut stored, old, new)?;
            prop_assert_eq!(&from_roots, &consistency_proof(&tree, old)?);
            prop_assert_eq!(
                source::tree_root(&mut stored, old)?,
                root(&tree[..old as usize])
            );
        }
        prop_assert_eq!(
            source::inclusion_proof_from(&mut stored, new, new),
            Err(MerkleError::IndexOutOfRange { index: new, tree_size: new })
        );
        prop_assert_eq!(
            source::consistency_proof_from(&mut stored, new + 1, new),
            Err(MerkleError::OldSizeTooLarge { old_size: new + 1, new_size: new })
        );
    }

    #[test]
    fn leaf_slice_source_matches_the_root(seed: u64, size in 1..=200_usize) {
        let tree = random_leaves(seed, size);
        let mut slice = source::LeafSlice(&tree);

        prop_assert_eq!(source::tree_root(&mut slice, size as u64)?, root(&tree));
    }
}
