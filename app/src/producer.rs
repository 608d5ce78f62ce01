//! Producer accounts, products, stock and catalogs (R-ACC, R-CAT-1..3, R-STK-5).

use chrono::{NaiveDate, NaiveTime};
use etal_domain::account::{AccountCommand, AccountError, ProducerAccount, ProductDetails};
use etal_domain::actor::ProducerAccess;
use etal_domain::calendar::{paris_date, paris_instant};
use etal_domain::catalog::{Catalog, CatalogCommand, Modulation, OfferProduct};
use etal_domain::config::{PlanKind, SubscriptionBilling};
use etal_domain::ids::{CatalogId, ProducerId, ProductId, UserId};
use etal_domain::sale::{Sale, SaleCommand};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::{Actor, Money, Role};
use serde::Serialize;

use super::flow::{turn_key, Decided};
use super::outbox::rejected;
use super::{fingerprint, App, AppError, Ctx, Done};
use etal_store::{Changes, CommandContext};

impl App {
    /// The account and the caller's access to it (owner or collaborator, R-ACC-2).
    pub async fn producer_access(
        &self,
        actor: etal_domain::Actor,
        producer: ProducerId,
    ) -> Result<(ProducerAccount, ProducerAccess), AppError> {
        let (account, version) = self.load::<ProducerAccount>(producer).await?;
        if version == 0 {
            return Err(AppError::not_found("producer", producer));
        }
        let access = account.access(actor).map_err(|e| match e {
            AccountError::NoAccess | AccountError::NotTheOwner => {
                AppError::Forbidden(format!("you do not act for producer {producer}"))
            }
            other => AppError::Rejected {
                code: etal_domain::account::AccountError::code(&other),
                message: other.to_string(),
            },
        })?;
        Ok((account, access))
    }

    /// R-ACC-1: a producer opens their own account, accepting the charter in force.
    pub async fn open_account(
        &self,
        ctx: &Ctx,
        accepted_charter: &str,
        plan: PlanKind,
    ) -> Result<Done<ProducerId>, AppError> {
        if ctx.actor.role != Role::Producer {
            return Err(AppError::Forbidden(
                "only a producer opens their own account".into(),
            ));
        }
        let today = paris_date(self.now());
        let charter = self
            .config
            .current_charter(today)
            .ok_or_else(|| AppError::Internal("no producer charter is configured".into()))?;
        let terms = self
            .config
            .plan_terms(plan, today)
            .ok_or_else(|| {
                AppError::bad_input("plan", format!("the {plan} plan is not offered on {today}"))
            })?
            .clone();
        let producer = ProducerId(ctx.new_id("producer"));
        let fp = fingerprint("openAccount", &(accepted_charter, plan));
        let out = self
            .exec::<ProducerAccount>(
                producer,
                AccountCommand::OpenAccount {
                    producer,
                    owner: ctx.actor.user,
                    actor: ctx.actor,
                    accepted_charter: accepted_charter.to_string(),
                    current_charter: charter.version.clone(),
                    plan,
                    terms,
                    at: self.now(),
                },
                &ctx.step("open", &fp),
            )
            .await?;
        Ok(Done::new(producer, out.last_position()))
    }

    async fn account_command(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        op: &str,
        args: &impl Serialize,
        make: impl FnOnce(ProducerAccess) -> AccountCommand,
    ) -> Result<Done<()>, AppError> {
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        let out = self
            .exec::<ProducerAccount>(
                producer,
                make(access),
                &ctx.step(op, &fingerprint(op, args)),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// An account command committed with one row kept outside the log (personal data: bank
    /// details, legal identity), in one transaction: neither exists without the other. A
    /// conflict on the account decides again; a request already committed (its key taken)
    /// stands.
    pub(crate) async fn account_command_with_row<'q>(
        &self,
        cc: &etal_store::CommandContext,
        producer: ProducerId,
        command: impl Fn() -> AccountCommand,
        row: impl Fn() -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<Done<()>, AppError> {
        for attempt in 1..=self.bus.max_attempts() {
            let mut account = self
                .bus
                .load_stream::<ProducerAccount>(&producer.to_string())
                .await?;
            account
                .decide(|a| a.decide(command()))
                .map_err(super::outbox::rejected)?;
            let mut changes = etal_store::Changes::new();
            changes.stream(&account)?;
            let mut tx = self.pool.begin().await?;
            row().execute(&mut *tx).await?;
            match self
                .bus
                .commit_on(&mut tx, &changes, cc, &serde_json::Value::Null)
                .await
            {
                Ok(c) => {
                    tx.commit().await?;
                    return Ok(Done::new((), c.last_position()));
                }
                Err(etal_store::CommitError::KeyTaken) => {
                    tx.rollback().await?;
                    return Ok(Done::new((), None));
                }
                Err(etal_store::CommitError::Conflict) => {
                    tx.rollback().await?;
                    etal_store::bus::backoff(attempt).await;
                }
                Err(etal_store::CommitError::Store(e)) => return Err(e.into()),
            }
        }
        Err(AppError::Retryable("the account kept changing".into()))
    }

    /// R-PAY-4: the Stripe Connect account payouts are transferred to (the owner only).
    pub async fn set_payout_account(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        account: Option<String>,
    ) -> Result<Done<()>, AppError> {
        let at = self.now();
        let account = account
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty());
        let args = (producer, account.clone());
        self.account_command(ctx, producer, "setPayoutAccount", &args, |access| {
            AccountCommand::SetPayoutAccount {
                access,
                account,
                at,
            }
        })
        .await
    }

    /// R-ACC-2
    pub async fn grant_access(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        user: UserId,
    ) -> Result<Done<()>, AppError> {
        self.account_command(ctx, producer, "grantAccess", &(producer, user), |access| {
            AccountCommand::GrantAccess { access, user }
        })
        .await
    }

    /// R-ACC-2
    pub async fn revoke_access(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        user: UserId,
    ) -> Result<Done<()>, AppError> {
        self.account_command(ctx, producer, "revokeAccess", &(producer, user), |access| {
            AccountCommand::RevokeAccess { access, user }
        })
        .await
    }

    /// R-ACC-3: the terms in force today are frozen into the event; `billing` says how a
    /// subscription of the plan is billed (monthly or yearly; ignored by plans without one).
    pub async fn change_plan(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        plan: PlanKind,
        billing: SubscriptionBilling,
    ) -> Result<Done<()>, AppError> {
        let at = self.now();
        let terms = self
            .config
            .plan_terms(plan, paris_date(at))
            .ok_or_else(|| {
                AppError::bad_input("plan", format!("the {plan} plan is not offered now"))
            })?
            .clone();
        self.account_command(
            ctx,
            producer,
            "changePlan",
            &(producer, plan, billing),
            |access| AccountCommand::ChangePlan {
                access,
                plan,
                billing,
                terms,
                at,
            },
        )
        .await
    }

    /// R-ACC-3: a platform administrator records the training a producer completed on `on`
    /// (today or before, Europe/Paris): it grants the Member plan (then `changePlan`) and
    /// renews an Engaged account's training (its next update is due 2 years later).
    pub async fn record_training(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        on: NaiveDate,
    ) -> Result<Done<()>, AppError> {
        if ctx.actor.role != Role::PlatformAdmin {
            return Err(AppError::Forbidden(
                "only a platform administrator records a training".into(),
            ));
        }
        let today = paris_date(self.now());
        if on > today {
            return Err(AppError::bad_input(
                "completedOn",
                format!("a training is recorded once completed, not for {on}"),
            ));
        }
        let (_, version) = self.load::<ProducerAccount>(producer).await?;
        if version == 0 {
            return Err(AppError::not_found("producer", producer));
        }
        let at = paris_instant(on, NaiveTime::from_hms_opt(12, 0, 0).unwrap_or_default());
        let out = self
            .exec::<ProducerAccount>(
                producer,
                AccountCommand::CompleteTraining {
                    actor: ctx.actor,
                    at,
                },
                &ctx.step(
                    "recordTraining",
                    &fingerprint("recordTraining", &(producer, on)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-ACC-3: every account whose training is overdue on `today` moves to the Flexible terms
    /// in force (one commit each, under `key`); returns how many moved. Run daily by the
    /// scheduler.
    pub async fn apply_training_lapses(
        &self,
        today: NaiveDate,
        key: &str,
    ) -> Result<u32, AppError> {
        let Some(flexible) = self.config.plan_terms(PlanKind::Flexible, today).cloned() else {
            return Ok(0);
        };
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = $1",
        )
        .bind(<ProducerAccount as cqrs_es::Aggregate>::TYPE)
        .fetch_all(&self.pool)
        .await?;
        let at = self.now();
        let mut moved = 0;
        for id in ids {
            let (account, _) = self.load::<ProducerAccount>(&id).await?;
            let overdue = account.training_due().is_some_and(|due| due < today);
            if !account.is_open() || !overdue {
                continue;
            }
            let step = format!("{key}:{id}");
            let cc = CommandContext::new(Actor::system()).with_idempotency(step.clone(), step);
            let out = self
                .exec::<ProducerAccount>(
                    &id,
                    AccountCommand::ApplyTrainingLapse {
                        flexible_terms: flexible.clone(),
                        at,
                    },
                    &cc,
                )
                .await;
            match out {
                Ok(o) if !o.replayed => moved += 1,
                Ok(_) => {}
                Err(AppError::Rejected { code, message }) => {
                    tracing::info!(producer = %id, code, message, "training lapse not applied")
                }
                Err(e) => return Err(e),
            }
        }
        Ok(moved)
    }

    /// R-ACC-5
    pub async fn add_product(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        details: ProductDetails,
    ) -> Result<Done<ProductId>, AppError> {
        let product = ProductId(ctx.new_id("product"));
        let done = self
            .account_command(
                ctx,
                producer,
                "addProduct",
                &(producer, &details.clone()),
                |access| AccountCommand::AddProduct {
                    access,
                    product,
                    details,
                },
            )
            .await?;
        Ok(Done::new(product, done.position))
    }

    /// R-ACC-5
    pub async fn update_product(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        product: ProductId,
        details: ProductDetails,
    ) -> Result<Done<()>, AppError> {
        self.account_command(
            ctx,
            producer,
            "updateProduct",
            &(product, &details.clone()),
            |access| AccountCommand::UpdateProduct {
                access,
                product,
                details,
            },
        )
        .await
    }

    /// R-ACC-5: archiving takes the product out of every catalog at once (orders check it).
    pub async fn archive_product(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        product: ProductId,
        archived: bool,
    ) -> Result<Done<()>, AppError> {
        self.account_command(
            ctx,
            producer,
            "archiveProduct",
            &(product, archived),
            |access| {
                if archived {
                    AccountCommand::ArchiveProduct { access, product }
                } else {
                    AccountCommand::UnarchiveProduct { access, product }
                }
            },
        )
        .await
    }

    /// R-ACC-6: the owner closes the account.
    pub async fn close_account(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
    ) -> Result<Done<()>, AppError> {
        let at = self.now();
        self.account_command(ctx, producer, "closeAccount", &producer, |access| {
            AccountCommand::CloseAccount { access, at }
        })
        .await
    }

    /// R-STK-1, R-STK-5: sets a product's real stock (None: unlimited), shared by every catalog
    /// and market; applies at once to open sales.
    pub async fn set_stock(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        product: ProductId,
        real: Option<i64>,
    ) -> Result<Done<()>, AppError> {
        let (account, access) = self.producer_access(ctx.actor, producer).await?;
        if account.product(product).is_none() {
            return Err(AppError::not_found("product", product));
        }
        let cc = ctx.flow("setStock", &fingerprint("setStock", &(product, real)));
        // R-STK-5: takes its turn on the product's stock, so orders queued on it decide on the
        // new figure at once.
        let id = product.to_string();
        let flowed = self
            .run_flow(&cc, vec![turn_key::<Stock>(&id)], || async {
                let mut stock = self.load_turned::<Stock>(&id).await?;
                stock
                    .decide(|s| {
                        s.decide(StockCommand::SetStock {
                            product,
                            access,
                            real,
                        })
                    })
                    .map_err(rejected)?;
                let mut changes = Changes::new();
                changes.stream(&stock)?;
                let mut decided = Decided::new(changes, ());
                decided.remember(&stock);
                Ok(decided)
            })
            .await?;
        Ok(Done::new((), flowed.position))
    }

    /// R-CAT-1: one more catalog for a producer.
    pub async fn create_catalog(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        name: &str,
    ) -> Result<Done<CatalogId>, AppError> {
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        let catalog = CatalogId(ctx.new_id("catalog"));
        let out = self
            .exec::<Catalog>(
                catalog,
                CatalogCommand::CreateCatalog {
                    catalog,
                    name: name.to_string(),
                    access,
                },
                &ctx.step(
                    "createCatalog",
                    &fingerprint("createCatalog", &(producer, name)),
                ),
            )
            .await?;
        Ok(Done::new(catalog, out.last_position()))
    }

    /// The catalog, its producer's account and the caller's access to it.
    pub async fn catalog_access(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
    ) -> Result<(Catalog, ProducerAccount, ProducerAccess), AppError> {
        let (state, version) = self.load::<Catalog>(catalog).await?;
        let producer = match (version, state.producer()) {
            (v, Some(p)) if v > 0 => p,
            _ => return Err(AppError::not_found("catalog", catalog)),
        };
        let (account, access) = self.producer_access(ctx.actor, producer).await?;
        Ok((state, account, access))
    }

    pub(crate) async fn catalog_command(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        op: &str,
        args: &impl Serialize,
        make: impl FnOnce(&ProducerAccount, ProducerAccess) -> Result<CatalogCommand, AppError>,
    ) -> Result<Done<()>, AppError> {
        let (_, account, access) = self.catalog_access(ctx, catalog).await?;
        let command = make(&account, access)?;
        // R-CAT-3, R-ORD-3: a sale whose order period for this catalog has opened by the clock
        // (the scheduled opening may not have run yet) keeps the terms it opened with: its
        // prices are frozen and its period opened first, in the same commit as the change.
        let now = self.now();
        let due = self.sales_opening(catalog, now).await?;
        let cc = ctx.step(op, &fingerprint(op, args));
        let turns = due
            .iter()
            .map(|s| turn_key::<Sale>(&s.to_string()))
            .collect();
        let (due, command) = (&due, &command);
        let flowed = self
            .run_flow(&cc, turns, || async move {
                let mut stream = self
                    .bus
                    .load_stream::<Catalog>(&catalog.to_string())
                    .await?;
                let mut changes = Changes::new();
                for sale in due {
                    let mut s = self.load_turned::<Sale>(&sale.to_string()).await?;
                    if !s
                        .state
                        .participations()
                        .get(&catalog)
                        .is_some_and(|p| p.opening_due(now))
                    {
                        continue;
                    }
                    stream
                        .decide(|c| {
                            c.decide(CatalogCommand::FreezePricesForSale {
                                sale: *sale,
                                at: now,
                            })
                        })
                        .map_err(rejected)?;
                    s.decide(|st| st.decide(SaleCommand::OpenOrderPeriod { catalog, at: now }))
                        .map_err(rejected)?;
                    changes.stream(&s)?;
                }
                stream
                    .decide(|c| c.decide(command.clone()))
                    .map_err(rejected)?;
                changes.stream(&stream)?;
                Ok(Decided::new(changes, ()))
            })
            .await?;
        Ok(Done::new((), flowed.position))
    }

    /// The sales in which `catalog`'s order period has opened by the clock at `now` and was
    /// not opened yet (the scheduled opening has not run).
    async fn sales_opening(
        &self,
        catalog: CatalogId,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<etal_domain::ids::SaleId>, AppError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT aggregate_id FROM events WHERE aggregate_type = 'sale' \
             AND event_type = 'ProducerParticipated' \
             AND payload -> 'ProducerParticipated' ->> 'catalog' = $1",
        )
        .bind(catalog.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::new();
        for id in ids {
            let (sale, _) = self.load::<Sale>(&id).await?;
            if sale
                .participations()
                .get(&catalog)
                .is_some_and(|p| p.opening_due(now))
            {
                due.push(
                    id.parse()
                        .map_err(|_| AppError::Internal(format!("bad sale id {id}")))?,
                );
            }
        }
        Ok(due)
    }

    /// R-CAT-1: offers one of the producer's products in a catalog at a price.
    pub async fn add_offer(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        product: ProductId,
        price: Money,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "addOffer",
            &(catalog, product, price),
            |account, access| {
                let p = account
                    .product(product)
                    .ok_or_else(|| AppError::not_found("product", product))?;
                Ok(CatalogCommand::AddOffer {
                    product: OfferProduct::from(p),
                    price_incl_vat: price,
                    access,
                })
            },
        )
        .await
    }

    /// R-CAT-1: the offer leaves the catalog (sales whose prices were frozen keep theirs).
    pub async fn remove_offer(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        product: ProductId,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "removeOffer",
            &(catalog, product),
            |_, access| Ok(CatalogCommand::RemoveOffer { product, access }),
        )
        .await
    }

    /// R-CAT-2, R-CAT-3: a new price for one offer, from the next sale on.
    pub async fn set_offer_price(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        product: ProductId,
        price: Money,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "setOfferPrice",
            &(catalog, product, price),
            |_, access| {
                Ok(CatalogCommand::SetOfferPrice {
                    product,
                    price_incl_vat: price,
                    access,
                })
            },
        )
        .await
    }

    /// R-CAT-2: every offer by a percentage or an amount.
    pub async fn modulate_prices(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        modulation: Modulation,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "modulatePrices",
            &(catalog, modulation),
            |_, access| Ok(CatalogCommand::ModulatePrices { modulation, access }),
        )
        .await
    }

    /// R-CAT-2: fees included in customer prices.
    /// R-ORD-6/7: the catalog's home delivery (fee, free above an amount, minimum) and minimum
    /// order, for the orders placed from now on.
    pub async fn set_order_terms(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        terms: etal_domain::catalog::OrderTerms,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "setOrderTerms",
            &(catalog, terms),
            |_, access| Ok(CatalogCommand::SetOrderTerms { terms, access }),
        )
        .await
    }

    pub async fn set_fee_options(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        payment_fee: bool,
        service_fee: bool,
    ) -> Result<Done<()>, AppError> {
        self.catalog_command(
            ctx,
            catalog,
            "setFeeOptions",
            &(catalog, payment_fee, service_fee),
            |_, access| {
                Ok(CatalogCommand::SetFeeOptions {
                    include_payment_fee: payment_fee,
                    include_service_fee: service_fee,
                    access,
                })
            },
        )
        .await
    }
}
