//! Names the watched workload chose, as text.
//!
//! **Names** ([`name_from_bytes`]): the kernel and /proc give file names,
//! executable paths and arguments as bytes, which need not be UTF-8. They
//! become `String`s by one injective, reversible rule, so that two names
//! are the same text only if they are the same bytes (`a\xff` and `a\xfe`
//! are two files, not one lossy `a\u{fffd}`):
//!
//! - valid UTF-8 is kept as it is;
//! - each byte of an invalid sequence (always `0x80`–`0xff`) is written
//!   `\xNN`, two lower-case hex digits;
//! - a backslash that would otherwise be read as such an escape — one
//!   followed by `x` and the hex digits of `80`–`ff` or `5c` — is itself
//!   written `\x5c`.
//!
//! Every other backslash is kept, so ordinary names (`C:\dir`, `a\\b`,
//! systemd's `dev-disk-by\x2duuid`) are the same text as they always were.
//! Reading back ([`name_to_bytes`]) turns `\x5c` and `\x80`–`\xff` (hex
//! digits in either case) into their byte and keeps everything else, so any
//! text is a name; one a person wrote (`/tmp/a\xFF`) is put in the sensors'
//! spelling by [`canonical_name`]. No escape stands for `/`, NUL or any
//! ASCII byte but the backslash, so reading a name never makes a separator.
//!
//! **Display** ([`escape`]): text that leaves the daemon for people (signal
//! overviews, notification messages, terminal output) carries those names.
//! A newline in a file name must not forge a line of an e-mail, an escape
//! sequence must not drive a terminal, a bidi override must not reorder
//! what a reader sees. Display escaping keeps a name's own escapes and
//! writes a C1 control character as its UTF-8 bytes (`\xc2\x85`), so in
//! what people see `\x5c` and `\x80`–`\xff` are always bytes of the name,
//! as [`name_to_bytes`] reads them.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The byte an escape stands for, if `rest` (what follows a backslash) is
/// one: `x` and two hex digits of `0x80`–`0xff` or of the backslash.
fn escaped_byte(rest: &[u8]) -> Option<u8> {
    let [b'x', hi, lo, ..] = *rest else {
        return None;
    };
    let digit = |c: u8| char::from(c).to_digit(16).and_then(|d| u8::try_from(d).ok());
    let byte = (digit(hi)? << 4) | digit(lo)?;
    (byte >= 0x80 || byte == b'\\').then_some(byte)
}

/// Does this text hold an escape (a backslash [`name_to_bytes`] reads)?
fn has_escape(b: &[u8]) -> bool {
    b.iter().enumerate().any(|(i, &c)| c == b'\\' && escaped_byte(&b[i + 1..]).is_some())
}

/// Bytes from the kernel or /proc as a name (see the module documentation).
/// Valid UTF-8 without an escape-like backslash is borrowed unchanged.
pub fn name_from_bytes(bytes: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(bytes) {
        if !has_escape(bytes) {
            return Cow::Borrowed(s);
        }
    }
    let mut out = String::with_capacity(bytes.len() + 8);
    for chunk in bytes.utf8_chunks() {
        // What follows an escape-like backslash (`xNN`) is ASCII: it is in
        // the same valid chunk.
        let valid = chunk.valid();
        let mut start = 0;
        for (i, _) in valid.match_indices('\\') {
            if escaped_byte(&valid.as_bytes()[i + 1..]).is_some() {
                out.push_str(&valid[start..i]);
                out.push_str("\\x5c");
                start = i + 1;
            }
        }
        out.push_str(&valid[start..]);
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    Cow::Owned(out)
}

/// The bytes a name stands for: `\x5c` and `\x80`–`\xff` (hex digits in
/// either case) are their byte, everything else is itself. The inverse of
/// [`name_from_bytes`], defined for every text.
pub fn name_to_bytes(name: &str) -> Cow<'_, [u8]> {
    let b = name.as_bytes();
    if !has_escape(b) {
        return Cow::Borrowed(b);
    }
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match escaped_byte(&b[i + 1..]).filter(|_| c == b'\\') {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    Cow::Owned(out)
}

/// A name cut into its escapes (`true`: `\x5c`, `\xNN`, each alone) and the
/// text between them (`false`), in order; empty text is left out.
pub fn name_pieces(name: &str) -> impl Iterator<Item = (&str, bool)> {
    let b = name.as_bytes();
    let mut start = 0;
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < b.len() {
            if b[i] == b'\\' && escaped_byte(&b[i + 1..]).is_some() {
                if start < i {
                    let text = &name[start..i];
                    start = i;
                    return Some((text, false));
                }
                i += 4;
                start = i;
                return Some((&name[i - 4..i], true));
            }
            i += 1;
        }
        (start < b.len()).then(|| {
            let text = &name[start..];
            start = b.len();
            (text, false)
        })
    })
}

/// A name a person wrote, in the spelling the sensors give the same bytes
/// (`/tmp/a\xFF` → `/tmp/a\xff`, `\xc3\xa9` → `é`). Text without an escape
/// is already in it and is returned as it is.
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    match name_to_bytes(name) {
        Cow::Borrowed(_) => Cow::Borrowed(name),
        Cow::Owned(bytes) => Cow::Owned(name_from_bytes(&bytes).into_owned()),
    }
}

/// Characters shown escaped: every control character (C0, DEL, C1), the
/// Unicode line and paragraph separators, and the bidirectional formatting
/// characters.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with control and formatting characters written as `\n`, `\r`,
/// `\t`, `\xNN` (C0 and DEL), their UTF-8 bytes `\xc2\xNN` (C1: so that
/// `\x80`–`\xff` is only ever a name's byte) or `\u{NNNN}`. Everything else
/// (backslashes and a name's escapes included) is kept, so escaping twice
/// changes nothing more than escaping once.
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
            c if needs_escape(c) && c.is_ascii() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if needs_escape(c) && u32::from(c) < 0x100 => {
                for b in c.encode_utf8(&mut [0; 4]).bytes() {
                    let _ = write!(out, "\\x{b:02x}");
                }
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
        assert_eq!(escape("\x1b[2J\x07\x7f\u{85}"), "\\x1b[2J\\x07\\x7f\\xc2\\x85");
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

    #[test]
    fn names_keep_every_byte() {
        assert_eq!(name_from_bytes(b"/usr/bin/env"), "/usr/bin/env");
        assert!(matches!(name_from_bytes(b"/usr/bin/env"), Cow::Borrowed(_)));
        assert_eq!(name_from_bytes(b"/tmp/a\xff"), "/tmp/a\\xff");
        assert_eq!(name_from_bytes(b"/tmp/a\xfe"), "/tmp/a\\xfe");
        assert_eq!(name_from_bytes("/tmp/été".as_bytes()), "/tmp/été");
        // Latin-1 é, and a sequence cut short: each byte.
        assert_eq!(name_from_bytes(b"/tmp/\xe9t\xe9"), "/tmp/\\xe9t\\xe9");
        assert_eq!(name_from_bytes(b"/tmp/\xe2\x82"), "/tmp/\\xe2\\x82");
        // The 4-character name `a\xff` is not the 2-byte name `a<ff>`.
        assert_eq!(name_from_bytes(b"/tmp/a\\xff"), "/tmp/a\\x5cxff");
        assert_eq!(name_from_bytes(b"/tmp/a\\x5c"), "/tmp/a\\x5cx5c");
        assert_eq!(name_from_bytes(b"/tmp/a\\\xff"), "/tmp/a\\\\xff");
        assert_eq!(name_to_bytes("/tmp/a\\\\xff"), &b"/tmp/a\\\xff"[..]);
    }

    #[test]
    fn ordinary_backslashes_stay_as_they_were() {
        for s in ["C:\\dir\\x", "a\\\\b", "dev-disk-by\\x2duuid", "\\x7f\\x00\\x2f", "end\\", "\\xg0", "\\x8"] {
            assert_eq!(name_from_bytes(s.as_bytes()), s);
            assert_eq!(name_to_bytes(s), s.as_bytes());
            assert!(matches!(canonical_name(s), Cow::Borrowed(_)), "{s}");
        }
        // No escape makes a separator or a NUL.
        assert_eq!(name_to_bytes("/a\\x2fb\\x00"), &b"/a\\x2fb\\x00"[..]);
    }

    #[test]
    fn names_written_by_people_are_put_in_the_sensors_spelling() {
        assert_eq!(canonical_name("/tmp/a\\xFF"), "/tmp/a\\xff");
        assert_eq!(canonical_name("/tmp/\\xc3\\xa9t\\xC3\\xA9"), "/tmp/été");
        assert_eq!(canonical_name("/tmp/a\\x5Cxff"), "/tmp/a\\x5cxff");
        assert_eq!(canonical_name("/tmp/a\\x5cx41"), "/tmp/a\\x41");
        assert_eq!(canonical_name("/etc/passwd"), "/etc/passwd");
    }

    #[test]
    fn names_cut_at_their_escapes() {
        let pieces = |s| name_pieces(s).collect::<Vec<_>>();
        assert_eq!(pieces("/etc/passwd"), [("/etc/passwd", false)]);
        assert_eq!(pieces(""), []);
        assert_eq!(
            pieces("a\\xff\\xfe1\\x2d\\x5c"),
            [("a", false), ("\\xff", true), ("\\xfe", true), ("1\\x2d", false), ("\\x5c", true)]
        );
    }

    #[test]
    fn display_shows_names_unambiguously() {
        // A raw byte 0x85 and the C1 character U+0085 (bytes c2 85).
        let raw = escape(&name_from_bytes(b"a\x85")).into_owned();
        let c1 = escape(&name_from_bytes("a\u{85}".as_bytes())).into_owned();
        assert_eq!(raw, "a\\x85");
        assert_eq!(c1, "a\\xc2\\x85");
        assert_eq!(name_to_bytes(&c1), "a\u{85}".as_bytes());
        let shown = |b: &[u8]| escape(&name_from_bytes(b)).into_owned();
        assert_eq!(shown(b"a\xff"), "a\\xff");
        assert_eq!(shown(b"a\\xff"), "a\\x5cxff");
        assert_ne!(shown(b"a\xff"), shown(b"a\xfe"));
    }

    /// Byte strings, mostly near-UTF-8 with backslashes and `x`s.
    fn name_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                Just(b'\\'),
                Just(b'x'),
                Just(b'5'),
                Just(b'c'),
                Just(b'f'),
                Just(b'8'),
                any::<u8>(),
                Just(0xc2),
                Just(0x85),
            ],
            0..24,
        )
    }

    proptest! {
        #[test]
        fn names_round_trip(b in name_bytes()) {
            let name = name_from_bytes(&b);
            prop_assert_eq!(name_to_bytes(&name).into_owned(), b.clone());
            prop_assert_eq!(canonical_name(&name).into_owned(), name.clone().into_owned());
            // Escaping for display leaves a name's escapes alone (and
            // writes C1 controls as their bytes).
            prop_assume!(!name.chars().any(|c| needs_escape(c) && u32::from(c) >= 0x100));
            let shown = escape(&name);
            prop_assert_eq!(name_to_bytes(&shown).iter().filter(|&&c| c >= 0x80).count(),
                b.iter().filter(|&&c| c >= 0x80).count());
        }

        #[test]
        fn pieces_make_the_name(b in name_bytes()) {
            let name = name_from_bytes(&b);
            let joined: String = name_pieces(&name).map(|(p, _)| p).collect();
            prop_assert_eq!(joined, name.as_ref());
        }

        #[test]
        fn different_bytes_are_different_names(a in name_bytes(), b in name_bytes()) {
            prop_assume!(a != b);
            prop_assert_ne!(name_from_bytes(&a), name_from_bytes(&b));
        }

        #[test]
        fn any_text_reads_as_a_name_and_canonical_is_stable(s in any::<String>()) {
            let c = canonical_name(&s).into_owned();
            prop_assert_eq!(name_to_bytes(&c), name_to_bytes(&s));
            prop_assert_eq!(canonical_name(&c), c.as_str());
        }

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
