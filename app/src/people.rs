//! Personal data, kept outside the events (design property 10, R-ACC-6).

use etal_domain::ids::UserId;
use uuid::Uuid;

use super::{App, AppError};

/// Shown instead of a person whose data was erased (or never given).
pub const ERASED: &str = "erased customer";

/// What a person tells about themselves.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PersonalData {
    pub display_name: String,
    pub email: Option<String>,
    pub phone: Option<String>,
}

pub(crate) fn check(field: &str, value: &str, max: usize) -> Result<(), AppError> {
    if value.chars().count() > max {
        return Err(AppError::bad_input(
            field,
            format!("at most {max} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(AppError::bad_input(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

impl App {
    /// Records (or replaces) a person's personal data.
    pub async fn register_person(&self, user: UserId, data: &PersonalData) -> Result<(), AppError> {
        let name = data.display_name.trim();
        if name.is_empty() {
            return Err(AppError::bad_input("displayName", "must not be empty"));
        }
        check("displayName", name, 200)?;
        if let Some(e) = &data.email {
            check("email", e, 320)?;
            if !e.contains('@') {
                return Err(AppError::bad_input("email", "is not an e-mail address"));
            }
        }
        if let Some(p) = &data.phone {
            check("phone", p, 40)?;
        }
        sqlx::query(
            "INSERT INTO people (user_id, display_name, email, phone, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (user_id) DO UPDATE SET display_name = EXCLUDED.display_name, email = EXCLUDED.email, \
             phone = EXCLUDED.phone WHERE people.erased_at IS NULL",
        )
        .bind(user.0)
        .bind(name)
        .bind(&data.email)
        .bind(&data.phone)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Stores a delivery address for a person; orders refer to it by the returned reference.
    pub async fn add_address(&self, user: UserId, address: &str) -> Result<Uuid, AppError> {
        let address = address.trim();
        if address.is_empty() {
            return Err(AppError::bad_input("address", "must not be empty"));
        }
        check("address", address, 1000)?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM people WHERE user_id = $1 AND erased_at IS NULL)",
        )
        .bind(user.0)
        .fetch_one(&self.pool)
        .await?;
        if !exists {
            return Err(AppError::not_found("person", user));
        }
        let reference = Uuid::now_v7();
        sqlx::query("INSERT INTO addresses (address_ref, user_id, address, created_at) VALUES ($1, $2, $3, $4)")
            .bind(reference)
            .bind(user.0)
            .bind(address)
            .bind(self.now())
            .execute(&self.pool)
            .await?;
        Ok(reference)
    }

    /// R-ACC-6: erases a person's personal data for good. Events never held it, so orders and
    /// money history stay whole; readers show "erased customer".
    pub async fn erase_person(&self, user: UserId) -> Result<(), AppError> {
        let mut tx = self.pool.begin().await?;
        // Invitations to the person's address go with it (R-SAL-7).
        sqlx::query(
            "UPDATE market_invitations SET email = NULL \
             WHERE email = (SELECT lower(trim(email)) FROM people WHERE user_id = $1)",
        )
        .bind(user.0)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE people SET display_name = NULL, email = NULL, phone = NULL, erased_at = $2 WHERE user_id = $1",
        )
        .bind(user.0)
        .bind(self.now())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if n == 0 {
            return Err(AppError::not_found("person", user));
        }
        sqlx::query("UPDATE addresses SET address = NULL, erased_at = $2 WHERE user_id = $1")
            .bind(user.0)
            .bind(self.now())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The name to show for a person: theirs, or "erased customer".
    pub async fn display_name(&self, user: UserId) -> Result<String, AppError> {
        let name: Option<Option<String>> =
            sqlx::query_scalar("SELECT display_name FROM people WHERE user_id = $1")
                .bind(user.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(name.flatten().unwrap_or_else(|| ERASED.to_string()))
    }
}
