//! The in-memory adapter: rooms and broadcasts of one gateway process, for running alone.

use std::convert::Infallible;
use std::time::Duration;

use socketioxide_core::adapter::{BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter};
use socketioxide_core::packet::Packet;

use super::namespace::{AckStream, Emitter};

pub struct LocalAdapter {
    local: CoreLocalAdapter<Emitter>,
}

impl CoreAdapter<Emitter> for LocalAdapter {
    type Error = Infallible;
    type State = ();
    type AckStream = AckStream;
    type InitRes = ();

    fn new(_state: &(), local: CoreLocalAdapter<Emitter>) -> Self {
        LocalAdapter { local }
    }

    fn init(self: std::sync::Arc<Self>, on_success: impl FnOnce() + Send + 'static) {
        on_success();
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<AckStream, Infallible> {
        Ok(self.local.broadcast_with_ack(packet, opts, timeout).0)
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        &self.local
    }
}

impl DefinedAdapter for LocalAdapter {}
