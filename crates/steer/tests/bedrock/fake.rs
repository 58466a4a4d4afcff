//! A local fake of the Bedrock Runtime endpoint, speaking its documented wire
//! format, for the real SDK pointed at it with an endpoint override:
//! Converse / InvokeModel JSON, ConverseStream as `application/vnd.amazon.eventstream`
//! frames (prelude, `:event-type` / `:content-type` / `:message-type`
//! headers, CRC32s: written with `aws-smithy-eventstream`), and errors with
//! the `x-amzn-ErrorType` header.
//!
//! Shared by `tests/bedrock.rs` and the unit tests of `src/providers/bedrock`.
//! Each connection gets the next scripted reply, then is closed; requests
//! are recorded. The server task ends when the `Fake` is dropped.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_types::event_stream::{Header, HeaderValue, Message};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake answers to one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// A whole body.
    Body {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        /// Wait this long before answering.
        delay: Duration,
    },
    /// An event stream: each frame after its delay, in HTTP chunks.
    Stream { frames: Vec<(Duration, Vec<u8>)> },
}

/// A recorded request.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

pub struct Fake {
    pub url: String,
    requests: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Fake {
    /// Serve `replies` in order (a request beyond them gets a 500).
    pub async fn start(replies: Vec<Reply>) -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
        let recorded = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let (recorded, queue) = (recorded.clone(), queue.clone());
                tokio::spawn(async move {
                    let _ = serve(conn, recorded, queue).await;
                });
            }
        });
        Fake { url, requests, task }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

async fn serve(
    mut conn: TcpStream,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    queue: Arc<Mutex<VecDeque<Reply>>>,
) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default().to_string();
    let mut parts = request_line.split(' ');
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    recorded.lock().unwrap().push(Recorded {
        method,
        path,
        headers,
        body,
    });
    let reply = queue.lock().unwrap().pop_front();
    match reply {
        None => write_body(&mut conn, 500, &[], b"{\"message\":\"no scripted reply\"}").await,
        Some(Reply::Body {
            status,
            headers,
            body,
            delay,
        }) => {
            tokio::time::sleep(delay).await;
            write_body(&mut conn, status, &headers, &body).await
        }
        Some(Reply::Stream { frames }) => {
            let head = "HTTP/1.1 200 OK\r\ncontent-type: application/vnd.amazon.eventstream\r\n\
                        x-amzn-requestid: 6b5a2f2e-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
            conn.write_all(head.as_bytes()).await?;
            conn.flush().await?;
            for (delay, frame) in frames {
                tokio::time::sleep(delay).await;
                conn.write_all(format!("{:x}\r\n", frame.len()).as_bytes())
                    .await?;
                conn.write_all(&frame).await?;
                conn.write_all(b"\r\n").await?;
                conn.flush().await?;
            }
            conn.write_all(b"0\r\n\r\n").await?;
            conn.flush().await
        }
    }
}

async fn write_body(
    conn: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).await?;
    conn.write_all(body).await?;
    conn.flush().await
}

/// A 200 JSON answer.
pub fn json(body: &Value) -> Reply {
    with_headers(200, &[("x-amzn-requestid", "0e3a5b1c-ok")], body)
}

/// A JSON answer with extra headers.
pub fn with_headers(status: u16, headers: &[(&str, &str)], body: &Value) -> Reply {
    Reply::Body {
        status,
        headers: headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        body: body.to_string().into_bytes(),
        delay: Duration::ZERO,
    }
}

/// An error the way Bedrock sends one: the exception in `x-amzn-ErrorType`
/// (with the service namespace after a colon), `{"message": ...}` as the body.
pub fn error(status: u16, exception: &str, message: &str) -> Reply {
    Reply::Body {
        status,
        headers: vec![
            (
                "x-amzn-ErrorType".into(),
                format!("{exception}:http://internal.amazon.com/coral/com.amazon.bedrock/"),
            ),
            ("x-amzn-RequestId".into(), "f1e2d3c4-err".into()),
        ],
        body: serde_json::json!({ "message": message }).to_string().into_bytes(),
        delay: Duration::ZERO,
    }
}

/// A reply that comes only after `delay`.
pub fn delayed(delay: Duration, reply: Reply) -> Reply {
    match reply {
        Reply::Body {
            status,
            headers,
            body,
            ..
        } => Reply::Body {
            status,
            headers,
            body,
            delay,
        },
        other => other,
    }
}

fn frame(headers: Vec<Header>, payload: &[u8]) -> Vec<u8> {
    let msg = Message::new_from_parts(headers, payload.to_vec());
    let mut out = Vec::new();
    aws_smithy_eventstream::frame::write_message_to(&msg, &mut out).unwrap();
    out
}

/// An event frame: `:event-type`, `:content-type`, `:message-type` = `event`.
pub fn event(event_type: &str, payload: &Value) -> Vec<u8> {
    frame(
        vec![
            Header::new(":event-type", HeaderValue::String(event_type.to_string().into())),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
            Header::new(":message-type", HeaderValue::String("event".into())),
        ],
        payload.to_string().as_bytes(),
    )
}

/// An exception frame (`:message-type` = `exception`), as a stream fails mid-way.
pub fn exception(exception_type: &str, message: &str) -> Vec<u8> {
    frame(
        vec![
            Header::new(
                ":exception-type",
                HeaderValue::String(exception_type.to_string().into()),
            ),
            Header::new(":content-type", HeaderValue::String("application/json".into())),
            Header::new(":message-type", HeaderValue::String("exception".into())),
        ],
        serde_json::json!({ "message": message }).to_string().as_bytes(),
    )
}

/// A stream whose frames all come at once.
pub fn stream(frames: Vec<Vec<u8>>) -> Reply {
    Reply::Stream {
        frames: frames.into_iter().map(|f| (Duration::ZERO, f)).collect(),
    }
}
