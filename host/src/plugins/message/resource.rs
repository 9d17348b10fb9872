//! The `message` resource's methods as plugins call them: each is charged to the call's
//! capability budget, then reads or edits the message through [`MessageRes`], which checks
//! what a plugin may write.

use std::sync::Arc;

use wasmtime::component::Resource;

use super::{field_is_named, field_name, field_value, FieldAt, MessageRes, MAX_READ};
use crate::plugins::bindings::wasmrelay::plugin::types::{self as wit, HostMessage};
use crate::plugins::mime;
use crate::plugins::state::StoreState;

impl StoreState {
    fn message(&mut self, r: &Resource<MessageRes>) -> wasmtime::Result<&mut MessageRes> {
        self.charge()?;
        Ok(self.table.get_mut(r)?)
    }
}

impl HostMessage for StoreState {
    fn headers(&mut self, r: Resource<MessageRes>) -> wasmtime::Result<Vec<(String, String)>> {
        let m = self.message(&r)?;
        Ok(m.field_lines()
            .map(|raw| {
                let name = String::from_utf8_lossy(field_name(raw)).into_owned();
                (name, field_value(raw))
            })
            .collect())
    }

    fn header(&mut self, r: Resource<MessageRes>, name: String) -> wasmtime::Result<Vec<String>> {
        let m = self.message(&r)?;
        Ok(m.field_lines()
            .filter(|raw| field_is_named(raw, &name))
            .map(field_value)
            .collect())
    }

    fn size(&mut self, r: Resource<MessageRes>) -> wasmtime::Result<u64> {
        Ok(self.message(&r)?.size())
    }

    fn body_size(&mut self, r: Resource<MessageRes>) -> wasmtime::Result<u64> {
        Ok(self.message(&r)?.body().len() as u64)
    }

    fn read_body(
        &mut self,
        r: Resource<MessageRes>,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Vec<u8>> {
        let body = self.message(&r)?.body();
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(body.len());
        let end = start
            .saturating_add((len as usize).min(MAX_READ))
            .min(body.len());
        Ok(body[start..end].to_vec())
    }

    fn add_header(
        &mut self,
        r: Resource<MessageRes>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.message(&r)?.add_field(&name, &value, FieldAt::Last)
    }

    fn prepend_header(
        &mut self,
        r: Resource<MessageRes>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.message(&r)?.add_field(&name, &value, FieldAt::First)
    }

    fn remove_header(&mut self, r: Resource<MessageRes>, name: String) -> wasmtime::Result<u32> {
        let m = self.message(&r)?;
        // Asked for every message whatever it holds (a router dropping an internal header):
        // the list is copied only when something goes.
        let removed = m
            .field_lines()
            .filter(|raw| field_is_named(raw, &name))
            .count();
        if removed > 0 {
            let original = &m.original;
            let fields = Arc::make_mut(&mut m.fields);
            fields.retain(|f| !field_is_named(f.raw(original), &name));
            m.fields_changed(&name);
            m.edited = true;
        }
        Ok(removed as u32)
    }

    fn replace_header(
        &mut self,
        r: Resource<MessageRes>,
        name: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.message(&r)?.replace_field(&name, &value)
    }

    fn replace_body(&mut self, r: Resource<MessageRes>, body: Vec<u8>) -> wasmtime::Result<()> {
        self.message(&r)?.start_body(body)
    }

    fn append_body(&mut self, r: Resource<MessageRes>, chunk: Vec<u8>) -> wasmtime::Result<()> {
        self.message(&r)?.continue_body(chunk)
    }

    fn parts(&mut self, r: Resource<MessageRes>) -> wasmtime::Result<Vec<wit::MimePart>> {
        let m = self.message(&r)?;
        Ok(mime::parts(m))
    }

    fn part_text(
        &mut self,
        r: Resource<MessageRes>,
        id: u32,
    ) -> wasmtime::Result<Result<String, wit::PartError>> {
        let m = self.message(&r)?;
        Ok(mime::part_text(m, id))
    }

    fn read_part(
        &mut self,
        r: Resource<MessageRes>,
        id: u32,
        offset: u64,
        len: u32,
    ) -> wasmtime::Result<Result<Vec<u8>, wit::PartError>> {
        let m = self.message(&r)?;
        Ok(mime::read_part(m, id, offset, len.min(MAX_READ as u32)))
    }

    fn replace_part_text(
        &mut self,
        r: Resource<MessageRes>,
        id: u32,
        text: String,
    ) -> wasmtime::Result<Result<(), wit::PartError>> {
        let m = self.message(&r)?;
        Ok(mime::replace_part_text(m, id, &text))
    }

    fn drop(&mut self, r: Resource<MessageRes>) -> wasmtime::Result<()> {
        self.table.delete(r)?;
        Ok(())
    }
}
