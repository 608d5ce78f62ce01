//! The double-entry ledger (design property 9, R-PAY-3) as tables: journal entries, postings
//! and fee lines, posted from order events (payments received, refunds paid) and producer
//! balance events (fees charged, payouts sent, confirmed, returned) by the domain's posting
//! functions ([`etal_domain::ledger::order_entries`], [`etal_domain::ledger::balance_entries`]).
//! Entry ids come from the source event and dates from the events: a rebuild gives the same
//! rows. Query functions: balances and conservation as of any date, the journal (paginated),
//! and the fee ledger per producer, market, sale or month.

use std::collections::HashMap;

use chrono::NaiveDate;
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

async fn insert_entry(
    conn: &mut PgConnection,
    source: &Source<'_>,
    entry: &JournalEntry,
) -> Result<(), ProjectionError> {
    if !entry.is_balanced() {
        return Err(bad(
            source.event,
            format!("entry {} is unbalanced", entry.entry_id),
        ));
    }
    sqlx::query(
        "INSERT INTO ledger_entries (entry_id, global_position, source_type, source_id, sequence, \
         entry_date, available_on, description, sale_id, market_id, producer_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(&entry.entry_id)
    .bind(source.event.position.position)
    .bind(&source.event.aggregate_type)
    .bind(&source.event.aggregate_id)
    .bind(source.event.sequence)
    .bind(entry.date)
    .bind(entry.available_on)
    .bind(&entry.description)
    .bind(source.sale)
    .bind(source.market)
    .bind(source.producer)
    .execute(&mut *conn)
    .await?;
    for (i, p) in entry.postings.iter().enumerate() {
        let (account, party) = account_parts(&p.account);
        sqlx::query(
            "INSERT INTO ledger_postings (entry_id, line, entry_date, account, party, debit, credit, sale_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&entry.entry_id)
        .bind(i as i32)
        .bind(entry.date)
        .bind(account)
        .bind(party)
        .bind(p.debit.amount())
        .bind(p.credit.amount())
        .bind(source.sale)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn order_state(
    conn: &mut PgConnection,
    cache: &mut HashMap<String, OrderMoney>,
    id: &str,
) -> Result<(), ProjectionError> {
    if cache.contains_key(id) {
        return Ok(());
    }
    let state: Option<serde_json::Value> =
        sqlx::query_scalar("SELECT state FROM ledger_order_state WHERE order_id = $1")
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    let money = match state {
        Some(v) => serde_json::from_value(v).map_err(|e| ProjectionError::Event {
            projection: "ledger",
            position: 0,
            reason: format!("order state {id}: {e}"),
        })?,
        None => OrderMoney::default(),
    };
    cache.insert(id.to_string(), money);
    Ok(())
}

#[async_trait::async_trait]
impl Projection for LedgerProjection {
    fn name(&self) -> &'static str {
        "ledger"
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
        let mut orders: HashMap<String, OrderMoney> = HashMap::new();
        for e in events {
            let sequence = u64::try_from(e.sequence).map_err(|_| bad(e, "negative sequence"))?;
            match e.aggregate_type.as_str() {
                "order" => {
                    let event: OrderEvent = e.decode().map_err(|x| bad(e, x))?;
                    order_state(conn, &mut orders, &e.aggregate_id).await?;
                    let state = orders
                        .get_mut(&e.aggregate_id)
                        .ok_or_else(|| bad(e, "order state missing"))?;
                    let entries = order_entries(state, &e.aggregate_id, sequence, &event);
                    let (sale, market) = (state.sale.map(|s| s.0), state.market.map(|m| m.0));
                    for entry in &entries {
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
                        insert_entry(conn, &source, entry).await?;
                    }
                }
                "producer_balance" => {
                    let event: ProducerBalanceEvent = e.decode().map_err(|x| bad(e, x))?;
                    let producer: Uuid = e
                        .aggregate_id
                        .parse()
                        .map_err(|_| bad(e, "producer id is not a uuid"))?;
                    let (sale, market) = match &event {
                        ProducerBalanceEvent::SaleCredited { sale, market, .. } => {
                            (Some(sale.0), Some(market.0))
                        }
                        _ => (None, None),
                    };
                    let entries = balance_entries(producer.into(), sequence, &event);
                    for entry in &entries {
                        let source = Source {
                            event: e,
                            sale,
                            market,
                            producer: Some(producer),
                        };
                        insert_entry(conn, &source, entry).await?;
                    }
                    if let (ProducerBalanceEvent::SaleCredited { fees, .. }, Some(entry)) =
                        (&event, entries.first())
                    {
                        for (i, l) in fees.iter().enumerate() {
                            sqlx::query(
                                "INSERT INTO ledger_fee_lines (entry_id, line, entry_date, producer_id, \
                                 market_id, sale_id, rule_id, rule_version, beneficiary, base_kind, \
                                 base_amount, rate, fixed_part, vat_rate, amount_excl_vat, vat, amount_incl_vat) \
                                 VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17)",
                            )
                            .bind(&entry.entry_id)
                            .bind(i as i32)
                            .bind(entry.date)
                            .bind(producer)
                            .bind(market)
                            .bind(sale)
                            .bind(&l.rule_id)
                            .bind(i32::try_from(l.rule_version).unwrap_or(i32::MAX))
                            .bind(json_text(&l.beneficiary))
                            .bind(json_text(&l.base_kind))
                            .bind(l.base_amount.amount())
                            .bind(l.rate)
                            .bind(l.fixed_part.amount())
                            .bind(l.vat_rate.to_string())
                            .bind(l.amount_excl_vat.amount())
                            .bind(l.vat.amount())
                            .bind(l.amount_incl_vat.amount())
                            .execute(&mut *conn)
                            .await?;
                        }
                    }
                }
                _ => {}
            }
        }
        for (id, state) in orders {
            let json = serde_json::to_value(&state).map_err(|x| ProjectionError::Event {
                projection: "ledger",
                position: 0,
                reason: format!("order state {id}: {x}"),
            })?;
            sqlx::query(
                "INSERT INTO ledger_order_state (order_id, state) VALUES ($1, $2) \
                 ON CONFLICT (order_id) DO UPDATE SET state = EXCLUDED.state",
            )
            .bind(&id)
            .bind(json)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
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

/// Both sides of R-PAY-3 as of a date, from the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ConservationRow {
    pub payments: Money,
    pub refunds: Money,
    pub fees: Money,
    pub payouts: Money,
    pub held: Money,
}

impl ConservationRow {
    pub fn holds(&self) -> bool {
        self.payments == self.refunds + self.fees + self.payouts + self.held
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
    fee_ledger_of(pool, grouping, from, to, None).await
}

/// [`fee_ledger`] restricted to the fees charged to `producer` (`None`: every producer).
pub async fn fee_ledger_of(
    pool: &PgPool,
    grouping: FeeGrouping,
    from: NaiveDate,
    to: NaiveDate,
    producer: Option<Uuid>,
) -> Result<Vec<FeeTotal>, sqlx::Error> {
    let key = match grouping {
        FeeGrouping::Producer => "producer_id::text",
        FeeGrouping::Market => "market_id::text",
        FeeGrouping::Sale => "sale_id::text",
        FeeGrouping::Month => "to_char(entry_date, 'YYYY-MM')",
    };
    let rows = sqlx::query(&format!(
        "SELECT {key} AS key, beneficiary, sum(amount_excl_vat) AS e, sum(vat) AS v, \
         sum(amount_incl_vat) AS i FROM ledger_fee_lines \
         WHERE entry_date BETWEEN $1 AND $2 AND ($3::uuid IS NULL OR producer_id = $3) \
         GROUP BY 1, 2 ORDER BY 1, 2"
    ))
    .bind(from)
    .bind(to)
    .bind(producer)
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
