//! The order flow across aggregates, against PostgreSQL: stock reservations, the Discovery cap,
//! numbers, payments, adjustments with refunds, cancellation, withdrawal, expiry, bad input.

use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{AppError, Ctx};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, MarketId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::order::Order;
use etal_domain::stock::Stock;
use etal_domain::{Actor, Role, VatRate};
use etal_tests::world::{actor, money, Producer, World};
use rust_decimal::Decimal;

/// A Wednesday market (Segonzac's shape) with one sale on 11 March 2026, 18:00 Paris.
struct Setup {
    w: World,
    market: MarketId,
    admin: Actor,
    sale: SaleId,
}

async fn setup(payment_mode: PaymentMode, amap: bool) -> Setup {
    let w = World::new().await;
    let wed = NaiveDate::from_ymd_opt(2026, 3, 11).unwrap();
    let (market, admin) = w
        .market(
            "Segonzac",
            Weekday::Wed,
            (18, 0),
            (19, 0),
            1,
            wed,
            payment_mode,
            amap,
        )
        .await;
    let sales = w
        .app
        .generate_sales(&Ctx::new(admin), market, wed, wed)
        .await
        .unwrap()
        .value;
    assert_eq!(sales.len(), 1);
    Setup {
        w,
        market,
        admin,
        sale: sales[0],
    }
}

impl Setup {
    async fn seller(
        &self,
        plan: PlanKind,
        products: &[(&str, &str, Option<i64>)],
    ) -> (Producer, CatalogId, Vec<ProductId>) {
        let p = self.w.producer(plan).await;
        let mut ids = Vec::new();
        for (name, price, stock) in products {
            let id = self.w.product(&p, name, price, VatRate::Reduced5_5).await;
            if let Some(n) = stock {
                self.w
                    .app
                    .set_stock(&p.ctx(), p.id, id, Some(*n))
                    .await
                    .unwrap();
            }
            ids.push(id);
        }
        let offers: Vec<_> = ids
            .iter()
            .zip(products)
            .map(|(id, (_, price, _))| (*id, *price))
            .collect();
        let c = self.w.catalog(&p, "Le panier", &offers).await;
        self.w
            .join(self.admin, self.market, &p, c, &[self.sale])
            .await;
        (p, c, ids)
    }

    /// Into the order period (it opens a week before the sale).
    async fn open(&self) {
        self.w
            .advance_to(Utc.with_ymd_and_hms(2026, 3, 6, 9, 0, 0).unwrap())
            .await;
    }

    async fn order(
        &self,
        customer: Actor,
        lines: &[(CatalogId, ProductId, i64)],
    ) -> Result<etal_app::Done<etal_app::order::PlacedOrder>, AppError> {
        let lines: Vec<_> = lines
            .iter()
            .map(|(c, p, q)| LineRequest {
                catalog: *c,
                product: *p,
                quantity: *q,
            })
            .collect();
        self.w
            .app
            .place_order(
                &Ctx::new(customer),
                self.sale,
                &lines,
                DeliveryRequest::PickUp,
            )
            .await
    }

    async fn available(&self, product: ProductId) -> Option<i64> {
        self.w
            .app
            .load::<Stock>(product)
            .await
            .unwrap()
            .0
            .available()
    }
}

/// R-ORD-1, R-ORD-2: one order across producers, one number unique in the market, one payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_orders_from_two_producers_with_one_number_and_one_online_payment() {
    let s = setup(PaymentMode::Online, false).await;
    let (_, c1, p1) = s
        .seller(PlanKind::Pro, &[("Miel 500 g", "8.50", Some(10))])
        .await;
    let (_, c2, p2) = s
        .seller(PlanKind::Pro, &[("Pain de campagne", "4.20", None)])
        .await;
    s.open().await;
    let customer = actor(Role::Customer);
    let placed = s
        .order(customer, &[(c1, p1[0], 2), (c2, p2[0], 3)])
        .await
        .unwrap()
        .value;
    assert_eq!(placed.total, money("29.60"));
    assert_eq!(placed.number, "1-001");
    let (order, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert_eq!(
        order.paid(),
        money("29.60"),
        "charged once, online, for everything"
    );
    assert_eq!(order.payments().len(), 1);
    assert_eq!(s.available(p1[0]).await, Some(8));
    let second = s
        .order(actor(Role::Customer), &[(c2, p2[0], 1)])
        .await
        .unwrap()
        .value;
    assert_eq!(second.number, "1-002");
    // One order per customer per sale.
    let again = s.order(customer, &[(c2, p2[0], 1)]).await.unwrap_err();
    assert_eq!(again.code(), "CUSTOMER_ALREADY_ORDERED", "{again}");
}

/// R-STK-3, R-ORD-3: all or nothing; the error names each refused line and why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_with_a_short_line_is_refused_whole_naming_the_line() {
    let s = setup(PaymentMode::OnSite, false).await;
    let (_, c, p) = s
        .seller(
            PlanKind::Pro,
            &[
                ("Miel 500 g", "8.50", Some(2)),
                ("Confiture", "4.00", Some(10)),
            ],
        )
        .await;
    s.open().await;
    let before = s.w.event_count().await;
    let err = s
        .order(actor(Role::Customer), &[(c, p[1], 3), (c, p[0], 5)])
        .await
        .unwrap_err();
    match &err {
        AppError::OrderRefused { lines } => {
            assert_eq!(lines.len(), 1);
            assert_eq!(lines[0].line, 1);
            assert_eq!(lines[0].code, "STOCK_EXHAUSTED");
            assert_eq!(lines[0].message, "Miel 500 g: only 2 left");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        s.available(p[1]).await,
        Some(10),
        "the other line's reservation was released"
    );
    assert_eq!(s.available(p[0]).await, Some(2));
    let (sale, _) =
        s.w.app
            .load::<etal_domain::sale::Sale>(s.sale)
            .await
            .unwrap();
    assert!(sale.orders().is_empty(), "no order attached");
    let orders: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE aggregate_type = 'order'")
            .fetch_one(&s.w.db.pool)
            .await
            .unwrap();
    assert_eq!(orders, 0);
    // Design property 4 (one flow, one commit): a refused order writes nothing at all, not
    // reservations and their releases.
    assert_eq!(s.w.event_count().await, before);
}

/// R-ACC-4: the Discovery cap refuses the line that would pass it, naming the cap and what is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_discovery_cap_refuses_an_order_that_would_pass_it() {
    let s = setup(PaymentMode::OnSite, false).await;
    let (_, c, p) = s
        .seller(PlanKind::Discovery, &[("Agneau", "250.00", None)])
        .await;
    s.open().await;
    s.order(actor(Role::Customer), &[(c, p[0], 3)])
        .await
        .unwrap();
    let err = s
        .order(actor(Role::Customer), &[(c, p[0], 2)])
        .await
        .unwrap_err();
    match &err {
        AppError::OrderRefused { lines } => {
            assert_eq!(lines[0].code, "CAP_EXCEEDED");
            assert!(
                lines[0].message.contains("1000.00") && lines[0].message.contains("250.00"),
                "{}",
                lines[0].message
            );
        }
        other => panic!("expected the cap, got {other:?}"),
    }
    s.order(actor(Role::Customer), &[(c, p[0], 1)])
        .await
        .expect("exactly at the cap is fine");
}

/// R-ACC-4: sales in AMAP markets never count against the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amap_sales_never_count_against_the_cap() {
    let s = setup(PaymentMode::OnSite, true).await;
    let (_, c, p) = s
        .seller(PlanKind::Discovery, &[("Agneau", "600.00", None)])
        .await;
    s.open().await;
    s.order(actor(Role::Customer), &[(c, p[0], 2)])
        .await
        .unwrap();
    s.order(actor(Role::Customer), &[(c, p[0], 2)])
        .await
        .unwrap();
}

/// R-ORD-3: orders outside the period are refused, with a code saying which side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_before_the_period_opens_or_after_it_closes_are_refused() {
    let s = setup(PaymentMode::OnSite, false).await;
    let (_, c, p) = s.seller(PlanKind::Pro, &[("Oeufs x6", "3.20", None)]).await;
    let err = s
        .order(actor(Role::Customer), &[(c, p[0], 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::OrderRefused { lines } if lines[0].code == "ORDER_PERIOD_NOT_OPEN"),
        "{err:?}"
    );
    s.open().await;
    s.order(actor(Role::Customer), &[(c, p[0], 1)])
        .await
        .unwrap();
    s.w.advance_to(Utc.with_ymd_and_hms(2026, 3, 10, 18, 0, 0).unwrap())
        .await;
    let err = s
        .order(actor(Role::Customer), &[(c, p[0], 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::OrderRefused { lines } if lines[0].code == "ORDER_PERIOD_CLOSED"),
        "{err:?}"
    );
}

/// R-ORD-4, R-STK-2: a shortage lowers the line, the stock follows, the online payment is
/// refunded the difference once; a weighing sets the amount of a variable-weight line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shortage_is_refunded_once_and_a_weighing_sets_the_amount() {
    let s = setup(PaymentMode::Online, false).await;
    let p = s.w.producer(PlanKind::Pro).await;
    let eggs =
        s.w.product(&p, "Oeufs x6", "3.20", VatRate::Reduced5_5)
            .await;
    s.w.app
        .set_stock(&p.ctx(), p.id, eggs, Some(20))
        .await
        .unwrap();
    let lamb =
        s.w.product_with(
            &p,
            "Gigot d'agneau",
            "24.00",
            VatRate::Reduced5_5,
            Some(Decimal::new(15, 1)),
            None,
        )
        .await;
    let c =
        s.w.catalog(&p, "Viandes", &[(eggs, "3.20"), (lamb, "24.00")])
            .await;
    s.w.join(s.admin, s.market, &p, c, &[s.sale]).await;
    s.open().await;
    let placed = s
        .order(actor(Role::Customer), &[(c, eggs, 5), (c, lamb, 2)])
        .await
        .unwrap()
        .value;
    // 5 x 3.20 + 2 x 1.5 kg x 24.00
    assert_eq!(placed.total, money("88.00"));
    s.w.advance_to(Utc.with_ymd_and_hms(2026, 3, 10, 18, 0, 0).unwrap())
        .await;

    s.w.app
        .adjust_quantity(&p.ctx(), placed.order, 0, 3)
        .await
        .unwrap();
    let (order, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert_eq!(order.total(), money("81.60"));
    assert_eq!(
        order.refunded(),
        money("6.40"),
        "the difference went back to the card"
    );
    assert_eq!(order.refund_owed(), money("0.00"));
    assert_eq!(
        s.available(eggs).await,
        Some(17),
        "the reservation follows the shortage"
    );

    // Bulk weighing: 2.850 kg actual for the two legs.
    let results =
        s.w.app
            .record_weights(&p.ctx(), &[(placed.order, 1, Decimal::new(2850, 3))])
            .await;
    assert!(results[0].is_ok(), "{:?}", results[0]);
    let (order, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert_eq!(
        order.total(),
        money("78.00"),
        "3 x 3.20 + 2.850 kg x 24.00 = 9.60 + 68.40"
    );
    assert_eq!(order.refunded(), money("10.00"));
    // Replaying the same weighing changes nothing and refunds nothing more.
    s.w.app
        .record_weight(&p.ctx(), placed.order, 1, Decimal::new(2850, 3))
        .await
        .ok();
    let (again, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert_eq!(
        again.refunded(),
        money("10.00"),
        "nothing is refunded twice"
    );
}

/// R-ORD-5, R-SAL-4: a producer cannot withdraw while orders hold lines for the catalog; after
/// the customer cancels (refunded in full), the withdrawal is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawal_is_refused_with_orders_and_allowed_after_their_cancellation() {
    let s = setup(PaymentMode::Online, false).await;
    let (p, c, ids) = s
        .seller(PlanKind::Pro, &[("Tomme", "12.00", Some(5))])
        .await;
    s.open().await;
    let customer = actor(Role::Customer);
    let placed = s.order(customer, &[(c, ids[0], 2)]).await.unwrap().value;
    let err = s.w.app.withdraw(&p.ctx(), s.sale, c).await.unwrap_err();
    assert_eq!(err.code(), "SALE_HAS_ORDERS", "{err}");
    // Another customer may not cancel it.
    let err =
        s.w.app
            .cancel_order(&Ctx::new(actor(Role::Customer)), placed.order)
            .await
            .unwrap_err();
    assert_eq!(err.code(), "NOT_ALLOWED_TO_CANCEL", "{err}");
    s.w.app
        .cancel_order(&Ctx::new(customer), placed.order)
        .await
        .unwrap();
    let (order, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert!(order.is_cancelled());
    assert_eq!(
        order.refunded(),
        money("24.00"),
        "full refund of the online payment"
    );
    assert_eq!(s.available(ids[0]).await, Some(5), "units back in stock");
    s.w.app
        .withdraw(&p.ctx(), s.sale, c)
        .await
        .expect("allowed once no order holds lines");
}

/// R-STK-3 under concurrency: 200 customers in two markets race for the last 20 units of one
/// product; exactly 20 units are sold, the stock never goes negative, everyone else is told.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_customers_in_two_markets_race_for_the_last_twenty_units() {
    let s = setup(PaymentMode::OnSite, false).await;
    let thu = NaiveDate::from_ymd_opt(2026, 3, 12).unwrap();
    let (market2, admin2) =
        s.w.market(
            "Mussidan",
            Weekday::Thu,
            (17, 30),
            (18, 30),
            1,
            thu,
            PaymentMode::OnSite,
            false,
        )
        .await;
    let sale2 =
        s.w.app
            .generate_sales(&Ctx::new(admin2), market2, thu, thu)
            .await
            .unwrap()
            .value[0];
    let (p, c, ids) = s
        .seller(PlanKind::Pro, &[("Miel 500 g", "8.50", Some(20))])
        .await;
    s.w.join(admin2, market2, &p, c, &[sale2]).await;
    s.open().await;
    let product = ids[0];
    let mut tasks = Vec::new();
    for i in 0..200 {
        let app = s.w.app.clone();
        let sale = if i % 2 == 0 { s.sale } else { sale2 };
        tasks.push(tokio::spawn(async move {
            let lines = [LineRequest {
                catalog: c,
                product,
                quantity: 1,
            }];
            app.place_order(
                &Ctx::new(actor(Role::Customer)),
                sale,
                &lines,
                DeliveryRequest::PickUp,
            )
            .await
        }));
    }
    let mut sold = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => sold += 1,
            Err(AppError::OrderRefused { lines }) => {
                assert_eq!(lines[0].code, "STOCK_EXHAUSTED");
                refused += 1;
            }
            Err(other) => panic!("every other customer gets the stock error, got {other:?}"),
        }
    }
    assert_eq!((sold, refused), (20, 180));
    let (stock, _) = s.w.app.load::<Stock>(product).await.unwrap();
    assert_eq!(stock.available(), Some(0));
    assert_eq!(stock.ordered(), 20);
    // Replaying the stock's history never shows a negative availability.
    let mut reservations_seen = 0;
    for e in etal_store::log::EventLog::stream(&s.w.db.pool, "stock", &product.to_string())
        .await
        .unwrap()
    {
        if e.event_type == "StockReserved" {
            let available = e.payload["StockReserved"]["available"]
                .as_i64()
                .expect("reservations record what is left");
            assert!(
                available >= 0,
                "available went negative at event {}",
                e.sequence
            );
            reservations_seen += 1;
        }
    }
    assert_eq!(reservations_seen, 20);
    let orders: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'order' AND event_type = 'OrderPlaced'",
    )
    .fetch_one(&s.w.db.pool)
    .await
    .unwrap();
    assert_eq!(orders, 20);
}

/// A reservation never confirmed (the process died mid-order) expires on schedule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reservation_never_confirmed_expires() {
    let s = setup(PaymentMode::OnSite, false).await;
    let (_, _, ids) = s
        .seller(PlanKind::Pro, &[("Miel 500 g", "8.50", Some(3))])
        .await;
    s.open().await;
    let order = etal_domain::ids::OrderId::new();
    let expires_at = s.w.now() + chrono::Duration::minutes(15);
    s.w.app
        .exec::<Stock>(
            ids[0],
            etal_domain::stock::StockCommand::Reserve {
                product: ids[0],
                reservation: order,
                sale: s.sale,
                quantity: 3,
                expires_at,
            },
            &Ctx::system().plain(),
        )
        .await
        .unwrap();
    s.w.app
        .schedule_for_test(
            "expire_reservations",
            &format!("expire:{}:{order}", ids[0]),
            serde_json::json!({"product": ids[0]}),
            expires_at,
        )
        .await;
    assert_eq!(s.available(ids[0]).await, Some(0));
    s.w.advance_to(expires_at + chrono::Duration::seconds(1))
        .await;
    assert_eq!(s.available(ids[0]).await, Some(3));
}

/// Bad input gets a typed error and writes nothing: zero and negative quantities, unknown ids,
/// a collaborator of one account acting on another, a wrong role.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_typed_error_and_writes_nothing() {
    let s = setup(PaymentMode::OnSite, false).await;
    let (p, c, ids) = s
        .seller(PlanKind::Pro, &[("Miel 500 g", "8.50", Some(3))])
        .await;
    let other = s.w.producer(PlanKind::Pro).await;
    s.open().await;
    let before = s.w.event_count().await;
    let customer = actor(Role::Customer);
    for q in [0, -1] {
        let err = s.order(customer, &[(c, ids[0], q)]).await.unwrap_err();
        assert!(
            matches!(&err, AppError::OrderRefused { lines } if lines[0].code == "QUANTITY_NOT_POSITIVE"),
            "{err:?}"
        );
    }
    let err = s
        .order(customer, &[(c, ProductId::new(), 1)])
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::OrderRefused { lines } if lines[0].code == "UNKNOWN_OFFER"),
        "{err:?}"
    );
    let err = s
        .order(customer, &[(CatalogId::new(), ids[0], 1)])
        .await
        .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let err =
        s.w.app
            .place_order(
                &Ctx::new(customer),
                SaleId::new(),
                &[LineRequest {
                    catalog: c,
                    product: ids[0],
                    quantity: 1,
                }],
                DeliveryRequest::PickUp,
            )
            .await
            .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    // A collaborator of `other` acting on `p`'s account and catalog.
    let helper = actor(Role::Producer);
    s.w.app
        .grant_access(&other.ctx(), other.id, helper.user)
        .await
        .unwrap();
    let before_foreign = s.w.event_count().await;
    let err =
        s.w.app
            .set_stock(&Ctx::new(helper), p.id, ids[0], Some(100))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    let err =
        s.w.app
            .set_offer_price(&Ctx::new(helper), c, ids[0], money("1.00"))
            .await
            .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    // A producer cannot place orders; a customer cannot open a producer account.
    let err = s.order(p.actor, &[(c, ids[0], 1)]).await.unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    let err =
        s.w.app
            .open_account(&Ctx::new(customer), "v2", PlanKind::Pro)
            .await
            .unwrap_err();
    assert_eq!(err.code(), "FORBIDDEN");
    // Three decimals never become money.
    assert!("8.505".parse::<etal_domain::Money>().is_err());
    assert_eq!(
        s.w.event_count().await,
        before_foreign,
        "no refused command wrote anything"
    );
    assert_eq!(before_foreign, before + 1, "only the grant was written");
}

/// R-ORD-6, R-ACC-6: home delivery adds a fee line and refers to the customer's address by an
/// opaque reference; erasing the customer makes name and address unrecoverable while the order
/// and its money stay whole, and no event ever held them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_delivery_refers_to_an_address_that_erasure_wipes_while_the_order_stays_whole() {
    let s = setup(PaymentMode::Online, false).await;
    let (p, c, ids) = s
        .seller(PlanKind::Pro, &[("Panier de légumes", "15.00", None)])
        .await;
    // R-ORD-6: the producer delivers this catalog's lines for 5.00 (free from 50.00).
    s.w.app
        .set_order_terms(
            &p.ctx(),
            c,
            etal_domain::catalog::OrderTerms {
                delivery: Some(etal_domain::catalog::DeliveryOffer {
                    fee: money("5.00"),
                    free_above: Some(money("50.00")),
                    minimum: None,
                }),
                minimum_order: None,
            },
        )
        .await
        .unwrap();
    s.open().await;
    let customer = actor(Role::Customer);
    let name = "Jeanne Testeuse";
    let address = "12 rue des Tilleuls, 16130 Segonzac";
    s.w.app
        .register_person(
            customer.user,
            &etal_app::people::PersonalData {
                display_name: name.into(),
                email: Some("jeanne@example.org".into()),
                phone: None,
            },
        )
        .await
        .unwrap();
    let address_ref = s.w.app.add_address(customer.user, address).await.unwrap();
    // Someone else's address cannot be used.
    let err =
        s.w.app
            .place_order(
                &Ctx::new(actor(Role::Customer)),
                s.sale,
                &[LineRequest {
                    catalog: c,
                    product: ids[0],
                    quantity: 1,
                }],
                DeliveryRequest::Home { address_ref },
            )
            .await
            .unwrap_err();
    assert_eq!(err.code(), "NOT_FOUND");
    let placed =
        s.w.app
            .place_order(
                &Ctx::new(customer),
                s.sale,
                &[LineRequest {
                    catalog: c,
                    product: ids[0],
                    quantity: 2,
                }],
                DeliveryRequest::Home { address_ref },
            )
            .await
            .unwrap()
            .value;
    assert_eq!(
        placed.total,
        money("35.00"),
        "two baskets and the delivery fee"
    );
    assert_eq!(s.w.app.display_name(customer.user).await.unwrap(), name);

    s.w.app.erase_person(customer.user).await.unwrap();
    assert_eq!(
        s.w.app.display_name(customer.user).await.unwrap(),
        "erased customer"
    );
    let leaked: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE payload::text LIKE '%Jeanne%' OR payload::text LIKE '%Tilleuls%' \
         OR metadata::text LIKE '%Jeanne%' OR payload::text LIKE '%example.org%'",
    )
    .fetch_one(&s.w.db.pool)
    .await
    .unwrap();
    assert_eq!(leaked, 0, "no event ever held personal data");
    let kept: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM people WHERE display_name IS NOT NULL OR email IS NOT NULL) \
              + (SELECT count(*) FROM addresses WHERE address IS NOT NULL)",
    )
    .fetch_one(&s.w.db.pool)
    .await
    .unwrap();
    assert_eq!(kept, 0, "personal data is gone");
    let (order, _) = s.w.app.load::<Order>(placed.order).await.unwrap();
    assert_eq!(
        (order.total(), order.paid()),
        (money("35.00"), money("35.00")),
        "the money history is whole"
    );
}
