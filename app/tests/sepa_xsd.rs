//! R-PAY-5: the files written are valid against the official ISO 20022 schema
//! `pain.001.001.09.xsd`, checked by `xmllint` (Debian package `libxml2-utils`).
//!
//! The schema is kept at `schemas/pain.001.001.09.xsd`. These tests fail, rather than skip,
//! when `xmllint` is missing, so that CI cannot pass without running them.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{DateTime, NaiveDate, Utc};
use etal_app::sepa::{pain_001, Debtor, Transfer};
use rust_decimal::Decimal;

const SCHEMA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/pain.001.001.09.xsd");

/// Runs `xmllint --noout --schema` on `xml`, written to a file named `name`; returns whether
/// it validates, and xmllint's report.
fn xmllint(name: &str, xml: &str) -> (bool, String) {
    let path: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, xml).expect("write the file to check");
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(SCHEMA)
        .arg(&path)
        .output()
        .expect("run xmllint (apt-get install -y libxml2-utils)");
    let report = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), report)
}

fn transfer(id: &str, amount: Decimal, name: &str, iban: &str, bic: &str) -> Transfer {
    Transfer {
        end_to_end_id: id.to_string(),
        amount,
        creditor_name: name.to_string(),
        creditor_iban: iban.to_string(),
        creditor_bic: bic.to_string(),
        remittance: format!("Étal — ventes de la semaine 12 pour {name}"),
    }
}

/// A file of 3 transfers to French producers with accented names.
fn three_transfers() -> String {
    let debtor = Debtor {
        name: "Étal — Marchés de producteurs SAS".to_string(),
        iban: "FR76 3000 6000 0112 3456 7890 189".to_string(),
        bic: "AGRIFRPP".to_string(),
    };
    let transfers = [
        transfer(
            "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
            Decimal::new(1230, 2),
            "Ferme de l'Étang — Léa & Zoé",
            "FR1420041010050500013M02606",
            "PSSTFRPPPAR",
        ),
        transfer(
            "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c",
            Decimal::new(123456, 2),
            "Bœuf & Cœur de Bretagne <GAEC>",
            "fr76 3000 6000 0112 3456 7890 189",
            "agrifrpp882",
        ),
        transfer(
            "0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5d",
            Decimal::new(1, 2),
            &"Groupement agricole d'exploitation en commun « Les Vergers de l'Abbaye »".repeat(3),
            "DE89 3704 0044 0532 0130 00",
            "COBADEFFXXX",
        ),
    ];
    let created_at: DateTime<Utc> = "2025-03-14T09:30:00Z".parse().expect("a time");
    let execution_date: NaiveDate = "2025-03-17".parse().expect("a date");
    pain_001(
        &debtor,
        "ETAL-2025-03-14-1",
        created_at,
        execution_date,
        &transfers,
    )
    .expect("a valid batch")
}

#[test]
fn a_file_of_three_transfers_is_valid_against_the_schema() {
    let xml = three_transfers();
    assert!(xml.contains("<NbOfTxs>3</NbOfTxs>"));
    assert!(xml.contains("<CtrlSum>1246.87</CtrlSum>"));
    let (valid, report) = xmllint("pain001-three.xml", &xml);
    assert!(valid, "xmllint refused the file:\n{report}\n{xml}");
}

#[test]
fn the_check_catches_a_file_without_nbotxs() {
    let xml = three_transfers();
    let broken = xml.replacen("<NbOfTxs>3</NbOfTxs>", "", 1);
    assert_ne!(broken, xml);
    let (valid, report) = xmllint("pain001-no-nboftxs.xml", &broken);
    assert!(!valid, "xmllint accepted a file without GrpHdr/NbOfTxs");
    assert!(report.contains("NbOfTxs"), "{report}");
}

#[test]
fn the_check_catches_an_end_to_end_id_over_35_characters() {
    let xml = three_transfers();
    let too_long = format!("<EndToEndId>{}</EndToEndId>", "A".repeat(36));
    let broken = xml.replacen(
        "<EndToEndId>0195a1b2c3d47e5f8a9b0c1d2e3f4a5b</EndToEndId>",
        &too_long,
        1,
    );
    assert_ne!(broken, xml);
    let (valid, _) = xmllint("pain001-long-id.xml", &broken);
    assert!(!valid, "xmllint accepted a 36-character EndToEndId");
}

/// The ISO schema allows names of 140 characters (`Max140Text`); the 70 that the files keep
/// to is the EPC's SEPA limit, which no schema checks.
#[test]
fn the_check_catches_a_name_over_140_characters() {
    let xml = three_transfers();
    let too_long = format!("<Nm>{}</Nm>", "A".repeat(141));
    let broken = xml.replacen("<Nm>Etal -- Marches de producteurs SAS</Nm>", &too_long, 1);
    assert_ne!(broken, xml);
    let (valid, _) = xmllint("pain001-long-name.xml", &broken);
    assert!(!valid, "xmllint accepted a 141-character name");
}

#[test]
fn the_check_catches_a_wrong_namespace() {
    let xml = three_transfers();
    let broken = xml.replacen("pain.001.001.09", "pain.001.001.03", 1);
    let (valid, _) = xmllint("pain001-namespace.xml", &broken);
    assert!(!valid, "xmllint accepted another namespace");
}
