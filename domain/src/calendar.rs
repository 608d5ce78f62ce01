//! Business dates live in Europe/Paris; instants are stored in UTC.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Europe::Paris;

/// The business date (Europe/Paris) of an instant.
pub fn paris_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&Paris).date_naive()
}

/// The UTC instant of a Paris wall-clock time on a date.
///
/// In the spring-forward gap (02:00-03:00 on the last Sunday of March) the wall time does not
/// exist: the instant is the same number of minutes after the gap's start (02:30 -> 03:30 CEST).
/// In the autumn overlap the wall time happens twice: the first (summer time) is taken.
pub fn paris_instant(date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let local = date.and_time(time);
    match Paris.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Inside the gap: standard time offset (+01:00) applies to the wall time.
            let utc = local - Duration::hours(1);
            Utc.from_utc_datetime(&utc)
        }
    }
}

/// Midnight (start of day) in Paris of a date, as UTC.
pub fn paris_start_of_day(date: NaiveDate) -> DateTime<Utc> {
    paris_instant(date, NaiveTime::MIN)
}

/// The first `weekday` strictly after `date`.
pub fn next_weekday_after(date: NaiveDate, weekday: Weekday) -> NaiveDate {
    let mut d = date + Duration::days(1);
    while d.weekday() != weekday {
        d += Duration::days(1);
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }
    fn t(h: u32, m: u32) -> NaiveTime {
        NaiveTime::from_hms_opt(h, m, 0).unwrap()
    }

    #[test]
    fn paris_is_utc_plus_one_in_winter_and_plus_two_in_summer() {
        assert_eq!(
            paris_instant(d(2026, 1, 14), t(18, 0)).to_rfc3339(),
            "2026-01-14T17:00:00+00:00"
        );
        assert_eq!(
            paris_instant(d(2026, 7, 15), t(18, 0)).to_rfc3339(),
            "2026-07-15T16:00:00+00:00"
        );
    }

    #[test]
    fn wall_times_in_the_spring_gap_move_forward() {
        // 29 March 2026, 02:30 does not exist in Paris.
        let at = paris_instant(d(2026, 3, 29), t(2, 30));
        assert_eq!(at.to_rfc3339(), "2026-03-29T01:30:00+00:00");
        assert_eq!(at.with_timezone(&Paris).time(), t(3, 30));
    }

    #[test]
    fn wall_times_in_the_autumn_overlap_take_the_first() {
        // 25 October 2026, 02:30 happens twice; the first is at 00:30 UTC.
        assert_eq!(
            paris_instant(d(2026, 10, 25), t(2, 30)).to_rfc3339(),
            "2026-10-25T00:30:00+00:00"
        );
    }

    #[test]
    fn business_date_is_the_paris_date() {
        let late = Utc.with_ymd_and_hms(2026, 6, 30, 22, 30, 0).unwrap();
        assert_eq!(paris_date(late), d(2026, 7, 1));
    }

    #[test]
    fn next_monday_after_a_monday_is_a_week_later() {
        assert_eq!(
            next_weekday_after(d(2023, 9, 11), Weekday::Mon),
            d(2023, 9, 18)
        );
        assert_eq!(
            next_weekday_after(d(2023, 9, 12), Weekday::Mon),
            d(2023, 9, 18)
        );
    }
}
