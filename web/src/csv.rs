//! CSV exports (RFC 4180): comma-separated, CRLF line ends, a field quoted when it holds a
//! comma, a semicolon, a quote or a line break, quotes doubled inside. A cell a spreadsheet
//! would run as a formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return,
//! after any spaces) gets a leading `'` so that it is shown as text: names and places come
//! from public forms. Excel in French opens a `.csv` splitting on `;`, not `,`: each part of
//! a cell after a `;` is neutralised the same way, for a reader that splits there anyway.
//! The file starts with a UTF-8 byte order mark, so that spreadsheets in French show
//! accents right.

/// What a spreadsheet takes for the start of a formula.
const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// One cell, neutralised and quoted as needed.
pub fn cell(raw: &str) -> String {
    let text = raw
        .split(';')
        .map(|part| {
            if part.trim_start_matches(' ').starts_with(FORMULA_START) {
                format!("'{part}")
            } else {
                part.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(";");
    if text.contains([',', ';', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// A whole file: the header line, then one line per row.
pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut out = String::from("\u{feff}");
    for row in std::iter::once(header).chain(rows.iter().map(Vec::as_slice)) {
        let line: Vec<String> = row.iter().map(|c| cell(c)).collect();
        out.push_str(&line.join(","));
        out.push_str("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        assert_eq!(cell("EHPAD Les Tilleuls"), "EHPAD Les Tilleuls");
        assert_eq!(cell("12, rue des Lilas"), "\"12, rue des Lilas\"");
        assert_eq!(cell("le \"grand\" hall"), "\"le \"\"grand\"\" hall\"");
        assert_eq!(cell("ligne 1\nligne 2"), "\"ligne 1\nligne 2\"");
    }

    #[test]
    fn formulas_are_shown_as_text() {
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("+33 6 12"), "'+33 6 12");
        assert_eq!(cell("-2"), "'-2");
        assert_eq!(cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(cell("\tx"), "'\tx");
        assert_eq!(cell("42"), "42");
        assert_eq!(cell("  =1+1"), "'  =1+1");
    }

    #[test]
    fn a_semicolon_cannot_start_a_formula_for_excel_in_french() {
        // Quoted, so that a reader splitting on `;` and honouring quotes keeps one cell...
        assert_eq!(cell("EHPAD; aile B"), "\"EHPAD; aile B\"");
        // ...and each part neutralised for one that splits there anyway.
        assert_eq!(
            cell("Les Tilleuls;=HYPERLINK(\"http://x\")"),
            "\"Les Tilleuls;'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("a;+33 6;b; @SUM(A1)"), "\"a;'+33 6;b;' @SUM(A1)\"");
        assert_eq!(cell(";-2"), "\";'-2\"");
        assert_eq!(cell("=x;=y"), "\"'=x;'=y\"");
    }

    #[test]
    fn a_table_has_crlf_lines_after_a_byte_order_mark() {
        let t = table(&["a".into(), "b".into()], &[vec!["1".into(), "x,y".into()]]);
        assert_eq!(t, "\u{feff}a,b\r\n1,\"x,y\"\r\n");
    }
}
