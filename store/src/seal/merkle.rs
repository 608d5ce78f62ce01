//! The Merkle tree of RFC 6962 (Certificate Transparency), section 2.1, and the proof checks of
//! RFC 9162 section 2.1.3.2 (inclusion) and 2.1.4.2 (consistency).
//!
//! MTH({}) = SHA-256(""), MTH({d}) = SHA-256(0x00 || d), and for n > 1 with k the largest power
//! of two below n: MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n])).
//!
//! Proofs are computed in two steps: [`inclusion_ranges`] and [`consistency_ranges`] name the
//! leaf ranges whose subtree hashes make up the proof (pure arithmetic on the sizes), and the
//! caller hashes them from what it has: all leaves in memory ([`inclusion_path`],
//! [`consistency_proof`]) or the sealed tables (`etal_projections::sealer`).

use sha2::{Digest, Sha256};

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// SHA-256(0x00 || data): the hash of a leaf.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// SHA-256(0x01 || left || right): the hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: SHA-256 of nothing.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// The largest power of two strictly below `n` (n >= 2).
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1u64 << (63 - (n - 1).leading_zeros())
}

/// MTH of leaf hashes (already hashed with [`leaf_hash`]).
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => empty_root(),
        1 => leaves[0],
        n => {
            let k = split(n as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The leaf ranges `[start, end)` whose subtree hashes form the inclusion path of leaf `index`
/// in the tree of `size` leaves, in the order of the path (bottom up).
pub fn inclusion_ranges(index: u64, size: u64) -> Vec<(u64, u64)> {
    fn walk(m: u64, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if n <= 1 {
            return;
        }
        let k = split(n);
        if m < k {
            walk(m, start, start + k, out);
            out.push((start + k, end));
        } else {
            walk(m - k, start + k, end, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if index < size {
        walk(index, 0, size, &mut out);
    }
    out
}

/// The leaf ranges whose subtree hashes form the consistency proof from the tree of `old` leaves
/// to the tree of `new` leaves (RFC 6962 section 2.1.2, PROOF(m, D[n])).
pub fn consistency_ranges(old: u64, new: u64) -> Vec<(u64, u64)> {
    fn sub(m: u64, start: u64, end: u64, whole: bool, out: &mut Vec<(u64, u64)>) {
        let n = end - start;
        if m == n {
            if !whole {
                out.push((start, end));
            }
            return;
        }
        let k = split(n);
        if m <= k {
            sub(m, start, start + k, whole, out);
            out.push((start + k, end));
        } else {
            sub(m - k, start + k, end, false, out);
            out.push((start, start + k));
        }
    }
    let mut out = Vec::new();
    if 0 < old && old < new {
        sub(old, 0, new, true, &mut out);
    }
    out
}

/// The inclusion path of leaf `index` among `leaves`.
pub fn inclusion_path(index: u64, leaves: &[Hash]) -> Vec<Hash> {
    inclusion_ranges(index, leaves.len() as u64)
        .into_iter()
        .map(|(a, b)| root(&leaves[a as usize..b as usize]))
        .collect()
}

/// The consistency proof from the first `old` of `leaves` to all of them.
pub fn consistency_proof(old: u64, leaves: &[Hash]) -> Vec<Hash> {
    consistency_ranges(old, leaves.len() as u64)
        .into_iter()
        .map(|(a, b)| root(&leaves[a as usize..b as usize]))
        .collect()
}

/// RFC 9162 section 2.1.3.2: whether `path` proves `leaf` is leaf `index` of the tree of `size`
/// leaves whose root is `root`.
pub fn verify_inclusion(index: u64, size: u64, leaf: &Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in path {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    s_n == 0 && r == *root
}

/// RFC 9162 section 2.1.4.2: whether `proof` shows the tree of `old` leaves with root
/// `old_root` is a prefix of the tree of `new` leaves with root `new_root`.
pub fn verify_consistency(
    old: u64,
    new: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> bool {
    if old > new {
        return false;
    }
    if old == new {
        return proof.is_empty() && old_root == new_root;
    }
    if old == 0 {
        // The empty tree is a prefix of every tree; the proof is empty.
        return proof.is_empty();
    }
    if proof.is_empty() {
        return false;
    }
    let mut path: Vec<Hash> = proof.to_vec();
    if old.is_power_of_two() {
        path.insert(0, *old_root);
    }
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s_n == 0 {
            return false;
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    fr == *old_root && sr == *new_root && s_n == 0
}

/// The right edge of a growing tree: the roots of its perfect subtrees, largest (leftmost)
/// first, one per bit set in its size. Enough to append leaves and to compute the root without
/// the leaves before.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// (height, hash), heights strictly decreasing.
    nodes: Vec<(u32, Hash)>,
}

impl Frontier {
    /// The frontier of a tree of `size` leaves from the roots of its perfect subtrees, largest
    /// first (as [`Frontier::perfect_subtrees`] names them).
    pub fn from_subtrees(size: u64, hashes: Vec<Hash>) -> Option<Frontier> {
        let heights = Self::perfect_subtrees(size);
        if heights.len() != hashes.len() {
            return None;
        }
        Some(Frontier {
            size,
            nodes: heights
                .into_iter()
                .map(|(_, height)| height)
                .zip(hashes)
                .collect(),
        })
    }

    /// The perfect subtrees of a tree of `size` leaves, largest first: (first leaf, height).
    pub fn perfect_subtrees(size: u64) -> Vec<(u64, u32)> {
        let mut out = Vec::new();
        let mut start = 0;
        for height in (0..64).rev() {
            if size & (1u64 << height) != 0 {
                out.push((start, height));
                start += 1u64 << height;
            }
        }
        out
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a leaf hash; calls `completed(height, index, hash)` for every perfect subtree
    /// of height >= 1 this completes (index: its position among the subtrees of that height).
    pub fn push(&mut self, leaf: Hash, mut completed: impl FnMut(u32, u64, &Hash)) {
        let mut node = (0u32, leaf);
        let first = self.size;
        while let Some(&(height, left)) = self.nodes.last() {
            if height != node.0 {
                break;
            }
            self.nodes.pop();
            node = (height + 1, node_hash(&left, &node.1));
            completed(node.0, first >> node.0, &node.1);
        }
        self.nodes.push(node);
        self.size += 1;
    }

    /// MTH of the leaves appended so far.
    pub fn root(&self) -> Hash {
        let mut iter = self.nodes.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return empty_root();
        };
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        acc
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaves(n: usize) -> Vec<Hash> {
        (0..n)
            .map(|i| leaf_hash(&(i as u64).to_be_bytes()))
            .collect()
    }

    #[test]
    fn frontier_root_equals_the_recursive_root() {
        let all = leaves(300);
        let mut f = Frontier::default();
        assert_eq!(f.root(), empty_root());
        for (i, leaf) in all.iter().enumerate() {
            f.push(*leaf, |_, _, _| {});
            assert_eq!(f.root(), root(&all[..=i]), "size {}", i + 1);
        }
    }

    #[test]
    fn completed_subtrees_are_the_perfect_subtrees() {
        let all = leaves(70);
        let mut f = Frontier::default();
        let mut seen = Vec::new();
        for leaf in &all {
            f.push(*leaf, |h, i, hash| seen.push((h, i, *hash)));
        }
        for (h, i, hash) in seen {
            let w = 1usize << h;
            let start = i as usize * w;
            assert_eq!(hash, root(&all[start..start + w]));
        }
        let subtrees = Frontier::perfect_subtrees(70);
        assert_eq!(subtrees, vec![(0, 6), (64, 2), (68, 1)]);
        let hashes = subtrees
            .iter()
            .map(|(s, h)| root(&all[*s as usize..(*s + (1 << h)) as usize]))
            .collect();
        assert_eq!(Frontier::from_subtrees(70, hashes).unwrap(), f);
    }

    #[test]
    fn every_inclusion_and_consistency_proof_verifies_and_a_wrong_one_does_not() {
        let all = leaves(40);
        for n in 1..=all.len() {
            let r = root(&all[..n]);
            for m in 0..n {
                let path = inclusion_path(m as u64, &all[..n]);
                assert!(verify_inclusion(m as u64, n as u64, &all[m], &path, &r));
                let other = all[(m + 1) % n];
                if n > 1 {
                    assert!(!verify_inclusion(m as u64, n as u64, &other, &path, &r));
                }
                let old = root(&all[..m]);
                let proof = consistency_proof(m as u64, &all[..n]);
                assert!(
                    verify_consistency(m as u64, n as u64, &old, &r, &proof),
                    "{m} {n}"
                );
                if m > 0 {
                    let wrong = root(&all[1..=m]);
                    assert!(!verify_consistency(m as u64, n as u64, &wrong, &r, &proof));
                }
            }
        }
    }
}
