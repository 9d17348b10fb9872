//! Inbound message authentication: SPF, DKIM, DMARC and ARC, computed with mail-auth through
//! the relay's resolver, for the listeners configured to check them.
//!
//! Layout: [`Authenticator`] runs the checks for one message under a time budget and returns
//! [`Finding`]s; [`header`] writes them as an `Authentication-Results:` field (RFC 8601) and
//! removes forged ones; `cache` keeps parsed DNS records per TTL. The session decides when to
//! check (`smtp::session::authcheck`); plugins see the findings as `context.auth-results()`.
//!
//! Every lookup is bounded: SPF by its own limit of ten DNS-querying terms (RFC 7208 §4.6.4,
//! enforced by mail-auth), DKIM by [`MAX_SIGNATURES`] signatures per message, ARC by its
//! 50-set limit, and all of them by the budget, after which what is still unanswered becomes
//! `temperror` rather than holding the client.

mod cache;
pub mod header;

use std::net::IpAddr;
use std::time::Duration;

use base64::Engine;
use mail_auth::common::crypto::CryptoError;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::dmarc::Policy;
use mail_auth::hickory_resolver::TokioResolver;
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{
    ArcOutput, AuthenticatedMessage, DkimOutput, DkimResult, DmarcOutput, DmarcResult, DnsError,
    Error, MessageAuthenticator, SpfOutput, SpfResult,
};
use tokio::time::{timeout_at, Instant};
use tracing::debug;

use self::cache::Caches;
use crate::plugins::AuthResult;

/// DKIM signatures verified per message; more are ignored (each costs a DNS lookup and a
/// public-key operation, and the sender chooses how many to send).
pub const MAX_SIGNATURES: usize = 10;

/// The checks, with the resolver and record caches every session shares.
pub struct Authenticator {
    resolver: MessageAuthenticator,
    caches: Caches,
}

/// What one check needs to know about the transaction.
#[derive(Debug, Clone, Copy)]
pub struct CheckInput<'a> {
    /// The client's address.
    pub ip: IpAddr,
    /// The HELO/EHLO name (`""` when none was given).
    pub helo: &'a str,
    /// The reverse path (`""` for the null sender).
    pub mail_from: &'a str,
    /// Our hostname: SPF's `%{r}` and the authserv-id.
    pub hostname: &'a str,
    /// The message as the client sent it (without our trace header).
    pub message: &'a [u8],
}

/// One result, in RFC 8601 terms: the method, its result, the domain it is about, a fixed
/// reason when there is one to give, and properties (`smtp.mailfrom`, `header.d` ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub method: &'static str,
    pub result: &'static str,
    pub domain: String,
    pub reason: Option<&'static str>,
    pub props: Vec<(&'static str, String)>,
}

impl Finding {
    pub fn new(
        method: &'static str,
        result: &'static str,
        domain: impl Into<String>,
        reason: Option<&'static str>,
        props: Vec<(&'static str, String)>,
    ) -> Finding {
        Finding {
            method,
            result,
            domain: domain.into(),
            reason,
            props,
        }
    }

    /// The result as it appears in the header: `dkim=pass header.d=example.org ...`.
    pub fn resinfo(&self) -> String {
        header::resinfo(self.method, self.result, self.reason, &self.props)
    }

    /// What plugins see: `detail` is the rest of the header's result after `method=result`
    /// (the reason in parentheses, then the properties).
    pub fn to_plugin(&self) -> AuthResult {
        let resinfo = self.resinfo();
        let head = format!("{}={}", self.method, self.result);
        AuthResult {
            method: self.method.to_string(),
            result: self.result.to_string(),
            domain: self.domain.clone(),
            detail: resinfo[head.len()..].trim_start().to_string(),
        }
    }
}

/// The findings for one message, and whether DMARC asks for it to be rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub findings: Vec<Finding>,
    /// The author domain, when the message fails DMARC and that domain's policy is `reject`.
    pub dmarc_reject: Option<String>,
}

impl Authenticator {
    /// Checks through `resolver` (the relay's, so `[delivery.resolver]` applies here too).
    pub fn new(resolver: TokioResolver) -> Authenticator {
        Authenticator {
            resolver: MessageAuthenticator(resolver),
            caches: Caches::new(),
        }
    }

    /// SPF, DKIM and ARC at once, then DMARC over their results. SPF, DKIM and ARC get two
    /// thirds of `budget`, DMARC what is left; whatever has not finished by then is a
    /// `temperror`.
    pub async fn check(&self, input: &CheckInput<'_>, budget: Duration) -> Outcome {
        let started = Instant::now();
        let deadline = started + budget;
        let first = started + budget * 2 / 3;
        let message = parse(input.message);

        let (identity, spf_domain) = spf_identity(input);
        let spf = async {
            let params = if input.mail_from.is_empty() {
                SpfParameters::verify_ehlo(input.ip, input.helo, input.hostname)
            } else {
                SpfParameters::verify_mail_from(
                    input.ip,
                    input.helo,
                    input.hostname,
                    input.mail_from,
                )
            };
            let verify = self.resolver.verify_spf(self.caches.params(params));
            timeout_at(first, verify).await.ok()
        };
        let dkim = async {
            let m = message.as_ref()?;
            if m.dkim_headers.is_empty() && !m.has_dkim_errors {
                return None;
            }
            let verify = self.resolver.verify_dkim(self.caches.params(m));
            Some(match timeout_at(first, verify).await {
                Ok(outputs) => (outputs, false),
                Err(_) => (timed_out_dkim(m), true),
            })
        };
        let arc = async {
            let m = message.as_ref()?;
            if m.ams_headers.is_empty() && m.as_headers.is_empty() && !m.has_arc_errors {
                return None;
            }
            let verify = self.resolver.verify_arc(self.caches.params(m));
            Some(timeout_at(first, verify).await.ok())
        };
        let (spf, dkim, arc) = tokio::join!(spf, dkim, arc);

        let mut findings = Vec::new();
        let spf = spf.unwrap_or_else(|| {
            SpfOutput::new(spf_domain.to_string()).with_result(SpfResult::TempError)
        });
        findings.push(spf_finding(&spf, identity));
        let (dkim, dkim_timed_out) = dkim.unwrap_or_default();
        if dkim.is_empty() {
            findings.push(Finding::new("dkim", "none", "", None, Vec::new()));
        }
        // Signatures that could be checked first, then malformed ones: the header stays short
        // whatever the sender put in the message.
        let (signed, malformed): (Vec<_>, Vec<_>) =
            dkim.iter().partition(|o| o.signature().is_some());
        for output in signed.into_iter().chain(malformed).take(MAX_SIGNATURES) {
            let mut finding = dkim_finding(output);
            if dkim_timed_out {
                finding.reason = Some("timed out");
            }
            findings.push(finding);
        }
        if let Some(arc) = arc {
            findings.push(match arc {
                Some(out) => arc_finding(&out, input.ip),
                None => Finding::new("arc", "temperror", "", Some("timed out"), Vec::new()),
            });
        }

        let mut dmarc_reject = None;
        let author = message.as_ref().and_then(author_domain);
        let dmarc = match (&message, author) {
            (Some(m), Some(author)) => {
                let mail_from_domain = spf_domain;
                let params = DmarcParameters::new(m, &dkim, mail_from_domain, &spf);
                let verify = self.resolver.verify_dmarc(self.caches.params(params));
                match timeout_at(deadline, verify).await {
                    Ok(out) => {
                        if matches!(out.result(), DmarcResult::Fail(_))
                            && out.policy() == Policy::Reject
                        {
                            dmarc_reject = Some(out.domain().to_string());
                        }
                        dmarc_finding(&out)
                    }
                    Err(_) => Finding::new(
                        "dmarc",
                        "temperror",
                        author.clone(),
                        Some("timed out"),
                        vec![("header.from", author)],
                    ),
                }
            }
            _ => Finding::new("dmarc", "none", "", Some("no author domain"), Vec::new()),
        };
        findings.push(dmarc);
        debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            results = %findings.iter().map(|f| format!("{}={}", f.method, f.result)).collect::<Vec<_>>().join(" "),
            "message authentication checked"
        );
        Outcome {
            findings,
            dmarc_reject,
        }
    }
}

/// Messages larger than this are parsed off the async workers: parsing hashes the body once
/// per canonicalization and algorithm in use, about 100 ms per pass over 25 MB.
const PARSE_IN_PLACE: usize = 1 << 20;

/// The message's DKIM, ARC and From headers and its body hashes, with at most
/// [`MAX_SIGNATURES`] signatures kept.
fn parse(message: &[u8]) -> Option<AuthenticatedMessage<'_>> {
    let parse = || {
        AuthenticatedMessage::parse(message).map(|mut m| {
            m.dkim_headers.truncate(MAX_SIGNATURES);
            m
        })
    };
    let multi_thread = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    if message.len() > PARSE_IN_PLACE && multi_thread {
        // Other sessions' tasks move to another worker meanwhile.
        tokio::task::block_in_place(parse)
    } else {
        parse()
    }
}

/// The SPF identity (RFC 7208 §2.4: MAIL FROM, or for the null sender the HELO name, as
/// `postmaster@helo`) as a header property, and the domain it names.
fn spf_identity<'a>(input: &CheckInput<'a>) -> ((&'static str, String), &'a str) {
    if input.mail_from.is_empty() {
        (("smtp.helo", input.helo.to_string()), input.helo)
    } else {
        let domain = input
            .mail_from
            .rsplit_once('@')
            .map_or(input.helo, |(_, d)| d);
        (("smtp.mailfrom", input.mail_from.to_string()), domain)
    }
}

/// The RFC 5322.From domain, when the message has one.
fn author_domain(m: &AuthenticatedMessage<'_>) -> Option<String> {
    m.from
        .iter()
        .find_map(|a| a.rsplit_once('@').map(|(_, d)| d.to_string()))
        .filter(|d| !d.is_empty())
}

/// Every signature of `m` as a `temperror`: what DMARC must assume when DKIM ran out of time.
fn timed_out_dkim<'x>(m: &'x AuthenticatedMessage<'x>) -> Vec<DkimOutput<'x>> {
    m.dkim_headers
        .iter()
        .map(|h| {
            DkimOutput::temp_err(Error::Dns(DnsError::Resolver("timed out".into())))
                .with_signature(&h.header)
        })
        .collect()
}

fn spf_finding(out: &SpfOutput, identity: (&'static str, String)) -> Finding {
    let result = match out.result() {
        SpfResult::Pass => "pass",
        SpfResult::Fail => "fail",
        SpfResult::SoftFail => "softfail",
        SpfResult::Neutral => "neutral",
        SpfResult::TempError => "temperror",
        SpfResult::PermError => "permerror",
        SpfResult::None => "none",
    };
    Finding::new("spf", result, out.domain(), None, vec![identity])
}

fn dkim_finding(out: &DkimOutput<'_>) -> Finding {
    let (result, reason) = match out.result() {
        DkimResult::Pass => ("pass", None),
        // A body that does not match its signature failed verification (RFC 6376 §6.1.3:
        // PERMFAIL), which RFC 8601 calls `fail`; mail-auth reports it as neutral.
        DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch)) => {
            ("fail", Some("body hash did not verify"))
        }
        other => dkim_result(other),
    };
    let mut props = Vec::new();
    let mut domain = String::new();
    if let Some(sig) = out.signature() {
        domain = sig.d.clone();
        props.push(("header.d", sig.d.clone()));
        props.push(("header.s", sig.s.clone()));
        if let Some(prefix) = sig.b.get(..6) {
            // RFC 6008: the first eight characters of the signature tell signatures apart.
            props.push((
                "header.b",
                base64::engine::general_purpose::STANDARD.encode(prefix),
            ));
        }
    }
    Finding::new("dkim", result, domain, reason, props)
}

fn arc_finding(out: &ArcOutput<'_>, ip: IpAddr) -> Finding {
    let (result, reason) = match out.result() {
        DkimResult::Neutral(Error::Arc(mail_auth::arc::ArcError::FailedBodyHashMatch)) => {
            ("fail", Some("body hash did not verify"))
        }
        other => dkim_result(other),
    };
    Finding::new(
        "arc",
        result,
        "",
        reason,
        vec![("smtp.remote-ip", ip.to_string())],
    )
}

fn dmarc_finding(out: &DmarcOutput) -> Finding {
    let (result, reason) = match out.result() {
        DmarcResult::Pass => ("pass", None),
        DmarcResult::Fail(e) => ("fail", Some(reason(&e))),
        DmarcResult::TempError(e) => ("temperror", Some(reason(&e))),
        DmarcResult::PermError(e) => ("permerror", Some(reason(&e))),
        DmarcResult::None => ("none", None),
    };
    let mut props = vec![("header.from", out.domain().to_string())];
    if out.dmarc_record().is_some() {
        let policy = match out.policy() {
            Policy::Reject => "reject",
            Policy::Quarantine => "quarantine",
            Policy::None | Policy::Unspecified => "none",
        };
        props.push(("policy.dmarc", policy.to_string()));
    }
    Finding::new("dmarc", result, out.domain(), reason, props)
}

fn dkim_result(result: &DkimResult) -> (&'static str, Option<&'static str>) {
    match result {
        DkimResult::Pass => ("pass", None),
        DkimResult::Neutral(e) => ("neutral", Some(reason(e))),
        DkimResult::Fail(e) => ("fail", Some(reason(e))),
        DkimResult::PermError(e) => ("permerror", Some(reason(e))),
        DkimResult::TempError(e) => ("temperror", Some(reason(e))),
        DkimResult::None => ("none", None),
    }
}

/// A fixed phrase for each error: nothing the sender or a DNS answer chose goes into a
/// header comment.
fn reason(e: &Error) -> &'static str {
    use mail_auth::arc::ArcError;
    match e {
        Error::ParseError => "record parse error",
        Error::MissingParameters => "missing parameters",
        Error::NoHeadersFound => "no headers found",
        Error::Base64 => "base64 error",
        Error::NotAligned => "not aligned",
        Error::Io(_) => "i/o error",
        Error::Crypto(CryptoError::FailedVerification | CryptoError::Library(_)) => {
            "signature did not verify"
        }
        Error::Crypto(CryptoError::IncompatibleAlgorithms) => "key and signature algorithms differ",
        Error::Dns(DnsError::Resolver(_)) => "dns error",
        Error::Dns(DnsError::RecordNotFound(_)) => "no key record",
        Error::Dns(DnsError::InvalidRecordType) => "invalid record",
        Error::Dkim(DkimError::UnsupportedVersion) => "unsupported version",
        Error::Dkim(DkimError::UnsupportedAlgorithm) => "unsupported algorithm",
        Error::Dkim(DkimError::UnsupportedCanonicalization) => "unsupported canonicalization",
        Error::Dkim(DkimError::UnsupportedKeyType) => "unsupported key type",
        Error::Dkim(DkimError::FailedBodyHashMatch) => "body hash did not verify",
        Error::Dkim(DkimError::FailedAuidMatch) => "identity does not match the key",
        Error::Dkim(DkimError::RevokedPublicKey) => "revoked key",
        Error::Dkim(DkimError::SignatureExpired) => "signature expired",
        Error::Dkim(DkimError::SignatureLength) => "l= tag not accepted",
        Error::Arc(ArcError::ChainTooLong) => "too many ARC sets",
        Error::Arc(ArcError::InvalidInstance(_)) => "invalid ARC instance",
        Error::Arc(ArcError::InvalidCV) => "invalid ARC cv",
        Error::Arc(ArcError::HasHeaderTag) => "ARC seal has h= tag",
        Error::Arc(ArcError::BrokenChain) => "broken ARC chain",
        Error::Arc(ArcError::FailedBodyHashMatch) => "body hash did not verify",
        Error::Arc(ArcError::SignatureExpired) => "signature expired",
        Error::Arc(ArcError::SignatureLength) => "l= tag not accepted",
        Error::Dkim2(_) => "dkim2 error",
    }
}

#[cfg(test)]
mod tests;
