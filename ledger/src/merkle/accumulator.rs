//! An append-only Merkle accumulator: the root of a growing list of leaves, in memory
//! that grows with the logarithm of the leaf count.

use consign_schemas::{EventHash, Hash32};

use super::{empty_root, leaf_hash, node_hash};

/// The roots of the perfect subtrees that make up a tree of `len` leaves.
///
/// A tree of `n` leaves is a row of perfect subtrees, one for each set bit of `n`,
/// largest on the left. [`MerkleAccumulator::root`] equals [`super::root`] over the
/// same leaves for every size.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MerkleAccumulator {
    /// Subtree roots, largest (leftmost) first.
    subtrees: Vec<Hash32>,
    len: u64,
}

impl MerkleAccumulator {
    /// Creates an accumulator of the empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf, merging the perfect subtrees of equal size that it completes.
    pub fn push(&mut self, leaf: &EventHash) {
        self.push_reporting(leaf, |_, _, _| {});
    }

    /// Appends one leaf like [`Self::push`] and passes each perfect subtree it
    /// completes to `completed` as `(level, index, root)`: the subtree of `2^level`
    /// leaves starting at leaf `index << level`. The leaf itself is level 0.
    pub fn push_reporting(
        &mut self,
        leaf: &EventHash,
        mut completed: impl FnMut(u32, u64, &Hash32),
    ) {
        let mut hash = leaf_hash(leaf);
        let position = self.len;
        completed(0, position, &hash);

        // Each trailing set bit of the old size is a subtree of the same size as the
        // one being carried, so the two merge, as in binary addition of 1.
        let mut carry = self.len;
        let mut level = 0;
        while carry & 1 == 1 {
            let left = self
                .subtrees
                .pop()
                .expect("one subtree for each set bit of the leaf count");
            hash = node_hash(&left, &hash);
            carry >>= 1;
            level += 1;
            completed(level, position >> level, &hash);
        }
        self.subtrees.push(hash);
        self.len += 1;
    }

    /// Rebuilds the accumulator of a tree of `len` leaves from the roots of its perfect
    /// subtrees, largest (leftmost) first: one for each set bit of `len`.
    ///
    /// # Panics
    ///
    /// Panics when the number of roots is not the number of set bits of `len`.
    pub fn from_subtrees(len: u64, subtrees: Vec<Hash32>) -> Self {
        assert_eq!(
            subtrees.len(),
            len.count_ones() as usize,
            "a tree of {len} leaves has one perfect subtree per set bit"
        );
        Self { subtrees, len }
    }

    /// Returns the number of leaves appended.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Returns whether no leaf has been appended.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Computes the root of the leaves appended so far.
    pub fn root(&self) -> Hash32 {
        // The right subtree of a node is always the hash of everything to its right, so
        // the subtrees fold from the right: H(a, H(b, c)) for sizes 4, 2 and 1.
        let mut subtrees = self.subtrees.iter().rev();
        let Some(&last) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(last, |right, left| node_hash(left, &right))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hash_per_set_bit() {
        let mut accumulator = MerkleAccumulator::new();
        for i in 0..1_000_u32 {
            accumulator.push(&Hash32::from_bytes(
                *blake3::hash(&i.to_be_bytes()).as_bytes(),
            ));
            let count = accumulator.len();

            assert_eq!(
                accumulator.subtrees.len(),
                count.count_ones() as usize,
                "size {count}"
            );
        }
    }
}
