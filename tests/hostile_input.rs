//! Hostile input: malformed, huge, deeply nested, oddly encoded and slow
//! requests against the real service.
//!
//! Requests are written byte for byte on a raw TCP connection, so that nothing
//! on the way tidies them up. Every request the router sees is answered 4xx
//! with `application/problem+json`, unless it is valid after all; what hyper
//! refuses before routing is never a 5xx; a client that sends its headers
//! slowly is cut off; and the service stays healthy.

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use scim_removals::app::HEADER_READ_TIMEOUT;
use scim_removals::sandbox::{DEMO_GROUP_SUPPORT, DEMO_USER_ADA, DEMO_USER_GRACE};
use serde_json::{Value, json};
use support::{TOKEN, TestApp};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one exchange may take before the test calls it hung.
const EXCHANGE_LIMIT: Duration = Duration::from_secs(10);

/// A request, byte for byte.
#[derive(Clone)]
struct Raw {
    method: Vec<u8>,
    target: Vec<u8>,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
    framing: Framing,
}

/// How the body's end is told.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// A `Content-Length` of the body's length.
    Length,
    /// One chunk holding the body, then the last chunk.
    Chunked,
    /// Whatever the caller's headers say.
    AsDeclared,
}

impl Raw {
    fn new(method: &str, target: impl Into<Vec<u8>>) -> Raw {
        Raw {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
            framing: Framing::Length,
        }
    }

    /// A removal request with the test token and a JSON content type.
    fn removal(body: impl Into<Vec<u8>>) -> Raw {
        Raw::removal_at(format!("/groups/{DEMO_GROUP_SUPPORT}/removals"), body)
    }

    fn removal_at(target: impl Into<Vec<u8>>, body: impl Into<Vec<u8>>) -> Raw {
        Raw::new("POST", target)
            .header("authorization", format!("Bearer {TOKEN}"))
            .header("content-type", "application/json")
            .body(body)
    }

    /// A request with the test token and no body.
    fn authorized(method: &str, target: impl Into<Vec<u8>>) -> Raw {
        Raw::new(method, target).header("authorization", format!("Bearer {TOKEN}"))
    }

    fn read(target: impl Into<Vec<u8>>) -> Raw {
        Raw::authorized("GET", target)
    }

    fn header(mut self, name: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Raw {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn without(mut self, name: &str) -> Raw {
        self.headers
            .retain(|(known, _)| !known.eq_ignore_ascii_case(name.as_bytes()));
        self
    }

    fn body(mut self, body: impl Into<Vec<u8>>) -> Raw {
        self.body = body.into();
        self
    }

    /// Declares a length of the caller's choosing instead of the body's.
    fn declared_length(mut self, value: &str) -> Raw {
        self.framing = Framing::AsDeclared;
        self.header("content-length", value)
    }

    fn chunked(mut self) -> Raw {
        self.framing = Framing::Chunked;
        self.header("transfer-encoding", "chunked")
    }

    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(self.body.len() + 512);
        for part in [&self.method[..], b" ", &self.target, b" HTTP/1.1\r\n"] {
            bytes.extend_from_slice(part);
        }
        bytes.extend_from_slice(b"host: 127.0.0.1\r\nconnection: close\r\n");
        for (name, value) in &self.headers {
            bytes.extend_from_slice(name);
            bytes.extend_from_slice(b": ");
            bytes.extend_from_slice(value);
            bytes.extend_from_slice(b"\r\n");
        }
        if self.framing == Framing::Length {
            let length = format!("content-length: {}\r\n", self.body.len());
            bytes.extend_from_slice(length.as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        if self.framing == Framing::Chunked {
            bytes.extend_from_slice(format!("{:x}\r\n", self.body.len()).as_bytes());
            bytes.extend_from_slice(&self.body);
            bytes.extend_from_slice(b"\r\n0\r\n\r\n");
        } else {
            bytes.extend_from_slice(&self.body);
        }
        bytes
    }
}

/// What came back on a raw connection: nothing, or a status line, headers
/// and a body.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    /// Names in lower case.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// Whether the service closed the connection within the time allowed.
    closed: bool,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(known, _)| known == name)
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Writes `bytes` (from a task of its own, so that a server answering before
/// it has read everything cannot deadlock the test) and reads the answer until
/// the server closes the connection.
async fn exchange(address: SocketAddr, bytes: Vec<u8>) -> Answer {
    let stream = TcpStream::connect(address)
        .await
        .expect("the service accepts");
    let (mut reader, mut writer) = stream.into_split();
    let writing = tokio::spawn(async move {
        // The server may close before taking it all (a 413, a 431): fine.
        let _ = writer.write_all(&bytes).await;
        let _ = writer.flush().await;
        // Keep the write half open until the answer is read.
        tokio::time::sleep(EXCHANGE_LIMIT).await;
    });

    let mut received = Vec::new();
    let read = tokio::time::timeout(EXCHANGE_LIMIT, reader.read_to_end(&mut received)).await;
    writing.abort();
    let mut answer = parse_answer(&received);
    answer.closed = read.is_ok();
    answer
}

fn parse_answer(received: &[u8]) -> Answer {
    let split = received.windows(4).position(|window| window == b"\r\n\r\n");
    let Some(split) = split else {
        return Answer {
            status: None,
            headers: Vec::new(),
            body: Vec::new(),
            closed: false,
        };
    };
    let head = String::from_utf8_lossy(&received[..split]);
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: received[split + 4..].to_vec(),
        closed: false,
    }
}

/// What a request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// This status, as problem details.
    Problem(u16),
    /// A finished dry run: the input was odd but valid.
    Planned,
    /// Refused by hyper before routing, or by us: anything but a 5xx.
    NoServerError,
}

fn check(case: &str, answer: &Answer, expect: Expect) {
    assert!(
        answer.closed,
        "{case}: the service neither answered nor closed"
    );
    let status = answer.status;
    match expect {
        Expect::Problem(code) => {
            assert_eq!(status, Some(code), "{case}: {answer:?}");
            assert_problem(case, answer, code);
        }
        Expect::Planned => {
            assert_eq!(status, Some(200), "{case}: {answer:?}");
            assert_eq!(answer.json()["status"], "planned", "{case}");
        }
        Expect::NoServerError => {
            assert!(status.is_none_or(|code| code < 500), "{case}: {answer:?}");
            // Whatever reached the router answers problem details.
            if answer.header("x-request-id").is_some() && status.is_some_and(|s| s >= 400) {
                assert_problem(case, answer, status.unwrap_or_default());
            }
        }
    }
}

fn assert_problem(case: &str, answer: &Answer, code: u16) {
    let content_type = answer.header("content-type");
    assert_eq!(content_type, Some("application/problem+json"), "{case}");
    let problem = answer.json();
    assert_eq!(problem["status"], code, "{case}: {problem}");
    let kind = problem["type"].as_str().unwrap_or_default();
    assert!(
        kind.starts_with("urn:scim-removals:problem:"),
        "{case}: {problem}"
    );
    assert!(
        problem["title"].is_string() && problem["detail"].is_string(),
        "{case}"
    );
    assert!(
        answer.header("x-request-id").is_some(),
        "{case}: no x-request-id"
    );
}

async fn run_cases(app: &TestApp, cases: Vec<(&str, Raw, Expect)>) {
    for (case, raw, expect) in cases {
        let answer = exchange(app.addr(), raw.bytes()).await;
        check(case, &answer, expect);
    }
}

/// The service still answers, and never answered a 5xx to anyone.
async fn assert_still_healthy(app: &TestApp) {
    let health = exchange(app.addr(), Raw::new("GET", "/healthz").bytes()).await;
    assert_eq!(health.status, Some(200), "{health:?}");

    let metrics = app.metrics().await;
    let server_errors: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("scim_removals_http_requests_total"))
        .filter(|line| line.contains("status=\"5"))
        .collect();
    assert!(server_errors.is_empty(), "5xx answers: {server_errors:?}");
}

async fn start() -> TestApp {
    let (_org, genesys) = support::sandbox().await;
    TestApp::start(support::settings(&genesys)).await
}

fn dry_run(extra: Value) -> Vec<u8> {
    let mut body = json!({"members": [DEMO_USER_ADA], "dry_run": true});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body.to_string().into_bytes()
}

#[tokio::test]
async fn malformed_truncated_and_deeply_nested_json_gets_a_4xx_problem() {
    let app = start().await;
    let deep_array = "[".repeat(10_000);
    let deep_members = format!(
        "{{\"members\": {}{}}}",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let deep_objects = format!("{}1{}", "{\"a\":".repeat(5_000), "}".repeat(5_000));

    let cases = vec![
        ("empty body", Raw::removal(""), Expect::Problem(400)),
        (
            "truncated",
            Raw::removal("{\"members\": ["),
            Expect::Problem(400),
        ),
        (
            "truncated string",
            Raw::removal("{\"members\": [\"6f1c"),
            Expect::Problem(400),
        ),
        (
            "unquoted keys",
            Raw::removal("{members: []}"),
            Expect::Problem(400),
        ),
        (
            "trailing comma",
            Raw::removal("{\"members\": [],}"),
            Expect::Problem(400),
        ),
        ("two documents", Raw::removal("{} {}"), Expect::Problem(400)),
        (
            "byte order mark",
            Raw::removal(b"\xef\xbb\xbf{}".to_vec()),
            Expect::Problem(400),
        ),
        ("10,000 [", Raw::removal(deep_array), Expect::Problem(400)),
        (
            "nested members",
            Raw::removal(deep_members),
            Expect::Problem(400),
        ),
        (
            "nested objects",
            Raw::removal(deep_objects),
            Expect::Problem(400),
        ),
        (
            "huge number",
            Raw::removal("{\"members\": [1e999999]}"),
            Expect::Problem(400),
        ),
        (
            "chunked, truncated",
            Raw::removal("{\"mem").chunked(),
            Expect::Problem(400),
        ),
        ("null", Raw::removal("null"), Expect::Problem(422)),
        ("an array", Raw::removal("[]"), Expect::Problem(422)),
        (
            "a string",
            Raw::removal("\"members\""),
            Expect::Problem(422),
        ),
        (
            "members a string",
            Raw::removal("{\"members\": \"x\"}"),
            Expect::Problem(422),
        ),
        (
            "members numbers",
            Raw::removal("{\"members\": [1, 2]}"),
            Expect::Problem(422),
        ),
        (
            "members null",
            Raw::removal("{\"members\": [null]}"),
            Expect::Problem(422),
        ),
        (
            "members nested",
            Raw::removal("{\"members\": [[]]}"),
            Expect::Problem(422),
        ),
        (
            "dry_run a string",
            Raw::removal(dry_run(json!({"dry_run": "yes"}))),
            Expect::Problem(422),
        ),
        (
            "mode in capitals",
            Raw::removal(dry_run(json!({"mode": "BEST_EFFORT"}))),
            Expect::Problem(422),
        ),
        (
            "unknown field",
            Raw::removal(dry_run(json!({"force": true}))),
            Expect::Problem(422),
        ),
    ];
    run_cases(&app, cases).await;
    assert_still_healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn odd_unicode_is_refused_where_it_cannot_be_an_id_and_kept_where_it_is_text() {
    let app = start().await;
    let member = |raw: &str| Raw::removal(format!("{{\"members\": [\"{raw}\"]}}"));
    let fullwidth: String = DEMO_USER_ADA
        .chars()
        .map(|c| match c {
            '0'..='9' => char::from_u32(c as u32 - '0' as u32 + 0xFF10).unwrap_or(c),
            other => other,
        })
        .collect();

    let cases = vec![
        (
            "invalid UTF-8",
            Raw::removal(b"{\"members\": [\"\xff\xfe\"]}"),
            Expect::Problem(400),
        ),
        (
            "overlong UTF-8",
            Raw::removal(b"{\"reason\": \"\xc0\xaf\"}"),
            Expect::Problem(400),
        ),
        ("lone surrogate", member("\\ud800"), Expect::Problem(400)),
        ("raw control byte", member("\u{1}"), Expect::Problem(400)),
        ("escaped NUL id", member("\\u0000"), Expect::Problem(422)),
        (
            "NUL inside an id",
            member(&format!("{DEMO_USER_ADA}\\u0000")),
            Expect::Problem(422),
        ),
        (
            "RTL mark in an id",
            member(&format!("\u{200f}{DEMO_USER_ADA}")),
            Expect::Problem(422),
        ),
        ("fullwidth digits", member(&fullwidth), Expect::Problem(422)),
        ("emoji id", member("😀"), Expect::Problem(422)),
        (
            "reason of 1025 emoji",
            Raw::removal(dry_run(json!({"reason": "😀".repeat(1025)}))),
            Expect::Problem(422),
        ),
    ];
    run_cases(&app, cases).await;

    // Valid text, however odd, is kept exactly as sent.
    // NUL, right-to-left marks, Arabic, an emoji, an override, a BOM, a ZWJ
    // sequence, and accents to just under 1,024 characters.
    let mut reason = String::from("\u{0}\u{200f}مرحبا 😀 \u{202e}olleh\u{feff} 👩‍👩‍👧‍👦");
    reason.push_str(&"é".repeat(900));
    let requested_by = "\u{0}bob\u{200d}";
    let body = dry_run(json!({"reason": reason, "requested_by": requested_by}));
    let answer = exchange(app.addr(), Raw::removal(body).bytes()).await;
    check("odd but valid text", &answer, Expect::Planned);
    let removal = answer.json();
    assert_eq!(removal["reason"], reason);
    assert_eq!(removal["requested_by"], requested_by);
    let stored = app
        .get(&format!("/removals/{}", removal["id"].as_str().unwrap()))
        .await;
    let stored: Value = stored.json().await.expect("the stored removal");
    assert_eq!(
        stored["reason"], reason,
        "the audit trail keeps the text as sent"
    );
    assert_still_healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn wrong_content_types_and_absurd_headers_get_a_4xx_problem() {
    let app = start().await;
    let valid = || Raw::removal(dry_run(json!({})));
    let long = "x".repeat(60_000);
    let typed = |value: &[u8]| {
        valid()
            .without("content-type")
            .header("content-type", value)
    };
    let keyed = |value: &[u8]| valid().header("idempotency-key", value);

    let cases = vec![
        (
            "no content type",
            valid().without("content-type"),
            Expect::Problem(415),
        ),
        ("text/plain", typed(b"text/plain"), Expect::Problem(415)),
        (
            "a form",
            typed(b"application/x-www-form-urlencoded"),
            Expect::Problem(415),
        ),
        (
            "multipart",
            typed(b"multipart/form-data; boundary=x"),
            Expect::Problem(415),
        ),
        ("jsonp", typed(b"application/jsonp"), Expect::Problem(415)),
        (
            "json in a suffix",
            typed(b"text/json+xml"),
            Expect::Problem(415),
        ),
        (
            "binary type",
            typed(b"application/\xffjson"),
            Expect::Problem(415),
        ),
        ("60 KB type", typed(long.as_bytes()), Expect::Problem(415)),
        (
            "60 KB token",
            valid()
                .without("authorization")
                .header("authorization", format!("Bearer {long}")),
            Expect::Problem(401),
        ),
        (
            "binary token",
            valid()
                .without("authorization")
                .header("authorization", b"Bearer \xff\xfe".to_vec()),
            Expect::Problem(401),
        ),
        (
            "bare scheme",
            valid()
                .without("authorization")
                .header("authorization", "Bearer"),
            Expect::Problem(401),
        ),
        (
            "basic auth",
            valid()
                .without("authorization")
                .header("authorization", "Basic Zm9vOmJhcg=="),
            Expect::Problem(401),
        ),
        ("empty key", keyed(b""), Expect::Problem(400)),
        (
            "256-character key",
            keyed("k".repeat(256).as_bytes()),
            Expect::Problem(400),
        ),
        ("key with a tab", keyed(b"a\tb"), Expect::Problem(400)),
        ("key with binary", keyed(b"key-\xff"), Expect::Problem(400)),
        ("key of spaces", keyed(b"   "), Expect::Problem(400)),
        (
            "huge declared length",
            valid().declared_length("99999999999"),
            Expect::Problem(413),
        ),
        (
            "255-character key",
            keyed("k".repeat(255).as_bytes()),
            Expect::Planned,
        ),
        (
            "key like a path",
            keyed(b"../../etc/passwd"),
            Expect::Planned,
        ),
        (
            "prefer overflow",
            valid().header("prefer", "wait=99999999999999999999999"),
            Expect::Planned,
        ),
        (
            "prefer negative",
            valid().header("prefer", "wait=-5"),
            Expect::Planned,
        ),
        (
            "prefer junk",
            valid().header("prefer", "wait=\"\", ,;;=,wait=="),
            Expect::Planned,
        ),
        (
            "prefer binary",
            valid().header("prefer", b"wait=\xff".to_vec()),
            Expect::Planned,
        ),
        (
            "60 KB request id",
            valid().header("x-request-id", long.clone()),
            Expect::Planned,
        ),
        (
            "90 headers",
            (0..90).fold(valid(), |raw, i| raw.header(format!("x-h{i}"), "v")),
            Expect::Planned,
        ),
    ];
    run_cases(&app, cases).await;
    assert_still_healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn path_tricks_get_a_4xx_problem() {
    let app = start().await;
    let body = || json!({"members": [DEMO_USER_ADA]}).to_string();
    let at = |group: &str| Raw::removal_at(format!("/groups/{group}/removals"), body());
    let long_id = "a".repeat(10_000);

    let cases = vec![
        ("dot-dot encoded", at("%2e%2e"), Expect::Problem(422)),
        ("dot-dot", at(".."), Expect::Problem(422)),
        (
            "encoded slash",
            at(&format!("{DEMO_GROUP_SUPPORT}%2f..")),
            Expect::Problem(422),
        ),
        ("invalid UTF-8", at("%ff%fe"), Expect::Problem(422)),
        ("bad escape", at("%zz"), Expect::Problem(422)),
        ("encoded NUL", at("%00"), Expect::Problem(422)),
        (
            "upper-case id with a suffix",
            at(&format!("{}x", DEMO_GROUP_SUPPORT.to_uppercase())),
            Expect::Problem(422),
        ),
        ("10,000-character id", at(&long_id), Expect::Problem(422)),
        (
            "braced uuid",
            at(&format!("%7B{DEMO_GROUP_SUPPORT}%7D")),
            Expect::Problem(422),
        ),
        (
            "double slashes",
            Raw::removal_at("//groups//removals", body()),
            Expect::Problem(404),
        ),
        (
            "traversal",
            Raw::read("/removals/../../etc/passwd"),
            Expect::Problem(404),
        ),
        (
            "removal id invalid UTF-8",
            Raw::read("/removals/%ff"),
            Expect::Problem(422),
        ),
        (
            "removal id 10,000 long",
            Raw::read(format!("/removals/{long_id}")),
            Expect::Problem(422),
        ),
        (
            "cancel with bad id",
            Raw::authorized("POST", "/removals/%c0%af/cancel"),
            Expect::Problem(422),
        ),
        (
            "list with bad UTF-8",
            Raw::read("/removals?limit=%ff"),
            Expect::Problem(422),
        ),
        (
            "list with huge limit",
            Raw::read("/removals?limit=99999999999999999999"),
            Expect::Problem(422),
        ),
        (
            "list with odd cursor",
            Raw::read("/removals?after=%00%00"),
            Expect::Problem(422),
        ),
        (
            "unknown method",
            Raw::new("BREW", "/healthz"),
            Expect::Problem(405),
        ),
        (
            "delete a removal",
            Raw::new("DELETE", "/removals/x"),
            Expect::Problem(405),
        ),
    ];
    run_cases(&app, cases).await;
    assert_still_healthy(&app).await;
    app.stop().await;
}

/// A request from raw lines: CRLF between them, an empty line after them.
fn lines(lines: &[&[u8]], body: &[u8]) -> Vec<u8> {
    let mut bytes = lines.join(&b"\r\n"[..]);
    bytes.extend_from_slice(b"\r\n\r\n");
    bytes.extend_from_slice(body);
    bytes
}

#[tokio::test]
async fn what_hyper_refuses_before_routing_is_never_a_5xx() {
    let app = start().await;
    let get = |path: &[u8]| [b"GET ", path, b" HTTP/1.1"].concat();
    let health = get(b"/healthz");
    let health = health.as_slice();
    let post = b"POST /groups/x/removals HTTP/1.1".as_slice();
    let close = b"connection: close".as_slice();
    let host = b"host: x".as_slice();
    let length = |value: &str| format!("content-length: {value}").into_bytes();
    let chunked = b"transfer-encoding: chunked".as_slice();
    let healthz = || Raw::new("GET", "/healthz");

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "unknown version",
            lines(&[b"GET /healthz HTTP/9.9", host, close], b""),
        ),
        (
            "HTTP/2 over HTTP/1",
            lines(&[b"GET /healthz HTTP/2.0", host, close], b""),
        ),
        ("h2 preface", lines(&[b"PRI * HTTP/2.0", b"", b"SM"], b"")),
        (
            "TLS hello",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec(),
        ),
        (
            "space in the path",
            lines(&[&get(b"/a b"), host, close], b""),
        ),
        (
            "NUL in a header",
            healthz().header("x-a", b"a\x00b").bytes(),
        ),
        (
            "bell in a header",
            healthz().header("prefer", b"wait=\x07").bytes(),
        ),
        (
            "header without colon",
            lines(&[health, host, b"broken", close], b""),
        ),
        (
            "space before colon",
            lines(&[health, b"host : x", close], b""),
        ),
        (
            "bad length",
            lines(&[post, host, &length("abc"), close], b""),
        ),
        (
            "two lengths",
            lines(&[post, host, &length("1"), &length("2"), close], b"ab"),
        ),
        (
            "length and chunked",
            lines(&[post, host, &length("3"), chunked, close], b"0\r\n\r\n"),
        ),
        (
            "bad chunk size",
            lines(&[post, host, chunked, close], b"zz\r\n"),
        ),
        (
            "lone LF lines",
            b"GET /healthz HTTP/1.1\nhost: x\nconnection: close\n\n".to_vec(),
        ),
        (
            "1 MB header",
            healthz().header("x-big", "a".repeat(1_000_000)).bytes(),
        ),
        (
            "150 headers",
            (0..150)
                .fold(healthz(), |r, i| r.header(format!("x-{i}"), "v"))
                .bytes(),
        ),
        (
            "70 KB URI",
            Raw::new("GET", format!("/removals/{}", "a".repeat(70_000))).bytes(),
        ),
    ];
    for (case, bytes) in cases {
        let answer = exchange(app.addr(), bytes).await;
        check(case, &answer, Expect::NoServerError);
    }
    assert_still_healthy(&app).await;
    app.stop().await;
}

#[tokio::test]
async fn a_hundred_thousand_members_are_refused_quickly_and_never_with_a_5xx() {
    let (_org, genesys) = support::sandbox().await;
    let members: Vec<String> = (0..100_000u32)
        .map(|n| format!("6f1c2a8e-0b7d-4c39-9a51-{n:012x}"))
        .collect();
    let body = json!({"members": members}).to_string();

    // Within the default body limit of 64 KiB: 413, declared or streamed.
    let app = TestApp::start(support::settings(&genesys)).await;
    let declared = exchange(app.addr(), Raw::removal(body.clone()).bytes()).await;
    check("declared length", &declared, Expect::Problem(413));
    let streamed = exchange(app.addr(), Raw::removal(body.clone()).chunked().bytes()).await;
    check("chunked", &streamed, Expect::Problem(413));
    assert_still_healthy(&app).await;
    app.stop().await;

    // With a limit that lets the body in, the member count stops it: 422, and
    // quickly, however many distinct ids there are.
    let mut settings = support::settings(&genesys);
    settings.server.max_body_bytes = 8 * 1024 * 1024;
    let app = TestApp::start(settings).await;
    let started = Instant::now();
    let answer = exchange(app.addr(), Raw::removal(body).bytes()).await;
    check("100,000 members", &answer, Expect::Problem(422));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    let repeated = json!({"members": vec![DEMO_USER_GRACE; 100_000], "dry_run": true});
    let answer = exchange(app.addr(), Raw::removal(repeated.to_string()).bytes()).await;
    check(
        "one member 100,000 times is one member",
        &answer,
        Expect::Planned,
    );
    assert_still_healthy(&app).await;
    app.stop().await;
}

/// Sends a request line and the start of a header, then one more byte of it
/// every half second, until the service closes the connection; returns how
/// long that took, or `None` if it was still open after `limit`.
async fn trickle_headers(address: SocketAddr, limit: Duration) -> Option<Duration> {
    let mut stream = TcpStream::connect(address)
        .await
        .expect("the service accepts");
    let started = Instant::now();
    let first = format!("POST /groups/{DEMO_GROUP_SUPPORT}/removals HTTP/1.1\r\nx-slow: ");
    if stream.write_all(first.as_bytes()).await.is_err() {
        return Some(started.elapsed());
    }

    let mut buffer = [0u8; 1024];
    while started.elapsed() < limit {
        // A write may still succeed once the server has closed; a read tells.
        match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // an answer (408) before the close
            Err(_) => {
                if stream.write_all(b"a").await.is_err() {
                    return Some(started.elapsed());
                }
            }
        }
    }
    None
}

#[tokio::test]
async fn clients_that_send_headers_slowly_are_cut_off_while_others_are_served() {
    let app = start().await;
    let limit = HEADER_READ_TIMEOUT * 2;

    let slow: Vec<_> = (0..20)
        .map(|_| tokio::spawn(trickle_headers(app.addr(), limit)))
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let served = app.remove_and_wait(DEMO_GROUP_SUPPORT, json!({"members": [DEMO_USER_ADA]}));
    assert_eq!(
        served.await["status"],
        "succeeded",
        "others are served meanwhile"
    );

    for client in slow {
        let closed_after = client.await.expect("the slow client ran");
        let closed_after = closed_after.expect("the service never cut the slow client off");
        // Cut off by the header-read timeout, not by anything sooner; allow
        // for a loaded machine.
        let window = HEADER_READ_TIMEOUT - Duration::from_millis(500)
            ..HEADER_READ_TIMEOUT + Duration::from_secs(4);
        assert!(
            window.contains(&closed_after),
            "cut off after {closed_after:?}"
        );
    }
    assert_still_healthy(&app).await;
    app.stop().await;
}
