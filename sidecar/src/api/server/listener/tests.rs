use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_stream::StreamExt;

/// Long enough for anything that should happen to happen on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(20);

fn limits(handshake_ms: u64, idle_ms: u64) -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(handshake_ms),
        idle_timeout: Duration::from_millis(idle_ms),
        ..Limits::default()
    }
}

async fn permit() -> OwnedSemaphorePermit {
    Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap()
}

/// Read until the connection fails; the bytes read and the error.
async fn read_until_error(conn: &mut Conn<tokio::io::DuplexStream>) -> (usize, io::Error) {
    let mut total = 0;
    let mut buf = [0u8; 64];
    loop {
        match tokio::time::timeout(PATIENCE, conn.read(&mut buf)).await.expect("the deadline fires") {
            Ok(0) => panic!("the peer closed first"),
            Ok(n) => total += n,
            Err(e) => return (total, e),
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_cut_after_the_handshake_timeout() {
    let (_client, server) = tokio::io::duplex(64);
    let mut conn = Conn::new(server, permit().await, &limits(100, 60_000));
    let (n, e) = read_until_error(&mut conn).await;
    assert_eq!(n, 0);
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), "handshake timed out");
}

#[tokio::test]
async fn bytes_dripped_slowly_do_not_extend_the_handshake() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut conn = Conn::new(server, permit().await, &limits(300, 60_000));
    let drip = tokio::spawn(async move {
        for _ in 0..HANDSHAKE_BYTES * 4 {
            if client.write_all(b"P").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (n, e) = read_until_error(&mut conn).await;
    assert!(n > 0 && n < HANDSHAKE_BYTES, "{n} bytes");
    assert_eq!(e.to_string(), "handshake timed out");
    drop(conn);
    drip.await.unwrap();
}

#[tokio::test]
async fn after_the_handshake_a_peer_may_pause_but_not_fall_silent() {
    let (mut client, server) = tokio::io::duplex(64);
    let mut conn = Conn::new(server, permit().await, &limits(5_000, 2_000));
    let talk = tokio::spawn(async move {
        client.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.unwrap();
        // Pauses shorter than the idle timeout, for longer than it in all.
        for _ in 0..15 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            client.write_all(b"x").await.unwrap();
        }
        // Then silence, with the connection open.
        client
    });
    let (n, e) = read_until_error(&mut conn).await;
    assert_eq!(n, HANDSHAKE_BYTES + 15);
    assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    assert_eq!(e.to_string(), "idle connection timed out");
    drop(talk.await.unwrap());
}

#[tokio::test]
async fn the_cap_holds_connections_back_until_one_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut incoming = Incoming::new(listener, Limits { max_connections: 2, ..Limits::default() });
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(TcpStream::connect(addr).await.unwrap());
    }
    let peer = |c: &Conn<TcpStream>| c.connect_info().remote_addr;
    let first = incoming.next().await.unwrap().unwrap();
    let second = incoming.next().await.unwrap().unwrap();
    let accepted = [peer(&first), peer(&second)];
    assert!(accepted.contains(&clients[0].local_addr().ok()), "{accepted:?}");
    // The third waits in the kernel's queue while two are held.
    assert!(tokio::time::timeout(Duration::from_millis(300), incoming.next()).await.is_err());
    drop(first);
    let third = tokio::time::timeout(PATIENCE, incoming.next()).await.expect("accepted").unwrap().unwrap();
    assert_eq!(peer(&third), clients[2].local_addr().ok());
    drop(second);
}
