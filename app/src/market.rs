//! Markets, their sales, producers' participations and the sale's lifecycle (R-SAL, R-CAT-4).

use chrono::{DateTime, NaiveDate, Utc};
use etal_domain::actor::MarketAccess;
use etal_domain::catalog::{Catalog, CatalogCommand};
use etal_domain::ids::{CatalogId, MarketId, SaleId, UserId};
use etal_domain::market::{Market, MarketCommand, PaymentMode, Slot, Visibility};
use etal_domain::sale::{Sale, SaleCommand};
use etal_domain::{Actor, Role};
use serde::{Deserialize, Serialize};

use super::schedule::kinds;
use super::{derived_id, fingerprint, App, AppError, Ctx, Done, Written};

/// A new market (R-SAL-1). Its creator is its first administrator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NewMarket {
    pub name: String,
    pub place: String,
    pub slots: Vec<Slot>,
    pub payment_mode: PaymentMode,
    pub visibility: Visibility,
    pub amap: bool,
}

/// When a participation's order period opens and closes, relative to the sale's start
/// (R-SAL-3: the default of a participation, which the producer may override per sale).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct PeriodRule {
    /// The period opens this many hours before the sale starts.
    pub opens_hours_before: i64,
    /// The period closes this many hours before the sale starts.
    pub closes_hours_before: i64,
}

impl Default for PeriodRule {
    /// Cagette's habit: orders open a week before and close the day before.
    fn default() -> Self {
        Self {
            opens_hours_before: 7 * 24,
            closes_hours_before: 24,
        }
    }
}

impl App {
    /// The market and what the caller may do on it.
    pub async fn market_access(
        &self,
        actor: Actor,
        market: MarketId,
    ) -> Result<(Market, MarketAccess), AppError> {
        let (state, version) = self.load::<Market>(market).await?;
        if version == 0 {
            return Err(AppError::not_found("market", market));
        }
        let access = state.access(actor);
        Ok((state, access))
    }

    async fn admin_access(
        &self,
        actor: Actor,
        market: MarketId,
    ) -> Result<(Market, MarketAccess), AppError> {
        let (state, access) = self.market_access(actor, market).await?;
        if !access.administrator {
            return Err(AppError::Forbidden(format!(
                "you are not an administrator of market {market}"
            )));
        }
        Ok((state, access))
    }

    /// R-SAL-1: creates a market; the caller (a market administrator) administers it.
    pub async fn create_market(
        &self,
        ctx: &Ctx,
        new: NewMarket,
    ) -> Result<Done<MarketId>, AppError> {
        if !matches!(ctx.actor.role, Role::MarketAdmin | Role::PlatformAdmin) {
            return Err(AppError::Forbidden(
                "only a market administrator creates a market".into(),
            ));
        }
        let market = MarketId(ctx.new_id("market"));
        let fp = fingerprint("createMarket", &new);
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::CreateMarket {
                    market,
                    name: new.name,
                    place: new.place,
                    slots: new.slots,
                    administrators: vec![ctx.actor.user],
                    payment_mode: new.payment_mode,
                    visibility: new.visibility,
                    amap: new.amap,
                    actor: ctx.actor,
                },
                &ctx.step("create", &fp),
            )
            .await?;
        Ok(Done::new(market, out.last_position()))
    }

    /// Adds an administrator or a referent (R-SAL-6) to a market.
    pub async fn add_market_role(
        &self,
        ctx: &Ctx,
        market: MarketId,
        user: UserId,
        referent: bool,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let command = if referent {
            MarketCommand::SetReferent {
                user,
                actor: ctx.actor,
            }
        } else {
            MarketCommand::AddAdministrator {
                user,
                actor: ctx.actor,
            }
        };
        let out = self
            .exec::<Market>(
                market,
                command,
                &ctx.step(
                    "role",
                    &fingerprint("addMarketRole", &(market, user, referent)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-CAT-4: the market's administrator links a producer's catalog to the market.
    pub async fn link_catalog(
        &self,
        ctx: &Ctx,
        market: MarketId,
        catalog: CatalogId,
    ) -> Result<Done<()>, AppError> {
        let (_, access) = self.admin_access(ctx.actor, market).await?;
        let (state, version) = self.load::<Catalog>(catalog).await?;
        let producer = match (version, state.producer()) {
            (v, Some(p)) if v > 0 => p,
            _ => return Err(AppError::not_found("catalog", catalog)),
        };
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::LinkCatalog {
                    catalog,
                    producer,
                    access,
                },
                &ctx.step("link", &fingerprint("linkCatalog", &(market, catalog))),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-1: generates the market's sales from its slots between two dates (inclusive).
    /// A sale's id derives from its market and start, so generating twice changes nothing.
    pub async fn generate_sales(
        &self,
        ctx: &Ctx,
        market: MarketId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Done<Vec<SaleId>>, AppError> {
        if to < from || (to - from).num_days() > 366 {
            return Err(AppError::bad_input(
                "to",
                "the range must be ordered and at most a year",
            ));
        }
        let (state, _) = self.admin_access(ctx.actor, market).await?;
        let mut written = Written::default();
        let mut sales = Vec::new();
        for occ in state.sale_dates(from, to) {
            let sale = SaleId(derived_id(&format!(
                "sale:{market}:{}",
                occ.starts_at.to_rfc3339()
            )));
            sales.push(sale);
            let (existing, version) = self.load::<Sale>(sale).await?;
            if version > 0 && existing.id().is_some() {
                continue;
            }
            let reg = self
                .exec::<Market>(
                    market,
                    MarketCommand::RegisterSale {
                        sale,
                        date: occ.date,
                    },
                    &Ctx::system()
                        .step(&format!("register:{sale}"), "register")
                        .with_idempotency(format!("register:{sale}"), "register"),
                )
                .await?;
            written.add(&reg);
            let seq = reg
                .events
                .first()
                .map(|e| e.sequence)
                .ok_or_else(|| AppError::Internal("sale not registered".into()))?;
            let payload = self
                .event_payload("market", &market.to_string(), seq)
                .await?;
            let number = payload["SaleRegistered"]["number"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| AppError::Internal("sale number missing".into()))?;
            let plan = self
                .exec::<Sale>(
                    sale,
                    SaleCommand::PlanSale {
                        sale,
                        market,
                        number,
                        date: occ.date,
                        starts_at: occ.starts_at,
                        ends_at: occ.ends_at,
                        amap: state.amap(),
                        payment_mode: state.payment_mode().unwrap_or(PaymentMode::OnSite),
                    },
                    &Ctx::system()
                        .plain()
                        .with_idempotency(format!("plan:{sale}"), "plan"),
                )
                .await?;
            written.add(&plan);
            self.schedule(
                kinds::END_DISTRIBUTION,
                &format!("end:{sale}"),
                serde_json::json!({ "sale": sale }),
                occ.ends_at + self.settings.delivery_delay,
            )
            .await?;
        }
        Ok(Done::new(sales, written.0))
    }

    /// R-SAL-2, R-SAL-3: a producer takes part in sales with a linked catalog, with the default
    /// order period of `rule`; one sale, several, or all of a market's sales (see
    /// [`App::market_sales`]).
    pub async fn participate(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        sales: &[SaleId],
        rule: PeriodRule,
    ) -> Result<Done<()>, AppError> {
        if rule.opens_hours_before <= rule.closes_hours_before || rule.closes_hours_before < 0 {
            return Err(AppError::bad_input(
                "period",
                "orders must open before they close, and close before the sale",
            ));
        }
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let mut written = Written::default();
        for &sale in sales {
            let (state, version) = self.load::<Sale>(sale).await?;
            let starts_at = match (version, state.starts_at()) {
                (v, Some(s)) if v > 0 => s,
                _ => return Err(AppError::not_found("sale", sale)),
            };
            let (market, _) = self.market_access(ctx.actor, state.market()).await?;
            let opens_at = starts_at - chrono::Duration::hours(rule.opens_hours_before);
            let closes_at = starts_at - chrono::Duration::hours(rule.closes_hours_before);
            let out = self
                .exec::<Sale>(
                    sale,
                    SaleCommand::Participate {
                        access,
                        catalog,
                        catalog_linked: market.is_linked(catalog),
                        opens_at,
                        closes_at,
                    },
                    &ctx.step(
                        &format!("participate:{sale}"),
                        &fingerprint("participate", &(catalog, sales, rule)),
                    ),
                )
                .await?;
            written.add(&out);
            self.schedule_period(sale, catalog, opens_at, closes_at)
                .await?;
        }
        Ok(Done::new((), written.0))
    }

    async fn schedule_period(
        &self,
        sale: SaleId,
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> Result<(), AppError> {
        let payload = serde_json::json!({ "sale": sale, "catalog": catalog });
        self.schedule(
            kinds::OPEN_PERIOD,
            &format!("open:{sale}:{catalog}:{}", opens_at.timestamp()),
            payload.clone(),
            opens_at,
        )
        .await?;
        self.schedule(
            kinds::CLOSE_PERIOD,
            &format!("close:{sale}:{catalog}:{}", closes_at.timestamp()),
            payload,
            closes_at,
        )
        .await
    }

    /// The sales of a market between two dates (for "all the recurring sales").
    pub async fn market_sales(
        &self,
        market: MarketId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<SaleId>, AppError> {
        let (state, version) = self.load::<Market>(market).await?;
        if version == 0 {
            return Err(AppError::not_found("market", market));
        }
        let mut out = Vec::new();
        for occ in state.sale_dates(from, to) {
            let sale = SaleId(derived_id(&format!(
                "sale:{market}:{}",
                occ.starts_at.to_rfc3339()
            )));
            if self.load::<Sale>(sale).await?.1 > 0 {
                out.push(sale);
            }
        }
        Ok(out)
    }

    /// R-SAL-3: the producer overrides one sale's order period for a catalog.
    pub async fn override_period(
        &self,
        ctx: &Ctx,
        sale: SaleId,
        catalog: CatalogId,
        opens_at: DateTime<Utc>,
        closes_at: DateTime<Utc>,
    ) -> Result<Done<()>, AppError> {
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let out = self
            .exec::<Sale>(
                sale,
                SaleCommand::OverrideOrderPeriod {
                    access,
                    catalog,
                    opens_at,
                    closes_at,
                },
                &ctx.step(
                    "override",
                    &fingerprint("overridePeriod", &(sale, catalog, opens_at, closes_at)),
                ),
            )
            .await?;
        self.schedule_period(sale, catalog, opens_at, closes_at)
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-4: withdraws a catalog from a sale; refused while orders have lines for it.
    pub async fn withdraw(
        &self,
        ctx: &Ctx,
        sale: SaleId,
        catalog: CatalogId,
    ) -> Result<Done<()>, AppError> {
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let out = self
            .exec::<Sale>(
                sale,
                SaleCommand::Withdraw { access, catalog },
                &ctx.step("withdraw", &fingerprint("withdraw", &(sale, catalog))),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-6: the market's referent (or an administrator) validates the distributed sale.
    pub async fn validate_sale(&self, ctx: &Ctx, sale: SaleId) -> Result<Done<()>, AppError> {
        let (state, version) = self.load::<Sale>(sale).await?;
        if version == 0 {
            return Err(AppError::not_found("sale", sale));
        }
        let (_, access) = self.market_access(ctx.actor, state.market()).await?;
        if !access.referent && !access.administrator {
            return Err(AppError::Forbidden(
                "only the market's referent or an administrator validates a sale".into(),
            ));
        }
        let mut written = Written::default();
        let out = self
            .exec::<Sale>(
                sale,
                SaleCommand::Validate {
                    access,
                    at: self.now(),
                },
                &ctx.step("validate", &fingerprint("validateSale", &sale)),
            )
            .await?;
        written.add(&out);
        // R-SAL-6: validation releases the money (credited by a scheduled command, see money).
        self.schedule_credit(sale).await?;
        // The catalogs no longer need this sale's frozen prices.
        for catalog in state.participations().keys() {
            let out = self
                .exec::<Catalog>(
                    *catalog,
                    CatalogCommand::ForgetSale { sale },
                    &Ctx::system().plain(),
                )
                .await?;
            written.add(&out);
        }
        Ok(Done::new((), written.0))
    }
}
