//! R-INV-6: sales to consumers are e-reported, not invoiced: per seller, per day and per VAT
//! rate, the base excl. VAT, the VAT and the number of transactions, with the category (goods),
//! as CSV or JSON for the seller's approved platform.

use chrono::NaiveDate;
use etal_domain::ids::ProducerId;
use etal_projections::order_recaps::{b2c_days, B2cDay};

use crate::{App, AppError};

/// The e-reporting category of what etal's producers sell (CGI ann. II art. 242 nonies M):
/// deliveries of goods.
pub const CATEGORY_GOODS: &str = "TLB1";

/// Periods longer than this are refused (a year and a day).
pub const MAX_DAYS: i64 = 366;

impl App {
    /// R-INV-6: the daily aggregates of a producer's consumer sales between two dates.
    pub async fn b2c_report(
        &self,
        producer: ProducerId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<B2cDay>, AppError> {
        if to < from || (to - from).num_days() > MAX_DAYS {
            return Err(AppError::bad_input(
                "to",
                format!("on or after `from`, at most {MAX_DAYS} days later"),
            ));
        }
        Ok(b2c_days(&self.pool, producer.0, from, to).await?)
    }
}

/// The report as CSV (comma separated, a header line, amounts with a dot, dates ISO 8601):
/// seller, date, currency, category, VAT rate, base excl. VAT, VAT, transactions.
pub fn b2c_csv(seller_siren: &str, days: &[B2cDay]) -> Result<String, AppError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let fail = |e: csv::Error| AppError::Internal(format!("writing the e-reporting CSV: {e}"));
    w.write_record([
        "seller_siren",
        "date",
        "currency",
        "category",
        "vat_rate",
        "base_excl_vat",
        "vat",
        "transactions",
    ])
    .map_err(fail)?;
    for d in days {
        w.write_record([
            seller_siren.to_string(),
            d.date.to_string(),
            "EUR".into(),
            CATEGORY_GOODS.into(),
            d.vat_rate.to_string(),
            d.amount_excl_vat.to_string(),
            d.vat_amount.to_string(),
            d.transactions.to_string(),
        ])
        .map_err(fail)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| AppError::Internal(format!("writing the e-reporting CSV: {e}")))?;
    String::from_utf8(bytes).map_err(|e| AppError::Internal(format!("e-reporting CSV: {e}")))
}
