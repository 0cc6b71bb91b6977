//! Request bodies that are not valid protobuf, on every RPC of every service the node serves:
//! each gets INVALID_ARGUMENT saying the request is not a valid message (tonic's own codec
//! says INTERNAL, which cadre keeps for real server faults), and the node carries on.

use prost::Message as _;
use prost::bytes::{Buf, BufMut};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use crate::common::*;

/// Sends and receives raw bytes as gRPC messages.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// Every method of the served contract: (path, client streaming, server streaming).
fn methods() -> Vec<(String, bool, bool)> {
    let set = prost_types::FileDescriptorSet::decode(cadre_proto::v1::FILE_DESCRIPTOR_SET).unwrap();
    let mut out = Vec::new();
    for file in set.file {
        for service in &file.service {
            for m in &service.method {
                out.push((
                    format!("/{}.{}/{}", file.package(), service.name(), m.name()),
                    m.client_streaming(),
                    m.server_streaming(),
                ));
            }
        }
    }
    out
}

/// Calls `path` with one message of `body`; the status it ends with (Ok when it answered).
async fn call(
    channel: Channel,
    credential: &str,
    path: &str,
    streams: (bool, bool),
    body: Vec<u8>,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = path.parse::<tonic::codegen::http::uri::PathAndQuery>().unwrap();
    let auth = format!("Bearer {credential}");
    let mut req = tonic::Request::new(body.clone());
    req.metadata_mut().insert("authorization", auth.parse().unwrap());
    let first = match streams {
        (false, false) => grpc.unary(req, path, Raw).await.map(drop),
        (false, true) => match grpc.server_streaming(req, path, Raw).await {
            Ok(r) => r.into_inner().message().await.map(drop),
            Err(s) => Err(s),
        },
        (true, _) => {
            let mut req = tonic::Request::new(tokio_stream::iter(vec![body]));
            req.metadata_mut().insert("authorization", auth.parse().unwrap());
            match grpc.streaming(req, path, Raw).await {
                Ok(r) => r.into_inner().message().await.map(drop),
                Err(s) => Err(s),
            }
        }
    };
    first.err().unwrap_or_else(|| tonic::Status::ok("answered"))
}

#[tokio::test]
async fn undecodable_requests_are_invalid_argument_on_every_rpc() {
    let node = TestNode::start("").await;
    let credential = node.credential();
    let methods = methods();
    assert!(methods.len() >= 20, "the whole contract: {methods:?}");
    // A tag whose varint never ends; a field 1 that says 100 bytes and carries 2; a field of
    // wire type 7 (no such type).
    let bodies: [&[u8]; 3] = [&[0xff; 11], &[0x0a, 0x64, 0x41, 0x42], &[0x0f, 0x01]];
    for (path, client_streaming, server_streaming) in &methods {
        for body in bodies {
            let status = call(
                node.channel().await,
                &credential,
                path,
                (*client_streaming, *server_streaming),
                body.to_vec(),
            )
            .await;
            assert_eq!(
                status.code(),
                Code::InvalidArgument,
                "{path} with {body:02x?}: {status:?}"
            );
            assert!(
                status.message().contains("not a valid message"),
                "{path}: the message names the problem: {}",
                status.message()
            );
        }
    }
    // The node is unharmed.
    let mut tasks = node.tasks().await;
    let done = run(&mut tasks, spec("system.debug.echo", "{}")).await;
    assert_eq!(state(&done), cadre_proto::v1::TaskState::Succeeded);
}
