//! Order recaps (R-SAL-5), sign-off lists and dashboard statistics, against figures computed by
//! hand; rebuild equals live; verify names a tampered row and rebuild repairs it.

mod common;

use chrono::NaiveDate;
use common::*;
use etal_domain::ids::{
    CatalogId, MarketId, OrderId, PaymentId, ProducerId, ProductId, SaleId, UserId,
};
use etal_domain::market::{Market, MarketEvent, PaymentMode, Visibility};
use etal_domain::order::{Order, OrderEvent, PaymentMethod};
use etal_domain::sale::{Sale, SaleEvent};
use etal_domain::VatRate::{Reduced5_5 as R55, Standard20 as S20};
use etal_projections::dashboard;
use etal_projections::order_recaps::{self, PaymentStatus, Scope};
use rust_decimal::Decimal;
use sqlx::PgPool;

struct World {
    p: ProducerId,
    m1: MarketId,
    m2: MarketId,
    s1: SaleId,
    s2: SaleId,
    c1: CatalogId,
    c2: CatalogId,
    apples: ProductId,
    honey: ProductId,
    wine: ProductId,
    beef: ProductId,
    alice: UserId,
    orders: Vec<OrderId>,
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

async fn market(pool: &PgPool, m: MarketId, name: &str) {
    append_events::<Market>(
        pool,
        &m.to_string(),
        &[MarketEvent::MarketCreated {
            market: m,
            name: name.into(),
            place: "place".into(),
            slots: vec![],
            administrators: vec![],
            payment_mode: PaymentMode::OnSite,
            visibility: Visibility::Public,
            amap: false,
            created_by: UserId::new(),
        }],
        at(2026, 1, 1, 8),
    )
    .await;
}

async fn sale(pool: &PgPool, s: SaleId, m: MarketId, number: u32, date: u32) {
    append_events::<Sale>(
        pool,
        &s.to_string(),
        &[SaleEvent::SalePlanned {
            sale: s,
            market: m,
            number,
            date: day(date),
            starts_at: at(2026, 3, date, 17),
            ends_at: at(2026, 3, date, 18),
            amap: false,
            payment_mode: PaymentMode::OnSite,
        }],
        at(2026, 2, 1, 8),
    )
    .await;
}

async fn order(pool: &PgPool, o: OrderId, events: &[OrderEvent]) {
    append_events::<Order>(pool, &o.to_string(), events, at(2026, 3, 1, 9)).await;
}

fn paid(amount: &str, paid: &str, due: &str) -> OrderEvent {
    OrderEvent::PaymentRecorded {
        payment: PaymentId::new(),
        method: PaymentMethod::Online {
            provider_ref: "psp".into(),
        },
        amount: eur(amount),
        by: UserId::new(),
        at: at(2026, 3, 1, 10),
        paid: eur(paid),
        balance_due: eur(due),
    }
}

/// Producer P: catalog C1 in sale S1 of Segonzac (Wed 4 March 2026) and catalog C2 in sale S2 of
/// Mussidan the same day; sale S3 of Segonzac a week later. Producer Q sells bread in S1.
async fn world(pool: &PgPool) -> World {
    let (p, q) = (ProducerId::new(), ProducerId::new());
    let (m1, m2) = (MarketId::new(), MarketId::new());
    let (s1, s2, s3) = (SaleId::new(), SaleId::new(), SaleId::new());
    let (c1, c2, cq) = (CatalogId::new(), CatalogId::new(), CatalogId::new());
    let (apples, honey, wine, beef, bread) = (
        ProductId::new(),
        ProductId::new(),
        ProductId::new(),
        ProductId::new(),
        ProductId::new(),
    );
    let [alice, bob, carol, dave, erin] = [(); 5].map(|_| UserId::new());
    person(pool, alice, Some("Alice Martin"), false).await;
    person(pool, bob, None, true).await;
    person(pool, carol, Some("carol Durand"), false).await;
    person(pool, dave, Some("Dave"), false).await;
    // Erin is unknown to `people`: shown as erased too.
    market(pool, m1, "Segonzac").await;
    market(pool, m2, "Mussidan").await;
    sale(pool, s1, m1, 1, 4).await;
    sale(pool, s2, m2, 2, 4).await;
    sale(pool, s3, m1, 3, 11).await;
    let orders: Vec<OrderId> = (0..7).map(|_| OrderId::new()).collect();
    let t = at(2026, 3, 1, 9);
    let on_site = PaymentMode::OnSite;
    let online = PaymentMode::Online;
    let apple = |n, q, a: (&str, &str, &str)| line(n, p, c1, apples, "Apples", "3.00", R55, q, a);
    // O1 Alice: apples 2, wine 1 (P), bread 1 (Q); paid in full.
    order(
        pool,
        orders[0],
        &[
            placed(
                orders[0],
                s1,
                m1,
                alice,
                "1-001",
                vec![
                    apple(1, 2, ("6.00", "5.69", "0.31")),
                    line(
                        2,
                        p,
                        c1,
                        wine,
                        "Wine",
                        "12.00",
                        S20,
                        1,
                        ("12.00", "10.00", "2.00"),
                    ),
                    line(
                        3,
                        q,
                        cq,
                        bread,
                        "Bread",
                        "2.40",
                        R55,
                        1,
                        ("2.40", "2.27", "0.13"),
                    ),
                ],
                online,
                "20.40",
                t,
            ),
            paid("20.40", "20.40", "0.00"),
        ],
    )
    .await;
    // O2 Bob (erased): apples 5, unpaid.
    order(
        pool,
        orders[1],
        &[placed(
            orders[1],
            s1,
            m1,
            bob,
            "1-002",
            vec![apple(1, 5, ("15.00", "14.22", "0.78"))],
            on_site,
            "15.00",
            t,
        )],
    )
    .await;
    // O3 Carol: honey 1, wine 2, paid 32.50; wine cut to 1 (R-ORD-4): refund owed 12.00.
    order(
        pool,
        orders[2],
        &[
            placed(
                orders[2],
                s1,
                m1,
                carol,
                "1-003",
                vec![
                    line(
                        1,
                        p,
                        c1,
                        honey,
                        "Honey",
                        "8.50",
                        R55,
                        1,
                        ("8.50", "8.06", "0.44"),
                    ),
                    line(
                        2,
                        p,
                        c1,
                        wine,
                        "Wine",
                        "12.00",
                        S20,
                        2,
                        ("24.00", "20.00", "4.00"),
                    ),
                ],
                online,
                "32.50",
                t,
            ),
            paid("32.50", "32.50", "0.00"),
            OrderEvent::QuantityAdjusted {
                line: 2,
                old_quantity: 2,
                new_quantity: 1,
                old_amount: eur("24.00"),
                new_amount: eur("12.00"),
                amount_excl_vat: eur("10.00"),
                vat_amount: eur("2.00"),
                delta: eur("-12.00"),
                total: eur("20.50"),
                refund_owed: eur("12.00"),
                extra_due: eur("0.00"),
                by: UserId::new(),
                at: at(2026, 3, 3, 9),
            },
        ],
    )
    .await;
    // O4 Dave: apples 1, cancelled: in no recap.
    order(
        pool,
        orders[3],
        &[
            placed(
                orders[3],
                s1,
                m1,
                dave,
                "1-004",
                vec![apple(1, 1, ("3.00", "2.84", "0.16"))],
                on_site,
                "3.00",
                t,
            ),
            OrderEvent::OrderCancelled {
                by: dave,
                at: at(2026, 3, 2, 9),
                previous_total: eur("3.00"),
                refund_owed: eur("0.00"),
            },
        ],
    )
    .await;
    // O5 Erin: bread 3 from Q only.
    order(
        pool,
        orders[4],
        &[placed(
            orders[4],
            s1,
            m1,
            erin,
            "1-005",
            vec![line(
                1,
                q,
                cq,
                bread,
                "Bread",
                "2.40",
                R55,
                3,
                ("7.20", "6.82", "0.38"),
            )],
            on_site,
            "7.20",
            t,
        )],
    )
    .await;
    // O6 Alice at Mussidan: honey 2, beef 2 x 0.5 kg estimated at 20.00/kg; paid 10.00; beef
    // weighed 1.2 kg: 24.00.
    order(
        pool,
        orders[5],
        &[
            placed(
                orders[5],
                s2,
                m2,
                alice,
                "2-001",
                vec![
                    line(
                        1,
                        p,
                        c2,
                        honey,
                        "Honey",
                        "8.50",
                        R55,
                        2,
                        ("17.00", "16.11", "0.89"),
                    ),
                    weighed(
                        line(
                            2,
                            p,
                            c2,
                            beef,
                            "Beef",
                            "20.00",
                            R55,
                            2,
                            ("20.00", "18.96", "1.04"),
                        ),
                        Decimal::new(5, 1),
                    ),
                ],
                online,
                "37.00",
                t,
            ),
            paid("10.00", "10.00", "27.00"),
            OrderEvent::WeightRecorded {
                line: 2,
                weight_kg: Decimal::new(12, 1),
                old_amount: eur("20.00"),
                new_amount: eur("24.00"),
                amount_excl_vat: eur("22.75"),
                vat_amount: eur("1.25"),
                delta: eur("4.00"),
                total: eur("41.00"),
                refund_owed: eur("0.00"),
                extra_due: eur("31.00"),
                by: UserId::new(),
                at: at(2026, 3, 4, 8),
            },
        ],
    )
    .await;
    // O7 Alice at Segonzac a week later: apples 1.
    order(
        pool,
        orders[6],
        &[placed(
            orders[6],
            s3,
            m1,
            alice,
            "3-001",
            vec![apple(1, 1, ("3.00", "2.84", "0.16"))],
            on_site,
            "3.00",
            t,
        )],
    )
    .await;
    World {
        p,
        m1,
        m2,
        s1,
        s2,
        c1,
        c2,
        apples,
        honey,
        wine,
        beef,
        alice,
        orders,
    }
}

fn short(rows: &[order_recaps::ProductRecap]) -> Vec<(String, i64, String, String, String)> {
    rows.iter()
        .map(|r| {
            (
                r.name.clone(),
                r.quantity,
                r.amount_incl_vat.to_string(),
                r.amount_excl_vat.to_string(),
                r.vat_amount.to_string(),
            )
        })
        .collect()
}

/// R-SAL-5: the recap of one catalog in one sale, by product, per VAT rate, by customer.
#[tokio::test]
async fn the_recap_of_a_catalog_groups_its_live_orders_by_product_vat_rate_and_customer() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    assert_eq!(catch_up(&db.pool, "order_recaps").await, 18);
    let scope = [Scope::new(w.s1, w.c1)];

    let by_product = order_recaps::recap_by_product(&db.pool, &scope)
        .await
        .unwrap();
    assert_eq!(
        short(&by_product),
        vec![
            (
                "Apples".into(),
                7,
                "21.00".into(),
                "19.91".into(),
                "1.09".into()
            ),
            (
                "Honey".into(),
                1,
                "8.50".into(),
                "8.06".into(),
                "0.44".into()
            ),
            (
                "Wine".into(),
                2,
                "24.00".into(),
                "20.00".into(),
                "4.00".into()
            ),
        ]
    );
    assert_eq!(by_product[0].product, w.apples);
    assert_eq!(by_product[0].orders, 2);
    assert_eq!(by_product[2].product, w.wine);
    assert_eq!(by_product[2].vat_rate, Decimal::new(20, 0));

    let vat = order_recaps::vat_totals(&db.pool, &scope).await.unwrap();
    let vat: Vec<_> = vat
        .iter()
        .map(|v| {
            (
                v.vat_rate.to_string(),
                v.amount_excl_vat.to_string(),
                v.vat_amount.to_string(),
                v.amount_incl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(
        vat,
        vec![
            ("5.5".into(), "27.97".into(), "1.53".into(), "29.50".into()),
            ("20".into(), "20.00".into(), "4.00".into(), "24.00".into()),
        ]
    );

    let by_customer = order_recaps::recap_by_customer(&db.pool, &scope)
        .await
        .unwrap();
    let got: Vec<_> = by_customer
        .iter()
        .map(|o| {
            (
                o.number.as_str(),
                o.customer.as_str(),
                o.lines.iter().map(|l| l.line).collect::<Vec<_>>(),
                o.amount_incl_vat.to_string(),
                o.payment_status,
                o.balance_due.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "1-001",
                "Alice Martin",
                vec![1, 2],
                "18.00".into(),
                PaymentStatus::Paid,
                "0.00".into()
            ),
            (
                "1-002",
                "erased customer",
                vec![1],
                "15.00".into(),
                PaymentStatus::Unpaid,
                "15.00".into()
            ),
            (
                "1-003",
                "carol Durand",
                vec![1, 2],
                "20.50".into(),
                PaymentStatus::RefundOwed,
                "0.00".into()
            ),
        ]
    );
    assert_eq!(by_customer[0].order_total, eur("20.40"));
    assert_eq!(by_customer[2].lines[1].quantity, 1);
    assert_eq!(by_customer[2].lines[1].amount_incl_vat, eur("12.00"));

    // The sign-off list: by customer name (case-insensitive), then number.
    let sign_off = order_recaps::sign_off_list(&db.pool, &scope).await.unwrap();
    let got: Vec<_> = sign_off
        .iter()
        .map(|o| {
            (
                o.number.as_str(),
                o.customer.as_str(),
                o.due_at_pickup.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("1-001", "Alice Martin", "0.00".into()),
            ("1-003", "carol Durand", "0.00".into()),
            ("1-002", "erased customer", "15.00".into()),
        ]
    );
}

/// A producer's day: both markets of 4 March, one recap and one sign-off list.
#[tokio::test]
async fn a_producers_day_spans_every_catalog_and_market_of_that_date() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "order_recaps").await;
    let mut scopes = order_recaps::producer_day_scopes(&db.pool, w.p, day(4))
        .await
        .unwrap();
    scopes.sort();
    let mut expected = vec![Scope::new(w.s1, w.c1), Scope::new(w.s2, w.c2)];
    expected.sort();
    assert_eq!(scopes, expected);

    let by_product = order_recaps::recap_by_product(&db.pool, &scopes)
        .await
        .unwrap();
    assert_eq!(
        short(&by_product),
        vec![
            (
                "Apples".into(),
                7,
                "21.00".into(),
                "19.91".into(),
                "1.09".into()
            ),
            (
                "Beef".into(),
                2,
                "24.00".into(),
                "22.75".into(),
                "1.25".into()
            ),
            (
                "Honey".into(),
                3,
                "25.50".into(),
                "24.17".into(),
                "1.33".into()
            ),
            (
                "Wine".into(),
                2,
                "24.00".into(),
                "20.00".into(),
                "4.00".into()
            ),
        ]
    );
    assert_eq!(by_product[1].product, w.beef);
    assert_eq!(by_product[1].weighed_kg, Some(Decimal::new(12, 1)));
    assert_eq!(by_product[1].lines_to_weigh, 0);
    assert_eq!(by_product[2].product, w.honey);

    let sign_off = order_recaps::sign_off_list(&db.pool, &scopes)
        .await
        .unwrap();
    let got: Vec<_> = sign_off
        .iter()
        .map(|o| {
            (
                o.number.as_str(),
                o.customer.as_str(),
                o.amount_incl_vat.to_string(),
                o.payment_status,
                o.due_at_pickup.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (
                "1-001",
                "Alice Martin",
                "18.00".into(),
                PaymentStatus::Paid,
                "0.00".into()
            ),
            (
                "2-001",
                "Alice Martin",
                "41.00".into(),
                PaymentStatus::PartiallyPaid,
                "31.00".into()
            ),
            (
                "1-003",
                "carol Durand",
                "20.50".into(),
                PaymentStatus::RefundOwed,
                "0.00".into()
            ),
            (
                "1-002",
                "erased customer",
                "15.00".into(),
                PaymentStatus::Unpaid,
                "15.00".into()
            ),
        ]
    );
    assert_eq!(sign_off[1].market, w.m2);
    assert_eq!(sign_off[1].customer_id, w.alice);
}

#[tokio::test]
async fn dashboard_statistics_count_live_orders_per_week_product_customer_and_market() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "order_recaps").await;
    let (from, to) = (day(1), day(31));

    // 4 March 2026 is in ISO week 10, 11 March in week 11. O4 is cancelled.
    let weeks = dashboard::market_weekly_sales(&db.pool, w.m1, from, to)
        .await
        .unwrap();
    let got: Vec<_> = weeks
        .iter()
        .map(|r| {
            (
                r.iso_year,
                r.iso_week,
                r.orders,
                r.customers,
                r.turnover_incl_vat.to_string(),
                r.turnover_excl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (2026, 10, 4, 4, "63.10".into(), "57.06".into()),
            (2026, 11, 1, 1, "3.00".into(), "2.84".into()),
        ]
    );

    let products = dashboard::producer_product_sales(&db.pool, w.p, from, to)
        .await
        .unwrap();
    let got: Vec<_> = products
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.quantity,
                r.orders,
                r.turnover_incl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Honey", 3, 2, "25.50".into()),
            ("Apples", 8, 3, "24.00".into()),
            ("Beef", 2, 1, "24.00".into()),
            ("Wine", 2, 2, "24.00".into()),
        ]
    );

    let customers = dashboard::producer_customer_sales(&db.pool, w.p, from, to)
        .await
        .unwrap();
    let got: Vec<_> = customers
        .iter()
        .map(|r| {
            (
                r.customer.as_str(),
                r.orders,
                r.turnover_incl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Alice Martin", 3, "62.00".into()),
            ("carol Durand", 1, "20.50".into()),
            ("erased customer", 1, "15.00".into()),
        ]
    );

    let markets = dashboard::customers_per_market(&db.pool, from, to)
        .await
        .unwrap();
    let got: Vec<_> = markets
        .iter()
        .map(|r| {
            (
                r.name.as_str(),
                r.customers,
                r.orders,
                r.turnover_incl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("Mussidan", 1, 1, "41.00".into()),
            ("Segonzac", 4, 5, "66.10".into())
        ]
    );

    let sales = dashboard::orders_per_sale(&db.pool, w.m1, from, to)
        .await
        .unwrap();
    let got: Vec<_> = sales
        .iter()
        .map(|r| {
            (
                r.sale,
                r.date,
                r.orders,
                r.customers,
                r.turnover_incl_vat.to_string(),
            )
        })
        .collect();
    assert_eq!(got[0], (w.s1, day(4), 4, 4, "63.10".to_string()));
    assert_eq!((got[1].1, got[1].2), (day(11), 1));

    let mine = dashboard::producer_markets(&db.pool, w.p, from, to)
        .await
        .unwrap();
    let got: Vec<_> = mine
        .iter()
        .map(|r| (r.market, r.sales, r.orders, r.turnover_incl_vat.to_string()))
        .collect();
    assert_eq!(
        got,
        vec![(w.m1, 2, 4, "56.50".into()), (w.m2, 1, 1, "41.00".into())]
    );
    assert_eq!(mine[0].name, "Segonzac");

    // Nothing outside the range.
    assert!(
        dashboard::market_weekly_sales(&db.pool, w.m1, day(12), day(31))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Design property 3: the live tables equal a rebuild; a tampered row is named, and only it.
#[tokio::test]
async fn verify_names_the_one_altered_recap_row_and_rebuild_repairs_it() {
    let db = TestDb::new(4).await;
    let w = world(&db.pool).await;
    catch_up(&db.pool, "order_recaps").await;
    let clean = verify(&db.pool, "order_recaps").await;
    assert!(clean.diffs.is_empty(), "{:?}", clean.diffs);
    // 2 markets + 3 sales + 7 orders + 11 lines + 7 (sale, catalog, product) groups + the
    // lines of the 7 orders, one row an order.
    assert_eq!(clean.rows_compared, 37);

    // An order's stored lines altered: named by verify (and only it).
    sqlx::query("UPDATE recap_order_lines SET lines = '[]' WHERE order_id = $1")
        .bind(w.orders[1].0)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(&db.pool, "order_recaps").await;
    assert_eq!(report.diffs.len(), 1, "{:?}", report.diffs);
    assert_eq!(report.diffs[0].table, "recap_order_lines");
    assert_eq!(report.diffs[0].key["order_id"], w.orders[1].to_string());
    assert_eq!(report.diffs[0].live.as_ref().unwrap()["lines"], "[]");
    rebuild(&db.pool, "order_recaps").await;
    assert!(verify(&db.pool, "order_recaps").await.diffs.is_empty());

    sqlx::query("UPDATE recap_lines SET quantity = 99 WHERE order_id = $1 AND line = 1")
        .bind(w.orders[0].0)
        .execute(&db.pool)
        .await
        .unwrap();
    let report = verify(&db.pool, "order_recaps").await;
    assert_eq!(report.diffs.len(), 1, "{:?}", report.diffs);
    let d = &report.diffs[0];
    assert_eq!(d.table, "recap_lines");
    assert_eq!(d.key["order_id"], w.orders[0].to_string());
    assert_eq!(d.key["line"], 1);
    assert_eq!(d.live.as_ref().unwrap()["quantity"], 99);
    assert_eq!(d.rebuilt.as_ref().unwrap()["quantity"], 2);

    rebuild(&db.pool, "order_recaps").await;
    assert!(verify(&db.pool, "order_recaps").await.diffs.is_empty());
    let by_product = order_recaps::recap_by_product(&db.pool, &[Scope::new(w.s1, w.c1)])
        .await
        .unwrap();
    assert_eq!(by_product[0].quantity, 7);
}

/// A payload that does not decode stops the projection with an error naming the event.
#[tokio::test]
async fn an_undecodable_order_event_is_an_error_not_a_panic() {
    let db = TestDb::new(2).await;
    let position: i64 = sqlx::query_scalar(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata) \
         VALUES ('order', $1, 1, 'OrderPlaced', '1', '{\"OrderPlaced\": {\"nonsense\": 1}}', '{}') \
         RETURNING global_position",
    )
    .bind(OrderId::new().to_string())
    .fetch_one(&db.pool)
    .await
    .unwrap();
    let p = etal_projections::by_name("order_recaps").unwrap();
    // The event may stay below the cluster-wide watermark for a moment: retry until it is read.
    let mut result = Ok(0);
    for _ in 0..1000 {
        result = etal_projections::catch_up(&db.pool, p.as_ref(), None, None, &|_| {}).await;
        if result.is_err() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let err = result.unwrap_err();
    match err {
        etal_projections::ProjectionError::Event {
            projection,
            position: at,
            ..
        } => {
            assert_eq!(projection, "order_recaps");
            assert_eq!(at, position);
        }
        other => panic!("unexpected error {other:?}"),
    }
}
