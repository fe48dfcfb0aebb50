//! Untrusted text (provider answers, rows other systems insert, CSV cells) on its way in and
//! out: cleaned and bounded before it is stored, escaped before it reaches a terminal, and
//! neutralised before a spreadsheet can run it as a formula.

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::domain::rules::is_invisible;

/// Longest provider text kept in a column (order id, merchant id, error description…); the
/// raw body keeps the whole answer.
pub const PROVIDER_TEXT_MAX_CHARS: usize = 1024;

/// Characters of untrusted text quoted in a message.
const EXCERPT_CHARS: usize = 64;

/// Control and invisible characters (see [`is_invisible`]) written as `\u{1b}`-style escapes,
/// so that no such character is stored or printed: NUL (which PostgreSQL text cannot hold),
/// terminal escape sequences, carriage returns, direction overrides.
pub fn escape_invisible(raw: &str) -> Cow<'_, str> {
    if !raw.chars().any(is_invisible) {
        return Cow::Borrowed(raw);
    }
    let mut out = String::with_capacity(raw.len() + 8);
    for c in raw.chars() {
        if is_invisible(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A message for a terminal, line by line: everything [`escape_invisible`] escapes except the
/// line breaks, so a value quoted in an error (an argument, a name, a file's cell) cannot move
/// the cursor, retitle the window or hide text.
pub fn for_terminal(message: &str) -> String {
    message
        .split('\n')
        .map(escape_invisible)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Provider text as it is stored: invisible characters escaped, and cut at `max_chars`
/// characters with a trailing `…` when longer.
pub fn clean(raw: &str, max_chars: usize) -> String {
    let escaped = escape_invisible(raw);
    match escaped.char_indices().nth(max_chars) {
        None => escaped.into_owned(),
        Some((cut, _)) => {
            let mut short = escaped[..cut].to_owned();
            short.push('…');
            short
        }
    }
}

/// A short, quoted excerpt of untrusted text for an error message: at most 64 characters,
/// invisible characters escaped.
pub fn excerpt(raw: &str) -> String {
    format!("\"{}\"", clean(raw, EXCERPT_CHARS))
}

/// Outside text for a chat message, in any format: `<`, `>` and `@` become look-alikes
/// (`‹`, `›`, `＠`), so no `<!channel>`, `<@U123>`, `@here` or `@everyone` in a payment id or
/// a flag's value can notify anyone, in Slack, Mattermost, Rocket.Chat or Discord.
pub fn without_mentions(raw: &str) -> Cow<'_, str> {
    if !raw.contains(['<', '>', '@']) {
        return Cow::Borrowed(raw);
    }
    Cow::Owned(
        raw.chars()
            .map(|c| match c {
                '<' => '‹',
                '>' => '›',
                '@' => '＠',
                c => c,
            })
            .collect(),
    )
}

/// Characters that make a spreadsheet run a cell as a formula when it starts with one.
const FORMULA_STARTS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// A text cell for a spreadsheet. A cell starting with `=`, `+`, `-`, `@`, a tab or a carriage
/// return is run as a formula by Excel, LibreOffice and Google Sheets; as OWASP's CSV
/// injection guidance recommends, such a cell gets a leading `'`, which the spreadsheet shows
/// as text and does not run. A plain number (`-7781`, `-12.50`) is left alone: it runs as
/// nothing but itself, and an order id written `'-7781` would no longer match the merchant's
/// books.
pub fn for_spreadsheet(cell: &str) -> Cow<'_, str> {
    if cell.starts_with(FORMULA_STARTS) && !is_plain_number(cell) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// `-7781`, `-12.50`: an optional minus, digits, and at most one dot between digits.
pub(crate) fn is_plain_number(cell: &str) -> bool {
    let digits = cell.strip_prefix('-').unwrap_or(cell);
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, "1"));
    let all_digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    all_digits(whole) && all_digits(fraction)
}

/// A cell as [`for_spreadsheet`] wrote it, read back: the `'` it added is taken off.
pub fn from_spreadsheet(cell: &str) -> Cow<'_, str> {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(FORMULA_STARTS) => Cow::Borrowed(rest),
        _ => Cow::Borrowed(cell),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invisible_characters_are_escaped_and_the_rest_kept() {
        assert_eq!(escape_invisible("Счет 1001"), "Счет 1001");
        assert!(matches!(escape_invisible("plain"), Cow::Borrowed(_)));
        assert_eq!(escape_invisible("A\u{0}1"), "A\\u{0}1");
        assert_eq!(
            escape_invisible("\u{1b}[2J\u{1b}]0;pwned\u{7}"),
            "\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"
        );
        assert_eq!(escape_invisible("a\u{202e}b\rc"), "a\\u{202e}b\\u{d}c");
    }

    #[test]
    fn clean_text_is_bounded() {
        assert_eq!(clean("short", 10), "short");
        assert_eq!(clean(&"x".repeat(20), 10), format!("{}…", "x".repeat(10)));
        assert_eq!(clean(&"й".repeat(11), 10).chars().count(), 11);
        let huge = "\u{0}".repeat(500_000);
        assert!(clean(&huge, PROVIDER_TEXT_MAX_CHARS).len() < 4 * PROVIDER_TEXT_MAX_CHARS);
        assert_eq!(excerpt("ab"), "\"ab\"");
    }

    #[test]
    fn chat_mentions_are_neutralised() {
        for (raw, quiet) in [
            ("<!channel>", "‹!channel›"),
            ("<!here|here>", "‹!here|here›"),
            ("<@U024BE7LH>", "‹＠U024BE7LH›"),
            ("@everyone", "＠everyone"),
            ("pay @here now", "pay ＠here now"),
        ] {
            assert_eq!(without_mentions(raw), quiet);
        }
        assert!(matches!(without_mentions("1001"), Cow::Borrowed(_)));
    }

    #[test]
    fn formula_cells_are_neutralised() {
        for formula in [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2+3",
            "@SUM(A1)",
            "\tx",
            "\rx",
        ] {
            assert_eq!(for_spreadsheet(formula), format!("'{formula}"));
        }
        for plain in ["1001", "A-1", "success", "", "a=b", "-7781", "-12.50"] {
            assert_eq!(for_spreadsheet(plain), plain);
        }
        for not_plain in ["-", "-1-2", "-1.", "-.5", "-1.2.3", "-1e3"] {
            assert_eq!(for_spreadsheet(not_plain), format!("'{not_plain}"));
        }
        for cell in ["=1+2", "-2+3", "@x", "1001", "'quoted"] {
            assert_eq!(from_spreadsheet(&for_spreadsheet(cell)), cell);
        }
    }
}
