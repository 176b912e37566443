//! `raft-lab serve`: browse the results folder over HTTP, like Jepsen's `lein run serve`.
//!
//! ```text
//! GET /                                   every run under DIR, newest first
//! GET /runs/<workload>/<timestamp>/       a directory listing
//! GET /runs/<workload>/<timestamp>/FILE   report.html, histories, plots/*.svg, node logs...
//! GET /runs/latest/report.html            the newest run (the `latest` symlink)
//! ```
//!
//! The index walks `DIR/<workload>/<timestamp>/results.json` on every request (so runs that
//! finish while the server is up appear on reload) and reads each file as loose JSON, parsing
//! it again only when its size or modification time changed (a [`SummaryCache`]): a run
//! without `results.json` (still running, or interrupted) is listed as `incomplete`, one whose
//! `results.json` does not parse as `unreadable` with the parser's message. The `latest`
//! symlink is not listed as a run.
//!
//! The HTTP is a small hand-written HTTP/1.1 subset, bounded so that no client can hold the
//! server: a fixed pool of workers each takes one connection, reads one request head (request
//! line at most [`MAX_REQUEST_LINE`] bytes, 414 otherwise; whole head at most [`MAX_HEAD`],
//! 431 otherwise) before a deadline ([`Server::with_read_timeout`], 408 otherwise), answers
//! it with `Connection: close` and closes. The `Host` header must name this server
//! (`localhost`, `127.0.0.1`, `[::1]`, the bound address or the address the connection came
//! in on; 421 otherwise), so a web page on another name that rebinds its DNS to this machine
//! cannot read the results.
//!
//! Files are served read-only: only `GET` and `HEAD` (405 otherwise); the path is
//! percent-decoded segment by segment, and a segment that is `..`, contains `/`, `\` or NUL,
//! or is not UTF-8 is a 400. No symlink is followed inside DIR, neither as the file nor as a
//! folder on the way (403; the files are opened with `O_NOFOLLOW`), except `DIR/latest`,
//! which is resolved by hand and must name a folder inside DIR. Hidden files, private keys
//! (local clusters keep their certificates in the run folder) and temporaries are neither
//! served nor listed (403). A file must be a regular file or a directory (no FIFOs or
//! sockets). Every file is served with `Content-Security-Policy: sandbox` (reports with
//! `sandbox allow-scripts`, for their timeline), so a served page runs in an opaque origin
//! and cannot read other files through the server. Missing files are 404. Request handling
//! never panics; every request is logged with `tracing` (target `client::report::serve`,
//! level info).
//!
//! [`Server::bind`] binds (port 0 picks a free port, [`Server::local_addr`] tells which) and
//! [`Server::run`] serves until [`Stopper::stop`], so tests can run it in-process.

use checker::html::escape;
use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};
use tracing::{debug, info, warn};

/// The default port of `raft-lab serve`.
pub const DEFAULT_PORT: u16 = 8080;

/// The longest request line accepted (414 beyond): far more than any path the lab writes.
pub const MAX_REQUEST_LINE: usize = 8 * 1024;

/// The largest request head accepted, request line and headers together (431 beyond).
pub const MAX_HEAD: usize = 16 * 1024;

/// How long a client has to send its request head, from the moment it is accepted.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Worker threads, each serving one connection at a time: a slow client holds one of them
/// for at most the read timeout (or, while downloading, [`WRITE_TIMEOUT`] without progress).
const WORKERS: usize = 4;

/// A client that stops reading a response for this long is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// After an error answer, at most this many unread request bytes are read and discarded
/// (closing with unread input makes the kernel reset the connection, and the client could
/// lose the answer), for at most [`LINGER`].
const MAX_DRAIN: usize = 64 * 1024;
const LINGER: Duration = Duration::from_secs(2);

/// How long a worker waits before accepting again after `accept` failed (out of file
/// descriptors, say), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// At most this many characters of a parse error are shown in the index.
const MAX_ERROR_CHARS: usize = 300;

/// The symlink the lab points at the newest run, the one symlink the server follows.
const LATEST: &str = "latest";

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("--results {path}: {source}")]
    ResultsDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--results {0}: not a directory")]
    NotADirectory(PathBuf),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound HTTP server over one results folder.
pub struct Server {
    listener: TcpListener,
    /// The results folder as given (for messages).
    shown: PathBuf,
    /// The canonical results folder: every served file lies inside it.
    root: PathBuf,
    addr: SocketAddr,
    read_timeout: Duration,
    stopping: Arc<AtomicBool>,
    summaries: SummaryCache,
}

/// Stops a running [`Server::run`] from another thread.
#[derive(Clone)]
pub struct Stopper {
    /// Where to connect to wake the workers blocked in `accept`.
    wake: SocketAddr,
    stopping: Arc<AtomicBool>,
}

impl Stopper {
    /// Makes [`Server::run`] return once the requests in progress are answered.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        // Each worker accepts one of these connections (now or after its current one), sees
        // the flag and returns. A failed connect leaves a worker blocked until the next
        // connection; nothing better can be done without one.
        for _ in 0..WORKERS {
            if let Err(e) = TcpStream::connect_timeout(&self.wake, Duration::from_secs(1)) {
                warn!(target: "client::report::serve", error = %e, "waking a worker to stop");
            }
        }
    }
}

impl Server {
    /// Binds `addr` (port 0: any free port) to serve the results folder `results`, which must
    /// exist. Returns as soon as the socket listens: connections made after this are queued.
    pub fn bind(results: &Path, addr: SocketAddr) -> Result<Server, ServeError> {
        let root = std::fs::canonicalize(results).map_err(|source| ServeError::ResultsDir {
            path: results.to_path_buf(),
            source,
        })?;
        if !root.is_dir() {
            return Err(ServeError::NotADirectory(results.to_path_buf()));
        }
        let listener =
            TcpListener::bind(addr).map_err(|source| ServeError::Bind { addr, source })?;
        let bound = listener.local_addr().unwrap_or(addr);
        Ok(Server {
            listener,
            shown: results.to_path_buf(),
            root,
            addr: bound,
            read_timeout: DEFAULT_READ_TIMEOUT,
            stopping: Arc::new(AtomicBool::new(false)),
            summaries: SummaryCache::default(),
        })
    }

    /// How long a client has to send its request head (default [`DEFAULT_READ_TIMEOUT`]).
    #[must_use]
    pub fn with_read_timeout(mut self, timeout: Duration) -> Server {
        self.read_timeout = timeout;
        self
    }

    /// The address really bound (the real port when asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR:PORT/`, with a loopback address when bound to all interfaces.
    pub fn url(&self) -> String {
        format!("http://{}/", self.reachable_addr())
    }

    /// The bound address, with loopback for an unspecified (all interfaces) address.
    fn reachable_addr(&self) -> SocketAddr {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        addr
    }

    /// A handle that stops [`Server::run`].
    pub fn stopper(&self) -> Stopper {
        Stopper {
            wake: self.reachable_addr(),
            stopping: self.stopping.clone(),
        }
    }

    /// Serves requests until [`Stopper::stop`] is called (blocking).
    pub fn run(&self) {
        std::thread::scope(|scope| {
            for _ in 0..WORKERS {
                scope.spawn(|| self.worker());
            }
        });
    }

    fn worker(&self) {
        loop {
            let accepted = self.listener.accept();
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            match accepted {
                Ok((stream, remote)) => self.connection(stream, remote),
                Err(e) => {
                    warn!(target: "client::report::serve", error = %e, "accepting a connection");
                    std::thread::sleep(ACCEPT_BACKOFF);
                }
            }
        }
    }

    /// One connection: one request head, one answer, closed.
    fn connection(&self, mut stream: TcpStream, remote: SocketAddr) {
        let started = Instant::now();
        let deadline = started + self.read_timeout;
        let (method, target, reply) = match read_head(&mut stream, deadline) {
            Ok(head) => {
                let reply = match self.check_host(&head, &stream) {
                    Ok(()) => respond(
                        &self.root,
                        &self.shown,
                        &self.summaries,
                        &head.method,
                        &head.target,
                    ),
                    Err(reply) => reply,
                };
                (head.method, head.target, reply)
            }
            Err(HeadError::Closed) => {
                debug!(target: "client::report::serve", %remote, "closed before a request");
                return;
            }
            Err(e) => ("-".to_string(), "-".to_string(), e.reply()),
        };
        let status = reply.status;
        let result = send(&mut stream, reply, method == "HEAD");
        info!(
            target: "client::report::serve",
            %remote,
            %method,
            url = %target,
            status,
            ms = %format_args!("{:.1}", started.elapsed().as_secs_f64() * 1e3),
            "request"
        );
        match result {
            Err(e) => {
                warn!(target: "client::report::serve", url = %target, error = %e, "sending the response")
            }
            Ok(()) if status >= 400 && status != 408 => linger(&mut stream),
            Ok(()) => {}
        }
    }

    /// The `Host` header must be present once and name this server (see the module comment).
    fn check_host(&self, head: &Head, stream: &TcpStream) -> Result<(), Reply> {
        let host = match head.hosts.as_slice() {
            [host] => host,
            [] => return Err(Reply::error(400, "missing Host header")),
            _ => return Err(Reply::error(400, "more than one Host header")),
        };
        let mut here = vec![self.addr.ip()];
        // Bound to all interfaces, the server is reached under the address the client used.
        if let Ok(local) = stream.local_addr() {
            here.push(local.ip());
        }
        if host_allowed(host, &here) {
            Ok(())
        } else {
            Err(Reply::error(
                421,
                "this server answers to localhost and its own address only",
            ))
        }
    }
}

/// What the server uses of a request head.
struct Head {
    method: String,
    target: String,
    /// Every `Host` header's value (HTTP/1.1 requires exactly one).
    hosts: Vec<String>,
}

/// Why no request head was read.
#[derive(Debug)]
enum HeadError {
    /// The client went away, or the connection failed: nobody to answer.
    Closed,
    TimedOut,
    LineTooLong,
    HeadTooLarge,
    Malformed(&'static str),
}

impl HeadError {
    fn reply(&self) -> Reply {
        match self {
            HeadError::Closed => Reply::error(400, "bad request"),
            HeadError::Malformed(why) => Reply::error(400, why),
            HeadError::TimedOut => Reply::error(408, "request head not received in time"),
            HeadError::LineTooLong => Reply::error(414, "request line too long"),
            HeadError::HeadTooLarge => Reply::error(431, "request headers too large"),
        }
    }
}

/// Reads one request head before `deadline`, never more than [`MAX_HEAD`] bytes.
fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Head, HeadError> {
    let mut buf = vec![0; MAX_HEAD];
    let mut len = 0;
    loop {
        let line_end = buf[..len].iter().position(|&b| b == b'\n');
        if line_end.unwrap_or(len) > MAX_REQUEST_LINE {
            return Err(HeadError::LineTooLong);
        }
        if let Some(end) = head_end(&buf[..len]) {
            return parse_head(&buf[..end]);
        }
        if len == buf.len() {
            return Err(HeadError::HeadTooLarge);
        }
        // The deadline covers the whole head: a client trickling one byte at a time cannot
        // stretch it by keeping each single read short.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HeadError::TimedOut);
        }
        if stream.set_read_timeout(Some(left)).is_err() {
            return Err(HeadError::Closed);
        }
        match stream.read(&mut buf[len..]) {
            Ok(0) if len == 0 => return Err(HeadError::Closed),
            Ok(0) => return Err(HeadError::Malformed("request head cut short")),
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(HeadError::TimedOut)
            }
            Err(_) => return Err(HeadError::Closed),
        }
    }
}

/// The length of the head in `bytes` up to and including its empty line (`CRLF CRLF`, or
/// bare `LF`s), if it is all there.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(newline) = bytes[start..].iter().position(|&b| b == b'\n') {
        let line = &bytes[start..start + newline];
        if start > 0 && (line.is_empty() || line == b"\r") {
            return Some(start + newline + 1);
        }
        start += newline + 1;
    }
    None
}

/// Parses a complete head: `METHOD SP TARGET SP HTTP/1.x`, then `Name: value` lines.
fn parse_head(bytes: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| HeadError::Malformed("request head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("bad request line"));
    };
    if method.is_empty() || target.is_empty() || !version.starts_with("HTTP/1.") {
        return Err(HeadError::Malformed("bad request line"));
    }
    let mut hosts = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(HeadError::Malformed("bad header line"));
        };
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if name.eq_ignore_ascii_case("host") {
            hosts.push(value.trim().to_string());
        }
    }
    Ok(Head {
        method: method.to_string(),
        target: target.to_string(),
        hosts,
    })
}

/// Whether a `Host` value (`name[:port]`, an IPv6 address in brackets) names this server:
/// `localhost`, a loopback address, or one of `here` (an IP address, never a DNS name, so
/// rebinding cannot forge it).
fn host_allowed(host: &str, here: &[IpAddr]) -> bool {
    let (name, port) = match host.rfind(':') {
        // The colon of `[::1]` itself is not a port separator.
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    if let Some(port) = port {
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return false;
        }
    }
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    let ip = match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse::<Ipv6Addr>().map(IpAddr::V6),
        None => name.parse::<Ipv4Addr>().map(IpAddr::V4),
    };
    let Ok(ip) = ip else { return false };
    let loopback = [
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    loopback
        .iter()
        .chain(here.iter().filter(|a| !a.is_unspecified()))
        .any(|a| a.to_canonical() == ip.to_canonical())
}

/// Writes `reply` (only its head for `HEAD`).
fn send(stream: &mut TcpStream, reply: Reply, head_only: bool) -> std::io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let length = match &reply.body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::File(_, len) => *len,
    };
    let mut out = BufWriter::new(stream);
    write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {length}\r\n\
         Cache-Control: no-cache\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.content_type
    )?;
    for (name, value) in &reply.extra {
        write!(out, "{name}: {value}\r\n")?;
    }
    out.write_all(b"\r\n")?;
    if !head_only {
        match reply.body {
            Body::Bytes(bytes) => out.write_all(&bytes)?,
            Body::File(file, len) => {
                std::io::copy(&mut file.take(len), &mut out)?;
            }
        }
    }
    out.flush()
}

/// Closes our side and reads (and drops) what the client still sends, so that unread input
/// does not turn the close into a reset that could destroy the answer in flight.
fn linger(stream: &mut TcpStream) {
    if stream.shutdown(Shutdown::Write).is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER;
    let mut sink = [0; 4096];
    let mut drained = 0;
    while drained < MAX_DRAIN {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        414 => "URI Too Long",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        _ => "",
    }
}

/// One response, before it is written.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: Body,
    extra: Vec<(&'static str, String)>,
}

enum Body {
    Bytes(Vec<u8>),
    /// An open file and how many bytes of it to send.
    File(File, u64),
}

const HTML: &str = "text/html; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

impl Reply {
    fn html(status: u16, page: String) -> Reply {
        Reply {
            status,
            content_type: HTML,
            body: Body::Bytes(page.into_bytes()),
            // Our own pages need no scripts, fonts or remote anything.
            extra: vec![(
                "Content-Security-Policy",
                "default-src 'none'; style-src 'unsafe-inline'; sandbox".to_string(),
            )],
        }
    }

    fn error(status: u16, message: &str) -> Reply {
        Reply {
            status,
            content_type: TEXT,
            body: Body::Bytes(format!("{status} {message}\n").into_bytes()),
            extra: Vec::new(),
        }
    }
}

/// The whole routing: never panics, whatever `url` holds.
fn respond(root: &Path, shown: &Path, cache: &SummaryCache, method: &str, url: &str) -> Reply {
    if method != "GET" && method != "HEAD" {
        let mut reply = Reply::error(405, "method not allowed (GET and HEAD only)");
        reply.extra.push(("Allow", "GET, HEAD".to_string()));
        return reply;
    }
    // The request target without query or fragment; absolute-form URLs are not supported.
    let path = url.split(['?', '#']).next().unwrap_or_default();
    if !path.starts_with('/') {
        return Reply::error(400, "bad request path");
    }
    match path {
        "/" | "/index.html" => Reply::html(200, index_page(root, shown, cache)),
        "/runs" => serve_path(root, &[]),
        _ => match path.strip_prefix("/runs/") {
            Some(rest) => match decode_segments(rest) {
                Ok(segments) => serve_path(root, &segments),
                Err(why) => Reply::error(400, why),
            },
            None => Reply::error(404, "not found"),
        },
    }
}

/// Splits `a/b%20c/d` into decoded segments, dropping empty ones and `.`.
fn decode_segments(rest: &str) -> Result<Vec<String>, &'static str> {
    let mut segments = Vec::new();
    for raw in rest.split('/') {
        let bytes = percent_decode(raw).ok_or("bad percent-encoding")?;
        let segment = String::from_utf8(bytes).map_err(|_| "path is not UTF-8")?;
        if segment.contains(['/', '\\', '\0']) {
            return Err("bad character in path");
        }
        match segment.as_str() {
            "" | "." => {}
            ".." => return Err("'..' in path"),
            _ => segments.push(segment),
        }
    }
    Ok(segments)
}

fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Percent-encodes one path segment for an `href`.
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// `/runs/a/b/` for segments `[a, b]` (`dir`: with the trailing slash).
fn runs_href(segments: &[&str], dir: bool) -> String {
    let mut href = String::from("/runs");
    for s in segments {
        href.push('/');
        href.push_str(&encode_segment(s));
    }
    if dir || segments.is_empty() {
        href.push('/');
    }
    href
}

/// Names never served or listed: hidden files (`.git`, the lab's `.latest.N` while it is
/// replaced), private keys, and temporaries and editor leftovers, which may be half-written.
fn refused_name(name: &str) -> bool {
    name.starts_with('.')
        || name.ends_with('~')
        || matches!(
            extension(Path::new(name)).as_str(),
            "key" | "tmp" | "temp" | "swp" | "part"
        )
}

/// The run folder `DIR/latest` points at, as names under `root`; `latest` itself when it is
/// a plain folder. It must stay inside DIR: `update_latest` writes it relative, or absolute
/// for a run outside DIR (refused here).
fn latest_run(root: &Path) -> Result<Vec<String>, Reply> {
    let target = match std::fs::read_link(root.join(LATEST)) {
        Ok(target) => target,
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            return Ok(vec![LATEST.to_string()])
        }
        Err(_) => return Err(Reply::error(404, "not found")),
    };
    let inside = if target.is_absolute() {
        match target.strip_prefix(root) {
            Ok(inside) => inside.to_path_buf(),
            Err(_) => return Err(Reply::error(403, "outside the results folder")),
        }
    } else {
        target
    };
    inside
        .components()
        .map(|c| match c {
            Component::Normal(name) => name
                .to_str()
                .map(str::to_string)
                .ok_or_else(|| Reply::error(403, "latest is not UTF-8")),
            _ => Err(Reply::error(403, "outside the results folder")),
        })
        .collect()
}

/// `root/segments...`, checked name by name: no refused name and no symlink on the way
/// (only `latest` at the top, resolved by [`latest_run`]).
fn resolve(root: &Path, segments: &[String]) -> Result<PathBuf, Reply> {
    let mut names = Vec::with_capacity(segments.len() + 1);
    let mut rest = segments;
    if let Some((first, tail)) = segments.split_first() {
        if first == LATEST {
            names = latest_run(root)?;
            rest = tail;
        }
    }
    names.extend(rest.iter().cloned());
    let mut path = root.to_path_buf();
    for name in &names {
        if refused_name(name) {
            return Err(Reply::error(
                403,
                "hidden, temporary and key files are not served",
            ));
        }
        path.push(name);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(Reply::error(403, "symlinks are not followed"))
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(Reply::error(403, "permission denied"))
            }
            Err(_) => return Err(Reply::error(404, "not found")),
        }
    }
    Ok(path)
}

/// Serves `root/segments...`: a regular file or a directory listing.
fn serve_path(root: &Path, segments: &[String]) -> Reply {
    let path = match resolve(root, segments) {
        Ok(path) => path,
        Err(reply) => return reply,
    };
    // O_NOFOLLOW: a symlink swapped in after the walk above is refused, not followed;
    // O_NONBLOCK: opening a FIFO does not wait for a writer (it is refused just below).
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(&path);
    let file = match opened {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(Errno::ELOOP as i32) => {
            return Reply::error(403, "symlinks are not followed")
        }
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Reply::error(403, "permission denied")
        }
        Err(_) => return Reply::error(404, "not found"),
    };
    let meta = match file.metadata() {
        Ok(meta) => meta,
        Err(_) => return Reply::error(404, "not found"),
    };
    if meta.is_dir() {
        return match listing_page(&path, segments) {
            Ok(page) => Reply::html(200, page),
            Err(e) => Reply::error(404, &format!("cannot list: {e}")),
        };
    }
    if !meta.is_file() {
        return Reply::error(403, "not a regular file");
    }
    let content_type = content_type(&path);
    // A sandbox gives the page an opaque origin: it cannot read other runs through the
    // server. Reports keep scripts, because their timeline is an inline script; nothing
    // else served (SVG plots, logs, JSON) needs any.
    let policy = if content_type == HTML {
        "sandbox allow-scripts"
    } else {
        "sandbox"
    };
    Reply {
        status: 200,
        content_type,
        body: Body::File(file, meta.len()),
        extra: vec![("Content-Security-Policy", policy.to_string())],
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

fn content_type(path: &Path) -> &'static str {
    match extension(path).as_str() {
        "html" | "htm" => HTML,
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "css" => "text/css; charset=utf-8",
        "js" => "text/javascript; charset=utf-8",
        // Shown in the browser rather than downloaded.
        "jsonl" | "ndjson" | "edn" | "log" | "txt" | "md" | "toml" | "csv" | "pem" | "pid" => TEXT,
        _ => "application/octet-stream",
    }
}

const STYLE: &str = "body{font-family:sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse}th,td{padding:.25em .7em;text-align:left;border-bottom:1px solid #ddd}\
th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}\
.verdict{font-weight:bold}.valid{color:#1a7f37}.invalid{color:#c62828}\
.unknown{color:#b26a00}.incomplete{color:#757575}.unreadable{color:#6a1b9a}\
.note{color:#666;font-size:.9em}a{color:#1565c0}code{font-size:.95em}";

/// What the index knows about one run folder.
struct Run {
    workload: String,
    folder: String,
    state: RunState,
    /// Newest first: (14 timestamp digits, `-N` suffix of the folder, folder name).
    key: (String, u64, String),
}

#[derive(Clone)]
enum RunState {
    Complete(Json),
    Incomplete,
    Unreadable(String),
}

/// Every `root/<workload>/<timestamp>/`, newest first; problems reading folders are logged.
fn find_runs(root: &Path, cache: &SummaryCache) -> std::io::Result<Vec<Run>> {
    let mut runs = Vec::new();
    let mut seen = Vec::new();
    for workload in std::fs::read_dir(root)? {
        let Ok(workload) = workload else { continue };
        // `latest` (and any other symlink) would list a run twice, or a folder outside DIR.
        let Ok(kind) = workload.file_type() else {
            continue;
        };
        if !kind.is_dir() {
            continue;
        }
        let workload_name = workload.file_name().to_string_lossy().into_owned();
        if refused_name(&workload_name) {
            continue;
        }
        let entries = match std::fs::read_dir(workload.path()) {
            Ok(entries) => entries,
            Err(e) => {
                warn!(target: "client::report::serve", dir = %workload.path().display(), error = %e, "cannot list");
                continue;
            }
        };
        for run in entries {
            let Ok(run) = run else { continue };
            if !run.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let folder = run.file_name().to_string_lossy().into_owned();
            let path = run.path().join("results.json");
            let state = cache.read(&path);
            seen.push(path);
            let started_at = match &state {
                RunState::Complete(json) => json.get("started_at").and_then(Json::as_str),
                _ => None,
            };
            let key = sort_key(started_at, &folder);
            runs.push(Run {
                workload: workload_name.clone(),
                folder,
                state,
                key,
            });
        }
    }
    cache.keep_only(&seen);
    runs.sort_by(|a, b| b.key.cmp(&a.key).then_with(|| a.workload.cmp(&b.workload)));
    Ok(runs)
}

/// Parsed `results.json` files, keyed by path and valid while their size and modification
/// time are unchanged: the index stats every run on each request but parses only new or
/// rewritten summaries.
#[derive(Default)]
struct SummaryCache(Mutex<HashMap<PathBuf, (Stamp, RunState)>>);

/// A file's modification time and size.
type Stamp = (SystemTime, u64);

impl SummaryCache {
    fn read(&self, path: &Path) -> RunState {
        // Missing (incomplete), unstattable or without mtime: `read_summary` says what it is.
        let Some(stamp) = std::fs::metadata(path)
            .ok()
            .and_then(|meta| Some((meta.modified().ok()?, meta.len())))
        else {
            return read_summary(path);
        };
        // A panic elsewhere cannot leave the map half-updated: use it anyway.
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, state)) = map.get(path) {
            if *cached == stamp {
                return state.clone();
            }
        }
        let state = read_summary(path);
        map.insert(path.to_path_buf(), (stamp, state.clone()));
        state
    }

    /// Forgets runs that are gone.
    fn keep_only(&self, paths: &[PathBuf]) {
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() > paths.len() {
            let keep: std::collections::HashSet<&PathBuf> = paths.iter().collect();
            map.retain(|path, _| keep.contains(path));
        }
    }
}

fn read_summary(path: &Path) -> RunState {
    match std::fs::read(path) {
        Ok(bytes) => match serde_json::from_slice::<Json>(&bytes) {
            Ok(json) if json.is_object() => RunState::Complete(json),
            Ok(_) => RunState::Unreadable("results.json: not a JSON object".into()),
            Err(e) => RunState::Unreadable(format!("results.json: {e}")),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => RunState::Incomplete,
        Err(e) => RunState::Unreadable(format!("results.json: {e}")),
    }
}

fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).take(14).collect()
}

/// `started_at` (RFC 3339, UTC) or the folder name (`20250101T120000Z[-N]`), as 14 digits.
fn sort_key(started_at: Option<&str>, folder: &str) -> (String, u64, String) {
    let stamp = folder.split('-').next().unwrap_or_default();
    let time = started_at
        .map(digits)
        .filter(|d| d.len() == 14)
        .unwrap_or_else(|| digits(stamp));
    let suffix = folder
        .split_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(0);
    (time, suffix, folder.to_string())
}

/// `2025-01-01 12:00:00Z` from the run's `started_at` or its folder name.
fn display_time(started_at: Option<&str>, folder: &str) -> String {
    if let Some(t) = started_at {
        return t.replacen('T', " ", 1);
    }
    let d: Vec<char> = folder.chars().collect();
    let is_stamp = d.len() >= 16
        && d[8] == 'T'
        && d[15] == 'Z'
        && d[..8].iter().chain(&d[9..15]).all(char::is_ascii_digit);
    if !is_stamp {
        return folder.to_string();
    }
    let s: String = d.iter().collect();
    format!(
        "{}-{}-{} {}:{}:{}Z",
        &s[0..4],
        &s[4..6],
        &s[6..8],
        &s[9..11],
        &s[11..13],
        &s[13..15]
    )
}

fn json_text(value: Option<&Json>) -> Option<String> {
    match value? {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `"valid" | "invalid" | "unknown"` from `verdict`, or from `valid` as raft-check prints it.
fn verdict_of(json: &Json) -> String {
    if let Some(v) = json.get("verdict").and_then(Json::as_str) {
        return v.to_string();
    }
    match json.get("valid") {
        Some(Json::Bool(true)) => "valid".into(),
        Some(Json::Bool(false)) => "invalid".into(),
        Some(Json::String(s)) => s.clone(),
        _ => "?".into(),
    }
}

fn verdict_class(verdict: &str) -> &'static str {
    match verdict {
        "valid" => "valid",
        "invalid" => "invalid",
        "unknown" => "unknown",
        "incomplete" => "incomplete",
        _ => "unreadable",
    }
}

/// `ok/fail/info` of `counts.all`.
fn ops_cell(json: &Json) -> String {
    let Some(all) = json.get("counts").and_then(|c| c.get("all")) else {
        return String::new();
    };
    let n = |f: &str| all.get(f).and_then(Json::as_u64).unwrap_or(0);
    format!("{}/{}/{}", n("ok"), n("fail"), n("info"))
}

/// `kill×2 pause×1` from `nemesis.applied`; requested kinds never applied are marked.
fn faults_cell(json: &Json) -> String {
    let nemesis = json.get("nemesis");
    let mut parts = Vec::new();
    if let Some(applied) = nemesis
        .and_then(|n| n.get("applied"))
        .and_then(Json::as_object)
    {
        for (kind, count) in applied {
            match count.as_u64() {
                Some(c) => parts.push(format!("{}×{c}", escape(kind))),
                None => parts.push(escape(kind)),
            }
        }
    }
    let mut cell = if parts.is_empty() {
        "none".to_string()
    } else {
        parts.join(" ")
    };
    if let Some(never) = nemesis
        .and_then(|n| n.get("never_applied"))
        .and_then(Json::as_array)
        .filter(|a| !a.is_empty())
    {
        let never: Vec<String> = never.iter().filter_map(|k| json_text(Some(k))).collect();
        let _ = write!(
            cell,
            " <span class=\"note\" title=\"requested but never applied\">(never: {})</span>",
            escape(&never.join(", "))
        );
    }
    cell
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The index: every run, newest first.
fn index_page(root: &Path, shown: &Path, cache: &SummaryCache) -> String {
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raftlab runs</title><style>{STYLE}</style></head><body>\
         <h1>raftlab runs</h1>"
    );
    let runs = match find_runs(root, cache) {
        Ok(runs) => runs,
        Err(e) => {
            let _ = write!(
                page,
                "<p class=\"unreadable\">cannot read {}: {}</p></body></html>",
                escape(&shown.display().to_string()),
                escape(&e.to_string())
            );
            return page;
        }
    };
    let mut tally = std::collections::BTreeMap::<String, usize>::new();
    for run in &runs {
        let verdict = match &run.state {
            RunState::Complete(json) => verdict_of(json),
            RunState::Incomplete => "incomplete".into(),
            RunState::Unreadable(_) => "unreadable".into(),
        };
        *tally.entry(verdict).or_default() += 1;
    }
    let tally: Vec<String> = tally
        .iter()
        .map(|(v, n)| {
            format!(
                "<span class=\"{}\">{n} {}</span>",
                verdict_class(v),
                escape(v)
            )
        })
        .collect();
    let _ = write!(
        page,
        "<p>{} run{} in <code>{}</code>{}{} · <a href=\"/runs/\">browse files</a></p>",
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        escape(&shown.display().to_string()),
        if tally.is_empty() { "" } else { ": " },
        tally.join(", "),
    );
    if runs.is_empty() {
        page.push_str("<p>No runs yet: <code>raft-lab run workloads/kv.toml</code> makes one.</p></body></html>");
        return page;
    }
    page.push_str(
        "<table><thead><tr><th>time (UTC)</th><th>workload</th><th>verdict</th>\
         <th title=\"ok/fail/info of all operations\">ops ok/fail/info</th>\
         <th>faults applied</th><th>bug</th><th>seed</th><th>duration</th><th>files</th>\
         </tr></thead><tbody>\n",
    );
    for run in &runs {
        row(&mut page, root, run);
    }
    page.push_str("</tbody></table></body></html>\n");
    page
}

fn row(page: &mut String, root: &Path, run: &Run) {
    let dir = root.join(&run.workload).join(&run.folder);
    let segments = [run.workload.as_str(), run.folder.as_str()];
    let empty = Json::Null;
    let (json, verdict, note) = match &run.state {
        RunState::Complete(json) => (json, verdict_of(json), None),
        RunState::Incomplete => (
            &empty,
            "incomplete".to_string(),
            Some("no results.json: still running, or interrupted".to_string()),
        ),
        RunState::Unreadable(e) => (
            &empty,
            "unreadable".to_string(),
            Some(truncate(e, MAX_ERROR_CHARS)),
        ),
    };
    let started_at = json.get("started_at").and_then(Json::as_str);
    let mut verdict_cell = format!(
        "<span class=\"verdict {}\">{}</span>",
        verdict_class(&verdict),
        escape(&verdict)
    );
    if let Some(note) = note {
        let _ = write!(
            verdict_cell,
            "<br><span class=\"note\">{}</span>",
            escape(&note)
        );
    }
    let (ops, faults) = match &run.state {
        RunState::Complete(json) => (ops_cell(json), faults_cell(json)),
        _ => (String::new(), String::new()),
    };
    let bug = json_text(json.get("bug")).unwrap_or_else(|| {
        if matches!(run.state, RunState::Complete(_)) {
            "none".into()
        } else {
            String::new()
        }
    });
    let seed = json_text(json.get("seed")).unwrap_or_default();
    let duration = json
        .get("workload_s")
        .and_then(Json::as_f64)
        .map(|s| format!("{s:.1} s"))
        .unwrap_or_default();
    let mut links = Vec::new();
    for file in [
        "report.html",
        "history.jsonl",
        "history.edn",
        "results.json",
    ] {
        if dir.join(file).is_file() {
            let [w, f] = segments;
            links.push(format!(
                "<a href=\"{}\">{}</a>",
                runs_href(&[w, f, file], false),
                escape(file)
            ));
        }
    }
    links.push(format!(
        "<a href=\"{}\">folder</a>",
        runs_href(&segments, true)
    ));
    let _ = writeln!(
        page,
        "<tr><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td>\
         <td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
        escape(&display_time(started_at, &run.folder)),
        escape(&run.workload),
        verdict_cell,
        escape(&ops),
        faults,
        escape(&bug),
        escape(&seed),
        escape(&duration),
        links.join(" · "),
    );
}

/// A directory listing with absolute links (so it works with or without a trailing slash).
fn listing_page(dir: &Path, segments: &[String]) -> std::io::Result<String> {
    let mut entries: Vec<(bool, String, Option<u64>)> = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name().to_string_lossy().into_owned();
        if refused_name(&name) {
            continue;
        }
        // Follows symlinks (`latest`), for display only: serving re-checks the target.
        let meta = std::fs::metadata(entry.path()).ok();
        let is_dir = meta.as_ref().is_some_and(std::fs::Metadata::is_dir);
        let size = meta.filter(|m| m.is_file()).map(|m| m.len());
        entries.push((is_dir, name, size));
    }
    entries.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let here: Vec<&str> = segments.iter().map(String::as_str).collect();
    let title = format!("/{}", here.join("/"));
    let mut page = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>raftlab: {title}</title><style>{STYLE}</style></head><body>\
         <p><a href=\"/\">all runs</a></p><h1>{title}</h1><table><tbody>\n",
        title = escape(&title)
    );
    if !here.is_empty() {
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{}\">../</a></td><td></td></tr>",
            runs_href(&here[..here.len() - 1], true)
        );
    }
    for (is_dir, name, size) in &entries {
        let mut path = here.clone();
        path.push(name);
        let shown = if *is_dir {
            format!("{name}/")
        } else {
            name.clone()
        };
        let _ = writeln!(
            page,
            "<tr><td><a href=\"{}\">{}</a></td><td class=\"num\">{}</td></tr>",
            runs_href(&path, *is_dir),
            escape(&shown),
            size.map(|s| s.to_string()).unwrap_or_default()
        );
    }
    page.push_str("</tbody></table></body></html>\n");
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_segments_and_rejects_traversal() {
        assert_eq!(
            decode_segments("kv/a%20b//./c").unwrap(),
            vec!["kv", "a b", "c"]
        );
        assert!(decode_segments("../etc").is_err());
        assert!(decode_segments("%2e%2E/etc").is_err());
        assert!(decode_segments("kv/..%2f..%2fetc").is_err());
        assert!(decode_segments("kv/%5c..").is_err());
        assert!(decode_segments("kv/%00").is_err());
        assert!(decode_segments("kv/%zz").is_err());
        assert!(decode_segments("kv/%4").is_err());
        assert!(decode_segments("kv/%ff").is_err());
        assert!(decode_segments("kv/%").is_err());
        assert!(decode_segments("kv/é%C3%A9").is_ok());
    }

    #[test]
    fn parses_request_heads() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nrest"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.0\n\n"), Some(16));
        let head = parse_head(b"GET /x?y HTTP/1.1\r\nhOsT:  a:1 \r\nX: y\r\n\r\n").unwrap();
        assert_eq!(
            (head.method.as_str(), head.target.as_str()),
            ("GET", "/x?y")
        );
        assert_eq!(head.hosts, vec!["a:1"]);
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / SPDY/3\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET /\xff HTTP/1.1\r\n\r\n",
        ] {
            assert!(
                matches!(parse_head(bad), Err(HeadError::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn allows_only_hosts_naming_this_server() {
        let here = [
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            "10.1.2.3".parse().unwrap(),
            "::ffff:10.9.9.9".parse().unwrap(),
        ];
        for host in [
            "localhost",
            "LocalHost:80",
            "127.0.0.1:8080",
            "[::1]",
            "[0:0::1]:1",
            "10.1.2.3:8080",
            "10.9.9.9",
        ] {
            assert!(host_allowed(host, &here), "{host}");
        }
        for host in [
            "",
            "0.0.0.0",
            "evil.example",
            "localhost.evil.example",
            "localhost:",
            "localhost:123456",
            "127.0.0.1:x",
            "::1",
            "[::1",
            "10.1.2.4",
        ] {
            assert!(!host_allowed(host, &here), "{host}");
        }
    }

    #[test]
    fn refuses_hidden_key_and_temporary_names() {
        for name in [
            ".git",
            ".latest.1",
            "a.key",
            "A.KEY",
            "r.json.tmp",
            "x.swp",
            "x~",
        ] {
            assert!(refused_name(name), "{name}");
        }
        for name in [
            "report.html",
            "node-1.pem",
            "history.jsonl",
            "latest",
            "keys",
        ] {
            assert!(!refused_name(name), "{name}");
        }
    }

    #[test]
    fn encodes_hrefs() {
        assert_eq!(runs_href(&[], true), "/runs/");
        assert_eq!(runs_href(&["a b", "c\"<"], false), "/runs/a%20b/c%22%3C");
    }

    #[test]
    fn sorts_by_time_then_suffix() {
        let a = sort_key(Some("2025-01-02T00:00:00Z"), "20250102T000000Z");
        let b = sort_key(None, "20250102T000000Z-1");
        let c = sort_key(None, "20250102T000000Z-10");
        let d = sort_key(None, "20250101T235959Z");
        assert!(c > b && b > a && a > d);
        assert!(sort_key(None, "whatever") < d);
    }

    #[test]
    fn displays_times() {
        assert_eq!(
            display_time(None, "20250102T030405Z-2"),
            "2025-01-02 03:04:05Z"
        );
        assert_eq!(display_time(None, "odd"), "odd");
        assert_eq!(display_time(None, "2025010é"), "2025010é");
        assert_eq!(
            display_time(Some("2025-01-02T03:04:05Z"), "x"),
            "2025-01-02 03:04:05Z"
        );
    }

    #[test]
    fn odd_requests_never_panic() {
        let root = Path::new("/nonexistent-raftlab-root");
        let cache = SummaryCache::default();
        let respond = |method, url| respond(root, root, &cache, method, url);
        for url in [
            "",
            "*",
            "http://x/",
            "/runs",
            "/runs/%",
            "/runs/a\u{0}",
            "/?x#y",
            "/runs/../",
        ] {
            let _ = respond("GET", url);
        }
        assert_eq!(respond("POST", "/").status, 405);
        assert_eq!(respond("GET", "/nope").status, 404);
        assert_eq!(respond("GET", "*").status, 400);
        assert_eq!(respond("GET", "/").status, 200);
    }
}
