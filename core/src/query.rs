//! Facet queries, in the syntax users of the reference product know:
//! `@evt.name:"Cloud Security Platform" AND @asset.type:security_signal`,
//! `severity:high OR severity:critical`, `NOT status:archived`,
//! `-image:nginx (type:exec OR type:file)`, `image:cws-*`.
//!
//! - A term is `key:value`; keys may start with `@`; values are bare words or
//!   double-quoted strings (`\"` and `\\` escapes); `*` in a value matches any
//!   run of characters.
//! - `NOT` / `-` negate, `AND` (or just a space) binds tighter than `OR`,
//!   parentheses group. An empty query matches everything.
//! - Errors say what was expected and at which column.
//!
//! Pure logic: evaluation asks the caller for a field's values.

/// A parse error at a 1-based column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("query error at column {column}: {message}")]
pub struct QueryError {
    /// 1-based column (in characters).
    pub column: usize,
    /// What was wrong.
    pub message: String,
}

/// A parsed query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    /// Matches everything (the empty query).
    All,
    /// `key:pattern`.
    Term {
        /// The facet, as written (`@asset.type`).
        key: String,
        /// The value; `*` is a wildcard.
        pattern: String,
    },
    /// Negation.
    Not(Box<Query>),
    /// All must match.
    And(Vec<Query>),
    /// One must match.
    Or(Vec<Query>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    LParen,
    RParen,
    And,
    Or,
    Not,
    Term(String, String),
}

fn err(column: usize, message: impl Into<String>) -> QueryError {
    QueryError { column, message: message.into() }
}

fn lex(input: &str) -> Result<Vec<(usize, Tok)>, QueryError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push((col, Tok::LParen));
            i += 1;
        } else if c == ')' {
            out.push((col, Tok::RParen));
            i += 1;
        } else if c == '-' && chars.get(i + 1).is_some_and(|n| !n.is_whitespace()) {
            out.push((col, Tok::Not));
            i += 1;
        } else {
            let start = i;
            let mut word = String::new();
            while i < chars.len() && !chars[i].is_whitespace() && !"():\"".contains(chars[i]) {
                word.push(chars[i]);
                i += 1;
            }
            if i < chars.len() && chars[i] == ':' {
                if word.is_empty() {
                    return Err(err(col, "a term needs a key before ':'"));
                }
                i += 1;
                let value = if i < chars.len() && chars[i] == '"' {
                    let open = i + 1;
                    i += 1;
                    let mut v = String::new();
                    loop {
                        match chars.get(i) {
                            None => return Err(err(open, "unterminated quoted value")),
                            Some('"') => {
                                i += 1;
                                break;
                            }
                            Some('\\') => match chars.get(i + 1) {
                                Some(&n @ ('"' | '\\')) => {
                                    v.push(n);
                                    i += 2;
                                }
                                _ => return Err(err(i + 1, "only \\\" and \\\\ escapes are allowed")),
                            },
                            Some(&ch) => {
                                v.push(ch);
                                i += 1;
                            }
                        }
                    }
                    v
                } else {
                    let mut v = String::new();
                    while i < chars.len() && !chars[i].is_whitespace() && !"()\"".contains(chars[i]) {
                        v.push(chars[i]);
                        i += 1;
                    }
                    if v.is_empty() {
                        return Err(err(i + 1, format!("expected a value after '{word}:'")));
                    }
                    v
                };
                out.push((start + 1, Tok::Term(word, value)));
            } else {
                match word.as_str() {
                    "AND" => out.push((col, Tok::And)),
                    "OR" => out.push((col, Tok::Or)),
                    "NOT" => out.push((col, Tok::Not)),
                    "" => return Err(err(col, format!("unexpected '{c}'"))),
                    w => return Err(err(col, format!("expected key:value, AND, OR, NOT or '(' but found {w:?}"))),
                }
            }
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(c, _)| *c)
    }

    fn or(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.and()?];
        while self.peek() == Some(&Tok::Or) {
            self.pos += 1;
            parts.push(self.and()?);
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::Or(parts) })
    }

    fn and(&mut self) -> Result<Query, QueryError> {
        let mut parts = vec![self.unary()?];
        loop {
            match self.peek() {
                Some(Tok::And) => {
                    self.pos += 1;
                    parts.push(self.unary()?);
                }
                Some(Tok::Not | Tok::LParen | Tok::Term(..)) => parts.push(self.unary()?),
                _ => break,
            }
        }
        Ok(if parts.len() == 1 { parts.remove(0) } else { Query::And(parts) })
    }

    fn unary(&mut self) -> Result<Query, QueryError> {
        let col = self.col();
        match self.toks.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Tok::Not) => {
                self.pos += 1;
                Ok(Query::Not(Box::new(self.unary()?)))
            }
            Some(Tok::LParen) => {
                self.pos += 1;
                let q = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(err(self.col(), format!("expected ')' to close the '(' at column {col}")));
                }
                self.pos += 1;
                Ok(q)
            }
            Some(Tok::Term(key, pattern)) => {
                self.pos += 1;
                Ok(Query::Term { key, pattern })
            }
            Some(Tok::RParen) => Err(err(col, "unexpected ')'")),
            Some(Tok::And | Tok::Or) => Err(err(col, "expected a term before AND/OR")),
            None => Err(err(col, "expected a term at the end of the query")),
        }
    }
}

impl Query {
    /// Parse a query string.
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        let toks = lex(input)?;
        if toks.is_empty() {
            return Ok(Query::All);
        }
        let mut p = Parser { toks, pos: 0, end: input.chars().count() + 1 };
        let q = p.or()?;
        if p.pos < p.toks.len() {
            return Err(err(p.col(), "unexpected ')'"));
        }
        Ok(q)
    }

    /// Does a record match? `values(key)` gives the record's values of a
    /// facet (`key` without a leading `@`, lower-case); none: no match.
    pub fn matches(&self, values: &dyn Fn(&str) -> Vec<String>) -> bool {
        match self {
            Query::All => true,
            Query::Term { key, pattern } => {
                let k = key.trim_start_matches('@').to_ascii_lowercase();
                values(&k).iter().any(|v| glob(pattern, v))
            }
            Query::Not(q) => !q.matches(values),
            Query::And(qs) => qs.iter().all(|q| q.matches(values)),
            Query::Or(qs) => qs.iter().any(|q| q.matches(values)),
        }
    }
}

/// `*` matches any run of characters; everything else literally.
pub(crate) fn glob(pattern: &str, value: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == value;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !value.starts_with(first) || !value[first.len()..].ends_with(last) || value.len() < first.len() + last.len() {
        return false;
    }
    let mut rest = &value[first.len()..value.len() - last.len()];
    for mid in &parts[1..parts.len() - 1] {
        match rest.find(mid) {
            Some(at) => rest = &rest[at + mid.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Vec<String> + 'a {
        move |k| pairs.iter().filter(|(key, _)| *key == k).map(|(_, v)| (*v).to_owned()).collect()
    }

    #[test]
    fn parses_the_reference_syntax() {
        let q = Query::parse(r#"@evt.name:"Cloud Security Platform" @asset.type:security_signal"#).unwrap();
        assert_eq!(
            q,
            Query::And(vec![
                Query::Term { key: "@evt.name".into(), pattern: "Cloud Security Platform".into() },
                Query::Term { key: "@asset.type".into(), pattern: "security_signal".into() },
            ])
        );
        let r = rec(&[("evt.name", "Cloud Security Platform"), ("asset.type", "security_signal")]);
        assert!(q.matches(&r));
        assert!(!q.matches(&rec(&[("evt.name", "Cloud Security Platform"), ("asset.type", "notification_rule")])));
    }

    #[test]
    fn precedence_negation_and_groups() {
        let q = Query::parse("rule_id:anomaly_detection AND (severity:high OR severity:critical) -status:archived")
            .unwrap();
        let base = [("rule_id", "anomaly_detection"), ("severity", "high"), ("status", "open")];
        assert!(q.matches(&rec(&base)));
        assert!(!q.matches(&rec(&[("rule_id", "anomaly_detection"), ("severity", "low"), ("status", "open")])));
        assert!(!q.matches(&rec(&[("rule_id", "anomaly_detection"), ("severity", "high"), ("status", "archived")])));
        // OR binds looser than AND.
        let q = Query::parse("a:1 b:2 OR c:3").unwrap();
        assert!(q.matches(&rec(&[("c", "3")])));
        assert!(!q.matches(&rec(&[("a", "1")])));
        let q = Query::parse("NOT NOT a:1").unwrap();
        assert!(q.matches(&rec(&[("a", "1")])));
        assert_eq!(Query::parse("   ").unwrap(), Query::All);
    }

    #[test]
    fn wildcards_and_quotes() {
        let q = Query::parse(r#"image:cws-* name:"say \"hi\"""#).unwrap();
        assert!(q.matches(&rec(&[("image", "cws-webapp"), ("name", "say \"hi\"")])));
        assert!(!q.matches(&rec(&[("image", "nginx"), ("name", "say \"hi\"")])));
        assert!(glob("*web*", "cws-webapp"));
        assert!(glob("a*b*c", "axxbyyc"));
        assert!(!glob("a*b*c", "axxc"));
        assert!(!glob("ab*ba", "aba"));
    }

    #[test]
    fn errors_name_the_column() {
        let cases = [
            ("severity:high AND", 18, "end of the query"),
            ("(severity:high", 15, "')'"),
            ("severity:", 10, "value"),
            ("severity:high)", 14, "')'"),
            ("high", 1, "key:value"),
            (r#"name:"open"#, 6, "unterminated"),
            ("OR a:1", 1, "before AND/OR"),
            (":x", 1, "key"),
        ];
        for (q, col, what) in cases {
            let e = Query::parse(q).unwrap_err();
            assert_eq!(e.column, col, "{q}: {e}");
            assert!(e.message.contains(what), "{q}: {e}");
        }
    }
}
