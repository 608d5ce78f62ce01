//! Where payouts go (R-PAY-4, R-PAY-5): producers' bank details, kept outside the log with each
//! change an event, and, for platforms that pay from their own bank account
//! (`ETAL_PAYOUTS=sepa`), the transfers of each Monday run queued into one ISO 20022
//! `pain.001.001.09` file, marked sent, and bank returns booked back to the balance.

use chrono::NaiveDate;
use etal_domain::account::AccountCommand;
use etal_domain::ids::ProducerId;
use etal_domain::payout::{PayoutId, PayoutStatus, ProducerBalance, ProducerBalanceCommand};
use etal_domain::{Money, Role};
use etal_store::Changes;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::bank_details::{masked_iban, validate, BankDetails};
use crate::flow::Decided;
use crate::outbox::rejected;
use crate::sepa::{pain_001, Debtor, Transfer};
use crate::{App, AppError, Ctx, Done};

/// How payouts reach producers.
#[derive(Debug, Clone, Default)]
pub enum PayoutRail {
    /// Through the payment provider (`transfer`: the simulator, Stripe Connect).
    #[default]
    Provider,
    /// From the platform's own bank account, by SEPA credit transfer files (R-PAY-5).
    Sepa(Debtor),
}

/// A producer's bank details as their people read them: the holder and the masked IBAN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BankDetailsView {
    pub holder: String,
    pub masked_iban: String,
    pub bic: String,
    pub changed_at: chrono::DateTime<chrono::Utc>,
}

/// A credit transfer file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SepaFile {
    pub message_id: String,
    pub execution_date: NaiveDate,
    pub transfers: i32,
    pub control_sum: Decimal,
    pub xml: String,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn bank_error(e: crate::bank_details::BankDetailsError) -> AppError {
    AppError::Rejected {
        code: e.code(),
        message: e.to_string(),
    }
}

impl App {
    /// R-PAY-4: the owner (never a collaborator) sets the producer's bank details. Checked (IBAN
    /// check digits and country format, BIC shape and country, holder), stored outside the log
    /// and recorded as `BankDetailsChanged` (masked) in the same commit. A change within 7 days
    /// before a payout holds it until the owner confirms (`confirm_bank_details`).
    pub async fn set_bank_details(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        holder: &str,
        iban: &str,
        bic: &str,
    ) -> Result<Done<()>, AppError> {
        let details: BankDetails = validate(holder, iban, bic).map_err(bank_error)?;
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        if !access.owner {
            return Err(AppError::Rejected {
                code: "NOT_THE_OWNER",
                message: "only the account's owner sets its bank details".into(),
            });
        }
        let cc = ctx.flow(
            "setBankDetails",
            &crate::fingerprint(
                "setBankDetails",
                &(producer, &details.iban, &details.bic, &details.holder),
            ),
        );
        // Microseconds, as PostgreSQL keeps them, so the table and the event say the same.
        let now = chrono::SubsecRound::trunc_subsecs(self.now(), 6);
        let masked = masked_iban(&details.iban);
        self.account_command_with_row(
            &cc,
            producer,
            || AccountCommand::ChangeBankDetails {
                access,
                masked_iban: masked.clone(),
                bic: details.bic.clone(),
                at: now,
            },
            || {
                sqlx::query(
                    "INSERT INTO bank_accounts (producer_id, holder, iban, bic, changed_at, changed_by) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (producer_id) DO UPDATE SET \
                     holder = $2, iban = $3, bic = $4, changed_at = $5, changed_by = $6",
                )
                .bind(producer.0)
                .bind(&details.holder)
                .bind(&details.iban)
                .bind(&details.bic)
                .bind(now)
                .bind(ctx.actor.user.0)
            },
        )
        .await
    }

    /// R-PAY-4: the owner confirms their latest bank details; a payout held for it is paid by a
    /// run of the last Monday's payouts scheduled now.
    pub async fn confirm_bank_details(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
    ) -> Result<Done<()>, AppError> {
        let (_, access) = self.producer_access(ctx.actor, producer).await?;
        let out = self
            .exec::<etal_domain::account::ProducerAccount>(
                producer,
                AccountCommand::ConfirmBankDetails {
                    access,
                    at: self.now(),
                },
                &ctx.step(
                    "confirmBankDetails",
                    &crate::fingerprint("confirmBankDetails", &producer),
                ),
            )
            .await?;
        let today = etal_domain::calendar::paris_date(self.now());
        let monday = today
            - chrono::Duration::days(
                chrono::Datelike::weekday(&today).num_days_from_monday() as i64
            );
        self.schedule(
            crate::schedule::kinds::PAYOUT_RUN,
            &format!(
                "payouts:{monday}:confirmed:{producer}:{}",
                out.last_position().map(|p| p.position).unwrap_or(0)
            ),
            serde_json::json!({ "monday": monday }),
            self.now(),
        )
        .await?;
        Ok(Done::new((), out.last_position()))
    }

    /// R-PAY-4: the producer's bank details (their people: the holder and the masked IBAN).
    pub async fn bank_details(
        &self,
        producer: ProducerId,
    ) -> Result<Option<BankDetailsView>, AppError> {
        let row = sqlx::query(
            "SELECT holder, iban, bic, changed_at FROM bank_accounts WHERE producer_id = $1",
        )
        .bind(producer.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            None => None,
            Some(r) => Some(BankDetailsView {
                holder: r.try_get("holder")?,
                masked_iban: masked_iban(&r.try_get::<String, _>("iban")?),
                bic: r.try_get("bic")?,
                changed_at: r.try_get("changed_at")?,
            }),
        })
    }

    /// R-PAY-5: queues one payout attempt's transfer into the credit transfer file of today
    /// (the run's day), with the producer's bank details as they are now. Idempotent per
    /// (payout, attempt). Without bank details the transfer is refused (and retried on the
    /// next Mondays, then returned, R-PAY-2).
    pub(crate) async fn queue_sepa_transfer(
        &self,
        producer: ProducerId,
        payout: PayoutId,
        attempt: u32,
        amount: Money,
    ) -> Result<Result<String, String>, AppError> {
        let today = etal_domain::calendar::paris_date(self.now());
        let row = sqlx::query(
            "WITH b AS (SELECT holder, iban, bic FROM bank_accounts WHERE producer_id = $3) \
             INSERT INTO sepa_transfers (payout_id, attempt, producer_id, amount, holder, iban, bic, \
                                         execution_date, queued_at) \
             SELECT $1, $2, $3, $4, b.holder, b.iban, b.bic, $5, $6 FROM b \
             ON CONFLICT (payout_id, attempt) DO UPDATE SET attempt = EXCLUDED.attempt \
             RETURNING execution_date",
        )
        .bind(payout.0)
        .bind(attempt as i32)
        .bind(producer.0)
        .bind(amount.amount())
        .bind(today)
        .bind(self.now())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => {
                let date: NaiveDate = r.try_get("execution_date")?;
                Ok(format!("sepa:{date}:{}", payout.0.simple()))
            }
            None => Err("the producer has no bank details (setBankDetails)".into()),
        })
    }

    /// R-PAY-5: the credit transfer file of `date`'s transfers (pain.001.001.09, one
    /// transaction per payout, `EndToEndId` = the payout id). Written once the first time it
    /// is asked for, again while not sent if transfers were queued since; never once sent.
    pub async fn sepa_file(&self, date: NaiveDate) -> Result<SepaFile, AppError> {
        let PayoutRail::Sepa(debtor) = &self.settings.payouts else {
            return Err(AppError::Rejected {
                code: "SEPA_NOT_CONFIGURED",
                message: "payouts are not paid by SEPA files here (ETAL_PAYOUTS=sepa)".into(),
            });
        };
        let mut tx = self.pool.begin().await?;
        // One writer per date at a time.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('sepa:' || $1::text, 0))")
            .bind(date)
            .execute(&mut *tx)
            .await?;
        let rows = sqlx::query(
            "SELECT payout_id, attempt, amount, holder, iban, bic FROM sepa_transfers \
             WHERE execution_date = $1 ORDER BY payout_id, attempt",
        )
        .bind(date)
        .fetch_all(&mut *tx)
        .await?;
        let existing = sqlx::query(
            "SELECT message_id, transfers, control_sum, xml, sent_at FROM sepa_files \
             WHERE execution_date = $1",
        )
        .bind(date)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(f) = &existing {
            let sent: Option<chrono::DateTime<chrono::Utc>> = f.try_get("sent_at")?;
            let transfers: i32 = f.try_get("transfers")?;
            if sent.is_some() || transfers as usize == rows.len() {
                return Ok(SepaFile {
                    message_id: f.try_get("message_id")?,
                    execution_date: date,
                    transfers,
                    control_sum: f.try_get("control_sum")?,
                    xml: f.try_get("xml")?,
                    sent_at: sent,
                });
            }
        }
        if rows.is_empty() {
            return Err(AppError::Rejected {
                code: "NOTHING_TO_PAY",
                message: format!("no transfer was made on {date}"),
            });
        }
        let mut transfers = Vec::with_capacity(rows.len());
        let mut control_sum = Decimal::ZERO;
        for r in &rows {
            let payout: uuid::Uuid = r.try_get("payout_id")?;
            let attempt: i32 = r.try_get("attempt")?;
            let amount: Decimal = r.try_get("amount")?;
            control_sum += amount;
            transfers.push(Transfer {
                end_to_end_id: if attempt == 1 {
                    payout.simple().to_string()
                } else {
                    format!("{}R{attempt}", &payout.simple().to_string()[..30])
                },
                amount,
                creditor_name: r.try_get("holder")?,
                creditor_iban: r.try_get("iban")?,
                creditor_bic: r.try_get("bic")?,
                remittance: format!("etal virement {date}"),
            });
        }
        let message_id = format!("ETAL-{date}");
        let xml = pain_001(debtor, &message_id, self.now(), date, &transfers).map_err(|e| {
            AppError::Rejected {
                code: e.code(),
                message: e.to_string(),
            }
        })?;
        sqlx::query(
            "INSERT INTO sepa_files (message_id, execution_date, transfers, control_sum, xml, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (execution_date) DO UPDATE SET \
             transfers = $3, control_sum = $4, xml = $5, created_at = $6",
        )
        .bind(&message_id)
        .bind(date)
        .bind(transfers.len() as i32)
        .bind(control_sum)
        .bind(&xml)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(SepaFile {
            message_id,
            execution_date: date,
            transfers: transfers.len() as i32,
            control_sum,
            xml,
            sent_at: None,
        })
    }

    /// R-PAY-5: a platform administrator marks a file sent to the bank: it never changes after.
    pub async fn mark_sepa_file_sent(
        &self,
        ctx: &Ctx,
        message_id: &str,
    ) -> Result<chrono::DateTime<chrono::Utc>, AppError> {
        if ctx.actor.role != Role::PlatformAdmin {
            return Err(AppError::Forbidden(
                "only a platform administrator sends payout files".into(),
            ));
        }
        let sent: Option<chrono::DateTime<chrono::Utc>> = sqlx::query_scalar(
            "UPDATE sepa_files SET sent_at = coalesce(sent_at, $2), sent_by = coalesce(sent_by, $3) \
             WHERE message_id = $1 RETURNING sent_at",
        )
        .bind(message_id)
        .bind(self.now())
        .bind(ctx.actor.user.0)
        .fetch_optional(&self.pool)
        .await?;
        sent.ok_or_else(|| AppError::Rejected {
            code: "UNKNOWN_PAYOUT_FILE",
            message: format!("no payout file {message_id} was written"),
        })
    }

    /// R-PAY-5: the bank returned a payout's transfer after the fact: its money is the
    /// producer's balance again (paid by a later payout, shown on its statement), once.
    pub async fn record_bank_return(
        &self,
        ctx: &Ctx,
        producer: ProducerId,
        payout: PayoutId,
        reason: &str,
    ) -> Result<Done<()>, AppError> {
        // A platform administrator (a bank's return notice), or the service (a provider's
        // webhook saying a transfer was reversed).
        if !matches!(ctx.actor.role, Role::PlatformAdmin | Role::System) {
            return Err(AppError::Forbidden(
                "only a platform administrator records bank returns".into(),
            ));
        }
        crate::people::check("reason", reason, 500)?;
        let cc = ctx.flow(
            "recordBankReturn",
            &crate::fingerprint("recordBankReturn", &(producer, payout)),
        );
        let reason = reason.trim().to_string();
        let flowed = self
            .run_flow(&cc, vec![], || {
                let reason = reason.clone();
                async move {
                    let mut balance = self
                        .bus
                        .load_stream::<ProducerBalance>(&producer.to_string())
                        .await?;
                    if !balance.state.payout(payout).is_some_and(|p| {
                        matches!(p.status, PayoutStatus::Succeeded | PayoutStatus::Returned)
                    }) {
                        return Err(AppError::Rejected {
                            code: "PAYOUT_NOT_PAID",
                            message: format!("payout {payout} was not paid: nothing to return"),
                        });
                    }
                    balance
                        .decide(|b| {
                            b.decide(ProducerBalanceCommand::RecordBankReturn {
                                payout,
                                reason,
                                at: self.now(),
                            })
                        })
                        .map_err(rejected)?;
                    let mut changes = Changes::new();
                    changes.stream(&balance)?;
                    Ok(Decided::new(changes, ()))
                }
            })
            .await?;
        Ok(Done::new((), flowed.position))
    }
}
