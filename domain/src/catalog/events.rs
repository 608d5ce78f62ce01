//! What happened to a catalog. Events carry the computed prices and frozen terms.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::account::Product;
use crate::ids::{CatalogId, ProducerId, ProductId, SaleId, UserId};
use crate::money::Money;
use crate::vat::VatRate;

use super::Modulation;

/// The product as offered: a snapshot of the account's product terms (R-ACC-5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferProduct {
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    pub vat: VatRate,
    pub variable_weight: bool,
    /// Estimated weight of one unit in kg, for variable-weight products (the price is then per kg).
    #[serde(default)]
    pub estimated_weight_kg: Option<rust_decimal::Decimal>,
    pub packaging_multiple: Option<u32>,
}

impl From<&Product> for OfferProduct {
    fn from(p: &Product) -> Self {
        OfferProduct {
            product: p.id,
            name: p.details.name.clone(),
            unit: p.details.unit.clone(),
            vat: p.details.vat,
            variable_weight: p.details.variable_weight,
            estimated_weight_kg: p.details.estimated_weight_kg,
            packaging_multiple: p.details.packaging_multiple,
        }
    }
}

/// Whether the platform fees are added into the prices the customer sees (R-CAT-2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeOptions {
    pub include_payment_fee: bool,
    pub include_service_fee: bool,
}

/// A new price of one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferPrice {
    pub product: ProductId,
    pub price_incl_vat: Money,
}

/// The full terms on which an offer is sold in a sale (R-CAT-3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferTerms {
    pub product: ProductId,
    pub name: String,
    pub unit: String,
    /// The producer's unit price, VAT included, before any fee added for the customer.
    pub price_incl_vat: Money,
    pub vat: VatRate,
    pub variable_weight: bool,
    /// Estimated weight of one unit in kg, for variable-weight products (the price is then per kg).
    #[serde(default)]
    pub estimated_weight_kg: Option<rust_decimal::Decimal>,
    pub packaging_multiple: Option<u32>,
    pub fees: FeeOptions,
}

/// The terms of an offer as frozen for a sale.
pub type FrozenOffer = OfferTerms;

impl OfferTerms {
    /// The unit price the customer sees, VAT included.
    ///
    /// Without fee options it is `price_incl_vat`. With them, the customer bears the chosen
    /// fees: the price is grossed up so that once every fee is taken at source from what the
    /// customer pays, the producer keeps what they would keep if the chosen fees did not exist:
    /// `round(price_incl_vat x (1 - others) / (1 - all))`, where `all` is
    /// `payment_fee_rate + service_fee_rate` and `others` the rates not chosen, each a fraction
    /// of the amount paid VAT included (0.036 for the 3.6 % incl. VAT payment fee; pass 0 for a
    /// fee not in force, e.g. the payment fee on site), rounded half away from zero to the
    /// cent. With both chosen: `round(price / (1 - all))`, the producer keeps their price.
    /// `None` when a rate is negative or the rates reach 1.
    pub fn customer_price(
        &self,
        payment_fee_rate: Decimal,
        service_fee_rate: Decimal,
    ) -> Option<Money> {
        if payment_fee_rate.is_sign_negative() || service_fee_rate.is_sign_negative() {
            return None;
        }
        if !self.fees.include_payment_fee && !self.fees.include_service_fee {
            return Some(self.price_incl_vat);
        }
        let all = payment_fee_rate.checked_add(service_fee_rate)?;
        if all >= Decimal::ONE {
            return None;
        }
        let mut others = Decimal::ZERO;
        if !self.fees.include_payment_fee {
            others += payment_fee_rate;
        }
        if !self.fees.include_service_fee {
            others += service_fee_rate;
        }
        let gross = self
            .price_incl_vat
            .amount()
            .checked_mul(Decimal::ONE - others)?
            .checked_div(Decimal::ONE - all)?;
        Some(Money::round(gross))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CatalogEvent {
    CatalogCreated {
        catalog: CatalogId,
        producer: ProducerId,
        name: String,
    },
    OfferAdded {
        product: OfferProduct,
        price_incl_vat: Money,
    },
    OfferRemoved {
        product: ProductId,
    },
    OfferPriceSet {
        product: ProductId,
        price_incl_vat: Money,
    },
    /// The modulation asked and the resulting price of every offer.
    PricesModulated {
        modulation: Modulation,
        prices: Vec<OfferPrice>,
    },
    FeeOptionsSet {
        options: FeeOptions,
    },
    /// R-ORD-6/7: the home delivery the catalog offers and its minimum order.
    OrderTermsSet {
        terms: OrderTerms,
    },
    /// R-CAT-3: the terms of every offer as they stood when the sale's order period opened.
    PricesFrozenForSale {
        sale: SaleId,
        offers: Vec<FrozenOffer>,
        /// R-ORD-8: the professional customers' price lists as they stood then.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        price_lists: BTreeMap<UserId, Vec<OfferPrice>>,
        at: DateTime<Utc>,
    },
    /// R-ORD-8: a professional customer's own prices in this catalog (empty: none any more).
    PriceListSet {
        customer: UserId,
        prices: Vec<OfferPrice>,
    },
    SaleForgotten {
        sale: SaleId,
    },
}

impl DomainEvent for CatalogEvent {
    fn event_type(&self) -> String {
        match self {
            CatalogEvent::CatalogCreated { .. } => "CatalogCreated",
            CatalogEvent::OfferAdded { .. } => "OfferAdded",
            CatalogEvent::OfferRemoved { .. } => "OfferRemoved",
            CatalogEvent::OfferPriceSet { .. } => "OfferPriceSet",
            CatalogEvent::PricesModulated { .. } => "PricesModulated",
            CatalogEvent::FeeOptionsSet { .. } => "FeeOptionsSet",
            CatalogEvent::OrderTermsSet { .. } => "OrderTermsSet",
            CatalogEvent::PricesFrozenForSale { .. } => "PricesFrozenForSale",
            CatalogEvent::SaleForgotten { .. } => "SaleForgotten",
            CatalogEvent::PriceListSet { .. } => "PriceListSet",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// R-ORD-6: home delivery offered by whoever delivers (here a producer's catalog): a fee,
/// nothing above an amount, and a minimum order for a delivery (R-ORD-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryOffer {
    pub fee: Money,
    /// Orders of at least this amount (lines incl. VAT) are delivered free.
    pub free_above: Option<Money>,
    /// A delivered order needs at least this amount (lines incl. VAT).
    pub minimum: Option<Money>,
}

impl DeliveryOffer {
    /// The fee for `lines` incl. VAT.
    pub fn fee_for(&self, lines: Money) -> Money {
        match self.free_above {
            Some(free) if lines >= free => Money::ZERO,
            _ => self.fee,
        }
    }
}

/// R-ORD-6/7: what a catalog asks of the orders of its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OrderTerms {
    /// Home delivery by the producer (none: pick-up only).
    pub delivery: Option<DeliveryOffer>,
    /// The least an order's lines of this catalog may amount to (incl. VAT).
    pub minimum_order: Option<Money>,
}
