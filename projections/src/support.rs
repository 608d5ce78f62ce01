//! Small helpers shared by the projections: typed errors for bad events, ids, money columns.

use etal_domain::{Money, VatRate};
use etal_store::{StoreError, StoredEvent};
use rust_decimal::Decimal;
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

use crate::ProjectionError;

/// A `ProjectionError::Event` for `event`.
pub(crate) fn bad_event(
    projection: &'static str,
    event: &StoredEvent,
    reason: impl std::fmt::Display,
) -> ProjectionError {
    ProjectionError::Event {
        projection,
        position: event.position.position,
        reason: reason.to_string(),
    }
}

/// Decodes the payload, or names the event that cannot be read.
pub(crate) fn decode<E: serde::de::DeserializeOwned>(
    projection: &'static str,
    event: &StoredEvent,
) -> Result<E, ProjectionError> {
    // From the stored value by reference: no copy of the payload to decode it.
    E::deserialize(&event.payload).map_err(|e| {
        let e = StoreError::Corrupt(format!(
            "event {} ({} {} #{}): {e}",
            event.position.position, event.aggregate_type, event.aggregate_id, event.sequence
        ));
        bad_event(projection, event, e)
    })
}

/// The aggregate id of `event` as a UUID.
pub(crate) fn aggregate_uuid(
    projection: &'static str,
    event: &StoredEvent,
) -> Result<Uuid, ProjectionError> {
    Uuid::parse_str(&event.aggregate_id).map_err(|e| {
        bad_event(
            projection,
            event,
            format!("aggregate id '{}' is not a UUID: {e}", event.aggregate_id),
        )
    })
}

/// A VAT rate as the percent stored in `numeric(4,1)` columns.
pub(crate) fn vat_percent(vat: VatRate) -> Decimal {
    vat.percent()
}

/// Reads a `numeric(14,2)` column as money.
pub(crate) fn money(row: &PgRow, column: &str) -> Result<Money, sqlx::Error> {
    Ok(Money::round(row.try_get::<Decimal, _>(column)?))
}

/// Reads a nullable `numeric(14,2)` column as money.
pub(crate) fn money_opt(row: &PgRow, column: &str) -> Result<Option<Money>, sqlx::Error> {
    Ok(row.try_get::<Option<Decimal>, _>(column)?.map(Money::round))
}

/// The SQL expression naming the customer of `o.customer_id` joined as `p` from `people`:
/// "erased customer" when the person is erased or unknown (design property 10).
pub(crate) const CUSTOMER_NAME: &str = "CASE WHEN p.user_id IS NULL OR p.erased_at IS NOT NULL \
     OR p.display_name IS NULL THEN 'erased customer' ELSE p.display_name END";

/// What is shown for a person who is erased or unknown.
pub const ERASED_CUSTOMER: &str = "erased customer";
