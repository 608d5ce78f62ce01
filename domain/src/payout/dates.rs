//! R-PAY-1: money from a validated sale is available 3 days after validation and paid out on the
//! first Monday after that day, dates in Europe/Paris.

use chrono::{DateTime, Duration, NaiveDate, Utc, Weekday};

use crate::calendar::{next_weekday_after, paris_date};

/// Days between the validation of a sale (Paris date) and the availability of its money.
pub const AVAILABILITY_DELAY_DAYS: i64 = 3;

/// The day a producer's money from a sale validated at `validated_at` becomes available: the
/// Paris date of the validation plus 3 days (calendar days; a DST change does not move it).
pub fn available_on(validated_at: DateTime<Utc>) -> NaiveDate {
    paris_date(validated_at) + Duration::days(AVAILABILITY_DELAY_DAYS)
}

/// The day the money available on `available` is paid out: the first Monday strictly after it.
/// Money that becomes available on a Monday waits for the next Monday: the Monday payout run
/// pays what was available before that day (the guide: "available Saturday 9 -> paid Monday 11",
/// "available Tuesday 12 -> paid Monday 18"; "the first Monday after that day").
pub fn payout_on(available: NaiveDate) -> NaiveDate {
    next_weekday_after(available, Weekday::Mon)
}
