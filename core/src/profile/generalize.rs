//! Path generalization: turn concrete file paths into patterns so that
//! per-run names (pids, mktemp names, dates, ids) do not look new.
//!
//! Rules (applied per path segment; a wildcard never spans a `/`):
//! 1. `/proc/<pid>` and `/proc/<pid>/task/<tid>` → `/proc/{pid}`, `{tid}`.
//! 2. Inside a segment, UUIDs → `{uuid}`; dates `YYYY-MM-DD` / `YYYYMMDD`
//!    (years 1900–2099) → `{date}`.
//! 3. Then every alphanumeric token (split at anything else):
//!    - 3 or more digits → `{num}` (1–2 digits stay: `rc3.d`, `libc.so.6`);
//!    - 8 or more hex characters with digits and letters → `{hex}`;
//!    - 6 or more characters with at least 3 changes between lower case,
//!      upper case and digits (`tmp.aB3dE9fGh1`) → `{rand}`.
//!
//!    Plain words never change, so a new file name or directory is new.
//! 4. mktemp/tempfile names: a segment `tmp` or `tmp.` followed by 6 or more
//!    of `[A-Za-z0-9_]` → `tmp{rand}` / `tmp.{rand}` (their random part may
//!    look like a word, so rule 3 alone would miss some).
//! 5. Literal braces are doubled first, so a file named `{num}` cannot
//!    match the pattern of `123`.
//!
//!    A name's escaped bytes (`\xff`, `\x5c`: [`crate::text`]) are bytes,
//!    not letters or digits: rules 2 and 3 apply to the text between them,
//!    and an escape is kept as it is.
//!
//! 6. Many siblings of one shape (in a profile, see [`sibling_pattern`]):
//!    once a process node has opened [`SIBLINGS`] distinct files in one
//!    directory named `PREFIX-…​.EXT` (same alphabetic prefix of 2+ letters
//!    before `-`, `_` or `.`, same extension), any such name there matches
//!    `PREFIX-{*}.EXT`. Other names in that directory stay exact.
//!
//! Executables are never generalized: they are matched exactly.

use std::sync::OnceLock;

use regex::Regex;

fn uuid_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
            .unwrap_or_else(|e| panic!("static regex: {e}"))
    })
}

fn date_re() -> &'static Regex {
    static R: OnceLock<Regex> = OnceLock::new();
    R.get_or_init(|| {
        Regex::new(r"(?:^|[^0-9])((?:19|20)[0-9]{2}-?(?:0[1-9]|1[0-2])-?(?:0[1-9]|[12][0-9]|3[01]))(?:$|[^0-9])")
            .unwrap_or_else(|e| panic!("static regex: {e}"))
    })
}

/// Generalize an absolute path into a pattern.
pub fn path_pattern(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let segments: Vec<&str> = path.split('/').collect();
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        let in_proc = i >= 2 && segments.get(1) == Some(&"proc");
        if in_proc && i == 2 && is_digits(seg) {
            out.push_str("{pid}");
        } else if in_proc && i == 4 && segments.get(3) == Some(&"task") && is_digits(seg) {
            out.push_str("{tid}");
        } else {
            out.push_str(&segment_pattern(seg));
        }
    }
    out
}

fn is_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// Generalize one path segment (no `/` inside).
pub fn segment_pattern(seg: &str) -> String {
    if let Some(rest) = seg.strip_prefix("tmp") {
        let (dot, random) = rest.strip_prefix('.').map_or(("", rest), |r| (".", r));
        if random.len() >= 6 && random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return format!("tmp{dot}{{rand}}");
        }
    }
    if seg.contains('\\') {
        return crate::text::name_pieces(seg)
            .map(|(piece, escape)| if escape { piece.to_owned() } else { text_pattern(piece) })
            .collect();
    }
    text_pattern(seg)
}

/// Rules 2, 3 and 5 on text without escapes.
fn text_pattern(seg: &str) -> String {
    let escaped = seg.replace('{', "{{").replace('}', "}}");
    // Every rule below needs a digit or an upper-case letter.
    let digits = seg.bytes().filter(u8::is_ascii_digit).count();
    if digits == 0 && !seg.bytes().any(|b| b.is_ascii_uppercase()) {
        return escaped;
    }
    let mut s = if seg.len() >= 36 && seg.contains('-') {
        uuid_re().replace_all(&escaped, "{uuid}").into_owned()
    } else {
        escaped
    };
    if digits >= 8 {
        // Dates: replace the captured group only (the regex consumes a neighbour).
        while let Some(m) = date_re().captures(&s).and_then(|c| c.get(1)) {
            s.replace_range(m.range(), "{date}");
        }
    }
    generalize_tokens(&s)
}

/// Apply [`token_pattern`] to every maximal run of ASCII alphanumerics.
fn generalize_tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut start = None;
    for (i, c) in s.char_indices().chain(std::iter::once((s.len(), '/'))) {
        match (c.is_ascii_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(st)) => {
                let t = &s[st..i];
                out.push_str(token_pattern(t).unwrap_or(t));
                start = None;
                if i < s.len() {
                    out.push(c);
                }
            }
            (false, None) if i < s.len() => out.push(c),
            _ => {}
        }
    }
    out
}

fn token_pattern(t: &str) -> Option<&'static str> {
    // Placeholders already inserted are plain words: left alone below.
    let digits = t.bytes().filter(u8::is_ascii_digit).count();
    if digits == t.len() {
        return (t.len() >= 3).then_some("{num}");
    }
    let hex = t.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex && t.len() >= 8 && digits > 0 {
        return Some("{hex}");
    }
    if t.len() >= 6 && class_changes(t) >= 3 {
        return Some("{rand}");
    }
    None
}

fn class_changes(t: &str) -> usize {
    let class = |b: u8| match b {
        b'a'..=b'z' => 0,
        b'A'..=b'Z' => 1,
        _ => 2,
    };
    t.as_bytes().windows(2).filter(|w| class(w[0]) != class(w[1])).count()
}

/// Siblings of one shape needed before they collapse into a pattern.
pub const SIBLINGS: u32 = 16;

/// The collapsed pattern a file pattern would belong to (rule 6), if its
/// name has a shape: `dir/report-2x.csv` → `dir/report-{*}.csv`.
pub fn sibling_pattern(pattern: &str) -> Option<String> {
    let (dir, name) = pattern.rsplit_once('/')?;
    let sep = name.find(['-', '_', '.'])?;
    let (prefix, rest) = name.split_at(sep);
    if prefix.len() < 2 || !prefix.bytes().all(|b| b.is_ascii_alphabetic()) || rest.len() < 2 {
        return None;
    }
    let (sep_char, rest) = rest.split_at(1);
    let ext = match rest.rsplit_once('.') {
        Some((middle, ext)) if !middle.is_empty() && !ext.is_empty() => format!(".{ext}"),
        Some(_) => return None,
        None => String::new(),
    };
    if ext.contains('/') || rest.contains("{*}") {
        return None;
    }
    Some(format!("{dir}/{prefix}{sep_char}{{*}}{ext}"))
}

/// The placeholders [`path_pattern`] writes (rules 1–4).
pub const PLACEHOLDERS: [&str; 7] = ["{pid}", "{tid}", "{uuid}", "{date}", "{num}", "{hex}", "{rand}"];

/// Why a text is not a file pattern as [`path_pattern`] writes them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// Patterns are absolute paths.
    #[error("is not an absolute path (it must start with `/`)")]
    NotAbsolute,
    /// A NUL byte, which no path can hold.
    #[error("contains a NUL byte")]
    Nul,
    /// A `{` that starts none of the placeholders.
    #[error("has `{{` at byte {0} that starts no placeholder (use one of {{pid}} {{tid}} {{uuid}} {{date}} {{num}} {{hex}} {{rand}}, or `{{{{` for a literal brace)")]
    Placeholder(usize),
    /// A collapsed sibling shape (`report-{*}.csv`): the profile makes
    /// those from the files it names.
    #[error("has `{{*}}` at byte {0}: collapsed sibling shapes are not patterns of their own (list the files)")]
    SiblingShape(usize),
    /// A lone `}`.
    #[error("has a lone `}}` at byte {0} (write `}}}}` for a literal brace)")]
    LoneBrace(usize),
}

/// Check that `pattern` is a file pattern as profiles store it: absolute,
/// braces only as [`PLACEHOLDERS`] or doubled (a literal brace, rule 5).
/// Collapsed sibling shapes (`{*}`, rule 6) are not patterns of their own.
pub fn check_pattern(pattern: &str) -> Result<(), PatternError> {
    if !pattern.starts_with('/') {
        return Err(PatternError::NotAbsolute);
    }
    if pattern.contains('\0') {
        return Err(PatternError::Nul);
    }
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'{' if bytes.get(i + 1) == Some(&b'{') => i += 2,
            b'{' if pattern[i..].starts_with("{*}") => return Err(PatternError::SiblingShape(i)),
            b'{' => {
                let rest = &pattern[i..];
                let p = PLACEHOLDERS.iter().find(|p| rest.starts_with(*p)).ok_or(PatternError::Placeholder(i))?;
                i += p.len();
            }
            b'}' if bytes.get(i + 1) == Some(&b'}') => i += 2,
            b'}' => return Err(PatternError::LoneBrace(i)),
            _ => i += 1,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_pids_and_tids() {
        assert_eq!(path_pattern("/proc/1234/status"), "/proc/{pid}/status");
        assert_eq!(path_pattern("/proc/1/task/77/stat"), "/proc/{pid}/task/{tid}/stat");
        assert_eq!(path_pattern("/proc/self/maps"), "/proc/self/maps");
        assert_eq!(path_pattern("/proc/sys/kernel/pid_max"), "/proc/sys/kernel/pid_max");
    }

    #[test]
    fn per_run_names() {
        assert_eq!(path_pattern("/tmp/tmp.aB3dE9fGh1"), "/tmp/tmp.{rand}");
        assert_eq!(path_pattern("/tmp/tmp.Xk2p9QzL0m"), "/tmp/tmp.{rand}");
        assert_eq!(path_pattern("/tmp/tmp.abcdefghij"), "/tmp/tmp.{rand}", "mktemp names that look like words");
        assert_eq!(path_pattern("/tmp/tmpa8x_2k1q"), "/tmp/tmp{rand}", "python tempfile");
        assert_eq!(path_pattern("/tmp/tmp"), "/tmp/tmp");
        assert_eq!(path_pattern("/tmp/tmp.d"), "/tmp/tmp.d");
        assert_eq!(path_pattern("/var/log/app-2026-11-28.log"), "/var/log/app-{date}.log");
        assert_eq!(path_pattern("/var/log/app.20261128.log"), "/var/log/app.{date}.log");
        assert_eq!(
            path_pattern("/run/containers/3f2b8c1e-9a7d-4c2b-8e1f-0a9b8c7d6e5f/config.json"),
            "/run/containers/{uuid}/config.json"
        );
        assert_eq!(path_pattern("/var/cache/app/9f86d081884c7d65/blob"), "/var/cache/app/{hex}/blob");
        assert_eq!(path_pattern("/data/job-48213.out"), "/data/job-{num}.out");
    }

    #[test]
    fn ordinary_names_stay_exact() {
        for p in [
            "/etc/passwd",
            "/etc/shadow",
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/etc/rc3.d/S01ssh",
            "/usr/bin/python3.11",
            "/usr/lib/libssl3.so",
            "/usr/bin/sha256sum",
            "/tmp/evil.sh",
            "/home/user/.ssh/id_ed25519",
        ] {
            assert_eq!(path_pattern(p), p);
        }
    }

    #[test]
    fn wildcards_never_span_directories() {
        assert_eq!(path_pattern("/tmp/123/456/x"), "/tmp/{num}/{num}/x");
        assert_ne!(path_pattern("/tmp/123/x"), path_pattern("/tmp/123/456/x"));
        assert_ne!(path_pattern("/tmp/evil/x"), path_pattern("/tmp/123/x"));
    }

    #[test]
    fn sibling_shapes() {
        assert_eq!(sibling_pattern("/srv/reports/report-alpha.csv").as_deref(), Some("/srv/reports/report-{*}.csv"));
        assert_eq!(sibling_pattern("/srv/cache/blob_xyz").as_deref(), Some("/srv/cache/blob_{*}"));
        assert_eq!(sibling_pattern("/etc/passwd"), None, "no prefix and separator");
        assert_eq!(sibling_pattern("/etc/x-y"), None, "prefix too short");
        assert_eq!(sibling_pattern("/etc/ld.so.cache").as_deref(), Some("/etc/ld.{*}.cache"));
        assert_eq!(sibling_pattern("/srv/a1-b.csv"), None, "prefix must be letters");
    }

    #[test]
    fn escaped_bytes_are_neither_letters_nor_digits() {
        use crate::text::name_from_bytes;
        let pattern = |b: &[u8]| path_pattern(&name_from_bytes(b));
        assert_eq!(pattern(b"/tmp/a\xff"), "/tmp/a\\xff");
        assert_ne!(pattern(b"/tmp/a\xff"), pattern(b"/tmp/a\xfe"));
        assert_ne!(pattern(b"/tmp/a\xff"), pattern(b"/tmp/a\\xff"));
        // The number after a Latin-1 byte is a number, as after UTF-8 `é`.
        assert_eq!(pattern(b"/srv/caf\xe9123"), "/srv/caf\\xe9{num}");
        assert_eq!(pattern("/srv/café123".as_bytes()), "/srv/café{num}");
        // An escape's hex digits are not the start of a UUID.
        assert_eq!(pattern(b"/srv/\xabcdef01-1234-4234-8234-123456789abc"), "/srv/\\xabcdef01-{num}-{num}-{num}-{hex}");
        assert_eq!(
            pattern(b"/srv/\xab\xcd\xef\x01-1234-4234-8234-123456789abc"),
            pattern(b"/srv/\xab\xcd\xef\x01-1234-4234-8234-123456789abd")
        );
        // Ordinary backslashes are text.
        assert_eq!(path_pattern("/srv/dev-disk-by\\x2duuid"), "/srv/dev-disk-by\\x2duuid");
        assert_eq!(check_pattern(&pattern(b"/tmp/\xff{x}")), Ok(()));
    }

    #[test]
    fn literal_braces_cannot_forge_a_pattern() {
        assert_eq!(path_pattern("/tmp/{num}"), "/tmp/{{num}}");
        assert_ne!(path_pattern("/tmp/{num}"), path_pattern("/tmp/123"));
    }

    #[test]
    fn patterns_are_checked() {
        for p in
            ["/etc/passwd", "/proc/{pid}/task/{tid}/stat", "/tmp/tmp.{rand}", "/var/log/app-{date}.log", "/x/{{num}}"]
        {
            assert_eq!(check_pattern(p), Ok(()), "{p}");
        }
        for p in ["/etc/passwd", "/proc/1234/status", "/tmp/{num}", "/tmp/tmp.aB3dE9fGh1", "/a/}{/b"] {
            assert_eq!(check_pattern(&path_pattern(p)), Ok(()), "every generalized path is a pattern: {p}");
        }
        assert_eq!(check_pattern("etc/passwd"), Err(PatternError::NotAbsolute));
        assert_eq!(check_pattern("/x/{nums}"), Err(PatternError::Placeholder(3)));
        assert_eq!(check_pattern("/srv/report-{*}.csv"), Err(PatternError::SiblingShape(12)));
        assert_eq!(check_pattern("/srv/{{*}}"), Ok(()), "a literal `{{*}}`");
        assert_eq!(check_pattern("/x/a}b"), Err(PatternError::LoneBrace(4)));
        assert_eq!(check_pattern("/x/\0"), Err(PatternError::Nul));
    }
}
