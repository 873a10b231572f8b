//! Workloads for the end-to-end tests and benchmarks: each subcommand does
//! one precise thing with plain syscalls, so tests can assert exact events.
//!
//! Usage: tt-workload <command> [args...]
//!   open PATH...                      open (read) each path once
//!   open-n PATH N                     open+close PATH N times
//!   open-loop PATH N                  like open-n, prints "ns_per_op <n>"
//!   exec-loop N PROGRAM [ARGS...]     run PROGRAM N times, prints "ns_per_op <n>"
//!   chdir-open DIR REL                chdir(DIR) then open(REL)
//!   openat DIR REL                    openat(open(DIR), REL)
//!   write PATH                        open(O_WRONLY|O_CREAT|O_TRUNC)
//!   creat PATH                        creat(PATH)
//!   openat2 PATH                      openat2(AT_FDCWD, PATH, O_RDONLY)
//!   dns-udp ADDR NAME TYPE            UDP DNS query to ADDR (ip:port)
//!   dns-tcp ADDR NAME TYPE            TCP DNS query to ADDR
//!   dns-many ADDR PREFIX N            N UDP DNS queries: PREFIX0.., type A
//!   raw-udp ADDR HEX                  send raw bytes over UDP
//!   connect ADDR                      TCP connect
//!   udp-send ADDR                     unconnected UDP sendto
//!   udp-connect ADDR                  connected UDP send

use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, ExitCode};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, Query};
use hickory_proto::rr::{Name, RecordType};

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tt-workload: {e}");
            ExitCode::from(1)
        }
    }
}

fn cstr(s: &str) -> Result<CString> {
    CString::new(std::path::Path::new(s).as_os_str().as_bytes()).map_err(|e| e.to_string())
}

fn sys(ret: i32, what: &str) -> Result<i32> {
    if ret < 0 {
        Err(format!("{what}: {}", std::io::Error::last_os_error()))
    } else {
        Ok(ret)
    }
}

fn open_close(path: &CString, flags: i32) -> Result<()> {
    // SAFETY: path is a valid NUL-terminated string.
    let fd = sys(unsafe { libc::open(path.as_ptr(), flags, 0o644) }, "open")?;
    // SAFETY: fd was just returned by open.
    unsafe { libc::close(fd) };
    Ok(())
}

fn arg<'a>(args: &'a [String], i: usize, what: &str) -> Result<&'a str> {
    args.get(i).map(String::as_str).ok_or_else(|| format!("missing {what}"))
}

fn addr(s: &str) -> Result<SocketAddr> {
    SocketAddr::from_str(s).map_err(|e| format!("bad address {s}: {e}"))
}

fn dns_query(name: &str, qtype: &str) -> Result<Vec<u8>> {
    let t = RecordType::from_str(qtype).map_err(|e| e.to_string())?;
    let mut m = Message::new();
    m.set_id(0x4242).set_message_type(MessageType::Query).set_recursion_desired(true);
    m.add_query(Query::query(Name::from_ascii(name).map_err(|e| e.to_string())?, t));
    m.to_vec().map_err(|e| e.to_string())
}

fn udp_for(a: &SocketAddr) -> Result<UdpSocket> {
    let local = if a.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
    UdpSocket::bind(local).map_err(|e| e.to_string())
}

fn per_op(start: Instant, n: u64) {
    let ns = start.elapsed().as_nanos() as f64 / n.max(1) as f64;
    println!("ns_per_op {ns:.1}");
}

fn run(args: &[String]) -> Result<()> {
    let cmd = arg(args, 0, "command")?;
    match cmd {
        "open" => {
            for p in &args[1..] {
                open_close(&cstr(p)?, libc::O_RDONLY)?;
            }
        }
        "open-n" | "open-loop" => {
            let path = cstr(arg(args, 1, "path")?)?;
            let n: u64 = arg(args, 2, "count")?.parse().map_err(|e| format!("count: {e}"))?;
            let start = Instant::now();
            for _ in 0..n {
                open_close(&path, libc::O_RDONLY)?;
            }
            if cmd == "open-loop" {
                per_op(start, n);
            }
        }
        "exec-loop" => {
            let n: u64 = arg(args, 1, "count")?.parse().map_err(|e| format!("count: {e}"))?;
            let program = arg(args, 2, "program")?;
            let start = Instant::now();
            for _ in 0..n {
                let status = Command::new(program).args(&args[3..]).status().map_err(|e| e.to_string())?;
                if !status.success() {
                    return Err(format!("{program} failed: {status}"));
                }
            }
            per_op(start, n);
        }
        "chdir-open" => {
            std::env::set_current_dir(arg(args, 1, "dir")?).map_err(|e| e.to_string())?;
            open_close(&cstr(arg(args, 2, "relative path")?)?, libc::O_RDONLY)?;
        }
        "openat" => {
            let dir = cstr(arg(args, 1, "dir")?)?;
            let rel = cstr(arg(args, 2, "relative path")?)?;
            // SAFETY: valid C strings; fds closed below.
            let dfd = sys(unsafe { libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY) }, "open dir")?;
            let fd = sys(unsafe { libc::openat(dfd, rel.as_ptr(), libc::O_RDONLY) }, "openat")?;
            unsafe {
                libc::close(fd);
                libc::close(dfd);
            }
        }
        "write" => open_close(&cstr(arg(args, 1, "path")?)?, libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)?,
        "creat" => {
            let p = cstr(arg(args, 1, "path")?)?;
            // SAFETY: valid C string.
            let fd = sys(unsafe { libc::creat(p.as_ptr(), 0o644) }, "creat")?;
            unsafe { libc::close(fd) };
        }
        "openat2" => {
            let p = cstr(arg(args, 1, "path")?)?;
            // struct open_how { u64 flags; u64 mode; u64 resolve; }
            let how: [u64; 3] = [libc::O_RDONLY as u64, 0, 0];
            // SAFETY: valid pointers for the duration of the call.
            let fd = unsafe {
                libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, p.as_ptr(), how.as_ptr(), std::mem::size_of_val(&how))
            };
            sys(i32::try_from(fd).unwrap_or(-1), "openat2")?;
            unsafe { libc::close(fd as i32) };
        }
        "dns-udp" => {
            let a = addr(arg(args, 1, "address")?)?;
            let q = dns_query(arg(args, 2, "name")?, arg(args, 3, "type")?)?;
            udp_for(&a)?.send_to(&q, a).map_err(|e| e.to_string())?;
        }
        "dns-many" => {
            let a = addr(arg(args, 1, "address")?)?;
            let prefix = arg(args, 2, "prefix")?;
            let n: u64 = arg(args, 3, "count")?.parse().map_err(|e| format!("count: {e}"))?;
            let sock = udp_for(&a)?;
            for i in 0..n {
                let q = dns_query(&format!("{prefix}{i}.telltale.test"), "A")?;
                sock.send_to(&q, a).map_err(|e| e.to_string())?;
            }
        }
        "dns-tcp" => {
            let a = addr(arg(args, 1, "address")?)?;
            let q = dns_query(arg(args, 2, "name")?, arg(args, 3, "type")?)?;
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            s.write_all(&framed).map_err(|e| e.to_string())?;
            s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        "raw-udp" => {
            let a = addr(arg(args, 1, "address")?)?;
            let hex = arg(args, 2, "hex")?;
            let bytes: Vec<u8> = (0..hex.len() / 2)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|e| e.to_string()))
                .collect::<Result<_>>()?;
            udp_for(&a)?.send_to(&bytes, a).map_err(|e| e.to_string())?;
        }
        "connect" => {
            let a = addr(arg(args, 1, "address")?)?;
            TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string())?;
        }
        "udp-send" => {
            let a = addr(arg(args, 1, "address")?)?;
            udp_for(&a)?.send_to(b"ping", a).map_err(|e| e.to_string())?;
        }
        "udp-connect" => {
            let a = addr(arg(args, 1, "address")?)?;
            let s = udp_for(&a)?;
            s.connect(a).map_err(|e| e.to_string())?;
            s.send(b"ping").map_err(|e| e.to_string())?;
        }
        other => return Err(format!("unknown command {other}")),
    }
    Ok(())
}
