//! A fortnight of the worked example of shared/domain.md, end to end against PostgreSQL:
//! La Cagette de Segonzac (every Wednesday 18:00-19:00, online payment) and La Cagette de
//! Saint Medard de Mussidan (every other Friday 17:30-18:30, payment on site), 14 producers whose
//! catalogs are linked to both markets with stock shared between them, 145 customers ordering,
//! a bulk weighing, a shortage with refund, a withdrawal refused then allowed after cancellation,
//! distribution ends and validations. At the end, stock, orders and payments equal a computation
//! done independently here (R-STK-1..4, R-SAL-1..6, R-ORD-1..5, R-CAT-3, R-CAT-4).

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc, Weekday};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{AppError, Ctx};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, OrderId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Order, PaymentMethod};
use etal_domain::sale::{Sale, SaleStatus};
use etal_domain::stock::Stock;
use etal_domain::{Money, Role, VatRate};
use etal_tests::world::{actor, money, Producer, World};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::{Decimal, RoundingStrategy};

/// Name, price, VAT, stock limit, estimated kg per unit.
type FarmProduct = (
    &'static str,
    &'static str,
    VatRate,
    Option<i64>,
    Option<Decimal>,
);
/// A sale, whether it is paid online, and (item index, quantity) lines.
type Request = (SaleId, bool, Vec<(usize, i64)>);

struct Item {
    id: ProductId,
    catalog: CatalogId,
    producer: usize,
    price: Decimal,
    /// Estimated kg per unit for variable-weight products.
    est: Option<Decimal>,
}

/// The independent model of what the service should hold.
#[derive(Default)]
struct Model {
    /// product -> (real, ordered) for limited stock.
    stock: BTreeMap<ProductId, (i64, i64)>,
    /// (sale, product) -> units ordered in that sale.
    per_sale: BTreeMap<(SaleId, ProductId), i64>,
    /// order -> (total, paid, refunded).
    money: BTreeMap<OrderId, (Decimal, Decimal, Decimal)>,
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn m(d: Decimal) -> Money {
    Money::round(d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fortnight_of_two_markets_ends_with_stock_orders_and_payments_as_computed_independently()
{
    let mut w = World::at(Utc.with_ymd_and_hms(2026, 3, 2, 8, 0, 0).unwrap()).await;
    let mut rng = StdRng::seed_from_u64(2026);
    let mut model = Model::default();

    // Markets and their sales for the fortnight (R-SAL-1).
    let (segonzac, seg_admin) = w
        .market(
            "La Cagette de Segonzac",
            Weekday::Wed,
            (18, 0),
            (19, 0),
            1,
            NaiveDate::from_ymd_opt(2026, 3, 4).unwrap(),
            PaymentMode::Online,
            false,
        )
        .await;
    let (mussidan, mus_admin) = w
        .market(
            "La Cagette de Saint Medard de Mussidan",
            Weekday::Fri,
            (17, 30),
            (18, 30),
            2,
            NaiveDate::from_ymd_opt(2026, 3, 13).unwrap(),
            PaymentMode::OnSite,
            false,
        )
        .await;
    let (from, to) = (
        NaiveDate::from_ymd_opt(2026, 3, 9).unwrap(),
        NaiveDate::from_ymd_opt(2026, 3, 22).unwrap(),
    );
    let seg_sales = w
        .app
        .generate_sales(&Ctx::new(seg_admin), segonzac, from, to)
        .await
        .unwrap()
        .value;
    let mus_sales = w
        .app
        .generate_sales(&Ctx::new(mus_admin), mussidan, from, to)
        .await
        .unwrap()
        .value;
    assert_eq!(seg_sales.len(), 2, "two Wednesdays");
    assert_eq!(
        mus_sales.len(),
        1,
        "every other Friday: one in the fortnight"
    );
    let (wed1, wed2, fri) = (seg_sales[0], seg_sales[1], mus_sales[0]);
    // Generating again changes nothing.
    assert_eq!(
        w.app
            .generate_sales(&Ctx::new(seg_admin), segonzac, from, to)
            .await
            .unwrap()
            .value,
        seg_sales
    );
    let referent = actor(Role::MarketAdmin);
    w.app
        .add_market_role(&Ctx::new(seg_admin), segonzac, referent.user, true)
        .await
        .unwrap();
    w.app
        .add_market_role(&Ctx::new(mus_admin), mussidan, referent.user, true)
        .await
        .unwrap();

    // 14 producers, each with a catalog linked to both markets, taking part in all three sales.
    let farm: [FarmProduct; 14] = [
        ("Miel 500 g", "8.50", VatRate::Reduced5_5, Some(30), None),
        (
            "Pain de campagne 1 kg",
            "4.20",
            VatRate::Reduced5_5,
            None,
            None,
        ),
        ("Oeufs x6", "3.20", VatRate::Reduced5_5, Some(40), None),
        (
            "Gigot d'agneau",
            "24.00",
            VatRate::Reduced5_5,
            Some(30),
            Some(Decimal::new(15, 1)),
        ),
        (
            "Tomme de brebis",
            "12.90",
            VatRate::Reduced5_5,
            Some(40),
            None,
        ),
        (
            "Panier de légumes",
            "15.00",
            VatRate::Reduced5_5,
            Some(30),
            None,
        ),
        ("Jus de pomme 1 L", "3.60", VatRate::Reduced5_5, None, None),
        (
            "Vin rouge 75 cl",
            "9.90",
            VatRate::Standard20,
            Some(24),
            None,
        ),
        (
            "Confiture de figues",
            "5.40",
            VatRate::Reduced5_5,
            Some(40),
            None,
        ),
        (
            "Poulet fermier",
            "13.00",
            VatRate::Reduced5_5,
            Some(25),
            Some(Decimal::new(18, 1)),
        ),
        ("Fromage de chèvre", "3.10", VatRate::Reduced5_5, None, None),
        (
            "Farine T80 1 kg",
            "2.85",
            VatRate::Reduced5_5,
            Some(25),
            None,
        ),
        ("Noix 500 g", "6.75", VatRate::Reduced5_5, Some(40), None),
        (
            "Savon au lait d'ânesse",
            "5.95",
            VatRate::Standard20,
            Some(30),
            None,
        ),
    ];
    let mut producers: Vec<Producer> = Vec::new();
    let mut items: Vec<Item> = Vec::new();
    for (i, (name, price, vat, stock, est)) in farm.iter().enumerate() {
        let plan = if i % 3 == 0 {
            PlanKind::Discovery
        } else {
            PlanKind::Pro
        };
        let p = w.producer(plan).await;
        let id = w.product_with(&p, name, price, *vat, *est, None).await;
        let second = w
            .product(&p, &format!("{name} (petit)"), "2.50", *vat)
            .await;
        if let Some(n) = stock {
            w.app.set_stock(&p.ctx(), p.id, id, Some(*n)).await.unwrap();
            model.stock.insert(id, (*n, 0));
        }
        let catalog = w
            .catalog(
                &p,
                &format!("Catalogue {}", i + 1),
                &[(id, price), (second, "2.50")],
            )
            .await;
        for (market, admin) in [(segonzac, seg_admin), (mussidan, mus_admin)] {
            let sales = if market == segonzac {
                seg_sales.clone()
            } else {
                mus_sales.clone()
            };
            w.join(admin, market, &p, catalog, &sales).await;
        }
        let price: Decimal = price.parse().unwrap();
        items.push(Item {
            id,
            catalog,
            producer: i,
            price,
            est: *est,
        });
        items.push(Item {
            id: second,
            catalog,
            producer: i,
            price: Decimal::new(250, 2),
            est: None,
        });
        producers.push(p);
    }
    // A price change after the Wednesday period opened does not touch that sale (R-CAT-3).
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 7, 9, 0, 0).unwrap())
        .await;
    let (honey_id, honey_catalog) = (items[0].id, items[0].catalog);
    w.app
        .set_offer_price(&producers[0].ctx(), honey_catalog, honey_id, money("9.00"))
        .await
        .unwrap();

    // Orders for the first Wednesday and the Friday: 110 customers.
    let mut orders_by_sale: BTreeMap<SaleId, Vec<OrderId>> = BTreeMap::new();
    let mut refusals = 0;
    let mut requests = Vec::new();
    for c in 0..110 {
        let sale = if c % 5 < 3 { wed1 } else { fri };
        requests.push(place(&items, sale, sale == wed1, &mut rng));
    }
    let (placed, refused) = run_orders(requests, &mut model, &w, &items).await;
    refusals += refused;
    for (sale, order) in placed {
        orders_by_sale.entry(sale).or_default().push(order);
    }

    // The Wednesday period closes (R-SAL-5: a recap per catalog).
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 10, 18, 0, 0).unwrap())
        .await;
    let recaps: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'sale' AND aggregate_id = $1 AND event_type = 'RecapReady'",
    )
    .bind(wed1.to_string())
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(recaps, 14, "one recap per catalog");

    // Bulk weighing of the lamb and the chickens of the first Wednesday (R-ORD-4).
    let mut weighings = Vec::new();
    for order_id in &orders_by_sale[&wed1] {
        let (order, _) = w.app.load::<Order>(*order_id).await.unwrap();
        for l in order.lines().iter().filter(|l| l.variable_weight) {
            let kg =
                (l.estimated_weight_kg.unwrap() * Decimal::from(l.quantity) * Decimal::new(95, 2))
                    .round_dp(3);
            weighings.push((
                l.producer,
                *order_id,
                l.line,
                kg,
                l.unit_price_incl_vat.amount(),
                l.amount_incl_vat.amount(),
            ));
        }
    }
    assert!(
        !weighings.is_empty(),
        "the seed orders some variable-weight products"
    );
    for (producer, order_id, line, kg, price, old) in &weighings {
        let p = producers.iter().find(|p| p.id == *producer).unwrap();
        let results = w
            .app
            .record_weights(&p.ctx(), &[(*order_id, *line, *kg)])
            .await;
        assert!(results[0].is_ok(), "{:?}", results[0]);
        let new = cents(price * kg);
        let e = model.money.get_mut(order_id).unwrap();
        e.0 += new - old;
        e.2 += old - new; // online: the difference is refunded at once
    }

    // A shortage on one honey line of the Wednesday, refunded online.
    let mut honey_orders = Vec::new();
    for o in &orders_by_sale[&wed1] {
        if w.app
            .load::<Order>(*o)
            .await
            .unwrap()
            .0
            .quantity_of(honey_id)
            > 0
        {
            honey_orders.push(*o);
        }
    }
    let short_order = orders_by_sale[&wed1]
        .iter()
        .copied()
        .find(|o| honey_orders.contains(o))
        .expect("someone ordered honey on Wednesday");
    let (order, _) = w.app.load::<Order>(short_order).await.unwrap();
    let line = order
        .lines()
        .iter()
        .find(|l| l.product == honey_id)
        .unwrap()
        .clone();
    if line.quantity > 0 {
        w.app
            .adjust_quantity(
                &producers[0].ctx(),
                short_order,
                line.line,
                line.quantity - 1,
            )
            .await
            .unwrap();
        let e = model.money.get_mut(&short_order).unwrap();
        e.0 -= line.unit_price_incl_vat.amount();
        e.2 += line.unit_price_incl_vat.amount();
        model.stock.get_mut(&honey_id).unwrap().1 -= 1;
        *model.per_sale.get_mut(&(wed1, honey_id)).unwrap() -= 1;
        assert_eq!(
            line.unit_price_incl_vat,
            money("8.50"),
            "the sale kept the price frozen when it opened"
        );
    }

    // The first Wednesday ends: its units are delivered (R-STK-4); the second Wednesday opens.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 12, 9, 0, 0).unwrap())
        .await;
    deliver(&mut model, wed1);
    let (sale, _) = w.app.load::<Sale>(wed1).await.unwrap();
    assert_eq!(sale.status(), SaleStatus::Distributed);

    // The second Wednesday: 35 customers, and the honey at its new price (R-CAT-3).
    let mut requests = Vec::new();
    for _ in 0..35 {
        requests.push(place(&items, wed2, true, &mut rng));
    }
    for it in items.iter_mut().filter(|it| it.id == honey_id) {
        it.price = Decimal::new(900, 2);
    }
    let (placed, refused) = run_orders(requests, &mut model, &w, &items).await;
    refusals += refused;
    for (sale, order) in placed {
        orders_by_sale.entry(sale).or_default().push(order);
    }

    // R-SAL-4: the soap maker cannot withdraw from the second Wednesday while an order holds
    // lines for their catalog; the customer cancels (full refund), then the withdrawal is allowed.
    let soap = &producers[13];
    let soap_catalog = items.iter().find(|it| it.producer == 13).unwrap().catalog;
    let customer = actor(Role::Customer);
    let soap_order = w
        .app
        .place_order(
            &Ctx::new(customer),
            wed2,
            &[LineRequest {
                catalog: soap_catalog,
                product: items[27].id,
                quantity: 1,
            }],
            DeliveryRequest::PickUp,
        )
        .await
        .unwrap()
        .value;
    let err = w
        .app
        .withdraw(&soap.ctx(), wed2, soap_catalog)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "SALE_HAS_ORDERS");
    // Other customers' orders with soap lines are cancelled by their customers too.
    let mut cancel = vec![(soap_order.order, customer)];
    for order_id in orders_by_sale.get(&wed2).cloned().unwrap_or_default() {
        let (o, _) = w.app.load::<Order>(order_id).await.unwrap();
        if o.catalogs().contains(&soap_catalog) {
            cancel.push((
                order_id,
                etal_domain::Actor::new(o.customer(), Role::Customer),
            ));
        }
    }
    for (order_id, who) in &cancel {
        let (o, _) = w.app.load::<Order>(*order_id).await.unwrap();
        w.app
            .cancel_order(&Ctx::new(*who), *order_id)
            .await
            .unwrap();
        for l in o.lines() {
            if let Some((_, ordered)) = model.stock.get_mut(&l.product) {
                *ordered -= l.quantity;
            }
            *model.per_sale.entry((wed2, l.product)).or_default() -= l.quantity;
        }
        if let Some(e) = model.money.get_mut(order_id) {
            e.2 += e.0;
            e.0 = Decimal::ZERO;
        }
    }
    w.app
        .withdraw(&soap.ctx(), wed2, soap_catalog)
        .await
        .expect("allowed after the cancellations");

    // Friday: the administrator records the payments taken at pick-up.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 13, 17, 0, 0).unwrap())
        .await;
    for order_id in &orders_by_sale[&fri] {
        let (o, _) = w.app.load::<Order>(*order_id).await.unwrap();
        w.app
            .record_onsite_payment(
                &Ctx::new(mus_admin),
                *order_id,
                PaymentMethod::Cash,
                o.total(),
            )
            .await
            .unwrap();
        model.money.get_mut(order_id).unwrap().1 = o.total().amount();
    }
    // The rest of the fortnight: Friday and the second Wednesday end and are delivered.
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 19, 9, 0, 0).unwrap())
        .await;
    deliver(&mut model, fri);
    deliver(&mut model, wed2);
    // The referent validates the three sales (R-SAL-6).
    for sale in [wed1, wed2, fri] {
        w.app
            .validate_sale(&Ctx::new(referent), sale)
            .await
            .unwrap();
        assert_eq!(
            w.app.load::<Sale>(sale).await.unwrap().0.status(),
            SaleStatus::Validated
        );
    }

    // Stock as computed (R-STK-2, R-STK-4).
    for (product, (real, ordered)) in &model.stock {
        let (s, _) = w.app.load::<Stock>(*product).await.unwrap();
        assert_eq!(
            (s.real(), s.ordered()),
            (Some(*real), *ordered),
            "stock of {product}"
        );
        assert_eq!(*ordered, 0, "everything ordered was delivered");
    }
    // Orders and payments as computed.
    let mut customers = 0;
    let (mut total_paid, mut model_paid) = (Money::ZERO, Decimal::ZERO);
    for (order_id, (total, paid, refunded)) in &model.money {
        let (o, _) = w.app.load::<Order>(*order_id).await.unwrap();
        assert_eq!(
            (o.total(), o.paid(), o.refunded()),
            (m(*total), m(*paid), m(*refunded)),
            "order {}",
            o.number()
        );
        assert!(
            o.refund_owed().is_zero()
                && (o.is_cancelled() || o.balance_due().is_zero() || o.paid().is_zero())
        );
        customers += 1;
        total_paid += o.paid() - o.refunded();
        model_paid += paid - refunded;
    }
    assert_eq!(total_paid, m(model_paid));
    assert!(customers >= 120, "{customers} customers ordered");
    println!(
        "{customers} orders placed, {refusals} refused for stock, {} weighed lines, {} events",
        weighings.len(),
        w.event_count().await
    );

    // Numbers are unique within each market (R-ORD-2).
    for (market_sales, name) in [(vec![wed1, wed2], "Segonzac"), (vec![fri], "Mussidan")] {
        let mut numbers = std::collections::BTreeSet::new();
        for sale in market_sales {
            let (s, _) = w.app.load::<Sale>(sale).await.unwrap();
            for o in s.orders().values() {
                assert!(
                    numbers.insert(o.number.clone()),
                    "{name}: number {} twice",
                    o.number
                );
            }
        }
    }

    // The money: validation credits the producers of the online market, the Monday run pays
    // them, and the auditor's check passes on this history (R-PAY-1..3, R-FEE-1..4).
    w.advance_to(Utc.with_ymd_and_hms(2026, 3, 31, 8, 0, 0).unwrap())
        .await;
    let payouts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM events WHERE aggregate_type = 'producer_balance' AND event_type = 'TransferSucceeded'",
    )
    .fetch_one(&w.db.pool)
    .await
    .unwrap();
    assert!(
        payouts >= 13,
        "the producers of the Wednesdays were paid ({payouts} transfers)"
    );
    let (code, out, err) = etal_tests::run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "audit check on the fortnight: {out}{err}");

    // The books of March (FEC): the platform invoices each producer its March fees on 1 April;
    // the first producer's sales to three customers are invoiced on request.
    books_of_march(&mut w, &producers).await;

    // The read side: every projection, caught up in small batches, equals a rebuild in big ones
    // (`etal projections verify --all` reports zero differences on this database), and a row
    // altered in any projection is named by verify.
    for p in etal_projections::all() {
        etal_tests::catch_up_all(&w.db.pool, p.as_ref(), 7).await;
        let report = etal_projections::verify(&w.db.pool, p.as_ref(), &|_| {})
            .await
            .unwrap();
        assert!(
            report.diffs.is_empty(),
            "{}: {:?}",
            p.name(),
            report.diffs.first()
        );
        assert!(report.rows_compared > 0, "{} has rows", p.name());
    }
    let (code, out, err) = etal_tests::run_etal(&w.db.url, &["projections", "verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    for p in etal_projections::all() {
        let table = p.tables()[0];
        let pk: String = sqlx::query_scalar(
            "SELECT a.attname::text FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid \
             AND a.attnum = i.indkey[0] WHERE i.indrelid = $1::regclass AND i.indisprimary",
        )
        .bind(table)
        .fetch_one(&w.db.pool)
        .await
        .unwrap();
        // Delete one row: verify must name it as missing from live.
        let n = sqlx::query(&format!(
            "DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} LIMIT 1)"
        ))
        .execute(&w.db.pool)
        .await
        .unwrap()
        .rows_affected();
        assert_eq!(n, 1, "{table} has a row to alter");
        let report = etal_projections::verify(&w.db.pool, p.as_ref(), &|_| {})
            .await
            .unwrap();
        assert_eq!(report.diffs.len(), 1, "{}: {:?}", p.name(), report.diffs);
        assert!(
            report.diffs[0].live.is_none() && report.diffs[0].key.get(&pk).is_some(),
            "{:?}",
            report.diffs[0]
        );
        etal_projections::rebuild(&w.db.pool, p.as_ref(), &|_| {})
            .await
            .unwrap();
    }

    fn deliver(model: &mut Model, sale: SaleId) {
        for ((s, product), q) in model.per_sale.iter_mut() {
            if *s == sale {
                if let Some((real, ordered)) = model.stock.get_mut(product) {
                    *real -= *q;
                    *ordered -= *q;
                }
                *q = 0;
            }
        }
    }
}

async fn run_orders(
    requests: Vec<Request>,
    model: &mut Model,
    w: &World,
    items: &[Item],
) -> (Vec<(SaleId, OrderId)>, usize) {
    let mut placed = Vec::new();
    let mut refused = 0;
    for (sale, online, lines) in requests {
        // The model decides first: a line asking more than is available is refused, and
        // then the whole order is.
        let short: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, (k, q))| {
                model
                    .stock
                    .get(&items[*k].id)
                    .is_some_and(|(real, ordered)| *q > real - ordered)
            })
            .map(|(i, _)| i)
            .collect();
        let req: Vec<LineRequest> = lines
            .iter()
            .map(|(k, q)| LineRequest {
                catalog: items[*k].catalog,
                product: items[*k].id,
                quantity: *q,
            })
            .collect();
        let customer = actor(Role::Customer);
        let result = w
            .app
            .place_order(&Ctx::new(customer), sale, &req, DeliveryRequest::PickUp)
            .await;
        if !short.is_empty() {
            match result {
                Err(AppError::OrderRefused {
                    lines: refused_lines,
                }) => {
                    let got: Vec<usize> = refused_lines.iter().map(|l| l.line as usize).collect();
                    assert_eq!(got, short, "the refused lines are the short ones");
                    assert!(refused_lines.iter().all(|l| l.code == "STOCK_EXHAUSTED"));
                    refused += 1;
                    continue;
                }
                other => panic!("the model expected a refusal, got {other:?}"),
            }
        }
        let done = result.expect("order placed");
        let mut total = Decimal::ZERO;
        for (k, q) in &lines {
            let it = &items[*k];
            let amount = match it.est {
                Some(est) => cents(it.price * est * Decimal::from(*q)),
                None => cents(it.price * Decimal::from(*q)),
            };
            total += amount;
            if let Some((_, ordered)) = model.stock.get_mut(&it.id) {
                *ordered += q;
            }
            *model.per_sale.entry((sale, it.id)).or_default() += q;
        }
        assert_eq!(done.value.total, m(total), "order total");
        model.money.insert(
            done.value.order,
            (
                total,
                if online { total } else { Decimal::ZERO },
                Decimal::ZERO,
            ),
        );
        placed.push((sale, done.value.order));
    }
    (placed, refused)
}

fn place(
    items: &[Item],
    sale: SaleId,
    online: bool,
    rng: &mut StdRng,
) -> (SaleId, bool, Vec<(usize, i64)>) {
    let n_lines = rng.gen_range(1..=4);
    let mut lines = Vec::new();
    let mut picked = std::collections::BTreeSet::new();
    while lines.len() < n_lines {
        let k = rng.gen_range(0..items.len());
        if picked.insert(k) {
            lines.push((k, rng.gen_range(1..=3i64)));
        }
    }
    (sale, online, lines)
}

/// The debit or the credit of a record.
type Side = fn(&etal_app::fec::Record) -> Decimal;

/// A SIREN with its Luhn key, from 8 digits.
fn siren(base: u32) -> String {
    let digits: Vec<u32> = format!("{base:08}")
        .chars()
        .map(|c| c.to_digit(10).unwrap())
        .collect();
    for key in 0..10 {
        let all: Vec<u32> = digits.iter().copied().chain([key]).collect();
        let sum: u32 = all
            .iter()
            .rev()
            .enumerate()
            .map(|(i, d)| {
                if i % 2 == 1 {
                    let x = d * 2;
                    if x > 9 {
                        x - 9
                    } else {
                        x
                    }
                } else {
                    *d
                }
            })
            .sum();
        if sum.is_multiple_of(10) {
            return all.iter().map(|d| d.to_string()).collect();
        }
    }
    unreachable!()
}

/// The French VAT number of a SIREN.
fn vat_of(siren: &str) -> String {
    let n: u64 = siren.parse().unwrap();
    format!("FR{:02}{siren}", (12 + 3 * (n % 97)) % 97)
}

/// R-INV-1..3 and the FEC of the fortnight's month: the monthly billing run invoices every
/// producer its March fees (series P-), the first producer's sales to three customers are
/// invoiced, and one is credited after a cut. The platform's FEC and the producer's parse back
/// with 18 fields, each entry balanced, continuous numbering per journal, every PieceRef an
/// issued number of those books, and amounts equal to the issued documents; `etal books fec`
/// writes the same file.
async fn books_of_march(w: &mut World, producers: &[Producer]) {
    use etal_app::books::Books;
    use etal_app::invoices::BillingIdentity;
    let identity = |name: &str, siren: &str, franchise: bool| BillingIdentity {
        legal_name: name.into(),
        siren: siren.into(),
        vat_number: (!franchise).then(|| vat_of(siren)),
        vat_franchise: franchise,
        address_line: "Le Bourg".into(),
        postcode: "24110".into(),
        city: "Saint-Astier".into(),
        country: "FR".into(),
    };
    w.app.settings.platform_identity = Some(identity("Coopérative etal", "542051180", false));
    for (i, p) in producers.iter().enumerate() {
        let s = siren(73282930 + i as u32);
        // Every third producer is under the VAT franchise (no VAT number).
        w.app
            .set_billing_identity(
                &p.ctx(),
                p.id,
                identity(&format!("Ferme n°{}", i + 1), &s, i % 3 == 2),
            )
            .await
            .unwrap();
    }
    let first = &producers[0];
    w.app
        .accept_billing_mandate(
            &first.ctx(),
            first.id,
            etal_app::invoices::BILLING_MANDATE_VERSION,
        )
        .await
        .unwrap();
    let orders: Vec<String> = sqlx::query_scalar(
        "SELECT aggregate_id FROM events WHERE event_type = 'OrderPlaced' \
         AND payload::text LIKE '%' || $1 || '%' ORDER BY sequence, aggregate_id LIMIT 3",
    )
    .bind(first.id.to_string())
    .fetch_all(&w.db.pool)
    .await
    .unwrap();
    assert_eq!(
        orders.len(),
        3,
        "the first producer sold to three customers at least"
    );
    let mut sales_invoices = Vec::new();
    for o in &orders {
        let order = OrderId(o.parse().unwrap());
        let inv = w
            .app
            .issue_order_invoice(&first.ctx(), order, first.id)
            .await;
        match inv {
            Ok(done) => sales_invoices.push(done.value),
            // An order whose lines of this producer were all cut has nothing to invoice.
            Err(e) => assert_eq!(e.code(), "NOTHING_TO_INVOICE", "{e}"),
        }
    }
    assert!(!sales_invoices.is_empty());
    // A cut of one unit of the first invoiced order's first line of this producer (the order
    // is paid online or on site; its invoice is credited for what it no longer owes).
    let invoiced = OrderId(
        sales_invoices[0]
            .source
            .split(':')
            .nth(1)
            .unwrap()
            .parse()
            .unwrap(),
    );
    let (order, _) = w.app.load::<Order>(invoiced).await.unwrap();
    let cut = order
        .lines()
        .iter()
        .find(|l| l.producer == first.id && l.quantity > 0 && !l.variable_weight)
        .map(|l| (l.line, l.quantity));
    let mut credited = None;
    if let Some((line, quantity)) = cut {
        w.app
            .adjust_quantity(&first.ctx(), invoiced, line, quantity - 1)
            .await
            .unwrap();
        let cn = w
            .app
            .issue_credit_note(&first.ctx(), sales_invoices[0].id)
            .await
            .unwrap()
            .value;
        assert_eq!(cn.corrects, Some(sales_invoices[0].id));
        credited = Some(cn.number);
    }
    // 1 April: the billing run of March.
    w.advance_to(Utc.with_ymd_and_hms(2026, 4, 1, 6, 0, 0).unwrap())
        .await;
    w.app
        .run_billing(
            NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
            "fortnight-billing",
        )
        .await
        .unwrap();

    type Doc = (String, String, Decimal, Decimal, Decimal);
    let docs = |issuer: uuid::Uuid, fees_of: Option<String>| {
        let pool = w.db.pool.clone();
        async move {
            sqlx::query_as::<_, Doc>(
                "SELECT number, kind, excl_vat, vat, incl_vat FROM invoice_documents \
                 WHERE issuer = $1 OR ($2::text IS NOT NULL AND starts_with(source, $2)) ORDER BY issued_at",
            )
            .bind(issuer)
            .bind(fees_of)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let platform_docs = docs(uuid::Uuid::nil(), None).await;
    assert_eq!(
        platform_docs.len(),
        producers.len(),
        "one fee invoice per producer: {platform_docs:?}"
    );
    let producer_docs = docs(first.id.0, Some(format!("fees:{}:", first.id))).await;
    assert_eq!(
        producer_docs.len(),
        sales_invoices.len() + 1 + usize::from(credited.is_some())
    );
    println!(
        "FEC of March: {} fee invoices, {} sales invoices, credit note {credited:?}",
        platform_docs.len(),
        sales_invoices.len()
    );

    for (books, docs, expected_name) in [
        (
            Books::Platform,
            &platform_docs,
            "542051180FEC20261231.txt".to_string(),
        ),
        (
            Books::Producer(first.id),
            &producer_docs,
            format!("{}FEC20261231.txt", siren(73282930)),
        ),
    ] {
        let file = w.app.fec(books, 2026).await.unwrap();
        assert_eq!(file.file_name, expected_name);
        let header = file.bytes.split(|b| *b == b'\r').next().unwrap();
        assert_eq!(
            String::from_utf8(header.to_vec())
                .unwrap()
                .split('\t')
                .count(),
            18,
            "18 fields"
        );
        let records = etal_app::fec::parse(&file.bytes).unwrap();
        etal_app::fec::check(&records).expect("balanced, numbered without gaps");
        assert_eq!(records.len(), file.lines);
        // Balanced overall and per entry (check), numbered 1.. per journal without gaps.
        let debit: Decimal = records.iter().map(|r| r.debit).sum();
        let credit: Decimal = records.iter().map(|r| r.credit).sum();
        assert_eq!(debit, credit);
        assert_eq!(debit, file.total_debit);
        // Every PieceRef is an issued number of these books, and every document is in the
        // sales or purchases journal once, with its amounts.
        let numbers: BTreeMap<&str, &Doc> = docs.iter().map(|d| (d.0.as_str(), d)).collect();
        for r in &records {
            assert!(
                numbers.contains_key(r.piece_ref.as_str()),
                "{} is not issued",
                r.piece_ref
            );
        }
        for (number, (_, kind, excl, vat, incl)) in &numbers {
            let main: Vec<_> = records
                .iter()
                .filter(|r| r.piece_ref == *number && (r.journal == "VT" || r.journal == "AC"))
                .collect();
            let entry_numbers: std::collections::BTreeSet<u64> =
                main.iter().map(|r| r.number).collect();
            assert_eq!(entry_numbers.len(), 1, "{number}: one entry");
            let sum =
                |f: &dyn Fn(&&etal_app::fec::Record) -> bool,
                 side: &dyn Fn(&etal_app::fec::Record) -> Decimal|
                 -> Decimal { main.iter().filter(|r| f(r)).map(|r| side(r)).sum() };
            let sign_ok = kind == "invoice" || kind == "credit_note";
            assert!(sign_ok);
            match main[0].journal.as_str() {
                "VT" => {
                    let (a, b): (Side, Side) = if kind == "invoice" {
                        (|r| r.debit, |r| r.credit)
                    } else {
                        (|r| r.credit, |r| r.debit)
                    };
                    assert_eq!(sum(&|r| r.account == "411000", &a), *incl, "{number}: 411");
                    assert_eq!(
                        sum(&|r| r.account.starts_with("70"), &b),
                        *excl,
                        "{number}: 70x"
                    );
                    assert_eq!(sum(&|r| r.account == "445710", &b), *vat, "{number}: 44571");
                }
                _ => {
                    assert_eq!(
                        sum(&|r| r.account == "467000", &|r| r.credit),
                        *incl,
                        "{number}: 467"
                    );
                    assert_eq!(
                        sum(&|r| r.account == "622000" || r.account == "445660", &|r| r
                            .debit),
                        *incl,
                        "{number}: 622 + 44566"
                    );
                }
            }
        }
    }
    // The command line writes the producer's file, byte for byte.
    let dir = std::env::temp_dir().join(format!("etal-fec-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let (code, out, err) = etal_tests::run_etal(
        &w.db.url,
        &[
            "books",
            "fec",
            "--issuer",
            &first.id.to_string(),
            "--year",
            "2026",
            "--output",
            dir.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let file = w.app.fec(Books::Producer(first.id), 2026).await.unwrap();
    assert_eq!(
        std::fs::read(dir.join(&file.file_name)).unwrap(),
        file.bytes,
        "{err}"
    );
    assert!(err.contains("entries"), "a one-line summary: {err}");
    let _ = std::fs::remove_dir_all(&dir);
}
