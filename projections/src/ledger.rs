//! The double-entry ledger (design property 9, R-PAY-3) as tables: journal entries, postings
//! and fee lines, posted from order events (payments received, refunds paid) and producer
//! balance events (fees charged, payouts sent, confirmed, returned) by the domain's posting
//! functions ([`etal_domain::ledger::order_entries`], [`etal_domain::ledger::balance_entries`]).
//! Entry ids come from the source event and dates from the events: a rebuild gives the same
//! rows. Query functions: balances and conservation as of any date, the journal (paginated),
//! and the fee ledger per producer, market, sale or month.

use std::collections::HashMap;

use chrono::NaiveDate;
use etal_domain::fees::{FeeLine, FeeRefund};
use etal_domain::ledger::{balance_entries, order_entries, Account, JournalEntry, OrderMoney};
use etal_domain::order::OrderEvent;
use etal_domain::payout::ProducerBalanceEvent;
use etal_domain::Money;
use etal_store::StoredEvent;
use rust_decimal::Decimal;
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::{Projection, ProjectionError};

pub struct LedgerProjection;

/// An account as stored: its kind and the producer or market it belongs to.
pub fn account_parts(account: &Account) -> (&'static str, Option<Uuid>) {
    match account {
        Account::CustomerPayments => ("CustomerPayments", None),
        Account::ProducerPayable(p) => ("ProducerPayable", Some(p.0)),
        Account::PayoutsInFlight(p) => ("PayoutsInFlight", Some(p.0)),
        Account::PlatformFeeRevenue => ("PlatformFeeRevenue", None),
        Account::HostFeeRevenue(m) => ("HostFeeRevenue", Some(m.0)),
        Account::VatCollectedOnFees => ("VatCollectedOnFees", None),
        Account::Refunds => ("Refunds", None),
        Account::PayoutsSent => ("PayoutsSent", None),
        Account::FeesReceivable(p) => ("FeesReceivable", Some(p.0)),
        Account::MarketPayable(m) => ("MarketPayable", Some(m.0)),
    }
}

/// Where an entry comes from, for its row.
struct Source<'a> {
    event: &'a StoredEvent,
    sale: Option<Uuid>,
    market: Option<Uuid>,
    producer: Option<Uuid>,
}

fn bad(event: &StoredEvent, reason: impl ToString) -> ProjectionError {
    ProjectionError::Event {
        projection: "ledger",
        position: event.position.position,
        reason: reason.to_string(),
    }
}

/// An entry and where it comes from: position, source type, id and sequence, sale, market,
/// producer.
type EntryRow = (
    JournalEntry,
    i64,
    String,
    String,
    i64,
    Option<Uuid>,
    Option<Uuid>,
    Option<Uuid>,
);

/// Rows of one batch, written with a few set-based statements at its end.
#[derive(Default)]
struct Rows {
    entries: Vec<EntryRow>,
    fee_lines: Vec<FeeRow>,
}

struct FeeRow {
    entry_id: String,
    line: i32,
    date: NaiveDate,
    producer: Uuid,
    market: Option<Uuid>,
    sale: Option<Uuid>,
    line_data: etal_domain::fees::FeeLine,
}

impl Rows {
    fn entry(&mut self, source: &Source<'_>, entry: JournalEntry) -> Result<(), ProjectionError> {
        if !entry.is_balanced() {
            return Err(bad(
                source.event,
                format!("entry {} is unbalanced", entry.entry_id),
            ));
        }
        let e = source.event;
        self.entries.push((
            entry,
            e.position.position,
            e.aggregate_type.clone(),
            e.aggregate_id.clone(),
            e.sequence,
            source.sale,
            source.market,
            source.producer,
        ));
        Ok(())
    }

    async fn flush(self, conn: &mut PgConnection) -> Result<(), ProjectionError> {
        if !self.entries.is_empty() {
            let en = &self.entries;
            sqlx::query(
                "INSERT INTO ledger_entries (entry_id, global_position, source_type, source_id, sequence, \
                 entry_date, available_on, description, sale_id, market_id, producer_id) \
                 SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::date[], \
                 $7::date[], $8::text[], $9::uuid[], $10::uuid[], $11::uuid[])",
            )
            .bind(en.iter().map(|r| r.0.entry_id.clone()).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.1).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.3.clone()).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.4).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.0.date).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.0.available_on).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.0.description.clone()).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.5).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.6).collect::<Vec<_>>())
            .bind(en.iter().map(|r| r.7).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
            let mut cols = (
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
            );
            for r in en {
                for (i, p) in r.0.postings.iter().enumerate() {
                    let (account, party) = account_parts(&p.account);
                    cols.0.push(r.0.entry_id.clone());
                    cols.1.push(i as i32);
                    cols.2.push(r.0.date);
                    cols.3.push(account);
                    cols.4.push(party);
                    cols.5.push(p.debit.amount());
                    cols.6.push(p.credit.amount());
                    cols.7.push(r.5);
                }
            }
            sqlx::query(
                "INSERT INTO ledger_postings (entry_id, line, entry_date, account, party, debit, credit, sale_id) \
                 SELECT * FROM UNNEST($1::text[], $2::int[], $3::date[], $4::text[], $5::uuid[], $6::numeric[], \
                 $7::numeric[], $8::uuid[])",
            )
            .bind(&cols.0)
            .bind(&cols.1)
            .bind(&cols.2)
            .bind(&cols.3)
            .bind(&cols.4)
            .bind(&cols.5)
            .bind(&cols.6)
            .bind(&cols.7)
            .execute(&mut *conn)
            .await?;
        }
        if !self.fee_lines.is_empty() {
            let f = &self.fee_lines;
            sqlx::query(
                "INSERT INTO ledger_fee_lines (entry_id, line, entry_date, producer_id, \
                 market_id, sale_id, rule_id, rule_version, beneficiary, base_kind, \
                 base_amount, rate, fixed_part, vat_rate, amount_excl_vat, vat, amount_incl_vat) \
                 SELECT * FROM UNNEST($1::text[], $2::int[], $3::date[], $4::uuid[], $5::uuid[], $6::uuid[], \
                 $7::text[], $8::int[], $9::text[], $10::text[], $11::numeric[], $12::numeric[], $13::numeric[], \
                 $14::text[], $15::numeric[], $16::numeric[], $17::numeric[])",
            )
            .bind(f.iter().map(|r| r.entry_id.clone()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.date).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.producer).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.market).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.sale).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.rule_id.clone()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| i32::try_from(r.line_data.rule_version).unwrap_or(i32::MAX)).collect::<Vec<_>>())
            .bind(f.iter().map(|r| json_text(&r.line_data.beneficiary)).collect::<Vec<_>>())
            .bind(f.iter().map(|r| json_text(&r.line_data.base_kind)).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.base_amount.amount()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.rate).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.fixed_part.amount()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.vat_rate.to_string()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.amount_excl_vat.amount()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.vat.amount()).collect::<Vec<_>>())
            .bind(f.iter().map(|r| r.line_data.amount_incl_vat.amount()).collect::<Vec<_>>())
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// The money state of every order the batch touches, read in one query.
async fn order_states(
    conn: &mut PgConnection,
    events: &[StoredEvent],
) -> Result<HashMap<String, OrderMoney>, ProjectionError> {
    let ids: Vec<String> = events
        .iter()
        .filter(|e| e.aggregate_type == "order")
        .map(|e| e.aggregate_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut states: HashMap<String, OrderMoney> = HashMap::with_capacity(ids.len());
    if ids.is_empty() {
        return Ok(states);
    }
    let rows =
        sqlx::query("SELECT order_id, state FROM ledger_order_state WHERE order_id = ANY($1)")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    for row in rows {
        let id: String = row.try_get("order_id")?;
        let state: serde_json::Value = row.try_get("state")?;
        let money = serde_json::from_value(state).map_err(|e| ProjectionError::Event {
            projection: "ledger",
            position: 0,
            reason: format!("order state {id}: {e}"),
        })?;
        states.insert(id, money);
    }
    for id in ids {
        states.entry(id).or_default();
    }
    Ok(states)
}

#[async_trait::async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &'static str {
        "ledger"
    }

    fn aggregate_types(&self) -> Option<&'static [&'static str]> {
        Some(&["order", "producer_balance"])
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "ledger_entries",
            "ledger_postings",
            "ledger_fee_lines",
            "ledger_order_state",
        ]
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        events: &[StoredEvent],
    ) -> Result<(), ProjectionError> {
        let mut orders = order_states(conn, events).await?;
        let mut rows = Rows::default();
        for e in events {
            let sequence = u64::try_from(e.sequence).map_err(|_| bad(e, "negative sequence"))?;
            match e.aggregate_type.as_str() {
                "order" => {
                    let event: OrderEvent = e.decode().map_err(|x| bad(e, x))?;
                    let state = orders
                        .get_mut(&e.aggregate_id)
                        .ok_or_else(|| bad(e, "order state missing"))?;
                    let entries = order_entries(state, &e.aggregate_id, sequence, &event);
                    let (sale, market) = (state.sale.map(|s| s.0), state.market.map(|m| m.0));
                    for entry in entries {
                        let producer = entry
                            .entry_id
                            .split(':')
                            .nth(3)
                            .and_then(|p| p.parse().ok());
                        let source = Source {
                            event: e,
                            sale,
                            market,
                            producer,
                        };
                        rows.entry(&source, entry)?;
                    }
                }
                "producer_balance" => {
                    let event: ProducerBalanceEvent = e.decode().map_err(|x| bad(e, x))?;
                    let producer: Uuid = e
                        .aggregate_id
                        .parse()
                        .map_err(|_| bad(e, "producer id is not a uuid"))?;
                    let (sale, market) = match &event {
                        ProducerBalanceEvent::SaleCredited { sale, market, .. }
                        | ProducerBalanceEvent::SaleSettledOnSite { sale, market, .. }
                        | ProducerBalanceEvent::RefundDebited { sale, market, .. } => {
                            (Some(sale.0), Some(market.0))
                        }
                        ProducerBalanceEvent::PeriodBilled { market, .. } => {
                            (None, market.map(|m| m.0))
                        }
                        _ => (None, None),
                    };
                    let entries = balance_entries(producer.into(), sequence, &event);
                    // The fee lines of each journal entry that moves fees, in the entries'
                    // order: charged at crediting or on site; given back (negated) and charged
                    // again when a refund comes after the crediting (R-FEE-4), so that the fee
                    // ledger equals the journal's fee accounts.
                    let moved: Vec<Vec<FeeLine>> = match &event {
                        ProducerBalanceEvent::SaleCredited {
                            fees, fee_refunds, ..
                        } => [
                            fees.clone(),
                            fee_refunds.iter().map(FeeRefund::as_line).collect(),
                        ]
                        .into_iter()
                        .filter(|l| !l.is_empty())
                        .collect(),
                        ProducerBalanceEvent::SaleSettledOnSite { fees, .. } => {
                            vec![fees.clone()]
                        }
                        ProducerBalanceEvent::PeriodBilled { lines, .. } => vec![lines.clone()],
                        ProducerBalanceEvent::RefundDebited {
                            fees_before,
                            fees_after,
                            fee_refunds,
                            ..
                        } => [
                            fees_before.iter().map(negated).collect::<Vec<_>>(),
                            fees_after.clone(),
                            fee_refunds.iter().map(FeeRefund::as_line).collect(),
                        ]
                        .into_iter()
                        .filter(|l| !l.is_empty())
                        .collect(),
                        _ => Vec::new(),
                    };
                    for (lines, entry) in moved.iter().zip(entries.iter()) {
                        for (i, l) in lines.iter().enumerate() {
                            rows.fee_lines.push(FeeRow {
                                entry_id: entry.entry_id.clone(),
                                line: i as i32,
                                date: entry.date,
                                producer,
                                market,
                                sale,
                                line_data: l.clone(),
                            });
                        }
                    }
                    for entry in entries {
                        let source = Source {
                            event: e,
                            sale,
                            market,
                            producer: Some(producer),
                        };
                        rows.entry(&source, entry)?;
                    }
                }
                _ => {}
            }
        }
        rows.flush(conn).await?;
        if !orders.is_empty() {
            let mut ids = Vec::with_capacity(orders.len());
            let mut states = Vec::with_capacity(orders.len());
            for (id, state) in orders {
                states.push(
                    serde_json::to_value(&state).map_err(|x| ProjectionError::Event {
                        projection: "ledger",
                        position: 0,
                        reason: format!("order state {id}: {x}"),
                    })?,
                );
                ids.push(id);
            }
            sqlx::query(
                "INSERT INTO ledger_order_state (order_id, state) SELECT * FROM UNNEST($1::text[], $2::jsonb[]) \
                 ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state",
            )
            .bind(&ids)
            .bind(&states)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

/// A fee line given back: every amount of it negated (rounding half away from zero is
/// symmetric, so it still recomputes from its own fields).
fn negated(l: &FeeLine) -> FeeLine {
    FeeLine {
        base_amount: -l.base_amount,
        fixed_part: -l.fixed_part,
        amount_excl_vat: -l.amount_excl_vat,
        vat: -l.vat,
        amount_incl_vat: -l.amount_incl_vat,
        ..l.clone()
    }
}

/// A serde enum's name as text ("platform", "incl_vat").
fn json_text<T: Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

fn money(d: Decimal) -> Money {
    Money::round(d)
}

/// One account's totals as of a date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccountBalance {
    pub account: String,
    pub party: Option<Uuid>,
    pub debits: Money,
    pub credits: Money,
}

impl AccountBalance {
    /// Debits minus credits.
    pub fn balance(&self) -> Money {
        self.debits - self.credits
    }
}

/// Every account's debits and credits for entries dated on or before `as_of`.
pub async fn balances_as_of(
    pool: &PgPool,
    as_of: NaiveDate,
) -> Result<Vec<AccountBalance>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT account, party, sum(debit) AS d, sum(credit) AS c FROM ledger_postings \
         WHERE entry_date <= $1 GROUP BY account, party ORDER BY account, party NULLS FIRST",
    )
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AccountBalance {
                account: r.try_get("account")?,
                party: r.try_get("party")?,
                debits: money(r.try_get("d")?),
                credits: money(r.try_get("c")?),
            })
        })
        .collect()
}

/// What the platform holds for one party on one account (credits minus debits), e.g. a
/// market's delivery fees (`MarketPayable`, R-ORD-6).
pub async fn held_for(pool: &PgPool, account: &str, party: Uuid) -> Result<Money, sqlx::Error> {
    let held: Option<rust_decimal::Decimal> = sqlx::query_scalar(
        "SELECT sum(credit) - sum(debit) FROM ledger_postings WHERE account = $1 AND party = $2",
    )
    .bind(account)
    .bind(party)
    .fetch_one(pool)
    .await?;
    Ok(held.map(money).unwrap_or(Money::ZERO))
}

/// Both sides of R-PAY-3 as of a date, from the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConservationRow {
    pub payments: Money,
    pub refunds: Money,
    pub fees: Money,
    pub payouts: Money,
    pub held: Money,
    /// Fees owed for sales paid on site, not recovered yet.
    pub receivables: Money,
}

impl ConservationRow {
    /// payments + receivables = refunds + fees + payouts + held.
    pub fn holds(&self) -> bool {
        self.payments + self.receivables == self.refunds + self.fees + self.payouts + self.held
    }
}

/// payments = refunds + fees + payouts + balances held, as of `as_of`.
pub async fn conservation_as_of(
    pool: &PgPool,
    as_of: NaiveDate,
) -> Result<ConservationRow, sqlx::Error> {
    let mut c = ConservationRow {
        payments: Money::ZERO,
        refunds: Money::ZERO,
        fees: Money::ZERO,
        payouts: Money::ZERO,
        held: Money::ZERO,
        receivables: Money::ZERO,
    };
    for b in balances_as_of(pool, as_of).await? {
        let credit_balance = b.credits - b.debits;
        match b.account.as_str() {
            "CustomerPayments" => c.payments += b.debits - b.credits,
            "Refunds" => c.refunds += credit_balance,
            "PayoutsSent" => c.payouts += credit_balance,
            "PlatformFeeRevenue" | "HostFeeRevenue" | "VatCollectedOnFees" => {
                c.fees += credit_balance
            }
            "FeesReceivable" => c.receivables += b.debits - b.credits,
            _ => c.held += credit_balance,
        }
    }
    Ok(c)
}

/// One posting of a journal page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JournalLine {
    pub entry_id: String,
    pub entry_date: NaiveDate,
    pub description: String,
    pub account: String,
    pub party: Option<Uuid>,
    pub debit: Money,
    pub credit: Money,
}

/// A page of the journal, ordered by (date, entry id): the entries after `after` (a date and
/// entry id from the previous page's last line), at most `limit` entries with their postings.
pub async fn journal(
    pool: &PgPool,
    after: Option<(NaiveDate, String)>,
    limit: i64,
) -> Result<Vec<JournalLine>, sqlx::Error> {
    let (date, id) = match after {
        Some((d, i)) => (Some(d), i),
        None => (None, String::new()),
    };
    let rows = sqlx::query(
        "WITH page AS (SELECT entry_id, entry_date, description FROM ledger_entries \
           WHERE $1::date IS NULL OR (entry_date, entry_id) > ($1::date, $2) ORDER BY entry_date, entry_id LIMIT $3) \
         SELECT page.entry_id, page.entry_date, page.description, p.account, p.party, p.debit, p.credit \
         FROM page JOIN ledger_postings p USING (entry_id) \
         ORDER BY page.entry_date, page.entry_id, p.line",
    )
    .bind(date)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(JournalLine {
                entry_id: r.try_get("entry_id")?,
                entry_date: r.try_get("entry_date")?,
                description: r.try_get("description")?,
                account: r.try_get("account")?,
                party: r.try_get("party")?,
                debit: money(r.try_get("debit")?),
                credit: money(r.try_get("credit")?),
            })
        })
        .collect()
}

/// How the fee ledger is grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeeGrouping {
    Producer,
    Market,
    Sale,
    /// Calendar month of the entry (`YYYY-MM`).
    Month,
}

/// Fees charged in one group, over a period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FeeTotal {
    pub key: String,
    pub beneficiary: String,
    pub amount_excl_vat: Money,
    pub vat: Money,
    pub amount_incl_vat: Money,
}

/// The fee ledger between `from` and `to` (inclusive), grouped, by beneficiary.
pub async fn fee_ledger(
    pool: &PgPool,
    grouping: FeeGrouping,
    from: NaiveDate,
    to: NaiveDate,
) -> Result<Vec<FeeTotal>, sqlx::Error> {
    fee_ledger_of(pool, grouping, from, to, None, None).await
}

/// [`fee_ledger`] restricted to the fees charged to `producer` and/or on the sales of `market`
/// (`None`: every producer, every market).
pub async fn fee_ledger_of(
    pool: &PgPool,
    grouping: FeeGrouping,
    from: NaiveDate,
    to: NaiveDate,
    producer: Option<Uuid>,
    market: Option<Uuid>,
) -> Result<Vec<FeeTotal>, sqlx::Error> {
    // Subscriptions have no market and no sale, period fees no sale: their key is "".
    let key = match grouping {
        FeeGrouping::Producer => "producer_id::text",
        FeeGrouping::Market => "coalesce(market_id::text, '')",
        FeeGrouping::Sale => "coalesce(sale_id::text, '')",
        FeeGrouping::Month => "to_char(entry_date, 'YYYY-MM')",
    };
    let rows = sqlx::query(&format!(
        "SELECT {key} AS key, beneficiary, sum(amount_excl_vat) AS e, sum(vat) AS v, \
         sum(amount_incl_vat) AS i FROM ledger_fee_lines \
         WHERE entry_date BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR producer_id = $3) \
         AND ($4::uuid IS NULL OR market_id = $4) \
         GROUP BY 1, 2 ORDER BY 1, 2"
    ))
    .bind(from)
    .bind(to)
    .bind(producer)
    .bind(market)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(FeeTotal {
                key: r.try_get("key")?,
                beneficiary: r.try_get("beneficiary")?,
                amount_excl_vat: money(r.try_get("e")?),
                vat: money(r.try_get("v")?),
                amount_incl_vat: money(r.try_get("i")?),
            })
        })
        .collect()
}
