//! Running a parsed command: connect, call the API, print.

use std::io::Write;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;
use telltale_client::{Benign, Client, EventType, SignalStatus, SignalSummary, SignalUpdate, Suppression, WatchFilter};
use telltale_core::profile::document::{self, Line};
use telltale_core::profile::Observation;
use time::OffsetDateTime;
use tokio_stream::StreamExt;

use super::print::{Added, Compared, Imported, Printer};
use super::{
    profile_file, rule_file, AuditArgs, AuditCommand, Cli, Command, Connection, ProfileCommand, RulesCommand,
    SignalsCommand, SuppressionArgs, SuppressionsCommand,
};

/// How a command that did not fail ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Done (exit 0).
    Done,
    /// `profile diff`: the file and the profile differ (exit 1, like diff).
    Differs,
}

/// Run `cli`, printing to `out` (results) and `err` (notices).
pub async fn run(cli: Cli, out: &mut dyn Write, err: &mut dyn Write) -> Result<Ending> {
    let format = cli.format();
    let mut p = Printer::new(format, out, err);
    match cli.command {
        Command::Completion { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "telltalectl", p.out());
            Ok(Ending::Done)
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(Cli::command(), &dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            Ok(Ending::Done)
        }
        // A bad file is refused before connecting.
        Command::Profile { command: ProfileCommand::Import { file, dry_run } } => {
            let loaded = profile_file::read(&file)?;
            let client = connect(&cli.connection).await?;
            import(&client, &file, loaded, dry_run, &mut p).await.map(|()| Ending::Done)
        }
        Command::Profile { command: ProfileCommand::Diff { file } } => {
            let loaded = profile_file::read(&file)?;
            let client = connect(&cli.connection).await?;
            diff(&client, &file, loaded, &mut p).await
        }
        command => {
            let client = connect(&cli.connection).await?;
            api(&client, command, &mut p, OffsetDateTime::now_utc()).await.map(|()| Ending::Done)
        }
    }
}

async fn connect(c: &Connection) -> Result<Client> {
    let addr = c.address(|p| std::fs::symlink_metadata(p).is_ok());
    let mut b = Client::builder(addr).maybe_token(c.token.clone());
    if let Some(ca) = &c.ca {
        b = b.ca(ca);
    }
    if let (Some(cert), Some(key)) = (&c.cert, &c.key) {
        b = b.identity(cert, key);
    }
    if let Some(d) = &c.domain {
        b = b.domain(d);
    }
    Ok(b.connect().await?)
}

async fn api(client: &Client, command: Command, p: &mut Printer<'_>, now: OffsetDateTime) -> Result<()> {
    match command {
        Command::Status { image } => p.list(&client.learning_status(image.as_deref()).await?),
        Command::Watch(w) => {
            let filter = WatchFilter {
                image: w.image.unwrap_or_default(),
                container: w.container.unwrap_or_default(),
                event_type: w.event_type.map(EventType::from),
            };
            let mut stream = client.watch(filter, w.after);
            let mut seen = 0u64;
            while w.count.is_none_or(|c| seen < c) {
                let Some(a) = stream.next().await else { break };
                p.event(&a?)?;
                seen += 1;
            }
            Ok(())
        }
        Command::Profile { command } => profile(client, command, p).await,
        Command::Signals { command } => signals(client, command, p, now).await,
        Command::Rules { command } => rules(client, command, p).await,
        Command::Suppressions { command } => suppressions(client, command, p).await,
        Command::Audit(a) => audit(client, a, p, now).await,
        Command::Completion { .. } | Command::Man { .. } => Ok(()),
    }
}

async fn profile(client: &Client, command: ProfileCommand, p: &mut Printer<'_>) -> Result<()> {
    match command {
        ProfileCommand::Show { image } => p.one(&client.profile(&image).await?),
        ProfileCommand::Export { image } => {
            let document = profile_file::export(&client.profile(&image).await?)?;
            p.profile_document(&image, &document)
        }
        ProfileCommand::Import { .. } | ProfileCommand::Diff { .. } => Ok(()), // run above, with their file
        ProfileCommand::Add(args) => {
            let b = args.behaviour()?;
            let addition = client.add_to_profile(&args.image, vec![b]).await?;
            let message = format!(
                "added {} behaviour(s) to {} ({} already known)",
                addition.added, args.image, addition.already_known
            );
            p.done(&Added { image: &args.image, addition }, &message)
        }
    }
}

/// The live profile's behaviours; none when it does not exist (yet).
async fn live(client: &Client, image: &str) -> Result<Option<Vec<Observation>>> {
    match client.profile(image).await {
        Ok(p) => Ok(Some(profile_file::live_observations(&p)?)),
        Err(e) if e.code() == Some(tonic::Code::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// `profile import [--dry-run]`.
async fn import(
    client: &Client,
    file: &str,
    loaded: profile_file::Loaded,
    dry_run: bool,
    p: &mut Printer<'_>,
) -> Result<()> {
    let image = loaded.document.metadata.name.clone();
    if dry_run {
        let live = live(client, &image).await?;
        let exists = live.is_some();
        let d = document::diff(&loaded.observations, &live.unwrap_or_default());
        let lines: Vec<String> = d.added.iter().map(|o| Line(o).to_string()).collect();
        let created = if exists { "" } else { " (a new profile)" };
        let message = format!("would add {} behaviour(s) to {image}{created}; nothing changed (dry run)", lines.len());
        let result =
            Imported { image: &image, file, dry_run, added: lines.len(), already_known: None, behaviours: lines };
        return p.imported(&result, &message);
    }
    let behaviours = profile_file::to_add(&loaded.observations)?;
    let (mut added, mut known) = (0u32, 0u32);
    for chunk in behaviours.chunks(profile_file::BEHAVIOURS_PER_REQUEST) {
        let a = client.add_to_profile(&image, chunk.to_vec()).await?;
        added += a.added;
        known += a.already_known;
    }
    let message = format!("imported {file} into {image}: added {added} behaviour(s) ({known} already known)");
    let result = Imported {
        image: &image,
        file,
        dry_run,
        added: added as usize,
        already_known: Some(known as usize),
        behaviours: Vec::new(),
    };
    p.imported(&result, &message)
}

/// `profile diff`: exit 1 when the file and the live profile differ.
async fn diff(client: &Client, file: &str, loaded: profile_file::Loaded, p: &mut Printer<'_>) -> Result<Ending> {
    let image = loaded.document.metadata.name.clone();
    let live = live(client, &image).await?;
    let d = document::diff(&loaded.observations, live.as_deref().unwrap_or_default());
    let identical = d.is_identical();
    let lines = |v: &[Observation]| v.iter().map(|o| Line(o).to_string()).collect();
    p.compared(&Compared {
        image: &image,
        file,
        exists: live.is_some(),
        identical,
        added: lines(&d.added),
        missing: lines(&d.missing),
    })?;
    Ok(if identical { Ending::Done } else { Ending::Differs })
}

async fn signals(client: &Client, command: SignalsCommand, p: &mut Printer<'_>, now: OffsetDateTime) -> Result<()> {
    let update = match command {
        SignalsCommand::List { query, since } => {
            let mut list = client.signals(&query.join(" ")).await?;
            if let Some(since) = since.map(|s| s.resolve(now)) {
                list.retain(|s: &SignalSummary| s.last_seen >= since);
            }
            return p.list(&list);
        }
        SignalsCommand::Show { id } => return p.one(&client.signal(&id).await?),
        SignalsCommand::Watch { query, after, count } => {
            let mut stream = client.watch_signals(&query.join(" "), after);
            let mut seen = 0u64;
            while count.is_none_or(|c| seen < c) {
                let Some(change) = stream.next().await else { break };
                p.event(&change?)?;
                seen += 1;
            }
            return Ok(());
        }
        SignalsCommand::Review { id, assignee } => {
            let u = SignalUpdate::new(id).status(SignalStatus::UnderReview);
            match assignee {
                Some(a) => u.assignee(a),
                None => u,
            }
        }
        SignalsCommand::Archive { id } => SignalUpdate::new(id).status(SignalStatus::Archived),
        SignalsCommand::Benign { id, anomalies } => {
            SignalUpdate::new(id).benign(if anomalies.is_empty() { Benign::All } else { Benign::Only(anomalies) })
        }
    };
    let r = client.update_signal(update).await?;
    let s = &r.signal.summary;
    let added = if r.behaviours_added > 0 {
        format!("; {} behaviour(s) added to the profile", r.behaviours_added)
    } else {
        String::new()
    };
    let message = format!("signal {} is {}{added}", s.id, s.status);
    p.done(&r, &message)
}

async fn rules(client: &Client, command: RulesCommand, p: &mut Printer<'_>) -> Result<()> {
    match command {
        RulesCommand::List => p.list(&client.rules().await?),
        RulesCommand::Get { id } => {
            let rule = client.rules().await?.into_iter().find(|r| r.id == id);
            p.one(&rule.with_context(|| format!("no notification rule {id:?}"))?)
        }
        RulesCommand::Create { file } => {
            let r = client.create_rule(rule_file::read(&file)?).await?;
            p.done(&r, &format!("created rule {} ({})", r.id, r.name))
        }
        RulesCommand::Update { file, id } => {
            let mut rule = rule_file::read(&file)?;
            if let Some(id) = id {
                rule.id = id;
            }
            if rule.id.is_empty() {
                bail!("rules update {file}: which rule? Give --id ID or an `id` key in the file");
            }
            let r = client.update_rule(rule).await?;
            p.done(&r, &format!("updated rule {} ({})", r.id, r.name))
        }
        RulesCommand::Delete { id } => {
            client.delete_rule(&id).await?;
            p.deleted("rule", &id)
        }
    }
}

/// The suppression `suppressions create` asks for.
pub fn suppression(a: SuppressionArgs) -> Suppression {
    let SuppressionArgs { name, image, event_type, process, detail } = a;
    Suppression {
        id: String::new(),
        name,
        image: image.unwrap_or_default(),
        event_type: event_type.map(EventType::from),
        process: process.unwrap_or_default(),
        detail: detail.unwrap_or_default(),
    }
}

async fn suppressions(client: &Client, command: SuppressionsCommand, p: &mut Printer<'_>) -> Result<()> {
    match command {
        SuppressionsCommand::List => p.list(&client.suppressions().await?),
        SuppressionsCommand::Create(args) => {
            let s = client.create_suppression(suppression(args)).await?;
            p.done(&s, &format!("created suppression {} ({})", s.id, s.name))
        }
        SuppressionsCommand::Delete { id } => {
            client.delete_suppression(&id).await?;
            p.deleted("suppression", &id)
        }
    }
}

async fn audit(client: &Client, a: AuditArgs, p: &mut Printer<'_>, now: OffsetDateTime) -> Result<()> {
    if let Some(AuditCommand::Verify) = a.command {
        let v = client.verify_audit().await?;
        p.one(&v)?;
        if !v.ok {
            bail!("audit trail does not verify: {}", v.error);
        }
        return Ok(());
    }
    let (since, until) = (a.since.map(|w| w.resolve(now)), a.until.map(|w| w.resolve(now)));
    p.list(&client.audit(&a.query.join(" "), since, until, a.limit).await?)
}
