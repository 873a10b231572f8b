//! Text that leaves the daemon for people (signal overviews, notification
//! messages, terminal output) carries names the watched workload chose:
//! file names, process arguments, DNS names. A newline in a file name must
//! not forge a line of an e-mail, an escape sequence must not drive a
//! terminal, a bidi override must not reorder what a reader sees.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters shown escaped: every control character (C0, DEL, C1), the
/// Unicode line and paragraph separators, and the bidirectional formatting
/// characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control and formatting characters written as `\n`, `\r`,
/// `\t`, `\xNN` or `\u{NNNN}`. Everything else (backslashes included) is
/// kept, so escaping twice changes nothing more than escaping once.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// At most `max` bytes of `s` (cut at a character boundary), escaped, with
/// what was left out said: for echoing input back in error messages.
pub fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return escape(s).into_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…({} bytes in all)", escape(&s[..end]), s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn control_and_bidi_characters_are_shown_not_obeyed() {
        assert_eq!(escape("/etc/passwd"), "/etc/passwd");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\nSubject: forged\r\n"), "a\\nSubject: forged\\r\\n");
        assert_eq!(escape("\x1b[2J\x07\x7f\u{85}"), "\\x1b[2J\\x07\\x7f\\x85");
        assert_eq!(escape("invoice\u{202e}fdp.exe"), "invoice\\u{202e}fdp.exe");
        assert_eq!(escape("line\u{2028}sep"), "line\\u{2028}sep");
        assert_eq!(escape("tab\there"), "tab\\there");
        assert_eq!(escape("ünïcödé ok"), "ünïcödé ok");
    }

    #[test]
    fn echoed_input_is_bounded() {
        assert_eq!(bounded("short", 10), "short");
        let long = "é".repeat(500_000);
        let b = bounded(&long, 256);
        assert!(b.len() < 300, "{}", b.len());
        assert!(b.ends_with("…(1000000 bytes in all)"), "{b}");
        assert_eq!(bounded("a\nb", 10), "a\\nb");
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_line_breaks_and_escaping_is_idempotent(s in any::<String>()) {
            let once = escape(&s).into_owned();
            prop_assert!(!once.chars().any(needs_escape), "{once:?}");
            prop_assert_eq!(escape(&once).into_owned(), once.clone());
            // Nothing but the escaped characters changes.
            let plain: String = s.chars().filter(|c| !needs_escape(*c)).collect();
            let kept: String = once.chars().filter(|c| !needs_escape(*c)).collect();
            prop_assert!(kept.len() >= plain.len());
        }

        #[test]
        fn bounded_stays_bounded(s in any::<String>(), max in 0usize..64) {
            let b = bounded(&s, max);
            // Escaping at most quadruples a byte (\xNN for 1) or grows 3 bytes to 8.
            prop_assert!(b.len() <= max * 4 + 40, "{} > {}", b.len(), max * 4 + 40);
            prop_assert!(!b.chars().any(needs_escape));
        }
    }
}
