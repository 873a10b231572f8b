//! `telltalectl`'s command line: the clap definitions (shell completions and
//! man pages are generated from them). Running a command is [`run`], output
//! is [`print`](mod@print).

pub mod add;
pub mod print;
pub mod profile_file;
pub mod rule_file;
pub mod run;
pub mod when;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use telltale_client::EventType;

use when::When;

/// The whole command line.
#[derive(Debug, Parser)]
#[command(
    name = "telltalectl",
    version,
    about = "Talk to a telltale sidecar's API.",
    after_help = "Times (--since, --until) are durations before now (30s, 15m, 1h, 2d) or RFC 3339 times \
                  (2025-01-31T12:00:00Z). Output (-o): table (default), wide, json, yaml, name."
)]
pub struct Cli {
    /// Where and how to connect.
    #[command(flatten)]
    pub connection: Connection,
    /// Output format of lists, resources and streams.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Format::Table, global = true)]
    pub output: Format,
    /// Short for `-o json`.
    #[arg(long, global = true, conflicts_with = "output")]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The output format asked for (`--json` is `-o json`).
    pub fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output
        }
    }
}

/// The daemon's local admin socket in its default data directory (the
/// sidecar's `api.socket` default: `<data_dir>/api.sock`).
pub const DEFAULT_SOCKET: &str = "/var/lib/telltale/api.sock";

/// The TCP address used when nothing else is given and there is no socket.
pub const DEFAULT_ADDR: &str = "http://127.0.0.1:7443";

/// Server address, credentials and TLS.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Server address: http://HOST:PORT, https://HOST:PORT or unix:///PATH/api.sock. Default: the local
    /// admin socket /var/lib/telltale/api.sock if it exists, else http://127.0.0.1:7443 (TCP needs a token).
    #[arg(long, env = "TELLTALE_ADDR", global = true)]
    pub addr: Option<String>,
    /// The daemon's local admin socket (`--addr unix://PATH`; wins over --addr): admin without a token,
    /// for callers outside the containers the daemon watches.
    #[arg(long, value_name = "PATH", env = "TELLTALE_SOCKET", global = true)]
    pub socket: Option<PathBuf>,
    /// Bearer token.
    #[arg(long, env = "TELLTALE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// CA certificate (PEM) to verify the server (TLS).
    #[arg(long, value_name = "PEM", global = true)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM), for mTLS.
    #[arg(long, value_name = "PEM", global = true, requires = "key")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM), for mTLS.
    #[arg(long, value_name = "PEM", global = true, requires = "cert")]
    pub key: Option<PathBuf>,
    /// Server name to verify in its certificate.
    #[arg(long, global = true)]
    pub domain: Option<String>,
}

impl Connection {
    /// The address to connect to: `--socket`, else `--addr`, else the
    /// default socket when `socket_exists` says it exists, else [`DEFAULT_ADDR`].
    pub fn address(&self, socket_exists: impl FnOnce(&std::path::Path) -> bool) -> String {
        if let Some(s) = &self.socket {
            return format!("{}{}", telltale_client::UNIX_SCHEME, s.display());
        }
        if let Some(a) = &self.addr {
            return a.clone();
        }
        if socket_exists(std::path::Path::new(DEFAULT_SOCKET)) {
            return format!("{}{DEFAULT_SOCKET}", telltale_client::UNIX_SCHEME);
        }
        DEFAULT_ADDR.to_owned()
    }
}

/// `-o`: how to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns (the default); details for a single resource.
    Table,
    /// Columns with more of them.
    Wide,
    /// JSON: one document (a list is an array); streams: one object per line.
    Json,
    /// YAML: one document (a list is a sequence); streams: `---` separated documents.
    Yaml,
    /// `kind/name` per resource (`signal/<id>`), for scripts.
    Name,
}

/// An event type, as given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TypeArg {
    /// A program was executed.
    Exec,
    /// A file was opened.
    File,
    /// A DNS name was resolved.
    Dns,
    /// A connection was made.
    Connect,
}

impl From<TypeArg> for EventType {
    fn from(t: TypeArg) -> Self {
        match t {
            TypeArg::Exec => EventType::Exec,
            TypeArg::File => EventType::File,
            TypeArg::Dns => EventType::Dns,
            TypeArg::Connect => EventType::Connect,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Learning status per profile and event type.
    Status {
        /// Only this image.
        image: Option<String>,
    },
    /// Stream anomalies (live; `--after` to replay retained ones).
    Watch(WatchArgs),
    /// Profiles: show, export, import, diff, add behaviours.
    Profile {
        /// What to do.
        #[command(subcommand)]
        command: ProfileCommand,
    },
    /// Signals: anomalies grouped per container.
    Signals {
        /// What to do.
        #[command(subcommand)]
        command: SignalsCommand,
    },
    /// Notification rules (admin).
    Rules {
        /// What to do.
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Suppression rules: matching anomalies are learned instead of reported.
    Suppressions {
        /// What to do.
        #[command(subcommand)]
        command: SuppressionsCommand,
    },
    /// The audit trail: `audit [QUERY]`, or `audit verify`.
    Audit(AuditArgs),
    /// Print a shell completion script (e.g. `telltalectl completion bash > /etc/bash_completion.d/telltalectl`).
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Write man pages (telltalectl.1 and one per subcommand) into DIR.
    Man {
        /// Output directory (created if missing).
        dir: PathBuf,
    },
}

/// `telltalectl watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Start after this sequence number (0: all retained).
    #[arg(long, default_value_t = 0)]
    pub after: u64,
    /// Only this image.
    #[arg(long)]
    pub image: Option<String>,
    /// Only this container (id or name).
    #[arg(long)]
    pub container: Option<String>,
    /// Only this event type.
    #[arg(long = "type", value_enum)]
    pub event_type: Option<TypeArg>,
    /// Stop after this many anomalies.
    #[arg(long)]
    pub count: Option<u64>,
}

/// `telltalectl profile ...`.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// Show a profile's activity tree.
    #[command(visible_alias = "get")]
    Show {
        /// Short image name.
        image: String,
    },
    /// Export a profile as a `telltale.dev/v1` SecurityProfile document:
    /// YAML (`-o yaml`, the default) or JSON (`-o json`).
    Export {
        /// Short image name.
        image: String,
    },
    /// Add the behaviours of a SecurityProfile document (YAML or JSON) to
    /// the profile it names, creating the profile if there is none yet.
    Import {
        /// The document (`-`: stdin).
        file: String,
        /// Print what would be added; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare a SecurityProfile document with the live profile: `+` only
    /// in the file, `-` only in the profile. Exit 0 when identical, 1 when
    /// they differ (like diff), 2 on trouble.
    Diff {
        /// The document (`-`: stdin).
        file: String,
    },
    /// Add a behaviour to a profile: it is never reported again.
    Add(Box<AddArgs>),
}

/// `telltalectl profile add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// Short image name.
    pub image: String,
    /// A process node: its executable (use --parent for its ancestors). A
    /// byte that is not UTF-8 is written `\xNN` (`/opt/run\xff`), as events
    /// show it; an argument that is not UTF-8 is taken as its bytes.
    #[arg(long, group = "what", value_name = "PATH", value_parser = add::NameParser)]
    pub exec: Option<String>,
    /// A file path opened (with --access) by --process; not UTF-8: as --exec.
    #[arg(long, group = "what", requires = "access", value_name = "PATH", value_parser = add::NameParser)]
    pub file: Option<String>,
    /// Access of --file: r, w or rw.
    #[arg(long, value_parser = ["r", "w", "rw"])]
    pub access: Option<String>,
    /// A DNS name resolved by --process.
    #[arg(long, group = "what", value_name = "NAME")]
    pub dns: Option<String>,
    /// DNS query type of --dns.
    #[arg(long = "dns-type", default_value = "A")]
    pub dns_type: String,
    /// An endpoint ADDR:PORT/PROTO (ADDR may be a CIDR; port 0 = any) used by --process.
    #[arg(long, group = "what", value_name = "ADDR:PORT/PROTO")]
    pub connect: Option<String>,
    /// A mechanism the sensors cannot see through (io_uring) used by --process.
    #[arg(long, group = "what", value_parser = ["io_uring"], value_name = "NAME")]
    pub mechanism: Option<String>,
    /// The process (executable path) the --file/--dns/--connect/--mechanism behaviour belongs to.
    #[arg(long, value_name = "PATH", value_parser = add::NameParser)]
    pub process: Option<String>,
    /// Ancestors of the process, outermost first (repeat).
    #[arg(long = "parent", value_name = "PATH", value_parser = add::NameParser)]
    pub parents: Vec<String>,
}

/// `telltalectl signals ...`.
#[derive(Debug, Subcommand)]
pub enum SignalsCommand {
    /// List signals (newest first), optionally filtered: `status:open severity:high`.
    #[command(visible_alias = "ls")]
    List {
        /// Facet query.
        query: Vec<String>,
        /// Only signals seen since this time (1h, or an RFC 3339 time).
        #[arg(long, value_parser = when::parse, value_name = "TIME")]
        since: Option<When>,
    },
    /// Show a signal: what happened, next steps, anomaly events.
    #[command(visible_alias = "get")]
    Show {
        /// Signal id.
        id: String,
    },
    /// Stream signal creations and updates (live; `--after` to replay retained ones).
    Watch {
        /// Facet query over signal attributes.
        query: Vec<String>,
        /// Start after this sequence number (0: all retained).
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Stop after this many changes.
        #[arg(long)]
        count: Option<u64>,
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
        #[arg(long = "anomaly", value_name = "ANOMALY_ID")]
        anomalies: Vec<String>,
    },
}

/// `telltalectl rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// List rules (secrets redacted).
    #[command(visible_alias = "ls")]
    List,
    /// Show one rule (secrets redacted).
    Get {
        /// Rule id.
        id: String,
    },
    /// Create a rule from a JSON or YAML file: name, enabled, query,
    /// targets (kind: slack|webhook|email), notify_on_update.
    Create {
        /// The file (`-`: stdin).
        file: String,
    },
    /// Replace a rule with a JSON or YAML file (as `create`, with its id).
    Update {
        /// The file (`-`: stdin).
        file: String,
        /// The rule's id (default: the file's `id`).
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete a rule.
    Delete {
        /// Rule id.
        id: String,
    },
}

/// `telltalectl suppressions ...`.
#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// List suppression rules.
    #[command(visible_alias = "ls")]
    List,
    /// Create a suppression rule; at least one of --image, --process and
    /// --detail must narrow it (`*` is a wildcard).
    Create(SuppressionArgs),
    /// Delete a suppression rule.
    Delete {
        /// Suppression id.
        id: String,
    },
}

/// `telltalectl suppressions create`.
#[derive(Debug, Args)]
pub struct SuppressionArgs {
    /// What it is for.
    #[arg(long)]
    pub name: String,
    /// Short image name pattern.
    #[arg(long)]
    pub image: Option<String>,
    /// Only this event type (default: any).
    #[arg(long = "type", value_enum)]
    pub event_type: Option<TypeArg>,
    /// Executable of the process (pattern).
    #[arg(long, value_name = "PATH")]
    pub process: Option<String>,
    /// File pattern, DNS name, or ADDRESS:PORT.
    #[arg(long)]
    pub detail: Option<String>,
}

/// `telltalectl audit`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditArgs {
    /// `verify` instead of a query.
    #[command(subcommand)]
    pub command: Option<AuditCommand>,
    /// Facet query, e.g. '@evt.name:"Cloud Security Platform" @asset.type:security_profile'.
    pub query: Vec<String>,
    /// From this time (1h, or an RFC 3339 time).
    #[arg(long, visible_alias = "from", value_parser = when::parse, value_name = "TIME")]
    pub since: Option<When>,
    /// Up to this time (1h, or an RFC 3339 time).
    #[arg(long, visible_alias = "to", value_parser = when::parse, value_name = "TIME")]
    pub until: Option<When>,
    /// Most recent N.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
}

/// `telltalectl audit verify`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of the whole trail (admin); exit 1 if it does not verify.
    Verify,
}

#[cfg(test)]
mod tests;
