//! Professional customers (R-ORD-8): a customer who buys as a business records its legal
//! identity and billing address; a producer gives it its own prices in a catalog (a price list,
//! frozen with the sale like every price, R-CAT-3); its orders are invoiced (R-INV-3), with the
//! mentions owed to professionals (R-INV-4).

use etal_domain::catalog::{CatalogCommand, OfferPrice};
use etal_domain::ids::{CatalogId, ProductId, UserId};
use etal_domain::{Money, Role};
use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::invoices::{checked_country, checked_siren_and_vat};
use crate::{App, AppError, Ctx, Done};

/// A professional customer's identity, as given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfessionalProfile {
    pub company_name: String,
    pub siren: String,
    pub vat_number: Option<String>,
    pub address_line: String,
    pub postcode: String,
    pub city: String,
    pub country: String,
}

impl App {
    /// R-ORD-8: a customer records itself as a professional (SIREN with its Luhn key, a French
    /// VAT number matching it when given, a billing address); given again, replaced.
    pub async fn set_professional_profile(
        &self,
        ctx: &Ctx,
        profile: ProfessionalProfile,
    ) -> Result<ProfessionalProfile, AppError> {
        if ctx.actor.role != Role::Customer {
            return Err(AppError::Forbidden(
                "only a customer records itself as a professional".into(),
            ));
        }
        let (siren, vat_number) =
            checked_siren_and_vat(&profile.siren, profile.vat_number.as_deref())?;
        for (field, value, max) in [
            ("companyName", &profile.company_name, 200),
            ("addressLine", &profile.address_line, 200),
            ("postcode", &profile.postcode, 20),
            ("city", &profile.city, 100),
        ] {
            if value.trim().is_empty() {
                return Err(AppError::bad_input(field, "must not be empty"));
            }
            crate::people::check(field, value.trim(), max)?;
        }
        let country = checked_country(&profile.country)?;
        let saved = ProfessionalProfile {
            company_name: profile.company_name.trim().to_string(),
            siren,
            vat_number,
            address_line: profile.address_line.trim().to_string(),
            postcode: profile.postcode.trim().to_string(),
            city: profile.city.trim().to_string(),
            country,
        };
        sqlx::query(
            "INSERT INTO professional_customers (user_id, company_name, siren, vat_number, address_line, \
             postcode, city, country, changed_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (user_id) DO UPDATE SET company_name = $2, siren = $3, vat_number = $4, \
             address_line = $5, postcode = $6, city = $7, country = $8, changed_at = $9",
        )
        .bind(ctx.actor.user.0)
        .bind(&saved.company_name)
        .bind(&saved.siren)
        .bind(&saved.vat_number)
        .bind(&saved.address_line)
        .bind(&saved.postcode)
        .bind(&saved.city)
        .bind(&saved.country)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(saved)
    }

    /// R-ORD-8: a customer's professional identity, if it recorded one.
    pub async fn professional_profile(
        &self,
        user: UserId,
    ) -> Result<Option<ProfessionalProfile>, AppError> {
        let row = sqlx::query(
            "SELECT company_name, siren, vat_number, address_line, postcode, city, country \
             FROM professional_customers WHERE user_id = $1",
        )
        .bind(user.0)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| -> Result<ProfessionalProfile, AppError> {
            Ok(ProfessionalProfile {
                company_name: r.try_get("company_name")?,
                siren: r.try_get("siren")?,
                vat_number: r.try_get("vat_number")?,
                address_line: r.try_get("address_line")?,
                postcode: r.try_get("postcode")?,
                city: r.try_get("city")?,
                country: r.try_get("country")?,
            })
        })
        .transpose()
    }

    /// R-ORD-8: the producer's people give a professional customer its own prices for some
    /// offers of a catalog (replacing its list; an empty list removes it). Orders placed from
    /// now on, in sales not yet open, pay them (R-CAT-3).
    pub async fn set_price_list(
        &self,
        ctx: &Ctx,
        catalog: CatalogId,
        customer: UserId,
        prices: Vec<(ProductId, Money)>,
    ) -> Result<Done<()>, AppError> {
        let professional = self.professional_profile(customer).await?.is_some();
        let prices: Vec<OfferPrice> = prices
            .into_iter()
            .map(|(product, price_incl_vat)| OfferPrice {
                product,
                price_incl_vat,
            })
            .collect();
        let args = (catalog, customer, prices.clone());
        self.catalog_command(ctx, catalog, "setPriceList", &args, |_, access| {
            Ok(CatalogCommand::SetPriceList {
                customer,
                professional,
                prices,
                access,
            })
        })
        .await
    }
}
