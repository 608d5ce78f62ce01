//! A world to play the business in: the application over a test database, a fake clock, the
//! payment simulator, and helpers that build producers, markets and sales the way users do.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveTime, TimeZone, Utc, Weekday};
use etal_app::market::{NewMarket, PeriodRule};
use etal_app::{App, Ctx, Simulator};
use etal_domain::account::ProductDetails;
use etal_domain::config::{Config, PlanKind};
use etal_domain::ids::{CatalogId, MarketId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::{PaymentMode, Slot, Visibility};
use etal_domain::{Actor, FakeClock, Money, Role, VatRate};
use rust_decimal::Decimal;

use crate::TestDb;

pub struct World {
    pub db: TestDb,
    pub app: App,
    pub clock: FakeClock,
    pub payments: Arc<Simulator>,
}

/// A producer as the tests drive them.
#[derive(Debug, Clone, Copy)]
pub struct Producer {
    pub actor: Actor,
    pub id: ProducerId,
}

impl Producer {
    pub fn ctx(&self) -> Ctx {
        Ctx::new(self.actor)
    }
}

pub fn money(s: &str) -> Money {
    s.parse().expect("a valid amount")
}

pub fn actor(role: Role) -> Actor {
    Actor::new(UserId::new(), role)
}

pub fn plans() -> Config {
    Config::from_json(include_str!("../../config/plans.json")).expect("config/plans.json is valid")
}

impl World {
    /// A world whose clock reads `now`.
    pub async fn at(now: DateTime<Utc>) -> World {
        let db = TestDb::new(40).await;
        let clock = FakeClock::at(now);
        let payments = Arc::new(Simulator::new());
        let mut app = App::new(
            db.pool.clone(),
            Arc::new(clock.clone()),
            plans(),
            payments.clone(),
        );
        app.bus = app.bus.clone().with_max_attempts(40);
        World {
            db,
            app,
            clock,
            payments,
        }
    }

    /// Monday 2 March 2026, 08:00 UTC.
    pub async fn new() -> World {
        Self::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.app.now()
    }

    /// A producer with an account on `plan`.
    pub async fn producer(&self, plan: PlanKind) -> Producer {
        let actor = actor(Role::Producer);
        let id = self
            .app
            .open_account(&Ctx::new(actor), "v2", plan)
            .await
            .expect("open account")
            .value;
        Producer { actor, id }
    }

    /// A unit product.
    pub async fn product(&self, p: &Producer, name: &str, price: &str, vat: VatRate) -> ProductId {
        self.product_with(p, name, price, vat, None, None).await
    }

    /// A product with options: estimated weight (then priced per kg) and packaging multiple.
    pub async fn product_with(
        &self,
        p: &Producer,
        name: &str,
        price: &str,
        vat: VatRate,
        estimated_weight_kg: Option<Decimal>,
        packaging_multiple: Option<u32>,
    ) -> ProductId {
        self.app
            .add_product(
                &p.ctx(),
                p.id,
                ProductDetails {
                    name: name.into(),
                    unit: if estimated_weight_kg.is_some() {
                        "kg".into()
                    } else {
                        "piece".into()
                    },
                    price_incl_vat: money(price),
                    vat,
                    variable_weight: estimated_weight_kg.is_some(),
                    estimated_weight_kg,
                    packaging_multiple,
                },
            )
            .await
            .expect("add product")
            .value
    }

    /// A catalog offering each product at its account price.
    pub async fn catalog(
        &self,
        p: &Producer,
        name: &str,
        offers: &[(ProductId, &str)],
    ) -> CatalogId {
        let c = self
            .app
            .create_catalog(&p.ctx(), p.id, name)
            .await
            .expect("create catalog")
            .value;
        for (product, price) in offers {
            self.app
                .add_offer(&p.ctx(), c, *product, money(price))
                .await
                .expect("add offer");
        }
        c
    }

    /// A market with one weekly (or fortnightly) slot; returns its administrator too.
    #[allow(clippy::too_many_arguments)] // reads like the market card it builds
    pub async fn market(
        &self,
        name: &str,
        weekday: Weekday,
        start: (u32, u32),
        end: (u32, u32),
        every_weeks: u32,
        anchor: NaiveDate,
        payment_mode: PaymentMode,
        amap: bool,
    ) -> (MarketId, Actor) {
        let admin = actor(Role::MarketAdmin);
        let m = self
            .app
            .create_market(
                &Ctx::new(admin),
                NewMarket {
                    name: name.into(),
                    place: format!("Salle des fêtes, {name}"),
                    slots: vec![Slot {
                        weekday,
                        start: NaiveTime::from_hms_opt(start.0, start.1, 0).unwrap(),
                        end: NaiveTime::from_hms_opt(end.0, end.1, 0).unwrap(),
                        every_weeks,
                        anchor,
                    }],
                    payment_mode,
                    visibility: Visibility::Public,
                    amap,
                },
            )
            .await
            .expect("create market")
            .value;
        (m, admin)
    }

    /// Links the catalog and has it take part in the given sales with the default period.
    pub async fn join(
        &self,
        admin: Actor,
        market: MarketId,
        p: &Producer,
        catalog: CatalogId,
        sales: &[SaleId],
    ) {
        self.app
            .link_catalog(&Ctx::new(admin), market, catalog)
            .await
            .expect("link catalog");
        self.app
            .participate(&p.ctx(), catalog, sales, PeriodRule::default())
            .await
            .expect("participate");
    }

    /// Moves the clock to `t`, running every scheduled command at its due time on the way.
    pub async fn advance_to(&self, t: DateTime<Utc>) {
        let scheduler = self.app.scheduler();
        loop {
            let next: Option<DateTime<Utc>> = sqlx::query_scalar(
                "SELECT min(due_at) FROM scheduled_commands WHERE status = 'pending' AND due_at <= $1",
            )
            .bind(t)
            .fetch_one(&self.db.pool)
            .await
            .expect("next due");
            match next {
                Some(due) => {
                    if due > self.clock_now() {
                        self.clock.set(due);
                    }
                    let report = scheduler.run_due().await.expect("run scheduled commands");
                    assert_eq!(
                        report.failed,
                        0,
                        "a scheduled command failed: {:?}",
                        self.failures().await
                    );
                }
                None => {
                    self.clock.set(t);
                    return;
                }
            }
        }
    }

    fn clock_now(&self) -> DateTime<Utc> {
        use etal_domain::Clock;
        self.clock.now()
    }

    /// The reasons of failed scheduled commands.
    pub async fn failures(&self) -> Vec<(String, String)> {
        sqlx::query_as(
            "SELECT kind, coalesce(last_error, '') FROM scheduled_commands WHERE status = 'failed'",
        )
        .fetch_all(&self.db.pool)
        .await
        .unwrap_or_default()
    }

    /// How many events the store holds.
    pub async fn event_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&self.db.pool)
            .await
            .expect("count events")
    }
}
