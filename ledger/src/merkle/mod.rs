//! Merkle trees over a chain's event hashes, shaped as in RFC 9162 (Certificate
//! Transparency 2.0) section 2.1 but hashed with BLAKE3.
//!
//! The leaves are event hashes in position order. A leaf hash is
//! `BLAKE3(0x00 || event hash)`, an interior node is `BLAKE3(0x01 || left || right)`,
//! and the root of the empty tree is `BLAKE3("")`. A tree of `n > 1` leaves splits at
//! `k`, the largest power of two smaller than `n`: the left subtree contains the first `k`
//! leaves and the right subtree the rest. The distinct prefixes keep a leaf from being
//! passed off as an interior node.
//!
//! [`root`] is the tree hash (MTH in the RFC), [`inclusion_proof`] and
//! [`verify_inclusion`] prove that an event is in a tree, [`consistency_proof`] and
//! [`verify_consistency`] prove that a tree extends an earlier one by appending only.
//! [`MerkleAccumulator`] computes the same roots while leaves are appended, keeping one
//! hash per perfect subtree. [`source`] builds the same proofs from the roots of
//! perfect subtrees, so a store that keeps those roots proves without reading every
//! leaf.
//!
//! Proofs do not bind the tree size: a proof checked against a tree size whose tree has
//! the same shape around the leaf (for example leaf 0 in trees of 3 and 4 leaves)
//! verifies as well. The size must come from the same signed statement as the root.

mod accumulator;
mod proof;
pub mod source;
#[cfg(test)]
mod tests;

use consign_schemas::{EventHash, Hash32};

pub use accumulator::MerkleAccumulator;
pub use proof::{consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};

/// Prefix of a leaf hash's input.
const LEAF_PREFIX: u8 = 0x00;

/// Prefix of an interior node hash's input.
const NODE_PREFIX: u8 = 0x01;

/// Errors of building a proof from a list of leaves.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MerkleError {
    #[error("leaf index {index} is out of range for a tree of {tree_size} leaves")]
    IndexOutOfRange { index: u64, tree_size: u64 },
    #[error("old tree size {old_size} is larger than the new tree size {new_size}")]
    OldSizeTooLarge { old_size: u64, new_size: u64 },
}

/// Returns the root of the empty tree, `BLAKE3("")`.
pub fn empty_root() -> Hash32 {
    Hash32::from_bytes(*blake3::hash(&[]).as_bytes())
}

/// Hashes one leaf: `BLAKE3(0x00 || event hash)`.
pub fn leaf_hash(leaf: &EventHash) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[LEAF_PREFIX]);
    hasher.update(leaf.as_bytes());
    Hash32::from_bytes(*hasher.finalize().as_bytes())
}

/// Hashes an interior node: `BLAKE3(0x01 || left || right)`.
pub fn node_hash(left: &Hash32, right: &Hash32) -> Hash32 {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&[NODE_PREFIX]);
    hasher.update(left.as_bytes());
    hasher.update(right.as_bytes());
    Hash32::from_bytes(*hasher.finalize().as_bytes())
}

/// Computes the Merkle tree hash of `leaves` (MTH in RFC 9162 section 2.1.1).
pub fn root(leaves: &[EventHash]) -> Hash32 {
    match leaves {
        [] => empty_root(),
        [leaf] => leaf_hash(leaf),
        _ => {
            let (left, right) = leaves.split_at(split_point(leaves.len()));
            node_hash(&root(left), &root(right))
        }
    }
}

/// Returns the largest power of two smaller than `n`, for `n >= 2`.
fn split_point(n: usize) -> usize {
    debug_assert!(n >= 2, "a tree of {n} leaves has no split point");
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// Returns the largest power of two smaller than `n`, for `n >= 2`.
fn split_point_u64(n: u64) -> u64 {
    debug_assert!(n >= 2, "a tree of {n} leaves has no split point");
    1 << (u64::BITS - 1 - (n - 1).leading_zeros())
}

/// Converts a slice length to the `u64` that proofs and errors carry.
fn size_of(leaves: &[EventHash]) -> u64 {
    // usize is at most 64 bits on every target Rust supports.
    leaves.len() as u64
}
