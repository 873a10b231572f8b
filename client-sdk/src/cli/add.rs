//! `telltalectl profile add`: its options → the behaviour to add.

use anyhow::{bail, Context, Result};
use telltale_client::{behaviour, Access, BehaviourToAdd, Protocol};

use super::AddArgs;

/// A path on the command line, as the sensors name it: an argument that
/// is UTF-8 is taken as written (`/tmp/a\xff`: the server reads the escapes,
/// `core::text`), one that is not as its own bytes, escaped the same way
/// (`"$(printf '/tmp/a\377')"` is `/tmp/a\xff`).
#[derive(Debug, Clone, Copy)]
pub struct NameParser;

impl clap::builder::TypedValueParser for NameParser {
    type Value = String;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<String, clap::Error> {
        use std::os::unix::ffi::OsStrExt;
        Ok(match value.to_str() {
            Some(s) => s.to_owned(),
            None => telltale_core::text::name_from_bytes(value.as_bytes()).into_owned(),
        })
    }
}

/// `ADDR:PORT/PROTO` (ADDR may be a CIDR or a bracketed IPv6 address; no
/// `/PROTO` means tcp).
pub fn parse_connect(spec: &str) -> Result<(String, u32, Protocol)> {
    let (addr_port, proto_name) = match spec.rsplit_once('/') {
        // A CIDR without a protocol: `10.0.0.0/8:0`.
        Some((_, tail)) if tail.contains(':') => (spec, "tcp"),
        Some(split) => split,
        None => (spec, "tcp"),
    };
    let protocol = match proto_name {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        other => bail!("--connect {spec}: protocol {other:?} is not tcp or udp"),
    };
    // CIDR: ADDR/NN:PORT/PROTO has two slashes; split the port at the last ':'.
    let (addr, port) = addr_port.rsplit_once(':').with_context(|| format!("--connect {spec}: use ADDR:PORT/PROTO"))?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    let port: u32 = port.parse().with_context(|| format!("--connect {spec}: bad port {port:?}"))?;
    Ok((addr.to_owned(), port, protocol))
}

impl AddArgs {
    /// The behaviour these options describe.
    pub fn behaviour(&self) -> Result<BehaviourToAdd> {
        let mut lineage: Vec<&str> = self.parents.iter().map(String::as_str).collect();
        if let Some(exe) = &self.exec {
            lineage.push(exe);
            return Ok(behaviour::exec(&lineage));
        }
        let process = || {
            self.process.as_deref().context("--file/--dns/--connect/--mechanism need --process PATH (the executable)")
        };
        if let Some(path) = &self.file {
            let access = match self.access.as_deref() {
                Some("r") => vec![Access::Read],
                Some("w") => vec![Access::Write],
                Some("rw") => vec![Access::Read, Access::Write],
                other => bail!("--access {other:?}: use r, w or rw"),
            };
            lineage.push(process()?);
            return Ok(behaviour::file(&lineage, path, &access));
        }
        if let Some(name) = &self.dns {
            lineage.push(process()?);
            return Ok(behaviour::dns(&lineage, name, &self.dns_type));
        }
        if let Some(spec) = &self.connect {
            let (addr, port, protocol) = parse_connect(spec)?;
            lineage.push(process()?);
            return Ok(behaviour::connect(&lineage, protocol, &addr, port));
        }
        if let Some(name) = &self.mechanism {
            lineage.push(process()?);
            return Ok(behaviour::mechanism(&lineage, name));
        }
        bail!("say what to add: --exec, --file, --dns, --connect or --mechanism")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use telltale_client::Behaviour;

    #[test]
    fn connect_specs() {
        let ok = |s: &str| parse_connect(s).expect(s);
        assert_eq!(ok("10.0.0.1:443/tcp"), ("10.0.0.1".into(), 443, Protocol::Tcp));
        assert_eq!(ok("10.0.0.0/8:0/udp"), ("10.0.0.0/8".into(), 0, Protocol::Udp));
        assert_eq!(ok("10.0.0.0/8:0"), ("10.0.0.0/8".into(), 0, Protocol::Tcp));
        assert_eq!(ok("[2001:db8::1]:53/udp"), ("2001:db8::1".into(), 53, Protocol::Udp));
        assert_eq!(ok("192.0.2.7:80"), ("192.0.2.7".into(), 80, Protocol::Tcp));
        assert!(parse_connect("10.0.0.1:80/sctp").unwrap_err().to_string().contains("sctp"));
        assert!(parse_connect("10.0.0.1/tcp").unwrap_err().to_string().contains("ADDR:PORT"));
        assert!(parse_connect("10.0.0.1:http/tcp").unwrap_err().to_string().contains("bad port"));
    }

    fn args(image: &str) -> AddArgs {
        AddArgs {
            image: image.into(),
            exec: None,
            file: None,
            access: None,
            dns: None,
            dns_type: "A".into(),
            connect: None,
            mechanism: None,
            process: None,
            parents: vec!["/bin/init".into()],
        }
    }

    #[test]
    fn each_kind_of_behaviour() {
        let b = AddArgs { exec: Some("/bin/x".into()), ..args("web") }.behaviour().expect("exec");
        assert_eq!(
            b,
            BehaviourToAdd { lineage: vec!["/bin/init".into(), "/bin/x".into()], behaviour: Behaviour::Exec }
        );
        let b = AddArgs {
            file: Some("/etc/x".into()),
            access: Some("rw".into()),
            process: Some("/bin/a".into()),
            ..args("web")
        }
        .behaviour()
        .expect("file");
        assert_eq!(b.behaviour, Behaviour::File { path: "/etc/x".into(), access: vec![Access::Read, Access::Write] });
        assert_eq!(b.lineage, vec!["/bin/init".to_owned(), "/bin/a".to_owned()]);
        let b = AddArgs { dns: Some("example.com".into()), process: Some("/bin/a".into()), ..args("web") }
            .behaviour()
            .expect("dns");
        assert_eq!(b.behaviour, Behaviour::Dns { name: "example.com".into(), qtype: "A".into() });
        let b = AddArgs { connect: Some("10.0.0.0/8:0/tcp".into()), process: Some("/bin/a".into()), ..args("web") }
            .behaviour()
            .expect("connect");
        assert_eq!(b.behaviour, Behaviour::Connect { protocol: Protocol::Tcp, address: "10.0.0.0/8".into(), port: 0 });
        let b = AddArgs { mechanism: Some("io_uring".into()), process: Some("/bin/a".into()), ..args("web") }
            .behaviour()
            .expect("mechanism");
        assert_eq!(b.lineage, vec!["/bin/init", "/bin/a"]);
        assert_eq!(b.behaviour, Behaviour::Mechanism { name: "io_uring".into() });
    }

    #[test]
    fn paths_that_are_not_utf8_are_escaped_or_taken_as_written() {
        use clap::Parser;
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let add = |file: &OsStr| {
            let argv: [&OsStr; 10] = [
                "telltalectl".as_ref(),
                "profile".as_ref(),
                "add".as_ref(),
                "web".as_ref(),
                "--file".as_ref(),
                file,
                "--access".as_ref(),
                "r".as_ref(),
                "--process".as_ref(),
                OsStr::from_bytes(b"/opt/run\xfe"),
            ];
            match super::super::Cli::try_parse_from(argv).expect("parses").command {
                super::super::Command::Profile { command: super::super::ProfileCommand::Add(a) } => {
                    a.behaviour().expect("file")
                }
                other => panic!("{other:?}"),
            }
        };
        let raw = add(OsStr::from_bytes(b"/tmp/a\xff"));
        assert_eq!(raw.behaviour, Behaviour::File { path: "/tmp/a\\xff".into(), access: vec![Access::Read] });
        assert_eq!(raw.lineage, ["/opt/run\\xfe"]);
        assert_eq!(add(OsStr::new("/tmp/a\\xff")), raw, "the escaped form, as typed");
        // Not UTF-8 and holding the text `\xff`: that backslash is escaped.
        let both = add(OsStr::from_bytes(b"/tmp/\\xff\xff"));
        assert_eq!(both.behaviour, Behaviour::File { path: "/tmp/\\x5cxff\\xff".into(), access: vec![Access::Read] });
    }

    #[test]
    fn missing_parts_are_named() {
        let e = AddArgs { dns: Some("example.com".into()), ..args("web") }.behaviour().unwrap_err();
        assert!(e.to_string().contains("--process"), "{e}");
        let e = args("web").behaviour().unwrap_err();
        assert!(e.to_string().contains("--exec, --file, --dns, --connect or --mechanism"), "{e}");
    }
}
