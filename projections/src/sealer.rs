//! R-AUD-2: the sealer. A reader of the log like the projections (one leader per database, the
//! committed order, each batch and the checkpoint in one transaction), which gives every event
//! the next leaf of the RFC 6962 tree: `seal_leaves` (gap-free index, leaf hash) and the perfect
//! subtrees of height 8, 16... it completes (`seal_nodes`). See `etal_store::seal`.
//!
//! It is not one of [`crate::all`]: its tables are history, never rebuilt nor swapped (the
//! triggers refuse it), and `etal projections rebuild` does not know it. A kill at any point
//! rolls the batch back with its checkpoint, so the tree after a restart is the tree built
//! from scratch (tested).

use std::sync::Mutex;

use etal_store::seal::leaf::event_leaf;
use etal_store::seal::merkle::{Frontier, Hash};
use etal_store::seal::{SealedTree, STORED_EVERY};
use etal_store::StoredEvent;
use sqlx::PgConnection;

use crate::{Projection, ProjectionError};

/// The checkpoint's name.
pub const NAME: &str = "sealer";

/// The sealer; keeps the tree's right edge between batches (read again from the tables when
/// they are not where it left them: another leader sealed meanwhile, or its batch rolled back).
#[derive(Default)]
pub struct Sealer {
    frontier: Mutex<Option<Frontier>>,
}

/// What one batch adds.
struct Batch {
    indices: Vec<i64>,
    positions: Vec<i64>,
    txids: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    node_heights: Vec<i16>,
    node_indices: Vec<i64>,
    node_hashes: Vec<Vec<u8>>,
}

/// Seals `events` after a tree of `frontier.size()` leaves (pure but for hashing).
fn seal(frontier: &mut Frontier, events: &[StoredEvent]) -> Batch {
    let mut b = Batch {
        indices: Vec::with_capacity(events.len()),
        positions: Vec::with_capacity(events.len()),
        txids: Vec::with_capacity(events.len()),
        hashes: Vec::with_capacity(events.len()),
        node_heights: Vec::new(),
        node_indices: Vec::new(),
        node_hashes: Vec::new(),
    };
    for event in events {
        let leaf: Hash = event_leaf(event);
        b.indices.push(frontier.size() as i64);
        b.positions.push(event.position.position);
        b.txids.push(event.position.txid);
        b.hashes.push(leaf.to_vec());
        frontier.push(leaf, |height, index, hash| {
            if height % STORED_EVERY == 0 {
                b.node_heights.push(height as i16);
                b.node_indices.push(index as i64);
                b.node_hashes.push(hash.to_vec());
            }
        });
    }
    b
}

#[async_trait::async_trait]
impl Projection for Sealer {
    fn name(&self) -> &'static str {
        NAME
    }

    fn tables(&self) -> &'static [&'static str] {
        &["seal_leaves", "seal_nodes"]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let size = SealedTree::new(&mut *conn).size().await?;
        let cached = self
            .frontier
            .lock()
            .expect("the sealer's frontier")
            .take()
            .filter(|f| f.size() == size);
        let mut frontier = match cached {
            Some(f) => f,
            None => SealedTree::new(&mut *conn).frontier(size).await?,
        };
        // Hashing is CPU work: off the async threads for big batches (catching up).
        let first = events.first().map_or(0, |e| e.position.position);
        let (frontier, batch) = if events.len() > 256 {
            let events = events.to_vec();
            tokio::task::spawn_blocking(move || {
                let b = seal(&mut frontier, &events);
                (frontier, b)
            })
            .await
            .map_err(|e| ProjectionError::Event {
                projection: NAME,
                position: first,
                reason: format!("hashing failed: {e}"),
            })?
        } else {
            let b = seal(&mut frontier, events);
            (frontier, b)
        };
        sqlx::query(
            "INSERT INTO seal_leaves (leaf_index, global_position, transaction_id, leaf_hash) \
             SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bytea[])",
        )
        .bind(&batch.indices)
        .bind(&batch.positions)
        .bind(&batch.txids)
        .bind(&batch.hashes)
        .execute(&mut *conn)
        .await?;
        if !batch.node_heights.is_empty() {
            sqlx::query(
                "INSERT INTO seal_nodes (height, node_index, hash) \
                 SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[])",
            )
            .bind(&batch.node_heights)
            .bind(&batch.node_indices)
            .bind(&batch.node_hashes)
            .execute(&mut *conn)
            .await?;
        }
        // Kept for the next batch; if this transaction rolls back, the size check drops it.
        *self.frontier.lock().expect("the sealer's frontier") = Some(frontier);
        Ok(())
    }
}
