//! Reply and verdict builders, so hooks read as policy rather than struct literals.

use crate::{EnhancedCode, Reply, Verdict};

impl Reply {
    /// A reply such as `Reply::new(550, "5.7.1", "relaying denied")`. An `enhanced` that is
    /// not `class.subject.detail` is left out rather than sent malformed.
    pub fn new(code: u16, enhanced: &str, text: impl Into<String>) -> Reply {
        Reply {
            code,
            enhanced: EnhancedCode::parse(enhanced),
            text: text.into(),
        }
    }
}

impl EnhancedCode {
    /// Parses `5.7.1`.
    pub fn parse(s: &str) -> Option<EnhancedCode> {
        let mut parts = s.split('.');
        let class = parts.next()?.parse().ok()?;
        let subject = parts.next()?.parse().ok()?;
        let detail = parts.next()?.parse().ok()?;
        if parts.next().is_some() || !matches!(class, 2 | 4 | 5) {
            return None;
        }
        Some(EnhancedCode {
            class,
            subject,
            detail,
        })
    }
}

impl Verdict {
    /// Permanent failure, e.g. `Verdict::reject(550, "5.1.1", "no such user")`.
    pub fn reject(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Reject(Reply::new(code, enhanced, text))
    }

    /// Temporary failure, e.g. `Verdict::tempfail(451, "4.7.1", "slow down")`.
    pub fn tempfail(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Tempfail(Reply::new(code, enhanced, text))
    }

    /// Reply and close the connection, e.g. `Verdict::disconnect(421, "4.7.0", "bye")`.
    pub fn disconnect(code: u16, enhanced: &str, text: impl Into<String>) -> Verdict {
        Verdict::Disconnect(Reply::new(code, enhanced, text))
    }
}
