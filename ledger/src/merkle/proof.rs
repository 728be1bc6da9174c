//! Inclusion and consistency proofs (RFC 9162 sections 2.1.3 and 2.1.4) and their
//! verification.

use consign_schemas::{EventHash, Hash32};

use super::{MerkleError, empty_root, leaf_hash, node_hash, root, size_of, split_point};

/// Builds the inclusion proof of leaf `index` (PATH in RFC 9162 section 2.1.3.1): the
/// sibling hashes from the leaf up to the root, nearest the leaf first.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] when `index` is not below `leaves.len()`.
pub fn inclusion_proof(leaves: &[EventHash], index: u64) -> Result<Vec<Hash32>, MerkleError> {
    let out_of_range = || MerkleError::IndexOutOfRange {
        index,
        tree_size: size_of(leaves),
    };
    let position = usize::try_from(index).map_err(|_| out_of_range())?;
    if position >= leaves.len() {
        return Err(out_of_range());
    }
    let mut proof = Vec::new();
    push_path(position, leaves, &mut proof);
    Ok(proof)
}

/// Appends PATH(index, leaves) to `proof`; `index` is below `leaves.len()`.
fn push_path(index: usize, leaves: &[EventHash], proof: &mut Vec<Hash32>) {
    if leaves.len() <= 1 {
        return;
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    if index < left.len() {
        push_path(index, left, proof);
        proof.push(root(right));
    } else {
        push_path(index - left.len(), right, proof);
        proof.push(root(left));
    }
}

/// Checks that `leaf` is leaf `index` of the tree of `tree_size` leaves with root
/// `root`, by the algorithm of RFC 9162 section 2.1.3.2.
pub fn verify_inclusion(
    leaf: &EventHash,
    index: u64,
    tree_size: u64,
    proof: &[Hash32],
    root: &Hash32,
) -> bool {
    if index >= tree_size {
        return false;
    }
    // `node` is the leaf's position among the nodes of the current level and `last`
    // that of the level's last node.
    let mut node = index;
    let mut last = tree_size - 1;
    let mut hash = leaf_hash(leaf);
    for sibling in proof {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            hash = node_hash(sibling, &hash);
            // A last node without a sibling on its level moves up unchanged.
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            hash = node_hash(&hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && hash == *root
}

/// Builds the proof that the tree of the first `old_size` leaves is a prefix of the
/// tree of all `leaves` (PROOF and SUBPROOF in RFC 9162 section 2.1.4.1).
///
/// The proof is empty when `old_size` is 0 or equals `leaves.len()`, because nothing
/// needs proving then.
///
/// # Errors
///
/// [`MerkleError::OldSizeTooLarge`] when `old_size` is larger than `leaves.len()`.
pub fn consistency_proof(leaves: &[EventHash], old_size: u64) -> Result<Vec<Hash32>, MerkleError> {
    let too_large = || MerkleError::OldSizeTooLarge {
        old_size,
        new_size: size_of(leaves),
    };
    let old = usize::try_from(old_size).map_err(|_| too_large())?;
    if old > leaves.len() {
        return Err(too_large());
    }
    let mut proof = Vec::new();
    if old > 0 && old < leaves.len() {
        push_subproof(old, leaves, true, &mut proof);
    }
    Ok(proof)
}

/// Appends SUBPROOF(old, leaves, complete) to `proof`. `complete` is true while
/// `leaves[..old]` is the whole old tree, whose root the verifier already has.
fn push_subproof(old: usize, leaves: &[EventHash], complete: bool, proof: &mut Vec<Hash32>) {
    if old == leaves.len() {
        if !complete {
            proof.push(root(leaves));
        }
        return;
    }
    let (left, right) = leaves.split_at(split_point(leaves.len()));
    if old <= left.len() {
        push_subproof(old, left, complete, proof);
        proof.push(root(right));
    } else {
        push_subproof(old - left.len(), right, false, proof);
        proof.push(root(left));
    }
}

/// Checks that the tree of `new_size` leaves with root `new_root` extends the tree of
/// `old_size` leaves with root `old_root`, by the algorithm of RFC 9162 section 2.1.4.2.
///
/// The RFC defines the algorithm for `0 < old_size < new_size` only. Outside that
/// range this function accepts exactly what [`consistency_proof`] builds. For an
/// `old_size` of 0 that is an empty proof with the empty tree's root as `old_root`, and
/// `new_root` is not checked because every tree extends the empty one. For equal sizes
/// it is an empty proof with equal roots. An `old_size` larger than `new_size` is
/// rejected.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash32,
    new_root: &Hash32,
    proof: &[Hash32],
) -> bool {
    if old_size > new_size {
        return false;
    }
    if old_size == 0 {
        return proof.is_empty() && *old_root == empty_root();
    }
    if old_size == new_size {
        return proof.is_empty() && old_root == new_root;
    }

    let Some((first, rest)) = proof.split_first() else {
        return false;
    };
    // A power-of-two old tree is a complete subtree of the new one, so the proof leaves
    // out its root and the verifier starts from `old_root` instead.
    let (seed, path) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };

    let mut node = old_size - 1;
    let mut last = new_size - 1;
    while node & 1 == 1 {
        node >>= 1;
        last >>= 1;
    }

    // `old_hash` rebuilds the old root and `new_hash` the new one from the same path.
    let mut old_hash = seed;
    let mut new_hash = seed;
    for sibling in path {
        if last == 0 {
            return false;
        }
        if node & 1 == 1 || node == last {
            old_hash = node_hash(sibling, &old_hash);
            new_hash = node_hash(sibling, &new_hash);
            while node & 1 == 0 && node != 0 {
                node >>= 1;
                last >>= 1;
            }
        } else {
            new_hash = node_hash(&new_hash, sibling);
        }
        node >>= 1;
        last >>= 1;
    }
    last == 0 && old_hash == *old_root && new_hash == *new_root
}
