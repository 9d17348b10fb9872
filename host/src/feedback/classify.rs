//! Hard or soft: whether a failed recipient should be tried again, by its RFC 3463 enhanced
//! status code and, when the code says little (`X.0.0`, or none), by the reply's words.
//!
//! A hard bounce means "this address does not take mail" and may put the recipient on the
//! suppression list; a soft one means "not now" or "not this message" and must not, so every
//! doubt resolves to soft. The table, first match wins:
//!
//! | status | class | why |
//! |---|---|---|
//! | `4.x.x` | soft | transient by definition (RFC 3463 §3.1) |
//! | `5.1.7`, `5.1.8` | soft | the *sender's* address was refused, not the recipient's |
//! | `5.1.x` | hard | bad mailbox, bad domain, bad syntax, moved, null MX |
//! | `5.2.2` | soft | mailbox full: the owner may empty it |
//! | `5.2.3` | soft | message too long for the mailbox: this message, not the address |
//! | `5.2.x` | hard | mailbox disabled (5.2.1) or other mailbox status |
//! | `5.3.x` | soft | the remote mail system is full, off or cannot handle this message |
//! | `5.4.6`, `5.4.7` | soft | routing loop, delivery time expired: ours to fix, not the address |
//! | `5.4.x` | hard | no route to the destination (no such domain, unroutable) |
//! | `5.5.x` | soft | protocol errors are the two MTAs' problem |
//! | `5.6.x` | soft | content the remote cannot convert: this message |
//! | `5.7.13` | hard | user account disabled |
//! | `5.7.x` | soft | policy: spam, reputation, authentication (SPF/DKIM/DMARC) of this message |
//! | `5.0.0` / none | by text | see below |
//! | other `5.x.x` | hard | |
//!
//! Text (for `X.0.0` and replies without an enhanced code), case-insensitive: words of a full
//! mailbox (`quota`, `mailbox full`, `insufficient storage`) or of policy (`spam`,
//! `blocked`, `blacklist`, `reputation`, `policy`, `rate limit`, `too many`, `try again`)
//! make a 5xx soft; otherwise a 5xx is hard. A 4xx is soft whatever it says.

use wasmrelay_codec::reply::Enhanced;

/// How a failure counts against the recipient's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BounceClass {
    Hard,
    Soft,
}

impl BounceClass {
    /// `hard` or `soft`, as events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            BounceClass::Hard => "hard",
            BounceClass::Soft => "soft",
        }
    }
}

/// Words that make a permanent failure soft: a full mailbox or a policy refusal of the
/// message (not of the address).
const SOFT_WORDS: &[&str] = &[
    "quota",
    "mailbox full",
    "mailbox is full",
    "insufficient storage",
    "out of storage",
    "spam",
    "blocked",
    "blacklist",
    "blocklist",
    "reputation",
    "policy",
    "rate limit",
    "too many",
    "try again",
];

/// The class of a failure with `status` and the reply's `text` (see the module docs).
pub fn classify(status: Enhanced, text: &str) -> BounceClass {
    use BounceClass::{Hard, Soft};
    let Enhanced(class, subject, detail) = status;
    if class != 5 {
        return Soft;
    }
    match (subject, detail) {
        (1, 7 | 8) => Soft,
        (1, _) => Hard,
        (2, 2 | 3) => Soft,
        (2, 0) => by_text(text),
        (2, _) => Hard,
        (3, _) => Soft,
        (4, 6 | 7) => Soft,
        (4, 0) => by_text(text),
        (4, _) => Hard,
        (5 | 6, _) => Soft,
        (7, 13) => Hard,
        (7, _) => Soft,
        (0, _) => by_text(text),
        _ => by_text(text),
    }
}

/// The class of a reply without a useful enhanced code: its basic code (`550`, `452` ...)
/// and its words.
pub fn classify_reply(code: u16, text: &str) -> BounceClass {
    if code / 100 == 5 {
        by_text(text)
    } else {
        BounceClass::Soft
    }
}

fn by_text(text: &str) -> BounceClass {
    let lower = text.to_ascii_lowercase();
    if SOFT_WORDS.iter().any(|w| lower.contains(w)) {
        BounceClass::Soft
    } else {
        BounceClass::Hard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use BounceClass::{Hard, Soft};

    #[test]
    fn replies_without_an_enhanced_code_go_by_their_words() {
        assert_eq!(classify_reply(550, "User unknown"), Hard);
        assert_eq!(
            classify_reply(552, "Requested mail action aborted: quota exceeded"),
            Soft
        );
        assert_eq!(classify_reply(554, "Blocked by reputation filter"), Soft);
        assert_eq!(classify_reply(450, "User unknown"), Soft);
        assert_eq!(Hard.as_str(), "hard");
        // The table itself is checked in tests/feedback.
        assert_eq!(classify(Enhanced(5, 2, 2), "mailbox full"), Soft);
    }
}
