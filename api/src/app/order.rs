//! Orders: placing (reservations across aggregates, all or nothing), adjustments, weighing,
//! payments, refunds, cancellation (R-ORD, R-STK-3, R-ACC-4).

use std::collections::{BTreeMap, BTreeSet};

use etal_domain::account::ProducerAccount;
use etal_domain::annual::{
    annual_sales_id, sales_year, AnnualSales, AnnualSalesCommand, AnnualSalesError,
};
use etal_domain::catalog::Catalog;
use etal_domain::ids::{CatalogId, OrderId, PaymentId, ProducerId, ProductId, SaleId};
use etal_domain::market::PaymentMode;
use etal_domain::order::{Canceller, Delivery, LineInput, Order, OrderCommand, PaymentMethod};
use etal_domain::sale::{Sale, SaleCommand};
use etal_domain::stock::{Stock, StockCommand};
use etal_domain::{Money, Role};
use etal_store::Idempotency;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::schedule::kinds;
use super::{derived_id, fingerprint, App, AppError, Ctx, Done, LineRefusal, Written};

/// One line as a customer asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineRequest {
    pub catalog: CatalogId,
    pub product: ProductId,
    pub quantity: i64,
}

/// Pick-up (the default) or home delivery to an address the customer registered (R-ORD-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryRequest {
    PickUp,
    Home { address_ref: Uuid, fee: Money },
}

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedOrder {
    pub order: OrderId,
    pub number: String,
    pub total: Money,
}

/// What a refused step left behind, to undo.
#[derive(Default)]
struct Undo {
    reserved: Vec<ProductId>,
    capped: Vec<ProducerId>,
    attached: Vec<CatalogId>,
}

fn refusal(
    line: u32,
    name: &str,
    code: &'static str,
    message: impl std::fmt::Display,
) -> LineRefusal {
    LineRefusal {
        line,
        product: name.to_string(),
        code,
        message: format!("{name}: {message}"),
    }
}

impl App {
    /// R-ORD-1..3: places a customer's order for a sale, with lines from any producers and
    /// catalogs, all or nothing. Each line reserves its units on the product's stock (R-STK-3)
    /// and each producer's amount on their annual sales (the Discovery cap, R-ACC-4) before the
    /// sale numbers the order (R-ORD-2) and the order is placed; when any line is refused, what
    /// was reserved is released and the error names every refused line. Online markets charge
    /// the total through the payment provider; a failed charge cancels everything.
    pub async fn place_order(
        &self,
        ctx: &Ctx,
        sale_id: SaleId,
        lines: &[LineRequest],
        delivery: DeliveryRequest,
    ) -> Result<Done<PlacedOrder>, AppError> {
        if ctx.actor.role != Role::Customer {
            return Err(AppError::Forbidden(
                "only a customer places an order".into(),
            ));
        }
        if lines.is_empty() {
            return Err(AppError::bad_input(
                "lines",
                "an order needs at least one line",
            ));
        }
        if lines.len() > 500 {
            return Err(AppError::bad_input("lines", "at most 500 lines"));
        }
        let mut seen = BTreeSet::new();
        for (i, l) in lines.iter().enumerate() {
            if !seen.insert(l.product) {
                return Err(AppError::bad_input(
                    &format!("lines[{i}].product"),
                    "a product appears on two lines",
                ));
            }
        }
        let fp = fingerprint("placeOrder", &(sale_id, lines, delivery));
        if let Some(key) = &ctx.key {
            let idem = Idempotency {
                key: format!("{key}:place"),
                fingerprint: format!("{fp}:place"),
            };
            let recorded = self.bus.recorded(&idem).await?;
            if let Some(outcome) = recorded {
                let (order, _) = self.load::<Order>(&outcome.aggregate_id).await?;
                return Ok(Done::new(
                    PlacedOrder {
                        order: order
                            .id()
                            .ok_or_else(|| AppError::Internal("recorded order missing".into()))?,
                        number: order.number().to_string(),
                        total: order.total(),
                    },
                    outcome.last_position(),
                ));
            }
        }
        let now = self.now();
        let customer = ctx.actor.user;
        let order_id = OrderId(ctx.new_id("order"));
        let (sale, version) = self.load::<Sale>(sale_id).await?;
        if version == 0 {
            return Err(AppError::not_found("sale", sale_id));
        }
        let delivery = match delivery {
            DeliveryRequest::PickUp => Delivery::PickUp,
            DeliveryRequest::Home { address_ref, fee } => {
                let owner: Option<Uuid> = sqlx::query_scalar(
                    "SELECT user_id FROM addresses WHERE address_ref = $1 AND erased_at IS NULL",
                )
                .bind(address_ref)
                .fetch_optional(&self.pool)
                .await?;
                if owner != Some(customer.0) {
                    return Err(AppError::not_found("address", address_ref));
                }
                Delivery::Home { fee, address_ref }
            }
        };

        // Look up the frozen terms of every line (R-CAT-3) and check what needs no write.
        let mut catalogs: BTreeMap<CatalogId, Catalog> = BTreeMap::new();
        let mut accounts: BTreeMap<ProducerId, ProducerAccount> = BTreeMap::new();
        let mut inputs = Vec::new();
        let mut refusals = Vec::new();
        for (i, req) in lines.iter().enumerate() {
            let line = i as u32;
            if let std::collections::btree_map::Entry::Vacant(e) = catalogs.entry(req.catalog) {
                let (c, v) = self.load::<Catalog>(req.catalog).await?;
                if v == 0 {
                    return Err(AppError::not_found("catalog", req.catalog));
                }
                e.insert(c);
            }
            let catalog = &catalogs[&req.catalog];
            let Some(producer) = catalog.producer() else {
                return Err(AppError::not_found("catalog", req.catalog));
            };
            let Some(terms) = catalog.terms_for_sale(sale_id, req.product) else {
                refusals.push(refusal(
                    line,
                    &req.product.to_string(),
                    "UNKNOWN_OFFER",
                    "not offered in this catalog",
                ));
                continue;
            };
            if let std::collections::btree_map::Entry::Vacant(e) = accounts.entry(producer) {
                e.insert(self.load::<ProducerAccount>(producer).await?.0);
            }
            if !accounts[&producer].is_orderable(req.product) {
                refusals.push(refusal(
                    line,
                    &terms.name,
                    "PRODUCT_UNAVAILABLE",
                    "no longer offered",
                ));
                continue;
            }
            if !sale.period_open(req.catalog, now) {
                refusals.push(refusal(
                    line,
                    &terms.name,
                    "ORDER_PERIOD_CLOSED",
                    "orders are not open for this catalog",
                ));
                continue;
            }
            let input = LineInput {
                line,
                producer,
                catalog: req.catalog,
                product: req.product,
                name: terms.name.clone(),
                unit: terms.unit.clone(),
                unit_price_incl_vat: terms.price_incl_vat,
                vat: terms.vat,
                variable_weight: terms.variable_weight,
                estimated_weight_kg: terms.estimated_weight_kg,
                packaging_multiple: terms.packaging_multiple,
                quantity: req.quantity,
            };
            if let Err(e) = Order::price_lines(vec![input.clone()]) {
                refusals.push(refusal(line, &terms.name, e.code(), e));
                continue;
            }
            inputs.push(input);
        }
        if !refusals.is_empty() {
            return Err(AppError::OrderRefused { lines: refusals });
        }
        let priced = Order::price_lines(inputs.clone()).map_err(|e| AppError::Rejected {
            code: e.code(),
            message: e.to_string(),
        })?;

        let mut undo = Undo::default();
        // 1. Stock: every line reserves on the product's stock, which decides (R-STK-3).
        let expires_at = now + self.settings.reservation_ttl;
        for l in &priced {
            self.schedule(
                kinds::EXPIRE_RESERVATIONS,
                &format!("expire:{}:{}", l.product, order_id),
                serde_json::json!({ "product": l.product }),
                expires_at,
            )
            .await?;
            let reserved = self
                .exec::<Stock>(
                    l.product,
                    StockCommand::Reserve {
                        product: l.product,
                        reservation: order_id,
                        sale: sale_id,
                        quantity: l.quantity,
                        expires_at,
                    },
                    &ctx.plain(),
                )
                .await;
            match reserved {
                Ok(_) => undo.reserved.push(l.product),
                Err(AppError::Rejected { code, message }) => {
                    refusals.push(refusal(l.line, &l.name, code, message))
                }
                Err(e) => {
                    self.undo(order_id, sale_id, &undo).await;
                    return Err(e);
                }
            }
        }
        // 2. The Discovery cap: each producer's amount on their annual sales (R-ACC-4).
        if refusals.is_empty() {
            let mut by_producer: BTreeMap<ProducerId, Money> = BTreeMap::new();
            for l in &priced {
                *by_producer.entry(l.producer).or_default() += l.amount_incl_vat;
            }
            let year = sales_year(sale.starts_at().unwrap_or(now));
            let sale_date = sale
                .date()
                .unwrap_or_else(|| etal_domain::calendar::paris_date(now));
            for (producer, amount) in by_producer {
                let plan = accounts
                    .get(&producer)
                    .map(|a| a.plan())
                    .unwrap_or_default();
                let cap = self
                    .config
                    .plan_terms(plan, sale_date)
                    .and_then(|t| t.annual_cap_non_amap);
                let reserved = self
                    .exec::<AnnualSales>(
                        annual_sales_id(producer, year),
                        AnnualSalesCommand::Reserve {
                            order: order_id,
                            amount,
                            amap: sale.amap(),
                            cap,
                            at: now,
                        },
                        &ctx.plain(),
                    )
                    .await;
                match reserved {
                    Ok(_) => undo.capped.push(producer),
                    Err(AppError::Rejected { code, message }) => {
                        for l in priced.iter().filter(|l| l.producer == producer) {
                            refusals.push(refusal(l.line, &l.name, code, &message));
                        }
                    }
                    Err(e) => {
                        self.undo(order_id, sale_id, &undo).await;
                        return Err(e);
                    }
                }
            }
        }
        if !refusals.is_empty() {
            self.undo(order_id, sale_id, &undo).await;
            return Err(AppError::OrderRefused { lines: refusals });
        }
        // 3. The sale numbers the order and checks the periods again, atomically (R-ORD-2/3).
        let order_catalogs: Vec<CatalogId> = priced
            .iter()
            .map(|l| l.catalog)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let attached = self
            .exec::<Sale>(
                sale_id,
                SaleCommand::AttachOrder {
                    order: order_id,
                    customer,
                    catalogs: order_catalogs.clone(),
                    at: now,
                },
                &ctx.plain(),
            )
            .await;
        if let Err(e) = attached {
            self.undo(order_id, sale_id, &undo).await;
            return Err(e);
        }
        undo.attached = order_catalogs;
        let (sale_now, _) = self.load::<Sale>(sale_id).await?;
        let number = sale_now
            .order_number(order_id)
            .ok_or_else(|| AppError::Internal("the sale did not number the order".into()))?
            .to_string();
        // 4. The order, with its frozen terms.
        let placed = self
            .exec::<Order>(
                order_id,
                OrderCommand::PlaceOrder {
                    order: order_id,
                    sale: sale_id,
                    market: sale.market(),
                    customer,
                    number: number.clone(),
                    lines: inputs,
                    payment_mode: sale.payment_mode(),
                    delivery,
                    at: now,
                    actor: ctx.actor,
                },
                &ctx.step("place", &fp),
            )
            .await;
        let placed = match placed {
            Ok(p) => p,
            Err(e) => {
                self.undo(order_id, sale_id, &undo).await;
                return Err(e);
            }
        };
        let mut written = Written::default();
        written.add(&placed);
        // 5. Confirm the reservations: they no longer expire.
        for product in &undo.reserved {
            let out = self
                .exec::<Stock>(
                    *product,
                    StockCommand::Confirm {
                        reservation: order_id,
                    },
                    &ctx.plain(),
                )
                .await?;
            written.add(&out);
        }
        for producer in &undo.capped {
            let year = sales_year(sale.starts_at().unwrap_or(now));
            match self
                .exec::<AnnualSales>(
                    annual_sales_id(*producer, year),
                    AnnualSalesCommand::Confirm { order: order_id },
                    &ctx.plain(),
                )
                .await
            {
                Ok(out) => written.add(&out),
                Err(AppError::Rejected {
                    code: "ALREADY_CONFIRMED",
                    ..
                }) => {}
                Err(e) => return Err(e),
            }
        }
        let (order, _) = self.load::<Order>(order_id).await?;
        // 6. Online markets charge at once.
        if sale.payment_mode() == PaymentMode::Online && !order.total().is_zero() {
            match self
                .payments
                .charge(&format!("charge:{order_id}"), order.total())
                .await
            {
                Ok(provider_ref) => {
                    let out = self
                        .exec::<Order>(
                            order_id,
                            OrderCommand::RecordPayment {
                                payment: PaymentId(derived_id(&format!(
                                    "payment:{order_id}:online"
                                ))),
                                method: PaymentMethod::Online { provider_ref },
                                amount: order.total(),
                                actor: ctx.actor,
                                market_access: None,
                                at: now,
                            },
                            &ctx.plain(),
                        )
                        .await?;
                    written.add(&out);
                }
                Err(failure) => {
                    let _ = self
                        .exec::<Order>(
                            order_id,
                            OrderCommand::Cancel {
                                by: Canceller::Customer(ctx.actor),
                                at: now,
                                period_open: true,
                            },
                            &ctx.plain(),
                        )
                        .await;
                    self.undo(order_id, sale_id, &undo).await;
                    return Err(AppError::PaymentFailed(failure.0));
                }
            }
        }
        Ok(Done::new(
            PlacedOrder {
                order: order_id,
                number,
                total: order.total(),
            },
            written.0,
        ))
    }

    /// Releases what a refused order reserved. Best effort: a reservation that cannot be
    /// released now expires on schedule.
    async fn undo(&self, order: OrderId, sale: SaleId, undo: &Undo) {
        let ctx = Ctx::system();
        for product in &undo.reserved {
            if let Err(e) = self
                .exec::<Stock>(
                    *product,
                    StockCommand::Release { reservation: order },
                    &ctx.plain(),
                )
                .await
            {
                tracing::warn!(%order, %product, error = %e, "release failed; the reservation will expire");
            }
        }
        let (sale_state, _) = self.load::<Sale>(sale).await.unwrap_or_default();
        let year = sales_year(sale_state.starts_at().unwrap_or_else(|| self.now()));
        for producer in &undo.capped {
            if let Err(e) = self
                .exec::<AnnualSales>(
                    annual_sales_id(*producer, year),
                    AnnualSalesCommand::Release { order },
                    &ctx.plain(),
                )
                .await
            {
                tracing::warn!(%order, %producer, error = %e, "cap release failed");
            }
        }
        if !undo.attached.is_empty() {
            if let Err(e) = self
                .exec::<Sale>(
                    sale,
                    SaleCommand::DetachCatalogs {
                        order,
                        catalogs: undo.attached.clone(),
                    },
                    &ctx.plain(),
                )
                .await
            {
                tracing::warn!(%order, error = %e, "detach failed");
            }
        }
    }

    async fn order_line(
        &self,
        order: OrderId,
        line: u32,
    ) -> Result<(Order, etal_domain::order::Line), AppError> {
        let (state, version) = self.load::<Order>(order).await?;
        if version == 0 {
            return Err(AppError::not_found("order", order));
        }
        let l = state
            .lines()
            .iter()
            .find(|l| l.line == line)
            .cloned()
            .ok_or_else(|| AppError::not_found("order line", format!("{order}/{line}")))?;
        Ok((state, l))
    }

    /// R-ORD-4: a producer lowers a line after a shortage. The stock reservation follows, the
    /// annual sales shrink, and an online payment gets the difference refunded.
    pub async fn adjust_quantity(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        line: u32,
        quantity: i64,
    ) -> Result<Done<()>, AppError> {
        let (_, l) = self.order_line(order_id, line).await?;
        let (_, access) = self.producer_access(ctx.actor, l.producer).await?;
        let fp = fingerprint("adjustQuantity", &(order_id, line, quantity));
        let mut written = Written::default();
        let out = self
            .exec::<Order>(
                order_id,
                OrderCommand::AdjustQuantity {
                    line,
                    quantity,
                    access,
                    at: self.now(),
                },
                &ctx.step("adjust", &fp),
            )
            .await?;
        written.add(&out);
        let out = self
            .exec::<Stock>(
                l.product,
                StockCommand::AdjustReservation {
                    reservation: order_id,
                    quantity,
                },
                &ctx.plain(),
            )
            .await?;
        written.add(&out);
        self.after_change(ctx, order_id, l.producer, l.catalog, &mut written)
            .await?;
        Ok(Done::new((), written.0))
    }

    /// R-ORD-4: a producer records the actual weight of a variable-weight line.
    pub async fn record_weight(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        line: u32,
        weight_kg: Decimal,
    ) -> Result<Done<()>, AppError> {
        let (_, l) = self.order_line(order_id, line).await?;
        let (_, access) = self.producer_access(ctx.actor, l.producer).await?;
        let fp = fingerprint("recordWeight", &(order_id, line, weight_kg));
        let mut written = Written::default();
        let out = self
            .exec::<Order>(
                order_id,
                OrderCommand::RecordWeight {
                    line,
                    weight_kg,
                    access,
                    at: self.now(),
                },
                &ctx.step(&format!("weigh:{order_id}:{line}"), &fp),
            )
            .await?;
        written.add(&out);
        self.after_change(ctx, order_id, l.producer, l.catalog, &mut written)
            .await?;
        Ok(Done::new((), written.0))
    }

    /// R-ORD-4: weighing in bulk for a whole sale: (order, line, kg) entries, each applied as
    /// [`App::record_weight`]. Returns one result per entry, in order.
    pub async fn record_weights(
        &self,
        ctx: &Ctx,
        entries: &[(OrderId, u32, Decimal)],
    ) -> Vec<Result<Done<()>, AppError>> {
        let mut results = Vec::with_capacity(entries.len());
        for (order, line, kg) in entries {
            results.push(self.record_weight(ctx, *order, *line, *kg).await);
        }
        results
    }

    /// After an order changed: shrink the producer's annual sales, detach a catalog that has
    /// no more units, and refund what is owed.
    async fn after_change(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        producer: ProducerId,
        catalog: CatalogId,
        written: &mut Written,
    ) -> Result<(), AppError> {
        let (order, _) = self.load::<Order>(order_id).await?;
        let (sale, _) = self.load::<Sale>(order.sale()).await?;
        let year = sales_year(sale.starts_at().unwrap_or_else(|| self.now()));
        let amount: Money = order
            .lines()
            .iter()
            .filter(|l| l.producer == producer)
            .map(|l| l.amount_incl_vat)
            .sum();
        let annual = annual_sales_id(producer, year);
        let cmd = if amount.is_zero() {
            AnnualSalesCommand::Release { order: order_id }
        } else {
            AnnualSalesCommand::Reduce {
                order: order_id,
                new_amount: amount,
            }
        };
        match self.exec::<AnnualSales>(&annual, cmd, &ctx.plain()).await {
            Ok(out) => written.add(&out),
            // A weighing that raised the amount, or a reservation already gone: nothing to shrink.
            Err(AppError::Rejected { code, .. })
                if code
                    == AnnualSalesError::NotAReduction {
                        order: order_id,
                        current: Money::ZERO,
                    }
                    .code()
                    || code == "UNKNOWN_ORDER" => {}
            Err(e) => return Err(e),
        }
        let units_left: i64 = order
            .lines()
            .iter()
            .filter(|l| l.catalog == catalog)
            .map(|l| l.quantity)
            .sum();
        if units_left == 0 {
            let out = self
                .exec::<Sale>(
                    order.sale(),
                    SaleCommand::DetachCatalogs {
                        order: order_id,
                        catalogs: vec![catalog],
                    },
                    &ctx.plain(),
                )
                .await?;
            written.add(&out);
        }
        self.settle_refund(order_id, written).await
    }

    /// Refunds through the payment provider what an order owes on its online payments. The
    /// provider call and the record carry keys derived from the order's state, so a retry never
    /// refunds twice (R-ORD-4, R-FEE-4).
    pub async fn settle_refund(
        &self,
        order_id: OrderId,
        written: &mut Written,
    ) -> Result<(), AppError> {
        let (order, _) = self.load::<Order>(order_id).await?;
        let mut owed = order.refund_owed();
        for (payment, record) in order.payments() {
            if owed.is_zero() {
                break;
            }
            let PaymentMethod::Online { provider_ref } = &record.method else {
                continue;
            };
            let refundable = (record.amount - record.refunded).min(owed);
            if refundable.is_zero() || refundable.is_negative() {
                continue;
            }
            let key = format!("refund:{order_id}:{payment}:{}", record.refunded);
            let refund_ref = self
                .payments
                .refund(&key, provider_ref, refundable)
                .await
                .map_err(|f| AppError::PaymentFailed(f.0))?;
            let out = self
                .exec::<Order>(
                    order_id,
                    OrderCommand::RecordRefund {
                        payment: *payment,
                        amount: refundable,
                        provider_ref: refund_ref,
                        at: self.now(),
                    },
                    &Ctx::system()
                        .plain()
                        .with_idempotency(key.clone(), key.clone()),
                )
                .await?;
            written.add(&out);
            owed -= refundable;
            // A refund after the sale was validated is debited from the producers' balances.
            self.schedule_refund_debit(order.sale(), order_id, &key)
                .await?;
        }
        Ok(())
    }

    /// R-ORD-5: the customer cancels while the period is open; a producer of the order or a
    /// market administrator after. Reservations are released and online payments refunded.
    pub async fn cancel_order(&self, ctx: &Ctx, order_id: OrderId) -> Result<Done<()>, AppError> {
        let (order, version) = self.load::<Order>(order_id).await?;
        if version == 0 {
            return Err(AppError::not_found("order", order_id));
        }
        let (sale, _) = self.load::<Sale>(order.sale()).await?;
        let now = self.now();
        let by =
            match ctx.actor.role {
                Role::Customer => Canceller::Customer(ctx.actor),
                Role::Producer => {
                    let mut found = None;
                    for producer in order.producers() {
                        if let Ok((_, access)) = self.producer_access(ctx.actor, producer).await {
                            found = Some(access);
                            break;
                        }
                    }
                    Canceller::Producer(found.ok_or_else(|| {
                        AppError::Forbidden("you sell nothing in this order".into())
                    })?)
                }
                Role::MarketAdmin => {
                    let (_, access) = self.market_access(ctx.actor, order.market()).await?;
                    Canceller::MarketAdministrator(access)
                }
                _ => return Err(AppError::Forbidden("you cannot cancel this order".into())),
            };
        let period_open = order.catalogs().iter().all(|c| sale.period_open(*c, now));
        let mut written = Written::default();
        let out = self
            .exec::<Order>(
                order_id,
                OrderCommand::Cancel {
                    by,
                    at: now,
                    period_open,
                },
                &ctx.step("cancel", &fingerprint("cancelOrder", &order_id)),
            )
            .await?;
        written.add(&out);
        let undo = Undo {
            reserved: order.lines().iter().map(|l| l.product).collect(),
            capped: order.producers().into_iter().collect(),
            attached: order.catalogs().into_iter().collect(),
        };
        self.undo(order_id, order.sale(), &undo).await;
        self.settle_refund(order_id, &mut written).await?;
        Ok(Done::new((), written.0))
    }

    /// A market administrator records a payment taken at pick-up (cash, cheque, card terminal).
    pub async fn record_onsite_payment(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        method: PaymentMethod,
        amount: Money,
    ) -> Result<Done<()>, AppError> {
        if method.is_online() {
            return Err(AppError::bad_input(
                "method",
                "online payments come from the payment provider",
            ));
        }
        let (order, version) = self.load::<Order>(order_id).await?;
        if version == 0 {
            return Err(AppError::not_found("order", order_id));
        }
        let (_, access) = self.market_access(ctx.actor, order.market()).await?;
        if !access.administrator {
            return Err(AppError::Forbidden(
                "only a market administrator records payments at pick-up".into(),
            ));
        }
        let payment = PaymentId(ctx.new_id("payment"));
        let out = self
            .exec::<Order>(
                order_id,
                OrderCommand::RecordPayment {
                    payment,
                    method: method.clone(),
                    amount,
                    actor: ctx.actor,
                    market_access: Some(access),
                    at: self.now(),
                },
                &ctx.step(
                    "pay",
                    &fingerprint("recordPayment", &(order_id, &method, amount)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }
}
