//! The example web service (`examples/contract-service`) as a child process of a test, and
//! a plain HTTP/1.1 client for it.
//!
//! The service is an example, so Cargo gives tests no `CARGO_BIN_EXE_` path for it:
//! [`Service::start`] builds it first with `cargo build --example contract-service` (the
//! same profile and features as the tests, so only the example itself is compiled and
//! linked, once; a no-op when it is up to date) and takes the executable's path from
//! Cargo's JSON messages, which respects `CARGO_TARGET_DIR` and the like.
//!
//! The client is std's `TcpStream` and a small HTTP/1.1 reader (sized and chunked
//! bodies, Server-Sent Events frames). awc, the actix client, is not in Cargo.lock
//! (it would add nine crates, h2, actix-tls and http 1 among them), would need an actix
//! System in each test, and would hide the bytes on the wire that the SSE checks are about.
//!
//! Nothing here waits by sleeping: the service is ready when it says so on stderr, it has
//! stopped when its stderr closes, and every socket read has a generous deadline
//! ([`HANG_LIMIT`]) that turns a hang into a failure, never into a pass.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)] // each test uses a part

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long any one wait (for the build aside) may take before the test fails: far above
/// what anything here needs, it only turns a hang into a failure.
pub const HANG_LIMIT: Duration = Duration::from_secs(120);

/// The line the service prints once configured (`contract service on http://ADDR/`).
const READY: &str = "contract service on http://";

/// The workspace root (the `graphloop` package's directory).
pub fn workspace() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the example service (once per test binary) and returns its executable.
pub fn executable() -> PathBuf {
    static EXECUTABLE: OnceLock<PathBuf> = OnceLock::new();
    EXECUTABLE
        .get_or_init(|| {
            let output = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "--locked",
                    "--example",
                    "contract-service",
                    "--message-format=json-render-diagnostics",
                ])
                .current_dir(workspace())
                .stdin(Stdio::null())
                .output()
                .expect("cannot run cargo to build the example service");
            assert!(
                output.status.success(),
                "`cargo build --example contract-service` failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|message| message["reason"] == "compiler-artifact")
                .filter(|message| message["target"]["name"] == "contract-service")
                .find_map(|message| message["executable"].as_str().map(PathBuf::from))
                .expect("cargo built no executable named contract-service")
        })
        .clone()
}

/// A port nobody listens on right now. Another process could take it before the service
/// binds it; the service then fails to start, and says so.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).and_then(|listener| listener.local_addr()).expect("no free port").port()
}

/// The running example service; killed when dropped (also when the test panics), after
/// printing what it wrote to stderr if the test failed.
pub struct Service {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    /// Everything it wrote to stderr so far, a line an entry.
    log: Arc<Mutex<Vec<String>>>,
    /// Disconnects when its stderr closes, that is once it has exited. (In a mutex so
    /// that threads of a test can share the service.)
    stderr_closed: Mutex<Receiver<String>>,
}

impl Service {
    /// Starts the service with these environment variables (on top of the test's own,
    /// less the service's settings, which are only the ones given here) on a free port of
    /// 127.0.0.1, and returns once it is ready, as it says on stderr.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let executable = executable();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()));
        let mut command = Command::new(&executable);
        for name in ["GRAPHLOOP_TOKENS", "GRAPHLOOP_BIND", "DATABASE_URL", "GRAPHLOOP_SCHEMA"] {
            command.env_remove(name);
        }
        command.envs(env.iter().copied()).env("GRAPHLOOP_BIND", addr.to_string());
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (ready, stderr_closed) = mpsc::channel();
        let lines = log.clone();
        std::thread::spawn(move || {
            let mut ready = Some(ready);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix(READY) {
                    if let Some(ready) = ready.take() {
                        let _ = ready.send(addr.trim_end_matches('/').to_owned());
                    }
                }
                lines.lock().unwrap().push(line);
            }
            // `ready` (if still unsent) drops here: the receiver learns the service exited.
        });
        let mut service = Self { child, addr, log, stderr_closed: Mutex::new(stderr_closed) };
        service.wait_until_listening();
        service
    }

    fn wait_until_listening(&mut self) {
        let said = match self.stderr_closed.get_mut().unwrap().recv_timeout(HANG_LIMIT) {
            Ok(said) => said,
            Err(RecvTimeoutError::Disconnected) => {
                let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                panic!("the service exited ({status}) before listening:\n{}", self.log());
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("the service did not start within {HANG_LIMIT:?}:\n{}", self.log())
            }
        };
        assert_eq!(said, self.addr.to_string(), "the service says it listens elsewhere than GRAPHLOOP_BIND");
        // main.rs prints its line just *before* `HttpServer::bind`, so for a few
        // microseconds the port may refuse connections. Until it prints after binding,
        // a refused connection is tried again, for as long as the service is alive (a
        // bind that failed ends it) and within the deadline; this never sleeps.
        let deadline = Instant::now() + HANG_LIMIT;
        loop {
            match TcpStream::connect(self.addr) {
                Ok(_) => return,
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused && Instant::now() < deadline => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        panic!("the service exited ({status}) instead of listening on {}:\n{}", self.addr, self.log());
                    }
                    std::thread::yield_now();
                }
                Err(e) => panic!("cannot connect to the service at {}: {e}\n{}", self.addr, self.log()),
            }
        }
    }

    /// What the service wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Stops the service as Ctrl-C does (SIGINT: the server stops, then the engine shuts
    /// down and writes everything it accepted), waits for it to exit, and returns how it
    /// exited with what it wrote to stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        // std has no signal API and the workspace forbids `unsafe`: kill(1) by pid.
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-INT", &pid]).status().expect("cannot run kill(1)");
        assert!(sent.success(), "kill -INT {pid} failed");
        // Its stderr closes when it exits.
        loop {
            match self.stderr_closed.get_mut().unwrap().recv_timeout(HANG_LIMIT) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the service did not stop within {HANG_LIMIT:?}:\n{}", self.log())
                }
            }
        }
        let status = self.child.wait().expect("cannot wait for the service");
        (status, self.log())
    }

    /// Kills the service with SIGKILL (`kill -9`: no shutdown, nothing more is written),
    /// waits until it has exited (its stderr closes), and returns what it wrote to stderr.
    /// Takes `&self`, so that threads of a test still using the service see their
    /// connections cut; the process is reaped when the `Service` drops.
    pub fn kill(&self) -> String {
        // std's `Child::kill` (SIGKILL too) needs `&mut`: kill(1) by pid, as `stop` does.
        // The pid cannot be reused before the child is reaped, which only `Drop` does.
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-KILL", &pid]).status().expect("cannot run kill(1)");
        assert!(sent.success(), "kill -KILL {pid} failed");
        loop {
            match self.stderr_closed.lock().unwrap().recv_timeout(HANG_LIMIT) {
                Ok(_) => continue,
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    panic!("the service did not die within {HANG_LIMIT:?} of SIGKILL:\n{}", self.log())
                }
            }
        }
        self.log()
    }

    /// `GET path`.
    pub fn get(&self, path: &str, token: Option<&str>) -> Response {
        Response::read(self.send("GET", path, token, &[], None))
    }

    /// `POST path` with a JSON body.
    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Response {
        Response::read(self.send("POST", path, token, &[], Some(body)))
    }

    /// `POST path` with a JSON body; an error, not a panic, when the connection fails
    /// (refused: [`io::ErrorKind::ConnectionRefused`]) or is cut before the whole answer
    /// came, as when the service is killed.
    pub fn try_post_json(&self, path: &str, token: Option<&str>, body: &Value) -> io::Result<Response> {
        Response::try_read(self.try_send("POST", path, token, &[], Some(body))?)
    }

    /// `GET /runs/{run}/events`, optionally resuming after `last_event_id`, as a stream of
    /// frames; the status must be 200.
    pub fn events(&self, run: &str, token: &str, last_event_id: Option<u64>) -> Events {
        self.try_events(run, token, last_event_id).unwrap_or_else(|e| panic!("GET /runs/{run}/events: {e}"))
    }

    /// [`Service::events`], with an error instead of a panic when the connection fails
    /// before the answer's head came (a status other than 200 still panics).
    pub fn try_events(&self, run: &str, token: &str, last_event_id: Option<u64>) -> io::Result<Events> {
        let last = last_event_id.map(|id| id.to_string());
        let headers: Vec<(&str, &str)> = last
            .as_deref()
            .map(|id| ("Last-Event-ID", id))
            .into_iter()
            .chain([("Accept", "text/event-stream")])
            .collect();
        let (status, headers, body) =
            self.try_send("GET", &format!("/runs/{run}/events"), Some(token), &headers, None)?;
        assert_eq!(status, 200, "GET /runs/{run}/events answered {status}");
        let content_type = header(&headers, "content-type").unwrap_or_default();
        assert!(content_type.starts_with("text/event-stream"), "the events of {run} came as {content_type:?}");
        Ok(Events { body: BufReader::new(body) })
    }

    /// Sends one request on a connection of its own and reads the answer's head.
    fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> (u16, Vec<(String, String)>, Body) {
        self.try_send(method, path, token, headers, body).unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// [`Service::send`], with the connection's failures as errors (what is not HTTP
    /// still panics).
    fn try_send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&Value>,
    ) -> io::Result<Answer> {
        let stream = TcpStream::connect(self.addr)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot connect to {}: {e}", self.addr)))?;
        stream.set_read_timeout(Some(HANG_LIMIT))?;
        stream.set_write_timeout(Some(HANG_LIMIT))?;
        let body = body.map(|body| serde_json::to_vec(body).unwrap()).unwrap_or_default();
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n", self.addr);
        if let Some(token) = token {
            head.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if method == "POST" {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let mut writer = &stream;
        writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(&body))?;

        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        try_read_line(&mut reader, &mut line, "the status line")?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("{method} {path}: not an HTTP status line: {line:?}"));
        let mut fields = Vec::new();
        loop {
            line.clear();
            try_read_line(&mut reader, &mut line, "a header")?;
            let field = line.trim_end();
            if field.is_empty() {
                break;
            }
            let (name, value) = field.split_once(':').unwrap_or_else(|| panic!("not a header: {field:?}"));
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
        let body = if header(&fields, "transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
            Body::Chunked { reader, left: 0, done: false }
        } else if let Some(length) = header(&fields, "content-length") {
            Body::Sized(reader.take(length.parse().unwrap_or_else(|_| panic!("bad Content-Length {length:?}"))))
        } else {
            Body::UntilClose(reader)
        };
        Ok((status, fields, body))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- the service's stderr ---\n{}\n---", self.log());
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn read_line(reader: &mut impl BufRead, line: &mut String, what: &str) {
    try_read_line(reader, line, what).unwrap_or_else(|e| panic!("{e}"));
}

/// [`read_line`], with the failure as an error.
fn try_read_line(reader: &mut impl BufRead, line: &mut String, what: &str) -> io::Result<()> {
    match reader.read_line(line) {
        Ok(0) => Err(io::Error::new(io::ErrorKind::UnexpectedEof, format!("the connection closed before {what}"))),
        Ok(_) => Ok(()),
        Err(e) => {
            Err(io::Error::new(e.kind(), format!("cannot read {what} (a read waits at most {HANG_LIMIT:?}): {e}")))
        }
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

/// An answer's status, its headers (names in lower case) and its body, yet unread.
type Answer = (u16, Vec<(String, String)>, Body);

/// A response body, as the server framed it.
pub enum Body {
    Sized(io::Take<BufReader<TcpStream>>),
    Chunked { reader: BufReader<TcpStream>, left: u64, done: bool },
    UntilClose(BufReader<TcpStream>),
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Sized(reader) => reader.read(buf),
            Self::UntilClose(reader) => reader.read(buf),
            Self::Chunked { reader, left, done } => {
                if *done || buf.is_empty() {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut size = String::new();
                    if reader.read_line(&mut size)? == 0 {
                        return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed mid-body"));
                    }
                    let hex = size.split(';').next().unwrap_or_default().trim();
                    *left = u64::from_str_radix(hex, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("bad chunk size line {size:?}"))
                    })?;
                    if *left == 0 {
                        // The last chunk: skip the trailer, up to its blank line.
                        loop {
                            let mut trailer = String::new();
                            if reader.read_line(&mut trailer)? == 0 || trailer.trim_end().is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                }
                let n = (&mut *reader).take(*left).read(buf)?;
                if n == 0 {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed mid-chunk"));
                }
                *left -= n as u64;
                if *left == 0 {
                    let mut crlf = String::new();
                    reader.read_line(&mut crlf)?;
                    if crlf != "\r\n" {
                        return Err(io::Error::new(io::ErrorKind::InvalidData, "a chunk not followed by CRLF"));
                    }
                }
                Ok(n)
            }
        }
    }
}

/// A whole response.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    fn read(answer: (u16, Vec<(String, String)>, Body)) -> Self {
        Self::try_read(answer).unwrap_or_else(|e| panic!("cannot read a response body: {e}"))
    }

    fn try_read((status, headers, mut body): Answer) -> io::Result<Self> {
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)?;
        Ok(Self { status, headers, body: bytes })
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("a {} answer is not JSON ({e}): {}", self.status, String::from_utf8_lossy(&self.body))
        })
    }

    /// A header's value (names are compared in lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, &name.to_ascii_lowercase())
    }
}

/// One Server-Sent Events frame.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Its `id:` field, the event's seq; stored events have one, progress ticks none.
    pub id: Option<u64>,
    /// Its `event:` field (`message` when it has none, as browsers do).
    pub event: String,
    /// Its `data:` lines, joined by newlines.
    pub data: String,
}

impl Frame {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("the data of {self:?} is not JSON: {e}"))
    }
}

/// An event stream's frames, as they come; dropping it closes the connection.
pub struct Events {
    body: BufReader<Body>,
}

impl Iterator for Events {
    type Item = Frame;

    /// The next frame; `None` once the server ended the stream.
    fn next(&mut self) -> Option<Frame> {
        self.try_next()
            .unwrap_or_else(|e| panic!("cannot read the event stream (a read waits at most {HANG_LIMIT:?}): {e}"))
    }
}

impl Events {
    /// The next frame; `Ok(None)` once the server ended the stream, an error when the
    /// connection broke (a chunked stream cut mid-way, as when the service is killed).
    pub fn try_next(&mut self) -> io::Result<Option<Frame>> {
        let (mut id, mut event, mut data) = (None, None, None::<String>);
        let mut line = String::new();
        loop {
            line.clear();
            // An unterminated frame at the end is dropped, as the SSE standard says.
            if self.body.read_line(&mut line)? == 0 {
                return Ok(None);
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if id.is_none() && event.is_none() && data.is_none() {
                    continue;
                }
                let event = event.unwrap_or_else(|| "message".to_owned());
                return Ok(Some(Frame { id, event, data: data.unwrap_or_default() }));
            }
            if line.starts_with(':') {
                continue; // a comment
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = Some(value.parse().unwrap_or_else(|_| panic!("an SSE id that is no seq: {value:?}"))),
                "event" => event = Some(value.to_owned()),
                "data" => match data.as_mut() {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => data = Some(value.to_owned()),
                },
                _ => {}
            }
        }
    }
}
