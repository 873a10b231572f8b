#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: failing loudly is the point

use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser};
use telltale_client::{EventType, Suppression};

use super::*;

fn parse(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("telltalectl").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

fn refused(args: &[&str]) -> clap::Error {
    Cli::try_parse_from(std::iter::once("telltalectl").chain(args.iter().copied())).expect_err("refused")
}

#[test]
fn the_definitions_are_consistent() {
    Cli::command().debug_assert();
}

#[test]
fn output_formats_anywhere_and_json_is_short_for_o_json() {
    assert_eq!(parse(&["status"]).format(), Format::Table);
    assert_eq!(parse(&["-o", "wide", "signals", "list"]).format(), Format::Wide);
    assert_eq!(parse(&["signals", "list", "-o", "yaml"]).format(), Format::Yaml);
    assert_eq!(parse(&["rules", "list", "--output", "name"]).format(), Format::Name);
    assert_eq!(parse(&["--json", "status"]).format(), Format::Json);
    assert_eq!(parse(&["watch", "--json", "--count", "1"]).format(), Format::Json);
    assert_eq!(refused(&["--json", "-o", "yaml", "status"]).kind(), ErrorKind::ArgumentConflict);
    let e = refused(&["-o", "xml", "status"]).to_string();
    assert!(e.contains("table") && e.contains("wide") && e.contains("name"), "{e}");
}

#[test]
fn times_are_durations_or_rfc3339_never_epoch_milliseconds() {
    let cli = parse(&["audit", "@outcome:failure", "--since", "1h", "--until", "2025-01-31T12:00:00Z"]);
    let Command::Audit(a) = cli.command else { panic!("audit") };
    assert_eq!(a.query, vec!["@outcome:failure".to_owned()]);
    assert_eq!(a.since, Some(When::Ago(Duration::from_secs(3600))));
    assert_eq!(a.until, Some(When::At(time::macros::datetime!(2025-01-31 12:00:00 UTC))));
    assert!(a.command.is_none());
    // The old names still work, with the new values.
    let Command::Audit(a) = parse(&["audit", "--from", "30m"]).command else { panic!("audit") };
    assert_eq!(a.since, Some(When::Ago(Duration::from_secs(1800))));
    let e = refused(&["audit", "--since", "1700000000000"]).to_string();
    assert!(e.contains("RFC 3339"), "{e}");
    let Command::Signals { command: SignalsCommand::List { since, .. } } =
        parse(&["signals", "list", "status:open", "--since", "2d"]).command
    else {
        panic!("signals list")
    };
    assert_eq!(since, Some(When::Ago(Duration::from_secs(2 * 86400))));
}

#[test]
fn audit_verify_is_a_subcommand_and_queries_are_words() {
    let Command::Audit(a) = parse(&["audit", "verify"]).command else { panic!("audit") };
    assert!(matches!(a.command, Some(AuditCommand::Verify)));
    let Command::Audit(a) = parse(&["audit", "@asset.type:api", "@outcome:failure"]).command else { panic!("audit") };
    assert_eq!(a.query.join(" "), "@asset.type:api @outcome:failure");
    assert_eq!(a.limit, 1000);
}

#[test]
fn event_types_are_checked_by_clap() {
    let Command::Watch(w) = parse(&["watch", "--type", "dns", "--image", "web", "--after", "7"]).command else {
        panic!("watch")
    };
    assert_eq!(w.event_type.map(EventType::from), Some(EventType::Dns));
    assert_eq!((w.image.as_deref(), w.after, w.count), (Some("web"), 7, None));
    let e = refused(&["watch", "--type", "process"]).to_string();
    assert!(e.contains("exec") && e.contains("connect"), "{e}");
}

#[test]
fn suppressions_from_flags() {
    let cli = parse(&[
        "suppressions",
        "create",
        "--name",
        "certs",
        "--image",
        "web",
        "--type",
        "file",
        "--detail",
        "/etc/ssl/*",
    ]);
    let Command::Suppressions { command: SuppressionsCommand::Create(args) } = cli.command else { panic!("create") };
    assert_eq!(
        run::suppression(args),
        Suppression {
            id: String::new(),
            name: "certs".into(),
            image: "web".into(),
            event_type: Some(EventType::File),
            process: String::new(),
            detail: "/etc/ssl/*".into(),
        }
    );
    assert_eq!(refused(&["suppressions", "create", "--image", "web"]).kind(), ErrorKind::MissingRequiredArgument);
    assert!(matches!(
        parse(&["suppressions", "delete", "s-1"]).command,
        Command::Suppressions { command: SuppressionsCommand::Delete { id } } if id == "s-1"
    ));
}

#[test]
fn rules_and_signals_subcommands() {
    assert!(matches!(
        parse(&["rules", "update", "r.yaml", "--id", "r-1"]).command,
        Command::Rules { command: RulesCommand::Update { file, id: Some(id) } } if file == "r.yaml" && id == "r-1"
    ));
    assert!(matches!(parse(&["rules", "get", "r-1"]).command, Command::Rules { command: RulesCommand::Get { .. } }));
    assert!(matches!(
        parse(&["signals", "watch", "severity:high", "--after", "3", "--count", "2"]).command,
        Command::Signals { command: SignalsCommand::Watch { query, after: 3, count: Some(2) } } if query == ["severity:high"]
    ));
    assert!(matches!(
        parse(&["signals", "get", "s-1"]).command,
        Command::Signals { command: SignalsCommand::Show { id } } if id == "s-1"
    ));
    assert!(matches!(parse(&["signals", "ls"]).command, Command::Signals { command: SignalsCommand::List { .. } }));
    assert!(matches!(
        parse(&["signals", "benign", "s-1", "--anomaly", "a", "--anomaly", "b"]).command,
        Command::Signals { command: SignalsCommand::Benign { anomalies, .. } } if anomalies == ["a", "b"]
    ));
}

#[test]
fn profile_add_options_conflict_and_need_access() {
    assert_eq!(
        refused(&["profile", "add", "web", "--exec", "/bin/a", "--dns", "x.example"]).kind(),
        ErrorKind::ArgumentConflict
    );
    assert_eq!(
        refused(&["profile", "add", "web", "--file", "/etc/x", "--process", "/bin/a"]).kind(),
        ErrorKind::MissingRequiredArgument
    );
    assert_eq!(
        refused(&["profile", "add", "web", "--file", "/etc/x", "--access", "x", "--process", "/bin/a"]).kind(),
        ErrorKind::InvalidValue
    );
}

fn run_offline(args: &[&str]) -> (String, String) {
    let cli = parse(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(run::run(cli, &mut out, &mut err)).expect("runs without a server");
    (String::from_utf8(out).expect("utf-8"), String::from_utf8(err).expect("utf-8"))
}

#[test]
fn completions_come_from_the_definitions() {
    let (bash, _) = run_offline(&["completion", "bash"]);
    assert!(bash.contains("_telltalectl()") && bash.contains("suppressions") && bash.contains("--output"), "{bash}");
    let (zsh, _) = run_offline(&["completion", "zsh"]);
    assert!(zsh.starts_with("#compdef telltalectl") && zsh.contains("watch"), "{zsh}");
    let (fish, _) = run_offline(&["completion", "fish"]);
    assert!(fish.contains("complete -c telltalectl") && fish.contains("yaml"), "{fish}");
    assert!(refused(&["completion", "tcsh"]).to_string().contains("bash"));
}

#[test]
fn man_pages_one_per_command() {
    let dir = std::env::temp_dir().join(format!("telltalectl-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (out, _) = run_offline(&["man", dir.to_str().expect("utf-8 path")]);
    assert!(out.is_empty());
    for page in [
        "telltalectl.1",
        "telltalectl-signals-watch.1",
        "telltalectl-suppressions-create.1",
        "telltalectl-audit-verify.1",
    ] {
        let text = std::fs::read_to_string(dir.join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page} is a man page");
    }
    let main = std::fs::read_to_string(dir.join("telltalectl.1")).expect("main page");
    assert!(main.contains("suppressions") && main.contains("completion"), "{main}");
    std::fs::remove_dir_all(&dir).expect("clean up");
}

#[test]
fn the_address_is_the_socket_the_addr_or_a_default() {
    let c = parse(&["--socket", "/run/tt/api.sock", "--addr", "http://10.0.0.1:7443", "status"]).connection;
    assert_eq!(c.address(|_| false), "unix:///run/tt/api.sock", "--socket wins");
    let c = parse(&["--addr", "http://10.0.0.1:7443", "status"]).connection;
    assert_eq!(c.address(|_| true), "http://10.0.0.1:7443");
    let none = Connection { addr: None, socket: None, token: None, ca: None, cert: None, key: None, domain: None };
    assert_eq!(none.address(|p| p == std::path::Path::new(DEFAULT_SOCKET)), "unix:///var/lib/telltale/api.sock");
    assert_eq!(none.address(|_| false), DEFAULT_ADDR);
}
