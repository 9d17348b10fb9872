//! The delivery-stage resources: `envelope` (a queued message as the route, recipient-copy
//! and delivery-result hooks see it) and `recipient` (one recipient of it).

use std::sync::Arc;

use wasmtime::component::Resource;

use super::bindings::wasmrelay::plugin::types::{self as wit, HostEnvelope, HostRecipient};
use super::state::StoreState;
use super::types::{EnvelopeInfo, RecipientInfo};

/// The resource a plugin holds a borrow of during one delivery-stage hook call.
pub struct EnvelopeRes(pub(crate) Arc<EnvelopeInfo>);

/// One recipient, for `recipient-copy`.
pub struct RecipientRes(pub(crate) Arc<RecipientInfo>);

fn lookup(pairs: &[(String, String)], name: &str) -> Option<String> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

impl StoreState {
    fn envelope(&mut self, r: &Resource<EnvelopeRes>) -> wasmtime::Result<Arc<EnvelopeInfo>> {
        self.charge()?;
        Ok(self.table.get(r)?.0.clone())
    }

    fn recipient(&mut self, r: &Resource<RecipientRes>) -> wasmtime::Result<Arc<RecipientInfo>> {
        self.charge()?;
        Ok(self.table.get(r)?.0.clone())
    }
}

impl HostEnvelope for StoreState {
    fn queue_id(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<String> {
        Ok(self.envelope(&r)?.queue_id.clone())
    }

    fn mail_from(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<String> {
        Ok(self.envelope(&r)?.mail_from.clone())
    }

    fn attempt(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<u32> {
        Ok(self.envelope(&r)?.attempt)
    }

    fn size(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<u64> {
        Ok(self.envelope(&r)?.size)
    }

    fn received_ms(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<u64> {
        Ok(self.envelope(&r)?.received_ms)
    }

    fn attribute(
        &mut self,
        r: Resource<EnvelopeRes>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(lookup(&self.envelope(&r)?.attributes, &name))
    }

    fn annotations(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self.envelope(&r)?.annotations.clone())
    }

    fn annotation(
        &mut self,
        r: Resource<EnvelopeRes>,
        name: String,
    ) -> wasmtime::Result<Option<String>> {
        Ok(lookup(&self.envelope(&r)?.annotations, &name))
    }

    fn drop(&mut self, r: Resource<EnvelopeRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}

impl HostRecipient for StoreState {
    fn address(&mut self, r: Resource<RecipientRes>) -> wasmtime::Result<String> {
        Ok(self.recipient(&r)?.address.clone())
    }

    fn orcpt(&mut self, r: Resource<RecipientRes>) -> wasmtime::Result<Option<String>> {
        Ok(self.recipient(&r)?.orcpt.clone())
    }

    fn notify(&mut self, r: Resource<RecipientRes>) -> wasmtime::Result<wit::Notify> {
        let n = self.recipient(&r)?.notify;
        let mut flags = wit::Notify::empty();
        for (set, flag) in [
            (n.success, wit::Notify::SUCCESS),
            (n.failure, wit::Notify::FAILURE),
            (n.delay, wit::Notify::DELAY),
            (n.never, wit::Notify::NEVER),
        ] {
            if set {
                flags |= flag;
            }
        }
        Ok(flags)
    }

    fn drop(&mut self, r: Resource<RecipientRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}
