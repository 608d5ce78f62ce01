//! The domain's aggregates as the bus stores them: snapshot policy and state versions.
//!
//! Bump a `STATE_VERSION` when the aggregate's state changes shape or meaning: older snapshots are
//! then ignored and the state is rebuilt from the events.

use etal_domain::account::ProducerAccount;
use etal_domain::annual::AnnualSales;
use etal_domain::catalog::Catalog;
use etal_domain::market::Market;
use etal_domain::order::Order;
use etal_domain::payout::ProducerBalance;
use etal_domain::sale::Sale;
use etal_domain::stock::Stock;

use crate::bus::EsAggregate;

impl EsAggregate for ProducerAccount {}
impl EsAggregate for Catalog {}
impl EsAggregate for Market {}
impl EsAggregate for Sale {}
impl EsAggregate for Order {}
/// Stock is the hottest stream (every order line reserves and confirms): snapshot more often.
impl EsAggregate for Stock {
    const SNAPSHOT_EVERY: i64 = 20;
}
impl EsAggregate for AnnualSales {
    const SNAPSHOT_EVERY: i64 = 20;
}
/// One stream per producer; settled credits leave the state, so it stays small.
impl EsAggregate for ProducerBalance {}
