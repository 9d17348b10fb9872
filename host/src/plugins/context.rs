//! The `context` resource: a snapshot of the session and transaction, built once per chain
//! run and shared by every plugin called in it. The only thing plugins write through it is
//! the transaction's annotations, which later plugins of the same run see at once.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use wasmtime::component::Resource;

use super::bindings::wasmrelay::plugin::types::{self as wit, HostContext};
use super::state::StoreState;
use super::types::{ConnectionInfo, TransactionInfo};

/// Most annotations one message may carry, and their sizes.
pub(crate) const MAX_ANNOTATIONS: usize = 32;
const MAX_ANNOTATION_VALUE: usize = 1024;

/// What `context` methods answer from.
#[derive(Debug, Default)]
pub struct ContextData {
    pub(crate) conn: Option<Arc<ConnectionInfo>>,
    pub(crate) tx: TransactionInfo,
    /// Whether a transaction is open (annotations can only be set inside one).
    in_transaction: bool,
    annotations: Mutex<Vec<(String, String)>>,
}

impl ContextData {
    /// The snapshot for one chain run. It owns the transaction until
    /// [`ContextData::into_transaction`] gives it back: a hook costs no copy of the
    /// recipients, however many there are.
    pub(crate) fn new(conn: Arc<ConnectionInfo>, tx: TransactionInfo) -> Arc<ContextData> {
        let mut data = ContextData::default();
        data.fill(conn, tx);
        Arc::new(data)
    }

    fn fill(&mut self, conn: Arc<ConnectionInfo>, mut tx: TransactionInfo) {
        self.conn = Some(conn);
        self.in_transaction = tx.mail_from.is_some();
        *self
            .annotations
            .get_mut()
            .unwrap_or_else(|p| p.into_inner()) = std::mem::take(&mut tx.annotations);
        self.tx = tx;
    }

    /// [`ContextData::new`] in the allocation of a snapshot an earlier run of the same session
    /// left in `spare` (a session runs a chain at every stage it has plugins for).
    pub(crate) fn reuse(
        spare: &mut Option<Arc<ContextData>>,
        conn: Arc<ConnectionInfo>,
        tx: TransactionInfo,
    ) -> Arc<ContextData> {
        if let Some(mut kept) = spare.take() {
            if let Some(data) = Arc::get_mut(&mut kept) {
                data.fill(conn, tx);
                return kept;
            }
        }
        ContextData::new(conn, tx)
    }

    /// The transaction after the chain ran, with the annotations plugins set. The run's
    /// calls are over, so nothing else holds the snapshot and it is taken apart, not copied;
    /// emptied, it goes to `spare` for the session's next run.
    pub(crate) fn into_transaction(
        mut this: Arc<ContextData>,
        spare: &mut Option<Arc<ContextData>>,
    ) -> TransactionInfo {
        let Some(c) = Arc::get_mut(&mut this) else {
            return TransactionInfo {
                annotations: this.annotations(),
                ..this.tx.clone()
            };
        };
        let annotations =
            std::mem::take(c.annotations.get_mut().unwrap_or_else(|p| p.into_inner()));
        let tx = TransactionInfo {
            annotations,
            ..std::mem::take(&mut c.tx)
        };
        ContextData::release(this, spare);
        tx
    }

    /// Ends a run whose transaction the caller does not take back: the snapshot, emptied,
    /// goes to `spare` if nothing else holds it.
    pub(crate) fn release(mut this: Arc<ContextData>, spare: &mut Option<Arc<ContextData>>) {
        if let Some(c) = Arc::get_mut(&mut this) {
            c.conn = None;
            c.tx = TransactionInfo::default();
            c.annotations
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            *spare = Some(this);
        }
    }

    /// The annotations after the chain ran (the transaction's, plus what plugins set).
    pub(crate) fn annotations(&self) -> Vec<(String, String)> {
        self.annotations
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn set_annotation(&self, name: &str, value: &str) -> Result<(), String> {
        if !self.in_transaction {
            return Err("no transaction: annotations belong to a message".into());
        }
        if !crate::config::valid_name(name) {
            return Err("annotation names are 1..=64 bytes of a-z 0-9 - _ .".into());
        }
        if value.len() > MAX_ANNOTATION_VALUE {
            return Err(format!(
                "annotation value of {} bytes (max {MAX_ANNOTATION_VALUE})",
                value.len()
            ));
        }
        let mut all = self.annotations.lock().unwrap_or_else(|p| p.into_inner());
        match all.iter().position(|(k, _)| k == name) {
            Some(i) => all[i].1 = value.to_string(),
            None if all.len() < MAX_ANNOTATIONS => all.push((name.to_string(), value.to_string())),
            None => return Err(format!("at most {MAX_ANNOTATIONS} annotations per message")),
        }
        Ok(())
    }
}

/// Largest value a plugin may keep for a session (`set-session-value`).
pub(crate) const MAX_SESSION_VALUE: usize = 4 * 1024;

/// The resource a plugin holds a borrow of during one hook call: the chain run's shared
/// snapshot, and the calling plugin's own session value. The value travels in and out with
/// the resource, so what a call sets is kept only when the call returns normally (a store
/// that failed is dropped with its table, and with what the call set). An instance keeps
/// one for its life, empty between calls (`data` is `None`: no guest can reach it then,
/// a borrow ends with its call).
pub struct ContextRes {
    pub(crate) data: Option<Arc<ContextData>>,
    pub(crate) session_value: Option<Vec<u8>>,
}

impl StoreState {
    fn context(&mut self, r: &Resource<ContextRes>) -> wasmtime::Result<Arc<ContextData>> {
        self.charge()?;
        let data = self.table.get(r)?.data.clone();
        data.ok_or_else(|| wasmtime::format_err!("context used outside its hook call"))
    }
}

/// An address as `IpAddr`'s `Display` writes it. IPv4 digits are written directly: plugins
/// ask for the client's address at nearly every hook, and the formatting machinery took over
/// a thousand instructions for it.
fn ip_text(ip: IpAddr) -> String {
    let IpAddr::V4(v4) = ip else {
        return ip.to_string();
    };
    let mut text = String::with_capacity(15);
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            text.push('.');
        }
        if octet >= 100 {
            text.push(char::from(b'0' + octet / 100));
        }
        if octet >= 10 {
            text.push(char::from(b'0' + octet / 10 % 10));
        }
        text.push(char::from(b'0' + octet % 10));
    }
    text
}

/// An address as `ip-address`: the same address `remote-ip` writes.
fn ip_address(ip: IpAddr) -> wit::IpAddress {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            wit::IpAddress::Ipv4((a, b, c, d))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, d, e, f, g, h] = v6.segments();
            wit::IpAddress::Ipv6((a, b, c, d, e, f, g, h))
        }
    }
}

fn conn<T: Default>(c: &ContextData, f: impl FnOnce(&ConnectionInfo) -> T) -> T {
    c.conn.as_deref().map(f).unwrap_or_default()
}

impl HostContext for StoreState {
    fn session_id(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| c.session_id.clone()))
    }

    fn remote_ip(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| ip_text(c.remote.ip())))
    }

    fn remote_port(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<u16> {
        Ok(conn(&*self.context(&r)?, |c| c.remote.port()))
    }

    fn local_ip(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| ip_text(c.local.ip())))
    }

    fn local_port(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<u16> {
        Ok(conn(&*self.context(&r)?, |c| c.local.port()))
    }

    fn listener(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| c.listener.clone()))
    }

    fn helo(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<String>> {
        Ok(conn(&*self.context(&r)?, |c| c.helo.clone()))
    }

    fn tls(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<wit::TlsInfo>> {
        Ok(conn(&*self.context(&r)?, |c| {
            c.tls.as_ref().map(|t| wit::TlsInfo {
                protocol: t.protocol.clone(),
                cipher: t.cipher.clone(),
            })
        }))
    }

    fn auth_user(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<String>> {
        Ok(conn(&*self.context(&r)?, |c| c.auth_user.clone()))
    }

    fn mail_from(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<String>> {
        Ok(self.context(&r)?.tx.mail_from.clone())
    }

    fn mail_params(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.context(&r)?.tx.mail_params.clone())
    }

    fn size(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<u64>> {
        Ok(self.context(&r)?.tx.size)
    }

    fn recipients(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Vec<String>> {
        Ok(self.context(&r)?.tx.recipients.clone())
    }

    fn recipient_count(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<u32> {
        let n = self.context(&r)?.tx.recipients.len();
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    fn remote_address(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<wit::IpAddress> {
        let ip = conn(&*self.context(&r)?, |c| Some(c.remote.ip()));
        Ok(ip_address(
            ip.unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)),
        ))
    }

    fn queue_id(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<String>> {
        Ok(self.context(&r)?.tx.queue_id.clone())
    }

    fn auth_results(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Vec<wit::AuthResult>> {
        let ctx = self.context(&r)?;
        Ok(ctx
            .tx
            .auth_results
            .iter()
            .map(|a| wit::AuthResult {
                method: a.method.clone(),
                result: a.result.clone(),
                domain: a.domain.clone(),
                detail: a.detail.clone(),
            })
            .collect())
    }

    fn attribute(
        &mut self,
        r: Resource<ContextRes>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(conn(&*self.context(&r)?, |c| {
            c.attributes
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }))
    }

    fn annotations(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.context(&r)?.annotations())
    }

    fn set_annotation(
        &mut self,
        r: Resource<ContextRes>,
        name: String,
        value: String,
    ) -> wasmtime::Result<Result<(), String>> {
        Ok(self.context(&r)?.set_annotation(&name, &value))
    }

    fn session_value(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Option<Vec<u8>>> {
        self.charge()?;
        Ok(self.table.get(&r)?.session_value.clone())
    }

    fn set_session_value(
        &mut self,
        r: Resource<ContextRes>,
        value: Option<Vec<u8>>,
    ) -> wasmtime::Result<Result<(), String>> {
        self.charge()?;
        let res = self.table.get_mut(&r)?;
        if let Some(v) = value.as_ref().filter(|v| v.len() > MAX_SESSION_VALUE) {
            return Ok(Err(format!(
                "session value of {} bytes (max {MAX_SESSION_VALUE})",
                v.len()
            )));
        }
        res.session_value = value;
        Ok(Ok(()))
    }

    fn drop(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        let mut ips: Vec<IpAddr> = (0..=255u8)
            .map(|b| IpAddr::from([b, b / 3, 255 - b, b % 10]))
            .collect();
        ips.extend(
            [
                "0.0.0.0",
                "255.255.255.255",
                "::1",
                "2001:db8::5",
                "::ffff:192.0.2.1",
            ]
            .map(|t| t.parse::<IpAddr>().unwrap()),
        );
        for ip in ips {
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    #[test]
    fn numeric_addresses_are_the_textual_ones() {
        let cases = [
            ("192.0.2.77", [192, 0, 2, 77, 0, 0, 0, 0], 4),
            ("0.0.0.0", [0; 8], 4),
            ("2001:db8::5", [0x2001, 0xdb8, 0, 0, 0, 0, 0, 5], 6),
            (
                "::ffff:192.0.2.1",
                [0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201],
                6,
            ),
        ];
        for (text, numbers, family) in cases {
            let ip: IpAddr = text.parse().unwrap();
            let got = match ip_address(ip) {
                wit::IpAddress::Ipv4((a, b, c, d)) => (4, [a, b, c, d].map(u16::from).to_vec()),
                wit::IpAddress::Ipv6((a, b, c, d, e, f, g, h)) => (6, vec![a, b, c, d, e, f, g, h]),
            };
            let want = numbers[..if family == 4 { 4 } else { 8 }].to_vec();
            assert_eq!(got, (family, want), "{text}");
            assert_eq!(ip_text(ip), text);
        }
    }

    #[test]
    fn a_reused_snapshot_holds_only_the_new_run() {
        let mut spare = None;
        let first = ctx(true);
        first.set_annotation("tag", "one").unwrap();
        let tx = ContextData::into_transaction(first, &mut spare);
        assert_eq!(tx.annotations.len(), 2, "the run's annotations come back");
        let kept = spare.as_ref().expect("an emptied snapshot is kept");
        assert!(kept.conn.is_none() && kept.annotations().is_empty());
        assert_eq!(kept.tx, TransactionInfo::default());
        let conn = Arc::new(ConnectionInfo::new(
            "s2",
            "192.0.2.9:1".parse().unwrap(),
            "127.0.0.1:25".parse().unwrap(),
        ));
        let second = ContextData::reuse(&mut spare, conn, TransactionInfo::default());
        assert!(spare.is_none());
        assert_eq!(second.conn.as_ref().unwrap().session_id, "s2");
        assert!(second.annotations().is_empty());
        assert!(
            second.set_annotation("tag", "x").is_err(),
            "no transaction in this run: the last run's state did not carry over"
        );
        // A snapshot something else still holds is never reused.
        let held = second.clone();
        ContextData::release(second, &mut spare);
        assert!(spare.is_none());
        drop(held);
    }

    fn ctx(in_tx: bool) -> Arc<ContextData> {
        let conn = ConnectionInfo::new(
            "s1",
            "192.0.2.1:1234".parse().unwrap(),
            "127.0.0.1:25".parse().unwrap(),
        );
        let tx = TransactionInfo {
            mail_from: in_tx.then(String::new),
            annotations: vec![("stream".into(), "bulk".into())],
            ..TransactionInfo::default()
        };
        ContextData::new(Arc::new(conn), tx)
    }

    #[test]
    fn annotations_are_checked_and_replace_by_name() {
        let c = ctx(true);
        assert!(c.set_annotation("stream", "newsletter").is_ok());
        assert!(c.set_annotation("x.y_z-1", "v").is_ok());
        assert_eq!(
            c.annotations(),
            [
                ("stream".into(), "newsletter".into()),
                ("x.y_z-1".into(), "v".into())
            ]
        );
        for bad in ["", "Upper", "sp ace", "a:b", &"n".repeat(65)] {
            assert!(c.set_annotation(bad, "v").is_err(), "{bad:?}");
        }
        assert!(c.set_annotation("big", &"v".repeat(1025)).is_err());
        for i in 0..30 {
            assert!(c.set_annotation(&format!("k{i}"), "v").is_ok());
        }
        assert!(c.set_annotation("one-too-many", "v").is_err());
        assert_eq!(c.annotations().len(), MAX_ANNOTATIONS);
    }

    #[test]
    fn the_transaction_comes_back_with_the_annotations_set() {
        let c = ctx(true);
        c.set_annotation("stream", "newsletter").unwrap();
        let mut spare = None;
        let tx = ContextData::into_transaction(c, &mut spare);
        assert_eq!(tx.annotations, [("stream".into(), "newsletter".into())]);
        assert_eq!(tx.mail_from.as_deref(), Some(""));
        // A snapshot still shared is copied, with the same result.
        let c = ctx(true);
        let other = c.clone();
        c.set_annotation("x", "1").unwrap();
        let mut spare = None;
        let tx = ContextData::into_transaction(c, &mut spare);
        assert_eq!(tx.annotations.len(), 2);
        assert_eq!(other.annotations().len(), 2);
        assert!(spare.is_none(), "a shared snapshot is not kept for reuse");
    }

    #[test]
    fn annotations_need_a_transaction() {
        assert!(ctx(false).set_annotation("stream", "x").is_err());
    }
}
