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
use etal_domain::market::MarketEvent;
use etal_store::Changes;

use super::flow::{turn_key, Decided};
use super::outbox::rejected;
use super::{derived_id, fingerprint, App, AppError, Ctx, Done};

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

    pub(crate) async fn admin_access(
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

    /// R-SAL-2: the producer takes part in every sale of `market` generated from now on with
    /// `catalog` (linked to it), with the order period of `rule`; the sales already generated
    /// are joined with [`App::participate`].
    pub async fn participate_in_recurring_sales(
        &self,
        ctx: &Ctx,
        market: MarketId,
        catalog: CatalogId,
        rule: PeriodRule,
    ) -> Result<Done<()>, AppError> {
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::StartRecurringParticipation {
                    catalog,
                    opens_hours_before: rule.opens_hours_before,
                    closes_hours_before: rule.closes_hours_before,
                    access,
                },
                &ctx.step(
                    "recurring",
                    &fingerprint("participateInRecurringSales", &(market, catalog, rule)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-2: the producer stops taking part in the sales generated from now on (those
    /// already joined stay; `withdraw` leaves one).
    pub async fn stop_recurring_participation(
        &self,
        ctx: &Ctx,
        market: MarketId,
        catalog: CatalogId,
    ) -> Result<Done<()>, AppError> {
        let (_, _, access) = self.catalog_access(ctx, catalog).await?;
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::StopRecurringParticipation { catalog, access },
                &ctx.step(
                    "stop",
                    &fingerprint("stopRecurringParticipation", &(market, catalog)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// A market administrator's change of the market's settings, as one command.
    async fn market_command(
        &self,
        ctx: &Ctx,
        market: MarketId,
        op: &str,
        args: &impl Serialize,
        command: MarketCommand,
    ) -> Result<Done<()>, AppError> {
        self.admin_access(ctx.actor, market).await?;
        let out = self
            .exec::<Market>(market, command, &ctx.step(op, &fingerprint(op, args)))
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-1: a new recurring slot; sales are generated from it from now on.
    pub async fn add_slot(
        &self,
        ctx: &Ctx,
        market: MarketId,
        slot: Slot,
    ) -> Result<Done<()>, AppError> {
        let command = MarketCommand::AddSlot {
            slot,
            actor: ctx.actor,
        };
        self.market_command(ctx, market, "addSlot", &(market, &slot), command)
            .await
    }

    /// R-SAL-1: a slot removed; sales already generated from it stay.
    pub async fn remove_slot(
        &self,
        ctx: &Ctx,
        market: MarketId,
        slot: Slot,
    ) -> Result<Done<()>, AppError> {
        let command = MarketCommand::RemoveSlot {
            slot,
            actor: ctx.actor,
        };
        self.market_command(ctx, market, "removeSlot", &(market, &slot), command)
            .await
    }

    /// R-SAL-7: a customer asks to join a market (members-only: an administrator answers).
    pub async fn request_membership(
        &self,
        ctx: &Ctx,
        market: MarketId,
    ) -> Result<Done<()>, AppError> {
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::RequestMembership { actor: ctx.actor },
                &ctx.step("join", &fingerprint("requestMembership", &market)),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-SAL-7: an administrator approves or refuses a request, or removes a member.
    pub async fn answer_membership(
        &self,
        ctx: &Ctx,
        market: MarketId,
        user: UserId,
        answer: MembershipAnswer,
    ) -> Result<Done<()>, AppError> {
        let actor = ctx.actor;
        let command = match answer {
            MembershipAnswer::Approve => MarketCommand::ApproveMember { user, actor },
            MembershipAnswer::Refuse => MarketCommand::RefuseMember { user, actor },
            MembershipAnswer::Remove => MarketCommand::RemoveMember { user, actor },
        };
        let args = (market, user, answer);
        self.market_command(ctx, market, "answerMembership", &args, command)
            .await
    }

    /// R-SAL-7: who may see the market's offers and order.
    pub async fn set_visibility(
        &self,
        ctx: &Ctx,
        market: MarketId,
        visibility: Visibility,
    ) -> Result<Done<()>, AppError> {
        let command = MarketCommand::SetVisibility {
            visibility,
            actor: ctx.actor,
        };
        let args = (market, visibility);
        self.market_command(ctx, market, "setVisibility", &args, command)
            .await
    }

    /// The market's payment mode for the sales generated from now on (a sale keeps the mode
    /// it was generated with).
    pub async fn set_payment_mode(
        &self,
        ctx: &Ctx,
        market: MarketId,
        payment_mode: PaymentMode,
    ) -> Result<Done<()>, AppError> {
        let command = MarketCommand::SetPaymentMode {
            payment_mode,
            actor: ctx.actor,
        };
        let args = (market, payment_mode);
        self.market_command(ctx, market, "setPaymentMode", &args, command)
            .await
    }

    /// R-CAT-4: the market's administrator unlinks a catalog; refused while a sale of the
    /// market not validated yet has orders with lines of it (CATALOG_HAS_ORDERS): the producer
    /// withdraws from those sales first, or the sales are validated.
    pub async fn unlink_catalog(
        &self,
        ctx: &Ctx,
        market: MarketId,
        catalog: CatalogId,
    ) -> Result<Done<()>, AppError> {
        let (_, access) = self.admin_access(ctx.actor, market).await?;
        let sales: Vec<String> = sqlx::query_scalar(
            "SELECT aggregate_id FROM events WHERE aggregate_type = 'sale' \
             AND event_type = 'SalePlanned' AND payload -> 'SalePlanned' ->> 'market' = $1",
        )
        .bind(market.to_string())
        .fetch_all(&self.pool)
        .await?;
        for id in sales {
            let (sale, _) = self.load::<Sale>(&id).await?;
            if sale.status() != etal_domain::sale::SaleStatus::Validated
                && sale.orders_for(catalog) > 0
            {
                return Err(AppError::Rejected {
                    code: "CATALOG_HAS_ORDERS",
                    message: format!(
                        "sale {id} of this market has orders for catalog {catalog}: \
                         withdraw from it or validate it first"
                    ),
                });
            }
        }
        let out = self
            .exec::<Market>(
                market,
                MarketCommand::UnlinkCatalog { catalog, access },
                &ctx.step("unlink", &fingerprint("unlinkCatalog", &(market, catalog))),
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
        self.admin_access(ctx.actor, market).await?;
        let cc = ctx.flow(
            "generateSales",
            &fingerprint("generateSales", &(market, from, to)),
        );
        self.plan_sales(&cc, market, from, to).await
    }

    /// When the daily generation of sales ahead runs (Europe/Paris).
    pub async fn schedule_sales_horizon(&self, date: NaiveDate) -> Result<(), AppError> {
        self.schedule(
            kinds::SALES_HORIZON,
            &format!("horizon:{date}"),
            serde_json::json!({ "date": date }),
            etal_domain::calendar::paris_instant(date, SALES_HORIZON_TIME),
        )
        .await
    }

    /// R-SAL-1: every market's sales from `today` to the horizon (`sales_horizon_weeks`), so
    /// nobody has to generate them by hand; one commit per market, under `key`. Returns how
    /// many sales the markets have in that range.
    pub async fn generate_sales_ahead(&self, today: NaiveDate, key: &str) -> Result<u32, AppError> {
        let to = today + chrono::Duration::weeks(i64::from(self.settings.sales_horizon_weeks));
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'market' ORDER BY 1",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut count = 0u32;
        for id in ids {
            let market: MarketId = id
                .parse()
                .map_err(|_| AppError::Internal(format!("bad market id {id}")))?;
            let step = format!("{key}:{market}");
            let cc = etal_store::CommandContext::new(Actor::system())
                .with_idempotency(step, format!("horizon:{market}:{today}:{to}"));
            let done = self.plan_sales(&cc, market, today, to).await?;
            count += done.value.len() as u32;
        }
        Ok(count)
    }

    /// Plans the market's sales from its slots between two dates (see [`App::generate_sales`]):
    /// one commit in which the market numbers the new sales, each is planned with the catalogs
    /// taking part in the recurring sales (R-SAL-2), and each end of distribution and order
    /// period is scheduled (R-STK-4, R-SAL-3).
    async fn plan_sales(
        &self,
        cc: &etal_store::CommandContext,
        market: MarketId,
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Done<Vec<SaleId>>, AppError> {
        let now = self.now();
        let flowed = self
            .run_flow(
                cc,
                vec![turn_key::<Market>(&market.to_string())],
                || async move {
                    let mut m = self.load_turned::<Market>(&market.to_string()).await?;
                    let mut changes = Changes::new();
                    let mut sales = Vec::new();
                    let occurrences = m.state.sale_dates(from, to);
                    for occ in occurrences {
                        let sale = SaleId(derived_id(&format!(
                            "sale:{market}:{}",
                            occ.starts_at.to_rfc3339()
                        )));
                        sales.push(sale);
                        let mut planned = self.bus.load_stream::<Sale>(&sale.to_string()).await?;
                        if planned.exists() && planned.state.id().is_some() {
                            continue;
                        }
                        let registered = m
                            .decide(|mk| {
                                mk.decide(MarketCommand::RegisterSale {
                                    sale,
                                    date: occ.date,
                                })
                            })
                            .map_err(rejected)?;
                        let number = registered
                            .iter()
                            .find_map(|e| match e {
                                MarketEvent::SaleRegistered { number, .. } => Some(*number),
                                _ => None,
                            })
                            .ok_or_else(|| AppError::Internal("sale not registered".into()))?;
                        planned
                            .decide(|sl| {
                                sl.decide(SaleCommand::PlanSale {
                                    sale,
                                    market,
                                    number,
                                    date: occ.date,
                                    starts_at: occ.starts_at,
                                    ends_at: occ.ends_at,
                                    amap: m.state.amap(),
                                    payment_mode: m
                                        .state
                                        .payment_mode()
                                        .unwrap_or(PaymentMode::OnSite),
                                })
                            })
                            .map_err(rejected)?;
                        // R-SAL-2: the catalogs taking part in every sale join it.
                        for (catalog, r) in m.state.recurring() {
                            let opens_at =
                                occ.starts_at - chrono::Duration::hours(r.opens_hours_before);
                            let closes_at =
                                occ.starts_at - chrono::Duration::hours(r.closes_hours_before);
                            if closes_at <= now {
                                continue;
                            }
                            let access = etal_domain::actor::ProducerAccess {
                                producer: r.producer,
                                actor: Actor::system(),
                                owner: false,
                            };
                            let joined = planned.decide(|sl| {
                                sl.decide(SaleCommand::Participate {
                                    access,
                                    catalog: *catalog,
                                    catalog_linked: m.state.is_linked(*catalog),
                                    opens_at,
                                    closes_at,
                                })
                            });
                            match joined {
                                Ok(_) => schedule_period(
                                    &mut changes,
                                    sale,
                                    *catalog,
                                    opens_at,
                                    closes_at,
                                ),
                                Err(e) => tracing::warn!(%sale, %catalog, error = %e,
                                    "a recurring participation could not join a new sale"),
                            }
                        }
                        changes.stream(&planned)?;
                        changes.schedule(
                            kinds::END_DISTRIBUTION,
                            &format!("end:{sale}"),
                            serde_json::json!({ "sale": sale }),
                            occ.ends_at + self.settings.delivery_delay,
                        );
                    }
                    changes.stream(&m)?;
                    let mut decided = Decided::new(changes, sales);
                    decided.remember(&m);
                    Ok(decided)
                },
            )
            .await?;
        Ok(Done::new(flowed.value, flowed.position))
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
        let cc = ctx.flow(
            "participate",
            &fingerprint("participate", &(catalog, sales, rule)),
        );
        // One commit: every sale's participation and its order period's schedules.
        let flowed = self
            .run_flow(&cc, vec![], || async move {
                let mut changes = Changes::new();
                let mut seen = std::collections::BTreeSet::new();
                for &sale in sales {
                    if !seen.insert(sale) {
                        continue;
                    }
                    let mut stream = self.bus.load_stream::<Sale>(&sale.to_string()).await?;
                    let starts_at = match (stream.exists(), stream.state.starts_at()) {
                        (true, Some(s)) => s,
                        _ => return Err(AppError::not_found("sale", sale)),
                    };
                    let (market, _) = self.market_access(ctx.actor, stream.state.market()).await?;
                    let opens_at = starts_at - chrono::Duration::hours(rule.opens_hours_before);
                    let closes_at = starts_at - chrono::Duration::hours(rule.closes_hours_before);
                    stream
                        .decide(|sl| {
                            sl.decide(SaleCommand::Participate {
                                access,
                                catalog,
                                catalog_linked: market.is_linked(catalog),
                                opens_at,
                                closes_at,
                            })
                        })
                        .map_err(rejected)?;
                    changes.stream(&stream)?;
                    schedule_period(&mut changes, sale, catalog, opens_at, closes_at);
                }
                Ok(Decided::new(changes, ()))
            })
            .await?;
        Ok(Done::new((), flowed.position))
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
        let cc = ctx.flow(
            "overridePeriod",
            &fingerprint("overridePeriod", &(sale, catalog, opens_at, closes_at)),
        );
        // One commit: the new period and its schedules.
        let flowed = self
            .run_flow(
                &cc,
                vec![turn_key::<Sale>(&sale.to_string())],
                || async move {
                    let mut stream = self.load_turned::<Sale>(&sale.to_string()).await?;
                    stream
                        .decide(|sl| {
                            sl.decide(SaleCommand::OverrideOrderPeriod {
                                access,
                                catalog,
                                opens_at,
                                closes_at,
                            })
                        })
                        .map_err(rejected)?;
                    let mut changes = Changes::new();
                    changes.stream(&stream)?;
                    schedule_period(&mut changes, sale, catalog, opens_at, closes_at);
                    Ok(Decided::new(changes, ()))
                },
            )
            .await?;
        Ok(Done::new((), flowed.position))
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
        let cc = ctx.flow("validateSale", &fingerprint("validateSale", &sale));
        // One commit: the validation, the crediting it makes due (R-SAL-6: validation releases
        // the money; see money) and the catalogs forgetting this sale's frozen prices.
        let flowed = self
            .run_flow(
                &cc,
                vec![turn_key::<Sale>(&sale.to_string())],
                || async move {
                    let mut stream = self.load_turned::<Sale>(&sale.to_string()).await?;
                    stream
                        .decide(|sl| {
                            sl.decide(SaleCommand::Validate {
                                access,
                                at: self.now(),
                            })
                        })
                        .map_err(rejected)?;
                    let mut changes = Changes::new();
                    changes.stream(&stream)?;
                    changes.schedule(
                        kinds::CREDIT_SALE,
                        &format!("credit:{sale}"),
                        serde_json::json!({ "sale": sale }),
                        self.now(),
                    );
                    for catalog in stream.state.participations().keys() {
                        let mut c = self
                            .bus
                            .load_stream::<Catalog>(&catalog.to_string())
                            .await?;
                        c.decide(|cat| cat.decide(CatalogCommand::ForgetSale { sale }))
                            .map_err(rejected)?;
                        changes.stream(&c)?;
                    }
                    Ok(Decided::new(changes, ()))
                },
            )
            .await?;
        Ok(Done::new((), flowed.position))
    }
}

/// The order period's opening and closing, scheduled with the change that sets it (a moved
/// period makes the older schedules no-ops: their due time no longer matches).
/// An administrator's answer to a membership (R-SAL-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipAnswer {
    Approve,
    Refuse,
    Remove,
}

/// When the daily generation of sales ahead runs (Europe/Paris).
pub const SALES_HORIZON_TIME: chrono::NaiveTime = match chrono::NaiveTime::from_hms_opt(0, 20, 0) {
    Some(t) => t,
    None => chrono::NaiveTime::MIN,
};

fn schedule_period(
    changes: &mut Changes,
    sale: SaleId,
    catalog: CatalogId,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
) {
    let payload = serde_json::json!({ "sale": sale, "catalog": catalog });
    changes.schedule(
        kinds::OPEN_PERIOD,
        &format!("open:{sale}:{catalog}:{}", opens_at.timestamp()),
        payload.clone(),
        opens_at,
    );
    changes.schedule(
        kinds::CLOSE_PERIOD,
        &format!("close:{sale}:{catalog}:{}", closes_at.timestamp()),
        payload,
        closes_at,
    );
}
