//! What happened to a producer's annual sales.

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::ids::OrderId;
use crate::money::Money;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnnualSalesEvent {
    /// `cap` is the cap that was in force and checked; `left_after` the room left under it.
    Reserved {
        order: OrderId,
        amount: Money,
        amap: bool,
        cap: Option<Money>,
        left_after: Option<Money>,
        at: DateTime<Utc>,
    },
    Confirmed {
        order: OrderId,
    },
    Released {
        order: OrderId,
        amount: Money,
    },
    Reduced {
        order: OrderId,
        from: Money,
        to: Money,
    },
    /// A heavier weighing raised the order's amount (R-ORD-4), within the cap.
    Raised {
        order: OrderId,
        from: Money,
        to: Money,
    },
}

impl DomainEvent for AnnualSalesEvent {
    fn event_type(&self) -> String {
        match self {
            AnnualSalesEvent::Reserved { .. } => "Reserved",
            AnnualSalesEvent::Confirmed { .. } => "Confirmed",
            AnnualSalesEvent::Released { .. } => "Released",
            AnnualSalesEvent::Reduced { .. } => "Reduced",
            AnnualSalesEvent::Raised { .. } => "Raised",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
