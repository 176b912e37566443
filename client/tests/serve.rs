//! `raft-lab serve`: the index of runs, the files of a run, and the requests it must refuse,
//! over plain HTTP/1.0 on a std `TcpStream`. Most tests run the server in-process on port 0;
//! one spawns the binary and reads the URL it prints.

mod support;

use client::report::serve::{Server, Stopper};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

const REPORT: &str = "<!DOCTYPE html><html><body><h1>kv</h1><p>invalid</p></body></html>\n";

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn summary(verdict: &str, started_at: &str, seed: u64, bug: Option<&str>) -> String {
    serde_json::json!({
        "verdict": verdict,
        "valid": verdict == "valid",
        "workload": "kv",
        "started_at": started_at,
        "seed": seed,
        "bug": bug,
        "workload_s": 12.5,
        "counts": {"all": {"ok": 90, "fail": 7, "info": 3}, "read": {"ok": 40, "fail": 0, "info": 0}},
        "nemesis": {"requested": ["kill", "partition-halves"], "applied": {"kill": 2},
                    "never_applied": ["partition-halves"]},
    })
    .to_string()
}

/// A results folder with four runs (valid, invalid, one without results.json, one with
/// broken JSON), the `latest` symlink, a README, a private key and a symlink out of the folder.
fn fake_results(name: &str) -> PathBuf {
    let root = support::results_root(name);
    let old = root.join("kv/20250101T120000Z");
    write(
        &old.join("results.json"),
        &summary("valid", "2025-01-01T12:00:00Z", 11, None),
    );
    write(&old.join("report.html"), "<html>old</html>");
    let bad = root.join("kv/20250102T120000Z");
    write(
        &bad.join("results.json"),
        &summary("invalid", "2025-01-02T12:00:00Z", 4242, Some("stale-read")),
    );
    write(&bad.join("report.html"), REPORT);
    write(&bad.join("history.jsonl"), "{\"index\":0}\n");
    write(&bad.join("history.edn"), "[{:index 0}]\n");
    write(&bad.join("plots/latency.svg"), "<svg></svg>");
    write(&bad.join("cluster/node-1.log"), "node 1 started\n");
    write(&bad.join("cluster/certs/client.key"), "PRIVATE");
    std::os::unix::fs::symlink("/etc", bad.join("escape")).unwrap();
    // Newest, still running: no results.json.
    std::fs::create_dir_all(root.join("bank/20250103T120000Z")).unwrap();
    // Broken JSON, oldest.
    write(
        &root.join("kv/20241231T000000Z/results.json"),
        "{\"verdict\": \"valid\", oops",
    );
    // Valid JSON, but not a summary.
    write(&root.join("kv/20241230T000000Z/results.json"), "[1, 2]");
    write(&root.join("README.md"), "results go here\n");
    std::os::unix::fs::symlink("kv/20250102T120000Z", root.join("latest")).unwrap();
    root
}

struct Running {
    addr: SocketAddr,
    stopper: Stopper,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stopper.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn start(root: &Path) -> Running {
    let server = Server::bind(root, "127.0.0.1:0".parse().unwrap()).expect("binds");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    assert_eq!(server.url(), format!("http://{addr}/"));
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run());
    Running {
        addr,
        stopper,
        thread: Some(thread),
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `raw` as is and reads the whole answer (HTTP/1.0: the server closes).
fn raw_request(addr: SocketAddr, raw: &[u8]) -> Response {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    stream.write_all(raw).unwrap();
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).expect("reads the response");
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    Response {
        status,
        headers,
        body: body.to_string(),
    }
}

fn request(addr: SocketAddr, method: &str, path: &str) -> Response {
    raw_request(
        addr,
        format!("{method} {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
    )
}

fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path)
}

fn position(body: &str, needle: &str) -> usize {
    body.find(needle)
        .unwrap_or_else(|| panic!("{needle:?} not in the page:\n{body}"))
}

#[test]
fn index_lists_runs_newest_first_with_links() {
    let root = fake_results("serve-index");
    let server = start(&root);
    let page = get(server.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    let body = &page.body;

    let newest = position(body, "2025-01-03 12:00:00Z");
    let invalid = position(body, "2025-01-02 12:00:00Z");
    let valid = position(body, "2025-01-01 12:00:00Z");
    let broken = position(body, "2024-12-31 00:00:00Z");
    let not_object = position(body, "2024-12-30 00:00:00Z");
    assert!(
        newest < invalid && invalid < valid && valid < broken && broken < not_object,
        "{body}"
    );

    // Verdicts, coloured by class; the run without results.json and the broken one.
    assert!(body.contains("<span class=\"verdict invalid\">invalid</span>"));
    assert!(body.contains("<span class=\"verdict valid\">valid</span>"));
    assert!(body.contains("<span class=\"verdict incomplete\">incomplete</span>"));
    assert!(body.contains("<span class=\"verdict unreadable\">unreadable</span>"));
    assert!(
        body.contains("results.json: key must be a string"),
        "{body}"
    );
    assert!(body.contains("results.json: not a JSON object"), "{body}");
    // Columns of a complete run.
    assert!(body.contains("90/7/3"));
    assert!(body.contains("kill×2"));
    assert!(body.contains("never: partition-halves"));
    assert!(body.contains("stale-read"));
    assert!(body.contains("4242"));
    assert!(body.contains("12.5 s"));
    // Links, only to files that exist.
    for link in [
        "/runs/kv/20250102T120000Z/report.html",
        "/runs/kv/20250102T120000Z/history.jsonl",
        "/runs/kv/20250102T120000Z/history.edn",
        "/runs/kv/20250102T120000Z/",
        "/runs/kv/20250101T120000Z/report.html",
        "/runs/bank/20250103T120000Z/",
    ] {
        assert!(body.contains(&format!("href=\"{link}\"")), "no link {link}");
    }
    assert!(!body.contains("/runs/kv/20250101T120000Z/history.jsonl"));
    assert!(!body.contains("/runs/bank/20250103T120000Z/report.html"));
    // `latest` is not a workload; the README is not a run.
    assert!(!body.contains("/runs/latest/"), "{body}");
    assert_eq!(body.matches("<tr><td>").count(), 5, "{body}");
    // Self-contained.
    assert!(!body.contains("http://") && !body.contains("https://"));

    let head = request(server.addr, "HEAD", "/");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn serves_run_files_with_content_types() {
    let root = fake_results("serve-files");
    let server = start(&root);
    let report = get(server.addr, "/runs/kv/20250102T120000Z/report.html");
    assert_eq!(report.status, 200);
    assert_eq!(report.body, REPORT);
    assert!(report
        .header("Content-Type")
        .unwrap()
        .starts_with("text/html"));
    assert_eq!(
        report.header("Content-Length"),
        Some(REPORT.len().to_string().as_str())
    );

    for (path, content_type) in [
        (
            "/runs/kv/20250102T120000Z/plots/latency.svg",
            "image/svg+xml",
        ),
        ("/runs/kv/20250102T120000Z/history.jsonl", "text/plain"),
        ("/runs/kv/20250102T120000Z/history.edn", "text/plain"),
        ("/runs/kv/20250102T120000Z/results.json", "application/json"),
        ("/runs/kv/20250102T120000Z/cluster/node-1.log", "text/plain"),
        ("/runs/latest/report.html", "text/html"),
        ("/runs/kv/20250102T120000Z/report.html?x=1", "text/html"),
        ("/runs/kv/%32%30250102T120000Z/report.html", "text/html"),
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 200, "{path}");
        assert!(
            response
                .header("Content-Type")
                .unwrap()
                .starts_with(content_type),
            "{path}: {:?}",
            response.header("Content-Type")
        );
    }

    let head = request(server.addr, "HEAD", "/runs/kv/20250102T120000Z/report.html");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Directory listings, with or without the trailing slash.
    for path in ["/runs/kv/20250102T120000Z/", "/runs/kv/20250102T120000Z"] {
        let listing = get(server.addr, path);
        assert_eq!(listing.status, 200, "{path}");
        assert!(listing
            .body
            .contains("href=\"/runs/kv/20250102T120000Z/report.html\""));
        assert!(listing
            .body
            .contains("href=\"/runs/kv/20250102T120000Z/plots/\""));
        assert!(listing.body.contains("href=\"/runs/kv/\""), "parent link");
    }
    let top = get(server.addr, "/runs/");
    assert_eq!(top.status, 200);
    assert!(top.body.contains("href=\"/runs/latest/\""));
    assert!(top.body.contains("href=\"/runs/bank/\""));
}

#[test]
fn refuses_traversal_missing_files_and_other_methods() {
    let root = fake_results("serve-refuse");
    let outside = root.with_file_name(format!(
        "{}-secret",
        root.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&outside, "secret").unwrap();
    let server = start(&root);
    let secret = outside.file_name().unwrap().to_string_lossy().into_owned();

    for (path, expected) in [
        ("/runs/../../etc/passwd", 400),
        ("/runs/%2e%2e/%2e%2e/etc/passwd", 400),
        ("/runs/%2E%2E/%2E%2E/etc/passwd", 400),
        ("/runs/kv/..%2f..%2f..%2fetc%2fpasswd", 400),
        (&format!("/runs/../{secret}"), 400),
        (&format!("/runs/%2e%2e/{secret}"), 400),
        ("/runs/kv/%zz", 400),
        ("/runs/kv/%ff", 400),
        ("/runs/kv/%00", 400),
        ("/../etc/passwd", 404),
        ("/runs//etc/passwd", 404),
        ("/runs/%2fetc%2fpasswd", 400),
        ("/runs/kv/20250102T120000Z/escape/passwd", 403),
        ("/runs/kv/20250102T120000Z/escape/", 403),
        ("/runs/kv/20250102T120000Z/cluster/certs/client.key", 403),
        ("/runs/kv/20250102T120000Z/nope.html", 404),
        ("/runs/nope/", 404),
        ("/nope", 404),
        ("/favicon.ico", 404),
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, expected, "{path}: {}", response.body);
        assert!(!response.body.contains("root:"), "{path}");
        assert!(!response.body.contains("secret"), "{path}");
        assert!(!response.body.contains("PRIVATE"), "{path}");
    }
    for method in ["POST", "PUT", "DELETE"] {
        let response = request(server.addr, method, "/");
        assert_eq!(response.status, 405, "{method}");
    }

    // Garbage on the wire: answered or dropped, and the server keeps serving.
    for raw in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET runs/x HTTP/1.0\r\n\r\n",
        b"GET /\xff\xfe HTTP/1.0\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let _ = stream.write_all(raw);
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }
    assert_eq!(get(server.addr, "/").status, 200);
    let _ = std::fs::remove_file(outside);
}

#[test]
fn empty_and_missing_results_folders() {
    let root = support::results_root("serve-empty");
    let server = start(&root);
    let page = get(server.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("0 runs"));
    assert!(page.body.contains("No runs yet"));
    drop(server);

    let missing = root.join("does-not-exist");
    let error = match Server::bind(&missing, "127.0.0.1:0".parse().unwrap()) {
        Ok(_) => panic!("a missing results folder must be refused"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("does-not-exist"), "{error}");
}

/// `raft-lab serve --port 0` prints the URL with the real port and serves it; a missing
/// `--results` folder is one line on stderr and exit code 3.
#[test]
fn binary_prints_its_url_and_serves() {
    let root = fake_results("serve-binary");
    let child = Command::new(env!("CARGO_BIN_EXE_raft-lab"))
        .args(["serve", "--port", "0", "--results"])
        .arg(&root)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("raft-lab starts");
    // Killed (by its own handle) however the test ends.
    let mut child = KillOnDrop(child);
    let mut line = String::new();
    BufReader::new(child.0.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("reads the first line");
    let expected = format!("serving {} on http://127.0.0.1:", root.display());
    assert!(line.starts_with(&expected), "{line:?}");
    let url = line.trim().rsplit(' ').next().unwrap();
    let addr: SocketAddr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("host:port");
    assert_ne!(addr.port(), 0);
    let page = get(addr, "/");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("/runs/kv/20250102T120000Z/report.html"));
    assert_eq!(
        get(addr, "/runs/latest/report.html").body,
        REPORT,
        "the latest run's report"
    );
    drop(child);

    let output = Command::new(env!("CARGO_BIN_EXE_raft-lab"))
        .args(["serve", "--port", "0", "--results"])
        .arg(root.join("nowhere"))
        .output()
        .expect("raft-lab runs");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--results") && stderr.contains("nowhere"),
        "{stderr}"
    );
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_with_timeout(root: &Path, timeout: Duration) -> Running {
    let server = Server::bind(root, "127.0.0.1:0".parse().unwrap())
        .expect("binds")
        .with_read_timeout(timeout);
    let addr = server.local_addr();
    let stopper = server.stopper();
    let thread = std::thread::spawn(move || server.run());
    Running {
        addr,
        stopper,
        thread: Some(thread),
    }
}

/// More stalled connections than the server has workers, each with half a request: another
/// client is still served, and the server itself closes every stalled connection (the test
/// only waits for that; its own 20 s read timeout is a guard against hanging, not a measure).
#[test]
fn stalled_clients_are_cut_off_and_others_still_served() {
    let root = fake_results("serve-stalled");
    let server = start_with_timeout(&root, Duration::from_millis(200));
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(server.addr).expect("connects");
            stream.write_all(b"GET / HTTP/1.1\r\nHost: loc").unwrap();
            stream
        })
        .collect();
    assert_eq!(get(server.addr, "/").status, 200);
    for mut stream in stalled {
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let mut bytes = Vec::new();
        match stream.read_to_end(&mut bytes) {
            Ok(_) => {
                let text = String::from_utf8_lossy(&bytes);
                assert!(
                    text.is_empty() || text.starts_with("HTTP/1.1 408"),
                    "{text}"
                );
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("the server never closed a stalled connection: {e}"),
        }
    }
}

#[test]
fn oversized_request_lines_and_headers_are_refused() {
    let root = fake_results("serve-oversized");
    let server = start(&root);
    let long_path = format!("/runs/{}", "a".repeat(10_000));
    let response = raw_request(
        server.addr,
        format!("GET {long_path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes(),
    );
    assert_eq!(response.status, 414);
    let mut many = String::from("GET / HTTP/1.0\r\nHost: localhost\r\n");
    for i in 0..300 {
        many.push_str(&format!("X-Filler-{i}: {}\r\n", "b".repeat(100)));
    }
    many.push_str("\r\n");
    assert_eq!(raw_request(server.addr, many.as_bytes()).status, 431);
    // A head within the limits is still served.
    assert_eq!(get(server.addr, "/").status, 200);
}

#[test]
fn host_header_must_name_this_server() {
    let root = fake_results("serve-host");
    let server = start(&root);
    let port = server.addr.port();
    let with_host = |host: &str| {
        raw_request(
            server.addr,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .status
    };
    for host in [
        "localhost".to_string(),
        format!("localhost:{port}"),
        "LOCALHOST".to_string(),
        format!("127.0.0.1:{port}"),
        "127.0.0.1".to_string(),
        format!("[::1]:{port}"),
        server.addr.to_string(),
    ] {
        assert_eq!(with_host(&host), 200, "{host}");
    }
    // A DNS-rebinding page reaches us under its own name.
    for host in [
        "evil.example".to_string(),
        format!("evil.example:{port}"),
        format!("localhost.evil.example:{port}"),
        "127.0.0.2".to_string(),
        "localhost:x".to_string(),
        "".to_string(),
    ] {
        assert_eq!(with_host(&host), 421, "{host:?}");
    }
    // No Host at all, or two.
    assert_eq!(
        raw_request(server.addr, b"GET / HTTP/1.0\r\n\r\n").status,
        400
    );
    assert_eq!(
        raw_request(
            server.addr,
            b"GET / HTTP/1.0\r\nHost: localhost\r\nHost: evil.example\r\n\r\n"
        )
        .status,
        400
    );
}

/// Every file is served in a sandbox (an opaque origin: a report or an SVG cannot read the
/// other runs through the server); reports keep their scripts, the rest gets none.
#[test]
fn served_files_are_sandboxed() {
    let root = fake_results("serve-sandbox");
    let server = start(&root);
    for (path, policy) in [
        (
            "/runs/kv/20250102T120000Z/report.html",
            "sandbox allow-scripts",
        ),
        ("/runs/latest/report.html", "sandbox allow-scripts"),
        ("/runs/kv/20250102T120000Z/plots/latency.svg", "sandbox"),
        ("/runs/kv/20250102T120000Z/history.jsonl", "sandbox"),
        ("/runs/kv/20250102T120000Z/results.json", "sandbox"),
        ("/runs/kv/20250102T120000Z/cluster/node-1.log", "sandbox"),
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("Content-Security-Policy"),
            Some(policy),
            "{path}"
        );
    }
    for path in ["/", "/runs/kv/20250102T120000Z/"] {
        let policy = get(server.addr, path)
            .header("Content-Security-Policy")
            .map(str::to_string)
            .unwrap_or_default();
        assert!(policy.contains("sandbox"), "{path}: {policy:?}");
    }
}

/// Hidden files, temporaries and keys are neither served nor listed; a symlink inside the
/// results folder, to a file or as a directory on the way, is not followed (only `latest`,
/// the lab's own pointer to the newest run, is).
#[test]
fn hidden_temporary_key_files_and_symlinks_are_refused() {
    let root = fake_results("serve-hidden");
    let run = root.join("kv/20250102T120000Z");
    write(&run.join(".secret"), "HIDDEN-SECRET");
    write(&run.join("results.json.tmp"), "partial");
    write(&run.join("notes.swp"), "swap");
    write(&run.join(".git/config"), "HIDDEN-CONFIG");
    write(&root.join(".latest.123"), "HIDDEN-LATEST");
    std::os::unix::fs::symlink("report.html", run.join("alias.html")).unwrap();
    std::os::unix::fs::symlink("20250102T120000Z", root.join("kv/linked")).unwrap();
    std::os::unix::fs::symlink("cluster", run.join("logs")).unwrap();
    let server = start(&root);
    for path in [
        "/runs/kv/20250102T120000Z/.secret",
        "/runs/kv/20250102T120000Z/%2esecret",
        "/runs/kv/20250102T120000Z/results.json.tmp",
        "/runs/kv/20250102T120000Z/notes.swp",
        "/runs/kv/20250102T120000Z/.git/config",
        "/runs/kv/20250102T120000Z/.git/",
        "/runs/.latest.123",
        "/runs/kv/20250102T120000Z/cluster/certs/client.key",
        "/runs/kv/20250102T120000Z/alias.html",
        "/runs/kv/linked/report.html",
        "/runs/kv/linked/",
        "/runs/kv/20250102T120000Z/logs/node-1.log",
        "/runs/latest/logs/node-1.log",
    ] {
        let response = get(server.addr, path);
        assert_eq!(response.status, 403, "{path}: {}", response.body);
        for secret in [
            "HIDDEN",
            "partial",
            "swap",
            "PRIVATE",
            "node 1 started",
            REPORT,
        ] {
            assert!(!response.body.contains(secret), "{path}");
        }
    }
    assert_eq!(
        get(server.addr, "/runs/latest/report.html").body,
        REPORT,
        "the latest run is still served"
    );
    let listing = get(server.addr, "/runs/kv/20250102T120000Z/").body;
    for name in [".secret", "results.json.tmp", "notes.swp", ".git"] {
        assert!(!listing.contains(name), "{name} listed:\n{listing}");
    }
    let certs = get(server.addr, "/runs/kv/20250102T120000Z/cluster/certs/").body;
    assert!(!certs.contains("client.key"), "{certs}");
    assert!(!get(server.addr, "/runs/").body.contains(".latest.123"));
}
