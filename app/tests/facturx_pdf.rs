//! Factur-X PDF tests (rule R-INV-5).

use std::path::{Path, PathBuf};
use std::process::Command;

use etal_app::facturx_pdf::{factur_x_pdf, factur_x_pdf_at, InvoicePdf, PdfError, PdfLine};
use lopdf::{Dictionary, Document, Object};

const CII: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<rsm:CrossIndustryInvoice xmlns:rsm="urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100" xmlns:ram="urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100" xmlns:udt="urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100" xmlns:qdt="urn:un:unece:uncefact:data:standard:QualifiedDataType:100">
  <rsm:ExchangedDocumentContext>
    <ram:GuidelineSpecifiedDocumentContextParameter>
      <ram:ID>urn:cen.eu:en16931:2017</ram:ID>
    </ram:GuidelineSpecifiedDocumentContextParameter>
  </rsm:ExchangedDocumentContext>
  <rsm:ExchangedDocument>
    <ram:ID>F-2024-0042</ram:ID>
    <ram:TypeCode>380</ram:TypeCode>
    <ram:IssueDateTime><udt:DateTimeString format="102">20240229</udt:DateTimeString></ram:IssueDateTime>
  </rsm:ExchangedDocument>
  <rsm:SupplyChainTradeTransaction>
    <ram:IncludedSupplyChainTradeLineItem>
      <ram:AssociatedDocumentLineDocument><ram:LineID>1</ram:LineID></ram:AssociatedDocumentLineDocument>
      <ram:SpecifiedTradeProduct><ram:Name>Développement « sur mesure »</ram:Name></ram:SpecifiedTradeProduct>
      <ram:SpecifiedLineTradeAgreement>
        <ram:NetPriceProductTradePrice><ram:ChargeAmount>100.00</ram:ChargeAmount></ram:NetPriceProductTradePrice>
      </ram:SpecifiedLineTradeAgreement>
      <ram:SpecifiedLineTradeDelivery><ram:BilledQuantity unitCode="C62">2</ram:BilledQuantity></ram:SpecifiedLineTradeDelivery>
      <ram:SpecifiedLineTradeSettlement>
        <ram:ApplicableTradeTax>
          <ram:TypeCode>VAT</ram:TypeCode>
          <ram:CategoryCode>S</ram:CategoryCode>
          <ram:RateApplicablePercent>20</ram:RateApplicablePercent>
        </ram:ApplicableTradeTax>
        <ram:SpecifiedTradeSettlementLineMonetarySummation>
          <ram:LineTotalAmount>200.00</ram:LineTotalAmount>
        </ram:SpecifiedTradeSettlementLineMonetarySummation>
      </ram:SpecifiedLineTradeSettlement>
    </ram:IncludedSupplyChainTradeLineItem>
    <ram:ApplicableHeaderTradeAgreement>
      <ram:SellerTradeParty>
        <ram:Name>Société Exemple SARL</ram:Name>
        <ram:PostalTradeAddress><ram:CountryID>FR</ram:CountryID></ram:PostalTradeAddress>
        <ram:SpecifiedTaxRegistration><ram:ID schemeID="VA">FR32123456789</ram:ID></ram:SpecifiedTaxRegistration>
      </ram:SellerTradeParty>
      <ram:BuyerTradeParty>
        <ram:Name>Client SAS</ram:Name>
        <ram:PostalTradeAddress><ram:CountryID>FR</ram:CountryID></ram:PostalTradeAddress>
      </ram:BuyerTradeParty>
    </ram:ApplicableHeaderTradeAgreement>
    <ram:ApplicableHeaderTradeDelivery/>
    <ram:ApplicableHeaderTradeSettlement>
      <ram:InvoiceCurrencyCode>EUR</ram:InvoiceCurrencyCode>
      <ram:ApplicableTradeTax>
        <ram:CalculatedAmount>40.00</ram:CalculatedAmount>
        <ram:TypeCode>VAT</ram:TypeCode>
        <ram:BasisAmount>200.00</ram:BasisAmount>
        <ram:CategoryCode>S</ram:CategoryCode>
        <ram:RateApplicablePercent>20</ram:RateApplicablePercent>
      </ram:ApplicableTradeTax>
      <ram:SpecifiedTradeSettlementHeaderMonetarySummation>
        <ram:LineTotalAmount>200.00</ram:LineTotalAmount>
        <ram:TaxBasisTotalAmount>200.00</ram:TaxBasisTotalAmount>
        <ram:TaxTotalAmount currencyID="EUR">40.00</ram:TaxTotalAmount>
        <ram:GrandTotalAmount>240.00</ram:GrandTotalAmount>
        <ram:DuePayableAmount>240.00</ram:DuePayableAmount>
      </ram:SpecifiedTradeSettlementHeaderMonetarySummation>
    </ram:ApplicableHeaderTradeSettlement>
  </rsm:SupplyChainTradeTransaction>
</rsm:CrossIndustryInvoice>
"#;

fn line(description: &str) -> PdfLine {
    PdfLine {
        description: description.to_string(),
        quantity: "2".to_string(),
        unit_price_excl_vat: "100,00 €".to_string(),
        vat_rate: "20 %".to_string(),
        total_excl_vat: "200,00 €".to_string(),
    }
}

fn invoice(lines: Vec<PdfLine>) -> InvoicePdf {
    InvoicePdf {
        title: "Facture".to_string(),
        number: "F-2024-0042".to_string(),
        issue_date: "29/02/2024".to_string(),
        seller_lines: vec![
            "Société Exemple SARL".to_string(),
            "12 rue de l'Église".to_string(),
            "75011 Paris".to_string(),
            "SIREN 123 456 789 — TVA FR32123456789".to_string(),
        ],
        buyer_lines: vec![
            "Client SAS".to_string(),
            "3 place du Marché".to_string(),
            "69002 Lyon".to_string(),
        ],
        lines,
        vat_lines: vec![(
            "20 %".to_string(),
            "200,00 €".to_string(),
            "40,00 €".to_string(),
        )],
        totals: vec![
            ("Total HT".to_string(), "200,00 €".to_string()),
            ("TVA".to_string(), "40,00 €".to_string()),
            (
                "Total TTC — net à payer".to_string(),
                "240,00 €".to_string(),
            ),
        ],
        mentions: vec![
            "Paiement à 30 jours, par virement. Pas d'escompte pour paiement anticipé.".to_string(),
            "En cas de retard de paiement : pénalités au taux de 3 fois le taux d'intérêt légal \
             et indemnité forfaitaire pour frais de recouvrement de 40 €."
                .to_string(),
            "Œuvre réalisée à façon ; référence commande : BC-ÉTÉ-2024.".to_string(),
        ],
    }
}

fn small_pdf() -> Vec<u8> {
    let doc = invoice(vec![
        line(
            "Développement d'une fonctionnalité « export comptable » pour l'équipe financière, avec tests et documentation",
        ),
        line("Maintenance"),
    ]);
    factur_x_pdf_at(&doc, CII, 1_709_210_096).expect("pdf")
}

fn name_of(obj: &Object) -> Option<&[u8]> {
    obj.as_name().ok()
}

fn resolve<'a>(doc: &'a Document, obj: &'a Object) -> &'a Object {
    match obj {
        Object::Reference(id) => doc.get_object(*id).expect("dangling reference"),
        other => other,
    }
}

fn dict<'a>(doc: &'a Document, obj: &'a Object) -> &'a Dictionary {
    match resolve(doc, obj) {
        Object::Dictionary(d) => d,
        Object::Stream(s) => &s.dict,
        other => panic!("not a dictionary: {other:?}"),
    }
}

fn text_string(obj: &Object) -> String {
    let bytes = obj.as_str().expect("string");
    if bytes.starts_with(&[0xFE, 0xFF]) {
        let units: Vec<u16> = bytes[2..]
            .chunks(2)
            .map(|c| u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

fn xmp(doc: &Document) -> String {
    let catalog = doc.catalog().expect("catalog");
    let meta = resolve(doc, catalog.get(b"Metadata").expect("/Metadata"));
    let Object::Stream(stream) = meta else {
        panic!("metadata is not a stream")
    };
    String::from_utf8(stream.content.clone()).expect("utf-8 xmp")
}

/// R-INV-5: the CII XML is attached as factur-x.xml, /Data, text/xml, and
/// is reachable both from the EmbeddedFiles name tree and the catalog /AF.
#[test]
fn embedded_factur_x_xml_is_readable_back() {
    let pdf = small_pdf();
    assert!(pdf.starts_with(b"%PDF-1.7"));
    let doc = Document::load_mem(&pdf).expect("lopdf parses the PDF");
    let catalog = doc.catalog().expect("catalog");

    // /AF array in the catalog.
    let af = resolve(&doc, catalog.get(b"AF").expect("/AF in catalog"))
        .as_array()
        .expect("AF array");
    assert_eq!(af.len(), 1);
    let spec_from_af = dict(&doc, &af[0]);

    // /Names /EmbeddedFiles name tree.
    let names = dict(&doc, catalog.get(b"Names").expect("/Names"));
    let tree = dict(&doc, names.get(b"EmbeddedFiles").expect("/EmbeddedFiles"));
    let entries = tree
        .get(b"Names")
        .expect("leaf /Names")
        .as_array()
        .expect("array");
    assert_eq!(entries.len(), 2, "one (name, filespec) pair");
    assert_eq!(text_string(&entries[0]), "factur-x.xml");
    let spec = dict(&doc, &entries[1]);
    assert_eq!(
        spec, spec_from_af,
        "name tree and /AF point to the same file spec"
    );

    assert_eq!(
        name_of(spec.get(b"Type").expect("Type")),
        Some(&b"Filespec"[..])
    );
    assert_eq!(text_string(spec.get(b"F").expect("/F")), "factur-x.xml");
    assert_eq!(text_string(spec.get(b"UF").expect("/UF")), "factur-x.xml");
    assert_eq!(
        name_of(spec.get(b"AFRelationship").expect("/AFRelationship")),
        Some(&b"Data"[..])
    );
    assert!(spec.get(b"Desc").is_ok(), "description present");

    let ef = dict(&doc, spec.get(b"EF").expect("/EF"));
    let Object::Stream(file) = resolve(&doc, ef.get(b"F").expect("/EF /F")) else {
        panic!("embedded file is not a stream")
    };
    assert_eq!(
        name_of(file.dict.get(b"Subtype").expect("/Subtype")),
        Some(&b"text/xml"[..])
    );
    assert_eq!(
        name_of(file.dict.get(b"Type").expect("/Type")),
        Some(&b"EmbeddedFile"[..])
    );
    let params = dict(&doc, file.dict.get(b"Params").expect("/Params"));
    assert!(params.get(b"ModDate").is_ok());
    assert_eq!(
        params.get(b"Size").expect("/Size").as_i64().expect("int"),
        CII.len() as i64
    );
    let content = file.decompressed_content().expect("decompress");
    assert_eq!(content, CII.as_bytes());

    // PDF/A-3: an output intent is present.
    assert!(catalog.get(b"OutputIntents").is_ok());
}

/// R-INV-5: PDF/A-3b identification and the Factur-X XMP extension.
#[test]
fn xmp_declares_pdfa3b_and_factur_x() {
    let pdf = small_pdf();
    let doc = Document::load_mem(&pdf).expect("parse");
    let xmp = xmp(&doc);
    let compact: String = xmp.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "<pdfaid:part>3</pdfaid:part>",
        "<pdfaid:conformance>B</pdfaid:conformance>",
        "xmlns:fx=\"urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#\"",
        "<fx:DocumentType>INVOICE</fx:DocumentType>",
        "<fx:DocumentFileName>factur-x.xml</fx:DocumentFileName>",
        "<fx:Version>1.0</fx:Version>",
        "<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>",
        "<pdfaSchema:namespaceURI>urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#</pdfaSchema:namespaceURI>",
        "<pdfaSchema:prefix>fx</pdfaSchema:prefix>",
        "<pdfaProperty:name>DocumentFileName</pdfaProperty:name>",
        "<pdfaProperty:name>DocumentType</pdfaProperty:name>",
        "<pdfaProperty:name>Version</pdfaProperty:name>",
        "<pdfaProperty:name>ConformanceLevel</pdfaProperty:name>",
        "<xmp:CreateDate>2024-02-29T12:34:56+00:00</xmp:CreateDate>",
    ] {
        assert!(compact.contains(needle), "XMP lacks {needle}:\n{xmp}");
    }
    assert!(xmp.starts_with("<?xpacket begin="));
    assert!(xmp.trim_end().ends_with("<?xpacket end=\"r\"?>"));
}

/// The XMP splice keeps a single, consistent cross-reference table.
#[test]
fn xref_offsets_point_at_their_objects() {
    let pdf = small_pdf();
    let sx = pdf
        .windows(9)
        .rposition(|w| w == b"startxref")
        .expect("startxref");
    let xref_at: usize = std::str::from_utf8(&pdf[sx + 9..])
        .expect("ASCII tail")
        .split_whitespace()
        .next()
        .expect("offset")
        .parse()
        .expect("number");
    assert!(pdf[xref_at..].starts_with(b"xref"));
    let table = std::str::from_utf8(&pdf[xref_at..]).expect("ASCII xref and trailer");
    let mut lines = table.lines().skip(1);
    let mut checked = 0;
    while let Some(header) = lines.next() {
        if header.starts_with("trailer") {
            break;
        }
        let mut it = header.split_whitespace();
        let first: usize = it.next().expect("first").parse().expect("first");
        let count: usize = it.next().expect("count").parse().expect("count");
        for i in 0..count {
            let entry = lines.next().expect("entry");
            if entry.trim_end().ends_with('n') {
                let offset: usize = entry[..10].parse().expect("offset");
                let expected = format!("{} 0 obj", first + i);
                assert!(
                    pdf[offset..].starts_with(expected.as_bytes()),
                    "object {} not at {offset}",
                    first + i
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10);
    // The metadata stream /Length matches its content.
    let doc = Document::load_mem(&pdf).expect("parse");
    let catalog = doc.catalog().expect("catalog");
    let meta_id = catalog
        .get(b"Metadata")
        .expect("meta")
        .as_reference()
        .expect("ref");
    let Object::Stream(s) = doc.get_object(meta_id).expect("meta obj") else {
        panic!("stream")
    };
    let len = s.dict.get(b"Length").expect("len").as_i64().expect("int");
    assert_eq!(len as usize, s.content.len());
}

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("FACTURX_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    path.exists().then_some(path)
}

/// R-INV-5: the reference Python `factur-x` library extracts the same XML
/// (and finds it valid against the Factur-X EN 16931 XSD).
#[test]
fn python_factur_x_extracts_the_xml() {
    let Some(python) = python() else {
        println!(
            "SKIPPED python_factur_x_extracts_the_xml: no Python with factur-x \
             (set FACTURX_PYTHON, or run `scripts/tools.sh`, which makes .venv with factur-x)"
        );
        return;
    };
    let dir = std::env::temp_dir().join(format!("facturpdf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let pdf_path = dir.join("facture.pdf");
    let xml_path = dir.join("extracted.xml");
    std::fs::write(&pdf_path, small_pdf()).expect("write pdf");
    let script = "import sys\n\
from facturx import get_xml_from_pdf\n\
data = open(sys.argv[1], 'rb').read()\n\
name, xml = get_xml_from_pdf(data, check_xsd=True)\n\
if not name:\n    sys.exit('no valid Factur-X XML found')\n\
open(sys.argv[2], 'wb').write(xml)\n\
print(name)\n";
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(&pdf_path)
        .arg(&xml_path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "python failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "factur-x.xml");
    let extracted = std::fs::read(&xml_path).expect("extracted xml");
    assert_eq!(extracted, CII.as_bytes());
    let _ = std::fs::remove_dir_all(Path::new(&dir));
}

fn page_text(doc: &Document, page: u32) -> String {
    doc.extract_text(&[page]).expect("extract text")
}

/// 80 lines spread over several pages; the last line is on the last page.
#[test]
fn eighty_lines_span_several_pages() {
    let lines: Vec<PdfLine> = (1..=80)
        .map(|i| {
            if i % 7 == 0 {
                line(&format!(
                    "Ligne {i} : prestation détaillée dont la description est volontairement \
                     très longue afin de vérifier le retour à la ligne dans la colonne"
                ))
            } else {
                line(&format!("Ligne {i} : intervention de maintenance"))
            }
        })
        .collect();
    let mut lines = lines;
    lines.push(line("Dernière ligne : façade, œuvre et crème brûlée"));
    let pdf = factur_x_pdf(&invoice(lines), CII).expect("pdf");
    let doc = Document::load_mem(&pdf).expect("parse");
    let pages = doc.get_pages();
    assert!(
        pages.len() > 1,
        "expected several pages, got {}",
        pages.len()
    );
    let last = *pages.keys().last().expect("a page");
    let text = page_text(&doc, last);
    assert!(
        text.contains("Dernière ligne : façade, œuvre et crème brûlée"),
        "last page text: {text}"
    );
    assert!(text.contains(&format!("Page {last} / {last}")), "{text}");
    let first = page_text(&doc, 1);
    assert!(first.contains("Facture n° F-2024-0042"), "{first}");
    assert!(first.contains("Société Exemple SARL"), "{first}");
    assert!(first.contains("Client SAS"), "{first}");
}

/// Odd input never panics and still yields a PDF.
#[test]
fn hostile_input_does_not_panic() {
    let empty = InvoicePdf::default();
    assert!(factur_x_pdf(&empty, CII).is_ok());

    let mut weird = invoice(vec![
        line(&"x".repeat(20_000)),
        line("\u{0}\u{7}\t\r\n😀 \u{E000}"),
    ]);
    weird.number = "N".repeat(3_000);
    weird.seller_lines = (0..150).map(|i| format!("Ligne vendeur {i}")).collect();
    weird.mentions = vec!["mot ".repeat(5_000)];
    weird.totals = vec![("".into(), "".into())];
    let pdf = factur_x_pdf(&weird, CII).expect("pdf");
    let doc = Document::load_mem(&pdf).expect("parse");
    assert!(doc.get_pages().len() > 3);

    assert_eq!(
        factur_x_pdf(&invoice(Vec::new()), "  "),
        Err(PdfError::EmptyXml)
    );
}

/// Same input and timestamp give the same bytes.
#[test]
fn output_is_reproducible() {
    assert_eq!(small_pdf(), small_pdf());
}
