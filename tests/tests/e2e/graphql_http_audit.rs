//! The graphql-http audit (the GraphQL over HTTP spec's own test suite) against `etal serve`:
//! every MUST passes. Installs the npm package into scripts/node_modules (git-ignored) when
//! missing; needs node and the npm registry.

use std::process::Command;

use etal_tests::{project_root, spawn_server, TestDb};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_passes_every_must_of_the_graphql_http_audit() {
    let scripts = project_root().join("scripts");
    if !scripts.join("node_modules/graphql-http").exists() {
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&scripts)
            .output()
            .expect("npm is installed");
        assert!(
            out.status.success(),
            "npm install failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let db = TestDb::new(5).await;
    let (_server, base) = spawn_server(
        &db.url,
        &[("ETAL_JWT_SECRET", "audit-secret-0123456789abcdef")],
    )
    .await;
    let out = tokio::process::Command::new("node")
        .arg(scripts.join("graphql-http-audit.mjs"))
        .arg(format!("{base}/graphql"))
        .output()
        .await
        .expect("node is installed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    assert!(
        out.status.success(),
        "a MUST of the graphql-http audit failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("a summary line");
    assert_eq!(summary["MUST"]["notOk"], 0, "{summary}");
}
