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
//!   open32 PATH                       32-bit open(PATH, O_RDONLY) by int 0x80 (x86_64)
//!   openat32 PATH                     32-bit openat(AT_FDCWD, PATH, O_RDONLY) by int 0x80
//!   open-by-handle PATH               name_to_handle_at, then open_by_handle_at
//!   io-uring-open PATH                open (read) PATH by an io_uring IORING_OP_OPENAT request
//!   exec32 PROGRAM                    32-bit execve(PROGRAM, [PROGRAM], []) by int 0x80
//!   dns-udp ADDR NAME TYPE            UDP DNS query to ADDR (ip:port)
//!   dns-tcp ADDR NAME TYPE            TCP DNS query to ADDR
//!   dns-tcp-split ADDR NAME TYPE      TCP DNS query, its 2-byte length prefix in a segment of its own
//!   dns-tcp-pipelined ADDR TYPE NAME...  TCP DNS queries, all in one write
//!   memfd-exec NAME PROGRAM [ARGS...] copy PROGRAM into memfd_create(NAME), fexecve it
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

/// `struct file_handle` with room for the largest handle (MAX_HANDLE_SZ).
#[repr(C)]
struct FileHandle {
    handle_bytes: u32,
    handle_type: i32,
    f_handle: [u8; 128],
}

/// Open `path` through a file handle: the path is resolved once by
/// name_to_handle_at, the open itself names no path. Returns (fd, mount fd).
fn open_by_handle(path: &CString, dir: &CString) -> Result<(i32, i32)> {
    let mut h = FileHandle { handle_bytes: 128, handle_type: 0, f_handle: [0; 128] };
    let mut mount_id: i32 = 0;
    // SAFETY: valid pointers for the duration of the calls.
    unsafe {
        let r = libc::syscall(
            libc::SYS_name_to_handle_at,
            libc::AT_FDCWD,
            path.as_ptr(),
            std::ptr::addr_of_mut!(h),
            std::ptr::addr_of_mut!(mount_id),
            0,
        );
        sys(i32::try_from(r).unwrap_or(-1), "name_to_handle_at")?;
        let mount_fd = sys(libc::open(dir.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY), "open mount dir")?;
        let fd = libc::syscall(libc::SYS_open_by_handle_at, mount_fd, std::ptr::addr_of_mut!(h), libc::O_RDONLY);
        Ok((sys(i32::try_from(fd).unwrap_or(-1), "open_by_handle_at")?, mount_fd))
    }
}

/// 32-bit system calls from this 64-bit process (int 0x80): the i386
/// syscall table, arguments in ebx/ecx/edx, pointers below 4 GiB.
#[cfg(target_arch = "x86_64")]
mod compat {
    use std::ffi::CString;

    const NR32_OPEN: u32 = 5;
    const NR32_EXECVE: u32 = 11;
    const NR32_OPENAT: u32 = 295;

    /// A page below 4 GiB holding `bytes` at offset 0.
    fn low_page(bytes: &[u8]) -> super::Result<*mut u8> {
        // SAFETY: a fresh anonymous mapping, written within bounds.
        unsafe {
            let m = libc::mmap(
                std::ptr::null_mut(),
                4096,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_32BIT,
                -1,
                0,
            );
            if m == libc::MAP_FAILED || bytes.len() > 2048 {
                return Err("mmap(MAP_32BIT) failed or argument too long".into());
            }
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), m.cast::<u8>(), bytes.len());
            Ok(m.cast::<u8>())
        }
    }

    /// execve(program, [program, NULL], [NULL]) through the i386 table.
    /// Returns only on failure.
    pub fn exec(program: &CString) -> String {
        let page = match low_page(program.as_bytes_with_nul()) {
            Ok(p) => p,
            Err(e) => return e,
        };
        let base = page as u64;
        let Ok(path) = u32::try_from(base) else { return "MAP_32BIT mapping above 4 GiB".into() };
        // argv at offset 2048: [path, 0]; envp at 2056: [0].
        // SAFETY: within the page mapped above.
        unsafe {
            let argv = page.add(2048).cast::<u32>();
            argv.write(path);
            argv.add(1).write(0);
            argv.add(2).write(0);
        }
        let e = int80(NR32_EXECVE, path, path + 2048, path + 2056);
        format!("32-bit execve: {}", std::io::Error::from_raw_os_error(-e))
    }

    fn int80(nr: u32, a1: u32, a2: u32, a3: u32) -> i32 {
        let ret: u32;
        let a1 = u64::from(a1);
        // SAFETY: int 0x80 with the i386 ABI; rbx is saved and restored
        // around it (LLVM reserves it, so it cannot be an operand).
        unsafe {
            std::arch::asm!(
                "xchg {a1}, rbx",
                "int 0x80",
                "xchg {a1}, rbx",
                a1 = inout(reg) a1 => _,
                inlateout("eax") nr => ret,
                in("ecx") a2,
                in("edx") a3,
            );
        }
        ret as i32
    }

    /// open(path, O_RDONLY) or openat(AT_FDCWD, path, O_RDONLY), 32-bit.
    pub fn open(path: &CString, at: bool) -> super::Result<i32> {
        let low = low_page(path.as_bytes_with_nul())? as u64;
        let ptr = u32::try_from(low).map_err(|_| "MAP_32BIT mapping above 4 GiB")?;
        let fd = if at {
            int80(NR32_OPENAT, libc::AT_FDCWD as u32, ptr, libc::O_RDONLY as u32)
        } else {
            int80(NR32_OPEN, ptr, libc::O_RDONLY as u32, 0)
        };
        if fd < 0 {
            return Err(format!("32-bit open: {}", std::io::Error::from_raw_os_error(-fd)));
        }
        Ok(fd)
    }
}

#[cfg(not(target_arch = "x86_64"))]
mod compat {
    /// No 32-bit ABI to try here.
    pub fn open(_: &std::ffi::CString, _: bool) -> super::Result<i32> {
        Err("32-bit system calls are tested on x86_64 only".into())
    }

    /// No 32-bit ABI to try here.
    pub fn exec(_: &std::ffi::CString) -> String {
        "32-bit system calls are tested on x86_64 only".into()
    }
}

/// io_uring by raw syscalls: one ring, one request. Only what
/// `io-uring-open` needs; the layouts are the kernel's uapi
/// (`include/uapi/linux/io_uring.h`).
mod uring {
    use std::ffi::CString;
    use std::sync::atomic::{AtomicU32, Ordering};

    const IORING_OP_OPENAT: u8 = 18;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const SQE_SIZE: usize = 64;
    const CQE_SIZE: usize = 16;

    /// `struct io_sqring_offsets`.
    #[repr(C)]
    #[derive(Default)]
    struct SqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        flags: u32,
        dropped: u32,
        array: u32,
        resv1: u32,
        user_addr: u64,
    }

    /// `struct io_cqring_offsets`.
    #[repr(C)]
    #[derive(Default)]
    struct CqOffsets {
        head: u32,
        tail: u32,
        ring_mask: u32,
        ring_entries: u32,
        overflow: u32,
        cqes: u32,
        flags: u32,
        resv1: u32,
        user_addr: u64,
    }

    /// `struct io_uring_params` (120 bytes).
    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: SqOffsets,
        cq_off: CqOffsets,
    }
    const _: () = assert!(std::mem::size_of::<Params>() == 120);

    fn map(fd: i32, len: usize, offset: i64) -> super::Result<*mut u8> {
        // SAFETY: a shared mapping of the ring fd at a kernel-defined offset.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("mmap io_uring: {}", std::io::Error::last_os_error()));
        }
        Ok(p.cast())
    }

    /// Open `path` (O_RDONLY) by an IORING_OP_OPENAT request and close it:
    /// the open is no syscall of this process.
    pub fn open(path: &CString) -> super::Result<()> {
        let mut params = Params::default();
        // SAFETY: params is a valid io_uring_params the kernel fills in.
        let ring = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut params as *mut Params) };
        let ring = super::sys(ring as i32, "io_uring_setup")?;
        let sq_len = params.sq_off.array as usize + params.sq_entries as usize * 4;
        let cq_len = params.cq_off.cqes as usize + params.cq_entries as usize * CQE_SIZE;
        let sq = map(ring, sq_len, IORING_OFF_SQ_RING)?;
        let cq = map(ring, cq_len, IORING_OFF_CQ_RING)?;
        let sqes = map(ring, params.sq_entries as usize * SQE_SIZE, IORING_OFF_SQES)?;
        // SAFETY: every offset below comes from the kernel's params and lies
        // inside the mappings made with the lengths it implies; the head and
        // tail words are shared with the kernel, hence atomics.
        let res = unsafe {
            let at = |base: *mut u8, off: u32| base.add(off as usize);
            let mask = *at(sq, params.sq_off.ring_mask).cast::<u32>();
            let tail = &*at(sq, params.sq_off.tail).cast::<AtomicU32>();
            let t = tail.load(Ordering::Acquire);
            let index = t & mask;
            let sqe = sqes.add(index as usize * SQE_SIZE);
            std::ptr::write_bytes(sqe, 0, SQE_SIZE);
            *sqe = IORING_OP_OPENAT; // opcode
            *sqe.add(4).cast::<i32>() = libc::AT_FDCWD; // fd
            *sqe.add(16).cast::<u64>() = path.as_ptr() as u64; // addr: the path
            *sqe.add(28).cast::<u32>() = libc::O_RDONLY as u32; // open_flags
            *sqe.add(32).cast::<u64>() = 0x7474; // user_data
            *at(sq, params.sq_off.array).cast::<u32>().add(index as usize) = index;
            tail.store(t.wrapping_add(1), Ordering::Release);
            let n = libc::syscall(libc::SYS_io_uring_enter, ring, 1u32, 1u32, IORING_ENTER_GETEVENTS, 0usize, 0usize);
            super::sys(n as i32, "io_uring_enter")?;
            let head = &*at(cq, params.cq_off.head).cast::<AtomicU32>();
            let h = head.load(Ordering::Acquire);
            let cmask = *at(cq, params.cq_off.ring_mask).cast::<u32>();
            let cqe = at(cq, params.cq_off.cqes).add((h & cmask) as usize * CQE_SIZE);
            let res = *cqe.add(8).cast::<i32>();
            head.store(h.wrapping_add(1), Ordering::Release);
            libc::munmap(sqes.cast(), params.sq_entries as usize * SQE_SIZE);
            libc::munmap(cq.cast(), cq_len);
            libc::munmap(sq.cast(), sq_len);
            libc::close(ring);
            res
        };
        if res < 0 {
            return Err(format!("io_uring openat: {}", std::io::Error::from_raw_os_error(-res)));
        }
        // SAFETY: res is the descriptor the request opened.
        unsafe { libc::close(res) };
        Ok(())
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
        "open-distinct" => {
            // N distinct files DIR/f<i>, each created and opened once.
            let dir = arg(args, 1, "dir")?;
            let n: u64 = arg(args, 2, "count")?.parse().map_err(|e| format!("count: {e}"))?;
            for i in 0..n {
                open_close(&cstr(&format!("{dir}/f{i}"))?, libc::O_WRONLY | libc::O_CREAT)?;
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
        "open32" | "openat32" => {
            let p = cstr(arg(args, 1, "path")?)?;
            let fd = compat::open(&p, args[0] == "openat32")?;
            // SAFETY: closing the descriptor we just opened.
            unsafe { libc::close(fd) };
        }
        "exec32" => {
            let p = cstr(arg(args, 1, "program")?)?;
            return Err(compat::exec(&p));
        }
        "io-uring-open" => uring::open(&cstr(arg(args, 1, "path")?)?)?,
        "open-by-handle" => {
            let p = arg(args, 1, "path")?;
            let parent = std::path::Path::new(p).parent().ok_or("path has no parent")?;
            let (fd, mount_fd) = open_by_handle(&cstr(p)?, &cstr(&parent.display().to_string())?)?;
            // SAFETY: closing descriptors we opened.
            unsafe {
                libc::close(fd);
                libc::close(mount_fd);
            }
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
        "dns-tcp-split" => {
            let a = addr(arg(args, 1, "address")?)?;
            let q = dns_query(arg(args, 2, "name")?, arg(args, 3, "type")?)?;
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.write_all(&(q.len() as u16).to_be_bytes()).map_err(|e| e.to_string())?;
            // Let the prefix leave alone (no Nagle, and time to go out).
            std::thread::sleep(Duration::from_millis(100));
            s.write_all(&q).map_err(|e| e.to_string())?;
            s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        "dns-tcp-pipelined" => {
            let a = addr(arg(args, 1, "address")?)?;
            let qtype = arg(args, 2, "type")?;
            let mut framed = Vec::new();
            for name in &args[3..] {
                let q = dns_query(name, qtype)?;
                framed.extend_from_slice(&(q.len() as u16).to_be_bytes());
                framed.extend_from_slice(&q);
            }
            let mut s = TcpStream::connect_timeout(&a, Duration::from_secs(5)).map_err(|e| e.to_string())?;
            s.write_all(&framed).map_err(|e| e.to_string())?;
            s.shutdown(std::net::Shutdown::Write).map_err(|e| e.to_string())?;
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
        "memfd-exec" => {
            let name = cstr(arg(args, 1, "name")?)?;
            let program = arg(args, 2, "program")?;
            let bytes = std::fs::read(program).map_err(|e| format!("reading {program}: {e}"))?;
            // SAFETY: valid C string; the descriptor is ours.
            let fd = sys(unsafe { libc::memfd_create(name.as_ptr(), 0) }, "memfd_create")?;
            // SAFETY: fd is open; the file is wrapped once and not closed elsewhere.
            let mut file = unsafe { <std::fs::File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
            file.write_all(&bytes).map_err(|e| format!("writing the memfd: {e}"))?;
            let argv: Vec<CString> = args[2..].iter().map(|a| cstr(a)).collect::<Result<_>>()?;
            let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
            argv_ptrs.push(std::ptr::null());
            let envp: [*const libc::c_char; 1] = [std::ptr::null()];
            // SAFETY: NULL-terminated arrays of valid C strings; returns only on failure.
            unsafe { libc::fexecve(std::os::fd::AsRawFd::as_raw_fd(&file), argv_ptrs.as_ptr(), envp.as_ptr()) };
            return Err(format!("fexecve: {}", std::io::Error::last_os_error()));
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
