use chrono::{DateTime, TimeZone, Utc};
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use rust_decimal_macros::dec;

use super::*;
use crate::account::{Product, ProductDetails};
use crate::actor::{Actor, ProducerAccess, Role};
use crate::ids::{CatalogId, ProducerId, ProductId, SaleId, UserId};
use crate::money::Money;
use crate::vat::VatRate;

type Test = TestFramework<Catalog>;

fn at(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, d, 9, 0, 0)
        .single()
        .expect("instant")
}
fn m(s: &str) -> Money {
    s.parse().expect("amount")
}
fn producer() -> ProducerId {
    ProducerId(uuid::Uuid::from_u128(1))
}
fn catalog_id() -> CatalogId {
    CatalogId(uuid::Uuid::from_u128(20))
}
fn apples() -> ProductId {
    ProductId(uuid::Uuid::from_u128(100))
}
fn wine() -> ProductId {
    ProductId(uuid::Uuid::from_u128(101))
}
fn sale(n: u128) -> SaleId {
    SaleId(uuid::Uuid::from_u128(1000 + n))
}

fn access() -> ProducerAccess {
    ProducerAccess {
        producer: producer(),
        actor: Actor::new(UserId(uuid::Uuid::from_u128(10)), Role::Producer),
        owner: true,
    }
}

fn apples_product() -> OfferProduct {
    OfferProduct {
        product: apples(),
        name: "Apples".into(),
        unit: "kg".into(),
        vat: VatRate::Reduced5_5,
        variable_weight: true,
        estimated_weight_kg: Some(rust_decimal::Decimal::new(5, 1)),
        packaging_multiple: None,
    }
}

fn wine_product() -> OfferProduct {
    OfferProduct {
        product: wine(),
        name: "Red wine".into(),
        unit: "bottle".into(),
        vat: VatRate::Standard20,
        variable_weight: false,
        estimated_weight_kg: None,
        packaging_multiple: Some(6),
    }
}

fn created() -> CatalogEvent {
    CatalogEvent::CatalogCreated {
        catalog: catalog_id(),
        producer: producer(),
        name: "Market of Segonzac".into(),
    }
}

fn with_offers() -> Vec<CatalogEvent> {
    vec![
        created(),
        CatalogEvent::OfferAdded {
            product: apples_product(),
            price_incl_vat: m("3.20"),
        },
        CatalogEvent::OfferAdded {
            product: wine_product(),
            price_incl_vat: m("9.99"),
        },
    ]
}

fn state(events: Vec<CatalogEvent>) -> Catalog {
    let mut c = Catalog::default();
    for e in events {
        c.apply(e);
    }
    c
}

fn price_in(catalog: &Catalog, sale_id: SaleId, product: ProductId) -> Option<Money> {
    catalog
        .terms_for_sale(sale_id, product)
        .map(|t| t.price_incl_vat)
}

// ---- R-CAT-1 ----------------------------------------------------------------------------------

/// R-CAT-1: a producer has any number of catalogs, each its own selection and prices.
#[test]
fn a_producer_has_several_catalogs_with_their_own_prices() {
    Test::with(())
        .given_no_previous_events()
        .when(CatalogCommand::CreateCatalog {
            catalog: catalog_id(),
            name: " Market of Segonzac ".into(),
            access: access(),
        })
        .then_expect_events(vec![created()]);
    let second_id = CatalogId(uuid::Uuid::from_u128(21));
    let online = state(with_offers());
    let on_site = state(vec![
        CatalogEvent::CatalogCreated {
            catalog: second_id,
            producer: producer(),
            name: "Pay on site".into(),
        },
        CatalogEvent::OfferAdded {
            product: apples_product(),
            price_incl_vat: m("3.00"),
        },
    ]);
    assert_eq!(online.producer(), on_site.producer());
    assert_eq!(
        online.offer(apples()).map(|o| o.price_incl_vat),
        Some(m("3.20"))
    );
    assert_eq!(
        on_site.offer(apples()).map(|o| o.price_incl_vat),
        Some(m("3.00"))
    );
    assert!(online.offer(wine()).is_some());
    assert!(on_site.offer(wine()).is_none());
}

/// R-CAT-1, R-ACC-1: nobody but the producer's people manage a catalog.
#[test]
fn a_market_administrator_cannot_create_or_change_a_producers_catalog() {
    let admin = ProducerAccess {
        actor: Actor::new(UserId(uuid::Uuid::from_u128(30)), Role::MarketAdmin),
        ..access()
    };
    Test::with(())
        .given_no_previous_events()
        .when(CatalogCommand::CreateCatalog {
            catalog: catalog_id(),
            name: "Mine".into(),
            access: admin,
        })
        .then_expect_error(CatalogError::NotTheProducer);
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::SetOfferPrice {
            product: apples(),
            price_incl_vat: m("1.00"),
            access: admin,
        })
        .then_expect_error(CatalogError::NotTheProducer);
    let other_producer = ProducerAccess {
        producer: ProducerId(uuid::Uuid::from_u128(2)),
        ..access()
    };
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::RemoveOffer {
            product: apples(),
            access: other_producer,
        })
        .then_expect_error(CatalogError::NotTheProducer);
}

/// R-CAT-1
#[test]
fn offers_are_added_once_removed_and_validated() {
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::AddOffer {
            product: apples_product(),
            price_incl_vat: m("3.20"),
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::OfferAdded {
            product: apples_product(),
            price_incl_vat: m("3.20"),
        }]);
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::AddOffer {
            product: apples_product(),
            price_incl_vat: m("3.20"),
            access: access(),
        })
        .then_expect_error(CatalogError::OfferExists { product: apples() });
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::AddOffer {
            product: apples_product(),
            price_incl_vat: Money::ZERO,
            access: access(),
        })
        .then_expect_error(CatalogError::NonPositivePrice);
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::AddOffer {
            product: OfferProduct {
                packaging_multiple: Some(1),
                ..apples_product()
            },
            price_incl_vat: m("1"),
            access: access(),
        })
        .then_expect_error(CatalogError::InvalidPackagingMultiple { given: 1 });
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::RemoveOffer {
            product: apples(),
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::OfferRemoved { product: apples() }]);
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::RemoveOffer {
            product: apples(),
            access: access(),
        })
        .then_expect_error(CatalogError::UnknownOffer { product: apples() });
}

#[test]
fn an_offer_snapshots_the_accounts_product() {
    let product = Product {
        id: apples(),
        details: ProductDetails {
            name: "Apples".into(),
            unit: "kg".into(),
            price_incl_vat: m("3.20"),
            vat: VatRate::Reduced5_5,
            variable_weight: true,
            estimated_weight_kg: Some(rust_decimal::Decimal::new(5, 1)),
            packaging_multiple: None,
        },
        archived: false,
    };
    assert_eq!(OfferProduct::from(&product), apples_product());
}

// ---- R-CAT-2 ----------------------------------------------------------------------------------

/// R-CAT-2: one offer at a time.
#[test]
fn the_price_of_one_offer_is_set() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::SetOfferPrice {
            product: wine(),
            price_incl_vat: m("10.50"),
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::OfferPriceSet {
            product: wine(),
            price_incl_vat: m("10.50"),
        }]);
}

/// R-CAT-2: a percentage applies to every offer, each rounded half away from zero to the cent.
#[test]
fn a_percentage_modulates_every_offer_rounded_to_the_cent() {
    // 3.20 * 1.05 = 3.36; 9.99 * 1.05 = 10.4895 -> 10.49.
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Percent(dec!(5)),
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::PricesModulated {
            modulation: Modulation::Percent(dec!(5)),
            prices: vec![
                OfferPrice {
                    product: apples(),
                    price_incl_vat: m("3.36"),
                },
                OfferPrice {
                    product: wine(),
                    price_incl_vat: m("10.49"),
                },
            ],
        }]);
    // 3.20 * 0.875 = 2.80; 9.99 * 0.875 = 8.74125 -> 8.74; half away from zero: 0.05 * 0.5.
    let result = Test::with(())
        .given(vec![
            created(),
            CatalogEvent::OfferAdded {
                product: apples_product(),
                price_incl_vat: m("0.05"),
            },
        ])
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Percent(dec!(-50)),
            access: access(),
        })
        .inspect_result();
    // 0.025 rounds half away from zero to 0.03.
    assert!(matches!(
        result.as_deref(),
        Ok([CatalogEvent::PricesModulated { prices, .. }]) if prices[0].price_incl_vat == m("0.03")
    ));
}

/// R-CAT-2: an amount in euros applies to every offer.
#[test]
fn an_amount_modulates_every_offer() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Amount(m("-0.20")),
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::PricesModulated {
            modulation: Modulation::Amount(m("-0.20")),
            prices: vec![
                OfferPrice {
                    product: apples(),
                    price_incl_vat: m("3.00"),
                },
                OfferPrice {
                    product: wine(),
                    price_incl_vat: m("9.79"),
                },
            ],
        }]);
}

/// R-CAT-2: a modulation that would bring any price to zero or below is refused as a whole.
#[test]
fn a_modulation_bringing_a_price_to_zero_or_below_is_refused() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Amount(m("-3.20")),
            access: access(),
        })
        .then_expect_error(CatalogError::ModulatedPriceNotPositive {
            product: apples(),
            result: Money::ZERO,
        });
    Test::with(())
        .given(vec![
            created(),
            CatalogEvent::OfferAdded {
                product: apples_product(),
                price_incl_vat: m("0.01"),
            },
        ])
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Percent(dec!(-60)),
            access: access(),
        })
        .then_expect_error(CatalogError::ModulatedPriceNotPositive {
            product: apples(),
            result: Money::ZERO,
        });
    for p in [dec!(-100), dec!(-150), dec!(1000.01)] {
        Test::with(())
            .given(with_offers())
            .when(CatalogCommand::ModulatePrices {
                modulation: Modulation::Percent(p),
                access: access(),
            })
            .then_expect_error(CatalogError::InvalidPercent);
    }
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Percent(dec!(5)),
            access: access(),
        })
        .then_expect_error(CatalogError::NoOffers);
}

/// R-CAT-2: with the options, the customer bears the payment fee and/or the service fee.
#[test]
fn fee_options_add_the_fees_into_the_customer_price() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::SetFeeOptions {
            include_payment_fee: true,
            include_service_fee: false,
            access: access(),
        })
        .then_expect_events(vec![CatalogEvent::FeeOptionsSet {
            options: FeeOptions {
                include_payment_fee: true,
                include_service_fee: false,
            },
        }]);
    let payment = dec!(0.036);
    let service = dec!(0.072);
    let plain = state(with_offers());
    assert_eq!(
        plain.customer_price(apples(), payment, service),
        Some(m("3.20"))
    );
    let mut events = with_offers();
    events.push(CatalogEvent::FeeOptionsSet {
        options: FeeOptions {
            include_payment_fee: true,
            include_service_fee: false,
        },
    });
    // The customer bears the payment fee, the producer the service fee on their own price:
    // 3.20 x (1 - 0.072) / (1 - 0.108) = 3.3291... -> 3.33; the fees on 3.33 (10.8 %, 0.36)
    // leave 2.97, what 3.20 leaves without a payment fee (3.20 - 7.2 % = 2.9696).
    let with_payment = state(events.clone());
    let price = with_payment
        .customer_price(apples(), payment, service)
        .expect("price");
    assert_eq!(price, m("3.33"));
    assert_eq!(
        price - price.times(payment + service),
        m("3.20") - m("3.20").times(service)
    );
    // On site the payment fee is not in force (rate 0): the option changes nothing.
    assert_eq!(
        with_payment.customer_price(apples(), dec!(0), service),
        Some(m("3.20"))
    );
    events.push(CatalogEvent::FeeOptionsSet {
        options: FeeOptions {
            include_payment_fee: true,
            include_service_fee: true,
        },
    });
    // 3.20 / (1 - 0.108) = 3.5874... -> 3.59.
    let with_both = state(events);
    assert_eq!(
        with_both.customer_price(apples(), payment, service),
        Some(m("3.59"))
    );
    assert_eq!(
        with_both.customer_price(apples(), dec!(0.5), dec!(0.5)),
        None
    );
    assert_eq!(
        with_both.customer_price(apples(), dec!(-0.1), service),
        None
    );
    assert_eq!(
        with_both.customer_price(ProductId::new(), payment, service),
        None
    );
}

/// R-CAT-2
#[test]
fn setting_the_same_fee_options_writes_nothing() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::SetFeeOptions {
            include_payment_fee: false,
            include_service_fee: false,
            access: access(),
        })
        .then_expect_events(vec![]);
}

// ---- R-CAT-3 ----------------------------------------------------------------------------------

fn frozen_terms() -> Vec<FrozenOffer> {
    let c = state(with_offers());
    vec![
        c.current_terms(apples()).expect("apples"),
        c.current_terms(wine()).expect("wine"),
    ]
}

/// R-CAT-3: freezing records the full terms of every offer.
#[test]
fn opening_a_sale_freezes_the_full_terms_of_every_offer() {
    Test::with(())
        .given(with_offers())
        .when(CatalogCommand::FreezePricesForSale {
            sale: sale(1),
            at: at(3),
        })
        .then_expect_events(vec![CatalogEvent::PricesFrozenForSale {
            sale: sale(1),
            offers: vec![
                OfferTerms {
                    product: apples(),
                    name: "Apples".into(),
                    unit: "kg".into(),
                    price_incl_vat: m("3.20"),
                    vat: VatRate::Reduced5_5,
                    variable_weight: true,
                    estimated_weight_kg: Some(rust_decimal::Decimal::new(5, 1)),
                    packaging_multiple: None,
                    fees: FeeOptions::default(),
                },
                OfferTerms {
                    product: wine(),
                    name: "Red wine".into(),
                    unit: "bottle".into(),
                    price_incl_vat: m("9.99"),
                    vat: VatRate::Standard20,
                    variable_weight: false,
                    estimated_weight_kg: None,
                    packaging_multiple: Some(6),
                    fees: FeeOptions::default(),
                },
            ],
            price_lists: Default::default(),
            at: at(3),
        }]);
}

/// R-CAT-3: freezing twice is a no-op: the first freeze stands.
#[test]
fn freezing_a_sale_twice_writes_nothing() {
    let mut events = with_offers();
    events.push(CatalogEvent::PricesFrozenForSale {
        sale: sale(1),
        offers: frozen_terms(),
        price_lists: Default::default(),
        at: at(3),
    });
    events.push(CatalogEvent::OfferPriceSet {
        product: apples(),
        price_incl_vat: m("4.00"),
    });
    Test::with(())
        .given(events)
        .when(CatalogCommand::FreezePricesForSale {
            sale: sale(1),
            at: at(4),
        })
        .then_expect_events(vec![]);
}

/// R-CAT-3: a price change after a sale's order period opened does not change that sale's terms;
/// it applies from the next sale.
#[test]
fn a_price_change_never_applies_to_a_sale_already_open_but_to_the_next() {
    let mut events = with_offers();
    events.push(CatalogEvent::PricesFrozenForSale {
        sale: sale(1),
        offers: frozen_terms(),
        price_lists: Default::default(),
        at: at(3),
    });
    let before = state(events.clone());
    assert_eq!(price_in(&before, sale(1), apples()), Some(m("3.20")));

    // The producer raises the apples, then modulates everything, then adds fees.
    let result = Test::with(())
        .given(events.clone())
        .when(CatalogCommand::SetOfferPrice {
            product: apples(),
            price_incl_vat: m("3.50"),
            access: access(),
        })
        .inspect_result()
        .expect("accepted");
    events.extend(result);
    let result = Test::with(())
        .given(events.clone())
        .when(CatalogCommand::ModulatePrices {
            modulation: Modulation::Percent(dec!(10)),
            access: access(),
        })
        .inspect_result()
        .expect("accepted");
    events.extend(result);
    events.push(CatalogEvent::FeeOptionsSet {
        options: FeeOptions {
            include_payment_fee: true,
            include_service_fee: true,
        },
    });
    let after = state(events.clone());
    // The open sale keeps its terms...
    assert_eq!(price_in(&after, sale(1), apples()), Some(m("3.20")));
    assert_eq!(price_in(&after, sale(1), wine()), Some(m("9.99")));
    assert_eq!(
        after.terms_for_sale(sale(1), apples()).map(|t| t.fees),
        Some(FeeOptions::default())
    );
    // ...the next sale, not yet open, gets the new prices...
    assert_eq!(price_in(&after, sale(2), apples()), Some(m("3.85")));
    assert_eq!(price_in(&after, sale(2), wine()), Some(m("10.99")));
    // ...and keeps them once it opens.
    let result = Test::with(())
        .given(events.clone())
        .when(CatalogCommand::FreezePricesForSale {
            sale: sale(2),
            at: at(10),
        })
        .inspect_result()
        .expect("accepted");
    events.extend(result);
    events.push(CatalogEvent::OfferPriceSet {
        product: apples(),
        price_incl_vat: m("5.00"),
    });
    let later = state(events);
    assert_eq!(price_in(&later, sale(1), apples()), Some(m("3.20")));
    assert_eq!(price_in(&later, sale(2), apples()), Some(m("3.85")));
    assert_eq!(price_in(&later, sale(3), apples()), Some(m("5.00")));
}

/// R-CAT-3: an offer added after the freeze joins from the next sale; a removed one is gone.
#[test]
fn an_offer_added_after_the_freeze_joins_from_the_next_sale() {
    let mut events = vec![
        created(),
        CatalogEvent::OfferAdded {
            product: apples_product(),
            price_incl_vat: m("3.20"),
        },
    ];
    let apples_terms = state(events.clone())
        .current_terms(apples())
        .expect("apples");
    events.push(CatalogEvent::PricesFrozenForSale {
        sale: sale(1),
        offers: vec![apples_terms],
        price_lists: Default::default(),
        at: at(3),
    });
    events.push(CatalogEvent::OfferAdded {
        product: wine_product(),
        price_incl_vat: m("9.99"),
    });
    let c = state(events.clone());
    assert_eq!(price_in(&c, sale(1), wine()), None);
    assert_eq!(price_in(&c, sale(2), wine()), Some(m("9.99")));
    events.push(CatalogEvent::OfferRemoved { product: apples() });
    assert_eq!(price_in(&state(events), sale(1), apples()), None);
}

/// R-CAT-3: forgetting a validated sale drops its frozen terms, keeping the state bounded.
#[test]
fn forgetting_a_validated_sale_drops_its_frozen_terms() {
    let mut events = with_offers();
    events.push(CatalogEvent::PricesFrozenForSale {
        sale: sale(1),
        offers: frozen_terms(),
        price_lists: Default::default(),
        at: at(3),
    });
    Test::with(())
        .given(events.clone())
        .when(CatalogCommand::ForgetSale { sale: sale(1) })
        .then_expect_events(vec![CatalogEvent::SaleForgotten { sale: sale(1) }]);
    events.push(CatalogEvent::SaleForgotten { sale: sale(1) });
    assert!(!state(events.clone()).is_frozen_for(sale(1)));
    Test::with(())
        .given(events)
        .when(CatalogCommand::ForgetSale { sale: sale(1) })
        .then_expect_events(vec![]);
}

#[test]
fn commands_on_a_catalog_not_created_are_refused() {
    Test::with(())
        .given_no_previous_events()
        .when(CatalogCommand::FreezePricesForSale {
            sale: sale(1),
            at: at(1),
        })
        .then_expect_error(CatalogError::NotCreated);
    Test::with(())
        .given(vec![created()])
        .when(CatalogCommand::CreateCatalog {
            catalog: catalog_id(),
            name: "Again".into(),
            access: access(),
        })
        .then_expect_error(CatalogError::AlreadyCreated);
    Test::with(())
        .given_no_previous_events()
        .when(CatalogCommand::CreateCatalog {
            catalog: catalog_id(),
            name: "".into(),
            access: access(),
        })
        .then_expect_error(CatalogError::InvalidName);
}

#[test]
fn the_catalog_state_round_trips_through_json_for_snapshots() {
    let mut events = with_offers();
    events.push(CatalogEvent::PricesFrozenForSale {
        sale: sale(1),
        offers: frozen_terms(),
        price_lists: Default::default(),
        at: at(3),
    });
    let c = state(events);
    let json = serde_json::to_string(&c).expect("serialize");
    let back: Catalog = serde_json::from_str(&json).expect("deserialize");
    assert_eq!(back, c);
    assert_eq!(CatalogError::NoOffers.code(), "NO_OFFERS");
}

/// R-ORD-6/7: a catalog's delivery fee is free above its amount; terms are checked.
#[test]
fn r_ord_6_a_catalog_sets_its_delivery_and_minimum_order() {
    use super::{DeliveryOffer, OrderTerms};
    let offer = DeliveryOffer {
        fee: Money::from_cents(490),
        free_above: Some(Money::from_cents(3000)),
        minimum: Some(Money::from_cents(1000)),
    };
    assert_eq!(
        offer.fee_for(Money::from_cents(2999)),
        Money::from_cents(490)
    );
    assert_eq!(offer.fee_for(Money::from_cents(3000)), Money::ZERO);
    let mut c = Catalog::default();
    c.apply(created());
    let terms = OrderTerms {
        delivery: Some(offer),
        minimum_order: Some(Money::from_cents(500)),
    };
    let events = c
        .decide(CatalogCommand::SetOrderTerms {
            terms,
            access: access(),
        })
        .unwrap();
    assert_eq!(events, vec![CatalogEvent::OrderTermsSet { terms }]);
    c.apply(events[0].clone());
    assert_eq!(c.order_terms(), terms);
    assert!(c
        .decide(CatalogCommand::SetOrderTerms {
            terms,
            access: access()
        })
        .unwrap()
        .is_empty());
    for bad in [
        OrderTerms {
            delivery: Some(DeliveryOffer {
                fee: Money::from_cents(-1),
                free_above: None,
                minimum: None,
            }),
            minimum_order: None,
        },
        OrderTerms {
            delivery: None,
            minimum_order: Some(Money::ZERO),
        },
    ] {
        let e = c
            .decide(CatalogCommand::SetOrderTerms {
                terms: bad,
                access: access(),
            })
            .unwrap_err();
        assert_eq!(e.code(), "INVALID_ORDER_TERMS");
    }
}

fn restaurant() -> UserId {
    UserId(uuid::Uuid::from_u128(77))
}

fn list(prices: &[(ProductId, &str)]) -> Vec<OfferPrice> {
    prices
        .iter()
        .map(|(product, price)| OfferPrice {
            product: *product,
            price_incl_vat: m(price),
        })
        .collect()
}

/// R-ORD-8: a professional customer's own prices apply to them only, are frozen with the sale
/// like every price (R-CAT-3), and only a professional gets a list.
#[test]
fn r_ord_8_a_price_list_gives_a_professional_its_own_prices() {
    let set = |professional: bool, prices: Vec<OfferPrice>| CatalogCommand::SetPriceList {
        customer: restaurant(),
        professional,
        prices,
        access: access(),
    };
    // Refusals write nothing.
    let refused = |cmd: CatalogCommand| state(with_offers()).decide(cmd).unwrap_err();
    assert_eq!(
        refused(set(false, list(&[(apples(), "2.00")]))).code(),
        "CUSTOMER_NOT_PROFESSIONAL"
    );
    assert_eq!(
        refused(set(true, list(&[(sale_product(), "2.00")]))).code(),
        "UNKNOWN_OFFER"
    );
    assert_eq!(
        refused(set(true, list(&[(apples(), "0.00")]))).code(),
        "NON_POSITIVE_PRICE"
    );
    assert_eq!(
        refused(set(true, list(&[(apples(), "2.00"), (apples(), "2.10")]))).code(),
        "DUPLICATE_PRICE"
    );

    let mut events = with_offers();
    events.extend(
        state(events.clone())
            .decide(set(true, list(&[(apples(), "2.00")])))
            .unwrap(),
    );
    let c = state(events.clone());
    let other = UserId(uuid::Uuid::from_u128(78));
    let price = |c: &Catalog, sale_id, who| {
        c.terms_for_customer(sale_id, apples(), who)
            .map(|t| t.price_incl_vat)
    };
    assert_eq!(price(&c, sale(1), restaurant()), Some(m("2.00")));
    assert_eq!(
        price(&c, sale(1), other),
        price_in(&c, sale(1), apples()),
        "another customer pays the catalog's price"
    );
    assert_ne!(price_in(&c, sale(1), apples()), Some(m("2.00")));
    // The same list again writes nothing.
    assert!(c
        .decide(set(true, list(&[(apples(), "2.00")])))
        .unwrap()
        .is_empty());

    // Sale 1 opens: its list is frozen; a new list applies from sale 2.
    events.extend(
        c.decide(CatalogCommand::FreezePricesForSale {
            sale: sale(1),
            at: at(3),
        })
        .unwrap(),
    );
    let c = state(events.clone());
    events.extend(c.decide(set(true, list(&[(apples(), "1.80")]))).unwrap());
    let c = state(events.clone());
    assert_eq!(price(&c, sale(1), restaurant()), Some(m("2.00")));
    assert_eq!(price(&c, sale(2), restaurant()), Some(m("1.80")));
    // An empty list removes it.
    events.extend(c.decide(set(false, vec![])).unwrap());
    let c = state(events);
    assert!(c.price_lists().is_empty());
    assert_eq!(
        price(&c, sale(2), restaurant()),
        price_in(&c, sale(2), apples())
    );
}

fn sale_product() -> ProductId {
    ProductId(uuid::Uuid::from_u128(999))
}
