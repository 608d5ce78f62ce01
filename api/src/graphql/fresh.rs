//! Read-your-writes, paid by the reads: a query operation first waits (bounded) until every
//! projection has applied every event committed before it started, so a client sees what its
//! earlier mutations wrote (and what anyone's did) in its next query, whichever replica answers.
//! A mutation does not wait for the projectors: its answer reads the aggregates it wrote, and
//! the few payload fields that read a projection wait for the mutation's own position
//! ([`settled`]). A write never pays for a read nobody makes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest,
};
use async_graphql::parser::types::{
    DocumentOperations, OperationDefinition, OperationType, Selection,
};
use async_graphql::{Context, Request, Response, ServerResult};
use etal_app::App;
use etal_store::log::Position;

use super::common::ApiSettings;

/// The position a mutation of this request wrote (the latest, when it runs several).
#[derive(Default)]
pub struct Written(Mutex<Option<Position>>);

impl Written {
    pub fn record(&self, position: Position) {
        let mut w = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if w.is_none_or(|p| p < position) {
            *w = Some(position);
        }
    }

    pub fn get(&self) -> Option<Position> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The schema extension (see the module).
pub struct Fresh;

impl ExtensionFactory for Fresh {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(FreshRequest::default())
    }
}

#[derive(Default)]
struct FreshRequest {
    /// Whether the operation the request runs is a query that may read a projection.
    waits: AtomicBool,
}

#[async_trait::async_trait]
impl Extension for FreshRequest {
    /// Sees the document here (the HTTP layer hands it parsed, so `parse_query` never runs).
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        let name = request.operation_name.clone();
        // A document that does not parse fails later, as usual.
        if let Ok(doc) = request.parsed_query() {
            let op = match (&doc.operations, name.as_deref()) {
                (DocumentOperations::Single(op), _) => Some(&op.node),
                (DocumentOperations::Multiple(ops), Some(name)) => ops
                    .iter()
                    .find(|(n, _)| n.as_str() == name)
                    .map(|(_, op)| &op.node),
                (DocumentOperations::Multiple(_), None) => None,
            };
            self.waits
                .store(op.is_some_and(reads_projections), Ordering::Relaxed);
        }
        next.run(ctx, request.data(Written::default())).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        if self.waits.load(Ordering::Relaxed) {
            if let Some(app) = ctx.data_opt::<App>() {
                let settings = ctx.data_opt::<ApiSettings>().copied().unwrap_or_default();
                settle_committed(app, settings).await;
            }
        }
        next.run(ctx, operation_name).await
    }
}

/// Root fields that read no projection, or must not wait for them: liveness, the projections'
/// own status (it shows their lag), introspection.
const NO_WAIT: &[&str] = &["health", "projections", "__typename", "__schema", "__type"];

/// Whether the operation is a query that may read a projection (any root field but those of
/// [`NO_WAIT`]; a fragment at the root counts as one that may).
fn reads_projections(op: &OperationDefinition) -> bool {
    op.ty == OperationType::Query
        && op.selection_set.node.items.iter().any(|s| match &s.node {
            Selection::Field(f) => !NO_WAIT.contains(&f.node.name.node.as_str()),
            _ => true,
        })
}

/// Waits (bounded by the settings) until the projections have applied every committed event.
/// A timeout or an unreadable log is logged and the read goes on with what is there.
pub async fn settle_committed(app: &App, settings: ApiSettings) {
    let waited =
        etal_projections::runtime::wait_for_committed(&app.pool, settings.read_your_writes).await;
    report(waited, "every projection");
}

/// Before a field reads `projection` in a mutation's answer: waits (bounded) until it has
/// applied what the request's mutations wrote. Nothing to wait for in a query (it waited for
/// every committed event before it ran).
pub async fn settled(ctx: &Context<'_>, projection: &str) {
    let Some(position) = ctx.data_opt::<Written>().and_then(Written::get) else {
        return;
    };
    let settings = ctx.data_opt::<ApiSettings>().copied().unwrap_or_default();
    let waited = etal_projections::runtime::wait_until(
        &super::common::app(ctx).pool,
        projection,
        position,
        settings.read_your_writes,
    )
    .await;
    report(waited, projection);
}

/// Logs a wait that did not end with the projections caught up; the read goes on either way.
fn report(waited: Result<bool, etal_projections::ProjectionError>, what: &str) {
    match waited {
        Ok(true) => {}
        Ok(false) => tracing::debug!(what, "read-your-writes: still behind; reading anyway"),
        Err(e) => {
            tracing::warn!(what, error = %e, "read-your-writes: log or checkpoint unreadable")
        }
    }
}
