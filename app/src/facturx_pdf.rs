//! Factur-X PDF rendering (rule R-INV-5).
//!
//! R-INV-5: every issued invoice or credit note is delivered as a Factur-X
//! file, i.e. a PDF/A-3 (conformance level B) that shows the invoice to a
//! human reader and carries the machine-readable CII XML as an associated
//! file named `factur-x.xml` (`/AFRelationship /Data`, MIME `text/xml`,
//! profile EN 16931), described by the Factur-X XMP extension schema.
//!
//! The page content, the embedded file, the output intent and the PDF/A
//! identification are produced by `krilla` with its PDF/A-3b validator
//! switched on. krilla has no hook for custom XMP properties, so the
//! Factur-X properties (`fx:` namespace) and their PDF/A extension schema
//! description are spliced into krilla's XMP packet afterwards; the
//! cross-reference table is then shifted accordingly (see [`add_factur_x_xmp`]).
//!
//! Fonts: DejaVu Sans and DejaVu Sans Bold (Bitstream Vera licence, see
//! `fonts/LICENSE`) are compiled into the binary and embedded (subset) in
//! every PDF, as PDF/A requires.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use krilla::color::rgb;
use krilla::configure::{Archival, ConfigurationBuilder};
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::geom::{PathBuilder, Point, Rect};
use krilla::metadata::{DateTime, Metadata};
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke};
use krilla::surface::Surface;
use krilla::text::{Font, GlyphId as KGlyphId, KrillaGlyph};
use krilla::{Document, SerializeSettings};
use skrifa::charmap::Charmap;
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::MetadataProvider;

/// Name of the embedded XML file, fixed by the Factur-X specification (R-INV-5).
pub const FACTUR_X_FILE_NAME: &str = "factur-x.xml";
/// Namespace of the Factur-X XMP extension schema (R-INV-5).
pub const FACTUR_X_XMP_NAMESPACE: &str = "urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#";
/// Factur-X conformance level written to the XMP metadata (R-INV-5).
pub const FACTUR_X_CONFORMANCE_LEVEL: &str = "EN 16931";

static REGULAR_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");
static BOLD_TTF: &[u8] = include_bytes!("../fonts/DejaVuSans-Bold.ttf");

/// The human-readable content of an invoice or credit note (R-INV-5).
///
/// Every field is already formatted for display (amounts, dates, rates); the
/// renderer does not interpret them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoicePdf {
    /// "Facture" or "Avoir".
    pub title: String,
    /// Invoice number.
    pub number: String,
    /// Issue date, already formatted (dd/mm/yyyy).
    pub issue_date: String,
    /// Seller block (name first, then address, identifiers...).
    pub seller_lines: Vec<String>,
    /// Buyer block (name first, then address, identifiers...).
    pub buyer_lines: Vec<String>,
    /// Invoice lines.
    pub lines: Vec<PdfLine>,
    /// VAT breakdown: (rate, taxable base, VAT amount).
    pub vat_lines: Vec<(String, String, String)>,
    /// Totals: (label, amount); the last one is printed in bold.
    pub totals: Vec<(String, String)>,
    /// Legal mentions, payment terms, references.
    pub mentions: Vec<String>,
}

/// One invoice line as displayed in the table (R-INV-5).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PdfLine {
    /// Description; long texts are wrapped.
    pub description: String,
    /// Quantity (with unit if wanted).
    pub quantity: String,
    /// Unit price excluding VAT.
    pub unit_price_excl_vat: String,
    /// VAT rate.
    pub vat_rate: String,
    /// Line total excluding VAT.
    pub total_excl_vat: String,
}

/// Why a Factur-X PDF could not be produced (R-INV-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PdfError {
    /// The CII XML to embed is empty.
    EmptyXml,
    /// A bundled font could not be loaded.
    Font(&'static str),
    /// krilla refused to write the document (includes PDF/A-3b validation errors).
    Render(String),
    /// The PDF written by krilla does not have the expected structure, so the
    /// Factur-X XMP metadata could not be added.
    Metadata(&'static str),
}

impl fmt::Display for PdfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PdfError::EmptyXml => write!(f, "the Factur-X XML to embed is empty"),
            PdfError::Font(what) => write!(f, "cannot load font: {what}"),
            PdfError::Render(msg) => write!(f, "cannot write the PDF/A-3 document: {msg}"),
            PdfError::Metadata(what) => write!(f, "cannot add Factur-X XMP metadata: {what}"),
        }
    }
}

impl std::error::Error for PdfError {}

/// Renders `doc` and returns a Factur-X PDF/A-3b embedding `cii_xml` as
/// `factur-x.xml` (R-INV-5). The current time is used as document and
/// attachment date.
pub fn factur_x_pdf(doc: &InvoicePdf, cii_xml: &str) -> Result<Vec<u8>, PdfError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    factur_x_pdf_at(doc, cii_xml, now)
}

/// Like [`factur_x_pdf`] but with an explicit timestamp (seconds since the
/// Unix epoch, UTC) for the document and attachment dates, so that the output
/// is reproducible (R-INV-5).
pub fn factur_x_pdf_at(
    doc: &InvoicePdf,
    cii_xml: &str,
    unix_seconds: u64,
) -> Result<Vec<u8>, PdfError> {
    if cii_xml.trim().is_empty() {
        return Err(PdfError::EmptyXml);
    }
    let fonts = Fonts::load()?;
    let pages = layout(doc, &fonts);
    let date = krilla_date(unix_seconds);

    let configuration = ConfigurationBuilder::new()
        .with_archival_validator(Archival::A3_B)
        .finish()
        .map_err(|e| PdfError::Render(format!("{e:?}")))?;
    let settings = SerializeSettings {
        configuration,
        ..SerializeSettings::default()
    };
    let mut document = Document::new_with(settings);

    let heading = document_heading(doc);
    document.set_metadata(
        Metadata::new()
            .title(truncate_chars(&heading, 500))
            .language("fr".to_string())
            .creator("etal".to_string())
            .creation_date(date),
    );

    let attached = document.embed_file(EmbeddedFile {
        path: FACTUR_X_FILE_NAME.to_string(),
        mime_type: MimeType::new("text/xml"),
        description: Some("Factur-X invoice (CII XML, EN 16931)".to_string()),
        association_kind: AssociationKind::Data,
        data: cii_xml.as_bytes().to_vec().into(),
        modification_date: Some(date),
        compress: Some(true),
        location: None,
    });
    if attached.is_none() {
        return Err(PdfError::Render(
            "the XML file could not be attached".into(),
        ));
    }

    let page_count = pages.len();
    let footer_left = truncate_chars(&heading, 120);
    for (index, ops) in pages.iter().enumerate() {
        let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
            .ok_or(PdfError::Render("invalid page size".into()))?;
        let mut page = document.start_page_with(settings);
        let mut surface = page.surface();
        for op in ops {
            draw_op(&mut surface, &fonts, op);
        }
        let footer_y = PAGE_H - 28.0;
        let footer = format!("Page {} / {}", index + 1, page_count);
        let footer_w = fonts.regular.width(&footer, 7.5);
        draw_op(
            &mut surface,
            &fonts,
            &Op::Text {
                x: MARGIN,
                y: footer_y,
                size: 7.5,
                bold: false,
                color: GREY_TEXT,
                text: footer_left.clone(),
            },
        );
        draw_op(
            &mut surface,
            &fonts,
            &Op::Text {
                x: PAGE_W - MARGIN - footer_w,
                y: footer_y,
                size: 7.5,
                bold: false,
                color: GREY_TEXT,
                text: footer,
            },
        );
        surface.finish();
        page.finish();
    }

    let pdf = document
        .finish()
        .map_err(|e| PdfError::Render(e.to_string()))?;
    add_factur_x_xmp(pdf)
}

// ---------------------------------------------------------------------------
// Fonts and text measurement
// ---------------------------------------------------------------------------

struct Face {
    font: Font,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
}

impl Face {
    fn load(data: &'static [u8], what: &'static str) -> Result<Face, PdfError> {
        let font_ref = skrifa::FontRef::new(data).map_err(|_| PdfError::Font(what))?;
        let units_per_em = f32::from(
            font_ref
                .metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        if units_per_em <= 0.0 {
            return Err(PdfError::Font(what));
        }
        let font = Font::new(data.into(), 0).ok_or(PdfError::Font(what))?;
        Ok(Face {
            font,
            charmap: font_ref.charmap(),
            metrics: font_ref.glyph_metrics(Size::unscaled(), LocationRef::default()),
            units_per_em,
        })
    }

    /// Glyph id and normalized advance of `c`, if the font has a real glyph
    /// for it (never `.notdef`, which PDF/A forbids).
    fn glyph(&self, c: char) -> Option<(u32, f32)> {
        let gid = self.charmap.map(c)?;
        if gid.to_u32() == 0 {
            return None;
        }
        let advance = self.metrics.advance_width(gid).unwrap_or(0.0) / self.units_per_em;
        Some((gid.to_u32(), advance))
    }

    /// Replaces what the font cannot show: control characters and other
    /// spaces become a space, unknown characters become `?`.
    fn sanitize(&self, text: &str) -> String {
        text.chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    ' '
                } else if self.glyph(c).is_some() {
                    c
                } else {
                    '?'
                }
            })
            .collect()
    }

    /// Glyphs of an already sanitized text (one glyph per character).
    fn shape(&self, text: &str) -> Vec<KrillaGlyph> {
        let mut glyphs = Vec::with_capacity(text.len());
        for (start, c) in text.char_indices() {
            if let Some((gid, advance)) = self.glyph(c) {
                glyphs.push(KrillaGlyph::new(
                    KGlyphId::new(gid),
                    advance,
                    0.0,
                    0.0,
                    0.0,
                    start..start + c.len_utf8(),
                    None,
                ));
            }
        }
        glyphs
    }

    fn char_width(&self, c: char, size: f32) -> f32 {
        self.glyph(c).map(|(_, a)| a * size).unwrap_or(0.0)
    }

    fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.char_width(c, size)).sum()
    }

    /// Greedy word wrap into lines no wider than `max_width`; words longer
    /// than a line are cut. Always returns at least one line.
    fn wrap(&self, text: &str, size: f32, max_width: f32) -> Vec<String> {
        let mut out = Vec::new();
        for paragraph in text.split('\n') {
            let paragraph = self.sanitize(paragraph);
            let mut line = String::new();
            let mut line_w = 0.0f32;
            let space_w = self.char_width(' ', size);
            for word in paragraph.split(' ').filter(|w| !w.is_empty()) {
                let word_w = self.width(word, size);
                let sep_w = if line.is_empty() { 0.0 } else { space_w };
                if line_w + sep_w + word_w <= max_width {
                    if !line.is_empty() {
                        line.push(' ');
                    }
                    line.push_str(word);
                    line_w += sep_w + word_w;
                    continue;
                }
                if !line.is_empty() {
                    out.push(std::mem::take(&mut line));
                    line_w = 0.0;
                }
                if word_w <= max_width {
                    line.push_str(word);
                    line_w = word_w;
                    continue;
                }
                for c in word.chars() {
                    let w = self.char_width(c, size);
                    if line_w + w > max_width && !line.is_empty() {
                        out.push(std::mem::take(&mut line));
                        line_w = 0.0;
                    }
                    line.push(c);
                    line_w += w;
                }
            }
            out.push(line);
        }
        if out.is_empty() {
            out.push(String::new());
        }
        out
    }
}

struct Fonts {
    regular: Face,
    bold: Face,
}

impl Fonts {
    fn load() -> Result<Fonts, PdfError> {
        Ok(Fonts {
            regular: Face::load(REGULAR_TTF, "DejaVu Sans")?,
            bold: Face::load(BOLD_TTF, "DejaVu Sans Bold")?,
        })
    }

    fn face(&self, bold: bool) -> &Face {
        if bold {
            &self.bold
        } else {
            &self.regular
        }
    }
}

// ---------------------------------------------------------------------------
// Layout: builds a list of pages, each a list of drawing operations
// ---------------------------------------------------------------------------

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.0;
const CONTENT_W: f32 = PAGE_W - 2.0 * MARGIN;
const BOTTOM: f32 = PAGE_H - 48.0;
const CELL_PAD: f32 = 3.0;

type Color = (u8, u8, u8);
const BLACK: Color = (0, 0, 0);
const GREY_TEXT: Color = (90, 90, 90);
const HEADER_BG: Color = (225, 229, 236);
const RULE: Color = (180, 184, 190);

enum Op {
    Text {
        x: f32,
        y: f32,
        size: f32,
        bold: bool,
        color: Color,
        text: String,
    },
    Rect {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: Color,
    },
    HLine {
        x1: f32,
        x2: f32,
        y: f32,
        color: Color,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Align {
    Left,
    Right,
}

#[derive(Clone)]
struct TextLine {
    text: String,
    size: f32,
    bold: bool,
    color: Color,
}

#[derive(Clone)]
struct Cell {
    x: f32,
    width: f32,
    align: Align,
    lines: Vec<TextLine>,
}

#[derive(Clone)]
struct Row {
    cells: Vec<Cell>,
    line_h: f32,
    background: Option<Color>,
    rule_below: bool,
    rule_above: bool,
}

impl Row {
    fn line_count(&self) -> usize {
        self.cells
            .iter()
            .map(|c| c.lines.len())
            .max()
            .unwrap_or(0)
            .max(1)
    }

    fn height(&self) -> f32 {
        self.line_count() as f32 * self.line_h + 2.0 * CELL_PAD
    }
}

struct Layout<'a> {
    fonts: &'a Fonts,
    pages: Vec<Vec<Op>>,
    y: f32,
    /// Nothing but headers has been placed on the current page yet.
    fresh: bool,
    /// Table header repeated at the top of continuation pages.
    repeat_header: Option<Row>,
    continuation_title: String,
}

impl<'a> Layout<'a> {
    fn new(fonts: &'a Fonts, continuation_title: String) -> Self {
        Layout {
            fonts,
            pages: vec![Vec::new()],
            y: MARGIN,
            fresh: true,
            repeat_header: None,
            continuation_title,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    fn new_page(&mut self) {
        self.pages.push(Vec::new());
        self.y = MARGIN;
        self.fresh = true;
        let title = self.continuation_title.clone();
        self.paragraph(&title, 9.0, true, GREY_TEXT, 0.0);
        self.y += 6.0;
        if let Some(header) = self.repeat_header.clone() {
            self.draw_row_lines(&header, 0, header.line_count());
            self.y += header.height();
        }
        self.fresh = true;
    }

    /// Starts a new page unless `height` still fits on this one.
    fn keep_together(&mut self, height: f32) {
        if !self.fresh && self.y + height > BOTTOM {
            self.new_page();
        }
    }

    /// A full-width wrapped paragraph, placed line by line.
    fn paragraph(&mut self, text: &str, size: f32, bold: bool, color: Color, gap_after: f32) {
        let face = self.fonts.face(bold);
        let lines = face.wrap(text, size, CONTENT_W);
        let row = Row {
            cells: vec![Cell {
                x: MARGIN,
                width: CONTENT_W,
                align: Align::Left,
                lines: lines
                    .into_iter()
                    .map(|text| TextLine {
                        text,
                        size,
                        bold,
                        color,
                    })
                    .collect(),
            }],
            line_h: size * 1.3,
            background: None,
            rule_below: false,
            rule_above: false,
        };
        self.row_no_pad(&row);
        self.y += gap_after;
    }

    /// Places a row without cell padding (used for free text).
    fn row_no_pad(&mut self, row: &Row) {
        let n = row.line_count();
        let mut start = 0;
        while start < n {
            let avail = ((BOTTOM - self.y) / row.line_h).floor().max(0.0) as usize;
            let remaining = n - start;
            if remaining <= avail {
                self.draw_row_lines_at(row, start, n, 0.0);
                self.y += remaining as f32 * row.line_h;
                break;
            }
            if !self.fresh {
                self.new_page();
                continue;
            }
            let take = avail.max(1);
            self.draw_row_lines_at(row, start, start + take, 0.0);
            start += take;
            self.new_page();
        }
        self.fresh = false;
    }

    /// Places a table row, moving it to the next page when it does not fit and
    /// splitting it only when it is taller than a whole page.
    fn row(&mut self, row: &Row) {
        let n = row.line_count();
        let mut start = 0;
        while start < n {
            let avail = ((BOTTOM - self.y - 2.0 * CELL_PAD) / row.line_h)
                .floor()
                .max(0.0) as usize;
            let remaining = n - start;
            if remaining <= avail {
                self.draw_row_lines(row, start, n);
                self.y += remaining as f32 * row.line_h + 2.0 * CELL_PAD;
                break;
            }
            if !self.fresh {
                self.new_page();
                continue;
            }
            let take = avail.max(1);
            self.draw_row_lines(row, start, start + take);
            start += take;
            self.new_page();
        }
        self.fresh = false;
    }

    fn draw_row_lines(&mut self, row: &Row, from: usize, to: usize) {
        self.draw_row_lines_at(row, from, to, CELL_PAD);
    }

    fn draw_row_lines_at(&mut self, row: &Row, from: usize, to: usize, pad: f32) {
        let count = to.saturating_sub(from);
        let height = count as f32 * row.line_h + 2.0 * pad;
        let top = self.y;
        let left = row.cells.first().map(|c| c.x).unwrap_or(MARGIN);
        let right = row.cells.last().map(|c| c.x + c.width).unwrap_or(MARGIN);
        if let Some(color) = row.background {
            self.ops().push(Op::Rect {
                x: left,
                y: top,
                w: right - left,
                h: height,
                color,
            });
        }
        if row.rule_above {
            self.ops().push(Op::HLine {
                x1: left,
                x2: right,
                y: top,
                color: BLACK,
            });
        }
        let fonts = self.fonts;
        let mut texts = Vec::new();
        for cell in &row.cells {
            for (k, line) in cell.lines.iter().enumerate().skip(from).take(count) {
                if line.text.is_empty() {
                    continue;
                }
                let face = fonts.face(line.bold);
                let inner_x = cell.x + CELL_PAD;
                let x = match cell.align {
                    Align::Left => inner_x,
                    Align::Right => {
                        cell.x + cell.width - CELL_PAD - face.width(&line.text, line.size)
                    }
                };
                let baseline = top + pad + (k - from) as f32 * row.line_h + line.size;
                texts.push(Op::Text {
                    x,
                    y: baseline,
                    size: line.size,
                    bold: line.bold,
                    color: line.color,
                    text: line.text.clone(),
                });
            }
        }
        self.ops().extend(texts);
        if row.rule_below {
            self.ops().push(Op::HLine {
                x1: left,
                x2: right,
                y: top + height,
                color: RULE,
            });
        }
    }

    /// Builds a cell whose text is wrapped to the cell width.
    fn cell(&self, x: f32, width: f32, align: Align, text: &str, style: (f32, bool)) -> Cell {
        let (size, bold) = style;
        let face = self.fonts.face(bold);
        let lines = face
            .wrap(text, size, (width - 2.0 * CELL_PAD).max(1.0))
            .into_iter()
            .map(|text| TextLine {
                text,
                size,
                bold,
                color: BLACK,
            })
            .collect();
        Cell {
            x,
            width,
            align,
            lines,
        }
    }
}

fn document_heading(doc: &InvoicePdf) -> String {
    let title = if doc.title.trim().is_empty() {
        "Facture"
    } else {
        doc.title.trim()
    };
    format!("{} n° {}", title, doc.number.trim())
}

/// Table columns: description, quantity, unit price, VAT rate, total.
const COLS: [(f32, Align); 5] = [
    (230.0, Align::Left),
    (55.0, Align::Right),
    (85.0, Align::Right),
    (50.0, Align::Right),
    (CONTENT_W - 230.0 - 55.0 - 85.0 - 50.0, Align::Right),
];

fn table_row(layout: &Layout<'_>, texts: [&str; 5], style: (f32, bool)) -> Row {
    let mut x = MARGIN;
    let mut cells = Vec::with_capacity(5);
    for ((width, align), text) in COLS.iter().zip(texts) {
        cells.push(layout.cell(x, *width, *align, text, style));
        x += width;
    }
    Row {
        cells,
        line_h: style.0 * 1.3,
        background: None,
        rule_below: true,
        rule_above: false,
    }
}

fn block_cell(layout: &Layout<'_>, x: f32, width: f32, label: &str, lines: &[String]) -> Cell {
    let mut out = vec![TextLine {
        text: label.to_string(),
        size: 8.0,
        bold: true,
        color: GREY_TEXT,
    }];
    for (i, line) in lines.iter().enumerate() {
        let bold = i == 0;
        for text in layout
            .fonts
            .face(bold)
            .wrap(line, 9.5, width - 2.0 * CELL_PAD)
        {
            out.push(TextLine {
                text,
                size: 9.5,
                bold,
                color: BLACK,
            });
        }
    }
    Cell {
        x,
        width,
        align: Align::Left,
        lines: out,
    }
}

fn layout(doc: &InvoicePdf, fonts: &Fonts) -> Vec<Vec<Op>> {
    let heading = document_heading(doc);
    let continuation = format!("{} (suite)", truncate_chars(&heading, 120));
    let mut l = Layout::new(fonts, continuation);

    // Title, number and date.
    l.paragraph(&heading, 18.0, true, BLACK, 4.0);
    l.paragraph(
        &format!("Date d'émission : {}", doc.issue_date.trim()),
        10.0,
        false,
        BLACK,
        16.0,
    );

    // Seller (left) and buyer (right).
    let half = (CONTENT_W - 20.0) / 2.0;
    let parties = Row {
        cells: vec![
            block_cell(&l, MARGIN, half, "VENDEUR", &doc.seller_lines),
            block_cell(&l, MARGIN + half + 20.0, half, "CLIENT", &doc.buyer_lines),
        ],
        line_h: 12.5,
        background: None,
        rule_below: false,
        rule_above: false,
    };
    l.row(&parties);
    l.y += 18.0;

    // Invoice lines.
    let mut header = table_row(
        &l,
        ["Description", "Qté", "PU HT", "TVA", "Total HT"],
        (8.5, true),
    );
    header.background = Some(HEADER_BG);
    header.rule_below = false;
    let first_line_h = doc
        .lines
        .first()
        .map(|line| {
            table_row(
                &l,
                [
                    &line.description,
                    &line.quantity,
                    &line.unit_price_excl_vat,
                    &line.vat_rate,
                    &line.total_excl_vat,
                ],
                (9.0, false),
            )
            .height()
        })
        .unwrap_or(0.0);
    l.keep_together(header.height() + first_line_h);
    l.row(&header);
    l.repeat_header = Some(header);
    for line in &doc.lines {
        let row = table_row(
            &l,
            [
                &line.description,
                &line.quantity,
                &line.unit_price_excl_vat,
                &line.vat_rate,
                &line.total_excl_vat,
            ],
            (9.0, false),
        );
        l.row(&row);
    }
    l.repeat_header = None;
    l.y += 16.0;

    // VAT breakdown, right half of the page.
    let right_x = MARGIN + CONTENT_W - 300.0;
    let vat_cols = [
        (100.0, Align::Left),
        (100.0, Align::Right),
        (100.0, Align::Right),
    ];
    let vat_row = |l: &Layout<'_>, texts: [&str; 3], style: (f32, bool)| {
        let mut x = right_x;
        let mut cells = Vec::with_capacity(3);
        for ((width, align), text) in vat_cols.iter().zip(texts) {
            cells.push(l.cell(x, *width, *align, text, style));
            x += width;
        }
        Row {
            cells,
            line_h: style.0 * 1.3,
            background: None,
            rule_below: true,
            rule_above: false,
        }
    };
    if !doc.vat_lines.is_empty() {
        let mut vat_header = vat_row(&l, ["Taux de TVA", "Base HT", "Montant TVA"], (8.5, true));
        vat_header.background = Some(HEADER_BG);
        vat_header.rule_below = false;
        l.keep_together(vat_header.height() * 3.0);
        l.row(&vat_header);
        l.repeat_header = Some(vat_header);
        for (rate, base, vat) in &doc.vat_lines {
            let row = vat_row(&l, [rate, base, vat], (9.0, false));
            l.row(&row);
        }
        l.repeat_header = None;
        l.y += 14.0;
    }

    // Totals, right aligned; the last one (amount due) in bold.
    if !doc.totals.is_empty() {
        let total_rows = doc.totals.len() as f32 * 16.0;
        l.keep_together(total_rows.min(120.0));
        let last = doc.totals.len() - 1;
        for (i, (label, amount)) in doc.totals.iter().enumerate() {
            let style = if i == last {
                (10.5, true)
            } else {
                (9.5, false)
            };
            let row = Row {
                cells: vec![
                    l.cell(right_x, 180.0, Align::Left, label, style),
                    l.cell(right_x + 180.0, 120.0, Align::Right, amount, style),
                ],
                line_h: style.0 * 1.3,
                background: None,
                rule_below: false,
                rule_above: i == last && last > 0,
            };
            l.row(&row);
        }
        l.y += 18.0;
    }

    // Mentions.
    for mention in &doc.mentions {
        l.paragraph(mention, 8.0, false, GREY_TEXT, 3.0);
    }

    l.pages
}

// ---------------------------------------------------------------------------
// Rendering with krilla
// ---------------------------------------------------------------------------

fn fill(color: Color) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        ..Fill::default()
    }
}

fn draw_op(surface: &mut Surface<'_>, fonts: &Fonts, op: &Op) {
    match op {
        Op::Text {
            x,
            y,
            size,
            bold,
            color,
            text,
        } => {
            let face = fonts.face(*bold);
            let text = face.sanitize(text);
            let glyphs = face.shape(&text);
            if glyphs.is_empty() {
                return;
            }
            surface.set_stroke(None);
            surface.set_fill(Some(fill(*color)));
            surface.draw_glyphs(
                Point::from_xy(*x, *y),
                &glyphs,
                face.font.clone(),
                &text,
                *size,
                false,
            );
        }
        Op::Rect { x, y, w, h, color } => {
            let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) else {
                return;
            };
            let mut pb = PathBuilder::new();
            pb.push_rect(rect);
            if let Some(path) = pb.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(fill(*color)));
                surface.draw_path(&path);
            }
        }
        Op::HLine { x1, x2, y, color } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y);
            pb.line_to(*x2, *y);
            if let Some(path) = pb.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    paint: rgb::Color::new(color.0, color.1, color.2).into(),
                    width: 0.6,
                    ..Stroke::default()
                }));
                surface.draw_path(&path);
                surface.set_stroke(None);
            }
        }
    }
}

fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// UTC calendar date of a Unix timestamp.
fn krilla_date(unix_seconds: u64) -> DateTime {
    let days = (unix_seconds / 86_400) as i64;
    let secs = unix_seconds % 86_400;
    // Civil-from-days conversion (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let year = u16::try_from(year.clamp(1970, 9999)).unwrap_or(1970);
    DateTime::new(year)
        .month(month as u8)
        .day(day as u8)
        .hour((secs / 3_600) as u8)
        .minute((secs % 3_600 / 60) as u8)
        .second((secs % 60) as u8)
        .utc_offset_hour(0)
        .utc_offset_minute(0)
}

// ---------------------------------------------------------------------------
// Factur-X XMP extension
// ---------------------------------------------------------------------------

/// The `fx:` properties required by Factur-X (R-INV-5).
fn factur_x_description() -> String {
    format!(
        "<rdf:Description rdf:about=\"\" xmlns:fx=\"{ns}\">\
         <fx:DocumentType>INVOICE</fx:DocumentType>\
         <fx:DocumentFileName>{file}</fx:DocumentFileName>\
         <fx:Version>1.0</fx:Version>\
         <fx:ConformanceLevel>{level}</fx:ConformanceLevel>\
         </rdf:Description>",
        ns = FACTUR_X_XMP_NAMESPACE,
        file = FACTUR_X_FILE_NAME,
        level = FACTUR_X_CONFORMANCE_LEVEL,
    )
}

/// PDF/A extension schema entry describing the `fx:` properties (R-INV-5).
fn factur_x_extension_schema() -> String {
    let property = |name: &str, description: &str| {
        format!(
            "<rdf:li rdf:parseType=\"Resource\">\
             <pdfaProperty:name>{name}</pdfaProperty:name>\
             <pdfaProperty:valueType>Text</pdfaProperty:valueType>\
             <pdfaProperty:category>external</pdfaProperty:category>\
             <pdfaProperty:description>{description}</pdfaProperty:description>\
             </rdf:li>"
        )
    };
    format!(
        "<rdf:li rdf:parseType=\"Resource\" \
         xmlns:pdfaSchema=\"http://www.aiim.org/pdfa/ns/schema#\" \
         xmlns:pdfaProperty=\"http://www.aiim.org/pdfa/ns/property#\">\
         <pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>\
         <pdfaSchema:namespaceURI>{ns}</pdfaSchema:namespaceURI>\
         <pdfaSchema:prefix>fx</pdfaSchema:prefix>\
         <pdfaSchema:property><rdf:Seq>{p1}{p2}{p3}{p4}</rdf:Seq></pdfaSchema:property>\
         </rdf:li>",
        ns = FACTUR_X_XMP_NAMESPACE,
        p1 = property("DocumentFileName", "The name of the embedded XML document"),
        p2 = property(
            "DocumentType",
            "The type of the hybrid document in capital letters, e.g. INVOICE or ORDER"
        ),
        p3 = property(
            "Version",
            "The actual version of the standard applying to the embedded XML document"
        ),
        p4 = property(
            "ConformanceLevel",
            "The conformance level of the embedded XML document"
        ),
    )
}

/// Inserts the Factur-X description and extension schema into krilla's XMP packet.
fn patch_xmp(packet: &str) -> Result<String, PdfError> {
    const BAG_END: &str = "</rdf:Bag></pdfaExtension:schemas>";
    const RDF_END: &str = "</rdf:RDF>";
    let bag = packet
        .find(BAG_END)
        .ok_or(PdfError::Metadata("no PDF/A extension schema list in XMP"))?;
    let mut out = String::with_capacity(packet.len() + 2_500);
    out.push_str(&packet[..bag]);
    out.push_str(&factur_x_extension_schema());
    let rest = &packet[bag..];
    let rdf = rest
        .find(RDF_END)
        .ok_or(PdfError::Metadata("no rdf:RDF end in XMP"))?;
    out.push_str(&rest[..rdf]);
    out.push_str(&factur_x_description());
    out.push_str(&rest[rdf..]);
    Ok(out)
}

fn find(haystack: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if from > haystack.len() || needle.is_empty() {
        return None;
    }
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || needle.len() > haystack.len() {
        return None;
    }
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && bytes[pos].is_ascii_whitespace() {
        pos += 1;
    }
    pos
}

/// Parses an unsigned decimal integer at `pos`; returns (value, end).
fn parse_uint(bytes: &[u8], pos: usize) -> Option<(usize, usize)> {
    let start = skip_ws(bytes, pos);
    let mut end = start;
    while end < bytes.len() && bytes[end].is_ascii_digit() {
        end += 1;
    }
    if end == start {
        return None;
    }
    let text = std::str::from_utf8(&bytes[start..end]).ok()?;
    Some((text.parse().ok()?, end))
}

/// Object number of the indirect reference following `key` in `dict`.
fn reference_after(dict: &[u8], key: &[u8]) -> Option<usize> {
    let at = find(dict, key, 0)?;
    let (num, end) = parse_uint(dict, at + key.len())?;
    let (_, end) = parse_uint(dict, end)?;
    let end = skip_ws(dict, end);
    (dict.get(end) == Some(&b'R')).then_some(num)
}

/// A classic cross-reference table: where its entries are and what they say.
struct XrefTable {
    /// (object number, byte position of the 10-digit offset field, offset).
    entries: Vec<(usize, usize, usize)>,
}

fn parse_xref(pdf: &[u8], xref_at: usize) -> Option<XrefTable> {
    if !pdf.get(xref_at..)?.starts_with(b"xref") {
        return None;
    }
    let mut pos = xref_at + 4;
    let mut entries = Vec::new();
    loop {
        let probe = skip_ws(pdf, pos);
        if pdf.get(probe..)?.starts_with(b"trailer") {
            break;
        }
        let (first, end) = parse_uint(pdf, pos)?;
        let (count, end) = parse_uint(pdf, end)?;
        let mut entry = skip_ws(pdf, end);
        for i in 0..count {
            let line = pdf.get(entry..entry + 20)?;
            let offset: usize = std::str::from_utf8(&line[..10]).ok()?.parse().ok()?;
            if line[17] == b'n' {
                entries.push((first + i, entry, offset));
            }
            entry += 20;
        }
        pos = entry;
    }
    Some(XrefTable { entries })
}

/// `bytes[from..to]`, or an error instead of a panic.
fn slice(bytes: &[u8], from: usize, to: usize) -> Result<&[u8], PdfError> {
    bytes
        .get(from..to)
        .ok_or(PdfError::Metadata("unexpected PDF layout"))
}

/// Adds the Factur-X XMP properties to the PDF written by krilla (R-INV-5).
///
/// The metadata stream is found through trailer → /Root → /Metadata, its
/// packet is replaced (the stream is not compressed, as written by krilla),
/// its /Length updated, and every cross-reference offset behind it shifted,
/// so the file stays a single, consistent revision.
fn add_factur_x_xmp(pdf: Vec<u8>) -> Result<Vec<u8>, PdfError> {
    let bad = PdfError::Metadata;
    let startxref = rfind(&pdf, b"startxref").ok_or(bad("no startxref"))?;
    let (xref_at, startxref_num_end) =
        parse_uint(&pdf, startxref + 9).ok_or(bad("bad startxref"))?;
    let xref = parse_xref(&pdf, xref_at).ok_or(bad("no classic xref table"))?;
    let trailer_at = find(&pdf, b"trailer", xref_at).ok_or(bad("no trailer"))?;
    let root =
        reference_after(slice(&pdf, trailer_at, startxref)?, b"/Root").ok_or(bad("no /Root"))?;
    let offset_of = |num: usize| {
        xref.entries
            .iter()
            .find(|(n, _, _)| *n == num)
            .map(|(_, _, off)| *off)
    };
    let catalog_at = offset_of(root).ok_or(bad("catalog not in xref"))?;
    let catalog_end = find(&pdf, b"endobj", catalog_at).ok_or(bad("unterminated catalog"))?;
    let meta = reference_after(slice(&pdf, catalog_at, catalog_end)?, b"/Metadata")
        .ok_or(bad("no /Metadata in catalog"))?;
    let meta_at = offset_of(meta).ok_or(bad("metadata not in xref"))?;
    let stream_kw = find(&pdf, b"stream", meta_at).ok_or(bad("metadata is not a stream"))?;
    let dict = slice(&pdf, meta_at, stream_kw)?;
    if find(dict, b"/Filter", 0).is_some() {
        return Err(bad("metadata stream is filtered"));
    }
    let length_key = find(dict, b"/Length", 0).ok_or(bad("no /Length"))? + meta_at;
    let (old_len, length_end) =
        parse_uint(&pdf, length_key + b"/Length".len()).ok_or(bad("bad /Length"))?;
    let mut data_start = stream_kw + b"stream".len();
    if pdf.get(data_start) == Some(&b'\r') {
        data_start += 1;
    }
    if pdf.get(data_start) == Some(&b'\n') {
        data_start += 1;
    }
    let data_end = data_start.checked_add(old_len).ok_or(bad("bad /Length"))?;
    let packet = pdf
        .get(data_start..data_end)
        .ok_or(bad("metadata stream too short"))?;
    let packet = std::str::from_utf8(packet).map_err(|_| bad("metadata is not UTF-8"))?;
    if !packet.starts_with("<?xpacket begin=") {
        return Err(bad("metadata is not an XMP packet"));
    }
    let new_packet = patch_xmp(packet)?;

    // Rebuild: [..length value] new length [..data] new packet [rest].
    let new_length = format!(" {}", new_packet.len());
    let mut out = Vec::with_capacity(pdf.len() + new_packet.len() - old_len + 8);
    out.extend_from_slice(slice(&pdf, 0, length_key + b"/Length".len())?);
    out.extend_from_slice(new_length.as_bytes());
    out.extend_from_slice(slice(&pdf, length_end, data_start)?);
    out.extend_from_slice(new_packet.as_bytes());
    let tail_at = out.len();
    out.extend_from_slice(slice(&pdf, data_end, pdf.len())?);
    // Every original byte at or after `length_end` moved by `delta`.
    let delta_len = |old: usize| old + tail_at - data_end;
    let shifted = |old: usize| {
        if old >= data_end {
            delta_len(old)
        } else if old >= length_end {
            old + (length_key + b"/Length".len() + new_length.len()) - length_end
        } else {
            old
        }
    };

    for &(_, field_pos, offset) in &xref.entries {
        let new_offset = shifted(offset);
        let field = format!("{new_offset:010}");
        if field.len() != 10 {
            return Err(bad("offset too large"));
        }
        let at = shifted(field_pos);
        out.get_mut(at..at + 10)
            .ok_or(bad("xref out of range"))?
            .copy_from_slice(field.as_bytes());
    }

    // startxref value: its digits may change length, it is at the end.
    let num_start = skip_ws(&pdf, startxref + 9);
    let (a, b) = (shifted(num_start), shifted(startxref_num_end));
    let mut fixed = Vec::with_capacity(out.len() + 4);
    fixed.extend_from_slice(slice(&out, 0, a)?);
    fixed.extend_from_slice(shifted(xref_at).to_string().as_bytes());
    fixed.extend_from_slice(slice(&out, b, out.len())?);
    Ok(fixed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_converted_in_utc() {
        // 2024-02-29 12:34:56 UTC
        let dbg = format!("{:?}", krilla_date(1_709_210_096));
        for part in [
            "2024", "Some(2)", "Some(29)", "Some(12)", "Some(34)", "Some(56)",
        ] {
            assert!(dbg.contains(part), "{dbg}");
        }
        let epoch = format!("{:?}", krilla_date(0));
        assert!(
            epoch.contains("1970") && epoch.contains("Some(1)"),
            "{epoch}"
        );
    }

    #[test]
    fn wrap_never_loses_text() {
        let fonts = Fonts::load().expect("fonts");
        let text = "Prestation très longue avec œuvre, façade et à-côtés \
                    Supercalifragilisticexpialidociousmotsanscoupure€€€€€€€€€€";
        let lines = fonts.regular.wrap(text, 9.0, 60.0);
        assert!(lines.len() > 3);
        let joined: String = lines.concat().chars().filter(|c| *c != ' ').collect();
        let expected: String = text.chars().filter(|c| *c != ' ').collect();
        assert_eq!(joined, expected);
        for line in &lines {
            let single_char = line.chars().count() == 1;
            assert!(single_char || fonts.regular.width(line, 9.0) <= 60.0 + 0.01);
        }
    }

    #[test]
    fn unknown_characters_are_replaced() {
        let fonts = Fonts::load().expect("fonts");
        // U+E000 private use: not in DejaVu Sans.
        assert_eq!(fonts.regular.sanitize("a\u{E000}\tb"), "a? b");
    }

    #[test]
    fn xmp_patch_rejects_unexpected_input_without_panicking() {
        assert!(add_factur_x_xmp(b"garbage".to_vec()).is_err());
        assert!(add_factur_x_xmp(b"startxref 999999".to_vec()).is_err());
        assert!(add_factur_x_xmp(b"xref\n0 1\ntrailer startxref 0".to_vec()).is_err());
        assert!(patch_xmp("<?xpacket begin=\"\"?><x:xmpmeta/>").is_err());
    }
}
