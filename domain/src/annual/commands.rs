//! What can be asked of a producer's annual sales.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::OrderId;
use crate::money::Money;

/// Commands on [`super::AnnualSales`], issued by the order flow (the service), one order's amount
/// for this producer at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AnnualSalesCommand {
    /// Reserves an order's amount (VAT incl.) for this producer before the order is confirmed.
    Reserve {
        order: OrderId,
        amount: Money,
        /// The sale's market is flagged AMAP: recorded, never counted against the cap.
        amap: bool,
        /// The cap of the plan terms in force (`PlanTerms::annual_cap_non_amap`), looked up by the
        /// caller; `None`: unlimited.
        cap: Option<Money>,
        at: DateTime<Utc>,
    },
    /// The order was confirmed (paid or accepted).
    Confirm { order: OrderId },
    /// The order failed or was cancelled: its amount no longer counts.
    Release { order: OrderId },
    /// After a shortage or a refund the order's amount shrank.
    Reduce { order: OrderId, new_amount: Money },
    /// R-ORD-4: a heavier weighing raised the order's amount; checked against the cap (R-ACC-4)
    /// like a reservation, outside AMAP markets.
    Raise {
        order: OrderId,
        new_amount: Money,
        cap: Option<Money>,
    },
}
