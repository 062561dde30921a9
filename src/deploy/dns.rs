//! The DNS check before a deploy: the app's domain must already lead to the ingress, or the
//! certificate request fails and users reach whatever the name points at now.
//!
//! The domain's A and AAAA records are looked up, following CNAMEs, and pass when either
//! every address found is an ingress address, or the CNAME chain passes through one of the
//! ingress's host names (a cloud load balancer's name, whose addresses are the cloud's
//! business). Every address must match, not one: a name that also points at an old server
//! sends part of the traffic there.
//!
//! The lookup asks a DNS server (the system's, from `/etc/resolv.conf`, or one given as
//! `address:port`) and never `/etc/hosts`: a line there says nothing about what users resolve.
//! The domain is looked up as written, as a fully qualified name, so the search domains of a
//! pod's resolv.conf (`svc.cluster.local` with `ndots:5`) are not tried first.
//!
//! Each error says what was found, what was expected, and the fix: point the record at the
//! ingress, or deploy with `--skip-dns-check` when the record is to follow.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use serde::Serialize;

/// What the domain must lead to: the ingress's addresses, or its host names for a CNAME.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Expected {
    /// The ingress's addresses (IPv4 and IPv6).
    pub addresses: Vec<IpAddr>,
    /// Host names a CNAME may point at instead (`lb-1234.elb.example.com`).
    pub hostnames: Vec<String>,
}

impl std::fmt::Display for Expected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let addresses = join(&self.addresses);
        match (self.addresses.is_empty(), self.hostnames.is_empty()) {
            (false, true) => write!(f, "{addresses}"),
            (true, false) => write!(f, "a CNAME to {}", self.hostnames.join(" or ")),
            _ => write!(
                f,
                "{addresses} (or a CNAME to {})",
                self.hostnames.join(" or ")
            ),
        }
    }
}

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct Options {
    /// The DNS server (`127.0.0.1:53`); `None` is the system's (`/etc/resolv.conf`).
    pub nameserver: Option<SocketAddr>,
    /// How long one query may take before it is tried again.
    pub timeout: Duration,
    /// How many times a query is tried again.
    pub attempts: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nameserver: None,
            timeout: Duration::from_secs(5),
            attempts: 2,
        }
    }
}

/// What the domain resolved to, when it leads to the ingress.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Resolution {
    /// The domain checked.
    pub domain: String,
    /// The A and AAAA addresses found.
    pub addresses: Vec<IpAddr>,
    /// The CNAME chain followed, in order, without trailing dots.
    pub cnames: Vec<String>,
}

/// Why a domain does not (yet) lead to the ingress.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The domain resolves elsewhere.
    #[error(
        "{domain} resolves to {}{} but the ingress is {expected}; point {domain}'s A/AAAA records at {} or pass --skip-dns-check",
        join(found),
        via(cnames),
        fix(expected)
    )]
    Mismatch {
        /// The domain.
        domain: String,
        /// The addresses found.
        found: Vec<IpAddr>,
        /// The CNAME chain followed to them.
        cnames: Vec<String>,
        /// What it should lead to.
        expected: Expected,
    },
    /// The domain has no A or AAAA record (NXDOMAIN, or the name exists without addresses).
    #[error(
        "{domain} has no A or AAAA record ({}); the ingress is {expected}: create {domain}'s A/AAAA records pointing at {} or pass --skip-dns-check",
        if *nxdomain { "NXDOMAIN: the name does not exist" } else { "the name exists but has no addresses" },
        fix(expected)
    )]
    NoRecords {
        /// The domain.
        domain: String,
        /// Whether the server said the name does not exist at all.
        nxdomain: bool,
        /// What it should lead to.
        expected: Expected,
    },
    /// The DNS server could not be asked or did not answer usefully (timeout, refusal).
    #[error(
        "cannot resolve {domain} with {nameserver}: {message}; check that the DNS server answers, or pass --skip-dns-check"
    )]
    Resolver {
        /// The domain.
        domain: String,
        /// The server asked (`127.0.0.1:53` or "the system's resolver").
        nameserver: String,
        /// What the resolver said.
        message: String,
    },
    /// The system's resolver configuration cannot be read.
    #[error(
        "cannot read the system's DNS configuration (/etc/resolv.conf): {0}; name a DNS server explicitly or pass --skip-dns-check"
    )]
    SystemConfig(String),
    /// The domain is not a DNS name.
    #[error("{domain:?} is not a domain name: {message}")]
    InvalidDomain {
        /// The domain as given.
        domain: String,
        /// Why.
        message: String,
    },
    /// Nothing to compare with: no ingress address or host name is configured.
    #[error(
        "cannot check {domain}: no ingress addresses or host names are configured to compare it with; configure the ingress's addresses, or pass --skip-dns-check"
    )]
    NothingExpected {
        /// The domain.
        domain: String,
    },
}

/// Checks that `domain` leads to `expected` (see the module's documentation for the rule).
pub async fn verify(
    domain: &str,
    expected: &Expected,
    opts: &Options,
) -> Result<Resolution, Error> {
    if expected.addresses.is_empty() && expected.hostnames.is_empty() {
        return Err(Error::NothingExpected {
            domain: domain.to_string(),
        });
    }
    let name = fqdn(domain)?;
    let resolver = resolver(opts)?;
    let nameserver = opts
        .nameserver
        .map_or_else(|| "the system's resolver".to_string(), |a| a.to_string());
    // A and AAAA asked apart: a combined lookup answers with one family when the other's
    // query fails (a timeout, SERVFAIL), and the check must not pass on half the records. Only
    // "no such records" counts as none; any other failure is the resolver's.
    let mut addresses: Vec<IpAddr> = Vec::new();
    let mut cnames: Vec<String> = Vec::new();
    let mut nxdomain = false;
    for record_type in [RecordType::A, RecordType::AAAA] {
        let lookup = match resolver.lookup(name.clone(), record_type).await {
            Ok(l) => l,
            Err(e) if e.is_no_records_found() => {
                nxdomain |= e.is_nx_domain();
                continue;
            }
            Err(e) => {
                return Err(Error::Resolver {
                    domain: domain.to_string(),
                    nameserver,
                    message: e.to_string(),
                });
            }
        };
        for record in lookup.answers() {
            match &record.data {
                RData::A(a) => addresses.push(IpAddr::V4(a.0)),
                RData::AAAA(a) => addresses.push(IpAddr::V6(a.0)),
                RData::CNAME(target) => {
                    let target = plain(&target.to_ascii());
                    if !cnames.contains(&target) {
                        cnames.push(target);
                    }
                }
                _ => {}
            }
        }
    }
    addresses.sort();
    addresses.dedup();
    if addresses.is_empty() && cnames.is_empty() {
        return Err(Error::NoRecords {
            domain: domain.to_string(),
            nxdomain,
            expected: expected.clone(),
        });
    }
    let through_hostname = cnames.iter().any(|c| {
        expected
            .hostnames
            .iter()
            .any(|h| plain(h).eq_ignore_ascii_case(c))
    });
    let all_ingress =
        !addresses.is_empty() && addresses.iter().all(|a| expected.addresses.contains(a));
    if through_hostname || all_ingress {
        Ok(Resolution {
            domain: domain.to_string(),
            addresses,
            cnames,
        })
    } else {
        Err(Error::Mismatch {
            domain: domain.to_string(),
            found: addresses,
            cnames,
            expected: expected.clone(),
        })
    }
}

/// `domain` as a fully qualified name (so no search domain is appended).
fn fqdn(domain: &str) -> Result<Name, Error> {
    let invalid = |message: String| Error::InvalidDomain {
        domain: domain.to_string(),
        message,
    };
    let trimmed = domain.trim_end_matches('.');
    if trimmed.is_empty() {
        return Err(invalid("it is empty".into()));
    }
    if trimmed.parse::<IpAddr>().is_ok() {
        return Err(invalid("it is an IP address, not a name".into()));
    }
    Name::from_ascii(format!("{trimmed}.")).map_err(|e| invalid(e.to_string()))
}

/// A resolver asking the given server, or the system's, never `/etc/hosts`.
fn resolver(opts: &Options) -> Result<TokioResolver, Error> {
    let mut builder = match opts.nameserver {
        Some(addr) => {
            // UDP first, TCP for truncated answers, both on the given port.
            let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                .into_iter()
                .map(|mut c| {
                    c.port = addr.port();
                    c
                })
                .collect();
            let server = NameServerConfig::new(addr.ip(), true, connections);
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio().map_err(|e| Error::SystemConfig(e.to_string()))?,
    };
    let o = builder.options_mut();
    o.timeout = opts.timeout;
    o.attempts = opts.attempts;
    o.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    o.use_hosts_file = ResolveHosts::Never;
    // The CNAME records of the chain stay in the answer, so a CNAME to the ingress's name is seen.
    o.preserve_intermediates = true;
    builder.build().map_err(|e| Error::Resolver {
        domain: String::new(),
        nameserver: opts
            .nameserver
            .map_or_else(|| "the system's resolver".to_string(), |a| a.to_string()),
        message: format!("cannot build the resolver: {e}"),
    })
}

/// A host name without its trailing dot, lower case.
fn plain(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Addresses as `a, b`, or "nothing".
fn join(addresses: &[IpAddr]) -> String {
    if addresses.is_empty() {
        return "no address".into();
    }
    addresses
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// ` (through CNAME a → b)` when a chain was followed.
fn via(cnames: &[String]) -> String {
    if cnames.is_empty() {
        String::new()
    } else {
        format!(" (through CNAME {})", cnames.join(" → "))
    }
}

/// What to point the record at, for the fix in a message.
fn fix(expected: &Expected) -> String {
    match (expected.addresses.is_empty(), expected.hostnames.is_empty()) {
        (false, true) => join(&expected.addresses),
        (true, false) => format!("a CNAME to {}", expected.hostnames.join(" or ")),
        _ => format!(
            "{} (or make it a CNAME to {})",
            join(&expected.addresses),
            expected.hostnames.join(" or ")
        ),
    }
}

/// What the DNS check before a deploy came to, in one line for the deployment's record: a
/// check that did not run says why, so a skipped check is never silent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Skipped on request (`--skip-dns-check`).
    Skipped,
    /// No ingress addresses or host names are configured (`deploy.ingress_addresses`).
    NotConfigured,
    /// The domain resolves to the ingress.
    Passed(Resolution),
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::Skipped => f.write_str("dns: not checked (--skip-dns-check)"),
            Gate::NotConfigured => {
                f.write_str("dns: not checked (deploy.ingress_addresses is not set)")
            }
            Gate::Passed(r) => {
                write!(f, "dns: {}", r.domain)?;
                for c in &r.cnames {
                    write!(f, " → {c}")?;
                }
                let addresses: Vec<String> = r.addresses.iter().map(ToString::to_string).collect();
                if !addresses.is_empty() {
                    write!(f, " → {}", addresses.join(", "))?;
                }
                f.write_str(" (the ingress)")
            }
        }
    }
}

/// The DNS check before a deploy of `domain`: skipped on request, not run when nothing is
/// expected (no ingress configured), else [`verify`], whose error stops the deploy.
pub async fn gate(
    domain: &str,
    expected: &Expected,
    opts: &Options,
    skip: bool,
) -> Result<Gate, Error> {
    if skip {
        return Ok(Gate::Skipped);
    }
    if expected.addresses.is_empty() && expected.hostnames.is_empty() {
        return Ok(Gate::NotConfigured);
    }
    verify(domain, expected, opts).await.map(Gate::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ingress() -> Expected {
        Expected {
            addresses: vec!["10.0.0.5".parse().unwrap()],
            hostnames: vec![],
        }
    }

    #[test]
    fn a_mismatch_says_what_was_found_what_was_expected_and_the_fix() {
        let e = Error::Mismatch {
            domain: "shop.example.com".into(),
            found: vec!["203.0.113.9".parse().unwrap()],
            cnames: vec!["old.example.net".into()],
            expected: ingress(),
        };
        let text = e.to_string();
        for part in [
            "shop.example.com resolves to 203.0.113.9",
            "through CNAME old.example.net",
            "the ingress is 10.0.0.5",
            "point shop.example.com's A/AAAA records at 10.0.0.5",
            "--skip-dns-check",
        ] {
            assert!(text.contains(part), "{part:?} missing from: {text}");
        }
    }

    #[tokio::test]
    async fn a_check_with_no_ingress_configured_is_refused_before_any_lookup() {
        let e = verify(
            "shop.example.com",
            &Expected::default(),
            &Options::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, Error::NothingExpected { .. }), "{e}");
    }

    #[tokio::test]
    async fn an_ip_address_or_an_empty_name_is_not_a_domain() {
        for domain in ["10.0.0.5", "", ".", "bad..name"] {
            let e = verify(domain, &ingress(), &Options::default())
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidDomain { .. }), "{domain:?}: {e}");
        }
    }

    /// A DNS server on 127.0.0.1 that answers A queries with 10.0.0.5 and fails every AAAA
    /// query (SERVFAIL): a fault a real server is not easily made to produce for one family.
    async fn half_failing_server() -> (SocketAddr, tokio::task::JoinHandle<()>) {
        use hickory_resolver::proto::op::{Message, OpCode, ResponseCode};
        use hickory_resolver::proto::rr::Record;
        use hickory_resolver::proto::rr::rdata::A;
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                let mut answer = Message::response(query.metadata.id, OpCode::Query);
                answer.metadata.recursion_desired = query.metadata.recursion_desired;
                answer.metadata.recursion_available = true;
                for q in &query.queries {
                    answer.add_query(q.clone());
                    match q.query_type() {
                        RecordType::A => {
                            answer.add_answer(Record::from_rdata(
                                q.name().clone(),
                                60,
                                RData::A(A("10.0.0.5".parse().unwrap())),
                            ));
                        }
                        _ => answer.metadata.response_code = ResponseCode::ServFail,
                    }
                }
                let _ = socket.send_to(&answer.to_vec().unwrap(), peer).await;
            }
        });
        (addr, task)
    }

    #[tokio::test]
    async fn a_failed_aaaa_lookup_fails_the_check_rather_than_passing_on_the_a_records() {
        let (addr, server) = half_failing_server().await;
        let opts = Options {
            nameserver: Some(addr),
            timeout: Duration::from_secs(2),
            attempts: 0,
        };
        let expected = Expected {
            addresses: vec!["10.0.0.5".parse().unwrap()],
            hostnames: vec![],
        };
        let e = verify("half.test", &expected, &opts).await.unwrap_err();
        assert!(matches!(e, Error::Resolver { .. }), "{e}");
        assert!(e.to_string().contains("half.test"), "{e}");
        server.abort();
    }
}
