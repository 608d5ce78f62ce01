//! The PostgreSQL server restarts while commands run: every acknowledged command is in the log,
//! and the service serves again without being restarted itself.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etal_domain::{Actor, SystemClock};
use etal_store::log::EventLog;
use etal_store::{CommandBus, CommandContext};
use etal_tests::tally::{Tally, TallyCommand};
use etal_tests::{spawn_server, PrivateCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_commands_survive_a_database_restart_and_the_service_recovers() {
    let cluster = tokio::task::spawn_blocking(PrivateCluster::start)
        .await
        .unwrap();
    let admin = etal_store::db::connect(&cluster.url("postgres"), 1)
        .await
        .unwrap();
    sqlx::query("CREATE DATABASE etal")
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let url = cluster.url("etal");
    let pool = etal_store::db::connect(&url, 16).await.unwrap();
    etal_store::db::migrate(&pool).await.unwrap();

    // The real server process, pointed at this cluster.
    let (_server, base) = spawn_server(&url, &[]).await;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();

    let bus = CommandBus::new(pool.clone(), Arc::new(SystemClock));
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let failures = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for c in 0..8 {
        let (bus, acked, failures, running) = (
            bus.clone(),
            acked.clone(),
            failures.clone(),
            running.clone(),
        );
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while running.load(Ordering::SeqCst) {
                i += 1;
                let tag = format!("c{c}-{i}");
                let r = bus
                    .execute::<Tally>(
                        &format!("agg{}", i % 3),
                        TallyCommand::Add {
                            tag: tag.clone(),
                            amount: 1,
                        },
                        &(),
                        &CommandContext::new(Actor::system()),
                    )
                    .await;
                match r {
                    Ok(_) => acked.lock().unwrap().push(tag),
                    Err(e) => {
                        assert!(
                            e.is_retryable(),
                            "a restart gives retryable errors, got {e:?}"
                        );
                        failures.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        }));
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..2 {
        let before = acked.lock().unwrap().len();
        let c = &cluster;
        tokio::task::block_in_place(|| c.restart());
        // Commands succeed again without restarting anything on our side.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if acked.lock().unwrap().len() > before + 20 {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "commands did not resume after the restart"
            );
        }
    }
    running.store(false, Ordering::SeqCst);
    for c in clients {
        c.await.unwrap();
    }

    // The server answers again, without having been restarted.
    let mut healthy = false;
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("{base}/health")).send().await {
            if r.status().is_success() {
                healthy = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(healthy, "the server recovered after the database restart");

    let acked = acked.lock().unwrap().clone();
    let mut in_log: HashMap<String, usize> = HashMap::new();
    for agg in 0..3 {
        for e in EventLog::stream(&pool, "tally", &format!("agg{agg}"))
            .await
            .unwrap()
        {
            *in_log
                .entry(e.payload["Added"]["tag"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    for tag in &acked {
        assert_eq!(
            in_log.get(tag),
            Some(&1),
            "acknowledged command {tag} is in the log once"
        );
    }
    assert!(acked.len() > 100, "{} commands acknowledged", acked.len());
    println!(
        "{} commands acknowledged, {} refused during restarts, {} events in the log",
        acked.len(),
        failures.load(Ordering::SeqCst),
        in_log.values().sum::<usize>()
    );
    pool.close().await;
}
