//! Profile documents (`telltalectl profile export|import|diff`): a
//! `telltale.dev/v1` `SecurityProfile` (see `telltale_core::profile::document`
//! and docs/profiles-as-code.md) as YAML or JSON, and its conversion from the
//! live profile the API shows and to the behaviours `AddToProfile` takes.

use super::rule_file::{syntax, Syntax};
use std::io::Read;

use anyhow::{bail, Context, Result};
use telltale_client::{Access, BehaviourToAdd, Profile, Protocol};
use telltale_core::event::{Access as CoreAccess, Protocol as CoreProtocol};
use telltale_core::profile::document::{Header, ProfileDocument, MAX_BYTES};
use telltale_core::profile::generalize::{check_pattern, PatternError};
use telltale_core::profile::{access_bits, Behaviour, Observation};

/// Behaviours sent per `AddToProfile` call, at most (the server's default
/// request limit is 1 MiB; a behaviour with a long lineage is a few hundred
/// bytes).
pub const BEHAVIOURS_PER_REQUEST: usize = 1000;

/// A document read from a file, with its checked behaviours.
#[derive(Debug)]
pub struct Loaded {
    /// The document.
    pub document: ProfileDocument,
    /// Its behaviours, checked and normalized.
    pub observations: Vec<Observation>,
}

/// Read a profile document (`-`: stdin), at most [`MAX_BYTES`].
pub fn read(file: &str) -> Result<Loaded> {
    let source = if file == "-" { "stdin" } else { file };
    let mut bytes = Vec::new();
    let reader: Box<dyn Read> = if file == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(file).with_context(|| format!("reading {file}"))?)
    };
    reader.take(MAX_BYTES + 1).read_to_end(&mut bytes).with_context(|| format!("reading {source}"))?;
    if bytes.len() as u64 > MAX_BYTES {
        bail!("profile document {source} is larger than {} MiB: not a profile document", MAX_BYTES >> 20);
    }
    let text = String::from_utf8(bytes).with_context(|| format!("profile document {source} is not UTF-8 text"))?;
    parse(&text, file)
}

/// Parse and check a document's text; `file` names it in errors (`-`: stdin).
pub fn parse(text: &str, file: &str) -> Result<Loaded> {
    let source = if file == "-" { "stdin" } else { file };
    let syntax = syntax(text, file);
    fn from<T: serde::de::DeserializeOwned>(syntax: Syntax, text: &str) -> Result<T> {
        Ok(match syntax {
            Syntax::Json => serde_json::from_str(text)?,
            Syntax::Yaml => serde_norway::from_str(text)?,
        })
    }
    let name = match syntax {
        Syntax::Json => "JSON",
        Syntax::Yaml => "YAML",
    };
    // The header first: another version is refused as such, not for its keys.
    let header: Header = from(syntax, text).with_context(|| format!("profile document {source} ({name})"))?;
    header.check().with_context(|| format!("profile document {source}"))?;
    let document: ProfileDocument =
        from(syntax, text).with_context(|| format!("profile document {source} ({name})"))?;
    let observations = document.observations().with_context(|| format!("profile document {source}"))?;
    Ok(Loaded { document, observations })
}

fn core_access(a: Access) -> Result<CoreAccess> {
    Ok(match a {
        Access::Read => CoreAccess::Read,
        Access::Write => CoreAccess::Write,
        Access::Create => CoreAccess::Create,
        Access::Truncate => CoreAccess::Truncate,
        Access::Unknown(n) => bail!("the server sent access mode {n}, which this telltalectl does not know"),
    })
}

fn core_protocol(p: Protocol) -> Result<CoreProtocol> {
    Ok(match p {
        Protocol::Tcp => CoreProtocol::Tcp,
        Protocol::Udp => CoreProtocol::Udp,
        Protocol::Unknown(n) => bail!("the server sent protocol {n}, which this telltalectl does not know"),
    })
}

/// The behaviours of a live profile as the API shows it. Collapsed sibling
/// shapes (`report-{*}.csv`) are left out: the files they came from are
/// listed, and adding those rebuilds them.
pub fn live_observations(p: &Profile) -> Result<Vec<Observation>> {
    let mut out = Vec::new();
    for n in &p.nodes {
        let o = |behaviour| Observation { lineage: n.lineage.clone(), behaviour };
        out.push(o(Behaviour::Exec));
        for f in &n.files {
            match check_pattern(&f.pattern) {
                Ok(()) => {}
                Err(PatternError::SiblingShape(_)) => continue,
                Err(e) => bail!("the server sent file pattern {:?}, which {e}", f.pattern),
            }
            let access: Vec<CoreAccess> = f.access.iter().map(|a| core_access(*a)).collect::<Result<_>>()?;
            out.push(o(Behaviour::File { pattern: f.pattern.clone(), access: access_bits(&access) }));
        }
        for d in &n.dns {
            out.push(o(Behaviour::Dns { name: d.name.clone(), qtype: d.qtype.clone() }));
        }
        for e in &n.endpoints {
            let protocol = core_protocol(e.protocol)?;
            let port = u16::try_from(e.port).with_context(|| format!("the server sent port {}", e.port))?;
            out.push(o(if e.address.contains('/') {
                let network = e.address.parse().with_context(|| format!("the server sent range {:?}", e.address))?;
                Behaviour::ConnectRange { protocol, network, port }
            } else {
                let address = e.address.parse().with_context(|| format!("the server sent address {:?}", e.address))?;
                Behaviour::Connect { protocol, address, port }
            }));
        }
        for m in &n.mechanisms {
            let mechanism = telltale_core::event::Mechanism::from_name(m)
                .with_context(|| format!("the server sent mechanism {m:?}, which this telltalectl does not know"))?;
            out.push(o(Behaviour::Mechanism { mechanism }));
        }
    }
    Ok(out)
}

/// A live profile as a document.
pub fn export(p: &Profile) -> Result<ProfileDocument> {
    let observations = live_observations(p)?;
    Ok(ProfileDocument::from_observations(&p.image, p.tags.clone(), &observations)?)
}

fn sdk_access(bits: u8) -> Vec<Access> {
    use telltale_core::profile::access;
    [
        (access::READ, Access::Read),
        (access::WRITE, Access::Write),
        (access::CREATE, Access::Create),
        (access::TRUNCATE, Access::Truncate),
    ]
    .into_iter()
    .filter(|(bit, _)| bits & bit != 0)
    .map(|(_, a)| a)
    .collect()
}

/// The behaviours to send to `AddToProfile` (file patterns as patterns).
pub fn to_add(observations: &[Observation]) -> Result<Vec<BehaviourToAdd>> {
    use telltale_client::behaviour;
    observations
        .iter()
        .map(|o| {
            let lineage: Vec<&str> = o.lineage.iter().map(String::as_str).collect();
            let protocol = |p: CoreProtocol| match p {
                CoreProtocol::Tcp => Ok(Protocol::Tcp),
                CoreProtocol::Udp => Ok(Protocol::Udp),
                CoreProtocol::Other(n) => Err(anyhow::anyhow!("protocol {n} cannot be added (tcp or udp only)")),
            };
            Ok(match &o.behaviour {
                Behaviour::Exec => behaviour::exec(&lineage),
                Behaviour::File { pattern, access } => behaviour::file_pattern(&lineage, pattern, &sdk_access(*access)),
                Behaviour::Dns { name, qtype } => behaviour::dns(&lineage, name, qtype),
                Behaviour::Connect { protocol: p, address, port } => {
                    behaviour::connect(&lineage, protocol(*p)?, &address.to_string(), u32::from(*port))
                }
                Behaviour::ConnectRange { protocol: p, network, port } => {
                    behaviour::connect(&lineage, protocol(*p)?, &network.to_string(), u32::from(*port))
                }
                Behaviour::Mechanism { mechanism } => behaviour::mechanism(&lineage, mechanism.name()),
            })
        })
        .collect()
}

/// A document as text: YAML, or pretty JSON.
pub fn render(d: &ProfileDocument, json: bool) -> Result<String> {
    Ok(if json { serde_json::to_string_pretty(d)? + "\n" } else { serde_norway::to_string(d)? })
}

#[cfg(test)]
mod tests;
