//! Typed identifiers. Every id is a UUID; the aggregate id in the event store is its text form.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self(Uuid::nil())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

id_type!(
    /// A person who uses the service (producer owner, collaborator, administrator, customer...).
    UserId
);
id_type!(
    /// A producer account.
    ProducerId
);
id_type!(
    /// A product of a producer account.
    ProductId
);
id_type!(
    /// A catalog of a producer.
    CatalogId
);
id_type!(
    /// A market (group, AMAP, point of sale).
    MarketId
);
id_type!(
    /// One dated pick-up of a market.
    SaleId
);
id_type!(
    /// A customer's order for one sale.
    OrderId
);
id_type!(
    /// A payment (online or on site).
    PaymentId
);
id_type!(
    /// A producer's proposal of a catalog to a market (R-CAT-5).
    ProposalId
);
