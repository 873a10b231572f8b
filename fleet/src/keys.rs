//! The key layout in etcd, and the behaviour identity (a hash) that makes
//! concurrent additions from many replicas land on one key.
//!
//! ```text
//! {prefix}{cluster}/profiles/{image}/b/{sha256 hex}   one behaviour (one access bit), create-only
//! {prefix}{cluster}/profiles/{image}/clock/{type}     lifecycle of one event type, CAS
//! ```

use sha2::{Digest, Sha256};
use telltale_core::profile::{Behaviour, EventType, Observation};

/// Why a short image name cannot be a key segment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("image name {image:?} cannot name a fleet profile: {reason}")]
pub struct ImageNameError {
    /// The name.
    pub image: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Longest short image name (a path segment of the key).
const MAX_IMAGE_LEN: usize = 255;

/// Check a short image name (`cws-webapp`): the characters image references
/// allow in their last component, lower case, at most 255 bytes.
pub fn check_image(image: &str) -> Result<(), ImageNameError> {
    let err = |reason| Err(ImageNameError { image: image.to_owned(), reason });
    if image.is_empty() {
        return err("empty");
    }
    if image.len() > MAX_IMAGE_LEN {
        return err("longer than 255 bytes");
    }
    if !image.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-+".contains(&b)) {
        return err("only a-z, 0-9 and . _ - + are allowed");
    }
    if image == "." || image == ".." {
        return err("not a name");
    }
    Ok(())
}

/// The part of a key after the profiles prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Key {
    /// A behaviour.
    Behaviour {
        /// Short image name.
        image: String,
        /// Its hash (hex).
        hash: String,
    },
    /// A lifecycle clock.
    Clock {
        /// Short image name.
        image: String,
        /// Event type.
        event_type: EventType,
    },
}

/// Key names of one fleet (prefix + cluster).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    profiles: String,
}

impl Layout {
    /// The layout under `{prefix}{cluster}/`.
    pub(crate) fn new(prefix: &str, cluster: &str) -> Self {
        Self { profiles: format!("{prefix}{cluster}/profiles/") }
    }

    /// Every profile key starts with this (what a replica watches).
    pub(crate) fn profiles(&self) -> &str {
        &self.profiles
    }

    /// Every key of one image starts with this.
    pub(crate) fn image(&self, image: &str) -> String {
        format!("{}{image}/", self.profiles)
    }

    /// The key of a behaviour.
    pub(crate) fn behaviour(&self, image: &str, hash: &str) -> String {
        format!("{}{image}/b/{hash}", self.profiles)
    }

    /// The key of a clock.
    pub(crate) fn clock(&self, image: &str, t: EventType) -> String {
        format!("{}{image}/clock/{}", self.profiles, t.name())
    }

    /// Parse a key under [`Layout::profiles`]; None for anything else
    /// (keys a later version may add are ignored, not errors).
    pub(crate) fn parse(&self, key: &[u8]) -> Option<Key> {
        let rest = std::str::from_utf8(key.strip_prefix(self.profiles.as_bytes())?).ok()?;
        let (image, rest) = rest.split_once('/')?;
        check_image(image).ok()?;
        let (kind, last) = rest.split_once('/')?;
        match kind {
            "b" if last.len() == 64 && last.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) => {
                Some(Key::Behaviour { image: image.to_owned(), hash: last.to_owned() })
            }
            "clock" => Some(Key::Clock { image: image.to_owned(), event_type: EventType::from_name(last)? }),
            _ => None,
        }
    }
}

/// The etcd range end of all keys starting with `prefix`.
pub(crate) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One observation per stored key: a file behaviour with several access
/// bits becomes one observation per bit (access modes are a union of
/// grow-only keys, so two replicas adding `read` and `write` never
/// conflict). Anything else is returned as is.
pub fn split_access(o: &Observation) -> Vec<Observation> {
    match &o.behaviour {
        Behaviour::File { pattern, access } if access.count_ones() > 1 => (0..8)
            .map(|i| 1u8 << i)
            .filter(|bit| access & bit != 0)
            .map(|bit| Observation {
                lineage: o.lineage.clone(),
                behaviour: Behaviour::File { pattern: pattern.clone(), access: bit },
            })
            .collect(),
        _ => vec![o.clone()],
    }
}

fn field(h: &mut Sha256, s: &str) {
    h.update(u32::try_from(s.len()).unwrap_or(u32::MAX).to_be_bytes());
    h.update(s.as_bytes());
}

/// The identity of a stored behaviour: hex SHA-256 of its lineage, event
/// type, behaviour key and access bit, each length-prefixed (`v1` wire
/// format: changing it changes every key). Call it on the output of
/// [`split_access`] (a file observation with several bits is hashed with
/// all of them).
pub fn behaviour_hash(o: &Observation) -> String {
    let mut h = Sha256::new();
    field(&mut h, "telltale-fleet-behaviour-v1");
    h.update(u32::try_from(o.lineage.len()).unwrap_or(u32::MAX).to_be_bytes());
    for p in &o.lineage {
        field(&mut h, p);
    }
    field(&mut h, o.event_type().name());
    let (parts, access): (Vec<String>, u8) = match &o.behaviour {
        Behaviour::Exec => (vec![], 0),
        Behaviour::File { pattern, access } => (vec![pattern.clone()], *access),
        Behaviour::Dns { name, qtype } => (vec![name.clone(), qtype.clone()], 0),
        Behaviour::Connect { protocol, address, port } => {
            (vec!["endpoint".to_owned(), protocol.to_string(), address.to_string(), port.to_string()], 0)
        }
        Behaviour::ConnectRange { protocol, network, port } => {
            (vec!["range".to_owned(), protocol.to_string(), network.to_string(), port.to_string()], 0)
        }
        // Judged with exec: the "mechanism" part keeps it apart from the exec itself.
        Behaviour::Mechanism { mechanism } => (vec!["mechanism".to_owned(), mechanism.name().to_owned()], 0),
    };
    h.update(u32::try_from(parts.len()).unwrap_or(u32::MAX).to_be_bytes());
    for p in &parts {
        field(&mut h, p);
    }
    h.update([access]);
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
