//! The money issue end to end (R-SAL-6, R-FEE-1..5, R-PAY-1..3): markets, producers and online
//! orders through the application flows, a fake clock driving the scheduler, sale validation
//! crediting producers, Monday payouts through the payment simulator (with injected failures),
//! the ledger projection, and the auditor's CLI against the same database.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, NaiveTime, Utc, Weekday};
use etal_app::market::{NewMarket, PeriodRule};
use etal_app::money::{payout_id_for, transfer_key};
use etal_app::order::{DeliveryRequest, LineRequest};
use etal_app::{load_plans, App, Ctx, Simulator};
use etal_domain::account::ProductDetails;
use etal_domain::calendar::{paris_date, paris_instant};
use etal_domain::config::PlanKind;
use etal_domain::ids::{CatalogId, MarketId, OrderId, ProducerId, ProductId, SaleId, UserId};
use etal_domain::market::{PaymentMode, Slot, Visibility};
use etal_domain::payout::{ProducerBalance, ProducerBalanceEvent};
use etal_domain::{Actor, FakeClock, Money, Role};
use etal_projections::ledger::{
    balances_as_of, conservation_as_of, fee_ledger, journal, FeeGrouping,
};
use etal_store::log::EventLog;
use etal_tests::{run_etal, TestDb};

use crate::fake_stripe;

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("date")
}

fn paris(date: NaiveDate, h: u32, mi: u32) -> DateTime<Utc> {
    paris_instant(date, NaiveTime::from_hms_opt(h, mi, 0).expect("time"))
}

fn m(s: &str) -> Money {
    s.parse().expect("money")
}

struct World {
    db: TestDb,
    clock: FakeClock,
    app: App,
    sim: Arc<Simulator>,
    admin: Ctx,
}

#[derive(Clone)]
struct Seller {
    ctx: Ctx,
    producer: ProducerId,
    product: ProductId,
    catalog: CatalogId,
}

impl World {
    async fn new(start: DateTime<Utc>) -> World {
        let db = TestDb::new(8).await;
        let clock = FakeClock::at(start);
        let sim = Arc::new(Simulator::new());
        let app = App::new(
            db.pool.clone(),
            Arc::new(clock.clone()),
            load_plans().expect("plans"),
            sim.clone(),
        );
        let admin = Ctx::new(Actor::new(UserId::new(), Role::MarketAdmin));
        World {
            db,
            clock,
            app,
            sim,
            admin,
        }
    }

    /// Moves the clock and runs what is due.
    async fn at(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        let report = self.app.scheduler().run_due().await.expect("run due");
        if report.failed > 0 {
            let why: Vec<(String, Option<String>)> = sqlx::query_as(
                "SELECT kind, last_error FROM scheduled_commands WHERE status = 'failed'",
            )
            .fetch_all(&self.db.pool)
            .await
            .expect("failures");
            panic!("a scheduled command failed at {t}: {why:?}");
        }
    }

    async fn market(&self, weekday: Weekday, anchor: NaiveDate, start: (u32, u32)) -> MarketId {
        self.market_paid(weekday, anchor, start, PaymentMode::Online)
            .await
    }

    async fn market_paid(
        &self,
        weekday: Weekday,
        anchor: NaiveDate,
        start: (u32, u32),
        payment_mode: PaymentMode,
    ) -> MarketId {
        let t = |h, mi| NaiveTime::from_hms_opt(h, mi, 0).expect("time");
        self.app
            .create_market(
                &self.admin,
                NewMarket {
                    name: format!("Marché du {weekday}"),
                    place: "Place de l'église".into(),
                    slots: vec![Slot {
                        weekday,
                        start: t(start.0, start.1),
                        end: t(start.0 + 3, start.1),
                        every_weeks: 1,
                        anchor,
                    }],
                    payment_mode,
                    visibility: Visibility::Public,
                    amap: false,
                },
            )
            .await
            .expect("market")
            .value
    }

    async fn seller(&self, market: MarketId, name: &str, price: &str) -> Seller {
        let ctx = Ctx::new(Actor::new(UserId::new(), Role::Producer));
        let app = &self.app;
        let producer = app
            .open_account(&ctx, "v1", PlanKind::Discovery)
            .await
            .expect("account")
            .value;
        let product = app
            .add_product(
                &ctx,
                producer,
                ProductDetails {
                    name: name.into(),
                    unit: "piece".into(),
                    price_incl_vat: m(price),
                    vat: "5.5".parse().expect("vat"),
                    variable_weight: false,
                    estimated_weight_kg: None,
                    packaging_multiple: None,
                },
            )
            .await
            .expect("product")
            .value;
        app.set_stock(&ctx, producer, product, None)
            .await
            .expect("stock");
        let catalog = app
            .create_catalog(&ctx, producer, &format!("{name} catalog"))
            .await
            .expect("catalog")
            .value;
        app.add_offer(&ctx, catalog, product, m(price))
            .await
            .expect("offer");
        app.link_catalog(&self.admin, market, catalog)
            .await
            .expect("link");
        Seller {
            ctx,
            producer,
            product,
            catalog,
        }
    }

    async fn sale(&self, market: MarketId, date: NaiveDate, sellers: &[&Seller]) -> SaleId {
        let sales = self
            .app
            .generate_sales(&self.admin, market, date, date)
            .await
            .expect("sales")
            .value;
        assert_eq!(sales.len(), 1, "one sale on {date}");
        for s in sellers {
            self.app
                .participate(&s.ctx, s.catalog, &sales, PeriodRule::default())
                .await
                .expect("participate");
        }
        sales[0]
    }

    async fn order(&self, sale: SaleId, lines: &[(&Seller, i64)]) -> OrderId {
        let customer = Ctx::new(Actor::new(UserId::new(), Role::Customer));
        let lines: Vec<LineRequest> = lines
            .iter()
            .map(|(s, q)| LineRequest {
                catalog: s.catalog,
                product: s.product,
                quantity: *q,
            })
            .collect();
        self.app
            .place_order(&customer, sale, &lines, DeliveryRequest::PickUp)
            .await
            .expect("order")
            .value
            .order
    }

    async fn balance(&self, producer: ProducerId) -> ProducerBalance {
        self.app
            .load::<ProducerBalance>(producer)
            .await
            .expect("balance")
            .0
    }

    /// Each confirmed transfer of a producer: (Paris date, amount).
    async fn transfers(&self, producer: ProducerId) -> Vec<(NaiveDate, Money)> {
        EventLog::stream(&self.db.pool, "producer_balance", &producer.to_string())
            .await
            .expect("stream")
            .iter()
            .filter_map(|e| match e.decode::<ProducerBalanceEvent>() {
                Ok(ProducerBalanceEvent::TransferSucceeded { amount, at, .. }) => {
                    Some((paris_date(at), amount))
                }
                _ => None,
            })
            .collect()
    }

    async fn balance_events(&self, producer: ProducerId, kind: &str) -> usize {
        EventLog::stream(&self.db.pool, "producer_balance", &producer.to_string())
            .await
            .expect("stream")
            .iter()
            .filter(|e| e.event_type == kind)
            .count()
    }

    async fn catch_up_ledger(&self) {
        let ledger = etal_projections::by_name("ledger").expect("ledger projection");
        // Every committed event, however long other tests' transactions hold the watermark.
        etal_tests::catch_up_all(
            &self.db.pool,
            ledger.as_ref(),
            etal_projections::runtime::BATCH,
        )
        .await;
    }
}

/// The guide's two examples (R-PAY-1) with net payouts (R-PAY-2, R-FEE-1, R-FEE-2, R-FEE-4):
/// a Wednesday sale validated on Wednesday 6 Sept 2023 is paid on Monday 11, a Saturday sale
/// validated on Saturday 9 is paid on Monday 18; each producer receives their sales incl. VAT
/// minus refunds minus 3 % + 6 % (excl. VAT, plus 20 % VAT) of what they keep.
#[tokio::test]
async fn r_pay_1_the_guides_examples_are_paid_their_net_on_the_right_mondays() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let saturday = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let wednesday = w.market(Weekday::Wed, d(2023, 8, 30), (16, 0)).await;
    let a = w.seller(saturday, "Tomates", "12.50").await;
    let b = w.seller(saturday, "Oeufs", "4.20").await;
    let c = w.seller(wednesday, "Fromage", "7.00").await;
    let sat_sale = w.sale(saturday, d(2023, 9, 9), &[&a, &b]).await;
    let wed_sale = w.sale(wednesday, d(2023, 9, 6), &[&c]).await;

    // Order periods open (a week before each sale).
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let o1 = w.order(sat_sale, &[(&a, 4), (&b, 3)]).await; // 50.00 + 12.60, one payment
    w.order(sat_sale, &[(&a, 2)]).await; // 25.00
    w.order(wed_sale, &[(&c, 5)]).await; // 35.00

    // Wednesday: the period closed, the distribution ended; the referent validates at 21:30.
    w.at(paris(d(2023, 9, 6), 21, 30)).await;
    w.app
        .validate_sale(&w.admin, wed_sale)
        .await
        .expect("validate wed");
    w.at(paris(d(2023, 9, 6), 21, 31)).await;

    // Friday: the Saturday period is closed; a shortage of one tomato is refunded (R-ORD-4).
    w.at(paris(d(2023, 9, 8), 10, 0)).await;
    w.app
        .adjust_quantity(&a.ctx, o1, 0, 3)
        .await
        .expect("shortage");

    // Saturday 9: distribution ends at 12:00 (+2 h); validated at 14:30.
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app
        .validate_sale(&w.admin, sat_sale)
        .await
        .expect("validate sat");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;

    // R-SAL-6: credited once; a retry of the crediting credits nothing twice.
    let again = w
        .app
        .credit_sale(sat_sale, "retry")
        .await
        .expect("credit again");
    assert_eq!((again.credited, again.already_credited), (0, 2));
    let credit_a = w.balance(a.producer).await;
    let credit = &credit_a.credits()[&sat_sale];
    assert_eq!(credit.gross_incl_vat, m("75.00"));
    assert_eq!(credit.refunds, m("12.50"));
    assert_eq!(credit.available_on, d(2023, 9, 12));
    // R-FEE-1, R-FEE-2: one line per rule, on what was paid (75.00), VAT 20 %; R-FEE-4: the
    // refund of 12.50 gives back 1/6 of each: 2.25 -> 0.38 (VAT 0.08), 4.50 -> 0.75 (0.15).
    let rules: Vec<(&str, Money, Money)> = credit
        .fees
        .iter()
        .map(|l| (l.rule_id.as_str(), l.base_amount, l.amount_incl_vat))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("cagette.online_payment", m("75.00"), m("2.70")),
            ("cagette.service_fee", m("75.00"), m("5.40")),
        ]
    );
    let back: Vec<(&str, Money, Money)> = credit
        .fee_refunds
        .iter()
        .map(|r| (r.rule_id.as_str(), r.refunded_now, r.amount_incl_vat))
        .collect();
    assert_eq!(
        back,
        vec![
            ("cagette.online_payment", m("12.50"), m("0.46")),
            ("cagette.service_fee", m("12.50"), m("0.90")),
        ]
    );
    assert_eq!(credit.net, m("55.76")); // 75.00 - 12.50 - 8.10 + 1.36

    // Monday 11: only the Wednesday sale is due.
    w.at(paris(d(2023, 9, 11), 6, 0)).await;
    assert_eq!(
        w.transfers(c.producer).await,
        vec![(d(2023, 9, 11), m("31.22"))]
    );
    assert!(w.transfers(a.producer).await.is_empty());
    // Monday 18: the Saturday sale.
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 18), m("55.76"))]
    );
    assert_eq!(
        w.transfers(b.producer).await,
        vec![(d(2023, 9, 18), m("11.23"))]
    );
    // A later Monday pays nothing twice.
    w.at(paris(d(2023, 9, 25), 6, 0)).await;
    assert_eq!(w.transfers(a.producer).await.len(), 1);
    for s in [&a, &b, &c] {
        let bal = w.balance(s.producer).await;
        assert_eq!(bal.paid_total(), bal.credited_total());
        assert_eq!(bal.balance_held(), Money::ZERO);
    }

    // The payout statement lists the sale and its fee lines (R-PAY-2).
    let bal_a = w.balance(a.producer).await;
    let statement = bal_a
        .statement(payout_id_for(a.producer, d(2023, 9, 18)))
        .expect("statement");
    assert_eq!(statement.lines.len(), 1);
    assert_eq!(statement.lines[0].sale, sat_sale);
    assert_eq!(statement.lines[0].fees.len(), 2);
    assert_eq!(statement.total, m("55.76"));
    assert_eq!(statement.lines[0].fee_refunds.len(), 2);
    assert_eq!(statement.lines[0].fees_incl_vat, m("6.74")); // 8.10 - 1.36

    // The ledger projection (R-PAY-3): balanced, conserved, payouts and fees where expected.
    w.catch_up_ledger().await;
    let today = d(2023, 9, 30);
    let c_now = conservation_as_of(&w.db.pool, today)
        .await
        .expect("conservation");
    assert!(c_now.holds(), "{c_now:?}");
    assert_eq!(c_now.payments, m("122.60")); // 62.60 + 25.00 + 35.00
    assert_eq!(c_now.refunds, m("12.50"));
    assert_eq!(c_now.payouts, m("98.21")); // 31.22 + 55.76 + 11.23
    assert_eq!(c_now.held, Money::ZERO);
    // As of Sunday 10 Sept the Wednesday money is held, not paid yet.
    let before = conservation_as_of(&w.db.pool, d(2023, 9, 10))
        .await
        .expect("as of");
    assert!(before.holds());
    assert_eq!(before.payouts, Money::ZERO);
    let balances = balances_as_of(&w.db.pool, today).await.expect("balances");
    let debits: Money = balances.iter().map(|b| b.debits).sum();
    let credits: Money = balances.iter().map(|b| b.credits).sum();
    assert_eq!(debits, credits);
    let per_producer = fee_ledger(&w.db.pool, FeeGrouping::Producer, d(2023, 9, 1), today)
        .await
        .expect("fee ledger");
    let fees_a: Money = per_producer
        .iter()
        .filter(|f| f.key == a.producer.to_string())
        .map(|f| f.amount_incl_vat)
        .sum();
    assert_eq!(fees_a, m("6.74")); // 8.10 charged - 1.36 given back
    let per_sale = fee_ledger(&w.db.pool, FeeGrouping::Sale, d(2023, 9, 1), today)
        .await
        .expect("fee ledger per sale");
    assert_eq!(per_sale.len(), 2);
    let per_month = fee_ledger(&w.db.pool, FeeGrouping::Month, d(2023, 9, 1), today)
        .await
        .expect("fee ledger per month");
    assert_eq!(per_month[0].key, "2023-09");
    let per_market = fee_ledger(&w.db.pool, FeeGrouping::Market, d(2023, 9, 1), today)
        .await
        .expect("fee ledger per market");
    assert_eq!(per_market.len(), 2);
    // The journal, page by page.
    let page1 = journal(&w.db.pool, None, 3).await.expect("journal");
    let last = page1.last().expect("entries");
    let page2 = journal(
        &w.db.pool,
        Some((last.entry_date, last.entry_id.clone())),
        3,
    )
    .await
    .expect("journal page 2");
    assert!(page2
        .iter()
        .all(|l| (l.entry_date, &l.entry_id) > (last.entry_date, &last.entry_id)));

    // The projection rebuilds identically; the auditor finds nothing to say.
    let (code, out, err) = run_etal(&w.db.url, &["projections", "verify", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 differences"), "{out}");
}

/// R-FEE-2, R-SAL-6: a validated sale of a market paid on site records each producer's service
/// fee (rule, version, base, rate) as owed; the auditor agrees (receivable accounted) and the
/// producer's next online payout is reduced by it.
#[tokio::test]
async fn r_fee_2_an_on_site_sale_owes_the_service_fee_deducted_from_the_next_payout() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let wednesday = w.market(Weekday::Wed, d(2023, 8, 30), (16, 0)).await;
    let saturday = w
        .market_paid(Weekday::Sat, d(2023, 9, 2), (9, 0), PaymentMode::OnSite)
        .await;
    let a = w.seller(wednesday, "Fromage", "7.00").await;
    w.app
        .link_catalog(&w.admin, saturday, a.catalog)
        .await
        .expect("link on-site market");
    let wed_sale = w.sale(wednesday, d(2023, 9, 6), &[&a]).await;
    let sat_sale = w.sale(saturday, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(wed_sale, &[(&a, 5)]).await; // 35.00 online
    w.order(sat_sale, &[(&a, 4)]).await; // 28.00 paid on site
    w.at(paris(d(2023, 9, 6), 21, 30)).await;
    w.app
        .validate_sale(&w.admin, wed_sale)
        .await
        .expect("validate wed");
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app
        .validate_sale(&w.admin, sat_sale)
        .await
        .expect("validate sat");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    // Idempotent: a second crediting records nothing twice.
    let again = w.app.credit_sale(sat_sale, "retry").await.expect("again");
    assert_eq!((again.credited, again.already_credited), (0, 1));
    assert_eq!(w.balance_events(a.producer, "SaleSettledOnSite").await, 1);
    let stream = EventLog::stream(&w.db.pool, "producer_balance", &a.producer.to_string())
        .await
        .expect("stream");
    let (fees, owed) = stream
        .iter()
        .find_map(|e| match e.decode::<ProducerBalanceEvent>() {
            Ok(ProducerBalanceEvent::SaleSettledOnSite {
                fees,
                owed,
                sales_incl_vat,
                ..
            }) => {
                assert_eq!(sales_incl_vat, m("28.00"));
                Some((fees, owed))
            }
            _ => None,
        })
        .expect("fee owed");
    // The service fee only (no online payment fee), with its rule and inputs.
    assert_eq!(fees.len(), 1, "{fees:?}");
    assert_eq!(fees[0].rule_id, "cagette.service_fee");
    assert!(fees[0].rule_version >= 1);
    assert!(!fees[0].rate.is_zero());
    assert!(fees[0].base_amount > Money::ZERO);
    assert!(owed > Money::ZERO);
    assert_eq!(w.balance(a.producer).await.owed(), owed);
    // Monday 11: the Wednesday sale's net (31.22) minus the fee owed.
    w.at(paris(d(2023, 9, 11), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 11), m("31.22") - owed)]
    );
    let bal = w.balance(a.producer).await;
    assert_eq!(bal.owed(), Money::ZERO);
    assert_eq!(bal.balance_held(), Money::ZERO);
    let report = etal_app::audit::check(&w.db.pool, &|_| {})
        .await
        .expect("audit");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    assert!(report.conservation.holds(), "{:?}", report.conservation);
    w.catch_up_ledger().await;
    let c = conservation_as_of(&w.db.pool, d(2023, 9, 30))
        .await
        .expect("c");
    assert!(c.holds(), "{c:?}");
    // As of Sunday 10 the fee is a receivable, not recovered yet.
    let before = conservation_as_of(&w.db.pool, d(2023, 9, 10))
        .await
        .expect("c");
    assert_eq!(before.receivables, owed);
    assert!(before.holds(), "{before:?}");
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-ORD-5, R-FEE-4, R-PAY-2: a market administrator cancels an order after its sale was
/// validated and credited; the refund (net of the fees given back) is debited from each
/// producer's balance, the next payout is reduced, never negative, and the audit agrees.
#[tokio::test]
async fn r_pay_2_a_refund_after_crediting_reduces_the_next_payout() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let saturday = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(saturday, "Tomates", "12.50").await;
    let b = w.seller(saturday, "Oeufs", "4.20").await;
    let sale = w.sale(saturday, d(2023, 9, 9), &[&a, &b]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let o1 = w.order(sale, &[(&a, 4), (&b, 3)]).await; // 50.00 + 12.60
    w.order(sale, &[(&a, 2)]).await; // 25.00
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    let credited_a = w.balance(a.producer).await.credits()[&sale].net;
    // Sunday: the administrator cancels o1 (everything refunded).
    w.at(paris(d(2023, 9, 10), 10, 0)).await;
    w.app
        .cancel_order(&w.admin, o1)
        .await
        .expect("cancel after the sale");
    w.at(paris(d(2023, 9, 10), 10, 1)).await;
    assert_eq!(w.balance_events(a.producer, "RefundDebited").await, 1);
    assert_eq!(w.balance_events(b.producer, "RefundDebited").await, 1);
    // A re-run debits nothing twice.
    assert_eq!(
        w.app
            .debit_late_refunds(sale, o1, "retry")
            .await
            .expect("again"),
        0
    );
    // a keeps 25.00: net 25.00 - 9 % excl. VAT (+VAT) = 22.30; b keeps nothing.
    let bal_a = w.balance(a.producer).await;
    assert_eq!(bal_a.balance_held(), m("22.30"), "credited {credited_a}");
    assert_eq!(w.balance(b.producer).await.balance_held(), Money::ZERO);
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 18), m("22.30"))]
    );
    assert!(w.transfers(b.producer).await.is_empty());
    let report = etal_app::audit::check(&w.db.pool, &|_| {})
        .await
        .expect("audit");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    w.catch_up_ledger().await;
    let c = conservation_as_of(&w.db.pool, d(2023, 9, 30))
        .await
        .expect("c");
    assert!(c.holds(), "{c:?}");
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-PAY-2: a transfer that keeps failing is retried on the following Mondays, then its money
/// goes back to the balance and is paid by the next payout: never lost, never paid twice.
#[tokio::test]
async fn r_pay_2_a_failing_transfer_is_retried_then_returned_never_lost_nor_paid_twice() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Miel", "9.00").await;
    let sale = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(sale, &[(&a, 10)]).await; // 90.00
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    let net = w.balance(a.producer).await.credited_total();
    // 90.00 - 3 % (2.70 + 0.54) - 6 % (5.40 + 1.08)
    assert_eq!(net, m("80.28"));

    // Every attempt of the payout of Monday 18 fails at the bank.
    let first = payout_id_for(a.producer, d(2023, 9, 18));
    w.sim.fail_keys_starting_with(&format!("payout:{first}"));
    w.at(paris(d(2023, 9, 18), 6, 0)).await; // attempt 1 fails
    w.at(paris(d(2023, 9, 25), 6, 0)).await; // attempt 2 fails
    w.at(paris(d(2023, 10, 2), 6, 0)).await; // attempt 3 fails
    assert_eq!(w.balance_events(a.producer, "TransferFailed").await, 3);
    assert_eq!(w.balance_events(a.producer, "TransferRetried").await, 2);
    let bal = w.balance(a.producer).await;
    assert_eq!(bal.in_flight(), net, "the money waits in flight, not lost");
    assert_eq!(bal.paid_total(), Money::ZERO);
    assert_eq!(transfer_key(first, 3), format!("payout:{first}:3"));

    // Monday 9 Oct: returned to the balance, then paid by a new payout.
    w.at(paris(d(2023, 10, 9), 6, 0)).await;
    assert_eq!(
        w.balance_events(a.producer, "PayoutReturnedToBalance")
            .await,
        1
    );
    assert_eq!(w.transfers(a.producer).await, vec![(d(2023, 10, 9), net)]);
    // Running the same Monday again, and the next one, pays nothing more.
    w.app
        .run_payouts(d(2023, 10, 9), "rerun")
        .await
        .expect("rerun");
    w.at(paris(d(2023, 10, 16), 6, 0)).await;
    assert_eq!(w.transfers(a.producer).await.len(), 1);
    let bal = w.balance(a.producer).await;
    assert_eq!(bal.paid_total(), net);
    assert_eq!(
        (bal.in_flight(), bal.balance_held()),
        (Money::ZERO, Money::ZERO)
    );

    // A single transient failure (fail_next) is retried the next Monday.
    let b = w.seller(market, "Pain", "3.00").await;
    let sale2 = w.sale(market, d(2023, 10, 21), &[&b]).await;
    w.at(paris(d(2023, 10, 14), 10, 0)).await;
    w.order(sale2, &[(&b, 5)]).await;
    w.at(paris(d(2023, 10, 21), 14, 30)).await;
    w.app
        .validate_sale(&w.admin, sale2)
        .await
        .expect("validate 2");
    w.at(paris(d(2023, 10, 21), 14, 31)).await;
    w.sim.fail_next(1);
    w.at(paris(d(2023, 10, 30), 6, 0)).await;
    assert!(w.transfers(b.producer).await.is_empty());
    w.at(paris(d(2023, 11, 6), 6, 0)).await;
    let paid_b = w.balance(b.producer).await.credited_total();
    assert_eq!(
        w.transfers(b.producer).await,
        vec![(d(2023, 11, 6), paid_b)]
    );

    w.catch_up_ledger().await;
    let c = conservation_as_of(&w.db.pool, d(2023, 12, 31))
        .await
        .expect("conservation");
    assert!(c.holds(), "{c:?}");
    assert_eq!(c.payouts, net + paid_b);
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-FEE-3, R-PAY-3: the auditor replays, exports and checks the history from the events
/// alone; one altered fee amount in a stored payload is named by event, aggregate and field.
#[tokio::test]
async fn r_fee_3_the_audit_names_a_tampered_fee_line_by_event_and_field() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Pommes", "2.35").await;
    let b = w.seller(market, "Poires", "3.10").await;
    let sale = w.sale(market, d(2023, 9, 9), &[&a, &b]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(sale, &[(&a, 7), (&b, 3)]).await;
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 18), 6, 0)).await;

    let (code, out, err) = run_etal(&w.db.url, &["audit", "replay", "--until", "2023-09-30"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("(conserved)"), "{out}");
    let (code, out, _) = run_etal(&w.db.url, &["audit", "replay", "--until", "2023-09-10"]);
    assert_eq!(code, 0);
    assert!(out.contains("payouts 0.00"), "{out}");
    let csv = std::env::temp_dir().join(format!("etal-journal-{}.csv", w.db.name));
    let (code, _, err) = run_etal(
        &w.db.url,
        &["audit", "export", "--output", csv.to_str().expect("path")],
    );
    assert_eq!(code, 0, "{err}");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let _ = std::fs::remove_file(&csv);
    assert!(text.starts_with("entry_id,date,available_on,description,line,account,debit,credit"));
    assert!(text.contains("CustomerPayments"));
    assert!(text.contains("PayoutsSent"));
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");

    // Someone with a superuser's rights edits a stored fee amount (past the append-only
    // triggers of R-AUD-1, which refuse it otherwise).
    let mut tx = w.db.pool.begin().await.expect("begin");
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .expect("bypass the triggers");
    let position: i64 = sqlx::query_scalar(
        "UPDATE events SET payload = jsonb_set(payload, '{SaleCredited,fees,0,amount_excl_vat}', '\"9.99\"') \
         WHERE aggregate_type = 'producer_balance' AND aggregate_id = $1 AND event_type = 'SaleCredited' \
         RETURNING global_position",
    )
    .bind(a.producer.to_string())
    .fetch_one(&mut *tx)
    .await
    .expect("tamper");
    tx.commit().await.expect("commit");
    let (code, out, _) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 3, "{out}");
    let named = format!(
        "event {position} (producer_balance {} #1) SaleCredited.fees[0].amount_excl_vat",
        a.producer
    );
    assert!(out.contains(&named), "expected `{named}` in:\n{out}");
    assert!(!out.contains("0 differences"), "{out}");
}

/// R-PAY-3 as an auditor reads it: `etal audit check` covers every event committed before it
/// started, even when an older transaction still open (in any database of the cluster) holds
/// the log's watermark below them: it waits instead of auditing a prefix.
#[tokio::test]
async fn r_pay_3_the_audit_waits_for_events_behind_a_held_watermark() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    // An open transaction with a transaction id: every event committed after it is invisible
    // to readers until it ends.
    let mut holder = w.db.pool.begin().await.expect("begin");
    sqlx::query("SELECT txid_current()")
        .execute(&mut *holder)
        .await
        .expect("txid");
    let seller = w.seller(market, "Tomates", "3.50").await;
    let sale = w.sale(market, d(2023, 9, 9), &[&seller]).await;
    w.at(paris(d(2023, 9, 4), 10, 0)).await;
    w.order(sale, &[(&seller, 2)]).await;
    let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    let visible = EventLog::read_after(&w.db.pool, etal_store::log::Position::START, None, 100_000)
        .await
        .expect("read")
        .len() as i64;
    assert!(
        visible < committed,
        "the holder hides nothing ({visible} of {committed})"
    );

    let pool = w.db.pool.clone();
    let audit = tokio::spawn(async move { etal_app::audit::check(&pool, &|_| {}).await });
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(!audit.is_finished(), "the audit ran on a partial log");
    holder.commit().await.expect("commit");
    let report = audit.await.expect("join").expect("audit");
    assert_eq!(report.events, committed as u64);
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
}

mod property {
    use super::*;
    use proptest::prelude::*;

    /// One random history: producers, orders, shortages, validations and bank failures.
    #[derive(Debug, Clone)]
    struct Plan {
        prices: Vec<u32>,
        /// Per sale (two Saturdays): orders as (producer index, quantity) lines.
        orders: Vec<Vec<Vec<(usize, i64)>>>,
        /// (sale, order, line, new quantity) shortages after the close.
        shortages: Vec<(usize, usize, usize, i64)>,
        validate: Vec<bool>,
        /// (sale, order) cancelled by the market after the close (everything refunded).
        cancellations: Vec<(usize, usize)>,
        /// Transfers failing at each of the Monday runs.
        failures: Vec<u32>,
        /// Per sale: held at the market paid on site (R-SAL-6, R-FEE-2) instead of online.
        on_site: Vec<bool>,
        /// (sale, order) cancelled after the first Monday run: refunds after crediting.
        late_cancellations: Vec<(usize, usize)>,
    }

    fn plan() -> impl Strategy<Value = Plan> {
        (1usize..=3)
            .prop_flat_map(|n| {
                let line = (0..n, 1i64..=4);
                let order = proptest::collection::vec(line, 1..=3);
                (
                    proptest::collection::vec(150u32..1000, n),
                    proptest::collection::vec(proptest::collection::vec(order, 1..=3), 2),
                    proptest::collection::vec((0usize..2, 0usize..3, 0usize..3, 0i64..4), 0..4),
                    proptest::collection::vec(any::<bool>(), 2),
                    proptest::collection::vec((0usize..2, 0usize..3), 0..2),
                    proptest::collection::vec(0u32..3, 6),
                    proptest::collection::vec(proptest::bool::weighted(0.3), 2),
                    proptest::collection::vec((0usize..2, 0usize..3), 0..3),
                )
            })
            .prop_map(
                |(
                    prices,
                    orders,
                    shortages,
                    validate,
                    cancellations,
                    failures,
                    on_site,
                    late_cancellations,
                )| Plan {
                    prices,
                    orders,
                    shortages,
                    validate,
                    cancellations,
                    failures,
                    on_site,
                    late_cancellations,
                },
            )
    }

    async fn run(plan: Plan) {
        let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
        let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
        let on_site_market = w
            .market_paid(Weekday::Sat, d(2023, 9, 2), (15, 0), PaymentMode::OnSite)
            .await;
        let mut sellers = Vec::new();
        for (i, cents) in plan.prices.iter().enumerate() {
            let price = Money::from_cents(i64::from(*cents)).to_string();
            let seller = w.seller(market, &format!("Produit {i}"), &price).await;
            w.app
                .link_catalog(&w.admin, on_site_market, seller.catalog)
                .await
                .expect("link the market paid on site");
            sellers.push(seller);
        }
        let refs: Vec<&Seller> = sellers.iter().collect();
        let dates = [d(2023, 9, 9), d(2023, 9, 16)];
        let mut sales = Vec::new();
        for (s, date) in dates.iter().enumerate() {
            let at = if plan.on_site[s] {
                on_site_market
            } else {
                market
            };
            sales.push(w.sale(at, *date, &refs).await);
        }
        let mut placed_per_sale: Vec<Vec<OrderId>> = Vec::new();
        let mut late_cancelled = std::collections::BTreeSet::new();
        // Sale by sale: orders (the period opened a week before), shortages after the close,
        // validation after the distribution.
        let mut all_orders: Vec<(SaleId, OrderId)> = Vec::new();
        for (s, date) in dates.iter().enumerate() {
            w.at(paris(*date - Duration::days(6), 10, 0)).await;
            let mut placed: Vec<(OrderId, usize)> = Vec::new();
            for lines in &plan.orders[s] {
                let mut merged: BTreeMap<usize, i64> = BTreeMap::new();
                for (p, q) in lines {
                    *merged.entry(*p).or_default() += q;
                }
                let req: Vec<(&Seller, i64)> =
                    merged.iter().map(|(p, q)| (&sellers[*p], *q)).collect();
                let order = w.order(sales[s], &req).await;
                placed.push((order, merged.len()));
                all_orders.push((sales[s], order));
            }
            w.at(paris(*date - Duration::days(1), 10, 0)).await;
            for (ss, o, l, q) in &plan.shortages {
                if *ss != s {
                    continue;
                }
                let (order, lines) = placed[*o % placed.len()];
                let line = (*l % lines) as u32;
                let (state, _) = w
                    .app
                    .load::<etal_domain::order::Order>(order)
                    .await
                    .expect("order");
                let current = state.lines()[line as usize].quantity;
                let producer = state.lines()[line as usize].producer;
                let seller = sellers
                    .iter()
                    .find(|x| x.producer == producer)
                    .expect("seller");
                if *q < current {
                    w.app
                        .adjust_quantity(&seller.ctx, order, line, *q)
                        .await
                        .expect("shortage");
                }
            }
            for (cs, o) in &plan.cancellations {
                if *cs == s {
                    let (order, _) = placed[*o % placed.len()];
                    let (state, _) = w
                        .app
                        .load::<etal_domain::order::Order>(order)
                        .await
                        .expect("order");
                    if !state.is_cancelled() {
                        w.app.cancel_order(&w.admin, order).await.expect("cancel");
                    }
                }
            }
            placed_per_sale.push(placed.iter().map(|(o, _)| *o).collect());
            w.at(paris(*date, 21, 0)).await;
            if plan.validate[s] {
                w.app
                    .validate_sale(&w.admin, sales[s])
                    .await
                    .expect("validate");
            }
        }
        // Six Monday runs, some transfers failing.
        let mut monday = d(2023, 9, 18);
        for (run, fail) in plan.failures.iter().enumerate() {
            w.sim.fail_next(*fail);
            w.at(paris(monday, 6, 0)).await;
            if run == 0 {
                // After the first payouts: cancellations refund orders already credited.
                w.sim.fail_next(0);
                w.at(paris(monday, 11, 0)).await;
                for (s, o) in &plan.late_cancellations {
                    let order = placed_per_sale[*s][*o % placed_per_sale[*s].len()];
                    let (state, _) = w
                        .app
                        .load::<etal_domain::order::Order>(order)
                        .await
                        .expect("order");
                    if !state.is_cancelled() {
                        w.app
                            .cancel_order(&w.admin, order)
                            .await
                            .expect("late cancel");
                        late_cancelled.insert(order);
                    }
                }
                w.at(paris(monday, 11, 5)).await;
            }
            monday += Duration::days(7);
        }

        // Invariants: the auditor finds nothing (balanced, conserved overall and per sale,
        // every fee recomputes to the cent, no sale paid twice)...
        let report = etal_app::audit::check(&w.db.pool, &|_| {})
            .await
            .expect("audit");
        assert!(report.differences.is_empty(), "{:#?}", report.differences);
        assert!(report.trial_balance.is_balanced());
        assert!(report.conservation.holds());
        // ...each balance adds up and nothing was paid twice...
        for s in &sellers {
            let bal = w.balance(s.producer).await;
            assert_eq!(
                bal.credited_total(),
                bal.paid_total() + bal.balance_held() + bal.in_flight()
            );
            let paid: Money = w.transfers(s.producer).await.iter().map(|(_, a)| *a).sum();
            assert_eq!(paid, bal.paid_total());
            // Debits (late refunds, fees owed on site) come off the credited total when they are
            // recorded; a producer paid before a debit owes it until a payout recovers it, so
            // what was paid never exceeds the credits before the debits still open.
            let open_debits: Money = bal.debits().values().map(|d| d.amount).sum();
            assert!(
                paid <= bal.credited_total() + open_debits,
                "paid {paid}, credited {}, open debits {open_debits}",
                bal.credited_total()
            );
        }
        // ...and each producer keeps exactly what their lines are worth now, read from the
        // order aggregates (independent of the attribution code).
        // An on-site sale's fees are computed at its validation: on what its lines were worth
        // then (a later cancellation on site refunds nothing through the platform).
        let mut worth: BTreeMap<(SaleId, ProducerId), Money> = BTreeMap::new();
        let mut worth_at_validation: BTreeMap<(SaleId, ProducerId), Money> = BTreeMap::new();
        for (sale, order) in &all_orders {
            let (state, _) = w
                .app
                .load::<etal_domain::order::Order>(*order)
                .await
                .expect("order");
            for l in state.lines() {
                let v = if state.is_cancelled() {
                    Money::ZERO
                } else {
                    l.amount_incl_vat
                };
                *worth.entry((*sale, l.producer)).or_default() += v;
                let then = if late_cancelled.contains(order) {
                    l.amount_incl_vat
                } else {
                    v
                };
                *worth_at_validation.entry((*sale, l.producer)).or_default() += then;
            }
        }
        for s in &sellers {
            let stream = EventLog::stream(&w.db.pool, "producer_balance", &s.producer.to_string())
                .await
                .expect("stream");
            let mut kept: BTreeMap<SaleId, Money> = BTreeMap::new();
            for e in stream {
                match e.decode::<ProducerBalanceEvent>() {
                    Ok(ProducerBalanceEvent::SaleCredited {
                        sale,
                        gross_incl_vat,
                        refunds,
                        ..
                    }) => *kept.entry(sale).or_default() += gross_incl_vat - refunds,
                    // R-PAY-2: refunds after crediting come off what the producer keeps.
                    Ok(ProducerBalanceEvent::RefundDebited { sale, amount, .. }) => {
                        *kept.entry(sale).or_default() -= amount
                    }
                    Ok(ProducerBalanceEvent::SaleSettledOnSite {
                        sale,
                        sales_incl_vat,
                        ..
                    }) => {
                        let then = worth_at_validation
                            .get(&(sale, s.producer))
                            .copied()
                            .unwrap_or_default();
                        assert_eq!(sales_incl_vat, then, "sold on site by {}", s.producer);
                    }
                    _ => {}
                }
            }
            for (sale, kept) in kept {
                let expected = worth.get(&(sale, s.producer)).copied().unwrap_or_default();
                assert_eq!(kept, expected, "kept by {} of {sale}", s.producer);
            }
        }
        // ...and the projection agrees with its rebuild.
        w.catch_up_ledger().await;
        let c = conservation_as_of(&w.db.pool, d(2023, 12, 31))
            .await
            .expect("conservation");
        assert!(c.holds(), "{c:?}");
        assert_eq!(c.payments, report.conservation.payments);
        assert_eq!(c.payouts, report.conservation.payouts);
        let ledger = etal_projections::by_name("ledger").expect("ledger");
        let verify = etal_projections::verify(&w.db.pool, ledger.as_ref(), &|_| {})
            .await
            .expect("verify");
        assert!(verify.diffs.is_empty(), "{:?}", verify.diffs);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // MONEY_CASES=n runs more random histories (6 in `make test`).
            cases: std::env::var("MONEY_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(6),
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// R-PAY-2, R-PAY-3, R-FEE-3, R-FEE-4: random orders, shortages with refunds,
        /// validations and transfer failures keep the ledger balanced, money conserved, every
        /// fee recomputable and every sale paid at most once.
        #[test]
        fn r_pay_3_money_is_conserved_whatever_happens(plan in plan()) {
            let rt = tokio::runtime::Runtime::new().expect("runtime");
            rt.block_on(run(plan));
        }
    }
}

/// R-FEE-5: every configured platform model loads (the file set the service starts with), and
/// the default schedule is Cagette's.
#[test]
fn r_fee_5_the_fee_configuration_loads_every_platform_model() {
    let fees = etal_app::money::embedded_fee_schedules();
    for name in [
        "cagette",
        "locavor_presence",
        "locavor_preparation",
        "locavor_depot_vente",
        "ofn_monthly",
        "ruche",
        "pro_billed_yearly",
        "pro_billed_monthly",
    ] {
        assert!(fees.get(name).is_some(), "{name} missing");
    }
    assert!(
        fees.schedules.len() >= 5,
        "{:?}",
        fees.schedules.iter().map(|s| &s.name).collect::<Vec<_>>()
    );
    let loaded = std::env::set_current_dir(etal_tests::project_root())
        .map(|_| etal_app::money::load_fee_schedules().expect("config/fees"));
    assert_eq!(loaded.expect("cwd").schedules.len(), fees.schedules.len());
}

/// R-FEE-5, R-FEE-2: another platform's model by configuration alone. With the `ruche`
/// schedule, 20 % of sales excl. VAT is shared 8.35 % to the market's host and 11.65 % to the
/// platform, plus 20 % VAT; the ledger credits the host's revenue account of that market.
#[tokio::test]
async fn r_fee_5_a_ruche_schedule_pays_the_host_and_the_platform_their_shares() {
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    w.app.settings.fee_schedule = "ruche".into();
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Confiture", "10.55").await; // 10.00 excl. 5.5 % VAT
    let sale = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(sale, &[(&a, 10)]).await; // 105.50 incl. VAT, 100.00 excl.
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    let fees: Vec<(String, Money, Money)> = w
        .balance(a.producer)
        .await
        .statement(payout_id_for(a.producer, d(2023, 9, 18)))
        .expect("statement")
        .lines[0]
        .fees
        .iter()
        .map(|l| {
            (
                format!("{:?}", l.beneficiary),
                l.base_amount,
                l.amount_incl_vat,
            )
        })
        .collect();
    assert_eq!(
        fees,
        vec![
            ("MarketHost".to_string(), m("100.00"), m("10.02")),
            ("Platform".to_string(), m("100.00"), m("13.98")),
        ]
    );
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 18), m("81.50"))]
    );
    w.catch_up_ledger().await;
    let balances = balances_as_of(&w.db.pool, d(2023, 9, 30))
        .await
        .expect("balances");
    let host = balances
        .iter()
        .find(|b| b.account == "HostFeeRevenue")
        .expect("host revenue");
    assert_eq!((host.party, host.credits), (Some(market.0), m("8.35")));
    let per_market = fee_ledger(
        &w.db.pool,
        FeeGrouping::Market,
        d(2023, 9, 1),
        d(2023, 9, 30),
    )
    .await
    .expect("fee ledger");
    assert_eq!(per_market.len(), 2, "{per_market:?}");
    assert!(per_market.iter().all(|f| f.key == market.to_string()));
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-FEE-4, R-FEE-1: the fees are charged on what was paid, a fixed part per payment split
/// across the producers of the payment; a refund gives back the variable part in proportion,
/// and a producer's fixed share once their share of that payment is wholly refunded.
#[tokio::test]
async fn r_fee_4_refunds_give_back_their_fees_and_a_fixed_part_is_charged_once() {
    let schedules = etal_domain::fees::FeeSchedules::from_json(
        r#"{"schedules": [{"name": "fixed_per_payment", "rules": [
            {"id": "t.online", "version": 1, "valid_from": "2020-01-01", "label": "Paiement",
             "base": "incl_vat", "rate": "0.03", "fixed": {"amount": "0.30", "per": "payment"},
             "split": [{"beneficiary": "platform", "rate": "0.03"}], "vat_on_fee": "20",
             "applies_to": "online_payment"},
            {"id": "t.service", "version": 1, "valid_from": "2020-01-01", "label": "Service",
             "base": "incl_vat", "rate": "0.06",
             "split": [{"beneficiary": "platform", "rate": "0.06"}], "vat_on_fee": "20",
             "applies_to": "all_sales"}]}]}"#,
    )
    .expect("schedule");
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    w.app = w.app.clone().with_fee_schedules(schedules);
    w.app.settings.fee_schedule = "fixed_per_payment".into();
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Poulet", "10.00").await;
    let b = w.seller(market, "Salade", "10.00").await;
    let sale = w.sale(market, d(2023, 9, 9), &[&a, &b]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let o1 = w.order(sale, &[(&a, 3), (&b, 1)]).await; // 30.00 + 10.00, one payment
    let o2 = w.order(sale, &[(&a, 1)]).await; // 10.00
    w.at(paris(d(2023, 9, 8), 10, 0)).await;
    w.app
        .adjust_quantity(&b.ctx, o1, 1, 0)
        .await
        .expect("B out of salad");
    w.app
        .adjust_quantity(&a.ctx, o2, 0, 0)
        .await
        .expect("o2 emptied");
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;

    let bal_a = w.balance(a.producer).await;
    let credit = &bal_a.credits()[&sale];
    assert_eq!(
        (credit.gross_incl_vat, credit.refunds),
        (m("40.00"), m("10.00"))
    );
    let online = credit
        .fees
        .iter()
        .find(|l| l.rule_id == "t.online")
        .expect("online fee");
    // 3 % of the 40.00 paid, plus A's share of o1's fixed part (0.30 over 30.00 and 10.00:
    // 0.23 and 0.08 rounded, the -0.01 remainder to the largest: 0.22) and o2's whole 0.30.
    assert_eq!(
        (online.base_amount, online.fixed_part),
        (m("40.00"), m("0.52"))
    );
    assert_eq!(online.amount_incl_vat, m("2.06")); // 1.72 + 0.34
                                                   // o2 wholly refunded: a quarter of the variable part (0.30) and o2's fixed part (0.30)
                                                   // come back, VAT 0.12; the service fee gives back 0.60 + 0.12.
    let back = credit
        .fee_refunds
        .iter()
        .find(|r| r.rule_id == "t.online")
        .expect("online fee back");
    assert_eq!(
        (
            back.fixed_back_now,
            back.amount_excl_vat,
            back.amount_incl_vat
        ),
        (m("0.30"), m("0.60"), m("0.72"))
    );
    assert_eq!(credit.net, m("26.50")); // 40 - 10 - 2.06 - 2.88 + 0.72 + 0.72
    let bal_b = w.balance(b.producer).await;
    let credit_b = &bal_b.credits()[&sale];
    assert_eq!((credit_b.refunds, credit_b.net), (m("10.00"), Money::ZERO));
    let charged: Money = credit_b.fees.iter().map(|l| l.amount_incl_vat).sum();
    let given_back: Money = credit_b.fee_refunds.iter().map(|r| r.amount_incl_vat).sum();
    assert!(charged > Money::ZERO);
    assert_eq!(
        given_back, charged,
        "a wholly refunded share gets every fee back, its fixed share included"
    );

    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 18), m("26.50"))]
    );
    assert!(w.transfers(b.producer).await.is_empty());
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-ACC-3, R-FEE-5, R-PAY-2: billing per period on the service's scheduler (fake clock).
/// A schedule with one Open Food Network style rule (5.00 a month + 2 % of the month's
/// turnover excl. VAT, capped at 50.00, nothing below 500.00, 20 % VAT) and no per-sale fee.
/// Producer A moves to Pro billed monthly on 28 Aug 2023 (its first whole month is September),
/// producer B to Pro billed yearly. The monthly runs (1st of the month, 05:00 Paris) bill:
/// - 1 Sept: A's September subscription, 39.00 + 7.80; B's year, 12 x 29.00 = 348.00 + 69.60;
/// - 1 Oct: A's October subscription, and A's September OFN fee on 2,500.00 of sales
///   (2,369.67 excl. VAT: 5.00 + 47.39 = 52.39, capped at 50.00, + 10.00 VAT); B nothing;
/// - 1 Nov: A's November subscription; October's 200.00 of sales (189.57 excl.) are below the
///   threshold: no OFN fee.
/// A's payouts deduct them: Monday 18 Sept pays 2,500.00 - 46.80; 25 Sept and 2 Oct have
/// nothing to pay; the 106.80 billed on 1 Oct wait for October's sale, paid Monday 16 Oct
/// 200.00 - 106.80 = 93.20. A re-run of a month bills nothing twice; every bill's lines
/// recompute; the fee ledger equals the journal; `etal audit check` exits 0.
#[tokio::test]
async fn r_acc_3_subscriptions_and_period_fees_are_billed_once_a_month_and_deducted_at_payouts() {
    use etal_domain::config::SubscriptionBilling;
    let schedules = etal_domain::fees::FeeSchedules::from_json(
        r#"{"schedules": [{"name": "test_ofn", "rules": [
            {"id": "t.ofn", "version": 1, "valid_from": "2020-01-01", "label": "Contribution",
             "base": "excl_vat", "rate": "0.02",
             "fixed": {"amount": "5.00", "per": "period", "beneficiary": "platform"},
             "cap_per_period": "50.00", "turnover_threshold": "500.00", "period": "monthly",
             "split": [{"beneficiary": "platform", "rate": "0.02"}], "vat_on_fee": "20",
             "applies_to": "all_sales"}]}]}"#,
    )
    .expect("schedule");
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    w.app = w.app.clone().with_fee_schedules(schedules);
    w.app.settings.fee_schedule = "test_ofn".into();
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Agneau", "100.00").await;
    let b = w.seller(market, "Miel", "10.00").await;
    w.app
        .change_plan(
            &a.ctx,
            a.producer,
            PlanKind::Pro,
            SubscriptionBilling::Monthly,
        )
        .await
        .expect("A on Pro monthly");
    w.app
        .change_plan(
            &b.ctx,
            b.producer,
            PlanKind::Pro,
            SubscriptionBilling::Yearly,
        )
        .await
        .expect("B on Pro yearly");
    w.app
        .schedule_billing_run(d(2023, 9, 1))
        .await
        .expect("billing run");
    let bills = |w: &World, p: ProducerId| {
        let pool = w.db.pool.clone();
        async move {
            EventLog::stream(&pool, "producer_balance", &p.to_string())
                .await
                .expect("stream")
                .iter()
                .filter_map(|e| match e.decode::<ProducerBalanceEvent>() {
                    Ok(ProducerBalanceEvent::PeriodBilled {
                        key, lines, amount, ..
                    }) => {
                        for l in &lines {
                            assert_eq!(&etal_domain::fees::recompute(l), l, "{key}");
                        }
                        Some((key, amount))
                    }
                    _ => None,
                })
                .collect::<Vec<_>>()
        }
    };

    // 1 Sept: the subscriptions of September.
    w.at(paris(d(2023, 9, 1), 5, 1)).await;
    assert_eq!(
        bills(&w, a.producer).await,
        vec![("subscription:2023-09".to_string(), m("46.80"))]
    );
    assert_eq!(
        bills(&w, b.producer).await,
        vec![("subscription:2023-09".to_string(), m("417.60"))]
    );
    let sept = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(sept, &[(&a, 25)]).await; // 2,500.00
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sept).await.expect("validate");
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![(d(2023, 9, 18), m("2453.20"))],
        "2,500.00 less September's subscription"
    );
    let statement = w
        .balance(a.producer)
        .await
        .statement(payout_id_for(a.producer, d(2023, 9, 18)))
        .expect("statement")
        .clone();
    assert_eq!(
        statement
            .deductions
            .iter()
            .map(|d| (d.id.as_str(), d.amount, d.fees.len()))
            .collect::<Vec<_>>(),
        vec![("period:subscription:2023-09", m("46.80"), 1)],
        "the statement lists the subscription with its line"
    );

    // 1 Oct: October's subscription and September's capped OFN fee.
    w.at(paris(d(2023, 10, 1), 5, 1)).await;
    assert_eq!(
        bills(&w, a.producer).await,
        vec![
            ("subscription:2023-09".to_string(), m("46.80")),
            ("subscription:2023-10".to_string(), m("46.80")),
            (format!("period:{market}:2023-09"), m("60.00")),
        ]
    );
    assert_eq!(bills(&w, b.producer).await.len(), 1, "yearly: once a year");
    let ofn = w
        .balance(a.producer)
        .await
        .debits()
        .get(&format!("period:period:{market}:2023-09"))
        .expect("the OFN debit")
        .fees[0]
        .clone();
    assert_eq!(
        (
            ofn.base_amount,
            ofn.fixed_part,
            ofn.cap,
            ofn.amount_excl_vat,
            ofn.vat
        ),
        (
            m("2369.67"),
            m("5.00"),
            Some(m("50.00")),
            m("50.00"),
            m("10.00")
        ),
        "R-FEE-5: 5.00 + 2 % of 2,369.67 = 52.39, capped"
    );
    // A re-run of the month bills nothing twice.
    let again = w
        .app
        .run_billing(d(2023, 10, 1), "again")
        .await
        .expect("re-run");
    assert_eq!((again.bills, again.amount), (0, Money::ZERO));
    // No credit to pay from: the 106.80 wait.
    w.at(paris(d(2023, 10, 2), 6, 0)).await;
    assert_eq!(w.transfers(a.producer).await.len(), 1);
    assert_eq!(w.balance(a.producer).await.owed(), m("106.80"));

    let oct = w.sale(market, d(2023, 10, 7), &[&a]).await;
    w.at(paris(d(2023, 10, 2), 10, 0)).await;
    w.order(oct, &[(&a, 2)]).await; // 200.00
    w.at(paris(d(2023, 10, 7), 14, 30)).await;
    w.app.validate_sale(&w.admin, oct).await.expect("validate");
    w.at(paris(d(2023, 10, 16), 6, 0)).await;
    assert_eq!(
        w.transfers(a.producer).await,
        vec![
            (d(2023, 9, 18), m("2453.20")),
            (d(2023, 10, 16), m("93.20"))
        ],
        "200.00 less October's subscription and September's OFN fee"
    );

    // 1 Nov: November's subscription; October's turnover is below the threshold.
    w.at(paris(d(2023, 11, 1), 5, 1)).await;
    let a_bills = bills(&w, a.producer).await;
    assert_eq!(a_bills.len(), 4, "{a_bills:?}");
    assert_eq!(a_bills[3], ("subscription:2023-11".to_string(), m("46.80")));
    assert_eq!(bills(&w, b.producer).await.len(), 1);
    assert_eq!(w.balance(b.producer).await.owed(), m("417.60"));

    // The fee ledger (subscriptions have no market: key "") equals the journal's fee accounts.
    w.catch_up_ledger().await;
    let fees = fee_ledger(
        &w.db.pool,
        FeeGrouping::Producer,
        d(2023, 9, 1),
        d(2023, 11, 30),
    )
    .await
    .expect("fee ledger");
    let of = |p: ProducerId| -> Money {
        fees.iter()
            .filter(|f| f.key == p.to_string())
            .map(|f| f.amount_incl_vat)
            .sum()
    };
    assert_eq!(of(a.producer), m("200.40")); // 3 x 46.80 + 60.00
    assert_eq!(of(b.producer), m("417.60"));
    let balances = balances_as_of(&w.db.pool, d(2023, 11, 30))
        .await
        .expect("balances");
    let revenue: Money = balances
        .iter()
        .filter(|b| b.account == "PlatformFeeRevenue")
        .map(|b| b.credits - b.debits)
        .sum();
    let excl: Money = fees.iter().map(|f| f.amount_excl_vat).sum();
    assert_eq!(revenue, excl, "feeLedger = the journal's fee revenue");
    let c = conservation_as_of(&w.db.pool, d(2023, 11, 30))
        .await
        .expect("conservation");
    assert!(c.holds(), "{c:?}");
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// R-PAY-1, R-PAY-2, R-ORD-5 with Stripe (a local fake of its API): an online order creates a
/// PaymentIntent, is paid by its `payment_intent.succeeded` webhook (applied once), loses two
/// units (a partial refund through the adapter), is validated and credited, and the Monday
/// payout is a transfer to the producer's connected account; the audit finds nothing and money
/// is conserved.
#[tokio::test]
async fn r_pay_1_with_stripe_an_order_is_paid_by_webhook_refunded_and_transferred_on_monday() {
    let fake = fake_stripe::FakeStripe::start().await;
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    w.app.payments = Arc::new(
        etal_app::stripe::StripeProvider::new(etal_app::stripe::StripeConfig {
            api_base: fake.base.clone(),
            secret_key: "sk_test_etal".into(),
            api_version: None,
        })
        .expect("client"),
    );
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Miel", "9.00").await;
    w.app
        .set_payout_account(&a.ctx, a.producer, Some("acct_1Miel".into()))
        .await
        .expect("payout account");
    let sale = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let order = w.order(sale, &[(&a, 10)]).await; // 90.00
    let create = fake.seen("/v1/payment_intents")[0].clone();
    assert_eq!(create.form["amount"], "9000");
    let (state, _) = w
        .app
        .load::<etal_domain::order::Order>(order)
        .await
        .expect("order");
    assert_eq!(state.paid(), Money::ZERO);
    let (payment, awaited) = state.awaiting().iter().next().expect("awaited");
    let event = |id: &str| -> etal_app::stripe::StripeEvent {
        serde_json::from_str(&fake_stripe::event(
            id,
            "payment_intent.succeeded",
            serde_json::json!({"id": awaited.provider_ref, "amount_received": 9000,
                "metadata": {"order_id": order.to_string(), "payment_id": payment.0.to_string()}}),
        ))
        .expect("event")
    };
    let first = w
        .app
        .apply_stripe_event(&event("evt_paid"))
        .await
        .expect("webhook");
    assert_eq!(first, etal_app::stripe::WebhookOutcome::Applied);
    let again = w
        .app
        .apply_stripe_event(&event("evt_paid"))
        .await
        .expect("again");
    assert_eq!(again, first, "a duplicate answers the first outcome");
    let (state, _) = w
        .app
        .load::<etal_domain::order::Order>(order)
        .await
        .expect("order");
    assert_eq!(state.paid(), m("90.00"));
    assert!(state.awaiting().is_empty());

    // Two units short: 18.00 back through Stripe.
    w.app
        .adjust_quantity(&a.ctx, order, 0, 8)
        .await
        .expect("adjust");
    let refunds = fake.seen("/v1/refunds");
    assert_eq!(refunds.len(), 1);
    assert_eq!(
        (
            refunds[0].form["amount"].as_str(),
            refunds[0].form["payment_intent"].as_str()
        ),
        ("1800", awaited.provider_ref.as_str())
    );

    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    let net = w.balance(a.producer).await.credited_total();
    // 72.00 - 3 % (2.16 + 0.43) - 6 % (4.32 + 0.86) = 64.23
    assert_eq!(net, m("64.23"));
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    let transfers = fake.seen("/v1/transfers");
    assert_eq!(transfers.len(), 1);
    let t = &transfers[0];
    assert_eq!(t.form["amount"], "6423");
    assert_eq!(t.form["currency"], "eur");
    assert_eq!(t.form["destination"], "acct_1Miel");
    let payout = payout_id_for(a.producer, d(2023, 9, 18));
    assert_eq!(
        t.idempotency_key.as_deref(),
        Some(transfer_key(payout, 1).as_str())
    );
    assert_eq!(w.transfers(a.producer).await, vec![(d(2023, 9, 18), net)]);
    assert_eq!(t.form["metadata[payout_id]"], payout.0.to_string());

    // Stripe reverses the transfer (the connected account was closed): the payout is the
    // producer's balance again, once however often Stripe says it, and the next Monday pays it.
    let reversed = |id: &str| -> etal_app::stripe::StripeEvent {
        serde_json::from_str(&fake_stripe::event(
            id,
            "transfer.reversed",
            serde_json::json!({"id": "tr_00000003", "object": "transfer", "amount_reversed": 6423,
                "metadata": {"producer_id": a.producer.to_string(), "payout_id": payout.0.to_string()}}),
        ))
        .expect("event")
    };
    w.at(paris(d(2023, 9, 20), 10, 0)).await;
    for _ in 0..2 {
        let outcome = w
            .app
            .apply_stripe_event(&reversed("evt_rev"))
            .await
            .expect("reversal");
        assert_eq!(outcome, etal_app::stripe::WebhookOutcome::Applied);
    }
    assert_eq!(
        w.balance_events(a.producer, "PayoutReturnedByBank").await,
        1
    );
    assert_eq!(w.balance(a.producer).await.balance_held(), net);
    w.at(paris(d(2023, 9, 25), 6, 0)).await;
    assert_eq!(fake.seen("/v1/transfers").len(), 2);
    assert_eq!(w.balance(a.producer).await.paid_total(), net);

    let report = etal_app::audit::check(&w.db.pool, &|_| {})
        .await
        .expect("audit");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    w.catch_up_ledger().await;
    let c = conservation_as_of(&w.db.pool, d(2023, 9, 30))
        .await
        .expect("c");
    assert!(c.holds(), "{c:?}");
    assert_eq!(
        (c.payments, c.refunds, c.payouts),
        (m("90.00"), m("18.00"), net)
    );
    let (code, out, err) = run_etal(&w.db.url, &["audit", "check"]);
    assert_eq!(code, 0, "{out}{err}");
}

/// A valid French IBAN for `account` (11 digits), its check digits computed (ISO 13616).
fn fr_iban(account: u64) -> String {
    let bban = format!("3000600001{account:011}89");
    let digits: String = format!("{bban}FR00")
        .chars()
        .map(|c| {
            if c.is_ascii_digit() {
                c.to_string()
            } else {
                (c as u32 - 'A' as u32 + 10).to_string()
            }
        })
        .collect();
    let rest = digits
        .chars()
        .fold(0u32, |r, c| (r * 10 + c.to_digit(10).unwrap_or(0)) % 97);
    format!("FR{:02}{bban}", 98 - rest)
}

/// R-PAY-4, R-PAY-5 with `ETAL_PAYOUTS=sepa`: producers' bank details (checked, kept outside the
/// log, masked in it); the Monday run of 3 producers writes one pain.001.001.09 file that the
/// official XSD validates (NbOfTxs, CtrlSum, EndToEndId = payout id); a 4th producer who changed
/// their bank details 3 days before is held until the owner confirms, then paid; a transfer the
/// bank returns is the producer's balance again and is paid by the next Monday's file; the
/// ledger balances and the audit finds nothing.
#[tokio::test]
async fn r_pay_5_a_monday_run_pays_by_one_sepa_file_and_a_bank_return_is_paid_again() {
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let debtor = etal_app::sepa::Debtor {
        name: "Coopérative des marchés".into(),
        iban: fr_iban(99),
        bic: "AGRIFRPP".into(),
    };
    w.app.settings.payouts = etal_app::payouts::PayoutRail::Sepa(debtor.clone());
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let names = [
        "Ferme de l'Étang — Léa & Zoé",
        "Miel Bouvier",
        "Boulangerie Pérès",
        "GAEC Noël",
    ];
    let mut sellers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let s = w.seller(market, &format!("Produit {i}"), "10.00").await;
        // Bad details are refused and write nothing.
        let bad = w
            .app
            .set_bank_details(
                &s.ctx,
                s.producer,
                name,
                "FR7630006000011234567890188",
                "AGRIFRPP",
            )
            .await;
        assert!(
            matches!(
                &bad,
                Err(etal_app::AppError::Rejected {
                    code: "INVALID_IBAN",
                    ..
                })
            ),
            "{bad:?}"
        );
        let bad = w
            .app
            .set_bank_details(&s.ctx, s.producer, name, &fr_iban(i as u64 + 1), "DEUTDEFF")
            .await;
        assert!(
            matches!(
                &bad,
                Err(etal_app::AppError::Rejected {
                    code: "BIC_COUNTRY_MISMATCH",
                    ..
                })
            ),
            "{bad:?}"
        );
        w.app
            .set_bank_details(
                &s.ctx,
                s.producer,
                name,
                &fr_iban(i as u64 + 1),
                "agrifrpp882",
            )
            .await
            .expect("bank details");
        sellers.push(s);
    }
    // A collaborator may not set them.
    let collab = Ctx::new(Actor::new(UserId::new(), Role::Producer));
    w.app
        .grant_access(&sellers[0].ctx, sellers[0].producer, collab.actor.user)
        .await
        .expect("grant");
    let refused = w
        .app
        .set_bank_details(&collab, sellers[0].producer, "X", &fr_iban(7), "AGRIFRPP")
        .await;
    assert!(
        matches!(
            &refused,
            Err(etal_app::AppError::Rejected {
                code: "NOT_THE_OWNER",
                ..
            })
        ),
        "{refused:?}"
    );
    // The log keeps the masked IBAN only, never the holder.
    let logged: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM events WHERE event_type = 'BankDetailsChanged'",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("events");
    assert_eq!(logged.len(), 4);
    for (p, i) in logged.iter().zip(1u64..) {
        assert!(
            !p.contains(&fr_iban(i)[4..]) && !p.contains("Bouvier"),
            "{p}"
        );
        assert!(
            p.contains("FR76 **** ****") || p.contains("**** ****"),
            "{p}"
        );
    }

    let refs: Vec<&Seller> = sellers.iter().collect();
    let sale = w.sale(market, d(2023, 9, 9), &refs).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    for (i, s) in sellers.iter().enumerate() {
        w.order(sale, &[(s, i as i64 + 1)]).await;
    }
    // The 4th changes their bank details on Friday 15, 3 days before the payout.
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, sale).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    w.at(paris(d(2023, 9, 15), 12, 0)).await;
    w.app
        .set_bank_details(
            &sellers[3].ctx,
            sellers[3].producer,
            names[3],
            &fr_iban(44),
            "AGRIFRPP",
        )
        .await
        .expect("new details");
    w.at(paris(d(2023, 9, 18), 6, 0)).await;
    let nets: Vec<Money> = {
        let mut v = Vec::new();
        for s in &sellers {
            v.push(w.balance(s.producer).await.credited_total());
        }
        v
    };
    for s in &sellers[..3] {
        assert_eq!(w.transfers(s.producer).await.len(), 1, "paid by the file");
    }
    assert!(w.transfers(sellers[3].producer).await.is_empty(), "held");
    assert_eq!(w.balance(sellers[3].producer).await.balance_held(), nets[3]);

    // The file of Monday 18: 3 transfers, valid against the official schema.
    let file = w.app.sepa_file(d(2023, 9, 18)).await.expect("file");
    assert_eq!(file.transfers, 3);
    let sum: Money = nets[..3].iter().copied().sum();
    assert_eq!(Money::round(file.control_sum), sum);
    assert_eq!(
        file.xml.matches("<NbOfTxs>3</NbOfTxs>").count(),
        2,
        "{}",
        file.xml
    );
    assert_eq!(
        file.xml
            .matches(&format!("<CtrlSum>{sum}</CtrlSum>"))
            .count(),
        2
    );
    for s in &sellers[..3] {
        let payout = payout_id_for(s.producer, d(2023, 9, 18));
        assert!(file
            .xml
            .contains(&format!("<EndToEndId>{}</EndToEndId>", payout.0.simple())));
    }
    assert!(
        file.xml.contains("<Nm>Ferme de l'Etang -- Lea"),
        "{}",
        file.xml
    );
    etal_tests::assert_valid_xml("app/schemas/pain.001.001.09.xsd", &file.xml);
    // The CLI writes the same file.
    let cli = std::process::Command::new(etal_tests::etal_bin())
        .args(["payouts", "export", "--monday", "2023-09-18"])
        .env("DATABASE_URL", &w.db.url)
        .env("ETAL_PAYOUTS", "sepa")
        .env("ETAL_SEPA_DEBTOR_NAME", &debtor.name)
        .env("ETAL_SEPA_DEBTOR_IBAN", &debtor.iban)
        .env("ETAL_SEPA_DEBTOR_BIC", &debtor.bic)
        .env("RUST_LOG", "warn")
        .output()
        .expect("etal payouts export");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&cli.stdout), file.xml);
    assert!(String::from_utf8_lossy(&cli.stderr).contains("3 transfers"));
    let platform = Ctx::new(Actor::new(UserId::new(), Role::PlatformAdmin));
    w.app
        .mark_sepa_file_sent(&platform, &file.message_id)
        .await
        .expect("sent");

    // The owner confirms: the held payout is paid by a run scheduled at once.
    w.at(paris(d(2023, 9, 19), 9, 0)).await;
    w.app
        .confirm_bank_details(&sellers[3].ctx, sellers[3].producer)
        .await
        .expect("confirm");
    w.at(paris(d(2023, 9, 19), 9, 1)).await;
    assert_eq!(w.transfers(sellers[3].producer).await.len(), 1);
    let tuesday = w.app.sepa_file(d(2023, 9, 19)).await.expect("file");
    assert_eq!(tuesday.transfers, 1);
    assert!(tuesday.xml.contains(&fr_iban(44)), "the new account");

    // The bank returns the 2nd producer's transfer: their balance again, paid next Monday.
    let b = &sellers[1];
    let returned = payout_id_for(b.producer, d(2023, 9, 18));
    w.app
        .record_bank_return(&platform, b.producer, returned, "compte clos (AC04)")
        .await
        .expect("return");
    w.app
        .record_bank_return(&platform, b.producer, returned, "compte clos (AC04)")
        .await
        .expect("a second time changes nothing");
    assert_eq!(
        w.balance_events(b.producer, "PayoutReturnedByBank").await,
        1
    );
    let bal = w.balance(b.producer).await;
    assert_eq!(
        (bal.balance_held(), bal.paid_total()),
        (nets[1], Money::ZERO)
    );
    w.at(paris(d(2023, 9, 25), 6, 0)).await;
    let next = w.app.sepa_file(d(2023, 9, 25)).await.expect("next file");
    assert_eq!(next.transfers, 1);
    assert_eq!(Money::round(next.control_sum), nets[1]);
    assert_eq!(w.balance(b.producer).await.paid_total(), nets[1]);
    // The file sent on the 18th never changed.
    assert_eq!(
        w.app.sepa_file(d(2023, 9, 18)).await.expect("again").xml,
        file.xml
    );

    let report = etal_app::audit::check(&w.db.pool, &|_| {})
        .await
        .expect("audit");
    assert!(report.differences.is_empty(), "{:#?}", report.differences);
    w.catch_up_ledger().await;
    let c = conservation_as_of(&w.db.pool, d(2023, 9, 30))
        .await
        .expect("c");
    assert!(c.holds(), "{c:?}");
    let total: Money = nets.iter().copied().sum();
    assert_eq!(c.payouts, total, "each producer paid once in the end");
}

/// R-INV-1: 200 invoices of one series issued at once get 200 consecutive numbers, no gap and no
/// duplicate; refused requests in the same burst take none; asked again, each order keeps its
/// invoice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_inv_1_two_hundred_invoices_at_once_take_consecutive_numbers() {
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    // 200 x 3.00: within the Discovery plan's yearly cap.
    let a = w.seller(market, "Miel", "3.00").await;
    let sale = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let mut orders = Vec::new();
    for _ in 0..200 {
        orders.push(w.order(sale, &[(&a, 1)]).await);
    }
    w.app
        .set_billing_identity(
            &a.ctx,
            a.producer,
            etal_app::invoices::BillingIdentity {
                legal_name: "Miel Bouvier".into(),
                siren: "732829320".into(),
                vat_number: Some("FR44732829320".into()),
                vat_franchise: false,
                address_line: "Le Bourg".into(),
                postcode: "24110".into(),
                city: "Saint-Astier".into(),
                country: "FR".into(),
            },
        )
        .await
        .expect("identity");
    w.app
        .accept_billing_mandate(
            &a.ctx,
            a.producer,
            etal_app::invoices::BILLING_MANDATE_VERSION,
        )
        .await
        .expect("mandate");
    let stranger = ProducerId::new();
    let mut tasks = Vec::new();
    for (i, &o) in orders.iter().enumerate() {
        let (app, ctx, p) = (w.app.clone(), a.ctx.clone(), a.producer);
        tasks.push(tokio::spawn(async move {
            app.issue_order_invoice(&ctx, o, p)
                .await
                .map(|d| d.value.number)
        }));
        if i % 10 == 0 {
            let (app, ctx) = (w.app.clone(), a.ctx.clone());
            tasks.push(tokio::spawn(async move {
                app.issue_order_invoice(&ctx, o, stranger)
                    .await
                    .map(|d| d.value.number)
            }));
        }
    }
    let mut numbers = Vec::new();
    let mut refused = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(n) => numbers.push(n),
            // The producer asks for another producer's invoice: not theirs to see.
            Err(etal_app::AppError::NotFound {
                what: "producer", ..
            }) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(refused, 20);
    numbers.sort();
    let expected: Vec<String> = (1..=200).map(|n| format!("F-{n:06}")).collect();
    assert_eq!(numbers, expected);
    // The log agrees: 200 InvoiceIssued, sequences 1..=200 in stream order.
    let seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT (payload->'InvoiceIssued'->>'sequence')::bigint FROM events \
         WHERE aggregate_type = 'invoice_series' ORDER BY sequence",
    )
    .fetch_all(&w.db.pool)
    .await
    .expect("events");
    assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
    let again = w
        .app
        .issue_order_invoice(&a.ctx, orders[7], a.producer)
        .await
        .expect("again");
    assert!(again.value.number.starts_with("F-"));
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM invoice_documents")
        .fetch_one(&w.db.pool)
        .await
        .expect("count");
    assert_eq!(count, 200);
}

/// R-INV-3: the billing run of 1 October invoices each producer the platform's fees of
/// September (one line per rule, VAT 20 %), once however often it runs; the XML is valid
/// Factur-X EN 16931 and the producer's people read it.
#[tokio::test]
async fn r_inv_3_the_monthly_run_invoices_the_platforms_fees_once() {
    let mut w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let identity = |name: &str, siren: &str, vat: &str| etal_app::invoices::BillingIdentity {
        legal_name: name.into(),
        siren: siren.into(),
        vat_number: Some(vat.into()),
        vat_franchise: false,
        address_line: "1 place du Marché".into(),
        postcode: "24000".into(),
        city: "Périgueux".into(),
        country: "FR".into(),
    };
    w.app.settings.platform_identity =
        Some(identity("Coopérative etal", "542051180", "FR59542051180"));
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Miel", "9.00").await;
    w.app
        .set_billing_identity(
            &a.ctx,
            a.producer,
            identity("Miel Bouvier", "732829320", "FR44732829320"),
        )
        .await
        .expect("identity");
    let s1 = w.sale(market, d(2023, 9, 9), &[&a]).await;
    let s2 = w.sale(market, d(2023, 9, 16), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    w.order(s1, &[(&a, 10)]).await; // 90.00
    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, s1).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    let o2 = w.order(s2, &[(&a, 5)]).await; // 45.00
    w.at(paris(d(2023, 9, 16), 14, 30)).await;
    w.app.validate_sale(&w.admin, s2).await.expect("validate");
    w.at(paris(d(2023, 9, 16), 14, 31)).await;
    // The fees of September as the log has them (both sales credited in September).
    let logged: Money = EventLog::stream(&w.db.pool, "producer_balance", &a.producer.to_string())
        .await
        .expect("stream")
        .iter()
        .filter_map(|e| match e.decode::<ProducerBalanceEvent>() {
            Ok(ProducerBalanceEvent::SaleCredited { fees, .. }) => {
                Some(fees.iter().map(|f| f.amount_excl_vat).sum::<Money>())
            }
            _ => None,
        })
        .sum();
    // 135.00 at 3 % + 6 % excl. VAT: 4.05 + 8.10.
    assert_eq!(logged, m("12.15"));
    // 1 October, 05:00: the billing run.
    w.at(paris(d(2023, 10, 1), 5, 0)).await;
    let report = w
        .app
        .run_billing(d(2023, 10, 1), "again")
        .await
        .expect("re-run");
    assert_eq!(
        report.fee_invoices, 1,
        "the same invoice again, not a new one"
    );
    let mine = w.app.fee_invoices_of(a.producer).await.expect("list");
    assert_eq!(mine.len(), 1);
    let inv = &mine[0];
    assert_eq!(inv.number, "P-000001");
    assert_eq!(inv.totals.excl_vat, logged);
    assert_eq!(
        inv.totals.vat,
        logged.times(rust_decimal::Decimal::new(20, 2))
    );
    assert!(w.app.may_read_invoice(a.ctx.actor, inv).await);
    let other = Actor::new(UserId::new(), Role::Producer);
    assert!(!w.app.may_read_invoice(other, inv).await);
    etal_tests::assert_valid_xml(
        "app/schemas/facturx-en16931/Factur-X_EN16931.xsd",
        &inv.cii_xml,
    );
    assert!(inv.cii_xml.contains("542051180") && inv.cii_xml.contains("Miel Bouvier"));

    // R-INV-2, R-FEE-4: 2 October, the 45.00 order of September is cancelled: its fees
    // (1.35 + 2.70 excl. VAT) are given back in October, which charges no new fee. The run of
    // 1 November credits them: a credit note of P-000001, not a negative invoice.
    w.at(paris(d(2023, 10, 2), 10, 0)).await;
    w.app.cancel_order(&w.admin, o2).await.expect("cancel");
    w.at(paris(d(2023, 10, 2), 10, 1)).await;
    assert_eq!(w.balance_events(a.producer, "RefundDebited").await, 1);
    w.at(paris(d(2023, 11, 1), 5, 0)).await;
    w.app
        .run_billing(d(2023, 11, 1), "november")
        .await
        .expect("run");
    let mine = w.app.fee_invoices_of(a.producer).await.expect("list");
    assert_eq!(mine.len(), 2, "{mine:?}");
    let cn = &mine[1];
    assert_eq!(
        (cn.number.as_str(), cn.kind, cn.corrects),
        (
            "P-000002",
            etal_domain::invoice::DocumentKind::CreditNote,
            Some(inv.id)
        )
    );
    assert_eq!(
        (cn.totals.excl_vat, cn.totals.vat, cn.totals.incl_vat),
        (m("4.05"), m("0.81"), m("4.86"))
    );
    etal_tests::assert_valid_xml(
        "app/schemas/facturx-en16931/Factur-X_EN16931.xsd",
        &cn.cii_xml,
    );
    assert!(cn.cii_xml.contains("<ram:TypeCode>381</ram:TypeCode>"));
    assert!(cn
        .cii_xml
        .contains("<ram:IssuerAssignedID>P-000001</ram:IssuerAssignedID>"));
    assert!(w.app.may_read_invoice(a.ctx.actor, cn).await);
    // Run again: the same credit note.
    w.app
        .run_billing(d(2023, 11, 1), "november-again")
        .await
        .expect("run");
    assert_eq!(w.app.fee_invoices_of(a.producer).await.unwrap().len(), 2);
    // The platform's books: the invoice, then its credit note on the other side.
    let fec = w
        .app
        .fec(etal_app::books::Books::Platform, 2023)
        .await
        .unwrap();
    let records = etal_app::fec::parse(&fec.bytes).unwrap();
    etal_app::fec::check(&records).unwrap();
    let on = |piece: &str, journal: &str, account: &str| -> Vec<(Money, Money)> {
        records
            .iter()
            .filter(|r| r.piece_ref == piece && r.journal == journal && r.account == account)
            .map(|r| (Money::round(r.debit), Money::round(r.credit)))
            .collect()
    };
    assert_eq!(on("P-000002", "VT", "411000"), vec![(m("0"), m("4.86"))]);
    assert_eq!(on("P-000002", "VT", "445710"), vec![(m("0.81"), m("0"))]);
    assert_eq!(on("P-000002", "OD", "467000"), vec![(m("0"), m("4.86"))]);
    assert_eq!(
        on("P-000001", "VT", "411000"),
        vec![(inv.totals.incl_vat, m("0"))]
    );
}

/// R-ORD-8, R-INV-3, R-INV-4: a professional customer records its company (SIREN and VAT number
/// checked); the producer gives it its own price in a catalog (a consumer keeps the catalog's
/// price; a customer who is not a professional gets no list); once the sale is validated, the
/// scheduled crediting invoices the professional's order, on the producer's behalf, with the
/// buyer's SIREN and VAT number, the due date, the late-payment rate and the 40 EUR indemnity;
/// the consumer's order is not invoiced (R-INV-6: e-reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_ord_8_a_professional_buys_at_its_own_prices_and_its_order_is_invoiced() {
    use etal_app::professional::ProfessionalProfile;
    async fn events(w: &World) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(&w.db.pool)
            .await
            .unwrap()
    }
    let w = World::new(paris(d(2023, 8, 28), 9, 0)).await;
    let market = w.market(Weekday::Sat, d(2023, 9, 2), (9, 0)).await;
    let a = w.seller(market, "Miel", "9.00").await;
    w.app
        .set_billing_identity(
            &a.ctx,
            a.producer,
            etal_app::invoices::BillingIdentity {
                legal_name: "Miel Bouvier".into(),
                siren: "732829320".into(),
                vat_number: Some("FR44732829320".into()),
                vat_franchise: false,
                address_line: "Le Bourg".into(),
                postcode: "24110".into(),
                city: "Saint-Astier".into(),
                country: "FR".into(),
            },
        )
        .await
        .expect("identity");
    w.app
        .accept_billing_mandate(
            &a.ctx,
            a.producer,
            etal_app::invoices::BILLING_MANDATE_VERSION,
        )
        .await
        .expect("mandate");
    let pro = Ctx::new(Actor::new(UserId::new(), Role::Customer));
    let consumer = Ctx::new(Actor::new(UserId::new(), Role::Customer));
    let profile = |siren: &str, vat: Option<&str>| ProfessionalProfile {
        company_name: "Le Bistrot du Marché SARL".into(),
        siren: siren.into(),
        vat_number: vat.map(Into::into),
        address_line: "3 rue Taillefer".into(),
        postcode: "24000".into(),
        city: "Périgueux".into(),
        country: "fr".into(),
    };
    fn refused<T: std::fmt::Debug>(r: Result<T, etal_app::AppError>) -> String {
        r.unwrap_err().code().to_string()
    }
    // A wrong Luhn key, another company's VAT number: coded refusals, nothing recorded.
    assert_eq!(
        refused(
            w.app
                .set_professional_profile(&pro, profile("303265046", None))
                .await
        ),
        "INVALID_SIREN"
    );
    assert_eq!(
        refused(
            w.app
                .set_professional_profile(&pro, profile("303265045", Some("FR44732829320")))
                .await
        ),
        "VAT_NUMBER_MISMATCH"
    );
    assert!(w
        .app
        .professional_profile(pro.actor.user)
        .await
        .unwrap()
        .is_none());
    // A consumer gets no price list.
    let before = events(&w).await;
    assert_eq!(
        refused(
            w.app
                .set_price_list(
                    &a.ctx,
                    a.catalog,
                    consumer.actor.user,
                    vec![(a.product, m("8.00"))]
                )
                .await
        ),
        "CUSTOMER_NOT_PROFESSIONAL"
    );
    assert_eq!(events(&w).await, before, "a refusal writes nothing");
    let saved = w
        .app
        .set_professional_profile(&pro, profile("303 265 045", Some("FR40303265045")))
        .await
        .expect("profile");
    assert_eq!(
        (saved.siren.as_str(), saved.country.as_str()),
        ("303265045", "FR")
    );
    // Another producer's people do not set this catalog's lists.
    let stranger = Ctx::new(Actor::new(UserId::new(), Role::Producer));
    assert!(w
        .app
        .set_price_list(
            &stranger,
            a.catalog,
            pro.actor.user,
            vec![(a.product, m("8.00"))]
        )
        .await
        .is_err());
    w.app
        .set_price_list(
            &a.ctx,
            a.catalog,
            pro.actor.user,
            vec![(a.product, m("8.00"))],
        )
        .await
        .expect("price list");

    let s1 = w.sale(market, d(2023, 9, 9), &[&a]).await;
    w.at(paris(d(2023, 9, 2), 10, 0)).await;
    let line = |q| {
        vec![LineRequest {
            catalog: a.catalog,
            product: a.product,
            quantity: q,
        }]
    };
    let pro_order = w
        .app
        .place_order(&pro, s1, &line(10), DeliveryRequest::PickUp)
        .await
        .expect("pro order")
        .value
        .order;
    let consumer_order = w
        .app
        .place_order(&consumer, s1, &line(2), DeliveryRequest::PickUp)
        .await
        .expect("consumer order")
        .value
        .order;
    let total = |o| {
        let app = &w.app;
        async move {
            app.load::<etal_domain::order::Order>(o)
                .await
                .unwrap()
                .0
                .total()
        }
    };
    assert_eq!(
        total(pro_order).await,
        m("80.00"),
        "10 x 8.00, the list's price"
    );
    assert_eq!(
        total(consumer_order).await,
        m("18.00"),
        "2 x 9.00, the catalog's price"
    );

    w.at(paris(d(2023, 9, 9), 14, 30)).await;
    w.app.validate_sale(&w.admin, s1).await.expect("validate");
    w.at(paris(d(2023, 9, 9), 14, 31)).await;
    let pro_invoices = w
        .app
        .invoices_of(Some(a.producer), Some(pro.actor.user.0))
        .await
        .unwrap();
    assert_eq!(pro_invoices.len(), 1, "{pro_invoices:?}");
    let inv = &pro_invoices[0];
    assert_eq!(inv.number, "F-000001");
    assert_eq!(
        inv.source,
        format!("order:{pro_order}:producer:{}", a.producer)
    );
    assert!(
        (inv.totals.incl_vat.amount() - rust_decimal::Decimal::new(8000, 2)).abs()
            <= rust_decimal::Decimal::new(1, 2),
        "{:?}",
        inv.totals
    );
    etal_tests::assert_valid_xml(
        "app/schemas/facturx-en16931/Factur-X_EN16931.xsd",
        &inv.cii_xml,
    );
    for needle in [
        "Le Bistrot du Marché SARL",
        "303265045",
        "FR40303265045",
        "3 rue Taillefer",
        "40 €",
        "<ram:DueDateDateTime>",
        "Catégorie : livraison de biens",
    ] {
        assert!(inv.cii_xml.contains(needle), "{needle}:\n{}", inv.cii_xml);
    }
    assert!(w
        .app
        .invoices_of(Some(a.producer), Some(consumer.actor.user.0))
        .await
        .unwrap()
        .is_empty());
    // Invoicing again (a second run of the crediting) finds the same invoice.
    assert_eq!(w.app.invoice_professional_orders(s1).await.unwrap(), 1);
    assert_eq!(
        w.app
            .invoices_of(Some(a.producer), None)
            .await
            .unwrap()
            .len(),
        1
    );
}
