//! Output formats of `telltale trace`: JSON lines and readable text.

use std::borrow::Cow;
use std::fmt::Write as _;

use time::format_description::well_known::Rfc3339;

use crate::sensor::Counters;
use telltale_core::event::{Event, EventKind};
// Control and bidi characters escaped: a hostile path cannot forge output
// lines or drive the terminal.
use telltale_core::text::escape as clean;

/// One JSON object and a newline.
pub fn json_line(event: &Event) -> String {
    // Serializing these plain types cannot fail.
    let mut s = serde_json::to_string(event).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    s.push('\n');
    s
}

/// One readable line and a newline.
pub fn text_line(event: &Event) -> String {
    let time = event.time.format(&Rfc3339).unwrap_or_default();
    let p = &event.process;
    let mut s = format!("{time} {:<7} pid={} ppid={} ", event.kind.name(), p.pid, p.ppid);
    match &event.kind {
        EventKind::Exec => {
            let args: Vec<Cow<'_, str>> = p.args.iter().map(|a| clean(a)).collect();
            let _ = write!(s, "{} [{}]", clean(&p.path), args.join(" "));
            if p.args_truncated {
                s.push_str(" (args truncated)");
            }
            if let Some(i) = &p.interpreter {
                let _ = write!(s, " interpreter={}", clean(i));
            }
        }
        EventKind::File { file } => {
            let access: Vec<&str> = file.access.iter().map(|a| a.name()).collect();
            let _ = write!(s, "{} {} {}", clean(&p.path), access.join(","), clean(&file.path));
            if file.truncated {
                s.push_str(" (path truncated)");
            }
        }
        EventKind::Dns { dns } => {
            let _ = write!(s, "{} {} @{}", clean(&p.path), dns.protocol, dns.server);
            for q in &dns.questions {
                let _ = write!(s, " {} {}", clean(&q.name), clean(&q.qtype));
            }
        }
        EventKind::Connect { connect } => {
            let addr = std::net::SocketAddr::new(connect.address, connect.port);
            let _ = write!(s, "{} {} {}", clean(&p.path), connect.protocol, addr);
        }
        EventKind::Mechanism { mechanism } => {
            let _ = write!(s, "{} {mechanism}", clean(&p.path));
        }
    }
    if !p.ancestors.is_empty() {
        let anc: Vec<Cow<'_, str>> = p.ancestors.iter().map(|a| clean(a)).collect();
        let _ = write!(s, " <- {}", anc.join(" <- "));
    }
    s.push('\n');
    s
}

/// The human summary printed to stderr at the end of a trace.
pub fn summary_text(printed: u64, c: &Counters) -> String {
    let t = c.events();
    format!(
        "telltale: {printed} events printed (exec {}, file {}, dns {}, connect {}, mechanism {} emitted by the kernel); \
         {} repeats dropped in kernel; {} records lost; {} malformed DNS packets; {} truncated; {} undecodable\n",
        c.exec.emitted,
        c.file.emitted,
        c.dns.emitted,
        c.connect.emitted,
        c.mechanism.emitted,
        t.dropped_repeats,
        t.lost + c.exit.lost,
        c.malformed_dns,
        t.truncated,
        c.undecodable,
    )
}

/// The summary as one JSON object (stderr, with `--json`).
pub fn summary_json(printed: u64, c: &Counters) -> String {
    let t = c.events();
    let v = serde_json::json!({
        "summary": {
            "events_printed": printed,
            "events_emitted": t.emitted,
            "repeats_dropped_in_kernel": t.dropped_repeats,
            "records_lost": t.lost + c.exit.lost,
            "malformed_dns_packets": c.malformed_dns,
            "truncated": t.truncated,
            "undecodable": c.undecodable,
            "by_kind": {"exec": c.exec, "file": c.file, "dns": c.dns, "connect": c.connect, "mechanism": c.mechanism},
        }
    });
    format!("{v}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_core::event::{Access, FileAccess, Process};
    use time::OffsetDateTime;

    fn ev(path: &str) -> Event {
        Event {
            time: OffsetDateTime::UNIX_EPOCH,
            cgroup_id: 5,
            process: Process {
                pid: 2,
                ppid: 1,
                uid: 0,
                gid: 0,
                comm: "cat".into(),
                path: "/usr/bin/cat".into(),
                interpreter: None,
                args: vec!["cat".into(), path.into()],
                args_truncated: false,
                ancestors: vec!["/bin/sh".into()],
            },
            kind: EventKind::File {
                file: FileAccess { path: path.into(), access: vec![Access::Read], truncated: false },
            },
            dedup_key: 0,
        }
    }

    #[test]
    fn json_has_the_documented_fields() {
        let v: serde_json::Value = serde_json::from_str(&json_line(&ev("/etc/hostname"))).expect("json");
        assert_eq!(v["kind"], "file");
        assert_eq!(v["time"], "1970-01-01T00:00:00Z");
        assert_eq!(v["cgroup_id"], 5);
        assert_eq!(v["process"]["pid"], 2);
        assert_eq!(v["process"]["ancestors"][0], "/bin/sh");
        assert_eq!(v["file"]["path"], "/etc/hostname");
        assert_eq!(v["file"]["access"][0], "read");
    }

    #[test]
    fn hostile_paths_cannot_forge_lines() {
        let line = text_line(&ev("/tmp/x\n2026 exec fake"));
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.contains("\\n"));
        let json = json_line(&ev("/tmp/x\n\u{1b}[31m"));
        assert_eq!(json.matches('\n').count(), 1);
    }
}
