//! The recap tables kept for speed (R-SAL-5): `recap_products`, maintained per batch, always
//! equals the recap computed from the lines, and a rebuild; `recap_participations` follows the
//! sale's participations; a page of the recap by customer is the same slice of the whole list;
//! the migration's backfill of existing databases equals what the projection builds.

mod common;

use common::*;
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Line, Order, OrderEvent};
use etal_domain::sale::{Sale, SaleEvent};
use etal_domain::VatRate::{Reduced5_5 as R55, Standard20 as S20};
use etal_projections::order_recaps::{self, ProductRecap, Scope, VatTotal};
use rust_decimal::Decimal;
use sqlx::PgPool;

struct World {
    sale: SaleId,
    other_sale: SaleId,
    market: MarketId,
    p: ProducerId,
    q: ProducerId,
    c1: CatalogId,
    c2: CatalogId,
    cq: CatalogId,
    apples: ProductId,
    honey: ProductId,
    beef: ProductId,
    bread: ProductId,
}

fn world() -> World {
    World {
        sale: SaleId::new(),
        other_sale: SaleId::new(),
        market: MarketId::new(),
        p: ProducerId::new(),
        q: ProducerId::new(),
        c1: CatalogId::new(),
        c2: CatalogId::new(),
        cq: CatalogId::new(),
        apples: ProductId::new(),
        honey: ProductId::new(),
        beef: ProductId::new(),
        bread: ProductId::new(),
    }
}

async fn sale_events(pool: &PgPool, s: SaleId, events: &[SaleEvent]) {
    append_events::<Sale>(pool, &s.to_string(), events, at(2026, 3, 1, 8)).await;
}

fn planned(s: SaleId, m: MarketId, number: u32) -> SaleEvent {
    SaleEvent::SalePlanned {
        sale: s,
        market: m,
        number,
        date: chrono::NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
        starts_at: at(2026, 3, 4, 17),
        ends_at: at(2026, 3, 4, 18),
        amap: false,
        payment_mode: PaymentMode::OnSite,
    }
}

fn participated(p: ProducerId, c: CatalogId) -> SaleEvent {
    SaleEvent::ProducerParticipated {
        producer: p,
        catalog: c,
        opens_at: at(2026, 2, 25, 8),
        closes_at: at(2026, 3, 3, 8),
        by: UserId::new(),
    }
}

async fn order(pool: &PgPool, o: OrderId, events: &[OrderEvent]) {
    append_events::<Order>(pool, &o.to_string(), events, at(2026, 3, 1, 9)).await;
}

fn place(w: &World, o: OrderId, sale: SaleId, number: &str, lines: Vec<Line>) -> OrderEvent {
    let total: etal_domain::Money = lines.iter().map(|l| l.amount_incl_vat).sum();
    placed(
        o,
        sale,
        w.market,
        UserId::new(),
        number,
        lines,
        PaymentMode::OnSite,
        &total.to_string(),
        at(2026, 3, 1, 9),
    )
}

fn adjusted(line: u32, new_quantity: i64, amounts: (&str, &str, &str)) -> OrderEvent {
    OrderEvent::QuantityAdjusted {
        line,
        old_quantity: 1,
        new_quantity,
        old_amount: eur("1.00"),
        new_amount: eur(amounts.0),
        amount_excl_vat: eur(amounts.1),
        vat_amount: eur(amounts.2),
        delta: eur("0.00"),
        total: eur("1.00"),
        refund_owed: eur("0.00"),
        extra_due: eur("0.00"),
        by: UserId::new(),
        at: at(2026, 3, 2, 9),
    }
}

fn cancelled() -> OrderEvent {
    OrderEvent::OrderCancelled {
        by: UserId::new(),
        at: at(2026, 3, 2, 10),
        previous_total: eur("1.00"),
        refund_owed: eur("0.00"),
    }
}

fn apple(w: &World, n: u32, catalog: CatalogId, q: i64) -> Line {
    let incl = format!("{}.00", 3 * q);
    line(
        n,
        w.p,
        catalog,
        w.apples,
        "Apples",
        "3.00",
        R55,
        q,
        (&incl, "2.84", "0.16"),
    )
}

fn honey(w: &World, n: u32, q: i64) -> Line {
    line(
        n,
        w.p,
        w.c1,
        w.honey,
        "Honey",
        "8.50",
        R55,
        q,
        ("8.50", "8.06", "0.44"),
    )
}

fn beef(w: &World, n: u32) -> Line {
    weighed(
        line(
            n,
            w.p,
            w.c1,
            w.beef,
            "Beef",
            "20.00",
            S20,
            1,
            ("10.00", "8.33", "1.67"),
        ),
        Decimal::new(5, 1),
    )
}

fn bread(w: &World, n: u32) -> Line {
    line(
        n,
        w.q,
        w.cq,
        w.bread,
        "Bread",
        "2.40",
        R55,
        1,
        ("2.40", "2.27", "0.13"),
    )
}

fn vat_from(rows: &[ProductRecap]) -> Vec<VatTotal> {
    let mut out: Vec<VatTotal> = Vec::new();
    let mut rows: Vec<&ProductRecap> = rows.iter().collect();
    rows.sort_by_key(|r| r.vat_rate);
    for r in rows {
        match out.last_mut() {
            Some(v) if v.vat_rate == r.vat_rate => {
                v.amount_incl_vat += r.amount_incl_vat;
                v.amount_excl_vat += r.amount_excl_vat;
                v.vat_amount += r.vat_amount;
            }
            _ => out.push(VatTotal {
                vat_rate: r.vat_rate,
                amount_incl_vat: r.amount_incl_vat,
                amount_excl_vat: r.amount_excl_vat,
                vat_amount: r.vat_amount,
            }),
        }
    }
    out
}

/// After a step: for every scope, the pre-aggregated recap and VAT totals equal the ones
/// computed from the lines, and the live tables equal a rebuild from the events.
async fn check(pool: &PgPool, w: &World, step: &str) -> Vec<ProductRecap> {
    catch_up(pool, "order_recaps").await;
    let scopes = [
        vec![Scope::new(w.sale, w.c1)],
        vec![Scope::new(w.sale, w.c2)],
        vec![Scope::new(w.sale, w.cq)],
        vec![Scope::new(w.sale, w.c1), Scope::new(w.sale, w.cq)],
        // Apples in two catalogs of one sale: the distinct orders come from the lines.
        vec![Scope::new(w.sale, w.c1), Scope::new(w.sale, w.c2)],
        vec![Scope::new(w.sale, w.c1), Scope::new(w.other_sale, w.c1)],
        vec![
            Scope::new(w.sale, w.c1),
            Scope::new(w.sale, w.c2),
            Scope::new(w.sale, w.cq),
            Scope::new(w.other_sale, w.c1),
        ],
    ];
    for scope in &scopes {
        let fast = order_recaps::recap_by_product(pool, scope).await.unwrap();
        let slow = order_recaps::recap_by_product_from_lines(pool, scope)
            .await
            .unwrap();
        assert_eq!(fast, slow, "{step}: recap by product over {scope:?}");
        let vat = order_recaps::vat_totals(pool, scope).await.unwrap();
        assert_eq!(vat, vat_from(&slow), "{step}: VAT totals over {scope:?}");
        assert_eq!(
            order_recaps::vat_totals_of(&fast),
            vat,
            "{step}: VAT totals of the rows over {scope:?}"
        );
    }
    let report = verify(pool, "order_recaps").await;
    assert!(report.diffs.is_empty(), "{step}: {:?}", report.diffs);
    order_recaps::recap_by_product(pool, &[Scope::new(w.sale, w.c1)])
        .await
        .unwrap()
}

/// (name, quantity, orders, lines to weigh, weighed kg) per product row.
fn figures(rows: &[ProductRecap]) -> Vec<(String, i64, i64, i64, Option<Decimal>)> {
    rows.iter()
        .map(|r| {
            (
                r.name.clone(),
                r.quantity,
                r.orders,
                r.lines_to_weigh,
                r.weighed_kg,
            )
        })
        .collect()
}

fn row(name: &str, q: i64, orders: i64) -> (String, i64, i64, i64, Option<Decimal>) {
    (name.into(), q, orders, 0, None)
}

/// R-SAL-5: the per-product groups follow every change that moves a recap: a product twice in
/// one order (one order), in two catalogs of one sale, a line cut to 0 while the order keeps
/// another line of the product, then its last one, a cancellation, a weighing, an order placed
/// and cancelled or adjusted within one batch; each step equals the lines and a rebuild.
#[tokio::test]
async fn r_sal_5_products_recap_equals_the_lines_after_every_change() {
    let db = TestDb::new(4).await;
    let pool = &db.pool;
    let w = world();
    sale_events(pool, w.sale, &[planned(w.sale, w.market, 1)]).await;
    sale_events(pool, w.other_sale, &[planned(w.other_sale, w.market, 2)]).await;
    let [o1, o2, o3, o4, o5] = [(); 5].map(|_| OrderId::new());

    // O1: apples twice in C1 (one order), honey, beef to weigh, apples in C2, bread from Q.
    let lines = vec![
        apple(&w, 1, w.c1, 2),
        apple(&w, 2, w.c1, 1),
        honey(&w, 3, 1),
        beef(&w, 4),
        apple(&w, 5, w.c2, 1),
        bread(&w, 6),
    ];
    order(pool, o1, &[place(&w, o1, w.sale, "1-001", lines)]).await;
    let rows = check(pool, &w, "O1 placed").await;
    assert_eq!(
        figures(&rows),
        vec![
            row("Apples", 3, 1),
            ("Beef".into(), 1, 1, 1, None),
            row("Honey", 1, 1),
        ]
    );

    // O2: apples and honey in C1; O5 in the other sale.
    order(
        pool,
        o2,
        &[place(
            &w,
            o2,
            w.sale,
            "1-002",
            vec![apple(&w, 1, w.c1, 1), honey(&w, 2, 2)],
        )],
    )
    .await;
    order(
        pool,
        o5,
        &[place(
            &w,
            o5,
            w.other_sale,
            "2-001",
            vec![apple(&w, 1, w.c1, 4)],
        )],
    )
    .await;
    let rows = check(pool, &w, "O2 placed").await;
    assert_eq!(
        figures(&rows),
        vec![
            row("Apples", 4, 2),
            ("Beef".into(), 1, 1, 1, None),
            row("Honey", 3, 2),
        ]
    );

    // O1's first apple line cut to 0: O1 still has apples (line 2), so 2 orders.
    order(pool, o1, &[adjusted(1, 0, ("0.00", "0.00", "0.00"))]).await;
    let rows = check(pool, &w, "O1 line 1 to 0").await;
    assert_eq!((rows[0].quantity, rows[0].orders), (2, 2));

    // Its second apple line cut to 0 too: only O2 has apples in C1.
    order(pool, o1, &[adjusted(2, 0, ("0.00", "0.00", "0.00"))]).await;
    let rows = check(pool, &w, "O1 line 2 to 0").await;
    assert_eq!((rows[0].quantity, rows[0].orders), (1, 1));

    // O2 cancelled: no apples left in C1; honey only from O1.
    order(pool, o2, &[cancelled()]).await;
    let rows = check(pool, &w, "O2 cancelled").await;
    assert_eq!(
        figures(&rows),
        vec![("Beef".into(), 1, 1, 1, None), row("Honey", 1, 1)]
    );

    // The beef weighed: nothing left to weigh, 1.2 kg.
    order(
        pool,
        o1,
        &[OrderEvent::WeightRecorded {
            line: 4,
            weight_kg: Decimal::new(12, 1),
            old_amount: eur("10.00"),
            new_amount: eur("24.00"),
            amount_excl_vat: eur("20.00"),
            vat_amount: eur("4.00"),
            delta: eur("14.00"),
            total: eur("1.00"),
            refund_owed: eur("0.00"),
            extra_due: eur("0.00"),
            by: UserId::new(),
            at: at(2026, 3, 4, 8),
        }],
    )
    .await;
    let rows = check(pool, &w, "beef weighed").await;
    assert_eq!(
        figures(&rows)[0],
        ("Beef".into(), 1, 1, 0, Some(Decimal::new(12, 1)))
    );
    assert_eq!(rows[0].amount_incl_vat, eur("24.00"));

    // Within one batch: O3 placed then cancelled, O4 placed then its honey raised to 3.
    order(
        pool,
        o3,
        &[
            place(&w, o3, w.sale, "1-003", vec![honey(&w, 1, 5)]),
            cancelled(),
        ],
    )
    .await;
    order(
        pool,
        o4,
        &[
            place(
                &w,
                o4,
                w.sale,
                "1-004",
                vec![honey(&w, 1, 1), apple(&w, 2, w.c1, 1)],
            ),
            adjusted(1, 3, ("25.50", "24.17", "1.33")),
        ],
    )
    .await;
    let rows = check(pool, &w, "O3, O4 within one batch").await;
    assert_eq!(
        figures(&rows),
        vec![
            row("Apples", 1, 1),
            ("Beef".into(), 1, 1, 0, Some(Decimal::new(12, 1))),
            row("Honey", 4, 2),
        ]
    );
    assert_eq!(rows[2].amount_incl_vat, eur("34.00"));
}

/// The catalogs taking part follow ProducerParticipated and ParticipationWithdrawn, the last
/// event winning within a batch and across batches; an unknown sale is `None`.
#[tokio::test]
async fn participations_follow_the_sale_events() {
    let db = TestDb::new(4).await;
    let pool = &db.pool;
    let w = world();
    assert_eq!(
        order_recaps::sale_participations(pool, w.sale)
            .await
            .unwrap(),
        None
    );
    sale_events(
        pool,
        w.sale,
        &[
            planned(w.sale, w.market, 1),
            participated(w.p, w.c1),
            participated(w.p, w.c2),
            participated(w.q, w.cq),
            SaleEvent::ParticipationWithdrawn {
                producer: w.p,
                catalog: w.c2,
                by: UserId::new(),
            },
        ],
    )
    .await;
    catch_up(pool, "order_recaps").await;
    let mut expected = vec![(w.c1, w.p), (w.cq, w.q)];
    expected.sort();
    assert_eq!(
        order_recaps::sale_participations(pool, w.sale)
            .await
            .unwrap(),
        Some((w.market, expected.clone()))
    );
    sale_events(
        pool,
        w.sale,
        &[
            SaleEvent::ParticipationWithdrawn {
                producer: w.q,
                catalog: w.cq,
                by: UserId::new(),
            },
            participated(w.p, w.c2),
        ],
    )
    .await;
    catch_up(pool, "order_recaps").await;
    let mut expected = vec![(w.c1, w.p), (w.c2, w.p)];
    expected.sort();
    assert_eq!(
        order_recaps::sale_participations(pool, w.sale)
            .await
            .unwrap(),
        Some((w.market, expected))
    );
    let report = verify(pool, "order_recaps").await;
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);

    // A sale without participations: its market, no catalog.
    sale_events(pool, w.other_sale, &[planned(w.other_sale, w.market, 2)]).await;
    catch_up(pool, "order_recaps").await;
    assert_eq!(
        order_recaps::sale_participations(pool, w.other_sale)
            .await
            .unwrap(),
        Some((w.market, vec![]))
    );
}

/// R-SAL-5: every page of the recap by customer (offset, limit) is the same slice of the whole
/// list, with the same lines and amounts; the count is its length; over one sale and two.
#[tokio::test]
async fn r_sal_5_a_page_of_the_recap_by_customer_is_a_slice_of_the_whole() {
    let db = TestDb::new(4).await;
    let pool = &db.pool;
    let w = world();
    sale_events(pool, w.sale, &[planned(w.sale, w.market, 1)]).await;
    sale_events(pool, w.other_sale, &[planned(w.other_sale, w.market, 2)]).await;
    for i in 0..7u32 {
        let o = OrderId::new();
        let (sale, number) = if i % 3 == 2 {
            (w.other_sale, format!("2-{i:03}"))
        } else {
            (w.sale, format!("1-{:03}", 10 - i))
        };
        let mut lines = vec![apple(&w, 1, w.c1, i64::from(i) + 1), bread(&w, 2)];
        if i % 2 == 0 {
            lines.push(honey(&w, 3, 1));
        } else {
            lines.push(beef(&w, 3));
        }
        let mut events = vec![place(&w, o, sale, &number, lines)];
        match i {
            // A weighed line: its weight (grams in the stored lines) comes back in kg.
            1 => events.push(OrderEvent::WeightRecorded {
                line: 3,
                weight_kg: Decimal::new(1205, 3),
                old_amount: eur("10.00"),
                new_amount: eur("24.10"),
                amount_excl_vat: eur("20.08"),
                vat_amount: eur("4.02"),
                delta: eur("14.10"),
                total: eur("1.00"),
                refund_owed: eur("0.00"),
                extra_due: eur("0.00"),
                by: UserId::new(),
                at: at(2026, 3, 4, 8),
            }),
            // Out of C1's recap: cancelled, or its only C1 line cut to 0.
            3 => events.push(cancelled()),
            4 => {
                events.push(adjusted(1, 0, ("0.00", "0.00", "0.00")));
                events.push(adjusted(3, 0, ("0.00", "0.00", "0.00")));
            }
            _ => {}
        }
        order(pool, o, &events).await;
    }
    catch_up(pool, "order_recaps").await;
    for scope in [
        vec![Scope::new(w.sale, w.c1)],
        vec![Scope::new(w.sale, w.cq)],
        vec![Scope::new(w.sale, w.c1), Scope::new(w.sale, w.cq)],
        vec![Scope::new(w.sale, w.c1), Scope::new(w.other_sale, w.c1)],
        vec![],
    ] {
        let all = order_recaps::recap_by_customer(pool, &scope).await.unwrap();
        assert_eq!(
            order_recaps::count_orders_in_scope(pool, &scope)
                .await
                .unwrap(),
            all.len()
        );
        for offset in 0..=all.len() + 1 {
            for limit in 0..=all.len() + 1 {
                let page = order_recaps::recap_by_customer_page(pool, &scope, offset, limit)
                    .await
                    .unwrap();
                let want: Vec<_> = all.iter().skip(offset).take(limit).cloned().collect();
                assert_eq!(page, want, "{scope:?} offset {offset} limit {limit}");
            }
        }
    }
    let c1 = order_recaps::recap_by_customer(pool, &[Scope::new(w.sale, w.c1)])
        .await
        .unwrap();
    // Orders 0, 1 and 6 (2 and 5 are in the other sale, 3 is cancelled, 4 cut to 0 in C1).
    assert_eq!(
        c1.iter().map(|o| o.number.as_str()).collect::<Vec<_>>(),
        vec!["1-004", "1-009", "1-010"]
    );
}

/// Existing databases: the migrations' backfills of `recap_products`, `recap_participations`
/// and `recap_order_lines` give the rows the projection builds.
#[tokio::test]
async fn the_migrations_backfill_equals_the_projection() {
    let db = TestDb::new(4).await;
    let pool = &db.pool;
    let w = world();
    sale_events(
        pool,
        w.sale,
        &[
            planned(w.sale, w.market, 1),
            participated(w.p, w.c1),
            participated(w.q, w.cq),
            SaleEvent::ParticipationWithdrawn {
                producer: w.q,
                catalog: w.cq,
                by: UserId::new(),
            },
            participated(w.p, w.c2),
        ],
    )
    .await;
    let (o1, o2) = (OrderId::new(), OrderId::new());
    order(
        pool,
        o1,
        &[
            place(
                &w,
                o1,
                w.sale,
                "1-001",
                vec![apple(&w, 1, w.c1, 2), beef(&w, 2), bread(&w, 3)],
            ),
            adjusted(1, 0, ("0.00", "0.00", "0.00")),
        ],
    )
    .await;
    order(
        pool,
        o2,
        &[place(
            &w,
            o2,
            w.sale,
            "1-002",
            vec![apple(&w, 1, w.c1, 1), honey(&w, 2, 1)],
        )],
    )
    .await;
    catch_up(pool, "order_recaps").await;
    let count = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(pool)
            .await
            .unwrap()
    };
    let (products, participations, order_lines) = (
        count("recap_products").await,
        count("recap_participations").await,
        count("recap_order_lines").await,
    );
    assert_eq!((products, participations, order_lines), (4, 2, 2));

    let migration = include_str!("../../migrations/20261124100000_recap_products.sql");
    let backfill = &migration[migration.find("INSERT INTO").unwrap()..];
    sqlx::query("TRUNCATE recap_products, recap_participations")
        .execute(pool)
        .await
        .unwrap();
    sqlx::raw_sql(backfill).execute(pool).await.unwrap();
    assert_eq!(
        (
            count("recap_products").await,
            count("recap_participations").await
        ),
        (products, participations)
    );
    // `recap_order_lines` (backfilled by 20261125100000_recap_order_lines.sql) gained the
    // producer's price (R-CAT-2): 20261201000004_recap_producer_price.sql empties the
    // projection and removes its checkpoint, and the projector rebuilds it from the log.
    let migration = include_str!("../../migrations/20261201000004_recap_producer_price.sql");
    let restart = &migration[migration.find("TRUNCATE").unwrap()..];
    sqlx::raw_sql(restart).execute(pool).await.unwrap();
    assert_eq!(count("recap_order_lines").await, 0);
    catch_up(pool, "order_recaps").await;
    assert_eq!(
        (
            count("recap_products").await,
            count("recap_participations").await,
            count("recap_order_lines").await
        ),
        (products, participations, order_lines)
    );
    let report = verify(pool, "order_recaps").await;
    assert!(report.diffs.is_empty(), "{:?}", report.diffs);
}
