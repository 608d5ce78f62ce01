//! `DEMO=1 make run`: seeds the worked example of shared/domain.md (markets with their slots,
//! producers with catalogs, sales for the next fortnight, customers with invented names, orders)
//! so a newcomer can query real-looking recaps at once. Runs only on an empty event store.

use chrono::{Datelike, Duration, NaiveTime, Weekday};
use etal_domain::account::ProductDetails;
use etal_domain::calendar::{next_weekday_after, paris_date};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, MarketId, ProductId, SaleId, UserId};
use etal_domain::market::{PaymentMode, Slot, Visibility};
use etal_domain::{Actor, Money, Role, VatRate};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use etal_app::market::{NewMarket, PeriodRule};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::people::PersonalData;
use etal_app::{App, AppError, Ctx};

/// Who the demo created, to mint tokens for.
#[derive(Debug, Default)]
pub struct Demo {
    pub market_admins: Vec<(String, Actor)>,
    pub producers: Vec<(String, Actor)>,
    pub customers: Vec<(String, Actor)>,
    pub sales: Vec<SaleId>,
    pub orders: usize,
}

const FARMS: [(&str, &str, &str, &str); 14] = [
    (
        "Rucher des Coteaux",
        "Miel de printemps 500 g",
        "8.50",
        "5.5",
    ),
    (
        "Fournil de la Dronne",
        "Pain de campagne 1 kg",
        "4.20",
        "5.5",
    ),
    ("Ferme des Deux Chênes", "Oeufs plein air x6", "3.20", "5.5"),
    ("Bergerie du Causse", "Tomme de brebis 300 g", "7.90", "5.5"),
    ("Jardins de l'Isle", "Panier de légumes", "15.00", "5.5"),
    ("Vergers de Montpon", "Jus de pomme 1 L", "3.60", "5.5"),
    ("Domaine des Graves", "Vin rouge 75 cl", "9.90", "20"),
    (
        "Confitures de Léa",
        "Confiture de figues 350 g",
        "5.40",
        "5.5",
    ),
    (
        "Volailles du Landais",
        "Poulet fermier (par pièce)",
        "13.00",
        "5.5",
    ),
    ("Chèvrerie des Bruyères", "Crottin de chèvre", "3.10", "5.5"),
    ("Moulin de Saint-Front", "Farine T80 1 kg", "2.85", "5.5"),
    ("Noyeraie du Périgord", "Noix 500 g", "6.75", "5.5"),
    (
        "Savonnerie des Ânes",
        "Savon au lait d'ânesse",
        "5.95",
        "20",
    ),
    ("Champignons de la Cave", "Pleurotes 250 g", "4.50", "5.5"),
];

const FIRST: [&str; 12] = [
    "Camille", "Louis", "Chloé", "Hugo", "Léa", "Nathan", "Manon", "Jules", "Inès", "Gabriel",
    "Zoé", "Arthur",
];
const LAST: [&str; 10] = [
    "Martin", "Bernard", "Petit", "Durand", "Leroy", "Moreau", "Simon", "Laurent", "Michel",
    "Garcia",
];

fn money(s: &str) -> Money {
    s.parse().unwrap_or(Money::ZERO)
}

/// Seeds the demo when the event store is empty; returns what it created (None: not empty).
pub async fn seed(app: &App) -> Result<Option<Demo>, AppError> {
    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&app.pool)
        .await?;
    if existing > 0 {
        return Ok(None);
    }
    let mut demo = Demo::default();
    let mut rng = StdRng::seed_from_u64(2026);
    let today = paris_date(app.now());
    let (from, to) = (today, today + Duration::days(14));
    let slot = |weekday: Weekday, start: (u32, u32), end: (u32, u32), every_weeks: u32| Slot {
        weekday,
        start: NaiveTime::from_hms_opt(start.0, start.1, 0).unwrap_or_default(),
        end: NaiveTime::from_hms_opt(end.0, end.1, 0).unwrap_or_default(),
        every_weeks,
        anchor: if today.weekday() == weekday {
            today
        } else {
            next_weekday_after(today, weekday)
        },
    };
    let markets_spec = [
        (
            "La Cagette de Segonzac",
            slot(Weekday::Wed, (18, 0), (19, 0), 1),
            PaymentMode::Online,
        ),
        (
            "La Cagette de Saint Medard de Mussidan",
            slot(Weekday::Fri, (17, 30), (18, 30), 2),
            PaymentMode::OnSite,
        ),
        (
            "CAGETTE DE LAKANAL",
            slot(Weekday::Tue, (17, 0), (18, 30), 1),
            PaymentMode::Online,
        ),
    ];
    let mut markets: Vec<(MarketId, Actor)> = Vec::new();
    for (i, (name, slot, payment_mode)) in markets_spec.into_iter().enumerate() {
        let admin = Actor::new(UserId::new(), Role::MarketAdmin);
        app.register_person(
            admin.user,
            &PersonalData {
                display_name: format!("{} {}", FIRST[i], LAST[i]),
                // The back office's log-in links go here (`ETAL_MAIL_DIR` under `make run`).
                email: Some(format!("marche{}@demo.etal.test", i + 1)),
                ..Default::default()
            },
        )
        .await?;
        let market = app
            .create_market(
                &Ctx::new(admin),
                NewMarket {
                    name: name.into(),
                    place: format!("Place du marché, {name}"),
                    slots: vec![slot],
                    payment_mode,
                    visibility: Visibility::Public,
                    amap: false,
                },
            )
            .await?
            .value;
        let sales = app
            .generate_sales(&Ctx::new(admin), market, from, to)
            .await?
            .value;
        demo.sales.extend(&sales);
        demo.market_admins.push((name.to_string(), admin));
        markets.push((market, admin));
    }
    let mut offers: Vec<(CatalogId, ProductId)> = Vec::new();
    for (n, (farm, product, price, vat)) in FARMS.into_iter().enumerate() {
        let owner = Actor::new(UserId::new(), Role::Producer);
        app.register_person(
            owner.user,
            &PersonalData {
                display_name: format!("{farm} (exploitant)"),
                email: Some(format!("producteur{}@demo.etal.test", n + 1)),
                ..Default::default()
            },
        )
        .await?;
        let ctx = Ctx::new(owner);
        let producer = app.open_account(&ctx, "v2", PlanKind::Pro).await?.value;
        let product_id = app
            .add_product(
                &ctx,
                producer,
                ProductDetails {
                    name: product.into(),
                    unit: "piece".into(),
                    price_incl_vat: money(price),
                    vat: vat.parse::<VatRate>().unwrap_or_default(),
                    variable_weight: false,
                    estimated_weight_kg: None,
                    packaging_multiple: None,
                },
            )
            .await?
            .value;
        app.set_stock(&ctx, producer, product_id, Some(60)).await?;
        let catalog = app
            .create_catalog(&ctx, producer, &format!("{farm}: catalogue"))
            .await?
            .value;
        app.add_offer(&ctx, catalog, product_id, money(price))
            .await?;
        for (market, admin) in &markets {
            app.link_catalog(&Ctx::new(*admin), *market, catalog)
                .await?;
            let sales = app.market_sales(*market, from, to).await?;
            app.participate(&ctx, catalog, &sales, PeriodRule::default())
                .await?;
        }
        offers.push((catalog, product_id));
        demo.producers.push((farm.to_string(), owner));
    }
    // Open the periods that are already due.
    app.scheduler().run_due().await.map_err(AppError::from)?;
    for c in 0..60 {
        let customer = Actor::new(UserId::new(), Role::Customer);
        let name = format!(
            "{} {}",
            FIRST[c % FIRST.len()],
            LAST[(c / FIRST.len()) % LAST.len()]
        );
        app.register_person(
            customer.user,
            &PersonalData {
                display_name: name.clone(),
                ..Default::default()
            },
        )
        .await?;
        demo.customers.push((name, customer));
        let sale = demo.sales[c % demo.sales.len()];
        let mut lines = Vec::new();
        for _ in 0..rng.gen_range(1..=4) {
            let (catalog, product) = offers[rng.gen_range(0..offers.len())];
            if lines.iter().all(|l: &LineRequest| l.product != product) {
                lines.push(LineRequest {
                    catalog,
                    product,
                    quantity: rng.gen_range(1..=3),
                });
            }
        }
        // Sales whose period is not open yet refuse: that is part of the demo too.
        if app
            .place_order(&Ctx::new(customer), sale, &lines, DeliveryRequest::PickUp)
            .await
            .is_ok()
        {
            demo.orders += 1;
        }
    }
    Ok(Some(demo))
}
