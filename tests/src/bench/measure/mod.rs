//! The measurements, one module each. Each returns its numbers as a markdown section and goals.

pub mod history;
pub mod hot_sale;
pub mod lag;
pub mod queries;
pub mod replay;
pub mod throughput;

use chrono::{NaiveDate, TimeZone, Utc};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{AppError, Ctx};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::{Role, VatRate};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::Rng;

use crate::world::{actor, World};

/// A sale and, per catalog taking part, its products.
pub type OpenSale = (SaleId, Vec<(CatalogId, Vec<ProductId>)>);

/// Open sales, prepared through the real flows, for measurements that place orders.
pub struct Fixture {
    pub world: World,
    pub sales: Vec<OpenSale>,
}

/// `markets` markets with one sale each (Wednesday 4 March 2026), `producers_per_market`
/// producers with `products` unlimited products each, periods open (clock: Monday 2 March).
pub async fn fixture(markets: usize, producers_per_market: usize, products: usize) -> Fixture {
    fixture_at(
        Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap(),
        NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
        markets,
        producers_per_market,
        products,
    )
    .await
}

/// The same with the world's clock at `now` and the sales on `day` (its weekday): with the
/// real time and a day a few days ahead, the periods are open for a server on the real clock.
pub async fn fixture_at(
    now: chrono::DateTime<Utc>,
    day: NaiveDate,
    markets: usize,
    producers_per_market: usize,
    products: usize,
) -> Fixture {
    let world = World::at(now).await;
    let wednesday = day;
    let weekday = chrono::Datelike::weekday(&day);
    let mut sales = Vec::new();
    for m in 0..markets {
        let (market, admin) = world
            .market(
                &format!("Marché {m}"),
                weekday,
                (18, 0),
                (19, 0),
                1,
                wednesday,
                if m % 2 == 0 {
                    PaymentMode::Online
                } else {
                    PaymentMode::OnSite
                },
                false,
            )
            .await;
        let sale = world
            .app
            .generate_sales(&Ctx::new(admin), market, wednesday, wednesday)
            .await
            .expect("generate sales")
            .value[0];
        let mut catalogs = Vec::new();
        for p in 0..producers_per_market {
            let producer = world.producer(PlanKind::Pro).await;
            let mut offers = Vec::new();
            for i in 0..products {
                let price = format!("{}.{:02}", 2 + (i % 6), (p * 7 + i * 13) % 100);
                offers.push(
                    world
                        .product(
                            &producer,
                            &format!("Produit {p}-{i}"),
                            &price,
                            VatRate::Reduced5_5,
                        )
                        .await,
                );
            }
            let priced: Vec<(ProductId, String)> =
                offers.iter().map(|o| (*o, "3.50".to_string())).collect();
            let refs: Vec<(ProductId, &str)> =
                priced.iter().map(|(o, p)| (*o, p.as_str())).collect();
            let catalog = world.catalog(&producer, "Catalogue", &refs).await;
            world.join(admin, market, &producer, catalog, &[sale]).await;
            catalogs.push((catalog, offers));
        }
        sales.push((sale, catalogs));
    }
    let t = world.now() + chrono::Duration::minutes(1);
    world.advance_to(t).await;
    Fixture { world, sales }
}

impl Fixture {
    /// One order by a new customer on a random sale: 3 to 5 lines of 1 unit.
    pub async fn random_order(
        &self,
        rng: &mut StdRng,
    ) -> Result<etal_app::Done<etal_app::order::PlacedOrder>, AppError> {
        self.random_order_of(rng, 3..=5).await
    }

    /// One order by a new customer on a random sale: `lines` lines (a random count in the
    /// range) of 1 unit, each of a different product (at most the sale's products).
    pub async fn random_order_of(
        &self,
        rng: &mut StdRng,
        lines: std::ops::RangeInclusive<usize>,
    ) -> Result<etal_app::Done<etal_app::order::PlacedOrder>, AppError> {
        self.order(rng, lines, None).await
    }

    /// [`Fixture::random_order`] with an idempotency key, as a client that retries safely sends
    /// (the order's commit then holds its idempotency record).
    pub async fn random_order_keyed(
        &self,
        rng: &mut StdRng,
        key: String,
    ) -> Result<etal_app::Done<etal_app::order::PlacedOrder>, AppError> {
        self.order(rng, 3..=5, Some(key)).await
    }

    async fn order(
        &self,
        rng: &mut StdRng,
        lines: std::ops::RangeInclusive<usize>,
        key: Option<String>,
    ) -> Result<etal_app::Done<etal_app::order::PlacedOrder>, AppError> {
        let (sale, catalogs) = self.sales.choose(rng).expect("sales");
        let products: usize = catalogs.iter().map(|(_, p)| p.len()).sum();
        let n = rng.gen_range(lines).min(products);
        let mut lines: Vec<LineRequest> = Vec::new();
        while lines.len() < n {
            let (catalog, products) = catalogs.choose(rng).expect("catalogs");
            let product = *products.choose(rng).expect("products");
            if lines.iter().any(|l| l.product == product) {
                continue;
            }
            lines.push(LineRequest {
                catalog: *catalog,
                product,
                quantity: 1,
            });
        }
        let mut ctx = Ctx::new(actor(Role::Customer));
        if let Some(key) = key {
            ctx = ctx.with_key(key);
        }
        self.world
            .app
            .place_order(&ctx, *sale, &lines, DeliveryRequest::PickUp)
            .await
    }
}

/// Whether an error is worth retrying (a client would).
pub fn retryable(e: &AppError) -> bool {
    matches!(e, AppError::Retryable(_))
}

/// The signing key of the servers the HTTP measurements start.
pub const BENCH_SECRET: &str = "etal-bench-secret-0123456789abcdef";

/// The environment of a benchmarked `etal serve`: tokens accepted, no rate limit in the way
/// (50 clients share a token), no scheduler (the fixtures' clocks are not the server's).
pub fn server_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("ETAL_JWT_SECRET", BENCH_SECRET),
        ("ETAL_RATE_LIMIT_PER_SECOND", "1000000"),
        ("ETAL_RATE_LIMIT_BURST", "1000000"),
        ("ETAL_SCHEDULER", "false"),
    ]
}

/// A token for a new user in `role`, signed with [`BENCH_SECRET`].
pub fn token(role: Role) -> String {
    let key = etal_api::auth::JwtKey::new(BENCH_SECRET.into()).expect("key");
    etal_api::auth::mint(
        &key,
        etal_domain::ids::UserId::new(),
        role,
        std::time::Duration::from_secs(24 * 3600),
    )
    .expect("token")
}
