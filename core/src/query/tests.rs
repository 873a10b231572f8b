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
    let q =
        Query::parse("rule_id:anomaly_detection AND (severity:high OR severity:critical) -status:archived").unwrap();
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

#[test]
fn display_is_the_canonical_syntax() {
    let cases = [
        ("-image:nginx (type:exec OR type:file)", "NOT image:nginx AND (type:exec OR type:file)"),
        ("a:1 b:2 OR c:3", "a:1 AND b:2 OR c:3"),
        ("a:1 (b:2 OR c:3)", "a:1 AND (b:2 OR c:3)"),
        ("a:1 OR (b:2 OR c:3)", "a:1 OR (b:2 OR c:3)"),
        ("a:1 (b:2 c:3)", "a:1 AND (b:2 AND c:3)"),
        (r#"NOT (a:1 b:"x y")"#, r#"NOT (a:1 AND b:"x y")"#),
        ("NOT NOT a:1", "NOT NOT a:1"),
        (r#"name:"say \"hi\" \\o/""#, r#"name:"say \"hi\" \\o/""#),
        (r#"a:"" b:"plain""#, r#"a:"" AND b:plain"#),
        ("((a:1))", "a:1"),
        ("url:http://x/*", "url:http://x/*"),
        ("   ", ""),
    ];
    for (input, shown) in cases {
        let q = Query::parse(input).unwrap();
        assert_eq!(q.to_string(), shown, "{input}");
        assert_eq!(Query::parse(shown).unwrap(), q, "{shown}");
    }
}

#[test]
fn depth_counts_parentheses_and_nots_of_the_text_form() {
    let cases = [
        ("a:1", 0),
        ("NOT a:1", 1),
        ("a:1 b:1", 0),
        ("NOT (a:1 OR b:1)", 2),
        ("((a:1))", 0),
        ("(a:1 OR (b:1 c:1))", 0),
        ("a:1 OR (b:1 OR c:1)", 1),
    ];
    for (input, depth) in cases {
        assert_eq!(Query::parse(input).unwrap().depth(), depth, "{input}");
    }
}

/// The hostile-input report: 5,000 `(` or `NOT` used to overflow the stack.
#[test]
fn thousands_of_parentheses_or_nots_are_an_error_not_a_crash() {
    for input in ["(".repeat(5000), "NOT ".repeat(5000), format!("{}a:1{}", "(".repeat(5000), ")".repeat(5000))] {
        let e = Query::parse(&input).unwrap_err();
        assert_eq!(e.column, MAX_LEN + 1, "{e}");
        assert!(e.message.contains(&MAX_LEN.to_string()) && e.message.contains("bytes"), "{e}");
    }
    // Under the length limit the depth limit answers, at the opener that
    // crosses it.
    let cases = [
        ("(".repeat(4000), MAX_DEPTH + 1, "'('"),
        (format!("{}a:1", "NOT ".repeat(1000)), 4 * MAX_DEPTH + 1, "NOT"),
        (format!("{}a:1", "-".repeat(4000)), MAX_DEPTH + 1, "NOT"),
        (format!("{}a:1{}", "(".repeat(2000), ")".repeat(2000)), MAX_DEPTH + 1, "'('"),
    ];
    for (input, column, what) in cases {
        let e = Query::parse(&input).unwrap_err();
        assert_eq!(e.column, column, "{e}");
        assert!(e.message.contains(what) && e.message.contains(&format!("limit is {MAX_DEPTH}")), "{e}");
    }
}

/// Parsing the worst a caller can send needs little stack: it runs on a
/// thread with 128 KiB.
#[test]
fn hostile_queries_parse_in_a_small_stack() {
    let worst = [
        "(".repeat(MAX_LEN),
        "NOT ".repeat(MAX_LEN / 4),
        "-".repeat(MAX_LEN - 3) + "a:1",
        format!("{}a:1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH)),
        format!("{}a:1", "NOT ".repeat(MAX_DEPTH)),
    ];
    let outcomes = std::thread::Builder::new()
        .stack_size(128 * 1024)
        .spawn(move || worst.iter().map(|q| Query::parse(q).map(|q| q.depth())).collect::<Vec<_>>())
        .unwrap()
        .join()
        .unwrap();
    assert!(outcomes[..3].iter().all(Result::is_err), "{outcomes:?}");
    assert_eq!(outcomes[3], Ok(0));
    assert_eq!(outcomes[4], Ok(MAX_DEPTH));
}

#[test]
fn long_queries_under_the_limits_parse() {
    let nested = format!("{}a:1{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    assert_eq!(Query::parse(&nested).unwrap(), Query::Term { key: "a".into(), pattern: "1".into() });
    let nots = format!("{}a:1", "NOT ".repeat(MAX_DEPTH));
    let q = Query::parse(&nots).unwrap();
    assert_eq!(q.depth(), MAX_DEPTH);
    assert!(q.matches(&rec(&[("a", "1")])), "an even number of NOTs");
    // Exactly MAX_LEN bytes: 2 + 4094 bytes of value.
    let exact = format!("a:{}", "x".repeat(MAX_LEN - 2));
    assert_eq!(exact.len(), MAX_LEN);
    assert!(Query::parse(&exact).is_ok());
    let e = Query::parse(&format!("{exact}y")).unwrap_err();
    assert_eq!(e.column, MAX_LEN + 1);
    // The column counts characters: 'é' is two bytes.
    let wide = format!("a:{}", "é".repeat(MAX_LEN / 2));
    let e = Query::parse(&wide).unwrap_err();
    assert_eq!(e.column, 2 + (MAX_LEN - 2) / 2 + 1, "{e}");
    // Many terms: 400 alternatives in about 4 KiB.
    let many = (0..400).map(|i| format!("k:{i}")).collect::<Vec<_>>().join(" OR ");
    assert!(many.len() <= MAX_LEN);
    let Query::Or(alternatives) = Query::parse(&many).unwrap() else { panic!("an OR") };
    assert_eq!(alternatives.len(), 400);
}

/// Queries built by hand are not bounded by the parser; evaluating,
/// showing and measuring them uses the heap, not the thread's stack.
#[test]
fn deep_hand_built_queries_do_not_recurse() {
    /// Takes the query apart a level at a time when dropped (the derived
    /// drop would recurse), also while a failed assertion unwinds.
    struct Dismantle(Query);
    impl Drop for Dismantle {
        fn drop(&mut self) {
            let mut q = std::mem::replace(&mut self.0, Query::All);
            loop {
                q = match q {
                    Query::Not(inner) => *inner,
                    Query::And(mut qs) => match qs.pop() {
                        Some(inner) => inner,
                        None => break,
                    },
                    _ => break,
                };
            }
        }
    }

    const DEEP: usize = 100_000;
    let term = Query::Term { key: "a".into(), pattern: "1".into() };
    let mut q = term.clone();
    for i in 0..DEEP {
        q = if i % 2 == 0 { Query::Not(Box::new(q)) } else { Query::And(vec![term.clone(), q]) };
    }
    let q = Dismantle(q);
    // With a:1 every AND is the identity and each of the DEEP / 2 NOTs
    // flips: an even number. Without it the outermost AND fails.
    assert!(q.0.matches(&rec(&[("a", "1")])));
    assert!(!q.0.matches(&rec(&[("a", "2")])));
    // Every NOT but the innermost wraps an AND in parentheses.
    assert_eq!(q.0.depth(), DEEP - 1);
    let text = q.0.to_string();
    assert!(text.starts_with("a:1 AND NOT (a:1 AND NOT ("), "{}", &text[..40]);
    let innermost = text.trim_end_matches(')');
    assert!(innermost.ends_with("NOT (a:1 AND NOT a:1"), "{}", &innermost[innermost.len() - 40..]);
    assert_eq!(text.len() - innermost.len(), DEEP / 2 - 1);
    assert!(Query::parse(&text).is_err(), "too long and too deep");
}

mod fuzz {
    //! Property-based tests: arbitrary and structured inputs.

    use proptest::collection::vec;
    use proptest::prelude::*;

    use super::super::*;

    fn config() -> ProptestConfig {
        ProptestConfig { cases: 512, ..ProptestConfig::default() }
    }

    /// What every parse must satisfy, whatever the input.
    fn check(input: &str) -> Result<(), TestCaseError> {
        let blank = input.chars().all(char::is_whitespace);
        match Query::parse(input) {
            Ok(q) => {
                prop_assert!(input.len() <= MAX_LEN);
                prop_assert_eq!(blank, q == Query::All, "{:?}", input);
                prop_assert!(q.depth() <= MAX_DEPTH, "{:?} nests {}", input, q.depth());
                let text = q.to_string();
                if text.len() <= MAX_LEN {
                    prop_assert_eq!(Query::parse(&text), Ok(q.clone()), "{:?} shown as {:?}", input, text);
                    prop_assert_eq!(q.to_string(), text);
                }
            }
            Err(e) => {
                prop_assert!(!blank, "{:?}: {}", input, e);
                let chars = input.chars().count();
                prop_assert!(e.column >= 1 && e.column <= chars + 1, "{:?}: {}", input, e);
                prop_assert!(!e.message.is_empty());
            }
        }
        Ok(())
    }

    /// Strings made of the query syntax's own pieces, so a good share parse.
    fn token_soup() -> impl Strategy<Value = String> {
        let token = prop_oneof![
            Just("(".to_owned()),
            Just(")".to_owned()),
            Just("NOT ".to_owned()),
            Just("-".to_owned()),
            Just(" AND ".to_owned()),
            Just(" OR ".to_owned()),
            Just(" ".to_owned()),
            Just("a:1".to_owned()),
            Just("@evt.name:\"Cloud \\\"x\\\" \\\\\"".to_owned()),
            Just("image:cws-*".to_owned()),
            Just(":".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("é\t\u{2003}".to_owned()),
            "[ -~]{0,4}",
        ];
        vec(token, 0..40).prop_map(|t| t.concat())
    }

    /// A key the lexer reads back whole.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "@?[a-zA-Z_*.é\\\\][a-zA-Z0-9_.*@é\\\\-]{0,5}",
            Just("AND".to_owned()),
            Just("NOT".to_owned()),
            Just("OR".to_owned()),
        ]
    }

    /// Any value: quotes, escapes, spaces, parentheses, colons, stars.
    fn value() -> impl Strategy<Value = String> {
        "[a-c *:()\"\\\\\té\u{2003}-]{0,6}"
    }

    /// Trees the parser can produce: AND/OR have two or more operands.
    fn tree(leaf: BoxedStrategy<Query>) -> impl Strategy<Value = Query> {
        leaf.prop_recursive(6, 48, 4, |inner| {
            prop_oneof![
                inner.clone().prop_map(|q| Query::Not(Box::new(q))),
                vec(inner.clone(), 2..5).prop_map(Query::And),
                vec(inner, 2..5).prop_map(Query::Or),
            ]
        })
    }

    fn any_query() -> impl Strategy<Value = Query> {
        tree((key(), value()).prop_map(|(key, pattern)| Query::Term { key, pattern }).boxed())
    }

    /// Queries over a few facets and values, for evaluation.
    fn small_query() -> impl Strategy<Value = Query> {
        tree(("@?[abAB]", "[xy*]{0,3}").prop_map(|(key, pattern)| Query::Term { key, pattern }).boxed())
    }

    /// The plain recursive meaning of a query.
    fn meaning(q: &Query, record: &[(String, String)]) -> bool {
        match q {
            Query::All => true,
            Query::Term { key, pattern } => {
                let k = key.trim_start_matches('@').to_ascii_lowercase();
                record.iter().any(|(rk, v)| *rk == k && glob(pattern, v))
            }
            Query::Not(q) => !meaning(q, record),
            Query::And(qs) => qs.iter().all(|q| meaning(q, record)),
            Query::Or(qs) => qs.iter().any(|q| meaning(q, record)),
        }
    }

    proptest! {
        #![proptest_config(config())]

        #[test]
        fn arbitrary_strings_never_panic(input in any::<String>()) {
            check(&input)?;
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..200)) {
            check(&String::from_utf8_lossy(&bytes))?;
        }

        #[test]
        fn token_soup_parses_or_names_a_column(input in token_soup()) {
            check(&input)?;
        }

        #[test]
        fn shown_queries_parse_back(q in any_query()) {
            let text = q.to_string();
            prop_assert_eq!(Query::parse(&text), Ok(q.clone()), "shown as {:?}", text);
        }

        #[test]
        fn matching_is_the_recursive_meaning(
            q in small_query(),
            record in vec(("[ab]", "[xy]{0,3}"), 0..4),
        ) {
            let expected = meaning(&q, &record);
            let values = |k: &str| record.iter().filter(|(rk, _)| rk == k).map(|(_, v)| v.clone()).collect();
            prop_assert_eq!(q.matches(&values), expected, "{} on {:?}", q, record);
        }

        #[test]
        fn nesting_over_the_limit_is_refused_at_the_crossing(
            openers in vec(prop_oneof![Just("("), Just("NOT "), Just("-")], 0..(2 * MAX_DEPTH)),
        ) {
            let closers = ")".repeat(openers.iter().filter(|o| **o == "(").count());
            let input = format!("{}a:1{closers}", openers.concat());
            match Query::parse(&input) {
                Ok(q) => {
                    prop_assert!(openers.len() <= MAX_DEPTH);
                    prop_assert!(q.depth() <= openers.len());
                    let nots = openers.iter().filter(|o| **o != "(").count();
                    let holds = q.matches(&|k: &str| if k == "a" { vec!["1".to_owned()] } else { Vec::new() });
                    prop_assert_eq!(holds, nots % 2 == 0);
                }
                Err(e) => {
                    prop_assert!(openers.len() > MAX_DEPTH, "{}", e);
                    let column = openers[..MAX_DEPTH].concat().chars().count() + 1;
                    prop_assert_eq!(e.column, column, "{}", e);
                    prop_assert!(e.message.contains(&format!("limit is {MAX_DEPTH}")), "{}", e);
                }
            }
        }

        #[test]
        fn length_over_the_limit_is_refused(terms in 1usize..700, pad in "[a-zé]{0,8}") {
            let input = (0..terms).map(|i| format!("k{i}:{pad}v")).collect::<Vec<_>>().join(" OR ");
            match Query::parse(&input) {
                Ok(q) => {
                    prop_assert!(input.len() <= MAX_LEN);
                    prop_assert_eq!(q.operands().len().max(1), terms);
                }
                Err(e) => {
                    prop_assert!(input.len() > MAX_LEN, "{}", e);
                    prop_assert!(e.message.contains(&MAX_LEN.to_string()), "{}", e);
                    let fits: String = input.chars().take(e.column - 1).collect();
                    prop_assert!(fits.len() <= MAX_LEN);
                    let next = input.chars().nth(e.column - 1).map_or(0, char::len_utf8);
                    prop_assert!(fits.len() + next > MAX_LEN);
                }
            }
        }

        #[test]
        fn glob_is_a_regex_of_literal_parts(pattern in "[ab*é]{0,6}", value in "[abé]{0,8}") {
            let parts: Vec<String> = pattern.split('*').map(regex::escape).collect();
            let re = regex::Regex::new(&format!("^(?s:{})$", parts.join(".*"))).unwrap();
            prop_assert_eq!(glob(&pattern, &value), re.is_match(&value));
        }
    }
}
