//! The `HealthIngest` service as steerd routes it: `Report` streams hand
//! each report's raw bytes to [`IngestService`], which reads them in place
//! ([`crate::wire::ReportView`]) instead of decoding a `HealthReport` per
//! report; every other method goes to the generated server.

use std::{
    convert::Infallible,
    task::{Context, Poll},
};

use prost::bytes::{Buf, Bytes};
use steer_proto::{
    codec::SteerCodec,
    v1::{HealthReport, ReportAck, health_ingest_server::HealthIngestServer},
};
use tonic::{
    Request, Response, Status, Streaming,
    body::Body,
    codec::{BufferSettings, Codec, DecodeBuf, Decoder},
    codegen::{BoxFuture, Service, http},
    server::{Grpc, NamedService, StreamingService},
};

use crate::ingest::{AckStream, IngestService};

/// The `Report` method's path.
pub const REPORT_PATH: &str = "/steer.v1.HealthIngest/Report";

/// `HealthIngest` with `Report` served from raw report bytes.
#[derive(Clone)]
pub struct HealthIngestRoutes {
    ingest: IngestService,
    generated: HealthIngestServer<IngestService>,
    max_report_bytes: usize,
}

impl HealthIngestRoutes {
    /// `max_report_bytes` bounds one report (and one `ReportAnswers` request).
    pub fn new(ingest: IngestService, max_report_bytes: usize) -> Self {
        Self {
            generated: HealthIngestServer::new(ingest.clone())
                .max_decoding_message_size(max_report_bytes),
            ingest,
            max_report_bytes,
        }
    }
}

impl NamedService for HealthIngestRoutes {
    const NAME: &'static str = <HealthIngestServer<IngestService> as NamedService>::NAME;
}

impl Service<http::Request<Body>> for HealthIngestRoutes {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        if req.uri().path() != REPORT_PATH {
            return self.generated.call(req);
        }
        let call = ReportCall(self.ingest.clone());
        let max = self.max_report_bytes;
        Box::pin(async move {
            let mut grpc = Grpc::new(RawReports).apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(call, req).await)
        })
    }
}

struct ReportCall(IngestService);

impl StreamingService<Bytes> for ReportCall {
    type Response = ReportAck;
    type ResponseStream = AckStream;
    type Future = BoxFuture<Response<AckStream>, Status>;

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move { ingest.open(request) })
    }
}

/// Reports in as bytes (a zero-copy slice of the receive buffer), acks out
/// through the usual protobuf encoder.
#[derive(Clone, Copy, Default)]
struct RawReports;

impl Codec for RawReports {
    type Encode = ReportAck;
    type Decode = Bytes;
    type Encoder = <SteerCodec<ReportAck, HealthReport> as Codec>::Encoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        SteerCodec::<ReportAck, HealthReport>::default().encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        let len = src.remaining();
        Ok(Some(src.copy_to_bytes(len)))
    }

    fn buffer_settings(&self) -> BufferSettings {
        steer_proto::codec::buffer_settings()
    }
}
