//! CSV exports (RFC 4180): comma-separated, CRLF line ends, a field quoted when it holds a
//! comma, a quote or a line break, quotes doubled inside. A cell a spreadsheet would run as a
//! formula (starting with `=`, `+`, `-`, `@`, a tab or a carriage return) gets a leading `'`
//! so that it is shown as text: names and places come from public forms. The file starts
//! with a UTF-8 byte order mark, so that spreadsheets in French show accents right.

/// One cell, neutralised and quoted as needed.
pub fn cell(raw: &str) -> String {
    let text = if raw.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{raw}")
    } else {
        raw.to_string()
    };
    if text.contains([',', '"', '\r', '\n']) {
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
    }

    #[test]
    fn a_table_has_crlf_lines_after_a_byte_order_mark() {
        let t = table(&["a".into(), "b".into()], &[vec!["1".into(), "x,y".into()]]);
        assert_eq!(t, "\u{feff}a,b\r\n1,\"x,y\"\r\n");
    }
}
