//! The history proves itself (R-AUD-1..3), against real PostgreSQL and the `etal` binary:
//!
//! - R-AUD-1: UPDATE, DELETE and TRUNCATE of `events` and of the sealing tables are refused by
//!   the triggers (even to a superuser who does not disable them), and the service's role has no
//!   right to them at all.
//! - R-AUD-2: a superuser who gets past the triggers and changes a payload, deletes an event,
//!   swaps two, appends a forged one among the sealed, or rewrites the sealing tables with the
//!   events, is found by `etal audit verify`, which exits 3 naming the leaf and the event.
//!   Concurrent writers with random delays and rollbacks while the sealer runs: every committed
//!   event sealed exactly once, in the projectors' order. `kill -9` of the sealer mid-batch: the
//!   tree after the restart is the tree built from scratch.
//! - The roots, inclusion and consistency proofs are checked again by an independent
//!   implementation (tests/scripts/verify_log.py: Python's hashlib on RFC 6962's formulas, its
//!   own RFC 8785 and C2SP note code, Ed25519 from the `cryptography` package).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use etal_projections::sealer::Sealer;
use etal_store::log::{EventLog, Position};
use etal_store::seal::leaf::event_leaf;
use etal_store::seal::merkle::{self, Hash};
use etal_store::seal::note::CheckpointSigner;
use etal_store::seal::SealedTree;
use etal_tests::{run_etal, run_etal_env, run_python_verifier, spawn_etal, TestDb};
use rand::Rng;
use sqlx::{Connection, PgPool, Row};

/// A signing key in a folder of the test's own: (signer key text, verifier key file).
struct Keys {
    dir: std::path::PathBuf,
    signer: String,
    verifier_file: String,
}

impl Keys {
    fn new() -> Keys {
        let dir = std::env::temp_dir().join(format!("etal-seal-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let signer = CheckpointSigner::generate("etal-test").unwrap();
        let verifier_file = dir.join("verifier.pub");
        std::fs::write(&verifier_file, signer.verifier().to_text()).unwrap();
        Keys {
            signer: signer.to_text(),
            verifier_file: verifier_file.display().to_string(),
            dir,
        }
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` events in one go (a sequence range of their own per call).
async fn append(pool: &PgPool, n: i64) {
    let base: i64 = sqlx::query_scalar(
        "SELECT coalesce(max(sequence), 0) + 1 FROM events WHERE aggregate_type = 'sealing_test'",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         SELECT 'sealing_test', 's-' || (g % 97), g, 'Happened', '1', \
           jsonb_build_object('n', g, 'amount', (g % 1000) || '.50', 'note', 'é \"crème\" ' || g, \
                              'nested', jsonb_build_object('z', 1, 'a', array[g, g + 1])), \
           jsonb_build_object('actor', 'test', 'at', g) \
         FROM generate_series($1::bigint, $2::bigint) g",
    )
    .bind(base)
    .bind(base + n - 1)
    .execute(pool)
    .await
    .unwrap();
}

/// `n` events in transactions of 25.
async fn history(pool: &PgPool, n: i64) {
    let mut left = n;
    while left > 0 {
        let k = left.min(25);
        append(pool, k).await;
        left -= k;
    }
}

/// Seals everything committed, in this process (waiting while other tests' transactions on
/// the cluster hold the log's watermark back).
async fn seal_all(pool: &PgPool) {
    let started = Instant::now();
    let sealer = Sealer::default();
    loop {
        etal_projections::catch_up(pool, &sealer, None, None, &|_| {})
            .await
            .unwrap();
        if etal_tests::passed_every_event(pool, etal_projections::sealer::NAME).await {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the sealer caught up"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every event in the committed order, with its recomputed leaf.
async fn recomputed(pool: &PgPool) -> Vec<(i64, Hash)> {
    let mut out = Vec::new();
    let mut after = Position::START;
    loop {
        let events = EventLog::read_after(pool, after, None, 5000).await.unwrap();
        let Some(last) = events.last() else {
            return out;
        };
        after = last.position;
        out.extend(events.iter().map(|e| (e.position.position, event_leaf(e))));
    }
}

/// The sealed leaves: (leaf index, global position, hash), in leaf order.
async fn sealed(pool: &PgPool) -> Vec<(i64, i64, Hash)> {
    sqlx::query(
        "SELECT leaf_index, global_position, leaf_hash FROM seal_leaves ORDER BY leaf_index",
    )
    .fetch_all(pool)
    .await
    .unwrap()
    .into_iter()
    .map(|r| {
        (
            r.get("leaf_index"),
            r.get("global_position"),
            r.get::<Vec<u8>, _>("leaf_hash").try_into().unwrap(),
        )
    })
    .collect()
}

/// The stored tree equals the tree built from scratch from the events: the same leaves in the
/// same order, gap-free from 0, every stored subtree node, and the root.
async fn assert_tree_from_scratch(pool: &PgPool) {
    let fresh = recomputed(pool).await;
    let stored = sealed(pool).await;
    assert_eq!(
        stored.len(),
        fresh.len(),
        "every committed event sealed, once"
    );
    for (i, ((index, position, hash), (p, h))) in stored.iter().zip(&fresh).enumerate() {
        assert_eq!(*index, i as i64, "gap-free leaf indices");
        assert_eq!(position, p, "leaf {i}: the committed order");
        assert_eq!(hash, h, "leaf {i}: the leaf of the event");
    }
    let leaves: Vec<Hash> = fresh.iter().map(|(_, h)| *h).collect();
    let nodes =
        sqlx::query("SELECT height, node_index, hash FROM seal_nodes ORDER BY height, node_index")
            .fetch_all(pool)
            .await
            .unwrap();
    let mut expected_nodes = 0;
    for height in (8..40).step_by(8) {
        expected_nodes += leaves.len() >> height;
    }
    assert_eq!(
        nodes.len(),
        expected_nodes,
        "one node per perfect subtree of height 8, 16..."
    );
    for r in nodes {
        let (height, index): (i16, i64) = (r.get("height"), r.get("node_index"));
        let w = 1usize << height;
        let start = index as usize * w;
        let hash: Vec<u8> = r.get("hash");
        assert_eq!(
            hash,
            merkle::root(&leaves[start..start + w]).to_vec(),
            "node {height}/{index}"
        );
    }
    let mut conn = pool.acquire().await.unwrap();
    let root = SealedTree::new(&mut conn)
        .root(leaves.len() as u64)
        .await
        .unwrap();
    assert_eq!(root, merkle::root(&leaves), "the stored tree's root");
}

/// Signs a checkpoint with `etal audit checkpoint`; returns the note.
fn checkpoint(db: &TestDb, keys: &Keys) -> String {
    let (code, out, err) = run_etal_env(
        &db.url,
        &["audit", "checkpoint"],
        &[
            ("ETAL_SEAL_KEY", keys.signer.as_str()),
            ("ETAL_CHECKPOINT_ORIGIN", "test.etal/log"),
        ],
    );
    assert_eq!(code, 0, "etal audit checkpoint: {err}");
    assert!(out.starts_with("test.etal/log\n"), "{out}");
    out
}

fn verify(db: &TestDb, keys: &Keys, extra: &[&str]) -> (i32, String, String) {
    let mut args = vec!["audit", "verify", "--key", keys.verifier_file.as_str()];
    args.extend_from_slice(extra);
    run_etal(&db.url, &args)
}

/// A database with `n` events, all sealed, and a signed checkpoint of them.
async fn sealed_history(n: i64) -> (TestDb, Keys, String) {
    let db = TestDb::new(4).await;
    history(&db.pool, n).await;
    seal_all(&db.pool).await;
    let keys = Keys::new();
    let note = checkpoint(&db, &keys);
    let (code, out, err) = verify(&db, &keys, &[]);
    assert_eq!(code, 0, "verify before any change: {out}{err}");
    assert!(err.contains(&format!("verified {n} leaves")), "{err}");
    (db, keys, note)
}

/// Runs `sql` as the superuser with the triggers disabled for the session (how someone with
/// full rights on the server would get past R-AUD-1).
async fn as_superuser_bypassing_triggers(db: &TestDb, sql: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    for s in sql {
        sqlx::query(s).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
}

/// The leaf index and global position of the event `k`-th in the committed order.
async fn nth(pool: &PgPool, k: i64) -> (i64, i64) {
    let positions: Vec<(i64, i64)> = recomputed(pool)
        .await
        .into_iter()
        .enumerate()
        .map(|(i, (p, _))| (i as i64, p))
        .collect();
    positions[k as usize]
}

// ---------------------------------------------------------------------------------------------
// R-AUD-1
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn r_aud_1_the_history_refuses_updates_deletes_and_truncates_and_the_service_role_may_only_append(
) {
    let db = TestDb::new(4).await;
    history(&db.pool, 300).await;
    seal_all(&db.pool).await;
    let keys = Keys::new();
    checkpoint(&db, &keys);
    for table in ["events", "seal_leaves", "seal_nodes", "seal_checkpoints"] {
        // Even the superuser, while the triggers are on.
        for sql in [
            format!(
                "UPDATE {table} SET {} WHERE true",
                match table {
                    "events" => "payload = '{}'",
                    "seal_leaves" => "sealed_at = now()",
                    "seal_nodes" => "hash = hash",
                    _ => "note = note",
                }
            ),
            format!("DELETE FROM {table}"),
            format!("TRUNCATE {table}"),
        ] {
            let err = sqlx::query(&sql).execute(&db.pool).await.unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains("append-only (R-AUD-1)"),
                "{sql}: refused by the trigger, got {text}"
            );
            let code = err.as_database_error().and_then(|e| e.code()).unwrap();
            assert_eq!(code, "42501", "{sql}: insufficient_privilege");
        }
        // The service's role has no right to change them at all (refused before any trigger).
        let mut conn = db.pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("SET LOCAL ROLE etal_service")
            .execute(&mut *tx)
            .await
            .unwrap();
        let n: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert!(n > 0, "{table}: the service reads it");
        sqlx::query("SAVEPOINT s").execute(&mut *tx).await.unwrap();
        for sql in [format!("DELETE FROM {table}"), format!("TRUNCATE {table}")] {
            let err = sqlx::query(&sql)
                .execute(&mut *tx)
                .await
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("permission denied"),
                "{sql} as etal_service: {err}"
            );
            sqlx::query("ROLLBACK TO SAVEPOINT s")
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        tx.rollback().await.unwrap();
    }
    // The service appends events and reads everything else it needs.
    let mut conn = db.pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("SET LOCAL ROLE etal_service")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('sealing_test', 'role', 1, 'Happened', '1', '{}', '{}')",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("UPDATE projector_checkpoints SET updated_at = now()")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    // Nothing changed: the history still verifies.
    let (code, out, err) = verify(&db, &keys, &[]);
    assert_eq!(code, 0, "{out}{err}");
}

// ---------------------------------------------------------------------------------------------
// R-AUD-2: tampering found
// ---------------------------------------------------------------------------------------------

/// Asserts `etal audit verify` exits 3 naming `leaf` (and `position` when given), and that the
/// independent verifier also refuses the checkpoint.
fn assert_found(
    db: &TestDb,
    keys: &Keys,
    note: &str,
    leaf: i64,
    position: Option<i64>,
    what: &str,
) {
    let (code, out, err) = verify(db, keys, &[]);
    assert_eq!(code, 3, "{what}: exit 3, got {out}{err}");
    let named = match position {
        Some(p) => format!("BAD leaf {leaf} (event at position {p})"),
        None => format!("BAD leaf {leaf}"),
    };
    assert!(out.contains(&named), "{what}: expected `{named}` in {out}");
    assert!(err.contains("TAMPERED"), "{what}: {err}");
    let file = keys.file("checkpoint.txt", note);
    let (code, out, err) = run_python_verifier(
        &[
            "log",
            "--dsn",
            &db.url,
            "--checkpoint",
            &file,
            "--vkey",
            &keys.verifier_file,
        ],
        None,
    );
    assert_eq!(
        code, 3,
        "{what}: the independent verifier refuses it too: {out}{err}"
    );
}

#[tokio::test]
async fn r_aud_2_a_payload_changed_by_a_superuser_is_found_at_its_leaf() {
    let (db, keys, note) = sealed_history(600).await;
    // The independent verifier agrees with the untouched history first.
    let file = keys.file("checkpoint.txt", &note);
    let (code, out, err) = run_python_verifier(
        &[
            "log",
            "--dsn",
            &db.url,
            "--checkpoint",
            &file,
            "--vkey",
            &keys.verifier_file,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("ok 600 "), "{out}");
    let (leaf, position) = nth(&db.pool, 417).await;
    as_superuser_bypassing_triggers(
        &db,
        &[&format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{amount}}', '\"999.50\"') WHERE global_position = {position}"
        )],
    )
    .await;
    assert_found(&db, &keys, &note, leaf, Some(position), "a changed payload");
    let (_, out, _) = verify(&db, &keys, &[]);
    assert!(out.contains("differs from what was sealed"), "{out}");
}

#[tokio::test]
async fn r_aud_2_a_deleted_event_is_found_at_its_leaf() {
    let (db, keys, note) = sealed_history(600).await;
    let (leaf, position) = nth(&db.pool, 250).await;
    let (_, next) = nth(&db.pool, 251).await;
    as_superuser_bypassing_triggers(
        &db,
        &[&format!(
            "DELETE FROM events WHERE global_position = {position}"
        )],
    )
    .await;
    // The event now at that leaf is the next one.
    assert_found(&db, &keys, &note, leaf, Some(next), "a deleted event");
    let (_, out, _) = verify(&db, &keys, &[]);
    assert!(
        out.contains(&format!("the event sealed here was at position {position}")),
        "{out}"
    );
}

#[tokio::test]
async fn r_aud_2_a_swapped_pair_is_found_at_the_first_of_them() {
    let (db, keys, note) = sealed_history(600).await;
    // Two events of one transaction (25 per transaction here) change places in the order
    // (their positions exchanged): the second is now first, at the first's position.
    let (leaf, a) = nth(&db.pool, 110).await;
    let (_, b) = nth(&db.pool, 111).await;
    as_superuser_bypassing_triggers(
        &db,
        &[
            &format!("UPDATE events SET global_position = -1 WHERE global_position = {a}"),
            &format!("UPDATE events SET global_position = {a} WHERE global_position = {b}"),
            &format!("UPDATE events SET global_position = {b} WHERE global_position = -1"),
        ],
    )
    .await;
    assert_found(&db, &keys, &note, leaf, Some(a), "a swapped pair");
}

#[tokio::test]
async fn r_aud_2_a_forged_event_appended_among_the_sealed_is_found_at_its_place() {
    let (db, keys, note) = sealed_history(600).await;
    // Appended now, with the transaction id of a sealed event: it sorts into the sealed history
    // right after that transaction's events, where the sealer never looks again.
    let (_, victim) = nth(&db.pool, 300).await;
    let txid: i64 = sqlx::query_scalar(
        "SELECT transaction_id::text::bigint FROM events WHERE global_position = $1",
    )
    .bind(victim)
    .fetch_one(&db.pool)
    .await
    .unwrap();
    as_superuser_bypassing_triggers(
        &db,
        &[&format!(
            "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata, transaction_id) \
             VALUES ('producer_balance', 'forged', 1, 'SaleCredited', '1', '{{\"net\": \"5000.00\"}}', '{{}}', '{txid}'::xid8)"
        )],
    )
    .await;
    let forged: i64 =
        sqlx::query_scalar("SELECT global_position FROM events WHERE aggregate_id = 'forged'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    let place = recomputed(&db.pool)
        .await
        .iter()
        .position(|(p, _)| *p == forged)
        .unwrap() as i64;
    assert!(
        place < 600,
        "the forged event sorts into the sealed history"
    );
    assert_found(&db, &keys, &note, place, Some(forged), "a forged event");
    // The live sealer does not seal it either (it is behind its checkpoint).
    seal_all(&db.pool).await;
    let sealed_forged: i64 =
        sqlx::query_scalar("SELECT count(*) FROM seal_leaves WHERE global_position = $1")
            .bind(forged)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(sealed_forged, 0);
}

#[tokio::test]
async fn r_aud_2_sealing_tables_rewritten_with_the_events_are_found_by_the_signed_root() {
    let (db, keys, note) = sealed_history(600).await;
    let (leaf, position) = nth(&db.pool, 10).await;
    as_superuser_bypassing_triggers(
        &db,
        &[&format!(
            "UPDATE events SET payload = jsonb_set(payload, '{{amount}}', '\"0.50\"') WHERE global_position = {position}"
        )],
    )
    .await;
    // The tamperer recomputes the leaf too (as the sealer would).
    let events = EventLog::read_after(&db.pool, Position::START, None, 100)
        .await
        .unwrap();
    let event = events
        .iter()
        .find(|e| e.position.position == position)
        .unwrap();
    let leaf_hash = event_leaf(event);
    as_superuser_bypassing_triggers(
        &db,
        &[&format!(
            "UPDATE seal_leaves SET leaf_hash = '\\x{}' WHERE leaf_index = {leaf}",
            hex::encode(leaf_hash)
        )],
    )
    .await;
    let (code, out, err) = verify(&db, &keys, &[]);
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("is not the signed root"), "{out}");
    let file = keys.file("checkpoint.txt", &note);
    let (code, _, _) = run_python_verifier(
        &[
            "log",
            "--dsn",
            &db.url,
            "--checkpoint",
            &file,
            "--vkey",
            &keys.verifier_file,
        ],
        None,
    );
    assert_eq!(code, 3);
}

// ---------------------------------------------------------------------------------------------
// R-AUD-2: the sealer under concurrent writers, and killed
// ---------------------------------------------------------------------------------------------

const WRITERS: usize = 16;
const TRANSACTIONS_PER_WRITER: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_aud_2_concurrent_writers_every_committed_event_is_sealed_exactly_once_in_the_projectors_order(
) {
    let db = TestDb::new(WRITERS as u32 + 8).await;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let sealer = tokio::spawn(etal_projections::run_projector(
        db.pool.clone(),
        Arc::new(Sealer::default()),
        shutdown,
    ));
    let rolled_back = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let pool = db.pool.clone();
        let rolled_back = rolled_back.clone();
        writers.push(tokio::spawn(async move {
            for t in 0..TRANSACTIONS_PER_WRITER {
                let (events, pause, rollback) = {
                    let mut rng = rand::thread_rng();
                    (rng.gen_range(1..4), rng.gen_range(0..15), rng.gen_bool(0.15))
                };
                let mut tx = pool.begin().await.unwrap();
                for e in 0..events {
                    sqlx::query(
                        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
                         VALUES ('sealing_test', $1, $2, 'Happened', '1', jsonb_build_object('w', $3::int, 't', $4::int), '{}')",
                    )
                    .bind(format!("w{w}-t{t}"))
                    .bind(e as i64)
                    .bind(w as i32)
                    .bind(t as i32)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                    // Held open while others commit: insert order is not commit order.
                    tokio::time::sleep(Duration::from_millis(pause)).await;
                }
                if rollback {
                    tx.rollback().await.unwrap();
                    rolled_back.fetch_add(1, Ordering::Relaxed);
                } else {
                    tx.commit().await.unwrap();
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    // Everything committed is sealed (the sealer follows the log like the projectors).
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    let started = Instant::now();
    loop {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM seal_leaves")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if n == committed {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "sealed {n} of {committed}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    sealer.await.unwrap();
    assert!(
        rolled_back.load(Ordering::Relaxed) > 0,
        "some transactions rolled back"
    );
    assert!(committed > 200, "{committed} events");
    // Sealed once each, in the order the projections applied them.
    let applied: i64 = sqlx::query_scalar(
        "SELECT events_applied FROM projector_checkpoints WHERE projection = 'sealer'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(applied, committed, "the sealer applied each event once");
    let counts: HashMap<i64, i64> = sqlx::query_as::<_, (i64, i64)>(
        "SELECT global_position, count(*) FROM seal_leaves GROUP BY global_position",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap()
    .into_iter()
    .collect();
    assert!(counts.values().all(|c| *c == 1));
    assert_tree_from_scratch(&db.pool).await;
    // The projectors' order is the one the sealer followed: a projection run over the same log
    // applies the events in the sealed leaves' order.
    etal_projections::catch_up(
        &db.pool,
        &etal_projections::event_counts::EventCounts,
        None,
        None,
        &|_| {},
    )
    .await
    .unwrap();
    let projected: i64 = sqlx::query_scalar(
        "SELECT events_applied FROM projector_checkpoints WHERE projection = 'event_counts'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(projected, committed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_aud_2_a_sealer_killed_mid_batch_restarts_to_the_tree_built_from_scratch() {
    let db = TestDb::new(4).await;
    const N: i64 = 40_000;
    let mut left = N;
    while left > 0 {
        let k = left.min(5_000);
        append(&db.pool, k).await;
        left -= k;
    }
    let sealed_count = |pool: PgPool| async move {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM seal_leaves")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let mut kills = 0;
    let mut last = 0;
    while kills < 3 {
        let mut sealer = spawn_etal(&db.url, &["projections", "run", "--only", "sealer"], &[]);
        let started = Instant::now();
        // Killed while it is sealing: past what it had, before the end.
        loop {
            let n = sealed_count(db.pool.clone()).await;
            if n > last || n == N {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the sealer did not start"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let at = sealed_count(db.pool.clone()).await;
        if at == N {
            break;
        }
        sealer.0.kill().unwrap();
        let status = sealer.0.wait().unwrap();
        assert!(!status.success(), "killed");
        kills += 1;
        last = sealed_count(db.pool.clone()).await;
        // What is sealed is whole batches: the checkpoint and the leaves moved together.
        let applied: i64 = sqlx::query_scalar(
            "SELECT coalesce((SELECT events_applied FROM projector_checkpoints WHERE projection = 'sealer'), 0)",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        assert_eq!(
            applied, last,
            "kill {kills}: leaves and checkpoint together"
        );
    }
    let _sealer = spawn_etal(&db.url, &["projections", "run", "--only", "sealer"], &[]);
    let started = Instant::now();
    while sealed_count(db.pool.clone()).await < N {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "sealing after the kills"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(_sealer);
    assert!(kills >= 1, "the sealer was killed while sealing");
    assert_tree_from_scratch(&db.pool).await;
}

// ---------------------------------------------------------------------------------------------
// Proofs, checked by the independent verifier
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn r_aud_3_inclusion_and_consistency_proofs_verify_independently_and_with_the_cli() {
    let (db, keys, old) = sealed_history(333).await;
    history(&db.pool, 700).await;
    seal_all(&db.pool).await;
    let new = checkpoint(&db, &keys);
    let old_file = keys.file("old.txt", &old);
    let new_file = keys.file("new.txt", &new);
    let (_, position) = nth(&db.pool, 555).await;
    let position_arg = position.to_string();
    let (code, out, err) = verify(
        &db,
        &keys,
        &[
            "--checkpoint",
            &new_file,
            "--older",
            &old_file,
            "--event",
            &position_arg,
            "--json",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["tree_size"], 1033);
    assert_eq!(report["leaves_checked"], 1033);
    assert!(report["problem"].is_null(), "{report}");
    let inclusion = &report["inclusion"];
    assert_eq!(inclusion["leaf_index"], 555);
    let consistency = &report["consistency"];
    assert_eq!(
        (
            consistency["old_size"].as_u64(),
            consistency["new_size"].as_u64()
        ),
        (Some(333), Some(1033))
    );
    // The independent implementation accepts both proofs...
    let (code, out, err) = run_python_verifier(&["inclusion", "-"], Some(&inclusion.to_string()));
    assert_eq!(code, 0, "inclusion: {out}{err}");
    let (code, out, err) =
        run_python_verifier(&["consistency", "-"], Some(&consistency.to_string()));
    assert_eq!(code, 0, "consistency: {out}{err}");
    // ...and refuses them changed.
    let mut bad = inclusion.clone();
    bad["leaf_index"] = serde_json::json!(554);
    let (code, _, _) = run_python_verifier(&["inclusion", "-"], Some(&bad.to_string()));
    assert_eq!(code, 3, "a proof for another leaf");
    let mut bad = consistency.clone();
    bad["old_size"] = serde_json::json!(332);
    let (code, _, _) = run_python_verifier(&["consistency", "-"], Some(&bad.to_string()));
    assert_eq!(code, 3, "a proof from another size");
    // Its root of the 1033 events is the signed one.
    let (code, out, err) = run_python_verifier(
        &[
            "log",
            "--dsn",
            &db.url,
            "--checkpoint",
            &new_file,
            "--vkey",
            &keys.verifier_file,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    // The older checkpoint with another key, or edited, is refused.
    let edited = keys.file("edited.txt", &old.replacen("\n333\n", "\n334\n", 1));
    let (code, _, err) = verify(&db, &keys, &["--checkpoint", &new_file, "--older", &edited]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("does not verify"), "{err}");
    let other = Keys::new();
    let (code, _, err) = verify(&db, &other, &["--checkpoint", &new_file]);
    assert_eq!(code, 3);
    assert!(err.contains("no signature by key"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// R-AUD-3 through `etal serve`: checkpoints signed and published, a producer's proofs
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_aud_3_serve_publishes_signed_checkpoints_and_a_producer_proves_their_statement_events() {
    use crate::fee_schedules_http as shop;
    use crate::graphql_common::{until, Api};
    use etal_domain::Role;
    use serde_json::json;

    let keys = Keys::new();
    let published = keys.dir.join("published");
    let published_arg = published.display().to_string();
    let mail = keys.dir.join("mail");
    let mail_arg = mail.display().to_string();
    let mut env = crate::graphql_common::SOON_ENV.to_vec();
    env.extend_from_slice(&[
        ("ETAL_SEAL_KEY", keys.signer.as_str()),
        ("ETAL_CHECKPOINT_INTERVAL_SECS", "1"),
        ("ETAL_CHECKPOINT_ORIGIN", "test.etal/log"),
        ("ETAL_CHECKPOINT_DIR", published_arg.as_str()),
        ("ETAL_AUDITORS_EMAIL", "Audit@Cabinet.test"),
        ("ETAL_MAIL_DIR", mail_arg.as_str()),
        ("ETAL_NOTIFY_INTERVAL_MS", "200"),
    ]);
    let api = Api::start(&env).await;
    // A sale distributed and validated: the producer is credited (their balance's events).
    let honey = shop::seller(&api, "Miel", "8.50").await;
    let other = shop::seller(&api, "Pain", "3.00").await;
    let admin = api.who(Role::MarketAdmin);
    let slot = shop::slot_soon().await;
    let (_, sale) = shop::market_with_sale(&api, &admin, "Segonzac", &slot, &[&honey]).await;
    shop::participate(&api, &honey, &[&sale]).await;
    shop::periods_open(&api, &sale, 1, &slot).await;
    shop::order(&api, &sale, vec![honey.line(2)], "17.00", &slot).await;
    shop::distribute_and_validate(&api, &admin, &sale, &slot).await;

    // A checkpoint covering the credit is signed within a second or two, and published.
    const PROOFS: &str = "query($p: UUID!) { statementProofs(producerId: $p) { hasMore \
        checkpoint { treeSize rootHash origin keyName note } \
        events { position aggregateType aggregateId sequence eventType payload \
                 proof { leafIndex treeSize leafData leafHash path rootHash } } } }";
    let proofs = until(
        "the credit is in a signed checkpoint",
        Duration::from_secs(30),
        || {
            let (api, who, id) = (&api, honey.who.clone(), honey.id.clone());
            async move {
                let d = api.ok(&who, PROOFS, json!({"p": id})).await;
                let p = d["statementProofs"].clone();
                let events = p["events"].as_array().cloned().unwrap_or_default();
                let credited = events.iter().any(|e| e["eventType"] == "SaleCredited");
                (credited && events.iter().all(|e| !e["proof"].is_null()))
                    .then_some(p.clone())
                    .ok_or(d)
            }
        },
    )
    .await;
    let cp = &proofs["checkpoint"];
    let note = cp["note"].as_str().unwrap().to_string();
    assert_eq!(cp["origin"], "test.etal/log");
    assert_eq!(cp["keyName"], "etal-test");
    let verifier = etal_store::seal::note::CheckpointVerifier::parse(
        &std::fs::read_to_string(&keys.verifier_file).unwrap(),
    )
    .unwrap();
    let signed = verifier.verify(&note).expect("signed by the service's key");
    assert_eq!(hex::encode(signed.root), cp["rootHash"].as_str().unwrap());
    let events = proofs["events"].as_array().unwrap();
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["aggregateType"], "producer_balance");
        assert_eq!(
            e["aggregateId"],
            honey.id.as_str(),
            "only the producer's own events"
        );
        let p = &e["proof"];
        let leaf_data = p["leafData"].as_str().unwrap();
        // The leaf is the event: its payload's canonical hash, its position and type.
        let data: serde_json::Value = serde_json::from_str(leaf_data).unwrap();
        let payload: serde_json::Value =
            serde_json::from_str(e["payload"].as_str().unwrap()).unwrap();
        assert_eq!(
            data["payload_sha256"].as_str().unwrap(),
            etal_store::seal::leaf::value_sha256(&payload)
        );
        assert_eq!(
            data["global_position"].to_string(),
            e["position"].as_str().unwrap()
        );
        assert_eq!(data["event_type"], e["eventType"]);
        // Checked by the independent verifier: SHA-256(0x00 || leafData), then the path.
        let leaf_hash = hex::encode(merkle::leaf_hash(leaf_data.as_bytes()));
        assert_eq!(p["leafHash"].as_str().unwrap(), leaf_hash);
        let input = json!({
            "leaf_index": p["leafIndex"].as_str().unwrap().parse::<u64>().unwrap(),
            "tree_size": p["treeSize"].as_str().unwrap().parse::<u64>().unwrap(),
            "leaf_hash": leaf_hash,
            "path": p["path"],
            "root": p["rootHash"],
        });
        assert_eq!(p["rootHash"], cp["rootHash"]);
        let (code, out, err) = run_python_verifier(&["inclusion", "-"], Some(&input.to_string()));
        assert_eq!(code, 0, "inclusion of {}: {out}{err}", e["position"]);
    }
    // Another producer may not see them; a customer neither.
    let d = api.call(&other.who, PROOFS, json!({"p": honey.id})).await;
    assert_eq!(
        crate::graphql_common::code(&d).as_deref(),
        Some("FORBIDDEN"),
        "{d}"
    );
    let d = api
        .call(&api.who(Role::Customer), PROOFS, json!({"p": honey.id}))
        .await;
    assert_eq!(
        crate::graphql_common::code(&d).as_deref(),
        Some("FORBIDDEN"),
        "{d}"
    );
    // The published copy outside the database verifies against the events, with the CLI and
    // independently.
    let latest = published.join("latest");
    let copy = until("a checkpoint is published", Duration::from_secs(10), || {
        let latest = latest.clone();
        async move { std::fs::read_to_string(&latest).map_err(|e| json!(e.to_string())) }
    })
    .await;
    assert!(verifier.verify(&copy).is_ok());
    let size = verifier.verify(&copy).unwrap().size;
    assert!(published
        .join(etal_app::seal::checkpoint_file_name(size))
        .exists());
    let latest_arg = latest.display().to_string();
    let (code, out, err) = run_etal(
        &api.db.url,
        &[
            "audit",
            "verify",
            "--key",
            &keys.verifier_file,
            "--checkpoint",
            &latest_arg,
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_python_verifier(
        &[
            "log",
            "--dsn",
            &api.db.url,
            "--checkpoint",
            &latest_arg,
            "--vkey",
            &keys.verifier_file,
        ],
        None,
    );
    assert_eq!(code, 0, "{out}{err}");
    // Each checkpoint is e-mailed to the auditors, once, its note attached.
    let pool = api.db.pool.clone();
    let sizes: Vec<i64> = until("each checkpoint e-mailed", Duration::from_secs(20), || {
        let (pool, mail) = (pool.clone(), mail.clone());
        async move {
            let sizes: Vec<i64> =
                sqlx::query_scalar("SELECT tree_size FROM seal_checkpoints ORDER BY tree_size")
                    .fetch_all(&pool)
                    .await
                    .unwrap();
            let sent: Vec<String> = std::fs::read_dir(&mail)
                .map(|d| {
                    d.filter_map(|f| f.ok())
                        .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                        .filter(|t| t.contains("To: audit@cabinet.test"))
                        .collect()
                })
                .unwrap_or_default();
            let attached = |size: &i64| {
                let file = etal_app::seal::checkpoint_file_name(*size as u64);
                sent.iter().filter(|t| t.contains(&file)).count()
            };
            (!sizes.is_empty()
                && sent.len() == sizes.len()
                && sizes.iter().all(|s| attached(s) >= 1))
            .then_some(sizes.clone())
            .ok_or(json!({"checkpoints": sizes, "sent": sent.len()}))
        }
    })
    .await;
    assert!(
        sizes.len() >= 2,
        "checkpoints signed as the history grew: {sizes:?}"
    );
}
