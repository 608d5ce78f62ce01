//! What can be asked of a catalog.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::actor::ProducerAccess;
use crate::ids::{CatalogId, ProductId, SaleId, UserId};
use crate::money::Money;

use super::{OfferPrice, OfferProduct, OrderTerms};

/// A change applied to every offer of a catalog (R-CAT-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Modulation {
    /// Percent of the current price: `10` raises by 10 %, `-5` lowers by 5 %. Between -100 and
    /// +1000 exclusive of -100.
    Percent(Decimal),
    /// Euros added to each price (negative to lower).
    Amount(Money),
}

/// Commands on a [`super::Catalog`]. Producer commands carry a [`ProducerAccess`] obtained from
/// the producer account; service commands (freezing, forgetting a sale) carry none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CatalogCommand {
    /// R-CAT-1: a producer creates one more catalog.
    CreateCatalog {
        catalog: CatalogId,
        name: String,
        access: ProducerAccess,
    },
    /// Offers a product (snapshot of its terms from the account) at a price.
    AddOffer {
        product: OfferProduct,
        price_incl_vat: Money,
        access: ProducerAccess,
    },
    RemoveOffer {
        product: ProductId,
        access: ProducerAccess,
    },
    /// R-CAT-2: one offer at a time.
    SetOfferPrice {
        product: ProductId,
        price_incl_vat: Money,
        access: ProducerAccess,
    },
    /// R-CAT-2: every offer at once.
    ModulatePrices {
        modulation: Modulation,
        access: ProducerAccess,
    },
    /// R-CAT-2: add the online payment fee and/or the service fee into the customer prices.
    SetFeeOptions {
        include_payment_fee: bool,
        include_service_fee: bool,
        access: ProducerAccess,
    },
    /// R-ORD-6/7: the catalog's home delivery and minimum order (applies to orders placed
    /// from now on).
    SetOrderTerms {
        terms: OrderTerms,
        access: ProducerAccess,
    },
    /// R-ORD-8: a professional customer's own prices for some offers (replacing their list;
    /// empty: none). `professional` is what the service knows of the customer.
    SetPriceList {
        customer: UserId,
        professional: bool,
        prices: Vec<OfferPrice>,
        access: ProducerAccess,
    },
    /// R-CAT-3: issued by the service when a sale's order period opens for this catalog.
    FreezePricesForSale { sale: SaleId, at: DateTime<Utc> },
    /// Issued by the service once the sale is validated: drops its frozen terms from the state.
    ForgetSale { sale: SaleId },
}
