//! Design property 3 for every registered projection: after catch-up over a log holding every
//! kind of event, a rebuild from the events alone equals the live tables.

mod common;

use common::*;
use etal_domain::account::{AccountEvent, ProducerAccount, ProductDetails};
use etal_domain::annual::{annual_sales_id, AnnualSales, AnnualSalesEvent};
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::PaymentMode;
use etal_domain::order::Order;
use etal_domain::sale::{Sale, SaleEvent};
use etal_domain::stock::{Stock, StockEvent};
use etal_domain::VatRate;

#[tokio::test]
async fn every_projection_rebuilds_to_its_live_tables() {
    let db = TestDb::new(4).await;
    let (producer, product, catalog) = (ProducerId::new(), ProductId::new(), CatalogId::new());
    let (market, sale, order, customer) = (
        MarketId::new(),
        SaleId::new(),
        OrderId::new(),
        UserId::new(),
    );
    let t = at(2026, 3, 1, 9);
    append_events::<ProducerAccount>(
        &db.pool,
        &producer.to_string(),
        &[AccountEvent::ProductAdded {
            product,
            details: ProductDetails {
                name: "Eggs".into(),
                unit: "box".into(),
                price_incl_vat: eur("4.20"),
                vat: VatRate::Reduced5_5,
                variable_weight: false,
                estimated_weight_kg: None,
                packaging_multiple: None,
            },
        }],
        t,
    )
    .await;
    append_events::<Sale>(
        &db.pool,
        &sale.to_string(),
        &[SaleEvent::SalePlanned {
            sale,
            market,
            number: 7,
            date: t.date_naive(),
            starts_at: t,
            ends_at: t,
            amap: false,
            payment_mode: PaymentMode::OnSite,
        }],
        t,
    )
    .await;
    append_events::<Stock>(
        &db.pool,
        &product.to_string(),
        &[
            StockEvent::StockSet {
                product,
                producer,
                real: Some(20),
                ordered: 0,
            },
            StockEvent::StockReserved {
                product,
                reservation: order,
                sale,
                quantity: 2,
                expires_at: t,
                available: Some(18),
            },
            StockEvent::ReservationConfirmed { reservation: order },
        ],
        t,
    )
    .await;
    append_events::<AnnualSales>(
        &db.pool,
        &annual_sales_id(producer, 2026),
        &[
            AnnualSalesEvent::Reserved {
                order,
                amount: eur("8.40"),
                amap: false,
                cap: Some(eur("1000.00")),
                left_after: Some(eur("991.60")),
                at: t,
            },
            AnnualSalesEvent::Confirmed { order },
        ],
        t,
    )
    .await;
    append_events::<Order>(
        &db.pool,
        &order.to_string(),
        &[placed(
            order,
            sale,
            market,
            customer,
            "7-001",
            vec![line(
                1,
                producer,
                catalog,
                product,
                "Eggs",
                "4.20",
                VatRate::Reduced5_5,
                2,
                ("8.40", "7.96", "0.44"),
            )],
            PaymentMode::OnSite,
            "8.40",
            t,
        )],
        t,
    )
    .await;
    for p in etal_projections::all() {
        catch_up(&db.pool, p.name()).await;
        let report = verify(&db.pool, p.name()).await;
        assert!(report.diffs.is_empty(), "{}: {:?}", p.name(), report.diffs);
        assert!(report.rows_compared > 0, "{} projected nothing", p.name());
    }
}
