//! R-AUD-3: signed checkpoints of the sealed tree, their publication outside the database, and
//! the verification an auditor runs (`etal audit verify`, docs/auditing.md).
//!
//! The sealer (`etal_projections::sealer`) adds leaves; here, every `interval`, one process
//! (a transaction-scoped advisory lock) signs `origin / size / root` of the tree as sealed with
//! the key from the environment (never from the database), stores the note and writes it to the
//! publication folder. Verification trusts nothing in the database: it recomputes every leaf
//! from the events, the root from the leaves, and checks the signature with the auditor's copy
//! of the public key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use etal_store::log::{EventLog, Position};
use etal_store::seal::leaf::{event_leaf, leaf_data};
use etal_store::seal::merkle::{self, Frontier, Hash};
use etal_store::seal::note::{Checkpoint, CheckpointSigner, CheckpointVerifier, NoteError};
use etal_store::seal::SealedTree;
use serde::Serialize;
use sqlx::Row;

use crate::{App, AppError};

/// How checkpoints are signed and published.
#[derive(Debug, Clone)]
pub struct SealSettings {
    /// ETAL_SEAL_KEY / ETAL_SEAL_KEY_FILE (none: the tree is sealed, nothing is signed).
    pub signer: Option<CheckpointSigner>,
    /// The checkpoints' origin line (ETAL_CHECKPOINT_ORIGIN).
    pub origin: String,
    /// How often a checkpoint is signed when the tree grew (ETAL_CHECKPOINT_INTERVAL_SECS).
    pub interval: Duration,
    /// Where each checkpoint is written, outside the database (ETAL_CHECKPOINT_DIR).
    pub publish_dir: Option<PathBuf>,
    /// Addresses each checkpoint is e-mailed to (ETAL_AUDITORS_EMAIL).
    pub auditors: Vec<String>,
}

impl Default for SealSettings {
    fn default() -> Self {
        SealSettings {
            signer: None,
            origin: "etal".into(),
            interval: Duration::from_secs(600),
            publish_dir: None,
            auditors: Vec::new(),
        }
    }
}

/// A checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SignedCheckpoint {
    pub tree_size: u64,
    #[serde(serialize_with = "hex_hash")]
    pub root: Hash,
    pub origin: String,
    pub key_name: String,
    pub note: String,
    pub signed_at: chrono::DateTime<chrono::Utc>,
}

fn hex_hash<S: serde::Serializer>(h: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(h))
}

fn hex_hashes<S: serde::Serializer>(h: &[Hash], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(h.iter().map(hex::encode))
}

/// The file a checkpoint is published as.
pub fn checkpoint_file_name(size: u64) -> String {
    format!("checkpoint-{size:012}.txt")
}

fn row_to_checkpoint(r: &sqlx::postgres::PgRow) -> Result<SignedCheckpoint, AppError> {
    let root: Vec<u8> = r.try_get("root")?;
    Ok(SignedCheckpoint {
        tree_size: r.try_get::<i64, _>("tree_size")? as u64,
        root: root
            .try_into()
            .map_err(|_| AppError::Internal("a checkpoint root is not 32 bytes".into()))?,
        origin: r.try_get("origin")?,
        key_name: r.try_get("key_name")?,
        note: r.try_get("note")?,
        signed_at: r.try_get("signed_at")?,
    })
}

/// An inclusion proof of one event in a signed checkpoint.
#[derive(Debug, Clone, Serialize)]
pub struct InclusionProof {
    pub global_position: i64,
    pub leaf_index: u64,
    pub tree_size: u64,
    /// The canonical leaf data (RFC 8785 JSON of the event's columns) the leaf hash is over.
    pub leaf_data: String,
    #[serde(serialize_with = "hex_hash")]
    pub leaf_hash: Hash,
    #[serde(serialize_with = "hex_hashes")]
    pub path: Vec<Hash>,
    #[serde(serialize_with = "hex_hash")]
    pub root: Hash,
    /// The signed checkpoint whose root this is.
    pub checkpoint: String,
}

/// A consistency proof between two checkpoints.
#[derive(Debug, Clone, Serialize)]
pub struct ConsistencyProof {
    pub old_size: u64,
    pub new_size: u64,
    #[serde(serialize_with = "hex_hash")]
    pub old_root: Hash,
    #[serde(serialize_with = "hex_hash")]
    pub new_root: Hash,
    #[serde(serialize_with = "hex_hashes")]
    pub proof: Vec<Hash>,
}

/// What `etal audit verify` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct VerifyReport {
    pub origin: String,
    pub tree_size: u64,
    #[serde(serialize_with = "hex_hash")]
    pub root: Hash,
    /// Events recomputed and compared.
    pub leaves_checked: u64,
    /// Events committed after the checkpoint (not covered by it).
    pub events_after: u64,
    /// The first problem, naming its leaf; None: the history checks out.
    pub problem: Option<Problem>,
    pub consistency: Option<ConsistencyProof>,
    pub inclusion: Option<InclusionProof>,
}

/// The first thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// The leaf index (the place in the committed order) where the history differs, when known.
    pub leaf_index: Option<u64>,
    /// The global position of the event found there, when there is one.
    pub global_position: Option<i64>,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.leaf_index, self.global_position) {
            (Some(i), Some(p)) => write!(f, "leaf {i} (event at position {p}): {}", self.detail),
            (Some(i), None) => write!(f, "leaf {i}: {}", self.detail),
            _ => write!(f, "{}", self.detail),
        }
    }
}

/// Why a verification could not run (not a finding: bad input or the database).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Note(#[from] NoteError),
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    App(#[from] AppError),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        VerifyError::App(e.into())
    }
}

impl From<etal_store::StoreError> for VerifyError {
    fn from(e: etal_store::StoreError) -> Self {
        VerifyError::App(e.into())
    }
}

/// What to verify.
pub struct VerifyRequest {
    pub verifier: CheckpointVerifier,
    /// The signed checkpoint (None: the latest stored).
    pub checkpoint: Option<String>,
    /// An older signed checkpoint the newer must extend.
    pub older: Option<String>,
    /// An event (global position) whose inclusion proof to give and check.
    pub event: Option<i64>,
}

const READ_BATCH: i64 = 5000;

impl App {
    /// The latest signed checkpoint, if any.
    pub async fn latest_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AppError> {
        let row = sqlx::query(
            "SELECT tree_size, root, origin, key_name, note, signed_at FROM seal_checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(row_to_checkpoint).transpose()
    }

    /// Signs a checkpoint of the tree as sealed now, when it grew since the last one, stores
    /// it and publishes it. None: nothing new, no key, or another process is signing.
    pub async fn sign_checkpoint(&self) -> Result<Option<SignedCheckpoint>, AppError> {
        let Some(signer) = &self.settings.seal.signer else {
            return Ok(None);
        };
        let mut tx = self.pool.begin().await?;
        let mine: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock(hashtext($1))")
            .bind("etal.seal.checkpoint")
            .fetch_one(&mut *tx)
            .await?;
        if !mine {
            return Ok(None);
        }
        let last: Option<i64> = sqlx::query_scalar("SELECT max(tree_size) FROM seal_checkpoints")
            .fetch_one(&mut *tx)
            .await?;
        let mut tree = SealedTree::new(&mut tx);
        let size = tree.size().await?;
        if last.is_some_and(|l| l as u64 >= size) {
            return Ok(None);
        }
        let root = tree.root(size).await?;
        let origin = &self.settings.seal.origin;
        let note = signer
            .sign(origin, size, &root)
            .map_err(|e| AppError::Internal(format!("ETAL_CHECKPOINT_ORIGIN: {e}")))?;
        let now = self.now();
        sqlx::query(
            "INSERT INTO seal_checkpoints (tree_size, root, origin, key_name, note, signed_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(size as i64)
        .bind(root.to_vec())
        .bind(origin)
        .bind(signer.name())
        .bind(&note)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // The auditors' copies, committed with the checkpoint and sent like every message
        // (R-NOT-1): one message per address and checkpoint, its id derived from both.
        for address in &self.settings.seal.auditors {
            let id = uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("etal.checkpoint:{size}:{address}").as_bytes(),
            );
            sqlx::query(
                "INSERT INTO system_messages (message_id, recipient_kind, recipient, kind, context, created_at) \
                 VALUES ($1, 'address', $1, 'checkpoint_signed', $2, $3) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(serde_json::json!({"address": address, "note": note, "tree_size": size, "origin": origin}))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO notification_deliveries (message_id, status, next_attempt_at, updated_at) \
                 VALUES ($1, 'pending', $2, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let signed = SignedCheckpoint {
            tree_size: size,
            root,
            origin: origin.clone(),
            key_name: signer.name().to_string(),
            note,
            signed_at: now,
        };
        metrics::gauge!("etal_sealed_checkpoint_size").set(size as f64);
        tracing::info!(tree_size = size, "checkpoint signed");
        self.publish_checkpoint(&signed);
        Ok(Some(signed))
    }

    /// Writes `checkpoint` to the publication folder (`checkpoint-<size>.txt`, and `latest`),
    /// each file written aside then renamed, so a reader never sees half a note.
    pub fn publish_checkpoint(&self, checkpoint: &SignedCheckpoint) {
        let Some(dir) = &self.settings.seal.publish_dir else {
            return;
        };
        let write = |dir: &Path| -> std::io::Result<()> {
            std::fs::create_dir_all(dir)?;
            for name in [checkpoint_file_name(checkpoint.tree_size), "latest".into()] {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, &checkpoint.note)?;
                std::fs::rename(&tmp, dir.join(&name))?;
            }
            Ok(())
        };
        if let Err(e) = write(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot publish the checkpoint");
        }
    }

    /// Signs a checkpoint every `interval` until `stop` resolves; publishes the latest again
    /// when its file is missing (a crash between the commit and the write).
    pub async fn run_checkpoints(&self, stop: impl std::future::Future<Output = ()>) {
        if self.settings.seal.signer.is_none() {
            return;
        }
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(self.settings.seal.interval) => {}
            }
            match self.sign_checkpoint().await {
                Ok(Some(_)) => {}
                Ok(None) => {
                    if let (Some(dir), Ok(Some(latest))) = (
                        &self.settings.seal.publish_dir,
                        self.latest_checkpoint().await,
                    ) {
                        if !dir.join(checkpoint_file_name(latest.tree_size)).exists() {
                            self.publish_checkpoint(&latest);
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "signing a checkpoint failed"),
            }
        }
    }

    /// The inclusion proof of the event at `global_position` in `checkpoint` (the latest stored
    /// when None). None: the event is not in that tree.
    pub async fn inclusion_proof(
        &self,
        global_position: i64,
        checkpoint: Option<&SignedCheckpoint>,
    ) -> Result<Option<InclusionProof>, AppError> {
        let latest;
        let checkpoint = match checkpoint {
            Some(c) => c,
            None => match self.latest_checkpoint().await? {
                Some(c) => {
                    latest = c;
                    &latest
                }
                None => return Ok(None),
            },
        };
        let mut tx = self.pool.begin().await?;
        let mut tree = SealedTree::new(&mut tx);
        let Some(leaf) = tree.leaf_of(global_position).await? else {
            return Ok(None);
        };
        if leaf.index >= checkpoint.tree_size {
            return Ok(None);
        }
        let path = tree
            .inclusion_proof(leaf.index, checkpoint.tree_size)
            .await?;
        let event = event_at(&mut tx, leaf.transaction_id, global_position).await?;
        let data = match &event {
            Some(e) => String::from_utf8(leaf_data(e)).unwrap_or_default(),
            None => String::new(),
        };
        Ok(Some(InclusionProof {
            global_position,
            leaf_index: leaf.index,
            tree_size: checkpoint.tree_size,
            leaf_data: data,
            leaf_hash: leaf.hash,
            path,
            root: checkpoint.root,
            checkpoint: checkpoint.note.clone(),
        }))
    }

    /// The consistency proof between the trees of `old` and `new` leaves, from the stored tree.
    pub async fn consistency_proof(
        &self,
        old: &Checkpoint,
        new: &Checkpoint,
    ) -> Result<ConsistencyProof, AppError> {
        let mut conn = self.pool.acquire().await?;
        let proof = SealedTree::new(&mut conn)
            .consistency_proof(old.size, new.size)
            .await?;
        Ok(ConsistencyProof {
            old_size: old.size,
            new_size: new.size,
            old_root: old.root,
            new_root: new.root,
            proof,
        })
    }

    /// R-AUD-2, R-AUD-3: verifies a signed checkpoint against the events (see the module).
    pub async fn verify_history(
        &self,
        request: VerifyRequest,
    ) -> Result<VerifyReport, VerifyError> {
        let note = match request.checkpoint {
            Some(n) => n,
            None => self
                .latest_checkpoint()
                .await?
                .map(|c| c.note)
                .ok_or_else(|| VerifyError::Input("no checkpoint has been signed yet".into()))?,
        };
        let cp = request.verifier.verify(&note)?;
        let older = match &request.older {
            Some(n) => {
                let old = request.verifier.verify(n)?;
                if old.size > cp.size {
                    return Err(VerifyError::Input(format!(
                        "the older checkpoint ({} leaves) is larger than the newer ({} leaves)",
                        old.size, cp.size
                    )));
                }
                Some(old)
            }
            None => None,
        };
        let mut report = VerifyReport {
            origin: cp.origin.clone(),
            tree_size: cp.size,
            root: cp.root,
            ..Default::default()
        };
        // Every event in the committed order, its leaf recomputed and compared with the leaf
        // the sealer stored at that index.
        let mut frontier = Frontier::default();
        let mut old_root = None;
        let mut after = Position::START;
        let mut conn = self.pool.acquire().await?;
        'read: while frontier.size() < cp.size {
            let events = EventLog::read_after(&mut *conn, after, None, READ_BATCH).await?;
            if events.is_empty() {
                break;
            }
            let from = frontier.size();
            let stored = SealedTree::new(&mut conn)
                .leaves(from, from + events.len() as u64)
                .await?;
            for (k, event) in events.iter().enumerate() {
                let index = frontier.size();
                if index == cp.size {
                    break 'read;
                }
                let leaf = event_leaf(event);
                if report.problem.is_none() {
                    report.problem = match stored.get(k) {
                        None => Some(Problem {
                            leaf_index: Some(index),
                            global_position: Some(event.position.position),
                            detail: format!(
                                "{} {} #{} is not sealed, yet the checkpoint covers this leaf",
                                event.aggregate_type, event.aggregate_id, event.sequence
                            ),
                        }),
                        Some(s) if s.global_position != event.position.position => Some(Problem {
                            leaf_index: Some(index),
                            global_position: Some(event.position.position),
                            detail: format!(
                                "the event sealed here was at position {}; {} {} #{} is here now \
                                 (an event deleted, inserted or moved)",
                                s.global_position,
                                event.aggregate_type,
                                event.aggregate_id,
                                event.sequence
                            ),
                        }),
                        Some(s) if s.hash != leaf => Some(Problem {
                            leaf_index: Some(index),
                            global_position: Some(event.position.position),
                            detail: format!(
                                "{} {} #{} differs from what was sealed (a column or the payload \
                                 changed)",
                                event.aggregate_type, event.aggregate_id, event.sequence
                            ),
                        }),
                        Some(_) => None,
                    };
                }
                frontier.push(leaf, |_, _, _| {});
                after = event.position;
                report.leaves_checked += 1;
                if older.as_ref().is_some_and(|o| o.size == frontier.size()) {
                    old_root = Some(frontier.root());
                }
            }
        }
        if frontier.size() < cp.size && report.problem.is_none() {
            report.problem = Some(Problem {
                leaf_index: Some(frontier.size()),
                global_position: None,
                detail: format!(
                    "the checkpoint covers {} leaves, the log holds {} events (events deleted)",
                    cp.size,
                    frontier.size()
                ),
            });
        }
        let computed = frontier.root();
        if computed != cp.root && report.problem.is_none() {
            report.problem = Some(Problem {
                leaf_index: None,
                global_position: None,
                detail: format!(
                    "the root of the {} events recomputed ({}) is not the signed root ({}): the \
                     sealed tables were rewritten with the events",
                    cp.size,
                    b64(&computed),
                    b64(&cp.root)
                ),
            });
        }
        report.events_after = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM events WHERE (transaction_id, global_position) > ($1::text::xid8, $2)",
        )
        .bind(after.txid.to_string())
        .bind(after.position)
        .fetch_one(&mut *conn)
        .await? as u64;
        drop(conn);
        if let Some(old) = older {
            if old.size > 0 && old_root != Some(old.root) && report.problem.is_none() {
                report.problem = Some(Problem {
                    leaf_index: None,
                    global_position: None,
                    detail: format!(
                        "the older checkpoint's root ({} leaves) is not the root of the first {} \
                         events: the history before it was rewritten",
                        old.size, old.size
                    ),
                });
            }
            let proof = self.consistency_proof(&old, &cp).await?;
            if !merkle::verify_consistency(old.size, cp.size, &old.root, &cp.root, &proof.proof)
                && report.problem.is_none()
            {
                report.problem = Some(Problem {
                    leaf_index: None,
                    global_position: None,
                    detail: format!(
                        "no consistency proof from {} to {} leaves: the tree of the older \
                         checkpoint is not a prefix of the newer",
                        old.size, cp.size
                    ),
                });
            }
            report.consistency = Some(proof);
        }
        if let Some(position) = request.event {
            let signed = SignedCheckpoint {
                tree_size: cp.size,
                root: cp.root,
                origin: cp.origin.clone(),
                key_name: request.verifier.name().to_string(),
                note: note.clone(),
                signed_at: chrono::Utc::now(),
            };
            let proof = self
                .inclusion_proof(position, Some(&signed))
                .await?
                .ok_or_else(|| {
                    VerifyError::Input(format!(
                        "no event at position {position} is in the checkpoint's {} leaves",
                        cp.size
                    ))
                })?;
            let recomputed = merkle::leaf_hash(proof.leaf_data.as_bytes());
            if report.problem.is_none()
                && (recomputed != proof.leaf_hash
                    || !merkle::verify_inclusion(
                        proof.leaf_index,
                        proof.tree_size,
                        &recomputed,
                        &proof.path,
                        &cp.root,
                    ))
            {
                report.problem = Some(Problem {
                    leaf_index: Some(proof.leaf_index),
                    global_position: Some(position),
                    detail: "its inclusion proof does not lead to the signed root".into(),
                });
            }
            report.inclusion = Some(proof);
        }
        Ok(report)
    }
}

fn b64(h: &Hash) -> String {
    base64::engine::general_purpose::STANDARD.encode(h)
}

/// A producer's statement events with their proofs (R-AUD-3).
#[derive(Debug, Clone)]
pub struct StatementProofs {
    /// The checkpoint the proofs lead to (None: none signed yet).
    pub checkpoint: Option<SignedCheckpoint>,
    /// The events of the producer's balance (credits, debits, payouts: their statements) after
    /// the sequence asked, each with its proof when the checkpoint covers it.
    pub events: Vec<(etal_store::StoredEvent, Option<InclusionProof>)>,
    /// Whether more events follow.
    pub more: bool,
}

impl App {
    /// R-AUD-3: the events a producer's statements come from (their balance stream), each with
    /// its inclusion proof in the latest signed checkpoint. A proof holds only hashes of the
    /// other events, so the producer sees nothing of anyone else.
    pub async fn statement_proofs(
        &self,
        producer: etal_domain::ids::ProducerId,
        after_sequence: i64,
        first: usize,
    ) -> Result<StatementProofs, AppError> {
        use cqrs_es::Aggregate;
        let checkpoint = self.latest_checkpoint().await?;
        let stream = EventLog::stream(
            &self.pool,
            <etal_domain::payout::ProducerBalance as Aggregate>::TYPE,
            &producer.to_string(),
        )
        .await?;
        let mut rest = stream.into_iter().filter(|e| e.sequence > after_sequence);
        let page: Vec<_> = rest.by_ref().take(first).collect();
        let more = rest.next().is_some();
        let mut events = Vec::with_capacity(page.len());
        for e in page {
            let proof = match &checkpoint {
                Some(c) => self.inclusion_proof(e.position.position, Some(c)).await?,
                None => None,
            };
            events.push((e, proof));
        }
        Ok(StatementProofs {
            checkpoint,
            events,
            more,
        })
    }
}

/// The event at (txid, position), if it is still there.
async fn event_at(
    conn: &mut sqlx::PgConnection,
    txid: i64,
    position: i64,
) -> Result<Option<etal_store::StoredEvent>, AppError> {
    let before = Position {
        txid,
        position: position - 1,
    };
    let events =
        EventLog::read_after(&mut *conn, before, Some(Position { txid, position }), 1).await?;
    Ok(events.into_iter().find(|e| e.position.position == position))
}
