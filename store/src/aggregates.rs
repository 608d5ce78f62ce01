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
use etal_domain::proposal::Proposal;
use etal_domain::sale::Sale;
use etal_domain::stock::Stock;

use crate::bus::EsAggregate;

impl EsAggregate for ProducerAccount {}
impl EsAggregate for Catalog {}
impl EsAggregate for Market {}
/// A snapshot costs the whole state, an event its own few hundred bytes; the states of the
/// order path grow with the orders they hold (a busy sale's numbers, a stock's reservations, a
/// producer's annual amounts: tens of kilobytes in `make bench`), so they are snapshotted
/// rarely. A load replays at most this many small events on top of the snapshot (about the
/// size of one snapshot), and the hot streams are kept in memory between flows anyway.
impl EsAggregate for Sale {
    const SNAPSHOT_EVERY: i64 = 200;
}
impl EsAggregate for Order {}
impl EsAggregate for Stock {
    const SNAPSHOT_EVERY: i64 = 100;
}
impl EsAggregate for AnnualSales {
    const SNAPSHOT_EVERY: i64 = 100;
}
/// One stream per producer; settled credits leave the state, so it stays small.
impl EsAggregate for ProducerBalance {}
/// A conversation of at most a few hundred messages.
impl EsAggregate for Proposal {}
/// R-INV-1: a series keeps every document it issued (the credit notes need them).
impl EsAggregate for etal_domain::invoice::InvoiceSeries {
    const SNAPSHOT_EVERY: i64 = 100;
}
