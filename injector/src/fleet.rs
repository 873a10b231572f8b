//! Fleet profiles for injected sidecars: the webhook's `--etcd-*` flags,
//! validated into [`FleetSettings`], and each pod's choice ([`for_pod`]:
//! the webhook's fleet, the pod's own etcd client Secret, or its own local
//! profiles).
//!
//! The values are checked here the way the daemon checks `[profiles.etcd]`
//! (`telltale_fleet::EtcdConfig::validate`), so a bad flag stops the webhook
//! at start instead of every injected sidecar.
//!
//! A Secret cannot be mounted from another namespace, so the etcd client
//! Secret is a *name*: a Secret of that name (keys `ca.crt`, `tls.crt`,
//! `tls.key`) must exist in every namespace whose pods get fleet profiles
//! (`deploy/gen-etcd-certs.sh --copy-to NS` copies it). The sidecar
//! volume is not optional: a missing Secret holds the pod in
//! `ContainerCreating` with a kubelet event naming it, rather than starting
//! a sidecar that cannot reach the fleet.
//!
//! Pods choose only between the webhook's fleet and their own local store
//! (`telltale.dev/profiles-store`) and may name another client Secret of
//! their namespace (`telltale.dev/etcd-client-secret`); endpoints, cluster
//! and prefix are the webhook's: a pod that could name them could teach
//! another fleet's profiles.

use std::collections::BTreeMap;

use crate::annotations as a;
use crate::overrides::check_dns_subdomain;
use crate::Rejection;

/// The webhook's fleet settings (from `--etcd-*`), validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    /// etcd client URLs, `http(s)://host:port`, one scheme for all.
    pub endpoints: Vec<String>,
    /// `profiles.etcd.cluster`, or the sidecar's default (`default`).
    pub cluster: Option<String>,
    /// `profiles.etcd.prefix`, or the sidecar's default (`/telltale/v1/`).
    pub prefix: Option<String>,
    /// Name of the Secret (in each pod's namespace) with the etcd client
    /// certificate; only with `https://` endpoints.
    pub client_secret: Option<String>,
}

/// The raw `--etcd-*` flag values.
#[derive(Debug, Clone, Copy, Default)]
pub struct FleetFlags<'a> {
    /// `--etcd-endpoints`, a comma-separated list.
    pub endpoints: Option<&'a str>,
    /// `--etcd-cluster`.
    pub cluster: Option<&'a str>,
    /// `--etcd-prefix`.
    pub prefix: Option<&'a str>,
    /// `--etcd-client-secret`.
    pub client_secret: Option<&'a str>,
}

/// A flag whose value the webhook refuses: `(flag, value, reason)`.
pub type FlagError = (&'static str, String, String);

/// What one pod's sidecar gets for its profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodFleet {
    /// The webhook's endpoints.
    pub endpoints: Vec<String>,
    /// The webhook's cluster, if it names one.
    pub cluster: Option<String>,
    /// The webhook's prefix, if it names one.
    pub prefix: Option<String>,
    /// The etcd client Secret to mount, if any.
    pub client_secret: Option<String>,
}

/// A pod's profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodProfiles {
    /// The webhook has no fleet and the pod chose nothing: whatever the
    /// webhook's `--sidecar-env` says (local unless it sets the store).
    WebhookDefault,
    /// The pod said `telltale.dev/profiles-store: "local"`: local profiles,
    /// whatever the webhook says.
    Local,
    /// The webhook's fleet.
    Fleet(PodFleet),
}

/// `telltale.dev/profiles-store` values.
const STORE_LOCAL: &str = "local";
const STORE_ETCD: &str = "etcd";

impl FleetSettings {
    /// Validate the flags: `None` when `--etcd-endpoints` is absent (the
    /// other `--etcd-*` flags then are an error: they would do nothing).
    pub fn from_flags(f: FleetFlags<'_>) -> Result<Option<Self>, FlagError> {
        let Some(raw) = f.endpoints else {
            for (flag, v) in
                [("--etcd-cluster", f.cluster), ("--etcd-prefix", f.prefix), ("--etcd-client-secret", f.client_secret)]
            {
                if let Some(v) = v {
                    return Err((flag, v.to_owned(), "needs --etcd-endpoints".into()));
                }
            }
            return Ok(None);
        };
        let (endpoints, tls) = parse_endpoints(raw).map_err(|r| flag_err("--etcd-endpoints", raw, r))?;
        if let Some(c) = f.cluster {
            check_cluster(c).map_err(|r| flag_err("--etcd-cluster", c, r))?;
        }
        if let Some(p) = f.prefix {
            check_prefix(p).map_err(|r| flag_err("--etcd-prefix", p, r))?;
        }
        if let Some(s) = f.client_secret {
            check_dns_subdomain(s).map_err(|r| flag_err("--etcd-client-secret", s, r))?;
            if !tls {
                return Err((
                    "--etcd-client-secret",
                    s.to_owned(),
                    "the etcd endpoints use http://: a client certificate needs https:// endpoints".into(),
                ));
            }
        }
        Ok(Some(Self {
            endpoints,
            cluster: f.cluster.map(str::to_owned),
            prefix: f.prefix.map(str::to_owned),
            client_secret: f.client_secret.map(str::to_owned),
        }))
    }

    /// Do the endpoints use TLS (`https://`)?
    pub fn uses_tls(&self) -> bool {
        self.endpoints.first().is_some_and(|e| e.starts_with("https://"))
    }
}

/// What a pod with these annotations gets, given the webhook's fleet settings.
pub fn for_pod(
    annotations: &BTreeMap<String, String>,
    fleet: Option<&FleetSettings>,
) -> Result<PodProfiles, Rejection> {
    let invalid =
        |key: &'static str, v: &str, reason: String| Rejection::InvalidAnnotation { key, value: v.to_owned(), reason };
    let store = annotations.get(a::PROFILES_STORE).map(String::as_str);
    let secret = annotations.get(a::ETCD_CLIENT_SECRET).map(String::as_str);
    let fleet = match (store.map(str::trim), fleet) {
        (Some(STORE_LOCAL), _) => {
            if let Some(s) = secret {
                return Err(invalid(
                    a::ETCD_CLIENT_SECRET,
                    s,
                    format!("the pod's profiles are local (`{}: \"local\"`): no etcd client", a::PROFILES_STORE),
                ));
            }
            return Ok(PodProfiles::Local);
        }
        (Some(STORE_ETCD) | None, Some(fleet)) => fleet,
        (Some(STORE_ETCD), None) => {
            return Err(invalid(
                a::PROFILES_STORE,
                STORE_ETCD,
                "the webhook has no etcd (--etcd-endpoints): fleet profiles are not available".into(),
            ));
        }
        (None, None) => {
            if let Some(s) = secret {
                return Err(invalid(
                    a::ETCD_CLIENT_SECRET,
                    s,
                    "the webhook has no etcd (--etcd-endpoints): fleet profiles are not available".into(),
                ));
            }
            return Ok(PodProfiles::WebhookDefault);
        }
        (Some(other), _) => {
            return Err(invalid(a::PROFILES_STORE, other, "expected \"local\" or \"etcd\"".into()));
        }
    };
    let client_secret = match secret {
        Some("") => None,
        Some(s) => {
            check_dns_subdomain(s).map_err(|reason| invalid(a::ETCD_CLIENT_SECRET, s, reason))?;
            if !fleet.uses_tls() {
                return Err(invalid(
                    a::ETCD_CLIENT_SECRET,
                    s,
                    "the webhook's etcd endpoints use http://: a client certificate needs https://".into(),
                ));
            }
            Some(s.to_owned())
        }
        None => fleet.client_secret.clone(),
    };
    Ok(PodProfiles::Fleet(PodFleet {
        endpoints: fleet.endpoints.clone(),
        cluster: fleet.cluster.clone(),
        prefix: fleet.prefix.clone(),
        client_secret,
    }))
}

/// A comma-separated list of `http(s)://host:port`, one scheme for all, no
/// duplicates; and whether the scheme is `https`.
pub fn parse_endpoints(raw: &str) -> Result<(Vec<String>, bool), String> {
    let mut endpoints: Vec<String> = Vec::new();
    let mut tls = None;
    for (i, e) in raw.split(',').map(str::trim).enumerate() {
        if e.is_empty() {
            return Err(format!("endpoint {} is empty (a stray comma?)", i + 1));
        }
        let this_tls = check_endpoint(e)?;
        match tls {
            None => tls = Some(this_tls),
            Some(t) if t != this_tls => {
                return Err(format!("{e:?} does not use the scheme of the first endpoint: all must use one scheme"));
            }
            Some(_) => {}
        }
        if endpoints.iter().any(|x| x == e) {
            return Err(format!("{e:?} is listed twice"));
        }
        endpoints.push(e.to_owned());
    }
    Ok((endpoints, tls == Some(true)))
}

/// `http(s)://host:port` with a port in 1–65535, nothing else (no path,
/// user, query); whether it is `https`.
fn check_endpoint(e: &str) -> Result<bool, String> {
    let (tls, rest) = if let Some(r) = e.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = e.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{e:?} must start with http:// or https://"));
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!("{e:?} must be scheme://host:port, without a path, query or user"));
    }
    let Some((host, port)) = rest.rsplit_once(':') else {
        return Err(format!("{e:?} has no port (etcd clients listen on e.g. :2379)"));
    };
    if !port.parse::<u16>().is_ok_and(|p| p != 0) {
        return Err(format!("{e:?}: port {port:?} is not a number in 1–65535"));
    }
    let host_ok = if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        v6.parse::<std::net::Ipv6Addr>().is_ok()
    } else {
        !host.is_empty()
            && host.len() <= 253
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    };
    if !host_ok {
        return Err(format!("{e:?}: {host:?} is not a host name or IP address"));
    }
    Ok(tls)
}

fn flag_err(flag: &'static str, value: &str, reason: String) -> FlagError {
    (flag, value.to_owned(), reason)
}

/// `[a-z0-9-]{1,63}` (the daemon's rule for `profiles.etcd.cluster`).
fn check_cluster(c: &str) -> Result<(), String> {
    if c.is_empty() || c.len() > 63 || !c.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("must be 1–63 lowercase letters, digits and `-`".into());
    }
    Ok(())
}

/// Starts and ends with `/`, no control or space characters, at most 256
/// bytes (the daemon's rule for `profiles.etcd.prefix`, bounded).
fn check_prefix(p: &str) -> Result<(), String> {
    if !p.starts_with('/') || !p.ends_with('/') {
        return Err("must start and end with `/`, like /telltale/v1/".into());
    }
    if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("has a control or space character".into());
    }
    if p.len() > 256 {
        return Err("longer than 256 bytes".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn flags(endpoints: &str) -> FleetFlags<'_> {
        FleetFlags { endpoints: Some(endpoints), ..FleetFlags::default() }
    }

    #[test]
    fn endpoints_are_a_comma_list_of_one_scheme() {
        let s =
            FleetSettings::from_flags(flags("https://etcd-0.etcd:2379, https://10.0.0.3:2379,https://[fd00::1]:2379"))
                .unwrap()
                .unwrap();
        assert_eq!(s.endpoints, ["https://etcd-0.etcd:2379", "https://10.0.0.3:2379", "https://[fd00::1]:2379"]);
        assert!(s.uses_tls());
        let s = FleetSettings::from_flags(flags("http://127.0.0.1:2379")).unwrap().unwrap();
        assert!(!s.uses_tls());
        assert_eq!(FleetSettings::from_flags(FleetFlags::default()).unwrap(), None);
    }

    #[test]
    fn bad_flags_are_refused_by_name_with_the_reason() {
        for (raw, why) in [
            ("", "empty"),
            ("https://a:2379,", "empty (a stray comma?)"),
            ("etcd:2379", "must start with http:// or https://"),
            ("grpc://etcd:2379", "must start with http:// or https://"),
            ("https://etcd", "has no port"),
            ("https://etcd:", "not a number"),
            ("https://etcd:0", "not a number in 1–65535"),
            ("https://etcd:99999", "not a number in 1–65535"),
            ("https://etcd:2379/v3", "without a path"),
            ("https://user@etcd:2379", "without a path, query or user"),
            ("https://:2379", "not a host name"),
            ("https://et cd:2379", "not a host name"),
            ("https://[zz::1]:2379", "not a host name"),
            ("https://a:2379,http://b:2379", "one scheme"),
            ("https://a:2379,https://a:2379", "listed twice"),
        ] {
            let (flag, value, reason) = FleetSettings::from_flags(flags(raw)).unwrap_err();
            assert_eq!((flag, value.as_str()), ("--etcd-endpoints", raw));
            assert!(reason.contains(why), "{raw:?}: {reason}");
        }
        let ok = "https://etcd:2379";
        for (f, flag, value, why) in [
            (FleetFlags { cluster: Some("Prod"), ..flags(ok) }, "--etcd-cluster", "Prod", "lowercase"),
            (FleetFlags { cluster: Some(""), ..flags(ok) }, "--etcd-cluster", "", "1–63"),
            (FleetFlags { prefix: Some("telltale/"), ..flags(ok) }, "--etcd-prefix", "telltale/", "start and end"),
            (FleetFlags { prefix: Some("/a b/"), ..flags(ok) }, "--etcd-prefix", "/a b/", "space"),
            (
                FleetFlags { client_secret: Some("Etcd_Client"), ..flags(ok) },
                "--etcd-client-secret",
                "Etcd_Client",
                "Secret name",
            ),
            (
                FleetFlags { client_secret: Some("etcd-client"), ..flags("http://etcd:2379") },
                "--etcd-client-secret",
                "etcd-client",
                "needs https://",
            ),
            (
                FleetFlags { cluster: Some("prod"), ..FleetFlags::default() },
                "--etcd-cluster",
                "prod",
                "needs --etcd-endpoints",
            ),
            (
                FleetFlags { client_secret: Some("c"), ..FleetFlags::default() },
                "--etcd-client-secret",
                "c",
                "needs --etcd-endpoints",
            ),
        ] {
            let e = FleetSettings::from_flags(f).unwrap_err();
            assert_eq!((e.0, e.1.as_str()), (flag, value));
            assert!(e.2.contains(why), "{flag}={value:?}: {}", e.2);
        }
    }

    fn fleet() -> FleetSettings {
        FleetSettings::from_flags(FleetFlags {
            cluster: Some("prod"),
            client_secret: Some("telltale-etcd-client"),
            ..flags("https://etcd-0.etcd:2379")
        })
        .unwrap()
        .unwrap()
    }

    fn with(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn pods_take_the_fleet_opt_out_or_name_their_secret() {
        let f = fleet();
        let fleet_of = |r: Result<PodProfiles, Rejection>| match r.unwrap() {
            PodProfiles::Fleet(p) => p,
            other => panic!("{other:?}"),
        };
        let p = fleet_of(for_pod(&with(&[]), Some(&f)));
        assert_eq!(p.client_secret.as_deref(), Some("telltale-etcd-client"));
        assert_eq!((p.cluster.as_deref(), p.prefix.as_deref()), (Some("prod"), None));
        let p = fleet_of(for_pod(&with(&[(a::PROFILES_STORE, "etcd")]), Some(&f)));
        assert_eq!(p.endpoints, f.endpoints);
        assert_eq!(for_pod(&with(&[(a::PROFILES_STORE, " local")]), Some(&f)).unwrap(), PodProfiles::Local);
        let p = fleet_of(for_pod(&with(&[(a::ETCD_CLIENT_SECRET, "shop-etcd")]), Some(&f)));
        assert_eq!(p.client_secret.as_deref(), Some("shop-etcd"));
        let p = fleet_of(for_pod(&with(&[(a::ETCD_CLIENT_SECRET, "")]), Some(&f)));
        assert_eq!(p.client_secret, None);
        // Without a fleet on the webhook: local, and nothing to choose.
        assert_eq!(for_pod(&with(&[]), None).unwrap(), PodProfiles::WebhookDefault);
        assert_eq!(for_pod(&with(&[(a::PROFILES_STORE, "local")]), None).unwrap(), PodProfiles::Local);
    }

    #[test]
    fn bad_pod_choices_are_named() {
        let f = fleet();
        let plain = FleetSettings::from_flags(flags("http://etcd:2379")).unwrap().unwrap();
        for (pairs, fleet, key, why) in [
            (&[(a::PROFILES_STORE, "consul")][..], Some(&f), a::PROFILES_STORE, "\"local\" or \"etcd\""),
            (&[(a::PROFILES_STORE, "etcd")][..], None, a::PROFILES_STORE, "webhook has no etcd"),
            (&[(a::ETCD_CLIENT_SECRET, "x")][..], None, a::ETCD_CLIENT_SECRET, "webhook has no etcd"),
            (&[(a::ETCD_CLIENT_SECRET, "Bad_Name")][..], Some(&f), a::ETCD_CLIENT_SECRET, "Secret name"),
            (&[(a::ETCD_CLIENT_SECRET, "x")][..], Some(&plain), a::ETCD_CLIENT_SECRET, "http://"),
            (
                &[(a::PROFILES_STORE, "local"), (a::ETCD_CLIENT_SECRET, "x")][..],
                Some(&f),
                a::ETCD_CLIENT_SECRET,
                "local",
            ),
        ] {
            let m = for_pod(&with(pairs), fleet).unwrap_err().to_string();
            assert!(m.contains(key) && m.contains(why), "{pairs:?}: {m}");
        }
    }
}
