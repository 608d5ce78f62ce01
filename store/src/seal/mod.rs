//! The sealed history (R-AUD-2, R-AUD-3): every event a leaf of an RFC 6962 Merkle tree, in the
//! log's committed order, and signed checkpoints of that tree.
//!
//! - [`jcs`]: RFC 8785 canonical JSON; [`leaf`]: an event's leaf data and hash.
//! - [`merkle`]: the tree, its proofs and their checks (pure).
//! - [`note`]: C2SP signed checkpoints with Ed25519.
//! - [`SealedTree`] (here): the tree as stored by the sealer (`seal_leaves`, `seal_nodes`),
//!   from which roots and proofs are computed without reading every leaf.
//!
//! Storage: one `seal_leaves` row per event (gap-free leaf index, the event's global position,
//! its leaf hash) and one `seal_nodes` row per perfect subtree of height 8, 16, 24... (256,
//! 65,536... leaves). Any subtree hash then costs at most 128 stored hashes read, so a proof in
//! a tree of millions of leaves reads a few thousand hashes, and the stored nodes add 1/255 to
//! the leaves.

pub mod jcs;
pub mod leaf;
pub mod merkle;
pub mod note;

use sqlx::{PgConnection, Row};

use crate::error::StoreError;
use merkle::{Frontier, Hash};

/// Heights of the perfect subtrees stored in `seal_nodes`: multiples of this.
pub const STORED_EVERY: u32 = 8;

/// A leaf as the sealer stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedLeaf {
    pub index: u64,
    pub global_position: i64,
    pub transaction_id: i64,
    pub hash: Hash,
}

fn to_hash(bytes: Vec<u8>) -> Result<Hash, StoreError> {
    bytes
        .try_into()
        .map_err(|_| StoreError::Corrupt("a sealed hash is not 32 bytes".into()))
}

fn row_to_leaf(r: sqlx::postgres::PgRow) -> Result<SealedLeaf, StoreError> {
    Ok(SealedLeaf {
        index: r.try_get::<i64, _>("leaf_index")? as u64,
        global_position: r.try_get("global_position")?,
        transaction_id: r.try_get("transaction_id")?,
        hash: to_hash(r.try_get("leaf_hash")?)?,
    })
}

/// The stored tree, read through one connection (a transaction gives a consistent view).
pub struct SealedTree<'c> {
    conn: &'c mut PgConnection,
}

impl<'c> SealedTree<'c> {
    pub fn new(conn: &'c mut PgConnection) -> SealedTree<'c> {
        SealedTree { conn }
    }

    /// Leaves sealed so far.
    pub async fn size(&mut self) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT max(leaf_index) + 1 FROM seal_leaves")
            .fetch_one(&mut *self.conn)
            .await?;
        Ok(n.unwrap_or(0) as u64)
    }

    /// Leaves `[from, to)`, in order.
    pub async fn leaves(&mut self, from: u64, to: u64) -> Result<Vec<SealedLeaf>, StoreError> {
        let rows = sqlx::query(
            "SELECT leaf_index, global_position, transaction_id, leaf_hash FROM seal_leaves \
             WHERE leaf_index >= $1 AND leaf_index < $2 ORDER BY leaf_index",
        )
        .bind(from as i64)
        .bind(to as i64)
        .fetch_all(&mut *self.conn)
        .await?;
        rows.into_iter().map(row_to_leaf).collect()
    }

    /// The leaf of the event at `global_position`, if sealed.
    pub async fn leaf_of(
        &mut self,
        global_position: i64,
    ) -> Result<Option<SealedLeaf>, StoreError> {
        let row = sqlx::query(
            "SELECT leaf_index, global_position, transaction_id, leaf_hash FROM seal_leaves \
             WHERE global_position = $1",
        )
        .bind(global_position)
        .fetch_optional(&mut *self.conn)
        .await?;
        row.map(row_to_leaf).transpose()
    }

    /// Stored hashes of height `height` (0: leaves; else a multiple of [`STORED_EVERY`]),
    /// indices `[from, to)`; an error if one is missing (a tree not sealed that far).
    async fn stored(&mut self, height: u32, from: u64, to: u64) -> Result<Vec<Hash>, StoreError> {
        let rows: Vec<Vec<u8>> = if height == 0 {
            sqlx::query_scalar(
                "SELECT leaf_hash FROM seal_leaves WHERE leaf_index >= $1 AND leaf_index < $2 \
                 ORDER BY leaf_index",
            )
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(&mut *self.conn)
            .await?
        } else {
            sqlx::query_scalar(
                "SELECT hash FROM seal_nodes WHERE height = $1 AND node_index >= $2 \
                 AND node_index < $3 ORDER BY node_index",
            )
            .bind(height as i32)
            .bind(from as i64)
            .bind(to as i64)
            .fetch_all(&mut *self.conn)
            .await?
        };
        if rows.len() as u64 != to - from {
            return Err(StoreError::Corrupt(format!(
                "the sealed tree lacks hashes of height {height} in [{from}, {to})"
            )));
        }
        rows.into_iter().map(to_hash).collect()
    }

    /// The root of the perfect subtree of `2^height` leaves starting at leaf `start`.
    pub async fn perfect(&mut self, start: u64, height: u32) -> Result<Hash, StoreError> {
        let base = height - height % STORED_EVERY;
        let below = self
            .stored(
                base,
                start >> base,
                (start >> base) + (1u64 << (height - base)),
            )
            .await?;
        Ok(merkle::root(&below))
    }

    /// MTH of leaves `[start, end)`, a subtree of the RFC 6962 tree (start aligned as the
    /// tree's own nodes are).
    pub async fn range(&mut self, start: u64, end: u64) -> Result<Hash, StoreError> {
        if start == end {
            return Ok(merkle::empty_root());
        }
        let mut hashes = Vec::new();
        for (offset, height) in Frontier::perfect_subtrees(end - start) {
            hashes.push(self.perfect(start + offset, height).await?);
        }
        Ok(Frontier::from_subtrees(end - start, hashes)
            .expect("one hash per perfect subtree")
            .root())
    }

    /// The frontier of the first `size` leaves (to go on appending).
    pub async fn frontier(&mut self, size: u64) -> Result<Frontier, StoreError> {
        let mut hashes = Vec::new();
        for (start, height) in Frontier::perfect_subtrees(size) {
            hashes.push(self.perfect(start, height).await?);
        }
        Ok(Frontier::from_subtrees(size, hashes).expect("one hash per perfect subtree"))
    }

    /// The root of the first `size` leaves.
    pub async fn root(&mut self, size: u64) -> Result<Hash, StoreError> {
        self.range(0, size).await
    }

    /// The inclusion path of leaf `index` in the tree of `size` leaves.
    pub async fn inclusion_proof(
        &mut self,
        index: u64,
        size: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::new();
        for (a, b) in merkle::inclusion_ranges(index, size) {
            out.push(self.range(a, b).await?);
        }
        Ok(out)
    }

    /// The consistency proof from the tree of `old` leaves to the tree of `new` leaves.
    pub async fn consistency_proof(&mut self, old: u64, new: u64) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::new();
        for (a, b) in merkle::consistency_ranges(old, new) {
            out.push(self.range(a, b).await?);
        }
        Ok(out)
    }
}
