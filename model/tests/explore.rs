//! `raft-model explore` serves stateright's Explorer over HTTP, on a model built from the
//! real core: the page, the property list and the initial state (a real `Replica`) answer.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the explorer when the test ends, however it ends.
struct Explorer(Child);

impl Drop for Explorer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

/// One HTTP/1.0 GET; the server closes the connection after the answer.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
    let mut body = String::new();
    stream.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn explorer_serves_the_model_of_the_real_core() {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_raft-model"))
        .args(["explore", "--port", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start raft-model explore");
    let _explorer = Explorer(child);
    // The server needs a moment to bind; poll the status page until it answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        match get(port, "/.status") {
            Ok(answer) if answer.contains("200 OK") => break answer,
            _ if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            other => panic!("the explorer did not answer on port {port}: {other:?}"),
        }
    };
    for property in ["Election Safety", "Leader Completeness", "Linearizable"] {
        assert!(
            status.contains(property),
            "{property} missing from {status}"
        );
    }
    let page = get(port, "/").expect("the explorer page");
    assert!(page.contains("<html"), "not a page: {page}");
    let init = get(port, "/.states/").expect("the initial states");
    assert!(
        init.contains("Replica") && init.contains("Raft"),
        "the initial state is not the real core's: {init}"
    );
}
