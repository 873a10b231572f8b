//! Rule files (`telltalectl rules create|update FILE`): a notification rule
//! as JSON or YAML, the same shape `rules get -o json|yaml` prints. Unknown
//! keys are errors naming the key and the file; so are the redaction
//! placeholders a listing shows instead of secrets.

use std::path::Path;

use anyhow::{bail, Context, Result};
use telltale_client::{NotificationRule, NotificationTarget};

/// What `rules list` shows instead of a secret or password.
const REDACTED: &str = "********";

/// Read and parse a rule file (`-`: stdin).
pub fn read(file: &str) -> Result<NotificationRule> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the rule from stdin")?
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?
    };
    parse(&text, file)
}

/// How a file is written (rule files and profile documents alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    Json,
    Yaml,
}

/// By extension; otherwise (stdin, no or another extension) JSON when it
/// starts with `{`, else YAML.
pub(super) fn syntax(text: &str, file: &str) -> Syntax {
    match Path::new(file).extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("json") => Syntax::Json,
        Some("yaml" | "yml") => Syntax::Yaml,
        _ if text.trim_start().starts_with('{') => Syntax::Json,
        _ => Syntax::Yaml,
    }
}

/// Parse a rule file's text; `file` names it in errors (`-` is stdin).
pub fn parse(text: &str, file: &str) -> Result<NotificationRule> {
    let source = if file == "-" { "stdin" } else { file };
    let rule: NotificationRule = match syntax(text, file) {
        Syntax::Json => serde_json::from_str(text).with_context(|| format!("rule file {source} (JSON)"))?,
        Syntax::Yaml => serde_norway::from_str(text).with_context(|| format!("rule file {source} (YAML)"))?,
    };
    for (i, t) in rule.targets.iter().enumerate() {
        let (key, value) = match t {
            NotificationTarget::Webhook { secret, .. } => ("secret", secret),
            NotificationTarget::Email { password, .. } => ("password", password),
            _ => continue,
        };
        if value.as_deref() == Some(REDACTED) {
            bail!(
                "rule file {source}: targets[{i}].{key} is the placeholder {REDACTED:?} a listing shows; \
                 give the real {key}"
            );
        }
    }
    Ok(rule)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn err(text: &str, file: &str) -> String {
        format!("{:#}", parse(text, file).expect_err("refused"))
    }

    #[test]
    fn json_and_yaml_give_the_same_rule() {
        let json = r#"{"name": "high", "query": "severity:high",
            "targets": [{"kind": "webhook", "url": "https://soc.example/hook", "secret": "k", "headers": {"X-Team": "red"}},
                        {"kind": "slack", "url": "https://hooks.slack.example/x"},
                        {"kind": "email", "server": "smtp.example:25", "from": "t@example.com", "to": ["soc@example.com"]}],
            "notify_on_update": true}"#;
        let yaml = "name: high\nquery: severity:high\nnotify_on_update: true\ntargets:\n\
                    - kind: webhook\n  url: https://soc.example/hook\n  secret: k\n  headers:\n    X-Team: red\n\
                    - kind: slack\n  url: https://hooks.slack.example/x\n\
                    - kind: email\n  server: smtp.example:25\n  from: t@example.com\n  to: [soc@example.com]\n";
        let expected = NotificationRule {
            id: String::new(),
            name: "high".into(),
            enabled: true,
            query: "severity:high".into(),
            targets: vec![
                NotificationTarget::Webhook {
                    url: "https://soc.example/hook".into(),
                    secret: Some("k".into()),
                    headers: BTreeMap::from([("X-Team".to_owned(), "red".to_owned())]),
                },
                NotificationTarget::Slack { url: "https://hooks.slack.example/x".into() },
                NotificationTarget::Email {
                    server: "smtp.example:25".into(),
                    starttls: false,
                    username: None,
                    password: None,
                    from: "t@example.com".into(),
                    to: vec!["soc@example.com".into()],
                },
            ],
            notify_on_update: true,
        };
        assert_eq!(parse(json, "rule.json").expect("json"), expected);
        assert_eq!(parse(yaml, "rule.yaml").expect("yaml"), expected);
        // Without a telling extension, by content.
        assert_eq!(parse(json, "-").expect("json on stdin"), expected);
        assert_eq!(parse(yaml, "rule.txt").expect("yaml by content"), expected);
    }

    #[test]
    fn a_misspelled_key_is_an_error_naming_the_key_and_the_file() {
        let e = err(r#"{"name": "n", "enabld": false, "targets": []}"#, "rules/high.json");
        assert!(e.contains("rules/high.json") && e.contains("unknown field `enabld`"), "{e}");
        let e = err("name: n\nquerry: a:b\ntargets: []\n", "high.yaml");
        assert!(e.contains("high.yaml") && e.contains("unknown field `querry`"), "{e}");
        // Inside a target too.
        let e = err("name: n\ntargets:\n- kind: slack\n  urll: https://x.example/y\n", "t.yml");
        assert!(e.contains("t.yml") && e.contains("unknown field `urll`"), "{e}");
        let e =
            err(r#"{"name": "n", "targets": [{"kind": "webhook", "url": "https://x.example", "secrett": "k"}]}"#, "-");
        assert!(e.contains("stdin") && e.contains("unknown field `secrett`"), "{e}");
    }

    #[test]
    fn unknown_target_kinds_and_missing_keys_are_errors() {
        let e = err("name: n\ntargets:\n- kind: pager\n  url: https://x.example/y\n", "t.yaml");
        assert!(e.contains("t.yaml") && e.contains("unknown variant `pager`"), "{e}");
        let e = err("name: n\ntargets:\n- kind: unknown\n", "t.yaml");
        assert!(e.contains("unknown variant `unknown`"), "{e}");
        let e = err(r#"{"targets": []}"#, "r.json");
        assert!(e.contains("r.json") && e.contains("missing field `name`"), "{e}");
        let e = err("name: n\ntargets:\n- kind: slack\n", "t.yaml");
        assert!(e.contains("missing field `url`"), "{e}");
    }

    #[test]
    fn defaults_enabled_and_not_on_update() {
        let r = parse("name: n\ntargets: []\n", "r.yaml").expect("minimal");
        assert!(r.enabled && !r.notify_on_update && r.query.is_empty() && r.id.is_empty());
    }

    #[test]
    fn redaction_placeholders_are_refused() {
        let e = err(
            "id: r-1\nname: n\ntargets:\n- kind: slack\n  url: https://x.example/y\n\
             - kind: webhook\n  url: https://x.example/h\n  secret: '********'\n",
            "r.yaml",
        );
        assert!(e.contains("r.yaml") && e.contains("targets[1].secret"), "{e}");
        let e = err(
            r#"{"name": "n", "targets": [{"kind": "email", "server": "s:25", "from": "a@b", "to": ["c@d"], "password": "********"}]}"#,
            "r.json",
        );
        assert!(e.contains("targets[0].password"), "{e}");
    }

    #[test]
    fn not_json_or_yaml_at_all() {
        let e = err("{name: ", "r.json");
        assert!(e.contains("r.json") && e.contains("JSON"), "{e}");
        let e = err("- just\n- a list\n", "r.yaml");
        assert!(e.contains("r.yaml") && e.contains("YAML"), "{e}");
    }
}
