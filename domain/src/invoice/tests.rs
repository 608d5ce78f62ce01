use chrono::{NaiveDate, TimeZone, Utc};
use proptest::prelude::*;

use super::*;

fn m(s: &str) -> Money {
    s.parse().expect("money")
}
fn d(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 12, day).expect("date")
}
fn totals(excl: &str, vat: &str) -> Totals {
    Totals {
        excl_vat: m(excl),
        vat: m(vat),
        incl_vat: m(excl) + m(vat),
    }
}
fn issue(
    s: &mut InvoiceSeries,
    n: u128,
    kind: DocumentKind,
    corrects: Option<u128>,
    day: u32,
    t: Totals,
) -> Result<Vec<InvoiceEvent>, InvoiceError> {
    let events = s.decide(InvoiceCommand::Issue {
        invoice: InvoiceId(Uuid::from_u128(n)),
        prefix: "F-".into(),
        kind,
        corrects: corrects.map(|c| InvoiceId(Uuid::from_u128(c))),
        date: d(day),
        source: format!("order:{n}"),
        totals: t,
        digest: "x".into(),
        at: Utc.with_ymd_and_hms(2026, 12, day, 10, 0, 0).unwrap(),
    })?;
    for e in events.clone() {
        s.apply(e);
    }
    Ok(events)
}

fn number(events: &[InvoiceEvent]) -> String {
    match &events[0] {
        InvoiceEvent::InvoiceIssued { number, .. } => number.clone(),
    }
}

/// R-INV-1, R-INV-2: numbers follow each other; a refused document takes none; a credit note
/// references its invoice's number and date and never credits more than is left.
#[test]
fn r_inv_1_r_inv_2_numbers_follow_and_credit_notes_stay_within_their_invoice() {
    let mut s = InvoiceSeries::default();
    let e = issue(
        &mut s,
        1,
        DocumentKind::Invoice,
        None,
        1,
        totals("100.00", "5.50"),
    )
    .unwrap();
    assert_eq!(number(&e), "F-000001");
    // The same order again: refused, no number taken.
    let again = s.decide(InvoiceCommand::Issue {
        invoice: InvoiceId(Uuid::from_u128(9)),
        prefix: "F-".into(),
        kind: DocumentKind::Invoice,
        corrects: None,
        date: d(1),
        source: "order:1".into(),
        totals: totals("1.00", "0.00"),
        digest: "x".into(),
        at: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
    });
    assert!(matches!(again, Err(InvoiceError::AlreadyInvoiced { .. })));
    // Before the last date: refused.
    let early = issue(
        &mut s,
        2,
        DocumentKind::Invoice,
        None,
        1,
        totals("1.00", "0.00"),
    );
    assert!(early.is_ok());
    let late = issue(
        &mut s,
        3,
        DocumentKind::Invoice,
        None,
        5,
        totals("10.00", "2.00"),
    )
    .unwrap();
    assert_eq!(number(&late), "F-000003");
    let before = issue(
        &mut s,
        4,
        DocumentKind::Invoice,
        None,
        4,
        totals("1.00", "0.00"),
    );
    assert_eq!(
        before,
        Err(InvoiceError::DateBeforeLast {
            date: d(4),
            last: d(5)
        })
    );
    // Credit notes: within what is left of the invoice.
    let cn = issue(
        &mut s,
        5,
        DocumentKind::CreditNote,
        Some(1),
        6,
        totals("40.00", "2.20"),
    )
    .unwrap();
    match &cn[0] {
        InvoiceEvent::InvoiceIssued {
            number, corrects, ..
        } => {
            assert_eq!(number, "F-000004");
            assert_eq!(
                corrects,
                &Some((InvoiceId(Uuid::from_u128(1)), "F-000001".to_string(), d(1)))
            );
        }
    }
    let too_much = issue(
        &mut s,
        6,
        DocumentKind::CreditNote,
        Some(1),
        6,
        totals("60.01", "3.30"),
    );
    assert!(
        matches!(too_much, Err(InvoiceError::CreditNoteExceedsInvoice { .. })),
        "{too_much:?}"
    );
    let of_credit = issue(
        &mut s,
        7,
        DocumentKind::CreditNote,
        Some(5),
        6,
        totals("1.00", "0.00"),
    );
    assert_eq!(of_credit, Err(InvoiceError::NotAnInvoice));
    let rest = issue(
        &mut s,
        8,
        DocumentKind::CreditNote,
        Some(1),
        7,
        totals("60.00", "3.30"),
    )
    .unwrap();
    assert_eq!(number(&rest), "F-000005");
    assert_eq!(s.issued(), 5);
    let bad = issue(
        &mut s,
        10,
        DocumentKind::Invoice,
        None,
        7,
        Totals {
            excl_vat: m("1.00"),
            vat: m("0.10"),
            incl_vat: m("1.00"),
        },
    );
    assert_eq!(bad, Err(InvoiceError::InvalidTotals));
    assert_eq!(s.next_number("F-"), "F-000006");
}

proptest! {
    /// R-INV-1: whatever mix of accepted and refused documents, the numbers issued are 1..=n
    /// with no gap and no repeat.
    #[test]
    fn r_inv_1_numbers_have_no_gap_whatever_is_refused(ops in prop::collection::vec((0u8..4, 1u32..20, 0i64..500), 1..60)) {
        let mut s = InvoiceSeries::default();
        let mut numbers = Vec::new();
        let mut day = 1;
        for (i, (op, step, cents)) in ops.into_iter().enumerate() {
            let n = i as u128 + 1;
            let t = Totals { excl_vat: Money::from_cents(cents), vat: Money::ZERO, incl_vat: Money::from_cents(cents) };
            let result = match op {
                0 | 1 => { day = (day + step % 2).min(28); issue(&mut s, n, DocumentKind::Invoice, None, day, t) }
                2 => issue(&mut s, n, DocumentKind::CreditNote, Some(n.saturating_sub(u128::from(step)).max(1)), day, t),
                _ => issue(&mut s, n, DocumentKind::Invoice, None, day.saturating_sub(step).max(1), t),
            };
            if let Ok(events) = result {
                for e in events {
                    let InvoiceEvent::InvoiceIssued { sequence, .. } = e;
                    numbers.push(sequence);
                }
            }
        }
        let expected: Vec<u64> = (1..=numbers.len() as u64).collect();
        prop_assert_eq!(numbers, expected);
    }
}
