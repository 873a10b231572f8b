//! `telltalectl`'s output, like kubectl's: `-o table` (aligned columns,
//! the default), `wide` (more columns), `json`, `yaml` and `name`
//! (`kind/name`). An empty list says so on stderr (`No signals found.`)
//! instead of printing nothing. Times are RFC 3339 (UTC, to the second in
//! tables). Everything prints from the SDK's typed values.

use std::io::Write;

use anyhow::Result;
use serde::Serialize;
use telltale_client::{
    Access, AuditEvent, AuditVerification, Behaviour, NotificationRule, NotificationTarget, Profile, ProfileAddition,
    ProfileStatus, SequencedAnomaly, Signal, SignalChange, SignalSummary, SignalUpdated, Suppression,
};
use telltale_core::profile::document::ProfileDocument;
use time::OffsetDateTime;

use super::Format;

/// Shown for an absent value.
const NONE: &str = "<none>";

/// Something `telltalectl` prints.
pub trait Resource: Serialize {
    /// The `kind` of `kind/name` (`signal`).
    const KIND: &'static str;
    /// The plural, for "No signals found.".
    const PLURAL: &'static str;
    /// The `name` of `kind/name`.
    fn name(&self) -> String;
    /// Column headers.
    fn columns(wide: bool) -> Vec<&'static str>;
    /// Its table rows (usually one).
    fn rows(&self, wide: bool) -> Vec<Vec<String>>;
    /// The text of `get`/`show` (default: its table).
    fn detail(&self, wide: bool) -> String {
        table(&Self::columns(wide), &self.rows(wide))
    }
    /// One line of a live stream (default: its first row).
    fn line(&self) -> String {
        self.rows(false).into_iter().next().unwrap_or_default().join(" ")
    }
}

/// Writes in one format to stdout and stderr (or buffers, in tests).
pub struct Printer<'a> {
    format: Format,
    out: &'a mut dyn Write,
    err: &'a mut dyn Write,
}

impl<'a> Printer<'a> {
    /// A printer of `format` to `out`, with notices to `err`.
    pub fn new(format: Format, out: &'a mut dyn Write, err: &'a mut dyn Write) -> Self {
        Printer { format, out, err }
    }

    /// Its stdout, for output written by others (shell completions).
    pub fn out(&mut self) -> &mut dyn Write {
        self.out
    }

    /// A list: a table (or "No … found." on stderr), a JSON array, a YAML
    /// sequence, or one `kind/name` per line (each name once).
    pub fn list<T: Resource>(&mut self, items: &[T]) -> Result<()> {
        match self.format {
            Format::Table | Format::Wide => {
                if items.is_empty() {
                    writeln!(self.err, "No {} found.", T::PLURAL)?;
                    return Ok(());
                }
                let wide = self.format == Format::Wide;
                let rows: Vec<Vec<String>> = items.iter().flat_map(|i| i.rows(wide)).collect();
                self.out.write_all(table(&T::columns(wide), &rows).as_bytes())?;
            }
            Format::Json => writeln!(self.out, "{}", serde_json::to_string(items)?)?,
            Format::Yaml => self.out.write_all(serde_norway::to_string(items)?.as_bytes())?,
            Format::Name => {
                let mut names: Vec<String> = items.iter().map(|i| format!("{}/{}", T::KIND, i.name())).collect();
                names.dedup();
                for n in names {
                    writeln!(self.out, "{n}")?;
                }
            }
        }
        Ok(())
    }

    /// One resource (`get`/`show`): its detail text, a JSON object, a YAML
    /// document, or its `kind/name`.
    pub fn one<T: Resource>(&mut self, item: &T) -> Result<()> {
        match self.format {
            Format::Table | Format::Wide => self.out.write_all(item.detail(self.format == Format::Wide).as_bytes())?,
            Format::Json => writeln!(self.out, "{}", serde_json::to_string(item)?)?,
            Format::Yaml => self.out.write_all(serde_norway::to_string(item)?.as_bytes())?,
            Format::Name => writeln!(self.out, "{}/{}", T::KIND, item.name())?,
        }
        Ok(())
    }

    /// The result of an action: `message` (table, wide), else the resource.
    pub fn done<T: Resource>(&mut self, item: &T, message: &str) -> Result<()> {
        match self.format {
            Format::Table | Format::Wide => writeln!(self.out, "{message}")?,
            _ => self.one(item)?,
        }
        Ok(())
    }

    /// A deletion: a message, `kind/id`, or `{"deleted": "kind/id"}`.
    pub fn deleted(&mut self, kind: &str, id: &str) -> Result<()> {
        let name = format!("{kind}/{id}");
        match self.format {
            Format::Table | Format::Wide => writeln!(self.out, "deleted {kind} {id}")?,
            Format::Json => writeln!(self.out, "{}", serde_json::json!({ "deleted": name }))?,
            Format::Yaml => {
                self.out.write_all(serde_norway::to_string(&serde_json::json!({ "deleted": name }))?.as_bytes())?
            }
            Format::Name => writeln!(self.out, "{name}")?,
        }
        Ok(())
    }

    /// One item of a live stream: a line, a JSON line, a `---` YAML
    /// document, or its `kind/name`; flushed at once.
    pub fn event<T: Resource>(&mut self, item: &T) -> Result<()> {
        match self.format {
            Format::Table | Format::Wide => writeln!(self.out, "{}", item.line())?,
            Format::Json => writeln!(self.out, "{}", serde_json::to_string(item)?)?,
            Format::Yaml => write!(self.out, "---\n{}", serde_norway::to_string(item)?)?,
            Format::Name => writeln!(self.out, "{}/{}", T::KIND, item.name())?,
        }
        self.out.flush()?;
        Ok(())
    }

    /// A profile document: YAML (yaml, table, wide), pretty JSON, or `profile/IMAGE`.
    pub fn profile_document(&mut self, image: &str, d: &ProfileDocument) -> Result<()> {
        match self.format {
            Format::Name => writeln!(self.out, "profile/{image}")?,
            f => self.out.write_all(super::profile_file::render(d, f == Format::Json)?.as_bytes())?,
        }
        Ok(())
    }

    /// What `profile import` did (or would do, with `--dry-run`: the
    /// behaviours, `+ ` each, then `message`).
    pub fn imported(&mut self, i: &Imported<'_>, message: &str) -> Result<()> {
        if matches!(self.format, Format::Table | Format::Wide) {
            for b in &i.behaviours {
                writeln!(self.out, "+ {b}")?;
            }
        }
        self.done(i, message)
    }

    /// `profile diff`: `+ ` lines (only in the file), `- ` lines (only in
    /// the profile), nothing when identical; or the comparison as a document.
    pub fn compared(&mut self, c: &Compared<'_>) -> Result<()> {
        match self.format {
            Format::Table | Format::Wide => {
                if !c.exists {
                    writeln!(self.err, "There is no profile {} yet.", c.image)?;
                }
                for a in &c.added {
                    writeln!(self.out, "+ {a}")?;
                }
                for m in &c.missing {
                    writeln!(self.out, "- {m}")?;
                }
                Ok(())
            }
            _ => self.one(c),
        }
    }
}

/// Columns padded to their widest cell, three spaces apart (kubectl's
/// layout); the last column is not padded.
pub fn table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|c| c.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = columns.iter().map(|c| (*c).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("   ");
            }
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths.get(i).copied().unwrap_or(0).saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// RFC 3339 in UTC, to the second: `2025-01-31T12:00:00Z`.
pub fn rfc3339(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        NONE.to_owned()
    } else {
        s.to_owned()
    }
}

fn or_any(s: &str) -> String {
    if s.is_empty() {
        "*".to_owned()
    } else {
        s.to_owned()
    }
}

fn accesses(a: &[Access]) -> String {
    a.iter().map(ToString::to_string).collect::<Vec<_>>().join(",")
}

/// A behaviour in one line: `exec`, `file read,write /etc/x`,
/// `dns example.com A`, `connect 10.0.0.1:443/tcp`, `mechanism io_uring`.
pub fn behaviour_text(b: &Behaviour) -> String {
    match b {
        Behaviour::Exec => "exec".into(),
        Behaviour::File { path, access } => format!("file {} {path}", accesses(access)),
        Behaviour::FilePattern { pattern, access } => format!("file {} {pattern}", accesses(access)),
        Behaviour::Dns { name, qtype } => format!("dns {name} {qtype}"),
        Behaviour::Connect { protocol, address, port } => format!("connect {address}:{port}/{protocol}"),
        Behaviour::Mechanism { name } => format!("mechanism {name}"),
        Behaviour::Unknown => "unknown".into(),
    }
}

impl Resource for ProfileStatus {
    const KIND: &'static str = "profile";
    const PLURAL: &'static str = "profiles";

    fn name(&self) -> String {
        self.image.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["IMAGE", "TYPE", "STATE", "SINCE", "BEHAVIOURS", "LAST NEW", "LEFT", "LOST"];
        if wide {
            c.extend(["LEARNING STARTED", "TAGS"]);
        }
        c
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        self.types
            .iter()
            .map(|t| {
                let mut r = vec![
                    self.image.clone(),
                    t.event_type.to_string(),
                    t.state.to_string(),
                    rfc3339(t.since),
                    t.behaviours.to_string(),
                    t.last_new_behaviour.map_or_else(|| NONE.to_owned(), rfc3339),
                    t.time_left.map_or_else(|| NONE.to_owned(), |d| humantime::format_duration(d).to_string()),
                    t.lost_events.to_string(),
                ];
                if wide {
                    r.extend([rfc3339(t.learning_started), or_none(&self.tags.join(","))]);
                }
                r
            })
            .collect()
    }
}

impl Resource for Profile {
    const KIND: &'static str = "profile";
    const PLURAL: &'static str = "profiles";

    fn name(&self) -> String {
        self.image.clone()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["IMAGE", "VERSIONS", "PROCESSES"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        vec![vec![self.image.clone(), or_none(&self.tags.join(",")), self.nodes.len().to_string()]]
    }

    /// The activity tree: each process node's lineage, then what it does.
    fn detail(&self, wide: bool) -> String {
        let mut out = format!("profile {} (versions: {})\n", self.image, self.tags.join(", "));
        for n in &self.nodes {
            out.push_str(&n.lineage.join(" -> "));
            if wide {
                out.push_str(&format!("  (first seen {}, last seen {})", rfc3339(n.first_seen), rfc3339(n.last_seen)));
            }
            out.push('\n');
            for f in &n.files {
                out.push_str(&format!("    file    {:<16} {}\n", accesses(&f.access), f.pattern));
            }
            for d in &n.dns {
                out.push_str(&format!("    dns     {:<16} {}\n", d.qtype, d.name));
            }
            for e in &n.endpoints {
                out.push_str(&format!("    connect {:<16} {}:{}\n", e.protocol.to_string(), e.address, e.port));
            }
            for m in &n.mechanisms {
                out.push_str(&format!("    uses    {m}\n"));
            }
        }
        out
    }
}

/// What `profile import` did or, with `--dry-run`, would do.
#[derive(Debug, Serialize)]
pub struct Imported<'a> {
    /// The profile.
    pub image: &'a str,
    /// The document.
    pub file: &'a str,
    /// Nothing was changed.
    pub dry_run: bool,
    /// Behaviours added (a dry run: that would be added, one line each).
    pub added: usize,
    /// Behaviours the profile already had (not known in a dry run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub already_known: Option<usize>,
    /// A dry run: the behaviours that would be added.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub behaviours: Vec<String>,
}

impl Resource for Imported<'_> {
    const KIND: &'static str = "profile";
    const PLURAL: &'static str = "profiles";

    fn name(&self) -> String {
        self.image.to_owned()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["IMAGE", "FILE", "DRY RUN", "ADDED", "ALREADY KNOWN"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        let known = self.already_known.map_or_else(|| NONE.to_owned(), |k| k.to_string());
        vec![vec![self.image.to_owned(), self.file.to_owned(), self.dry_run.to_string(), self.added.to_string(), known]]
    }
}

/// A profile document compared with the live profile (`profile diff`).
#[derive(Debug, Serialize)]
pub struct Compared<'a> {
    /// The profile.
    pub image: &'a str,
    /// The document.
    pub file: &'a str,
    /// The profile exists.
    pub exists: bool,
    /// Same behaviours.
    pub identical: bool,
    /// Only in the file.
    pub added: Vec<String>,
    /// Only in the live profile.
    pub missing: Vec<String>,
}

impl Resource for Compared<'_> {
    const KIND: &'static str = "profile";
    const PLURAL: &'static str = "profiles";

    fn name(&self) -> String {
        self.image.to_owned()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["IMAGE", "FILE", "IDENTICAL", "ONLY IN FILE", "ONLY IN PROFILE"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        vec![vec![
            self.image.to_owned(),
            self.file.to_owned(),
            self.identical.to_string(),
            self.added.len().to_string(),
            self.missing.len().to_string(),
        ]]
    }
}

/// A profile addition, named by its image.
#[derive(Debug, Serialize)]
pub struct Added<'a> {
    /// The image.
    pub image: &'a str,
    /// What was added.
    #[serde(flatten)]
    pub addition: ProfileAddition,
}

impl Resource for Added<'_> {
    const KIND: &'static str = "profile";
    const PLURAL: &'static str = "profiles";

    fn name(&self) -> String {
        self.image.to_owned()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["IMAGE", "ADDED", "ALREADY KNOWN"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        vec![vec![self.image.to_owned(), self.addition.added.to_string(), self.addition.already_known.to_string()]]
    }
}

fn summary_columns(wide: bool) -> Vec<&'static str> {
    let mut c = vec!["ID", "SEVERITY", "STATUS", "CONTAINER", "IMAGE", "ANOMALIES", "LAST SEEN"];
    if wide {
        c.extend(["FIRST SEEN", "ASSIGNEE", "RULE", "POD", "NAMESPACE"]);
    }
    c
}

fn summary_row(s: &SignalSummary, wide: bool) -> Vec<String> {
    let c = &s.container;
    let mut r = vec![
        s.id.clone(),
        s.severity.to_string(),
        s.status.to_string(),
        c.id.clone(),
        format!("{}:{}", c.image, c.tag),
        s.anomalies.to_string(),
        rfc3339(s.last_seen),
    ];
    if wide {
        r.extend([
            rfc3339(s.first_seen),
            s.assignee.clone().unwrap_or_else(|| NONE.to_owned()),
            s.rule_id.clone(),
            or_none(&c.pod),
            or_none(&c.namespace),
        ]);
    }
    r
}

impl Resource for SignalSummary {
    const KIND: &'static str = "signal";
    const PLURAL: &'static str = "signals";

    fn name(&self) -> String {
        self.id.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        summary_columns(wide)
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        vec![summary_row(self, wide)]
    }
}

impl Resource for Signal {
    const KIND: &'static str = "signal";
    const PLURAL: &'static str = "signals";

    fn name(&self) -> String {
        self.summary.id.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        summary_columns(wide)
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        vec![summary_row(&self.summary, wide)]
    }

    /// The overview: header, What happened, Suggested next steps, Anomaly events.
    fn detail(&self, _wide: bool) -> String {
        self.to_string()
    }
}

impl Resource for SignalUpdated {
    const KIND: &'static str = "signal";
    const PLURAL: &'static str = "signals";

    fn name(&self) -> String {
        self.signal.summary.id.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        summary_columns(wide)
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        vec![summary_row(&self.signal.summary, wide)]
    }
}

impl Resource for SignalChange {
    const KIND: &'static str = "signal";
    const PLURAL: &'static str = "signal changes";

    fn name(&self) -> String {
        self.signal.id.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["SEQ", "CHANGE"];
        c.extend(summary_columns(wide));
        c
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        let mut r = vec![self.sequence.to_string(), if self.created { "created" } else { "updated" }.to_owned()];
        r.extend(summary_row(&self.signal, wide));
        vec![r]
    }

    /// `#12 created signal/ID severity=high status=open container=app image=web:v1 anomalies=2`.
    fn line(&self) -> String {
        let s = &self.signal;
        format!(
            "#{} {} signal/{} severity={} status={} container={} image={}:{} anomalies={} last_seen={}",
            self.sequence,
            if self.created { "created" } else { "updated" },
            s.id,
            s.severity,
            s.status,
            s.container.id,
            s.container.image,
            s.container.tag,
            s.anomalies,
            rfc3339(s.last_seen)
        )
    }
}

impl Resource for SequencedAnomaly {
    const KIND: &'static str = "anomaly";
    const PLURAL: &'static str = "anomalies";

    fn name(&self) -> String {
        self.anomaly.id.clone()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["SEQ", "TIME", "TYPE", "ID", "CONTAINER", "IMAGE", "BEHAVIOUR", "LINEAGE"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        let a = &self.anomaly;
        vec![vec![
            self.sequence.to_string(),
            rfc3339(a.time),
            a.event_type.to_string(),
            a.id.clone(),
            a.container.id.clone(),
            format!("{}:{}", a.container.image, a.container.tag),
            behaviour_text(&a.behaviour),
            a.lineage.join(" -> "),
        ]]
    }

    /// `#7 2025-01-31T12:00:00Z file a-1 container=app image=web:v1 file read /etc/passwd lineage=/bin/sh -> /bin/cat`.
    fn line(&self) -> String {
        let a = &self.anomaly;
        format!(
            "#{} {} {} {} container={} image={}:{} {} lineage={}",
            self.sequence,
            rfc3339(a.time),
            a.event_type,
            a.id,
            a.container.id,
            a.container.image,
            a.container.tag,
            behaviour_text(&a.behaviour),
            a.lineage.join(" -> ")
        )
    }
}

fn target_text(t: &NotificationTarget) -> String {
    match t {
        NotificationTarget::Slack { url } | NotificationTarget::Webhook { url, .. } => format!("{}:{url}", t.kind()),
        NotificationTarget::Email { server, to, .. } => format!("email:{}@{server}", to.join(",")),
        NotificationTarget::Unknown => t.kind().to_owned(),
    }
}

impl Resource for NotificationRule {
    const KIND: &'static str = "rule";
    const PLURAL: &'static str = "notification rules";

    fn name(&self) -> String {
        self.id.clone()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["ID", "NAME", "ENABLED", "QUERY", "TARGETS"];
        if wide {
            c.extend(["ON UPDATE", "DESTINATIONS"]);
        }
        c
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        let kinds: Vec<&str> = self.targets.iter().map(NotificationTarget::kind).collect();
        let mut r = vec![
            self.id.clone(),
            self.name.clone(),
            self.enabled.to_string(),
            or_any(&self.query),
            or_none(&kinds.join(",")),
        ];
        if wide {
            let dest: Vec<String> = self.targets.iter().map(target_text).collect();
            r.extend([self.notify_on_update.to_string(), or_none(&dest.join(" "))]);
        }
        vec![r]
    }
}

impl Resource for Suppression {
    const KIND: &'static str = "suppression";
    const PLURAL: &'static str = "suppressions";

    fn name(&self) -> String {
        self.id.clone()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["ID", "NAME", "IMAGE", "TYPE", "PROCESS", "DETAIL"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        vec![vec![
            self.id.clone(),
            self.name.clone(),
            or_any(&self.image),
            self.event_type.map_or_else(|| "*".to_owned(), |t| t.to_string()),
            or_any(&self.process),
            or_any(&self.detail),
        ]]
    }
}

impl Resource for AuditEvent {
    const KIND: &'static str = "audit";
    const PLURAL: &'static str = "audit events";

    fn name(&self) -> String {
        self.sequence.to_string()
    }

    fn columns(wide: bool) -> Vec<&'static str> {
        let mut c = vec!["SEQ", "TIME", "PRINCIPAL", "ASSET TYPE", "ASSET ID", "ACTION", "OUTCOME"];
        if wide {
            c.extend(["EVT NAME", "AFTER"]);
        }
        c
    }

    fn rows(&self, wide: bool) -> Vec<Vec<String>> {
        let mut r = vec![
            self.sequence.to_string(),
            rfc3339(self.time),
            self.principal.clone(),
            self.asset_type.clone(),
            or_none(&self.asset_id),
            self.action.clone(),
            self.outcome.clone(),
        ];
        if wide {
            r.extend([self.evt_name.clone(), self.after.as_ref().map_or_else(|| NONE.to_owned(), ToString::to_string)]);
        }
        vec![r]
    }
}

impl Resource for AuditVerification {
    const KIND: &'static str = "audit";
    const PLURAL: &'static str = "audit verifications";

    fn name(&self) -> String {
        if self.ok { "intact" } else { "tampered" }.to_owned()
    }

    fn columns(_wide: bool) -> Vec<&'static str> {
        vec!["OK", "RECORDS", "ERROR"]
    }

    fn rows(&self, _wide: bool) -> Vec<Vec<String>> {
        vec![vec![self.ok.to_string(), self.records.to_string(), or_none(&self.error)]]
    }

    fn detail(&self, _wide: bool) -> String {
        if self.ok {
            format!("audit trail intact: {} records, hash chain verified\n", self.records)
        } else {
            format!("audit trail TAMPERED: {}\n", self.error)
        }
    }
}

#[cfg(test)]
mod tests;
