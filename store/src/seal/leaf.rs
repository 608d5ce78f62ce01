//! What a leaf of the sealed tree is: every column of one event, in a canonical form.
//!
//! The leaf data is the RFC 8785 canonical JSON of
//! `{"aggregate_id", "aggregate_type", "event_type", "event_version", "global_position",
//!   "metadata_sha256", "payload_sha256", "recorded_at", "sequence", "transaction_id"}`,
//! where the payload and the metadata enter by the hex SHA-256 of their own canonical JSON (read
//! back from jsonb), so a payload can later be redacted and its hash kept without breaking the
//! tree, and `recorded_at` is UTC with six fraction digits (`2026-12-02T10:00:00.000001Z`).
//! The leaf hash is RFC 6962's SHA-256(0x00 || leaf data).

use chrono::SecondsFormat;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::jcs::canonical;
use super::merkle::{leaf_hash, Hash};
use crate::log::StoredEvent;

/// Hex SHA-256 of the canonical form of `value`.
pub fn value_sha256(value: &Value) -> String {
    hex::encode(Sha256::digest(canonical(value)))
}

/// The canonical leaf data of `event`.
pub fn leaf_data(event: &StoredEvent) -> Vec<u8> {
    canonical(&json!({
        "aggregate_id": event.aggregate_id,
        "aggregate_type": event.aggregate_type,
        "event_type": event.event_type,
        "event_version": event.event_version,
        "global_position": event.position.position,
        "metadata_sha256": value_sha256(&event.metadata),
        "payload_sha256": value_sha256(&event.payload),
        "recorded_at": event.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "sequence": event.sequence,
        "transaction_id": event.position.txid,
    }))
}

/// The leaf hash of `event`.
pub fn event_leaf(event: &StoredEvent) -> Hash {
    leaf_hash(&leaf_data(event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Position;
    use chrono::TimeZone;

    #[test]
    fn leaf_data_is_the_canonical_json_of_every_column() {
        let event = StoredEvent {
            position: Position {
                txid: 1234,
                position: 7,
            },
            aggregate_type: "Order".into(),
            aggregate_id: "a1".into(),
            sequence: 1,
            event_type: "Placed".into(),
            event_version: "1".into(),
            payload: json!({"b": "é", "a": [1, "2.50"]}),
            metadata: json!({}),
            recorded_at: chrono::Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()
                + chrono::Duration::microseconds(1),
        };
        let payload = hex::encode(Sha256::digest("{\"a\":[1,\"2.50\"],\"b\":\"é\"}"));
        let metadata = hex::encode(Sha256::digest("{}"));
        let want = format!(
            "{{\"aggregate_id\":\"a1\",\"aggregate_type\":\"Order\",\"event_type\":\"Placed\",\
             \"event_version\":\"1\",\"global_position\":7,\"metadata_sha256\":\"{metadata}\",\
             \"payload_sha256\":\"{payload}\",\"recorded_at\":\"2026-12-02T10:00:00.000001Z\",\
             \"sequence\":1,\"transaction_id\":1234}}"
        );
        assert_eq!(String::from_utf8(leaf_data(&event)).unwrap(), want);
    }
}
