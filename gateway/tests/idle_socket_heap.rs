//! Heap an idle websocket socket costs the gateway, counted by a global allocator in this test
//! process.
//!
//! Scenario: the gateway runs in memory (no Redis) on its own runtime. The test thread opens
//! `SOCKETS` websocket connections with blocking std sockets and stack buffers, so the client side
//! allocates nothing while the heap is counted. Each socket completes the engine.io handshake and
//! the Socket.IO connect to `/`, then stays idle. The live heap may grow by at most
//! `MAX_HEAP_PER_SOCKET` per socket: a read or write buffer kept while idle, a channel allocated up
//! front or a second task per socket each push it over, and so does keeping hyper's 8 to 16 KiB read
//! buffer alive through the handshake request or its leftover bytes.

use std::alloc::System;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use clap::Parser;
use socketfleet_gateway::config::Config;
use socketfleet_gateway::server::{self, Listeners};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static ALLOCATOR: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const SOCKETS: usize = 300;

/// Budget per idle socket. Measured by this test with hyper 1.13 and tokio 1.54: 2,288 bytes on the
/// gateway's own engine; 19,519 bytes on socketioxide 0.18.9 before it.
const MAX_HEAP_PER_SOCKET: i64 = 3 * 1024;

/// Limit on each blocking read while a socket connects.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

fn live_heap() -> i64 {
    let stats = ALLOCATOR.stats();
    stats.bytes_allocated as i64 - stats.bytes_deallocated as i64
}

/// Reads from `stream` into `buffer` after `filled` bytes until `done` holds for the bytes read.
fn read_until(stream: &mut TcpStream, buffer: &mut [u8], mut filled: usize, done: impl Fn(&[u8]) -> bool) -> usize {
    while !done(&buffer[..filled]) {
        assert!(filled < buffer.len(), "handshake output exceeds {} bytes", buffer.len());
        let read = stream.read(&mut buffer[filled..]).expect("read from the gateway");
        assert!(read > 0, "gateway closed the connection during the handshake");
        filled += read;
    }
    filled
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}

/// Opens one websocket, waits for the engine.io open packet, connects to `/` and waits for the
/// Socket.IO CONNECT reply. Uses only stack buffers.
fn connect_socket(address: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect to the gateway");
    stream.set_read_timeout(Some(READ_TIMEOUT)).expect("set read timeout");
    stream
        .write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n\
              Host: gateway\r\n\
              Upgrade: websocket\r\n\
              Connection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
              Sec-WebSocket-Version: 13\r\n\r\n",
        )
        .expect("send the upgrade request");

    let mut buffer = [0u8; 2048];
    // The 101 response and the engine.io open packet `0{"sid":...}` in a text frame.
    let filled = read_until(&mut stream, &mut buffer, 0, |bytes| {
        contains(bytes, b"\r\n\r\n") && contains(bytes, b"0{\"")
    });
    assert!(
        buffer[..filled].starts_with(b"HTTP/1.1 101"),
        "upgrade was not accepted"
    );

    // A masked text frame `40` with a zero mask key: connect to the main namespace.
    stream
        .write_all(&[0x81, 0x82, 0, 0, 0, 0, b'4', b'0'])
        .expect("send the namespace connect");
    read_until(&mut stream, &mut buffer, filled, |bytes| contains(bytes, b"40{\""));
    stream
}

#[test]
fn idle_socket_heap_stays_under_budget() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config::try_parse_from([
        "socketfleet-gateway",
        "--port",
        "0",
        "--admin-port",
        "0",
        "--bind-address",
        "127.0.0.1",
    ])
    .expect("test flags parse");
    let listeners = runtime
        .block_on(Listeners::bind(&config))
        .expect("bind the gateway's ports");
    let address = listeners.socket.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = runtime.spawn(server::run(config, listeners, async move {
        let _ = stopped.await;
    }));

    // Warm-up: lazily built server state (tokio's I/O slabs, maps) is allocated before counting.
    let warm_up: Vec<TcpStream> = (0..20).map(|_| connect_socket(address)).collect();
    drop(warm_up);
    std::thread::sleep(Duration::from_millis(500));

    let mut sockets = Vec::with_capacity(SOCKETS);
    let before = live_heap();
    for _ in 0..SOCKETS {
        sockets.push(connect_socket(address));
    }
    // Every socket got its CONNECT reply. The server's tasks get a moment to reach their idle
    // state; this is a wait for quiescence, not a timing assertion.
    let settle_until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < settle_until {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = live_heap();

    let per_socket = (after - before) / SOCKETS as i64;
    println!("live heap per idle socket: {per_socket} bytes");
    assert!(
        per_socket <= MAX_HEAP_PER_SOCKET,
        "an idle socket costs {per_socket} bytes of heap, over the budget of {MAX_HEAP_PER_SOCKET}"
    );

    drop(sockets);
    let _ = stop.send(());
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(60), server).await;
    });
}
