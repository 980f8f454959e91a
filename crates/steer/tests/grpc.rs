//! The gRPC surface with real gRPC clients: grpc.health.v1, reflection v1
//! and v1alpha, health ingest validation, operator API status codes.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use steer_proto::v1::{
    DrainRequest, HealthReport, Scope, health_ingest_client::HealthIngestClient,
    operator_client::OperatorClient,
};
use tokio_stream::StreamExt;
use tonic::Code;

async fn channel(s: &Steerd) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(s.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn grpc_health_and_reflection_v1_and_v1alpha() {
    let s = Steerd::start("grpc-health");
    rt().block_on(async {
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel(&s).await);
        for service in ["", "steer.v1.Operator", "steer.v1.HealthIngest"] {
            let resp = health
                .check(tonic_health::pb::HealthCheckRequest {
                    service: service.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                resp.status,
                tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
                "{service}"
            );
        }

        use tonic_reflection::pb::{v1, v1alpha};
        let mut c1 = v1::server_reflection_client::ServerReflectionClient::new(channel(&s).await);
        let req = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let mut stream = c1
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            resp.message_response
        else {
            panic!("unexpected reflection v1 response");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(names.contains(&"steer.v1.Operator".to_owned()), "{names:?}");
        assert!(
            names.contains(&"steer.v1.HealthIngest".to_owned()),
            "{names:?}"
        );

        let mut c0 =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel(&s).await);
        let req = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::FileContainingSymbol(
                    "steer.v1.Operator".into(),
                ),
            ),
        };
        let mut stream = c0
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let resp = stream.next().await.unwrap().unwrap();
        assert!(matches!(
            resp.message_response,
            Some(v1alpha::server_reflection_response::MessageResponse::FileDescriptorResponse(_))
        ));
    });
}

fn report(pop: &str, sequence: u64, up: bool) -> HealthReport {
    HealthReport {
        load_rps: 100.0,
        agent_instance: 42,
        ..app_report(pop, sequence, up)
    }
}

/// Agents that ask for cumulative acks (`ack_interval_ms`) get one for the
/// first report and then only when it matters: an ignored report, a change
/// of the PoP's desired state (a drain) at once; accepted reports in
/// between are taken silently. Bytes that are no report end the stream
/// with INVALID_ARGUMENT, and steerd goes on.
#[test]
fn cumulative_acks_hold_accepted_reports_but_never_a_refusal_or_a_drain() {
    let s = Steerd::start("cumulative-acks");
    let cumulative = |sequence| HealthReport {
        ack_interval_ms: 60_000,
        ..report("ams1", sequence, true)
    };
    rt().block_on(async {
        let mut client = HealthIngestClient::connect(s.endpoint()).await.unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let mut acks = client
            .report(tokio_stream::wrappers::ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        tx.send(cumulative(1)).await.unwrap();
        let first = acks.next().await.unwrap().unwrap();
        assert!(first.accepted && first.sequence == 1, "{first:?}");
        // 2 and 3 are accepted without acks: the next ack is the duplicate's.
        for seq in [2, 3, 3] {
            tx.send(cumulative(seq)).await.unwrap();
        }
        let dup = acks.next().await.unwrap().unwrap();
        assert!(!dup.accepted && dup.sequence == 3, "{dup:?}");
        let accepted = poll(Duration::from_secs(5), || {
            s.metric(r#"steer_health_reports_total{pop="ams1"}"#)
                .filter(|v| *v >= 3.0)
        });
        assert_eq!(accepted, Some(3.0));

        // A drain changes the desired state: the next report is acked at once.
        let out = s.steerctl(&["drain", "pop", "ams1", "--reason", "ack test"]);
        assert!(out.status.success(), "{out:?}");
        tx.send(cumulative(4)).await.unwrap();
        let drained = tokio::time::timeout(Duration::from_secs(5), acks.next())
            .await
            .expect("the drain is acked at once")
            .unwrap()
            .unwrap();
        assert!(drained.accepted && drained.sequence == 4, "{drained:?}");
        assert!(drained.desired.is_some_and(|d| d.drained), "{drained:?}");
        drop(tx);
        assert!(acks.next().await.is_none());

        // Garbage where a report should be.
        let mut raw = tonic::client::Grpc::new(channel(&s).await);
        raw.ready().await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/steer.v1.HealthIngest/Report");
        let garbage = vec![0x0a, 0x05, b'a'];
        let mut acks = raw
            .streaming(
                tonic::Request::new(tokio_stream::iter([garbage])),
                path,
                RawCodec,
            )
            .await
            .unwrap()
            .into_inner();
        let err = acks.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

        // A report over the size limit (1 MiB) is refused as such (tonic's
        // OUT_OF_RANGE), not closed without a word.
        let mut huge = vec![0x0a, 0x80, 0x80, 0x80, 0x01];
        huge.resize(2 * 1024 * 1024 + 5, b'a');
        raw.ready().await.unwrap();
        let path =
            tonic::codegen::http::uri::PathAndQuery::from_static("/steer.v1.HealthIngest/Report");
        let mut acks = raw
            .streaming(
                tonic::Request::new(tokio_stream::iter([huge])),
                path,
                RawCodec,
            )
            .await
            .unwrap()
            .into_inner();
        let err = acks.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    });
    // Still serving.
    assert!(!s.answers("app.example.test", "A", "10.1.2.0/24").is_empty());
}

/// Sends bytes as they are; decodes acks.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = steer_proto::v1::ReportAck;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = steer_proto::v1::ReportAck;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        prost::Message::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

#[test]
fn health_ingest_validates_and_ignores_stale_sequences() {
    let s = Steerd::start("ingest");
    rt().block_on(async {
        let mut client = HealthIngestClient::connect(s.endpoint()).await.unwrap();

        // Valid, then a duplicate sequence: the duplicate is acked but ignored.
        let reports = vec![
            report("ams1", 5, false),
            report("ams1", 5, true),
            report("ams1", 4, true),
        ];
        let mut acks = client
            .report(tokio_stream::iter(reports))
            .await
            .unwrap()
            .into_inner();
        let first = acks.next().await.unwrap().unwrap();
        assert!(first.accepted);
        assert!(first.desired.is_some());
        let dup = acks.next().await.unwrap().unwrap();
        assert!(!dup.accepted && dup.detail.contains("sequence"), "{dup:?}");
        let older = acks.next().await.unwrap().unwrap();
        assert!(!older.accepted);

        // Bad input ends the stream with a proper status and changes nothing.
        for (bad, code) in [
            (report("", 1, true), Code::InvalidArgument),
            (report("zzz9", 1, true), Code::NotFound),
            (
                HealthReport {
                    load_rps: f64::NAN,
                    ..report("fra1", 1, true)
                },
                Code::InvalidArgument,
            ),
            (
                HealthReport {
                    sequence: 0,
                    ..report("fra1", 1, true)
                },
                Code::InvalidArgument,
            ),
        ] {
            let mut acks = client
                .report(tokio_stream::iter([bad]))
                .await
                .unwrap()
                .into_inner();
            let err = acks.next().await.unwrap().unwrap_err();
            assert_eq!(err.code(), code, "{err:?}");
        }
    });
    // ams1 is down (first report), and the ignored "up" duplicates did not flip it.
    s.wait_answers(
        "10.1.0.0/24",
        &["192.0.2.11"],
        std::time::Duration::from_secs(1),
    )
    .unwrap_or_else(|got| panic!("{got:?}"));
}

/// Two agent processes for one PoP (an old one left running after a
/// restart): once the newer instance has reported, the older one's reports
/// are acked as ignored, whatever their sequence.
#[test]
fn reports_from_a_superseded_agent_instance_are_ignored() {
    let s = Steerd::start("superseded");
    let from = |instance: u64, started: i64, sequence: u64, up: bool| HealthReport {
        agent_instance: instance,
        agent_started_unix_ms: started,
        ..report("ams1", sequence, up)
    };
    rt().block_on(async {
        let mut client = HealthIngestClient::connect(s.endpoint()).await.unwrap();
        let mut send = async |r: HealthReport| {
            let mut acks = client
                .report(tokio_stream::iter([r]))
                .await
                .unwrap()
                .into_inner();
            acks.next().await.unwrap().unwrap()
        };
        let old = send(from(100, 1_000, 7, true)).await;
        assert!(old.accepted, "{old:?}");
        let new = send(from(200, 2_000, 1, true)).await;
        assert!(
            new.accepted,
            "a newer instance starts its sequence over: {new:?}"
        );
        let stale = send(from(100, 1_000, 8, false)).await;
        assert!(
            !stale.accepted && stale.detail.contains("newer agent instance"),
            "{stale:?}"
        );
        let next = send(from(200, 2_000, 2, true)).await;
        assert!(next.accepted, "{next:?}");
    });
}

#[test]
fn operator_api_uses_proper_status_codes() {
    let s = Steerd::start("operator-codes");
    rt().block_on(async {
        let mut op = OperatorClient::connect(s.endpoint()).await.unwrap();
        let err = op
            .drain(DrainRequest {
                scope: None,
                reason: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = op
            .drain(DrainRequest {
                scope: Some(Scope {
                    kind: 0,
                    id: "fra1".into(),
                    service: String::new(),
                }),
                reason: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument);
        let err = op
            .drain(DrainRequest {
                scope: Some(Scope {
                    kind: 2,
                    id: "mars".into(),
                    service: String::new(),
                }),
                reason: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::NotFound);
        // Draining the same scope again replaces the drain: one intent stays.
        let a = op
            .drain(DrainRequest {
                scope: Some(Scope {
                    kind: 1,
                    id: "fra1".into(),
                    service: String::new(),
                }),
                reason: "x".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let b = op
            .drain(DrainRequest {
                scope: Some(Scope {
                    kind: 1,
                    id: "fra1".into(),
                    service: String::new(),
                }),
                reason: "y".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_ne!(a.intent_id, b.intent_id);
        let list = op
            .list_intents(steer_proto::v1::ListIntentsRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.intents.len(), 1);
        assert_eq!(list.intents[0].id, b.intent_id);
        assert_eq!(list.intents[0].reason, "y");
    });
}

/// A generic client (Python grpcio, no Steer protos) via reflection only.
#[test]
fn generic_python_client_via_reflection() {
    let s = Steerd::start("python-reflection");
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reflection_client.py");
    let out = std::process::Command::new("python3")
        .arg(&script)
        .arg(format!("127.0.0.1:{}", s.grpc))
        .output()
        .expect("python3 (scripts/test installs grpcio and grpcio-reflection)");
    assert!(
        out.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("ok: "));
}
