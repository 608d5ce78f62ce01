//! The catalog aggregate.

use std::collections::BTreeMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::account::{check_name, check_packaging_multiple, check_unit};
use crate::actor::{ProducerAccess, Role};
use crate::ids::{CatalogId, ProducerId, ProductId, SaleId, UserId};
use crate::money::Money;

use super::{
    CatalogCommand, CatalogError, CatalogEvent, FeeOptions, FrozenOffer, Modulation, OfferPrice,
    OfferProduct, OfferTerms, OrderTerms,
};

/// An offer: a product at a price, VAT included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Offer {
    pub product: OfferProduct,
    pub price_incl_vat: Money,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Created {
    catalog: CatalogId,
    producer: ProducerId,
    name: String,
}

/// A catalog of a producer, id = its [`CatalogId`]. A producer has any number of them, each with
/// its own offers and prices (R-CAT-1).
///
/// Prices are frozen per sale when its order period opens (R-CAT-3): the frozen terms stay in
/// the state until the sale is forgotten (`ForgetSale`, after validation), so the state holds the
/// open sales only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    created: Option<Created>,
    offers: BTreeMap<ProductId, Offer>,
    fees: FeeOptions,
    frozen: BTreeMap<SaleId, Vec<FrozenOffer>>,
    /// R-ORD-6/7
    #[serde(default)]
    terms: OrderTerms,
    /// R-ORD-8: professional customers' own prices, now and as frozen per open sale.
    #[serde(default)]
    price_lists: BTreeMap<UserId, BTreeMap<ProductId, Money>>,
    #[serde(default)]
    frozen_lists: BTreeMap<SaleId, BTreeMap<UserId, BTreeMap<ProductId, Money>>>,
}

/// Upper bound of a price (the bound of [`Money`] input).
const MAX_PRICE: Decimal = Decimal::from_parts(1_000_000_000, 0, 0, false, 0);
/// Bounds of a percentage modulation.
const MIN_PERCENT: Decimal = Decimal::from_parts(100, 0, 0, true, 0);
const MAX_PERCENT: Decimal = Decimal::from_parts(1000, 0, 0, false, 0);

impl Catalog {
    pub fn id(&self) -> Option<CatalogId> {
        self.created.as_ref().map(|c| c.catalog)
    }

    pub fn producer(&self) -> Option<ProducerId> {
        self.created.as_ref().map(|c| c.producer)
    }

    pub fn name(&self) -> Option<&str> {
        self.created.as_ref().map(|c| c.name.as_str())
    }

    /// The current offer of a product.
    pub fn offer(&self, product: ProductId) -> Option<&Offer> {
        self.offers.get(&product)
    }

    /// Every current offer, by product id.
    pub fn offers(&self) -> impl Iterator<Item = &Offer> {
        self.offers.values()
    }

    /// R-ORD-6/7: the catalog's home delivery and minimum order.
    pub fn order_terms(&self) -> OrderTerms {
        self.terms
    }

    pub fn fee_options(&self) -> FeeOptions {
        self.fees
    }

    /// Whether prices are frozen for `sale`.
    pub fn is_frozen_for(&self, sale: SaleId) -> bool {
        self.frozen.contains_key(&sale)
    }

    /// The current terms of an offer (those the next sale will get).
    pub fn current_terms(&self, product: ProductId) -> Option<OfferTerms> {
        self.offers.get(&product).map(|offer| OfferTerms {
            product: offer.product.product,
            name: offer.product.name.clone(),
            unit: offer.product.unit.clone(),
            price_incl_vat: offer.price_incl_vat,
            vat: offer.product.vat,
            variable_weight: offer.product.variable_weight,
            estimated_weight_kg: offer.product.estimated_weight_kg,
            packaging_multiple: offer.product.packaging_multiple,
            fees: self.fees,
        })
    }

    /// The terms on which `product` is sold in `sale` (R-CAT-3).
    ///
    /// When the sale is frozen, its frozen terms: later price or fee changes do not apply to it.
    /// An offer removed from the catalog since is not sold any more (`None`), and an offer added
    /// after the freeze joins from the next sale (`None` for this one). When the sale is not
    /// frozen (its order period has not opened), the current terms.
    pub fn terms_for_sale(&self, sale: SaleId, product: ProductId) -> Option<OfferTerms> {
        if !self.offers.contains_key(&product) {
            return None;
        }
        match self.frozen.get(&sale) {
            Some(frozen) => frozen.iter().find(|o| o.product == product).cloned(),
            None => self.current_terms(product),
        }
    }

    /// R-ORD-8: the terms on which `customer` buys `product` in `sale`: the sale's terms
    /// ([`Self::terms_for_sale`]) at the customer's own price when their price list (as frozen
    /// for the sale, or current before it opens) names the product.
    pub fn terms_for_customer(
        &self,
        sale: SaleId,
        product: ProductId,
        customer: UserId,
    ) -> Option<OfferTerms> {
        let mut terms = self.terms_for_sale(sale, product)?;
        let list = match self.frozen.contains_key(&sale) {
            true => self.frozen_lists.get(&sale).and_then(|l| l.get(&customer)),
            false => self.price_lists.get(&customer),
        };
        if let Some(price) = list.and_then(|l| l.get(&product)) {
            terms.price_incl_vat = *price;
        }
        Some(terms)
    }

    /// R-ORD-8: every professional customer's current price list.
    pub fn price_lists(&self) -> &BTreeMap<UserId, BTreeMap<ProductId, Money>> {
        &self.price_lists
    }

    /// The current unit price the customer sees for `product`, fees added when chosen (see
    /// [`OfferTerms::customer_price`] for the formula and the meaning of the rates).
    pub fn customer_price(
        &self,
        product: ProductId,
        payment_fee_rate: Decimal,
        service_fee_rate: Decimal,
    ) -> Option<Money> {
        self.current_terms(product)?
            .customer_price(payment_fee_rate, service_fee_rate)
    }

    fn created(&self) -> Result<&Created, CatalogError> {
        self.created.as_ref().ok_or(CatalogError::NotCreated)
    }

    /// The proof must be for this catalog's producer, from someone acting as a producer (owner or
    /// collaborator): no administrator manages a catalog on a producer's behalf (R-ACC-1).
    fn check_access(&self, access: &ProducerAccess) -> Result<(), CatalogError> {
        let created = self.created()?;
        if access.producer != created.producer || access.actor.role != Role::Producer {
            return Err(CatalogError::NotTheProducer);
        }
        Ok(())
    }

    fn known_offer(&self, product: ProductId) -> Result<&Offer, CatalogError> {
        self.offers
            .get(&product)
            .ok_or(CatalogError::UnknownOffer { product })
    }

    pub fn decide(&self, command: CatalogCommand) -> Result<Vec<CatalogEvent>, CatalogError> {
        use CatalogCommand as C;
        use CatalogEvent as E;
        match command {
            C::CreateCatalog {
                catalog,
                name,
                access,
            } => {
                if self.created.is_some() {
                    return Err(CatalogError::AlreadyCreated);
                }
                if access.actor.role != Role::Producer {
                    return Err(CatalogError::NotTheProducer);
                }
                let name = check_name(&name).ok_or(CatalogError::InvalidName)?;
                Ok(vec![E::CatalogCreated {
                    catalog,
                    producer: access.producer,
                    name,
                }])
            }
            C::AddOffer {
                product,
                price_incl_vat,
                access,
            } => {
                self.check_access(&access)?;
                if self.offers.contains_key(&product.product) {
                    return Err(CatalogError::OfferExists {
                        product: product.product,
                    });
                }
                let product = checked_product(product)?;
                check_price(price_incl_vat)?;
                Ok(vec![E::OfferAdded {
                    product,
                    price_incl_vat,
                }])
            }
            C::RemoveOffer { product, access } => {
                self.check_access(&access)?;
                self.known_offer(product)?;
                Ok(vec![E::OfferRemoved { product }])
            }
            C::SetOfferPrice {
                product,
                price_incl_vat,
                access,
            } => {
                self.check_access(&access)?;
                self.known_offer(product)?;
                check_price(price_incl_vat)?;
                Ok(vec![E::OfferPriceSet {
                    product,
                    price_incl_vat,
                }])
            }
            C::ModulatePrices { modulation, access } => {
                self.check_access(&access)?;
                if self.offers.is_empty() {
                    return Err(CatalogError::NoOffers);
                }
                if let Modulation::Percent(p) = modulation {
                    if p <= MIN_PERCENT || p > MAX_PERCENT {
                        return Err(CatalogError::InvalidPercent);
                    }
                }
                let prices = self
                    .offers
                    .values()
                    .map(|offer| {
                        let product = offer.product.product;
                        let result = modulate(offer.price_incl_vat, modulation)
                            .ok_or(CatalogError::PriceOutOfRange)?;
                        if result <= Money::ZERO {
                            return Err(CatalogError::ModulatedPriceNotPositive {
                                product,
                                result,
                            });
                        }
                        check_price(result)?;
                        Ok(OfferPrice {
                            product,
                            price_incl_vat: result,
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(vec![E::PricesModulated { modulation, prices }])
            }
            C::SetFeeOptions {
                include_payment_fee,
                include_service_fee,
                access,
            } => {
                self.check_access(&access)?;
                let options = FeeOptions {
                    include_payment_fee,
                    include_service_fee,
                };
                if options == self.fees {
                    return Ok(vec![]);
                }
                Ok(vec![E::FeeOptionsSet { options }])
            }
            C::SetOrderTerms { terms, access } => {
                self.check_access(&access)?;
                let positive = |m: Option<Money>| m.is_none_or(|m| m > Money::ZERO);
                let valid = positive(terms.minimum_order)
                    && terms.delivery.is_none_or(|d| {
                        !d.fee.is_negative() && positive(d.free_above) && positive(d.minimum)
                    });
                if !valid {
                    return Err(CatalogError::InvalidOrderTerms);
                }
                if terms == self.terms {
                    return Ok(vec![]);
                }
                Ok(vec![E::OrderTermsSet { terms }])
            }
            C::SetPriceList {
                customer,
                professional,
                prices,
                access,
            } => {
                self.check_access(&access)?;
                if !professional && !prices.is_empty() {
                    return Err(CatalogError::CustomerNotProfessional);
                }
                let mut seen = std::collections::BTreeSet::new();
                for p in &prices {
                    self.known_offer(p.product)?;
                    check_price(p.price_incl_vat)?;
                    if !seen.insert(p.product) {
                        return Err(CatalogError::DuplicatePrice { product: p.product });
                    }
                }
                let now: Vec<OfferPrice> = self
                    .price_lists
                    .get(&customer)
                    .map(|l| {
                        l.iter()
                            .map(|(product, price)| OfferPrice {
                                product: *product,
                                price_incl_vat: *price,
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut asked = prices.clone();
                asked.sort_by_key(|p| p.product);
                if asked == now {
                    return Ok(vec![]);
                }
                Ok(vec![E::PriceListSet {
                    customer,
                    prices: asked,
                }])
            }
            C::FreezePricesForSale { sale, at } => {
                self.created()?;
                // Idempotent: the scheduler may run the opening twice (retry after a crash); the
                // first freeze stands and a second one writes nothing.
                if self.frozen.contains_key(&sale) {
                    return Ok(vec![]);
                }
                let offers = self
                    .offers
                    .keys()
                    .filter_map(|p| self.current_terms(*p))
                    .collect();
                let price_lists = self
                    .price_lists
                    .iter()
                    .map(|(customer, list)| {
                        let prices = list
                            .iter()
                            .filter(|(p, _)| self.offers.contains_key(p))
                            .map(|(product, price)| OfferPrice {
                                product: *product,
                                price_incl_vat: *price,
                            })
                            .collect();
                        (*customer, prices)
                    })
                    .collect();
                Ok(vec![E::PricesFrozenForSale {
                    sale,
                    offers,
                    price_lists,
                    at,
                }])
            }
            C::ForgetSale { sale } => {
                self.created()?;
                // Idempotent as well: forgetting an unknown or forgotten sale writes nothing.
                if !self.frozen.contains_key(&sale) {
                    return Ok(vec![]);
                }
                Ok(vec![E::SaleForgotten { sale }])
            }
        }
    }
}

fn check_price(price: Money) -> Result<(), CatalogError> {
    if price <= Money::ZERO {
        return Err(CatalogError::NonPositivePrice);
    }
    if price.amount() > MAX_PRICE {
        return Err(CatalogError::PriceOutOfRange);
    }
    Ok(())
}

fn checked_product(product: OfferProduct) -> Result<OfferProduct, CatalogError> {
    let name = check_name(&product.name).ok_or(CatalogError::InvalidName)?;
    let unit = check_unit(&product.unit).ok_or(CatalogError::InvalidUnit)?;
    if !check_packaging_multiple(product.packaging_multiple) {
        return Err(CatalogError::InvalidPackagingMultiple {
            given: product.packaging_multiple.unwrap_or_default(),
        });
    }
    Ok(OfferProduct {
        name,
        unit,
        ..product
    })
}

/// The modulated price, rounded half away from zero to the cent; `None` on overflow.
fn modulate(price: Money, modulation: Modulation) -> Option<Money> {
    match modulation {
        Modulation::Percent(p) => {
            let factor = Decimal::ONE_HUNDRED
                .checked_add(p)?
                .checked_div(Decimal::ONE_HUNDRED)?;
            Some(Money::round(price.amount().checked_mul(factor)?))
        }
        Modulation::Amount(a) => Some(Money::round(price.amount().checked_add(a.amount())?)),
    }
}

impl Aggregate for Catalog {
    const TYPE: &'static str = "catalog";
    type Command = CatalogCommand;
    type Event = CatalogEvent;
    type Error = CatalogError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _service: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        // Decide everything first: a refused command writes nothing.
        let events = self.decide(command)?;
        for event in events {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use CatalogEvent as E;
        match event {
            E::CatalogCreated {
                catalog,
                producer,
                name,
            } => {
                self.created = Some(Created {
                    catalog,
                    producer,
                    name,
                });
            }
            E::OfferAdded {
                product,
                price_incl_vat,
            } => {
                self.offers.insert(
                    product.product,
                    Offer {
                        product,
                        price_incl_vat,
                    },
                );
            }
            E::OfferRemoved { product } => {
                self.offers.remove(&product);
            }
            E::OfferPriceSet {
                product,
                price_incl_vat,
            } => {
                if let Some(offer) = self.offers.get_mut(&product) {
                    offer.price_incl_vat = price_incl_vat;
                }
            }
            E::PricesModulated { prices, .. } => {
                for p in prices {
                    if let Some(offer) = self.offers.get_mut(&p.product) {
                        offer.price_incl_vat = p.price_incl_vat;
                    }
                }
            }
            E::FeeOptionsSet { options } => {
                self.fees = options;
            }
            E::OrderTermsSet { terms } => self.terms = terms,
            E::PricesFrozenForSale {
                sale,
                offers,
                price_lists,
                ..
            } => {
                self.frozen.insert(sale, offers);
                if !price_lists.is_empty() {
                    self.frozen_lists.insert(
                        sale,
                        price_lists
                            .into_iter()
                            .map(|(c, l)| {
                                (
                                    c,
                                    l.into_iter()
                                        .map(|p| (p.product, p.price_incl_vat))
                                        .collect(),
                                )
                            })
                            .collect(),
                    );
                }
            }
            E::PriceListSet { customer, prices } => {
                if prices.is_empty() {
                    self.price_lists.remove(&customer);
                } else {
                    self.price_lists.insert(
                        customer,
                        prices
                            .into_iter()
                            .map(|p| (p.product, p.price_incl_vat))
                            .collect(),
                    );
                }
            }
            E::SaleForgotten { sale } => {
                self.frozen.remove(&sale);
                self.frozen_lists.remove(&sale);
            }
        }
    }
}
