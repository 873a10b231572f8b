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
//! - Queries come from API callers, so the parser bounds them: at most
//!   [`MAX_LEN`] bytes and [`MAX_DEPTH`] levels of parentheses and `NOT`s.
//!   The parser's recursion is bounded by the depth limit. Evaluation
//!   ([`Query::matches`]), [`Query::depth`] and `Display` keep an explicit
//!   stack, so they hold even for deeper queries built by hand (the derived
//!   `Clone`, `Debug`, `PartialEq` and drop recurse; parsed queries are
//!   shallow enough for them).
//!
//! Pure logic: evaluation asks the caller for a field's values.

use std::fmt;

/// The deepest nesting of parentheses and `NOT`/`-` a query may have.
pub const MAX_DEPTH: usize = 32;

/// The longest query, in bytes (UTF-8).
pub const MAX_LEN: usize = 4096;

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
    /// Open parentheses and `NOT`s around the current token.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(c, _)| *c)
    }

    /// One more level of nesting, opened by the token at `col`.
    fn enter(&mut self, col: usize, what: &str) -> Result<(), QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(err(
                col,
                format!("this {what} nests the query {} levels deep; the limit is {MAX_DEPTH}", self.depth),
            ));
        }
        Ok(())
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
                self.enter(col, "NOT")?;
                self.pos += 1;
                let q = self.unary()?;
                self.depth -= 1;
                Ok(Query::Not(Box::new(q)))
            }
            Some(Tok::LParen) => {
                self.enter(col, "'('")?;
                self.pos += 1;
                let q = self.or()?;
                if self.peek() != Some(&Tok::RParen) {
                    return Err(err(self.col(), format!("expected ')' to close the '(' at column {col}")));
                }
                self.pos += 1;
                self.depth -= 1;
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
    ///
    /// A query longer than [`MAX_LEN`] bytes or nested deeper than
    /// [`MAX_DEPTH`] is refused; the error's column is where the limit is
    /// crossed. A parsed query's [`depth`](Query::depth) is at most
    /// [`MAX_DEPTH`].
    pub fn parse(input: &str) -> Result<Query, QueryError> {
        if input.len() > MAX_LEN {
            let fits = input.char_indices().take_while(|(at, c)| at + c.len_utf8() <= MAX_LEN).count();
            return Err(err(fits + 1, format!("the query is {} bytes long; the limit is {MAX_LEN}", input.len())));
        }
        let toks = lex(input)?;
        if toks.is_empty() {
            return Ok(Query::All);
        }
        let mut p = Parser { toks, pos: 0, end: input.chars().count() + 1, depth: 0 };
        let q = p.or()?;
        if p.pos < p.toks.len() {
            return Err(err(p.col(), "unexpected ')'"));
        }
        Ok(q)
    }

    /// Does a record match? `values(key)` gives the record's values of a
    /// facet (`key` without a leading `@`, lower-case); none: no match.
    ///
    /// `AND` and `OR` stop at the first operand that decides them. The walk
    /// keeps its own stack (one entry per level of the tree), so a deep
    /// query costs heap, not thread stack.
    pub fn matches(&self, values: &dyn Fn(&str) -> Vec<String>) -> bool {
        // Each entry: a node and how many of its operands were evaluated.
        let mut stack: Vec<(&Query, usize)> = vec![(self, 0)];
        // The value of the node finished last.
        let mut last = true;
        while let Some((query, done)) = stack.pop() {
            last = match query {
                Query::All => true,
                Query::Term { key, pattern } => {
                    let k = key.trim_start_matches('@').to_ascii_lowercase();
                    values(&k).iter().any(|v| glob(pattern, v))
                }
                Query::Not(_) if done == 1 => !last,
                Query::And(_) if done > 0 && !last => false,
                Query::Or(_) if done > 0 && last => true,
                _ => match query.operands().get(done) {
                    Some(next) => {
                        stack.push((query, done + 1));
                        stack.push((next, 0));
                        continue;
                    }
                    // Every operand of an AND held, none of an OR did.
                    None => matches!(query, Query::And(_)),
                },
            };
        }
        last
    }

    /// How deeply the query nests: the most parentheses and `NOT`s around
    /// one term in its [`Display`](fmt::Display) form (`a:1` is 0,
    /// `NOT (a:1 OR b:1)` is 2). At most [`MAX_DEPTH`] for a parsed query.
    pub fn depth(&self) -> usize {
        let mut deepest = 0;
        let mut stack = vec![(self, 0usize)];
        while let Some((query, depth)) = stack.pop() {
            deepest = deepest.max(depth);
            let within = Within::of(query);
            for operand in query.operands() {
                let nested = depth + usize::from(within == Within::Not) + usize::from(within.parenthesizes(operand));
                stack.push((operand, nested));
            }
        }
        deepest
    }

    /// The direct sub-queries.
    fn operands(&self) -> &[Query] {
        match self {
            Query::All | Query::Term { .. } => &[],
            Query::Not(q) => std::slice::from_ref(&**q),
            Query::And(qs) | Query::Or(qs) => qs,
        }
    }
}

/// Where a sub-query stands, for [`Query`]'s text form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Within {
    /// The whole query.
    Top,
    /// The operand of `NOT`.
    Not,
    /// An operand of `AND`.
    And,
    /// An operand of `OR`.
    Or,
}

impl Within {
    /// What `query`'s operands stand within.
    fn of(query: &Query) -> Within {
        match query {
            Query::Not(_) => Within::Not,
            Query::And(_) => Within::And,
            Query::Or(_) => Within::Or,
            Query::All | Query::Term { .. } => Within::Top,
        }
    }

    /// Does `operand` need parentheses here to parse back as the same tree?
    fn parenthesizes(self, operand: &Query) -> bool {
        matches!(
            (self, operand),
            (Within::Not | Within::And, Query::And(_) | Query::Or(_)) | (Within::Or, Query::Or(_))
        )
    }
}

/// The query in its own syntax: `AND`, `OR` and `NOT` spelled out,
/// parentheses only where the tree needs them, values quoted only when they
/// must be. A parsed query's text parses back to an equal query (when it is
/// still within [`MAX_LEN`]: the text can be a little longer than the
/// input, e.g. `-a:1` shows as `NOT a:1`). [`Query::All`] shows as the empty
/// query, which only parses back at the top.
impl fmt::Display for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        enum Piece<'a> {
            Query(&'a Query, Within),
            Text(&'static str),
        }
        let mut stack = vec![Piece::Query(self, Within::Top)];
        while let Some(piece) = stack.pop() {
            let (query, within) = match piece {
                Piece::Text(text) => {
                    f.write_str(text)?;
                    continue;
                }
                Piece::Query(query, within) => (query, within),
            };
            if within.parenthesizes(query) {
                f.write_str("(")?;
                stack.push(Piece::Text(")"));
            }
            let separator = match query {
                Query::All => continue,
                Query::Term { key, pattern } => {
                    write_term(f, key, pattern)?;
                    continue;
                }
                Query::Not(_) => {
                    f.write_str("NOT ")?;
                    ""
                }
                Query::And(_) => " AND ",
                Query::Or(_) => " OR ",
            };
            let inner = Within::of(query);
            for (i, operand) in query.operands().iter().enumerate().rev() {
                stack.push(Piece::Query(operand, inner));
                if i > 0 {
                    stack.push(Piece::Text(separator));
                }
            }
        }
        Ok(())
    }
}

/// `key:value`, the value bare when the lexer reads it back whole.
fn write_term(f: &mut fmt::Formatter<'_>, key: &str, pattern: &str) -> fmt::Result {
    write!(f, "{key}:")?;
    let bare = !pattern.is_empty() && !pattern.chars().any(|c| c.is_whitespace() || "()\"".contains(c));
    if bare {
        return f.write_str(pattern);
    }
    f.write_str("\"")?;
    for c in pattern.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
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
mod tests;
