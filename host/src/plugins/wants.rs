//! What a plugin declares it wants to see, read from its component at load so the host can
//! skip calls (and the instance and message they would need) that cannot concern it.
//!
//! A plugin declares it in a custom section named [`SECTION`] (in the component or in any
//! core module inside it, where a Rust `#[link_section]` static lands), one line per hook:
//!
//! ```text
//! recipient-copy: text/html
//! data: text/html, text/calendar
//! ```
//!
//! meaning "call this hook only for messages with at least one part of one of these
//! content types". Only the message hooks (`data`, `recipient-copy`) take a declaration; a
//! component without the section is called as always. The WIT stays as it is: a section is
//! invisible to older hosts, which call the hook for every message, as they must.
//!
//! One more line, `session-memory: none`, says the plugin keeps nothing of a session in its
//! own memory between hooks (what it needs, it keeps with `context.set-session-value`): a
//! `pooled` instance of it then goes back to the pool after every call instead of staying
//! with its session until the end. `session-memory: kept` is the default.

use super::message_traits::{MessageTrait, MAX_TRAITS};
use super::relay_limits::{DeclaredLimits, RelayLimit};
use super::types::Hook;

/// The custom section's name.
pub const SECTION: &str = "wasmrelay:wants";

/// Longest declaration read (all sections together) and most content types per hook.
const MAX_DECLARATION: usize = 4 * 1024;
const MAX_TYPES: usize = 16;
/// Most header names per hook, and the longest name, in `host.want-headers`.
const MAX_HEADERS: usize = 16;
const MAX_HEADER_NAME: usize = 128;
/// Components nest; a declaration is never deeper than this.
const MAX_DEPTH: usize = 4;

/// What a plugin declared it wants to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Wants {
    /// Per message hook, the content types of which a message must have a part for the hook
    /// to be called (the section's lines).
    types: PerMessageHook,
    /// What the plugin declared with `host.want-headers` and `host.want-recipient-count` at
    /// load.
    declared: Declared,
    /// `session-memory: none`: an instance holds nothing of a session between calls.
    no_session_memory: bool,
}

impl Wants {
    /// Reads the declaration of the component `wasm`; an error says what is wrong with it.
    /// Text (WAT) declares nothing: whether it is a component at all is the compiler's call.
    pub(crate) fn of_component(wasm: &[u8]) -> Result<Wants, String> {
        if !wasm.starts_with(b"\0asm") {
            return Ok(Wants::default());
        }
        let mut text = Vec::new();
        collect(wasm, 0, &mut text)?;
        let text = std::str::from_utf8(&text)
            .map_err(|_| format!("custom section {SECTION:?} is not UTF-8"))?;
        Wants::parse(text)
    }

    fn parse(text: &str) -> Result<Wants, String> {
        let mut wants = Wants::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let Some((hook, types)) = line.split_once(':') else {
                return Err(format!("{SECTION}: {line:?} is not `hook: type, ...`"));
            };
            if hook.trim() == "session-memory" {
                wants.no_session_memory = match types.trim() {
                    "none" => true,
                    "kept" => false,
                    _ => {
                        return Err(format!(
                            "{SECTION}: {line:?}: session-memory is `none` or `kept`"
                        ))
                    }
                };
                continue;
            }
            let types: Vec<String> = types
                .split(',')
                .map(|t| t.trim().to_ascii_lowercase())
                .filter(|t| !t.is_empty())
                .collect();
            let valid = |t: &String| {
                t.split_once('/').is_some_and(|(a, b)| {
                    let token = |s: &str| {
                        !s.is_empty()
                            && s.bytes()
                                .all(|c| c.is_ascii_alphanumeric() || b"-+.".contains(&c))
                    };
                    token(a) && token(b)
                })
            };
            if types.is_empty() || types.len() > MAX_TYPES || !types.iter().all(valid) {
                return Err(format!(
                    "{SECTION}: {line:?} needs 1..={MAX_TYPES} content types like text/html"
                ));
            }
            let slot = match hook.trim() {
                "data" => wants.types.slot(Hook::Data),
                "recipient-copy" => wants.types.slot(Hook::RecipientCopy),
                _ => None,
            };
            let Some(slot) = slot else {
                return Err(format!(
                    "{SECTION}: hook {:?} takes no declaration (only data and recipient-copy)",
                    hook.trim()
                ));
            };
            slot.get_or_insert_with(Vec::new).extend(types);
        }
        Ok(wants)
    }

    /// Whether an instance of this plugin may serve any session at any call: it declared
    /// `session-memory: none`.
    pub(crate) fn call_scoped(&self) -> bool {
        self.no_session_memory
    }

    /// The content types `hook` is limited to, if the plugin declared any.
    pub(crate) fn types(&self, hook: Hook) -> Option<&[String]> {
        self.types.get(hook)
    }

    /// The header fields (lower case) `hook` is limited to, if the plugin declared any.
    pub(crate) fn headers(&self, hook: Hook) -> Option<&[String]> {
        self.declared.headers.get(hook)
    }

    /// The recipients a transaction must already have for `hook` to be called (0: always).
    pub(crate) fn min_recipients(&self, hook: Hook) -> usize {
        self.declared.min_recipients(hook)
    }

    /// The lists of which a recipient must be a member for `rcpt` to be called (empty: every
    /// recipient).
    pub(crate) fn rcpt_lists(&self) -> &[String] {
        &self.declared.rcpt_lists
    }

    /// The traits of which a message must have one for `hook` to be called, if the plugin
    /// declared any.
    pub(crate) fn traits(&self, hook: Hook) -> Option<&[MessageTrait]> {
        match hook {
            Hook::Data => self.declared.data_traits.get(),
            _ => None,
        }
    }

    /// The limits the relay keeps for `hook` in the plugin's place, calling it only when
    /// one would refuse (none: always called).
    pub(crate) fn relay_limits(&self, hook: Hook) -> &[RelayLimit] {
        self.declared.limits.get(hook)
    }

    /// These wants with what the plugin declared through the host at load.
    pub(crate) fn with_declared(self, declared: Declared) -> Wants {
        Wants { declared, ..self }
    }
}

/// What a plugin declared through the host while it answered `hooks()` at load: per message
/// hook, header fields of which a message must have one (`host.want-headers`); for `rcpt`
/// and `data` the recipients a transaction must already have (`host.want-recipient-count`);
/// the lists a recipient must be on for `rcpt` (`host.want-listed-recipients`); the traits
/// of which a message must have one for `data` (`host.want-messages-with`); the limits the
/// relay keeps for `connect` and `mail-from` (`host.want-calls-over-limits`). Each only
/// spares calls that could not concern the plugin, or whose work the relay does for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Declared {
    headers: PerMessageHook,
    rcpt_min_recipients: Option<u32>,
    data_min_recipients: Option<u32>,
    /// Lists of which a recipient must be a member for `rcpt` (none declared: every one).
    rcpt_lists: Vec<String>,
    data_traits: TraitWants,
    /// Limits the relay keeps for `connect` and `mail-from` (`host.want-calls-over-limits`).
    pub(crate) limits: DeclaredLimits,
}

/// The traits declared for one hook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
enum TraitWants {
    /// Nothing declared: every message.
    #[default]
    Every,
    /// A message with at least one of these.
    AnyOf(Vec<MessageTrait>),
    /// A declaration was refused: every message, whatever was or is declared besides, since
    /// what the plugin meant to add would have widened it.
    Refused,
}

impl TraitWants {
    fn get(&self) -> Option<&[MessageTrait]> {
        match self {
            TraitWants::AnyOf(traits) => Some(traits),
            TraitWants::Every | TraitWants::Refused => None,
        }
    }
}

/// Lists one plugin may declare for `rcpt` (`host.want-listed-recipients`).
pub(crate) const MAX_RCPT_LISTS: usize = 4;

impl Declared {
    /// Adds `names` to `hook`'s header declaration, or refuses all of them saying why.
    pub(crate) fn declare_headers(&mut self, hook: Hook, names: &[String]) -> Result<(), String> {
        let Some(slot) = self.headers.slot(hook) else {
            return Err(format!(
                "hook `{}` takes no header declaration (only data and recipient-copy)",
                hook.name()
            ));
        };
        if names.is_empty() {
            return Err("no header field names".into());
        }
        // RFC 5322 §3.6.8: a field name is one or more printable ASCII characters but `:`.
        let field_name = |n: &String| {
            (1..=MAX_HEADER_NAME).contains(&n.len())
                && n.bytes().all(|b| (33..=126).contains(&b) && b != b':')
        };
        if let Some(bad) = names.iter().find(|n| !field_name(n)) {
            let shown: String = bad.chars().take(40).collect();
            return Err(format!("{shown:?} is not a header field name"));
        }
        let mut all = slot.clone().unwrap_or_default();
        for name in names {
            let name = name.to_ascii_lowercase();
            if !all.contains(&name) {
                all.push(name);
            }
        }
        if all.len() > MAX_HEADERS {
            return Err(format!(
                "more than {MAX_HEADERS} header names for `{}`",
                hook.name()
            ));
        }
        *slot = Some(all);
        Ok(())
    }

    /// Limits `hook` (`rcpt` or `data`) to transactions with at least `at_least` recipients
    /// already; a second declaration for the same hook keeps the smaller, so that no part of
    /// a plugin misses a call it asked for.
    pub(crate) fn declare_recipients(&mut self, hook: Hook, at_least: u32) -> Result<(), String> {
        let slot = match hook {
            Hook::Rcpt => &mut self.rcpt_min_recipients,
            Hook::Data => &mut self.data_min_recipients,
            _ => {
                return Err(format!(
                    "hook `{}` takes no recipient-count declaration (only rcpt and data)",
                    hook.name()
                ))
            }
        };
        *slot = Some(slot.map_or(at_least, |declared| declared.min(at_least)));
        Ok(())
    }

    /// Adds `list` to those a recipient must be on for `rcpt` to be called. The caller has
    /// checked that the plugin may read it.
    pub(crate) fn declare_listed(&mut self, list: &str) -> Result<(), String> {
        if self.rcpt_lists.iter().any(|l| l == list) {
            return Ok(());
        }
        if self.rcpt_lists.len() >= MAX_RCPT_LISTS {
            return Err(format!("more than {MAX_RCPT_LISTS} lists for `rcpt`"));
        }
        self.rcpt_lists.push(list.to_string());
        Ok(())
    }

    /// Adds `traits` to those of which a message must have one for `hook` (`data`), or
    /// refuses them saying why; a refusal leaves the hook called for every message.
    pub(crate) fn declare_traits(&mut self, hook: Hook, traits: &[String]) -> Result<(), String> {
        let result = self.add_traits(hook, traits);
        if result.is_err() && hook == Hook::Data {
            self.data_traits = TraitWants::Refused;
        }
        result
    }

    fn add_traits(&mut self, hook: Hook, traits: &[String]) -> Result<(), String> {
        if hook != Hook::Data {
            return Err(format!(
                "hook `{}` takes no message traits (only data)",
                hook.name()
            ));
        }
        if traits.is_empty() {
            return Err("no message traits".into());
        }
        let mut all = match &self.data_traits {
            TraitWants::Every => Vec::new(),
            TraitWants::AnyOf(traits) => traits.clone(),
            TraitWants::Refused => {
                return Err("an earlier message-trait declaration was refused".into())
            }
        };
        for text in traits {
            let t = MessageTrait::parse(text)?;
            if !all.contains(&t) {
                all.push(t);
            }
        }
        if all.len() > MAX_TRAITS {
            return Err(format!("more than {MAX_TRAITS} message traits for `data`"));
        }
        self.data_traits = TraitWants::AnyOf(all);
        Ok(())
    }

    fn min_recipients(&self, hook: Hook) -> usize {
        let n = match hook {
            Hook::Rcpt => self.rcpt_min_recipients,
            Hook::Data => self.data_min_recipients,
            _ => None,
        };
        n.map_or(0, |n| n as usize)
    }
}

/// One optional list per message hook (`data`, `recipient-copy`); `None` means every
/// message. The other hooks take no declaration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PerMessageHook {
    data: Option<Vec<String>>,
    recipient_copy: Option<Vec<String>>,
}

impl PerMessageHook {
    fn get(&self, hook: Hook) -> Option<&[String]> {
        match hook {
            Hook::Data => self.data.as_deref(),
            Hook::RecipientCopy => self.recipient_copy.as_deref(),
            _ => None,
        }
    }

    /// `hook`'s list, or `None` for a hook that takes no declaration.
    fn slot(&mut self, hook: Hook) -> Option<&mut Option<Vec<String>>> {
        match hook {
            Hook::Data => Some(&mut self.data),
            Hook::RecipientCopy => Some(&mut self.recipient_copy),
            _ => None,
        }
    }
}

/// Whether a message whose leaf parts have `part_types` (lower case) concerns a hook limited
/// to `wanted`.
pub(crate) fn concerns(wanted: &[String], part_types: &[String]) -> bool {
    part_types.iter().any(|t| wanted.contains(t))
}

/// A LEB128 `u32` at `*pos`.
fn leb(bytes: &[u8], pos: &mut usize) -> Result<usize, String> {
    let mut value: u64 = 0;
    for shift in (0..35).step_by(7) {
        let b = *bytes.get(*pos).ok_or("truncated component")?;
        *pos += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return usize::try_from(value).map_err(|_| "section too large".to_string());
        }
    }
    Err("malformed LEB128 in component".into())
}

/// Appends the payload of every [`SECTION`] in the component or core module `bin` (and in
/// the modules and components nested in it) to `out`.
fn collect(bin: &[u8], depth: usize, out: &mut Vec<u8>) -> Result<(), String> {
    if bin.len() < 8 || &bin[..4] != b"\0asm" {
        return Err("not a WebAssembly binary".into());
    }
    // Core modules are layer 0; components layer 1 (bytes 6..8 of the header).
    let component = bin[6..8] == [1, 0];
    let mut pos = 8;
    while pos < bin.len() {
        let id = bin[pos];
        pos += 1;
        let size = leb(bin, &mut pos)?;
        let end = pos.checked_add(size).filter(|&e| e <= bin.len());
        let payload = &bin[pos..end.ok_or("section runs past the end of the component")?];
        pos += size;
        match id {
            0 => {
                let mut at = 0;
                let len = leb(payload, &mut at)?;
                let name = payload.get(at..at + len).ok_or("truncated section name")?;
                if name == SECTION.as_bytes() {
                    out.extend_from_slice(&payload[at + len..]);
                    out.push(b'\n');
                    if out.len() > MAX_DECLARATION {
                        return Err(format!(
                            "custom section {SECTION:?} over {MAX_DECLARATION} bytes"
                        ));
                    }
                }
            }
            // A nested core module (1) or component (4).
            1 | 4 if component && depth < MAX_DEPTH => collect(payload, depth + 1, out)?,
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn custom(name: &str, data: &[u8]) -> Vec<u8> {
        let mut payload = vec![name.len() as u8];
        payload.extend_from_slice(name.as_bytes());
        payload.extend_from_slice(data);
        let mut s = vec![0, payload.len() as u8];
        s.extend(payload);
        s
    }

    fn module(sections: &[Vec<u8>]) -> Vec<u8> {
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        sections.iter().for_each(|s| m.extend_from_slice(s));
        m
    }

    fn component(modules: &[Vec<u8>]) -> Vec<u8> {
        let mut c = b"\0asm\x0d\0\x01\0".to_vec();
        for m in modules {
            c.push(1);
            c.push(m.len() as u8);
            c.extend_from_slice(m);
        }
        c
    }

    #[test]
    fn a_declaration_in_a_nested_module_is_found() {
        let core = module(&[
            custom("producers", b"x"),
            custom(SECTION, b"recipient-copy: text/HTML\n"),
        ]);
        let wants = Wants::of_component(&component(&[module(&[]), core])).unwrap();
        assert_eq!(
            wants.types(Hook::RecipientCopy),
            Some(&["text/html".to_string()][..])
        );
        assert_eq!(wants.types(Hook::Data), None);
    }

    #[test]
    fn session_memory_is_declared_none_or_kept() {
        let wants = |text: &str| {
            Wants::of_component(&component(&[module(&[custom(SECTION, text.as_bytes())])]))
        };
        assert!(wants("session-memory: none\n").unwrap().call_scoped());
        let both = wants("recipient-copy: text/html\nsession-memory: none").unwrap();
        assert!(both.call_scoped());
        assert_eq!(
            both.types(Hook::RecipientCopy),
            Some(&["text/html".to_string()][..])
        );
        assert!(!wants("session-memory: kept").unwrap().call_scoped());
        assert!(!Wants::default().call_scoped());
        let e = wants("session-memory: some").unwrap_err();
        assert!(e.contains("`none` or `kept`"), "{e}");
    }

    #[test]
    fn no_section_wants_everything() {
        let wants = Wants::of_component(&component(&[module(&[custom("name", b"")])])).unwrap();
        assert_eq!(wants, Wants::default());
    }

    #[test]
    fn bad_declarations_and_binaries_are_refused() {
        for bad in [
            "recipient-copy text/html",
            "rcpt: text/html",
            "data: html",
            "data: ",
            "data: text/html; charset=utf-8",
        ] {
            let c = component(&[module(&[custom(SECTION, bad.as_bytes())])]);
            assert!(Wants::of_component(&c).is_err(), "{bad}");
        }
        let mut truncated = component(&[module(&[custom(SECTION, b"data: text/html")])]);
        truncated.truncate(truncated.len() - 3);
        assert!(Wants::of_component(&truncated).is_err());
        assert_eq!(Wants::of_component(b"(component)"), Ok(Wants::default()));
        assert!(Wants::of_component(b"\0asm\x0d\0").is_err());
        let mut huge_size = b"\0asm\x0d\0\x01\0\x01".to_vec();
        huge_size.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(Wants::of_component(&huge_size).is_err());
    }

    #[test]
    fn header_declarations_add_up_per_message_hook() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut h = Declared::default();
        h.declare_headers(Hook::Data, &names(&["X-Stream", "Precedence"]))
            .unwrap();
        h.declare_headers(Hook::Data, &names(&["precedence", "List-Id"]))
            .unwrap();
        let wants = Wants::default().with_declared(h);
        assert_eq!(
            wants.headers(Hook::Data),
            Some(&names(&["x-stream", "precedence", "list-id"])[..])
        );
        assert_eq!(wants.headers(Hook::RecipientCopy), None);
        assert_eq!(wants.types(Hook::Data), None, "headers do not make types");
        assert_eq!(wants.min_recipients(Hook::Data), 0, "nor recipient counts");
    }

    #[test]
    fn bad_header_declarations_change_nothing() {
        let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut h = Declared::default();
        h.declare_headers(Hook::RecipientCopy, &names(&["X-Campaign"]))
            .unwrap();
        let before = h.clone();
        let many: Vec<String> = (0..MAX_HEADERS).map(|i| format!("X-{i}")).collect();
        for (hook, bad, why) in [
            (Hook::Rcpt, names(&["X-A"]), "only data and recipient-copy"),
            (Hook::Data, names(&[]), "no header field names"),
            (
                Hook::Data,
                names(&["X-A", "Subject:"]),
                "not a header field name",
            ),
            (Hook::Data, names(&["X A"]), "not a header field name"),
            (Hook::Data, names(&["X-\u{e9}"]), "not a header field name"),
            (Hook::Data, vec!["X".repeat(129)], "not a header field name"),
            (Hook::RecipientCopy, many, "more than 16"),
        ] {
            let e = h.declare_headers(hook, &bad).unwrap_err();
            assert!(e.contains(why), "{bad:?}: {e}");
            assert_eq!(h, before, "{bad:?} changed the declaration");
        }
    }

    #[test]
    fn recipient_count_declarations_keep_the_smallest_per_hook() {
        let mut d = Declared::default();
        let wants = |d: &Declared| Wants::default().with_declared(d.clone());
        assert_eq!(
            wants(&d).min_recipients(Hook::Rcpt),
            0,
            "undeclared: always"
        );
        d.declare_recipients(Hook::Rcpt, 50).unwrap();
        d.declare_recipients(Hook::Rcpt, 100).unwrap();
        d.declare_recipients(Hook::Data, 2).unwrap();
        assert_eq!(wants(&d).min_recipients(Hook::Rcpt), 50);
        assert_eq!(wants(&d).min_recipients(Hook::Data), 2);
        d.declare_recipients(Hook::Rcpt, 0).unwrap();
        assert_eq!(wants(&d).min_recipients(Hook::Rcpt), 0, "0 is every call");
        d.declare_recipients(Hook::Rcpt, 7).unwrap();
        assert_eq!(wants(&d).min_recipients(Hook::Rcpt), 0, "and stays so");
        let before = d.clone();
        for hook in [Hook::MailFrom, Hook::RecipientCopy, Hook::Connect] {
            let e = d.declare_recipients(hook, 3).unwrap_err();
            assert!(e.contains("only rcpt and data"), "{e}");
            assert_eq!(wants(&d).min_recipients(hook), 0);
        }
        assert_eq!(d, before, "a refused declaration changes nothing");
    }

    #[test]
    fn a_message_concerns_a_hook_when_a_part_type_matches() {
        let wanted = vec!["text/html".to_string()];
        assert!(concerns(
            &wanted,
            &["text/plain".into(), "text/html".into()]
        ));
        assert!(!concerns(&wanted, &["text/plain".into()]));
        assert!(!concerns(&wanted, &[]));
    }
}
