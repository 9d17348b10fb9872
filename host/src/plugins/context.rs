//! The `context` resource: a read-only snapshot of the session and transaction, built once
//! per chain run and shared by every plugin called in it.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::wasmrelay::plugin::types::{self as wit, HostContext};
use super::state::StoreState;
use super::types::{ConnectionInfo, TransactionInfo};

/// What `context` methods answer from.
#[derive(Debug, Clone, Default)]
pub struct ContextData {
    pub(crate) conn: Option<ConnectionInfo>,
    pub(crate) tx: TransactionInfo,
}

impl ContextData {
    pub(crate) fn new(conn: &ConnectionInfo, tx: Option<&TransactionInfo>) -> Arc<ContextData> {
        Arc::new(ContextData {
            conn: Some(conn.clone()),
            tx: tx.cloned().unwrap_or_default(),
        })
    }
}

/// The resource a plugin holds a borrow of during one hook call.
pub struct ContextRes(pub(crate) Arc<ContextData>);

impl StoreState {
    fn context(&mut self, r: &Resource<ContextRes>) -> wasmtime::Result<Arc<ContextData>> {
        self.charge()?;
        Ok(self.table.get(r)?.0.clone())
    }
}

fn conn<T: Default>(c: &ContextData, f: impl FnOnce(&ConnectionInfo) -> T) -> T {
    c.conn.as_ref().map(f).unwrap_or_default()
}

impl HostContext for StoreState {
    fn session_id(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| c.session_id.clone()))
    }

    fn remote_ip(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| c.remote.ip().to_string()))
    }

    fn remote_port(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<u16> {
        Ok(conn(&*self.context(&r)?, |c| c.remote.port()))
    }

    fn local_ip(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<String> {
        Ok(conn(&*self.context(&r)?, |c| c.local.ip().to_string()))
    }

    fn local_port(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<u16> {
        Ok(conn(&*self.context(&r)?, |c| c.local.port()))
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

    fn recipients(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<Vec<String>> {
        Ok(self.context(&r)?.tx.recipients.clone())
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
                .map(|(_, v)| v.clone())
        }))
    }

    fn drop(&mut self, r: Resource<ContextRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}
