//! gRPC reflection on the real collector: a reflection client (what `grpcurl` does) lists the
//! services and fetches the `dsreg.v1` descriptors without the `.proto` files, with agent
//! tokens on (reflection serves only the schema and needs no token, like grpc.health.v1).

use dsreg_e2e::inproc::InProcessCollector;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ServerReflectionRequest, ServerReflectionResponse};

async fn ask(url: &str, request: MessageRequest) -> MessageResponse {
    let channel = tonic::transport::Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let mut answers = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let first: ServerReflectionResponse = answers.message().await.unwrap().expect("an answer");
    first.message_response.expect("a message response")
}

#[test]
fn grpcurl_style_reflection_lists_and_describes_the_telemetry_service() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("agents");
    std::fs::write(&tokens, "agent-token-0123456789abcdef\n").unwrap();
    let c = InProcessCollector::start(
        &dir.path().join("dsreg.db"),
        &["--agent-token-file", tokens.to_str().unwrap()],
    )
    .unwrap();
    let url = c.grpc_url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let MessageResponse::ListServicesResponse(list) =
            ask(&url, MessageRequest::ListServices(String::new())).await
        else {
            panic!("not a service list");
        };
        let names: Vec<&str> = list.service.iter().map(|s| s.name.as_str()).collect();
        assert!(names.contains(&"dsreg.v1.Telemetry"), "{names:?}");
        let MessageResponse::FileDescriptorResponse(files) = ask(
            &url,
            MessageRequest::FileContainingSymbol("dsreg.v1.Telemetry".into()),
        )
        .await
        else {
            panic!("not a file descriptor answer");
        };
        assert!(!files.file_descriptor_proto.is_empty());
        let text = String::from_utf8_lossy(&files.file_descriptor_proto.concat()).to_string();
        assert!(
            text.contains("ReportBatch"),
            "the Report method's types are described"
        );
    });
}
