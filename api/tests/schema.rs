//! docs/schema.graphql is the generated SDL; this test fails when it drifts.
//! Regenerate with `UPDATE_SCHEMA=1 cargo test -p etal-api --test schema`.

#[test]
fn the_checked_in_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schema.graphql");
    let generated = etal_api::graphql::sdl();
    if std::env::var("UPDATE_SCHEMA").is_ok() {
        std::fs::write(&path, &generated).expect("write docs/schema.graphql");
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "docs/schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test -p etal-api --test schema`"
    );
}
