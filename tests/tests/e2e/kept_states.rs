//! Kept stream states (app/src/flow.rs): a process keeps the states its flows decided on and
//! reads only the events written after them. A writer in another process (a second `etal
//! serve` on the same database) must never make a decision stale: the next order of the first
//! process sees the other's stock change and orders at once, without a lost race, and two
//! processes ordering from one stock together sell it exactly (R-STK-3).

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{App, AppError, Ctx};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::stock::Stock;
use etal_domain::{Role, VatRate};
use etal_tests::world::{actor, Producer, World};

struct Setup {
    w: World,
    /// A second process on the same database (its own kept states, its own turns).
    other: App,
    sale: SaleId,
    producer: Producer,
    catalog: CatalogId,
    product: ProductId,
}

async fn setup(stock: i64) -> Setup {
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
            PaymentMode::Online,
            false,
        )
        .await;
    let sale = w
        .app
        .generate_sales(&Ctx::new(admin), market, wed, wed)
        .await
        .unwrap()
        .value[0];
    let producer = w.producer(PlanKind::Pro).await;
    let product = w
        .product(&producer, "Miel 500 g", "8.50", VatRate::Reduced5_5)
        .await;
    w.app
        .set_stock(&producer.ctx(), producer.id, product, Some(stock))
        .await
        .unwrap();
    let catalog = w
        .catalog(&producer, "Le panier", &[(product, "8.50")])
        .await;
    w.join(admin, market, &producer, catalog, &[sale]).await;
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 6, 9, 0, 0).unwrap())
        .await;
    let other = App::new(
        w.db.pool.clone(),
        Arc::new(w.clock.clone()),
        etal_tests::world::plans(),
        w.payments.clone(),
    );
    Setup {
        w,
        other,
        sale,
        producer,
        catalog,
        product,
    }
}

impl Setup {
    async fn order(&self, app: &App, quantity: i64) -> Result<(), AppError> {
        app.place_order(
            &Ctx::new(actor(Role::Customer)),
            self.sale,
            &[LineRequest {
                catalog: self.catalog,
                product: self.product,
                quantity,
            }],
            DeliveryRequest::PickUp,
        )
        .await
        .map(|_| ())
    }

    async fn stock(&self) -> Stock {
        self.w.app.load::<Stock>(self.product).await.unwrap().0
    }

    /// Orders placed.
    async fn orders(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events WHERE event_type = 'OrderPlaced'")
            .fetch_one(&self.w.db.pool)
            .await
            .unwrap()
    }
}

/// R-STK-3, R-STK-5: the first process kept the stock's state after its order; the other
/// process sets the stock lower and orders; the first process's next decisions are on the
/// stored stock (refused beyond it, accepted within it), never on what it kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_changed_by_another_process_is_what_the_next_order_decides_on() {
    let s = setup(10).await;
    s.order(&s.w.app, 3).await.unwrap();
    assert!(s.w.app.locks.kept() > 0, "the first process keeps states");

    // Another process: the producer lowers the stock to 6 (3 ordered, 3 left), a customer
    // orders 2 of them.
    s.other
        .set_stock(&s.producer.ctx(), s.producer.id, s.product, Some(6))
        .await
        .unwrap();
    s.order(&s.other, 2).await.unwrap();

    // The first process kept "10 real, 3 ordered": 4 more would fit there, not in the store.
    let err = s.order(&s.w.app, 4).await.unwrap_err();
    assert!(
        matches!(&err, AppError::OrderRefused { lines } if lines[0].code == "STOCK_EXHAUSTED"),
        "{err:?}"
    );
    // The last unit is sold at once.
    s.order(&s.w.app, 1).await.unwrap();
    let stock = s.stock().await;
    assert_eq!(stock.real(), Some(6));
    assert_eq!(stock.available(), Some(0));
    assert_eq!(s.orders().await, 3);
}

/// R-STK-3: 40 customers, half on each process, for 15 units: exactly 15 sold, the stock's
/// ordered count is the live orders' units, nothing available below zero.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_ordering_from_one_stock_sell_it_exactly() {
    let s = Arc::new(setup(15).await);
    let mut tasks = Vec::new();
    for i in 0..40 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let app = if i % 2 == 0 { &s.w.app } else { &s.other };
            s.order(app, 1).await
        }));
    }
    let mut sold = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => sold += 1,
            Err(AppError::OrderRefused { lines }) => {
                assert_eq!(lines[0].code, "STOCK_EXHAUSTED")
            }
            Err(AppError::Retryable(_)) => {}
            Err(e) => panic!("unexpected answer: {e:?}"),
        }
    }
    assert_eq!(sold, 15);
    let stock = s.stock().await;
    assert_eq!(stock.available(), Some(0));
    assert_eq!(stock.ordered(), 15);
    assert_eq!(s.orders().await, 15);
}
