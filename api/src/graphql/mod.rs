//! The GraphQL schema. One module per area, composed with MergedObject; the server only mounts
//! it (see `crate::http` for GraphQL over HTTP).
//!
//! Conventions: money is a string scalar (`Money`, "12.30"), weights and percentages `Decimal`
//! strings, dates `Date` (YYYY-MM-DD) and `DateTime` (RFC 3339), ids `UUID`. Every mutation
//! takes an optional `idempotencyKey` and returns the affected object and `position`, the global
//! position it wrote; a query first waits (bounded) for the projections to pass every committed
//! event, so it sees what the caller wrote before (`fresh`). Every error has
//! `extensions.code`. Authorization: role guards on fields, then scope checks against the
//! aggregates (who owns the account, who administers the market, whose order it is).

pub mod catalogs;
pub mod common;
pub mod directory;
pub mod fresh;
pub mod invoices;
pub mod markets;
pub mod orders;
pub mod people;
pub mod plain;
pub mod producers;
pub mod reads;
pub mod scalars;
pub mod subscriptions;
pub mod system;
pub mod webhooks;

use async_graphql::dataloader::DataLoader;
use async_graphql::{MergedObject, Schema};

pub use common::ApiSettings;
pub use subscriptions::Subscription;
pub use system::{EventCount, ProjectionStatus};

use etal_app::App;

pub type EtalSchema = Schema<Query, Mutation, Subscription>;

/// Deepest query accepted.
pub const MAX_DEPTH: usize = 12;
/// Most complex query accepted (each field counts 1, connections their page size).
pub const MAX_COMPLEXITY: usize = 2000;

#[derive(MergedObject, Default)]
pub struct Query(
    producers::ProducerQuery,
    catalogs::CatalogQuery,
    markets::MarketQuery,
    directory::DirectoryQuery,
    orders::OrderQuery,
    people::PeopleQuery,
    reads::ReadQuery,
    system::SystemQuery,
    system::PayoutFileQuery,
    invoices::InvoiceQuery,
    webhooks::WebhookQuery,
);

#[derive(MergedObject, Default)]
pub struct Mutation(
    producers::ProducerMutation,
    catalogs::CatalogMutation,
    markets::MarketMutation,
    directory::DirectoryMutation,
    orders::OrderMutation,
    people::PeopleMutation,
    system::SystemMutation,
    system::PayoutFileMutation,
    invoices::InvoiceMutation,
    webhooks::WebhookMutation,
);

/// The schema with its limits, over the application.
pub fn schema(app: App, settings: ApiSettings) -> EtalSchema {
    let people = DataLoader::new(orders::PeopleLoader(app.pool.clone()), tokio::spawn);
    let notifier = subscriptions::Notifier::new(app.pool.clone());
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .data(app)
        .data(notifier)
        .data(settings)
        .data(people)
        .extension(fresh::Fresh)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
        .limit_recursive_depth(32)
        .finish()
}

/// The schema for documents that only introspect (`__schema`, `__type`): no depth or complexity
/// limit (the standard introspection query nests deeper than [`MAX_DEPTH`]), no data (no resolver
/// of ours runs). Every other document runs on [`schema`], limits applied.
pub fn introspection_schema() -> EtalSchema {
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .limit_recursive_depth(64)
        .finish()
}

/// The schema in SDL, as checked in at docs/schema.graphql.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), Subscription)
        .finish()
        .sdl()
}
