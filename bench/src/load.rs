//! Load generator processes: `hold` keeps many idle or room-member sockets open, `publish` sends
//! room publishes at a fixed rate or as fast as acks come back.
//!
//! Each process runs one thread (a current-thread runtime), so its CPU cost is at most one core and
//! easy to see. Sockets are grouped, many per task, in `FuturesUnordered` sets. The harness talks to a
//! `hold` process over stdin/stdout with one JSON object per line.

use std::cell::{Cell, RefCell};
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Semaphore;
use tokio::task::LocalSet;

use crate::wire::{self, Frame, WsConn};

/// Limit on one socket's upgrade, namespace connect and room join.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Latency histogram resolution: one bucket per microsecond up to this bound, then one overflow bucket.
pub const LATENCY_BUCKETS_MICROS: usize = 200_000;

#[derive(clap::Args, Debug, Clone)]
pub struct HoldArgs {
    /// Server socket addresses; socket i connects to target i mod (number of targets).
    #[arg(long = "target", required = true)]
    pub targets: Vec<SocketAddr>,
    /// Loopback source address for this process's sockets (about 28,000 ports each).
    #[arg(long, default_value = "127.0.0.1")]
    pub source: IpAddr,
    /// Number of sockets to open.
    #[arg(long)]
    pub connections: usize,
    /// Sockets driven by one task.
    #[arg(long, default_value_t = 512)]
    pub per_task: usize,
    /// Upgrades in flight at once; more than the server's listen backlog only causes SYN retries.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,
    /// Room name prefix; with --rooms K, socket i joins room `<prefix><(i + room-offset) mod K>`.
    #[arg(long)]
    pub room_prefix: Option<String>,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    #[arg(long, default_value_t = 0)]
    pub room_offset: usize,
    /// Records the latency of each received event from the send time it carries.
    #[arg(long)]
    pub latency: bool,
}

#[derive(clap::Args, Debug, Clone)]
pub struct PublishArgs {
    #[arg(long)]
    pub target: SocketAddr,
    #[arg(long, default_value = "127.0.0.1")]
    pub source: IpAddr,
    /// Publishing sockets; the rate and window are split over them.
    #[arg(long, default_value_t = 1)]
    pub sockets: usize,
    /// Rooms are `<prefix>0` .. `<prefix>(K-1)`, used in turn.
    #[arg(long)]
    pub room_prefix: String,
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// Publishes per second over all sockets; 0 sends as fast as acks come back (see --window).
    #[arg(long, default_value_t = 0)]
    pub rate: u64,
    /// Unacked publishes per socket when --rate is 0.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    #[arg(long)]
    pub duration_secs: f64,
    /// Filler bytes added to each event's data.
    #[arg(long, default_value_t = 0)]
    pub payload_bytes: usize,
}

// ---------------------------------------------------------------------------------------------------
// hold

#[derive(Default)]
struct HoldCounters {
    connected: Cell<u64>,
    failed: Cell<u64>,
    closed: Cell<u64>,
    events: Cell<u64>,
    pings: Cell<u64>,
    first_error: RefCell<Option<String>>,
    latency_micros: RefCell<Vec<u64>>,
}

impl HoldCounters {
    fn record_failure(&self, error: &anyhow::Error) {
        self.failed.set(self.failed.get() + 1);
        let mut first = self.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(format!("{error:#}"));
        }
    }

    fn record_latency(&self, sent_nanos: u64) {
        let micros = wire::monotonic_nanos().saturating_sub(sent_nanos) / 1000;
        let bucket = (micros as usize).min(LATENCY_BUCKETS_MICROS);
        self.latency_micros.borrow_mut()[bucket] += 1;
    }
}

#[derive(Serialize)]
struct HoldReport {
    event: &'static str,
    connected: u64,
    failed: u64,
    closed: u64,
    events: u64,
    pings: u64,
    first_error: Option<String>,
    /// Sparse latency histogram: [microseconds, count] pairs; the last bucket collects the overflow.
    #[serde(skip_serializing_if = "Option::is_none")]
    latency_micros: Option<Vec<(u64, u64)>>,
}

fn hold_report(event: &'static str, counters: &HoldCounters, with_latency: bool) -> HoldReport {
    let latency_micros = with_latency.then(|| {
        let buckets = counters.latency_micros.borrow();
        buckets
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(micros, count)| (micros as u64, *count))
            .collect()
    });
    HoldReport {
        event,
        connected: counters.connected.get(),
        failed: counters.failed.get(),
        closed: counters.closed.get(),
        events: counters.events.get(),
        pings: counters.pings.get(),
        first_error: counters.first_error.borrow().clone(),
        latency_micros,
    }
}

fn print_line<T: Serialize>(value: &T) {
    println!("{}", serde_json::to_string(value).expect("report serializes"));
}

/// Opens the sockets and prints `{"event":"ready",...}` once every socket connected or failed.
/// Then it handles `stats`, `latency` and `reset` commands on stdin until `stop` or end of input.
pub fn run_hold(args: HoldArgs) -> anyhow::Result<()> {
    crate::limits::raise_open_files_limit()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = LocalSet::new();
    local.block_on(&runtime, hold(args))
}

async fn hold(args: HoldArgs) -> anyhow::Result<()> {
    let counters = Rc::new(HoldCounters::default());
    if args.latency {
        *counters.latency_micros.borrow_mut() = vec![0; LATENCY_BUCKETS_MICROS + 1];
    }
    let gate = Rc::new(Semaphore::new(args.connect_concurrency));

    let indexes: Vec<usize> = (0..args.connections).collect();
    for chunk in indexes.chunks(args.per_task.max(1)) {
        let mut group = FuturesUnordered::new();
        for &index in chunk {
            let target = args.targets[index % args.targets.len()];
            let room = args
                .room_prefix
                .as_ref()
                .map(|prefix| format!("{prefix}{}", (index + args.room_offset) % args.rooms.max(1)));
            group.push(hold_socket(
                args.source,
                target,
                room,
                args.latency,
                counters.clone(),
                gate.clone(),
            ));
        }
        tokio::task::spawn_local(async move { while group.next().await.is_some() {} });
    }

    let total = args.connections as u64;
    while counters.connected.get() + counters.failed.get() < total {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    print_line(&hold_report("ready", &counters, false));

    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match line.trim() {
            "stats" => print_line(&hold_report("stats", &counters, false)),
            "latency" => print_line(&hold_report("latency", &counters, true)),
            "reset" => {
                counters.events.set(0);
                counters
                    .latency_micros
                    .borrow_mut()
                    .iter_mut()
                    .for_each(|count| *count = 0);
                print_line(&hold_report("reset", &counters, false));
            }
            "stop" => break,
            other => eprintln!("hold: unknown command {other:?}"),
        }
    }
    Ok(())
}

async fn hold_socket(
    source: IpAddr,
    target: SocketAddr,
    room: Option<String>,
    latency: bool,
    counters: Rc<HoldCounters>,
    gate: Rc<Semaphore>,
) {
    let permit = gate.acquire().await.expect("gate is never closed");
    let setup = tokio::time::timeout(SETUP_TIMEOUT, set_up_socket(source, target, room.as_deref())).await;
    drop(permit);

    let mut conn = match setup {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => return counters.record_failure(&error),
        Err(_) => return counters.record_failure(&anyhow::anyhow!("setup timed out after {SETUP_TIMEOUT:?}")),
    };
    counters.connected.set(counters.connected.get() + 1);

    if let Err(error) = receive_until_closed(&mut conn, latency, &counters).await {
        let mut first = counters.first_error.borrow_mut();
        if first.is_none() {
            *first = Some(format!("after connect: {error:#}"));
        }
    }
    counters.closed.set(counters.closed.get() + 1);
}

async fn set_up_socket(source: IpAddr, target: SocketAddr, room: Option<&str>) -> anyhow::Result<WsConn> {
    let mut conn = WsConn::connect(source, target).await?;
    conn.connect_namespace().await?;
    if let Some(room) = room {
        let ack = conn
            .emit_with_ack("join", &format!("{{\"room\":\"{room}\"}}"), 1)
            .await?;
        if !ack.contains("\"ok\":true") {
            bail!("join {room} was not acked with ok: {ack}");
        }
    }
    Ok(conn)
}

async fn receive_until_closed(conn: &mut WsConn, latency: bool, counters: &HoldCounters) -> anyhow::Result<()> {
    loop {
        let mut pings = 0u32;
        let mut websocket_pong: Option<Vec<u8>> = None;
        while let Some(frame) = conn.next_frame()? {
            match frame {
                Frame::Text(b"2") => pings += 1,
                Frame::Text(text) if text.starts_with(b"42") => {
                    counters.events.set(counters.events.get() + 1);
                    if latency && let Some(sent) = wire::send_time_nanos(text) {
                        counters.record_latency(sent);
                    }
                }
                Frame::Text(_) | Frame::Binary | Frame::Pong => {}
                Frame::Ping(payload) => websocket_pong = Some(payload.to_vec()),
                Frame::Close => return Ok(()),
            }
        }
        for _ in 0..pings {
            counters.pings.set(counters.pings.get() + 1);
            conn.send_text(b"3").await?;
        }
        if let Some(payload) = websocket_pong {
            conn.send_pong(&payload).await?;
        }
        if !conn.fill().await? {
            return Ok(());
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// publish

#[derive(Default, Serialize)]
struct PublishReport {
    event: &'static str,
    published: u64,
    acked: u64,
    rejected: u64,
    failed_sockets: u64,
    elapsed_secs: f64,
    first_error: Option<String>,
}

/// Publishes for the given duration and prints one `{"event":"published",...}` line.
pub fn run_publish(args: PublishArgs) -> anyhow::Result<()> {
    crate::limits::raise_open_files_limit()?;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let local = LocalSet::new();
    let report = local.block_on(&runtime, publish(args))?;
    print_line(&report);
    Ok(())
}

async fn publish(args: PublishArgs) -> anyhow::Result<PublishReport> {
    let mut conns = Vec::with_capacity(args.sockets);
    for _ in 0..args.sockets {
        let mut conn = WsConn::connect(args.source, args.target)
            .await
            .context("publisher connect")?;
        conn.connect_namespace().await.context("publisher namespace connect")?;
        conns.push(conn);
    }

    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(args.duration_secs);
    let per_socket_rate = args.rate as f64 / args.sockets as f64;
    let filler = "x".repeat(args.payload_bytes);
    let mut tasks = FuturesUnordered::new();
    for (index, conn) in conns.into_iter().enumerate() {
        let plan = PublishPlan {
            room_prefix: args.room_prefix.clone(),
            rooms: args.rooms.max(1),
            first_room: index,
            rate: per_socket_rate,
            window: args.window.max(1),
            filler: filler.clone(),
            start,
            deadline,
        };
        tasks.push(publish_on_socket(conn, plan));
    }

    let mut report = PublishReport {
        event: "published",
        ..Default::default()
    };
    while let Some(result) = tasks.next().await {
        match result {
            Ok(counts) => {
                report.published += counts.published;
                report.acked += counts.acked;
                report.rejected += counts.rejected;
            }
            Err(error) => {
                report.failed_sockets += 1;
                report.first_error.get_or_insert_with(|| format!("{error:#}"));
            }
        }
    }
    report.elapsed_secs = start.elapsed().as_secs_f64();
    Ok(report)
}

struct PublishPlan {
    room_prefix: String,
    rooms: usize,
    first_room: usize,
    /// Publishes per second on this socket; 0 means closed loop.
    rate: f64,
    window: usize,
    filler: String,
    start: Instant,
    deadline: Instant,
}

#[derive(Default)]
struct PublishCounts {
    published: u64,
    acked: u64,
    rejected: u64,
}

/// Time allowed after the deadline for the last acks.
const ACK_GRACE: Duration = Duration::from_secs(5);

async fn publish_on_socket(mut conn: WsConn, plan: PublishPlan) -> anyhow::Result<PublishCounts> {
    let mut counts = PublishCounts::default();
    let mut out = Vec::with_capacity(64 * 1024);
    let mut next_room = plan.first_room;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);

    loop {
        let now = Instant::now();
        let in_flight = counts.published - counts.acked - counts.rejected;
        let sending = now < plan.deadline;
        if !sending && (in_flight == 0 || now > plan.deadline + ACK_GRACE) {
            break;
        }

        // How many to send now: the fixed-rate schedule, or refill the window.
        let due = if !sending {
            0
        } else if plan.rate > 0.0 {
            let scheduled = (now.duration_since(plan.start).as_secs_f64() * plan.rate) as u64;
            scheduled.saturating_sub(counts.published)
        } else {
            (plan.window as u64).saturating_sub(in_flight)
        };
        out.clear();
        for _ in 0..due {
            counts.published += 1;
            let room = next_room % plan.rooms;
            next_room += 1;
            let packet = format!(
                "42{}[\"publish\",{{\"room\":\"{}{}\",\"event\":\"tick\",\"data\":{{\"t\":{},\"s\":{},\"p\":\"{}\"}}}}]",
                counts.published,
                plan.room_prefix,
                room,
                wire::monotonic_nanos(),
                counts.published,
                plan.filler
            );
            wire::encode_text_frame(&mut out, packet.as_bytes());
        }
        if !out.is_empty() {
            conn.send_raw(&out).await?;
        }

        let mut pings = 0u32;
        while let Some(frame) = conn.next_frame()? {
            match frame {
                Frame::Text(b"2") => pings += 1,
                Frame::Text(text) if wire::ack_id(text).is_some() => {
                    if text.windows(9).any(|window| window == b"\"ok\":true") {
                        counts.acked += 1;
                    } else {
                        counts.rejected += 1;
                    }
                }
                Frame::Close => bail!("server closed the publisher socket"),
                _ => {}
            }
        }
        for _ in 0..pings {
            conn.send_text(b"3").await?;
        }

        if plan.rate > 0.0 && sending {
            tokio::select! {
                more = conn.fill() => if !more? { bail!("publisher socket closed") },
                _ = tick.tick() => {}
            }
        } else {
            let wait = tokio::time::timeout(Duration::from_millis(100), conn.fill()).await;
            if let Ok(more) = wait
                && !more?
            {
                bail!("publisher socket closed");
            }
        }
    }
    Ok(counts)
}
