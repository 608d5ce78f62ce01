//! Invoices (R-INV-1..5): the producer's legal identity and the billing mandate, invoices
//! issued on a producer's behalf for an order's lines (a consumer's request), and credit notes
//! for what an order no longer owes. Each document takes the next number of its series in the
//! commit that issues it (the series is an aggregate: `etal_domain::invoice`), and is written
//! whole (parties, lines, the Factur-X CII XML) beside that event, never to change.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use etal_domain::account::{AccountCommand, ProducerAccount};
use etal_domain::ids::{OrderId, ProducerId};
use etal_domain::invoice::{DocumentKind, InvoiceCommand, InvoiceId, InvoiceSeries, Totals};
use etal_domain::order::Order;
use etal_domain::{Money, Role};
use etal_store::{Changes, CommitError};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::cii::{self, Party};
use crate::legal_ids::{check_siren, check_vat_number};
use crate::outbox::rejected;
use crate::{App, AppError, Ctx, Done};

/// The billing mandate in force (R-INV-3): its version, and its text.
pub const BILLING_MANDATE_VERSION: &str = "2026-12";
pub const BILLING_MANDATE_TEXT: &str = include_str!("../../config/billing-mandate-2026-12.md");

/// The series of the invoices a producer's sales are invoiced in, and its prefix.
const SALES_SERIES: &str = "ventes";
const SALES_PREFIX: &str = "F-";

/// A producer's legal identity as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BillingIdentity {
    pub legal_name: String,
    pub siren: String,
    pub vat_number: Option<String>,
    pub vat_franchise: bool,
    pub address_line: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
}

/// R-INV-4: the mentions owed to a professional buyer (Code de commerce L441-10, D441-5).
const LATE_PAYMENT: &str = "Pénalités de retard : trois fois le taux d'intérêt légal ; \
     indemnité forfaitaire pour frais de recouvrement : 40 €";

/// An issued document as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvoiceRecord {
    pub id: InvoiceId,
    pub number: String,
    pub kind: DocumentKind,
    pub issuer: ProducerId,
    pub customer: Option<uuid::Uuid>,
    pub source: String,
    pub corrects: Option<InvoiceId>,
    pub issue_date: NaiveDate,
    pub totals: Totals,
    pub cii_xml: String,
}

fn coded(code: &'static str, message: impl Into<String>) -> AppError {
    AppError::Rejected {
        code,
        message: message.into(),
    }
}

/// A SIREN with its Luhn key, and the French VAT number that must match it (when given), as
/// stored; coded refusals otherwise (producers' and professional customers' identities).
pub(crate) fn checked_siren_and_vat(
    siren: &str,
    vat_number: Option<&str>,
) -> Result<(String, Option<String>), AppError> {
    let siren = check_siren(siren).map_err(|e| coded(e.code(), e.to_string()))?;
    let vat_number = match vat_number.map(str::trim) {
        None | Some("") => None,
        Some(v) => {
            Some(check_vat_number(v, Some(&siren)).map_err(|e| coded(e.code(), e.to_string()))?)
        }
    };
    Ok((siren, vat_number))
}

/// An ISO 3166 country code of 2 letters, upper case.
pub(crate) fn checked_country(country: &str) -> Result<String, AppError> {
    let country = country.trim().to_ascii_uppercase();
    if country.len() != 2 || !country.chars().all(|c| c.is_ascii_uppercase()) {
        return Err(AppError::bad_input(
            "country",
            "an ISO 3166 code of 2 letters",
        ));
    }
    Ok(country)
}

/// Euros the French way: `1 234,50 €`.
pub(crate) fn euros(d: Decimal) -> String {
    let s = format!(
        "{:.2}",
        d.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero)
    );
    let (int, frac) = s.split_once('.').unwrap_or((&s, "00"));
    let (sign, digits) = int.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", int));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push('\u{202f}');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped},{frac} €")
}

fn french(d: Decimal) -> String {
    d.normalize().to_string().replace('.', ",")
}

fn french_date(d: NaiveDate) -> String {
    d.format("%d/%m/%Y").to_string()
}

/// R-INV-4, R-INV-5: the readable PDF of a document, in French, with its mentions.
fn pdf_of(doc: &cii::Document, totals: &cii::Totals) -> crate::facturx_pdf::InvoicePdf {
    let party = |p: &Party, seller: bool| {
        let mut lines = vec![p.name.clone()];
        lines.extend(p.address_lines.iter().cloned());
        if !p.postcode.is_empty() || !p.city.is_empty() {
            lines.push(format!("{} {}", p.postcode, p.city).trim().to_string());
        }
        if let Some(s) = &p.siren {
            lines.push(format!("SIREN {s}"));
        }
        if let Some(v) = &p.vat_number {
            lines.push(format!("TVA intracommunautaire {v}"));
        } else if seller && doc.vat_exempt_reason.is_some() {
            lines.push("TVA non applicable, art. 293 B du CGI".into());
        }
        lines
    };
    let mut mentions = Vec::new();
    if let Some((number, date)) = &doc.referenced_invoice {
        mentions.push(format!(
            "Avoir de la facture {number} du {}",
            french_date(*date)
        ));
    }
    if let Some(reason) = &doc.vat_exempt_reason {
        mentions.push(reason.clone());
    }
    mentions.push(format!("Conditions de paiement : {}", doc.payment_terms));
    if let Some(due) = doc.due_date {
        mentions.push(format!("Échéance : {}", french_date(due)));
    }
    mentions.extend(doc.notes.iter().cloned());
    crate::facturx_pdf::InvoicePdf {
        title: match doc.kind {
            cii::DocumentKind::Invoice => "Facture".into(),
            cii::DocumentKind::CreditNote => "Avoir".into(),
        },
        number: doc.number.clone(),
        issue_date: french_date(doc.issue_date),
        seller_lines: party(&doc.seller, true),
        buyer_lines: party(&doc.buyer, false),
        lines: doc
            .lines
            .iter()
            .map(|l| crate::facturx_pdf::PdfLine {
                description: l.name.clone(),
                quantity: french(l.quantity),
                unit_price_excl_vat: euros(l.unit_price_excl_vat.round_dp(2)),
                vat_rate: format!("{} %", french(l.vat_rate)),
                total_excl_vat: euros(l.line_total_excl_vat),
            })
            .collect(),
        vat_lines: totals
            .per_rate
            .iter()
            .map(|r| (format!("{} %", french(r.rate)), euros(r.base), euros(r.vat)))
            .collect(),
        totals: vec![
            ("Total HT".into(), euros(totals.tax_basis_total)),
            ("TVA".into(), euros(totals.tax_total)),
            ("Total TTC".into(), euros(totals.grand_total)),
        ],
        mentions,
    }
}

/// An invoice series: its stream, its numbers' prefix, and who issues in it.
struct Series {
    stream: String,
    prefix: &'static str,
    /// The issuing producer, or the nil id for the platform.
    issuer: uuid::Uuid,
}

impl Series {
    /// A producer's sales, invoiced on their behalf (R-INV-3).
    fn sales(producer: ProducerId) -> Series {
        Series {
            stream: format!("producer:{producer}:{SALES_SERIES}"),
            prefix: SALES_PREFIX,
            issuer: producer.0,
        }
    }
    /// The platform's fees and subscriptions, invoiced to producers monthly (R-INV-3).
    fn platform_fees() -> Series {
        Series {
            stream: "platform:frais".into(),
            prefix: "P-",
            issuer: uuid::Uuid::nil(),
        }
    }
}

/// Each line of a producer's part of an order, as invoiced: (line id, name, quantity, unit,
/// total excl. VAT, VAT rate).
fn order_lines(order: &Order, producer: ProducerId) -> Vec<cii::Line> {
    order
        .lines()
        .iter()
        .filter(|l| l.producer == producer && !l.amount_incl_vat.is_zero())
        .map(|l| {
            let (quantity, unit_code) = match (l.variable_weight, l.weight_kg) {
                (true, Some(kg)) => (kg, "KGM"),
                _ => (Decimal::from(l.quantity), "C62"),
            };
            let total = l.amount_excl_vat.amount();
            let unit_price = if quantity.is_zero() {
                total
            } else {
                (total / quantity).round_dp(6)
            };
            cii::Line {
                id: (l.line + 1).to_string(),
                name: l.name.clone(),
                quantity,
                unit_code: unit_code.to_string(),
                unit_price_excl_vat: unit_price,
                vat_rate: l.vat.percent(),
                line_total_excl_vat: total,
            }
        })
        .collect()
}

impl App {
    /// R-INV-4: the owner records the producer's legal identity (SIREN with its Luhn key, VAT
    /// number of France matching the SIREN unless under the VAT franchise).
    pub async fn set_billing_identity(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        identity: BillingIdentity,
    ) -> Result<Done<()>, AppError> {
        let (siren, vat_number) =
            checked_siren_and_vat(&identity.siren, identity.vat_number.as_deref())?;
        if vat_number.is_none() && !identity.vat_franchise {
            return Err(coded(
                "VAT_NUMBER_REQUIRED",
                "a VAT number is required unless the producer is under the VAT franchise",
            ));
        }
        for (field, value, max) in [
            ("legalName", &identity.legal_name, 200),
            ("addressLine", &identity.address_line, 200),
            ("postcode", &identity.postcode, 20),
            ("city", &identity.city, 100),
        ] {
            if value.trim().is_empty() || value.chars().count() > max {
                return Err(AppError::bad_input(field, format!("1 to {max} characters")));
            }
        }
        let country = checked_country(&identity.country)?;
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        let cc = ctx.flow(
            "setBillingIdentity",
            &crate::fingerprint("setBillingIdentity", &(producer, &identity)),
        );
        let now = chrono::SubsecRound::trunc_subsecs(self.now(), 6);
        let (legal_name, address_line, postcode, city) = (
            identity.legal_name.trim(),
            identity.address_line.trim(),
            identity.postcode.trim(),
            identity.city.trim(),
        );
        self.account_command_with_row(
            &cc,
            producer,
            || AccountCommand::SetBillingIdentity {
                access,
                siren: siren.clone(),
                vat_number: vat_number.clone(),
                vat_franchise: identity.vat_franchise,
                at: now,
            },
            || {
                sqlx::query(
                    "INSERT INTO billing_identities (producer_id, legal_name, siren, vat_number, \
                     vat_franchise, address_line, postcode, city, country, changed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (producer_id) DO UPDATE SET \
                     legal_name = $2, siren = $3, vat_number = $4, vat_franchise = $5, address_line = $6, \
                     postcode = $7, city = $8, country = $9, changed_at = $10",
                )
                .bind(producer.0)
                .bind(legal_name)
                .bind(&siren)
                .bind(&vat_number)
                .bind(identity.vat_franchise)
                .bind(address_line)
                .bind(postcode)
                .bind(city)
                .bind(&country)
                .bind(now)
            },
        )
        .await
    }

    /// R-INV-3: the owner accepts the billing mandate in force.
    pub async fn accept_billing_mandate(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        version: &str,
    ) -> Result<Done<()>, AppError> {
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        let out = self
            .exec::<ProducerAccount>(
                producer,
                AccountCommand::AcceptBillingMandate {
                    access,
                    version: version.to_string(),
                    current: BILLING_MANDATE_VERSION.to_string(),
                    at: self.now(),
                },
                &ctx.step(
                    "acceptBillingMandate",
                    &crate::fingerprint("acceptBillingMandate", &(producer, version)),
                ),
            )
            .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// The producer's legal identity, if recorded.
    pub async fn billing_identity(
        &self,
        producer: ProducerId,
    ) -> Result<Option<BillingIdentity>, AppError> {
        let row = sqlx::query(
            "SELECT legal_name, siren, vat_number, vat_franchise, address_line, postcode, city, country \
             FROM billing_identities WHERE producer_id = $1",
        )
        .bind(producer.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(BillingIdentity {
                legal_name: r.try_get("legal_name")?,
                siren: r.try_get("siren")?,
                vat_number: r.try_get("vat_number")?,
                vat_franchise: r.try_get("vat_franchise")?,
                address_line: r.try_get("address_line")?,
                postcode: r.try_get("postcode")?,
                city: r.try_get("city")?,
                country: r.try_get("country")?,
            }),
        })
    }

    /// Who may ask for an order's invoice: its customer, or the producer's people.
    async fn invoice_access(
        &self,
        ctx: &Ctx,
        order: &Order,
        producer: ProducerId,
    ) -> Result<(), AppError> {
        match ctx.actor.role {
            Role::Customer if order.customer() == ctx.actor.user => Ok(()),
            Role::Producer => self.producer_access(ctx.actor, producer).await.map(|_| ()),
            _ => Err(AppError::not_found(
                "order",
                order.id().map(|o| o.0).unwrap_or_default(),
            )),
        }
    }

    /// The seller of a producer's invoices, and whether they are under the VAT franchise;
    /// refused without an identity or an accepted mandate.
    async fn seller(&self, producer: ProducerId) -> Result<(Party, bool), AppError> {
        let (account, _) = self.load::<ProducerAccount>(producer).await?;
        if account.billing_mandate() != Some(BILLING_MANDATE_VERSION) {
            return Err(coded(
                "BILLING_MANDATE_MISSING",
                "the producer has not accepted the billing mandate in force (acceptBillingMandate)",
            ));
        }
        let identity = self.billing_identity(producer).await?.ok_or_else(|| {
            coded(
                "BILLING_IDENTITY_MISSING",
                "the producer has no legal identity for invoices (setBillingIdentity)",
            )
        })?;
        Ok((
            Party {
                name: identity.legal_name,
                siren: Some(identity.siren),
                vat_number: identity.vat_number,
                address_lines: vec![identity.address_line],
                postcode: identity.postcode,
                city: identity.city,
                country: identity.country,
            },
            identity.vat_franchise,
        ))
    }

    /// The buyer of an order's invoice: a professional customer's company (R-ORD-8), or the
    /// consumer by name; and whether it is a professional.
    async fn buyer(&self, order: &Order) -> Result<(Party, bool), AppError> {
        if let Some(pro) = self.professional_profile(order.customer()).await? {
            return Ok((
                Party {
                    name: pro.company_name,
                    siren: Some(pro.siren),
                    vat_number: pro.vat_number,
                    address_lines: vec![pro.address_line],
                    postcode: pro.postcode,
                    city: pro.city,
                    country: pro.country,
                },
                true,
            ));
        }
        let name: Option<String> = sqlx::query_scalar(
            "SELECT display_name FROM people WHERE user_id = $1 AND erased_at IS NULL",
        )
        .bind(order.customer().0)
        .fetch_optional(&self.pool)
        .await?
        .flatten();
        Ok((
            Party {
                name: name.unwrap_or_else(|| "Client".to_string()),
                siren: None,
                vat_number: None,
                address_lines: Vec::new(),
                postcode: String::new(),
                city: String::new(),
                country: "FR".into(),
            },
            false,
        ))
    }

    /// The delivery address of a home-delivered order (R-INV-4), if still known.
    async fn delivery_address(&self, order: &Order) -> Result<Option<String>, AppError> {
        let etal_domain::order::Delivery::Home { address_ref, .. } = order.delivery() else {
            return Ok(None);
        };
        Ok(sqlx::query_scalar::<_, Option<String>>(
            "SELECT address FROM addresses WHERE address_ref = $1",
        )
        .bind(address_ref)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// R-INV-3: the invoice of a producer's part of an order, issued on the producer's behalf
    /// (the mandate), on the customer's or the producer's request; one per order and producer
    /// (asked again, the same invoice).
    pub async fn issue_order_invoice(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        producer: ProducerId,
    ) -> Result<Done<InvoiceRecord>, AppError> {
        let (order, version) = self.load::<Order>(order_id).await?;
        if version == 0 {
            return Err(AppError::not_found("order", order_id));
        }
        self.invoice_access(ctx, &order, producer).await?;
        self.invoice_order(ctx, order_id, &order, producer).await
    }

    /// R-INV-3, R-ORD-8: once a sale is validated (its weighings and cuts known), every order
    /// of a professional customer is invoiced, one invoice per producer of the order. A
    /// producer without an accepted mandate or a legal identity is skipped (said in the log;
    /// the customer or the producer may ask later with `issueInvoice`). Returns the invoices
    /// issued or found.
    pub async fn invoice_professional_orders(
        &self,
        sale: etal_domain::ids::SaleId,
    ) -> Result<usize, AppError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT e.aggregate_id FROM events e JOIN professional_customers p \
             ON p.user_id::text = e.payload->'OrderPlaced'->>'customer' \
             WHERE e.aggregate_type = 'order' AND e.event_type = 'OrderPlaced' \
             AND e.payload->'OrderPlaced'->>'sale' = $1 ORDER BY e.aggregate_id",
        )
        .bind(sale.to_string())
        .fetch_all(&self.pool)
        .await?;
        let mut issued = 0;
        for id in ids {
            let order_id = OrderId(
                id.parse()
                    .map_err(|_| AppError::Internal(format!("order id {id}")))?,
            );
            let (order, _) = self.load::<Order>(order_id).await?;
            if order.is_cancelled() {
                continue;
            }
            for producer in order.producers() {
                match self
                    .invoice_order(&Ctx::system(), order_id, &order, producer)
                    .await
                {
                    Ok(_) => issued += 1,
                    Err(AppError::Rejected { code, message }) => {
                        tracing::info!(order = %order_id, %producer, code, message, "professional order not invoiced");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(issued)
    }

    async fn invoice_order(
        &self,
        ctx: &Ctx,
        order_id: OrderId,
        order: &Order,
        producer: ProducerId,
    ) -> Result<Done<InvoiceRecord>, AppError> {
        let order = order.clone();
        if !order.producers().contains(&producer) {
            return Err(coded(
                "PRODUCER_NOT_IN_ORDER",
                format!("producer {producer} sells nothing in order {order_id}"),
            ));
        }
        let source = format!("order:{order_id}:producer:{producer}");
        let invoice = InvoiceId(crate::derived_id(&format!("invoice:{source}")));
        if let Some(existing) = self.invoice_record(invoice).await? {
            return Ok(Done::new(existing, None));
        }
        let lines = order_lines(&order, producer);
        if lines.is_empty() {
            return Err(coded(
                "NOTHING_TO_INVOICE",
                "nothing is sold to invoice in this order",
            ));
        }
        let (seller, franchise) = self.seller(producer).await?;
        let (buyer, professional) = self.buyer(&order).await?;
        let date = etal_domain::calendar::paris_date(self.now());
        // R-INV-4: paid (online, at the order), or due at 30 days; professionals get the
        // late-payment rate and the 40 EUR recovery indemnity; the delivery address when the
        // order is delivered.
        let paid = order.balance_due() <= Money::ZERO;
        let (payment_terms, due_date) = if paid {
            (
                crate::books::PAID_TERMS.to_string(),
                professional.then_some(date),
            )
        } else {
            let due = date + chrono::Days::new(30);
            (
                format!("À régler au plus tard le {}", french_date(due)),
                Some(due),
            )
        };
        let mut notes = vec![
            "Facture émise par etal au nom et pour le compte du vendeur (mandat de facturation)"
                .to_string(),
            "Catégorie : livraison de biens".to_string(),
        ];
        if professional {
            notes.push(LATE_PAYMENT.to_string());
        }
        if let Some(address) = self.delivery_address(&order).await? {
            notes.push(format!("Adresse de livraison : {address}"));
        }
        let doc = cii::Document {
            kind: cii::DocumentKind::Invoice,
            number: String::new(),
            issue_date: date,
            seller,
            buyer,
            lines,
            currency: "EUR".into(),
            vat_exempt_reason: franchise
                .then(|| "TVA non applicable, art. 293 B du CGI".to_string()),
            referenced_invoice: None,
            payment_terms,
            due_date,
            notes,
            delivery_date: None,
        };
        self.issue(
            ctx,
            &Series::sales(producer),
            invoice,
            DocumentKind::Invoice,
            None,
            source,
            Some(order.customer().0),
            doc,
        )
        .await
    }

    /// R-INV-3: the platform's invoice of a month's fees and subscriptions to a producer: one
    /// line per fee rule, net of the fees given back in the month (VAT as each line was
    /// charged), issued once per producer and month in the platform's series. None when the
    /// month owes nothing, the platform has no legal identity configured, or the producer none
    /// recorded (then nothing is issued, and a later run issues it).
    pub async fn invoice_fees(
        &self,
        producer: ProducerId,
        month: NaiveDate,
    ) -> Result<Option<InvoiceRecord>, AppError> {
        let Some(platform) = self.settings.platform_identity.clone() else {
            return Ok(None);
        };
        let Some(buyer) = self.billing_identity(producer).await? else {
            tracing::info!(producer = %producer, %month, "fees not invoiced: no legal identity recorded");
            return Ok(None);
        };
        let start = etal_domain::fees::month_of(month);
        let end = etal_domain::fees::next_month(start);
        let events = etal_store::log::EventLog::stream(
            &self.pool,
            "producer_balance",
            &producer.to_string(),
        )
        .await?;
        // (label, VAT rate) -> net excl. VAT.
        let mut net: BTreeMap<(String, Decimal), Decimal> = BTreeMap::new();
        let mut add = |label: &str, rate: Decimal, amount: Decimal| {
            *net.entry((label.to_string(), rate)).or_default() += amount;
        };
        use etal_domain::payout::ProducerBalanceEvent as E;
        for e in &events {
            let Ok(event) = e.decode::<E>() else { continue };
            let at = match &event {
                E::SaleCredited { at, .. }
                | E::SaleSettledOnSite { at, .. }
                | E::RefundDebited { at, .. }
                | E::PeriodBilled { at, .. } => *at,
                _ => continue,
            };
            let day = etal_domain::calendar::paris_date(at);
            if day < start || day >= end {
                continue;
            }
            let (charged, given_back, refunded): (Vec<_>, Vec<_>, Vec<_>) = match event {
                E::SaleCredited {
                    fees, fee_refunds, ..
                } => (fees, vec![], fee_refunds),
                E::SaleSettledOnSite { fees, .. } => (fees, vec![], vec![]),
                E::PeriodBilled { lines, .. } => (lines, vec![], vec![]),
                E::RefundDebited {
                    fees_before,
                    fees_after,
                    fee_refunds,
                    ..
                } => (fees_after, fees_before, fee_refunds),
                _ => continue,
            };
            for l in charged {
                add(&l.label, l.vat_rate.percent(), l.amount_excl_vat.amount());
            }
            for l in given_back {
                add(&l.label, l.vat_rate.percent(), -l.amount_excl_vat.amount());
            }
            for r in refunded {
                add(&r.label, r.vat_rate.percent(), -r.amount_excl_vat.amount());
            }
        }
        let lines_of = |positive: bool| -> Vec<cii::Line> {
            net.iter()
                .filter(|(_, amount)| (**amount > Decimal::ZERO) == positive && !amount.is_zero())
                .enumerate()
                .map(|(i, ((label, rate), amount))| cii::Line {
                    id: (i + 1).to_string(),
                    name: label.clone(),
                    quantity: Decimal::ONE,
                    unit_code: "C62".into(),
                    unit_price_excl_vat: amount.abs(),
                    vat_rate: *rate,
                    line_total_excl_vat: amount.abs(),
                })
                .collect()
        };
        let (lines, given_back) = (lines_of(true), lines_of(false));
        let party = |i: BillingIdentity| Party {
            name: i.legal_name,
            siren: Some(i.siren),
            vat_number: i.vat_number,
            address_lines: vec![i.address_line],
            postcode: i.postcode,
            city: i.city,
            country: i.country,
        };
        // R-INV-2, R-INV-3: fees of earlier months given back this month (net of the month's
        // new fees, rule by rule) are a credit note of the latest earlier fee invoice that has
        // that much left.
        if !given_back.is_empty() {
            self.credit_fees(
                producer,
                start,
                party(platform.clone()),
                party(buyer.clone()),
                given_back,
            )
            .await?;
        }
        if lines.is_empty() {
            return Ok(None);
        }
        let source = format!("fees:{producer}:{start}");
        let invoice = InvoiceId(crate::derived_id(&format!("invoice:{source}")));
        if let Some(existing) = self.invoice_record(invoice).await? {
            return Ok(Some(existing));
        }
        let today = etal_domain::calendar::paris_date(self.now());
        let doc = cii::Document {
            kind: cii::DocumentKind::Invoice,
            number: String::new(),
            issue_date: today,
            seller: party(platform),
            buyer: party(buyer),
            lines,
            currency: "EUR".into(),
            vat_exempt_reason: None,
            referenced_invoice: None,
            payment_terms: crate::books::DEDUCTED_TERMS.into(),
            due_date: Some(today),
            notes: vec![
                format!(
                    "Frais de service et abonnements du mois commençant le {}",
                    start.format("%d/%m/%Y")
                ),
                LATE_PAYMENT.into(),
                "Catégorie : prestations de services".into(),
            ],
            delivery_date: None,
        };
        let done = self
            .issue(
                &Ctx::system(),
                &Series::platform_fees(),
                invoice,
                DocumentKind::Invoice,
                None,
                source,
                None,
                doc,
            )
            .await?;
        Ok(Some(done.value))
    }

    /// The credit note of the fees given back in the month starting `start` (`lines`, amounts
    /// excl. VAT), once per producer and month, correcting the producer's latest earlier fee
    /// invoice with that much left; none such: nothing issued (said in the log).
    async fn credit_fees(
        &self,
        producer: ProducerId,
        start: NaiveDate,
        seller: Party,
        buyer: Party,
        lines: Vec<cii::Line>,
    ) -> Result<Option<InvoiceRecord>, AppError> {
        let source = format!("fees:{producer}:{start}:credit");
        let id = InvoiceId(crate::derived_id(&format!("invoice:{source}")));
        if let Some(existing) = self.invoice_record(id).await? {
            return Ok(Some(existing));
        }
        let today = etal_domain::calendar::paris_date(self.now());
        let mut doc = cii::Document {
            kind: cii::DocumentKind::CreditNote,
            number: String::new(),
            issue_date: today,
            seller,
            buyer,
            lines,
            currency: "EUR".into(),
            vat_exempt_reason: None,
            referenced_invoice: None,
            payment_terms: crate::books::GIVEN_BACK_TERMS.into(),
            due_date: None,
            notes: vec![
                format!(
                    "Frais rendus dans le mois commençant le {} (remboursements aux clients)",
                    start.format("%d/%m/%Y")
                ),
                "Catégorie : prestations de services".into(),
            ],
            delivery_date: None,
        };
        // The totals as the series will see them (the number comes at issue).
        let draft = cii::Document {
            number: "P-draft".into(),
            referenced_invoice: Some(("P-draft".into(), today)),
            ..doc.clone()
        };
        let totals = cii::totals(&draft).map_err(|e| coded(e.code(), e.to_string()))?;
        let credit = Money::round(totals.tax_basis_total) + Money::round(totals.tax_total);
        let series = self
            .bus
            .load_stream::<InvoiceSeries>(&Series::platform_fees().stream)
            .await?;
        let mut earlier: Vec<InvoiceRecord> = self
            .fee_invoices_of(producer)
            .await?
            .into_iter()
            .filter(|r| r.kind == DocumentKind::Invoice && r.issue_date <= today)
            .collect();
        earlier.sort_by(|a, b| (b.issue_date, &b.number).cmp(&(a.issue_date, &a.number)));
        let Some(original) = earlier.into_iter().find(|r| {
            series
                .state
                .invoice(r.id)
                .is_some_and(|i| i.totals.incl_vat - i.credited.incl_vat >= credit)
        }) else {
            tracing::warn!(producer = %producer, %start, %credit, "fees given back not credited: no earlier fee invoice has that much left");
            return Ok(None);
        };
        doc.referenced_invoice = Some((original.number.clone(), original.issue_date));
        let done = self
            .issue(
                &Ctx::system(),
                &Series::platform_fees(),
                id,
                DocumentKind::CreditNote,
                Some(original.id),
                source,
                None,
                doc,
            )
            .await?;
        Ok(Some(done.value))
    }

    /// R-INV-2: the credit note of what an invoiced order no longer owes (a refund, a cut, a
    /// weighing, a cancellation): the invoice's lines minus the order's lines now, minus earlier
    /// credit notes; refused when nothing is left to credit.
    pub async fn issue_credit_note(
        &self,
        ctx: &Ctx,
        invoice: InvoiceId,
    ) -> Result<Done<InvoiceRecord>, AppError> {
        let original = self
            .invoice_record(invoice)
            .await?
            .ok_or_else(|| AppError::not_found("invoice", invoice))?;
        if original.kind != DocumentKind::Invoice {
            return Err(coded("NOT_AN_INVOICE", "a credit note corrects an invoice"));
        }
        let order_id: OrderId = original
            .source
            .strip_prefix("order:")
            .and_then(|s| s.split(':').next())
            .and_then(|s| s.parse().ok())
            .map(OrderId)
            .ok_or_else(|| AppError::Internal(format!("invoice source {}", original.source)))?;
        let (order, _) = self.load::<Order>(order_id).await?;
        self.invoice_access(ctx, &order, original.issuer).await?;
        // What was invoiced per line, minus what the order says now and what was credited.
        let doc: cii::Document = self.invoice_document(invoice).await?;
        let now_lines: BTreeMap<String, cii::Line> = order_lines(&order, original.issuer)
            .into_iter()
            .map(|l| (l.id.clone(), l))
            .collect();
        let mut credited: BTreeMap<String, Decimal> = BTreeMap::new();
        for id in self.credit_notes_of(invoice).await? {
            let cn = self.invoice_document(id).await?;
            for l in cn.lines {
                *credited.entry(l.id).or_default() += l.line_total_excl_vat;
            }
        }
        let mut lines = Vec::new();
        for l in &doc.lines {
            let now = now_lines
                .get(&l.id)
                .map(|n| n.line_total_excl_vat)
                .unwrap_or_default();
            let back =
                l.line_total_excl_vat - now - credited.get(&l.id).copied().unwrap_or_default();
            if back > Decimal::ZERO {
                lines.push(cii::Line {
                    quantity: Decimal::ONE,
                    unit_code: "C62".into(),
                    unit_price_excl_vat: back,
                    line_total_excl_vat: back,
                    ..l.clone()
                });
            }
        }
        if lines.is_empty() {
            return Err(coded(
                "NOTHING_TO_CREDIT",
                "the order owes all its invoice still",
            ));
        }
        let source = format!(
            "credit:{invoice}:{}",
            lines
                .iter()
                .map(|l| format!("{}={}", l.id, l.line_total_excl_vat))
                .collect::<Vec<_>>()
                .join(",")
        );
        let id = InvoiceId(crate::derived_id(&format!("invoice:{source}")));
        if let Some(existing) = self.invoice_record(id).await? {
            return Ok(Done::new(existing, None));
        }
        let credit = cii::Document {
            kind: cii::DocumentKind::CreditNote,
            number: String::new(),
            issue_date: etal_domain::calendar::paris_date(self.now()),
            lines,
            referenced_invoice: Some((original.number.clone(), original.issue_date)),
            payment_terms: crate::books::REFUNDED_TERMS.into(),
            ..doc
        };
        self.issue(
            ctx,
            &Series::sales(original.issuer),
            id,
            DocumentKind::CreditNote,
            Some(invoice),
            source,
            original.customer,
            credit,
        )
        .await
    }

    /// Takes the next number of the producer's series and writes the document with it, in one
    /// commit; in this process, the issues of one series take turns.
    #[allow(clippy::too_many_arguments)]
    async fn issue(
        &self,
        ctx: &Ctx,
        series: &Series,
        invoice: InvoiceId,
        kind: DocumentKind,
        corrects: Option<InvoiceId>,
        source: String,
        customer: Option<uuid::Uuid>,
        mut doc: cii::Document,
    ) -> Result<Done<InvoiceRecord>, AppError> {
        let stream = series.stream.clone();
        let turn = format!("invoice_series:{stream}");
        let _held = self.locks.turns(vec![turn.clone()]).await;
        let cc = ctx.plain();
        let result = async {
            for attempt in 1..=self.bus.max_attempts() {
                let mut state = self.bus.load_stream::<InvoiceSeries>(&stream).await?;
                if state.state.invoice(invoice).is_some() {
                    if let Some(r) = self.invoice_record(invoice).await? {
                        return Ok(Done::new(r, None));
                    }
                }
                doc.number = state.state.next_number(series.prefix);
                let totals_doc = cii::totals(&doc).map_err(|e| coded(e.code(), e.to_string()))?;
                let xml = cii::cii_xml(&doc).map_err(|e| coded(e.code(), e.to_string()))?;
                let digest = hex::encode(Sha256::digest(xml.as_bytes()));
                let issued_at = self.now();
                let pdf = crate::facturx_pdf::factur_x_pdf_at(
                    &pdf_of(&doc, &totals_doc),
                    &xml,
                    u64::try_from(issued_at.timestamp()).unwrap_or(0),
                )
                .map_err(|e| AppError::Internal(format!("writing the invoice PDF: {e}")))?;
                let money = |d: Decimal| Money::round(d);
                let totals = Totals {
                    excl_vat: money(totals_doc.tax_basis_total),
                    vat: money(totals_doc.tax_total),
                    incl_vat: money(totals_doc.tax_basis_total) + money(totals_doc.tax_total),
                };
                state
                    .decide(|s| {
                        s.decide(InvoiceCommand::Issue {
                            invoice,
                            prefix: series.prefix.into(),
                            kind,
                            corrects,
                            date: doc.issue_date,
                            source: source.clone(),
                            totals,
                            digest: digest.clone(),
                            at: self.now(),
                        })
                    })
                    .map_err(rejected)?;
                let mut changes = Changes::new();
                changes.stream(&state)?;
                let document = serde_json::to_value(&doc)
                    .map_err(|e| AppError::Internal(format!("invoice document: {e}")))?;
                let mut tx = self.pool.begin().await?;
                sqlx::query(
                    "INSERT INTO invoice_documents (invoice_id, series, number, kind, issuer, customer, \
                     source, corrects, issue_date, excl_vat, vat, incl_vat, document, cii_xml, digest, issued_at, pdf) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(invoice.0)
                .bind(&stream)
                .bind(&doc.number)
                .bind(match kind {
                    DocumentKind::Invoice => "invoice",
                    DocumentKind::CreditNote => "credit_note",
                })
                .bind(series.issuer)
                .bind(customer)
                .bind(&source)
                .bind(corrects.map(|c| c.0))
                .bind(doc.issue_date)
                .bind(totals.excl_vat.amount())
                .bind(totals.vat.amount())
                .bind(totals.incl_vat.amount())
                .bind(&document)
                .bind(&xml)
                .bind(&digest)
                .bind(issued_at)
                .bind(&pdf)
                .execute(&mut *tx)
                .await?;
                match self
                    .bus
                    .commit_on(&mut tx, &changes, &cc, &serde_json::Value::Null)
                    .await
                {
                    Ok(c) => {
                        tx.commit().await?;
                        let record = self
                            .invoice_record(invoice)
                            .await?
                            .ok_or_else(|| AppError::Internal("invoice just issued".into()))?;
                        return Ok(Done::new(record, c.last_position()));
                    }
                    Err(CommitError::Conflict) | Err(CommitError::KeyTaken) => {
                        tx.rollback().await?;
                        etal_store::bus::backoff(attempt).await;
                    }
                    Err(CommitError::Store(e)) => return Err(e.into()),
                }
            }
            Err(AppError::Retryable("the invoice series kept changing".into()))
        }
        .await;
        if result.is_err() {
            self.locks.forget(&[turn]);
        }
        result
    }

    /// Whether `actor` may read a document: its issuer's people, its customer, auditors.
    pub async fn may_read_invoice(&self, actor: etal_domain::Actor, r: &InvoiceRecord) -> bool {
        match actor.role {
            Role::Auditor => true,
            Role::Customer => r.customer == Some(actor.user.0),
            Role::Producer => {
                // The producer's own series, or the platform's invoices of their fees.
                let buyer = r
                    .source
                    .strip_prefix("fees:")
                    .and_then(|s| s.split(':').next())
                    .and_then(|s| s.parse().ok())
                    .map(ProducerId);
                let of = buyer.unwrap_or(r.issuer);
                self.producer_access(actor, of).await.is_ok()
            }
            _ => false,
        }
    }

    /// An issued document.
    pub async fn invoice_record(&self, id: InvoiceId) -> Result<Option<InvoiceRecord>, AppError> {
        let row = sqlx::query(
            "SELECT invoice_id, number, kind, issuer, customer, source, corrects, issue_date, \
             excl_vat, vat, incl_vat, cii_xml FROM invoice_documents WHERE invoice_id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| record(&r)).transpose()
    }

    /// R-INV-5: a document's Factur-X PDF (its CII XML embedded).
    pub async fn invoice_pdf(&self, id: InvoiceId) -> Result<Option<Vec<u8>>, AppError> {
        Ok(sqlx::query_scalar::<_, Option<Vec<u8>>>(
            "SELECT pdf FROM invoice_documents WHERE invoice_id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?
        .flatten())
    }

    /// The documents of an issuer or a customer, by date then number.
    pub async fn invoices_of(
        &self,
        issuer: Option<ProducerId>,
        customer: Option<uuid::Uuid>,
    ) -> Result<Vec<InvoiceRecord>, AppError> {
        let rows = sqlx::query(
            "SELECT invoice_id, number, kind, issuer, customer, source, corrects, issue_date, \
             excl_vat, vat, incl_vat, cii_xml FROM invoice_documents \
             WHERE ($1::uuid IS NULL OR issuer = $1) AND ($2::uuid IS NULL OR customer = $2) \
             ORDER BY issue_date, number LIMIT 1000",
        )
        .bind(issuer.map(|p| p.0))
        .bind(customer)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    /// R-INV-3: the platform's invoices of a producer's fees, by date then number.
    pub async fn fee_invoices_of(
        &self,
        producer: ProducerId,
    ) -> Result<Vec<InvoiceRecord>, AppError> {
        let rows = sqlx::query(
            "SELECT invoice_id, number, kind, issuer, customer, source, corrects, issue_date, \
             excl_vat, vat, incl_vat, cii_xml FROM invoice_documents \
             WHERE issuer = $1 AND starts_with(source, $2) ORDER BY issue_date, number LIMIT 1000",
        )
        .bind(uuid::Uuid::nil())
        .bind(format!("fees:{producer}:"))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(record).collect()
    }

    async fn invoice_document(&self, id: InvoiceId) -> Result<cii::Document, AppError> {
        let doc: serde_json::Value =
            sqlx::query_scalar("SELECT document FROM invoice_documents WHERE invoice_id = $1")
                .bind(id.0)
                .fetch_one(&self.pool)
                .await?;
        serde_json::from_value(doc)
            .map_err(|e| AppError::Internal(format!("invoice document: {e}")))
    }

    async fn credit_notes_of(&self, id: InvoiceId) -> Result<Vec<InvoiceId>, AppError> {
        let ids: Vec<uuid::Uuid> =
            sqlx::query_scalar("SELECT invoice_id FROM invoice_documents WHERE corrects = $1")
                .bind(id.0)
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.into_iter().map(InvoiceId).collect())
    }
}

fn record(r: &sqlx::postgres::PgRow) -> Result<InvoiceRecord, AppError> {
    let kind: String = r.try_get("kind")?;
    let m = |c: &str| -> Result<Money, AppError> { Ok(Money::round(r.try_get::<Decimal, _>(c)?)) };
    Ok(InvoiceRecord {
        id: InvoiceId(r.try_get("invoice_id")?),
        number: r.try_get("number")?,
        kind: if kind == "credit_note" {
            DocumentKind::CreditNote
        } else {
            DocumentKind::Invoice
        },
        issuer: ProducerId(r.try_get("issuer")?),
        customer: r.try_get("customer")?,
        source: r.try_get("source")?,
        corrects: r
            .try_get::<Option<uuid::Uuid>, _>("corrects")?
            .map(InvoiceId),
        issue_date: r.try_get("issue_date")?,
        totals: Totals {
            excl_vat: m("excl_vat")?,
            vat: m("vat")?,
            incl_vat: m("incl_vat")?,
        },
        cii_xml: r.try_get("cii_xml")?,
    })
}
