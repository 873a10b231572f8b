//! `telltalectl`: command-line client of the telltale API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use telltale_client::{behaviour, names, proto, Client, ClientError, WatchFilter};
use tokio_stream::StreamExt;

#[derive(Debug, Parser)]
#[command(name = "telltalectl", version, about = "Talk to a telltale sidecar's API.")]
struct Cli {
    /// Server address.
    #[arg(long, env = "TELLTALE_ADDR", default_value = "http://127.0.0.1:7443", global = true)]
    addr: String,
    /// Bearer token.
    #[arg(long, env = "TELLTALE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// CA certificate (PEM) to verify the server (TLS).
    #[arg(long, value_name = "PEM", global = true)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM), for mTLS.
    #[arg(long, value_name = "PEM", global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// Client key (PEM), for mTLS.
    #[arg(long, value_name = "PEM", global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// Server name to verify in its certificate.
    #[arg(long, global = true)]
    domain: Option<String>,
    /// JSON output (one object per line for streams).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Learning status per profile and event type.
    Status {
        /// Only this image.
        image: Option<String>,
    },
    /// Stream anomalies (live; `--after` to replay retained ones).
    Watch {
        /// Start after this sequence number (0: all retained).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Only this image.
        #[arg(long)]
        image: Option<String>,
        /// Only this container (id or name).
        #[arg(long)]
        container: Option<String>,
        /// Only this event type: exec, file, dns, connect.
        #[arg(long = "type")]
        event_type: Option<String>,
        /// Stop after this many anomalies.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Profiles.
    Profile {
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Signals: anomalies grouped per container.
    Signals {
        #[command(subcommand)]
        command: SignalsCommand,
    },
    /// Notification rules (admin).
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// The audit trail: `audit [QUERY]`, or `audit verify`.
    Audit {
        /// Facet query, e.g. '@evt.name:"Cloud Security Platform" @asset.type:security_profile',
        /// or `verify` to check the hash chain (admin).
        query: Vec<String>,
        /// From (ms since the epoch).
        #[arg(long)]
        from: Option<i64>,
        /// To (ms since the epoch).
        #[arg(long)]
        to: Option<i64>,
        /// Most recent N.
        #[arg(long, default_value_t = 1000)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum ProfileCommand {
    /// Show a profile's activity tree.
    Show {
        /// Short image name.
        image: String,
    },
    /// Export a profile as JSON.
    Export {
        /// Short image name.
        image: String,
    },
    /// Add a behaviour to a profile: it is never reported again.
    Add(AddArgs),
}

#[derive(Debug, Subcommand)]
enum SignalsCommand {
    /// List signals (newest first), optionally filtered: `status:open severity:high`.
    List {
        /// Facet query.
        query: Vec<String>,
    },
    /// Show a signal: what happened, next steps, anomaly events.
    Show {
        /// Signal id.
        id: String,
    },
    /// Take a signal on (under review), optionally assigning it.
    Review {
        /// Signal id.
        id: String,
        /// Assignee.
        #[arg(long)]
        assignee: Option<String>,
    },
    /// Archive a signal.
    Archive {
        /// Signal id.
        id: String,
    },
    /// Mark benign: add its behaviours to the profile and archive it.
    Benign {
        /// Signal id.
        id: String,
        /// Only these anomalies (repeat); default all.
        #[arg(long = "anomaly")]
        anomalies: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum RulesCommand {
    /// List rules (secrets redacted).
    List,
    /// Create a rule from a JSON file (a telltale.v1.NotificationRule in
    /// proto3 JSON field names: name, enabled, query, targets, notify_on_update).
    Create {
        /// The JSON file (`-`: stdin).
        file: String,
    },
    /// Delete a rule.
    Delete {
        /// Rule id.
        id: String,
    },
}

#[derive(Debug, Args)]
struct AddArgs {
    /// Short image name.
    image: String,
    /// A process node: its executable (use --parent for its ancestors).
    #[arg(long, group = "what")]
    exec: Option<String>,
    /// A file path opened (with --access) by --process.
    #[arg(long, group = "what", requires = "access")]
    file: Option<String>,
    /// Access of --file: r, w or rw.
    #[arg(long)]
    access: Option<String>,
    /// A DNS name resolved by --process.
    #[arg(long, group = "what")]
    dns: Option<String>,
    /// DNS query type of --dns.
    #[arg(long = "dns-type", default_value = "A")]
    dns_type: String,
    /// An endpoint ADDR:PORT/PROTO (ADDR may be a CIDR; port 0 = any) used by --process.
    #[arg(long, group = "what")]
    connect: Option<String>,
    /// The process (executable path) the --file/--dns/--connect behaviour belongs to.
    #[arg(long)]
    process: Option<String>,
    /// Ancestors of the process, outermost first (repeat).
    #[arg(long = "parent")]
    parents: Vec<String>,
}

fn event_type(s: &str) -> Result<proto::EventType> {
    Ok(match s {
        "exec" => proto::EventType::Exec,
        "file" => proto::EventType::File,
        "dns" => proto::EventType::Dns,
        "connect" => proto::EventType::Connect,
        other => bail!("unknown event type {other:?}: use exec, file, dns or connect"),
    })
}

fn rfc3339_ms(ms: i64) -> String {
    if ms == 0 {
        return "-".into();
    }
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .map(|s| s.chars().take(19).collect())
        .unwrap_or_default()
}

fn access_names(a: &[i32]) -> String {
    a.iter()
        .map(|x| match proto::Access::try_from(*x) {
            Ok(proto::Access::Read) => "read",
            Ok(proto::Access::Write) => "write",
            Ok(proto::Access::Create) => "create",
            Ok(proto::Access::Truncate) => "truncate",
            _ => "?",
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn behaviour_text(b: &Option<proto::Behaviour>) -> String {
    match b.as_ref().and_then(|b| b.kind.as_ref()) {
        Some(proto::behaviour::Kind::Exec(_)) => "exec".into(),
        Some(proto::behaviour::Kind::File(f)) => format!("file {} {}", access_names(&f.access), f.path),
        Some(proto::behaviour::Kind::Dns(d)) => format!("dns {} {}", d.name, d.r#type),
        Some(proto::behaviour::Kind::Connect(c)) => format!(
            "connect {}:{}/{}",
            c.address,
            c.port,
            if c.protocol == proto::Protocol::Udp as i32 { "udp" } else { "tcp" }
        ),
        None => "?".into(),
    }
}

fn status_json(p: &proto::ProfileStatus) -> serde_json::Value {
    serde_json::json!({
        "image": p.image,
        "tags": p.tags,
        "behaviours": p.behaviours,
        "types": p.types.iter().map(|t| serde_json::json!({
            "type": names::event_type(t.r#type),
            "state": names::learning_state(t.state),
            "learning_started_unix_ms": t.learning_started_unix_ms,
            "since_unix_ms": t.since_unix_ms,
            "behaviours": t.behaviours,
            "last_new_behaviour_unix_ms": t.last_new_behaviour_unix_ms,
            "time_left_seconds": if t.time_left_seconds < 0 { serde_json::Value::Null } else { t.time_left_seconds.into() },
            "lost_events": t.lost_events,
        })).collect::<Vec<_>>(),
    })
}

fn anomaly_json(a: &proto::SequencedAnomaly) -> serde_json::Value {
    let an = a.anomaly.clone().unwrap_or_default();
    let c = an.container.clone().unwrap_or_default();
    serde_json::json!({
        "sequence": a.sequence,
        "id": an.id,
        "time_unix_nano": an.time_unix_nano,
        "type": names::event_type(an.r#type),
        "container": {"id": c.id, "name": c.name, "image": c.image, "tag": c.tag},
        "profile_version": an.profile_version,
        "lineage": an.lineage,
        "behaviour": behaviour_text(&an.behaviour),
        "args": an.event.and_then(|e| e.process).map(|p| p.args).unwrap_or_default(),
    })
}

fn parse_connect(spec: &str) -> Result<(String, u32, proto::Protocol)> {
    let (addr_port, proto_name) = spec.rsplit_once('/').unwrap_or((spec, "tcp"));
    let protocol = match proto_name {
        "tcp" => proto::Protocol::Tcp,
        "udp" => proto::Protocol::Udp,
        other => bail!("--connect {spec}: protocol {other:?} is not tcp or udp"),
    };
    // CIDR: ADDR/NN:PORT/PROTO has two slashes; split the port at the last ':'.
    let (addr, port) = addr_port.rsplit_once(':').context("--connect needs ADDR:PORT/PROTO")?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let port: u32 = port.parse().with_context(|| format!("--connect {spec}: bad port {port:?}"))?;
    Ok((addr.to_owned(), port, protocol))
}

fn build_behaviour(a: &AddArgs) -> Result<proto::BehaviourToAdd> {
    let mut lineage: Vec<&str> = a.parents.iter().map(String::as_str).collect();
    if let Some(exe) = &a.exec {
        lineage.push(exe);
        return Ok(behaviour::exec(&lineage));
    }
    let process = a.process.as_deref().context("--file/--dns/--connect need --process PATH (the executable)")?;
    lineage.push(process);
    if let Some(path) = &a.file {
        let access: Vec<proto::Access> = match a.access.as_deref() {
            Some("r") => vec![proto::Access::Read],
            Some("w") => vec![proto::Access::Write],
            Some("rw") => vec![proto::Access::Read, proto::Access::Write],
            other => bail!("--access {other:?}: use r, w or rw"),
        };
        return Ok(behaviour::file(&lineage, path, &access));
    }
    if let Some(name) = &a.dns {
        return Ok(behaviour::dns(&lineage, name, &a.dns_type));
    }
    if let Some(spec) = &a.connect {
        let (addr, port, protocol) = parse_connect(spec)?;
        return Ok(behaviour::connect(&lineage, protocol, &addr, port));
    }
    bail!("say what to add: --exec, --file, --dns or --connect")
}

async fn run(cli: Cli) -> Result<()> {
    let mut b = Client::builder(cli.addr.clone()).maybe_token(cli.token.clone());
    if let Some(ca) = &cli.ca {
        b = b.ca(ca);
    }
    if let (Some(c), Some(k)) = (&cli.cert, &cli.key) {
        b = b.identity(c, k);
    }
    if let Some(d) = &cli.domain {
        b = b.domain(d);
    }
    let client = b.connect().await?;
    match cli.command {
        Command::Status { image } => {
            let profiles = client.learning_status(image.as_deref()).await?;
            if cli.json {
                println!("{}", serde_json::Value::Array(profiles.iter().map(status_json).collect()));
            } else {
                println!(
                    "{:<24} {:<8} {:<9} {:<20} {:>10} {:<20} {:>9} LOST",
                    "IMAGE", "TYPE", "STATE", "SINCE", "BEHAVIOURS", "LAST NEW", "LEFT (s)"
                );
                for p in &profiles {
                    for t in &p.types {
                        let left = if t.time_left_seconds < 0 { "-".into() } else { t.time_left_seconds.to_string() };
                        println!(
                            "{:<24} {:<8} {:<9} {:<20} {:>10} {:<20} {:>9} {}",
                            p.image,
                            names::event_type(t.r#type),
                            names::learning_state(t.state),
                            rfc3339_ms(t.since_unix_ms),
                            t.behaviours,
                            rfc3339_ms(t.last_new_behaviour_unix_ms),
                            left,
                            t.lost_events
                        );
                    }
                }
            }
        }
        Command::Watch { after, image, container, event_type: t, count } => {
            let filter = WatchFilter {
                image: image.unwrap_or_default(),
                container: container.unwrap_or_default(),
                event_type: t.as_deref().map(event_type).transpose()?.unwrap_or(proto::EventType::Unspecified),
            };
            let mut stream = client.watch(filter, after);
            let mut seen = 0u64;
            while let Some(a) = stream.next().await {
                let a = a?;
                let j = anomaly_json(&a);
                if cli.json {
                    println!("{j}");
                } else {
                    println!(
                        "#{} {} {} container={} image={}:{} {} lineage={}",
                        a.sequence,
                        j["type"].as_str().unwrap_or(""),
                        j["id"].as_str().unwrap_or(""),
                        j["container"]["id"].as_str().unwrap_or(""),
                        j["container"]["image"].as_str().unwrap_or(""),
                        j["container"]["tag"].as_str().unwrap_or(""),
                        j["behaviour"].as_str().unwrap_or(""),
                        j["lineage"]
                            .as_array()
                            .map(|l| l.iter().filter_map(|x| x.as_str()).collect::<Vec<_>>().join(" -> "))
                            .unwrap_or_default()
                    );
                }
                seen += 1;
                if count.is_some_and(|c| seen >= c) {
                    break;
                }
            }
        }
        Command::Profile { command: ProfileCommand::Show { image } } => {
            let p = client.profile(&image).await?;
            if cli.json {
                println!("{}", client.export_profile(&image).await?);
                return Ok(());
            }
            println!("profile {} (versions: {})", p.image, p.tags.join(", "));
            for n in &p.nodes {
                println!("{}", n.lineage.join(" -> "));
                for f in &n.files {
                    println!("    file    {:<16} {}", access_names(&f.access), f.pattern);
                }
                for d in &n.dns {
                    println!("    dns     {:<16} {}", d.r#type, d.name);
                }
                for e in &n.endpoints {
                    let proto_name = if e.protocol == proto::Protocol::Udp as i32 { "udp" } else { "tcp" };
                    println!("    connect {:<16} {}:{}", proto_name, e.address, e.port);
                }
            }
        }
        Command::Signals { command } => signals(&client, command, cli.json).await?,
        Command::Rules { command } => rules(&client, command).await?,
        Command::Audit { query, from, to, limit } => {
            if query.len() == 1 && query[0] == "verify" {
                let v = client.verify_audit().await?;
                if cli.json {
                    println!("{}", serde_json::json!({"ok": v.ok, "records": v.records, "error": v.error}));
                } else if v.ok {
                    println!("audit trail intact: {} records, hash chain verified", v.records);
                } else {
                    println!("audit trail TAMPERED: {}", v.error);
                }
                if !v.ok {
                    bail!("audit trail does not verify: {}", v.error);
                }
                return Ok(());
            }
            let events = client.audit(&query.join(" "), from, to, limit).await?;
            for e in &events {
                if cli.json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "sequence": e.sequence, "time_unix_ms": e.time_unix_ms, "principal": e.principal,
                            "evt.name": e.evt_name, "asset.type": e.asset_type, "asset.id": e.asset_id,
                            "action": e.action, "outcome": e.outcome, "before": e.before, "after": e.after,
                            "hash": e.hash,
                        })
                    );
                } else {
                    println!(
                        "#{} {} {:<10} {:<18} {:<14} {:<8} {} {}",
                        e.sequence,
                        rfc3339_ms(e.time_unix_ms),
                        e.principal,
                        e.asset_type,
                        e.action,
                        e.outcome,
                        e.asset_id,
                        e.after
                    );
                }
            }
        }
        Command::Profile { command: ProfileCommand::Export { image } } => {
            println!("{}", client.export_profile(&image).await?);
        }
        Command::Profile { command: ProfileCommand::Add(args) } => {
            let b = build_behaviour(&args)?;
            let r = client.add_to_profile(&args.image, vec![b]).await?;
            if cli.json {
                println!("{}", serde_json::json!({"added": r.added, "already_known": r.already_known}));
            } else {
                println!("added {} behaviour(s) to {} ({} already known)", r.added, args.image, r.already_known);
            }
        }
    }
    Ok(())
}

fn summary_json(s: &proto::SignalSummary) -> serde_json::Value {
    let c = s.container.clone().unwrap_or_default();
    serde_json::json!({
        "id": s.id, "rule_id": s.rule_id, "severity": s.severity, "status": names::signal_status(s.status),
        "assignee": s.assignee, "container": {"id": c.id, "name": c.name, "image": c.image, "tag": c.tag},
        "first_seen_unix_ms": s.first_seen_unix_ms, "last_seen_unix_ms": s.last_seen_unix_ms,
        "anomalies": s.anomalies, "version": s.version,
    })
}

fn print_signal(s: &proto::Signal, json: bool) {
    let summary = s.summary.clone().unwrap_or_default();
    if json {
        let mut v = summary_json(&summary);
        v["what_happened"] = s.what_happened.clone().into();
        v["next_steps"] = s.next_steps.clone().into();
        v["events"] = s.events.clone().into();
        println!("{v}");
        return;
    }
    print!("{}", names::signal_text(s));
}

async fn signals(client: &Client, command: SignalsCommand, json: bool) -> Result<()> {
    let update = |id: String, status: proto::SignalStatus, assignee: Option<String>, benign: Option<Vec<String>>| {
        proto::UpdateSignalRequest {
            id,
            status: status as i32,
            assignee,
            mark_benign: benign.is_some(),
            benign_anomaly_ids: benign.unwrap_or_default(),
        }
    };
    let request = match command {
        SignalsCommand::List { query } => {
            for s in client.signals(&query.join(" ")).await? {
                if json {
                    println!("{}", summary_json(&s));
                } else {
                    let c = s.container.unwrap_or_default();
                    println!(
                        "{:<40} {:<8} {:<12} {:<20} {:<24} {:>4} anomalies  last {}",
                        s.id,
                        s.severity,
                        names::signal_status(s.status),
                        c.id,
                        format!("{}:{}", c.image, c.tag),
                        s.anomalies,
                        rfc3339_ms(s.last_seen_unix_ms)
                    );
                }
            }
            return Ok(());
        }
        SignalsCommand::Show { id } => {
            print_signal(&client.signal(&id).await?, json);
            return Ok(());
        }
        SignalsCommand::Review { id, assignee } => update(id, proto::SignalStatus::UnderReview, assignee, None),
        SignalsCommand::Archive { id } => update(id, proto::SignalStatus::Archived, None, None),
        SignalsCommand::Benign { id, anomalies } => update(id, proto::SignalStatus::Unspecified, None, Some(anomalies)),
    };
    let r = client.update_signal(request).await?;
    let s = r.signal.unwrap_or_default();
    let summary = s.summary.clone().unwrap_or_default();
    if json {
        let mut v = summary_json(&summary);
        v["behaviours_added"] = r.behaviours_added.into();
        println!("{v}");
    } else {
        println!(
            "signal {} is {}{}",
            summary.id,
            names::signal_status(summary.status),
            if r.behaviours_added > 0 {
                format!("; {} behaviour(s) added to the profile", r.behaviours_added)
            } else {
                String::new()
            }
        );
    }
    Ok(())
}

fn rule_from_json(v: &serde_json::Value) -> Result<proto::NotificationRule> {
    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
    let mut targets = Vec::new();
    for (i, t) in v["targets"].as_array().cloned().unwrap_or_default().iter().enumerate() {
        let ts = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
        let kind = match t["kind"].as_str() {
            Some("slack") => proto::notification_target::Kind::Slack(proto::SlackTarget { url: ts("url") }),
            Some("webhook") => proto::notification_target::Kind::Webhook(proto::WebhookTarget {
                url: ts("url"),
                secret: ts("secret"),
                headers: t["headers"]
                    .as_object()
                    .map(|m| m.iter().map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned())).collect())
                    .unwrap_or_default(),
            }),
            Some("email") => proto::notification_target::Kind::Email(proto::EmailTarget {
                server: ts("server"),
                starttls: t["starttls"].as_bool().unwrap_or(false),
                username: ts("username"),
                password: ts("password"),
                from: ts("from"),
                to: t["to"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default(),
            }),
            other => bail!("targets[{i}].kind {other:?}: use slack, webhook or email"),
        };
        targets.push(proto::NotificationTarget { kind: Some(kind) });
    }
    Ok(proto::NotificationRule {
        id: s("id"),
        name: s("name"),
        enabled: v["enabled"].as_bool().unwrap_or(true),
        query: s("query"),
        targets,
        notify_on_update: v["notify_on_update"].as_bool().unwrap_or(false),
    })
}

async fn rules(client: &Client, command: RulesCommand) -> Result<()> {
    match command {
        RulesCommand::List => {
            for r in client.rules().await? {
                println!("{}\t{}\tenabled={}\tquery={}\ttargets={}", r.id, r.name, r.enabled, r.query, r.targets.len());
            }
        }
        RulesCommand::Create { file } => {
            let text = if file == "-" {
                std::io::read_to_string(std::io::stdin())?
            } else {
                std::fs::read_to_string(&file).with_context(|| format!("reading {file}"))?
            };
            let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{file} is not JSON"))?;
            let r = client.create_rule(rule_from_json(&v)?).await?;
            println!("created rule {} ({})", r.id, r.name);
        }
        RulesCommand::Delete { id } => {
            client.delete_rule(&id).await?;
            println!("deleted rule {id}");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("telltalectl: error: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = match e.downcast_ref::<ClientError>() {
                Some(ClientError::Status(s)) => format!("gRPC status {:?}: {}", s.code(), s.message()),
                _ => format!("{e:#}"),
            };
            eprintln!("telltalectl: error: {msg}");
            ExitCode::from(1)
        }
    }
}
