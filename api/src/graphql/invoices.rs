//! Invoices and credit notes (R-INV-1..5): the producer's legal identity and billing mandate,
//! an order's invoice on request, credit notes, and the lists of an issuer's and a customer's
//! documents with their Factur-X CII XML.

use async_graphql::connection::{Connection, EmptyFields};
use async_graphql::{Context, Enum, InputObject, Object, Result, SimpleObject};
use etal_app::books::Books;
use etal_app::invoices::{BillingIdentity, InvoiceRecord};
use etal_domain::ids::{OrderId, ProducerId};
use etal_domain::invoice::{DocumentKind, InvoiceId};
use etal_domain::Role;
use uuid::Uuid;

use super::common::{
    actor, app, app_ctx, forbidden, paginate, read_your_writes, OrCoded, RoleGuard,
};
use super::scalars::{Date, Money};

const PRODUCER: RoleGuard = RoleGuard(&[Role::Producer]);

#[derive(Enum, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceKind {
    /// UNTDID 1001 code 380.
    Invoice,
    /// Code 381, referencing the invoice it corrects.
    CreditNote,
}

/// An issued invoice or credit note (never changes, R-INV-2).
#[derive(SimpleObject)]
pub struct InvoiceView {
    pub id: Uuid,
    pub number: String,
    pub kind: InvoiceKind,
    pub issuer_id: Uuid,
    pub issue_date: Date,
    pub total_excl_vat: Money,
    pub total_vat: Money,
    pub total_incl_vat: Money,
    /// A credit note: the invoice it corrects.
    pub corrects: Option<Uuid>,
    /// The Factur-X (EN 16931) CII XML, as embedded in the PDF as `factur-x.xml`.
    pub factur_x_xml: String,
    /// R-INV-5: the Factur-X PDF/A-3 download (the same bearer token).
    pub pdf_url: String,
    /// The CII XML alone, as a download.
    pub xml_url: String,
}

impl From<InvoiceRecord> for InvoiceView {
    fn from(r: InvoiceRecord) -> Self {
        InvoiceView {
            id: r.id.0,
            number: r.number,
            kind: match r.kind {
                DocumentKind::Invoice => InvoiceKind::Invoice,
                DocumentKind::CreditNote => InvoiceKind::CreditNote,
            },
            issuer_id: r.issuer.0,
            issue_date: Date(r.issue_date),
            total_excl_vat: Money(r.totals.excl_vat),
            total_vat: Money(r.totals.vat),
            total_incl_vat: Money(r.totals.incl_vat),
            corrects: r.corrects.map(|c| c.0),
            pdf_url: format!("/invoices/{}/factur-x.pdf", r.id.0),
            xml_url: format!("/invoices/{}/factur-x.xml", r.id.0),
            factur_x_xml: r.cii_xml,
        }
    }
}

#[derive(InputObject)]
pub struct BillingIdentityInput {
    pub legal_name: String,
    /// 9 digits, Luhn key checked.
    pub siren: String,
    /// FR + key + SIREN; absent under the VAT franchise.
    pub vat_number: Option<String>,
    /// "TVA non applicable, art. 293 B du CGI".
    #[graphql(default = false)]
    pub vat_franchise: bool,
    pub address_line: String,
    pub postcode: String,
    pub city: String,
    #[graphql(default = "FR")]
    pub country: String,
}

#[derive(SimpleObject)]
pub struct BillingMandate {
    pub version: String,
    /// The mandate's text (French), as accepted.
    pub text: String,
}

#[derive(SimpleObject)]
pub struct InvoicePayload {
    pub invoice: InvoiceView,
    pub position: Option<String>,
}

#[derive(SimpleObject)]
pub struct BillingPayload {
    pub producer_id: Uuid,
    pub position: Option<String>,
}

/// Who may read a document: its issuer's people, its customer, auditors.
async fn may_read(ctx: &Context<'_>, r: &InvoiceRecord) -> Result<()> {
    let a = actor(ctx)?;
    if app(ctx).may_read_invoice(a, r).await {
        Ok(())
    } else {
        Err(super::common::coded(
            "NOT_FOUND",
            format!("invoice {} not found", r.id),
        ))
    }
}

/// A FEC (Fichier des Écritures Comptables) of a year: what the file holds, and where to
/// download it (the same bearer token; ISO 8859-15, tab separated).
#[derive(SimpleObject)]
pub struct FecFile {
    /// `<SIREN>FEC<AAAAMMJJ>.txt`.
    pub file_name: String,
    /// The download's path on this server.
    pub url: String,
    pub entries: i32,
    pub lines: i32,
    /// Total of the debits (= total of the credits).
    pub total_debit: Money,
}

#[derive(Default)]
pub struct InvoiceQuery;

#[Object]
impl InvoiceQuery {
    /// R-INV-3: the billing mandate in force.
    async fn billing_mandate(&self) -> BillingMandate {
        BillingMandate {
            version: etal_app::invoices::BILLING_MANDATE_VERSION.into(),
            text: etal_app::invoices::BILLING_MANDATE_TEXT.into(),
        }
    }

    /// The books of a year as a FEC: the platform's (no `producerId`: auditors and platform
    /// administrators) or a producer's, for what passed through the platform (its people and
    /// auditors). Entries are the issued invoices and credit notes, PieceRef their numbers.
    async fn fec(
        &self,
        ctx: &Context<'_>,
        producer_id: Option<Uuid>,
        year: i32,
    ) -> Result<FecFile> {
        let a = actor(ctx)?;
        let books = match producer_id {
            None => Books::Platform,
            Some(p) => Books::Producer(ProducerId(p)),
        };
        if !app(ctx).may_read_books(a, books).await {
            return Err(forbidden(
                "the platform's books are its auditors' and administrators'; a producer's, its people's and auditors'",
            ));
        }
        let f = app(ctx).fec(books, year).await.coded()?;
        Ok(FecFile {
            url: format!("/books/fec/{}/{year}", books.path_segment()),
            file_name: f.file_name,
            entries: i32::try_from(f.entries).unwrap_or(i32::MAX),
            lines: i32::try_from(f.lines).unwrap_or(i32::MAX),
            total_debit: Money(etal_domain::Money::round(f.total_debit)),
        })
    }

    /// One invoice or credit note (its issuer's people, its customer, auditors).
    async fn invoice(&self, ctx: &Context<'_>, id: Uuid) -> Result<InvoiceView> {
        let r = app(ctx)
            .invoice_record(InvoiceId(id))
            .await
            .coded()?
            .ok_or_else(|| super::common::coded("NOT_FOUND", format!("invoice {id} not found")))?;
        may_read(ctx, &r).await?;
        Ok(r.into())
    }

    /// R-INV-3: the platform's monthly invoices of a producer's fees and subscriptions (their
    /// people and auditors).
    async fn fee_invoices(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, InvoiceView, EmptyFields, EmptyFields>> {
        let a = actor(ctx)?;
        let p = ProducerId(producer_id);
        match a.role {
            Role::Auditor => {}
            Role::Producer => {
                app(ctx).producer_access(a, p).await.coded()?;
            }
            _ => {
                return Err(forbidden(
                    "only the producer's people and auditors see its fee invoices",
                ))
            }
        }
        let rows = app(ctx).fee_invoices_of(p).await.coded()?;
        paginate(
            rows.into_iter().map(InvoiceView::from).collect(),
            after,
            before,
            first,
            last,
        )
        .await
    }

    /// The documents a producer issued (their people and auditors), or the caller's own as a
    /// customer (no `producerId`), by date then number.
    async fn invoices(
        &self,
        ctx: &Context<'_>,
        producer_id: Option<Uuid>,
        after: Option<String>,
        before: Option<String>,
        first: Option<i32>,
        last: Option<i32>,
    ) -> Result<Connection<usize, InvoiceView, EmptyFields, EmptyFields>> {
        let a = actor(ctx)?;
        let rows = match producer_id {
            Some(p) => {
                let p = ProducerId(p);
                match a.role {
                    Role::Auditor => {}
                    Role::Producer => {
                        app(ctx).producer_access(a, p).await.coded()?;
                    }
                    _ => {
                        return Err(forbidden(
                            "only the producer's people and auditors see its invoices",
                        ))
                    }
                }
                app(ctx).invoices_of(Some(p), None).await.coded()?
            }
            None if a.role == Role::Customer => {
                app(ctx).invoices_of(None, Some(a.user.0)).await.coded()?
            }
            None => {
                return Err(forbidden(
                    "give producerId, or ask as a customer for your own",
                ))
            }
        };
        paginate(
            rows.into_iter().map(InvoiceView::from).collect(),
            after,
            before,
            first,
            last,
        )
        .await
    }
}

#[derive(Default)]
pub struct InvoiceMutation;

#[Object]
impl InvoiceMutation {
    /// R-INV-4: the owner records the producer's legal identity for invoices.
    #[graphql(guard = "PRODUCER")]
    async fn set_billing_identity(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        identity: BillingIdentityInput,
        idempotency_key: Option<String>,
    ) -> Result<BillingPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .set_billing_identity(
                &c,
                ProducerId(producer_id),
                BillingIdentity {
                    legal_name: identity.legal_name,
                    siren: identity.siren,
                    vat_number: identity.vat_number,
                    vat_franchise: identity.vat_franchise,
                    address_line: identity.address_line,
                    postcode: identity.postcode,
                    city: identity.city,
                    country: identity.country,
                },
            )
            .await
            .coded()?;
        Ok(BillingPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-INV-3: the owner accepts the billing mandate (`billingMandate.version`).
    #[graphql(guard = "PRODUCER")]
    async fn accept_billing_mandate(
        &self,
        ctx: &Context<'_>,
        producer_id: Uuid,
        #[graphql(validator(max_length = 40))] version: String,
        idempotency_key: Option<String>,
    ) -> Result<BillingPayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .accept_billing_mandate(&c, ProducerId(producer_id), &version)
            .await
            .coded()?;
        Ok(BillingPayload {
            producer_id,
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-INV-3: the invoice of a producer's part of an order (its customer or the producer's
    /// people ask; one per order and producer: asked again, the same invoice).
    async fn issue_invoice(
        &self,
        ctx: &Context<'_>,
        order_id: Uuid,
        producer_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<InvoicePayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .issue_order_invoice(&c, OrderId(order_id), ProducerId(producer_id))
            .await
            .coded()?;
        Ok(InvoicePayload {
            invoice: done.value.into(),
            position: read_your_writes(ctx, done.position).await,
        })
    }

    /// R-INV-2: the credit note of what the invoiced order no longer owes (a refund, a cut, a
    /// weighing, a cancellation), referencing the invoice's number and date.
    async fn issue_credit_note(
        &self,
        ctx: &Context<'_>,
        invoice_id: Uuid,
        idempotency_key: Option<String>,
    ) -> Result<InvoicePayload> {
        let c = app_ctx(ctx, idempotency_key)?;
        let done = app(ctx)
            .issue_credit_note(&c, InvoiceId(invoice_id))
            .await
            .coded()?;
        Ok(InvoicePayload {
            invoice: done.value.into(),
            position: read_your_writes(ctx, done.position).await,
        })
    }
}
