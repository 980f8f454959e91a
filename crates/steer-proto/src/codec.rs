//! The protobuf codec every generated client and server uses: prost's, with
//! small initial codec buffers.
//!
//! tonic's default gives each RPC an 8 KiB encode and an 8 KiB decode buffer
//! up front. A health stream lives as long as its agent and carries reports
//! and acks of a few hundred bytes, so with 10,000 agents those buffers alone
//! hold ~160 MiB. Only the initial capacity changes: a buffer still grows to
//! fit any message up to the usual limits (a large `GetStatus` reply just
//! reallocates once or twice), and the yield threshold for batching streamed
//! replies is tonic's.

use std::marker::PhantomData;

use prost::Message;
use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstCodec, ProstDecoder, ProstEncoder};

/// Initial capacity of each RPC's encode and decode buffer: a health report
/// with a few services and peers fits without growing.
pub const INITIAL_BUFFER_BYTES: usize = 1024;

/// tonic's default: flush batched streamed messages at 32 KiB.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// [`ProstCodec`] with [`INITIAL_BUFFER_BYTES`] buffers.
#[derive(Debug, Clone)]
pub struct SteerCodec<T, U> {
    _pd: PhantomData<(T, U)>,
}

impl<T, U> Default for SteerCodec<T, U> {
    fn default() -> Self {
        Self { _pd: PhantomData }
    }
}

/// The initial buffer sizes every Steer RPC uses.
pub fn buffer_settings() -> BufferSettings {
    BufferSettings::new(INITIAL_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for SteerCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(buffer_settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(buffer_settings())
    }
}

#[cfg(test)]
mod tests {
    use tokio_stream::StreamExt;
    use tonic::codec::{EncodeBody, SingleMessageCompressionOverride, Streaming};

    use super::*;
    use crate::v1::HealthReport;

    /// Messages far larger than the initial buffers, back to back in one
    /// body, come through whole: the buffers grow as needed.
    #[tokio::test]
    async fn messages_larger_than_the_initial_buffer_round_trip() {
        let messages: Vec<HealthReport> = [10, 5_000, 300_000, 20]
            .into_iter()
            .enumerate()
            .map(|(i, len)| HealthReport {
                pop: "x".repeat(len),
                sequence: i as u64 + 1,
                ..Default::default()
            })
            .collect();
        let mut codec = SteerCodec::<HealthReport, HealthReport>::default();
        let body = EncodeBody::new_server(
            codec.encoder(),
            tokio_stream::iter(messages.clone().into_iter().map(Ok)),
            None,
            SingleMessageCompressionOverride::default(),
            None,
        );
        let decoded: Vec<HealthReport> = Streaming::new_request(codec.decoder(), body, None, None)
            .map(|m| m.expect("decodes"))
            .collect()
            .await;
        assert_eq!(decoded, messages);
    }
}
