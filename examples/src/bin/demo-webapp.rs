//! A small stand-in for a web application, for the demo: it reads its
//! config, serves one HTTP request on loopback, resolves its database's name,
//! writes a log line and runs a health-check script, like a real app's
//! start-up. Everything stays on this machine.

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
    std::fs::write(&config, "listen=127.0.0.1:0\ndb=db.demo.internal\n")?;
    let text = std::fs::read_to_string(&config).context("reading config")?;
    let db = text.lines().find_map(|l| l.strip_prefix("db=")).unwrap_or("db.demo.internal");

    // Resolve the database name (the resolver need not answer).
    let mut m = Message::new();
    m.set_id(7).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(db)?, RecordType::A));
    UdpSocket::bind("127.0.0.1:0")?.send_to(&m.to_vec()?, "127.0.0.1:53")?;

    // Serve one request and make it ourselves.
    let listener = TcpListener::bind("127.0.0.1:0")?;
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
    Ok(())
}
