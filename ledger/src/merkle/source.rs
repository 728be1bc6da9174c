//! Proofs built from perfect subtree roots instead of the whole list of leaves.
//!
//! Every subtree that the RFC 9162 recursion visits starts at a multiple of the
//! largest power of two not above its size. So it is either a perfect subtree (a
//! power of two of leaves, aligned) or it splits into a perfect left part and a
//! smaller right part. A [`SubtreeSource`] returns the perfect ones; an inclusion proof then
//! takes about two lookups per level of the tree, and so does a consistency proof.
//! A store that keeps the roots of large perfect subtrees builds proofs for a chain of
//! millions of events without reading them.

use consign_schemas::{EventHash, Hash32};

use super::{MerkleError, node_hash, split_point_u64};

/// Gives the root of any perfect subtree of a tree being proved.
pub trait SubtreeSource {
    type Error: From<MerkleError>;

    /// Returns the root of the `2^level` leaves starting at leaf `index << level`.
    /// The leaves are all below the tree size of the proof being built.
    fn perfect_root(&mut self, level: u32, index: u64) -> Result<Hash32, Self::Error>;
}

/// Computes the root of the `size` leaves starting at `start`, where `start` is a
/// multiple of the largest power of two not above `size`, and `size > 0`.
pub fn range_root<S: SubtreeSource>(
    source: &mut S,
    start: u64,
    size: u64,
) -> Result<Hash32, S::Error> {
    if size.is_power_of_two() {
        let level = size.trailing_zeros();
        return source.perfect_root(level, start >> level);
    }
    let split = split_point_u64(size);
    let left = range_root(source, start, split)?;
    let right = range_root(source, start + split, size - split)?;
    Ok(node_hash(&left, &right))
}

/// Computes the root of the first `tree_size` leaves.
pub fn tree_root<S: SubtreeSource>(source: &mut S, tree_size: u64) -> Result<Hash32, S::Error> {
    if tree_size == 0 {
        return Ok(super::empty_root());
    }
    range_root(source, 0, tree_size)
}

/// Builds the inclusion proof of leaf `index` in the tree of `tree_size` leaves; the
/// same proof as [`super::inclusion_proof`] over those leaves.
///
/// # Errors
///
/// [`MerkleError::IndexOutOfRange`] when `index >= tree_size`, and the source's own.
pub fn inclusion_proof_from<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    tree_size: u64,
) -> Result<Vec<Hash32>, S::Error> {
    if index >= tree_size {
        return Err(MerkleError::IndexOutOfRange { index, tree_size }.into());
    }
    let mut proof = Vec::new();
    push_path(source, index, 0, tree_size, &mut proof)?;
    Ok(proof)
}

/// Appends PATH for leaf `index` of the subtree of `size` leaves at `start`.
fn push_path<S: SubtreeSource>(
    source: &mut S,
    index: u64,
    start: u64,
    size: u64,
    proof: &mut Vec<Hash32>,
) -> Result<(), S::Error> {
    if size <= 1 {
        return Ok(());
    }
    let split = split_point_u64(size);
    if index < split {
        push_path(source, index, start, split, proof)?;
        proof.push(range_root(source, start + split, size - split)?);
    } else {
        push_path(source, index - split, start + split, size - split, proof)?;
        proof.push(range_root(source, start, split)?);
    }
    Ok(())
}

/// Builds the proof that the tree of `old_size` leaves is a prefix of the tree of
/// `new_size` leaves; the same proof as [`super::consistency_proof`].
///
/// # Errors
///
/// [`MerkleError::OldSizeTooLarge`] when `old_size > new_size`, and the source's own.
pub fn consistency_proof_from<S: SubtreeSource>(
    source: &mut S,
    old_size: u64,
    new_size: u64,
) -> Result<Vec<Hash32>, S::Error> {
    if old_size > new_size {
        return Err(MerkleError::OldSizeTooLarge { old_size, new_size }.into());
    }
    let mut proof = Vec::new();
    if old_size > 0 && old_size < new_size {
        push_subproof(source, old_size, 0, new_size, true, &mut proof)?;
    }
    Ok(proof)
}

/// Appends SUBPROOF for the first `old` leaves of the subtree of `size` leaves at
/// `start`. `complete` is true while those leaves are the whole old tree.
fn push_subproof<S: SubtreeSource>(
    source: &mut S,
    old: u64,
    start: u64,
    size: u64,
    complete: bool,
    proof: &mut Vec<Hash32>,
) -> Result<(), S::Error> {
    if old == size {
        if !complete {
            proof.push(range_root(source, start, size)?);
        }
        return Ok(());
    }
    let split = split_point_u64(size);
    if old <= split {
        push_subproof(source, old, start, split, complete, proof)?;
        proof.push(range_root(source, start + split, size - split)?);
    } else {
        push_subproof(
            source,
            old - split,
            start + split,
            size - split,
            false,
            proof,
        )?;
        proof.push(range_root(source, start, split)?);
    }
    Ok(())
}

/// A [`SubtreeSource`] over leaves held in memory, hashing each subtree it is asked for.
#[derive(Debug)]
pub struct LeafSlice<'a>(pub &'a [EventHash]);

impl SubtreeSource for LeafSlice<'_> {
    type Error = MerkleError;

    fn perfect_root(&mut self, level: u32, index: u64) -> Result<Hash32, MerkleError> {
        let size = 1_u64 << level;
        let start = index << level;
        let out_of_range = || MerkleError::IndexOutOfRange {
            index: start + size - 1,
            tree_size: super::size_of(self.0),
        };
        let start = usize::try_from(start).map_err(|_| out_of_range())?;
        let end = usize::try_from(size)
            .ok()
            .and_then(|size| start.checked_add(size))
            .ok_or_else(out_of_range)?;
        let leaves = self.0.get(start..end).ok_or_else(out_of_range)?;
        Ok(super::root(leaves))
    }
}
