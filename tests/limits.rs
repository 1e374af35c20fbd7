//! Resource bounds end to end (issue 8, items 3 and 6): the real gateway binary, real sockets.
//! Memory across many large unfinished frames, idle connections that must give way to a new
//! sender, bytes outside frames that must not keep a connection alive, the per-source limit,
//! and a flood of idle admin connections.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_tests::*;

const PLAIN: &str = "[[listener]]\nname = \"mllp\"\nbind = \"127.0.0.1:0\"\n";

/// A TCP connection to `to` from the loopback address `from` (all of 127.0.0.0/8 is
/// loopback on Linux), so one test can play several source hosts.
fn connect_from(from: Ipv4Addr, to: SocketAddr) -> TcpStream {
    let SocketAddr::V4(to) = to else { panic!("IPv4 only") };
    let sockaddr = |ip: Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // Take ownership first so the descriptor is closed on any panic below.
        let stream = TcpStream::from_raw_fd(fd);
        // A small send buffer: a blocked sender then parks little data in the kernel.
        let sndbuf: libc::c_int = 64 * 1024;
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            &sndbuf as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
        let local = sockaddr(from, 0);
        assert_eq!(
            libc::bind(fd, &local as *const _ as *const libc::sockaddr, len),
            0,
            "bind {from}: {}",
            std::io::Error::last_os_error()
        );
        let remote = sockaddr(*to.ip(), to.port());
        assert_eq!(
            libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len),
            0,
            "connect from {from}: {}",
            std::io::Error::last_os_error()
        );
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }
}

fn mllp_from(from: Ipv4Addr, to: SocketAddr) -> Mllp {
    Mllp::over(Box::new(connect_from(from, to)))
}

/// A field of `/proc/<pid>/status` in KiB (`VmRSS`, `VmHWM`).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} in /proc/{pid}/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// File descriptors the process has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count()
}

/// The start of an ADT whose frame never ends: `<VT>`, a header, then `len` filler bytes.
fn unfinished_frame(control_id: &str, len: usize) -> Vec<u8> {
    let mut wire = vec![0x0b];
    wire.extend_from_slice(
        format!("MSH|^~\\&|EPIC|HOSP|GW|CLOUD|20260101120000||ADT^A01|{control_id}|P|2.5\rNTE|1||").as_bytes(),
    );
    wire.resize(wire.len() + len, b'x');
    wire
}

// ---------------------------------------------------------------- item 3: memory

/// 120 connections (from 8 source addresses) each send most of an 8 MB frame (below the
/// 8 MiB frame limit) and never finish it. Before the in-flight budget every one was buffered
/// (RSS 1.1 GB); now the gateway stops reading the ones the budget cannot hold, its peak RSS
/// stays far below the unit's MemoryMax=256M, a normal message on a fresh connection is still
/// answered, and the held bytes are released when the frames time out.
#[test]
fn many_unfinished_large_frames_stay_inside_the_memory_bound() {
    const CONNECTIONS: usize = 120;
    const FRAME: usize = 8_000_000;
    const CHUNK: usize = 64 * 1024;
    let setup = Setup::new(&format!("{PLAIN}frame_timeout_secs = 15\n"));
    let gw = setup.start();
    let pid = gw.child.id();
    let addr = gw.addr();
    let before_kib = proc_status_kib(pid, "VmRSS");

    let wire = Arc::new(unfinished_frame("BIG", FRAME));
    let sent = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = (0..CONNECTIONS)
        .map(|i| {
            let (wire, sent, finished, stop) = (wire.clone(), sent.clone(), finished.clone(), stop.clone());
            let from = Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8);
            std::thread::spawn(move || {
                let mut s = connect_from(from, addr);
                s.set_write_timeout(Some(Duration::from_millis(200))).unwrap();
                let mut at = 0;
                while at < wire.len() && !stop.load(Ordering::Relaxed) {
                    let end = (at + CHUNK).min(wire.len());
                    match s.write(&wire[at..end]) {
                        Ok(0) => break,
                        Ok(n) => {
                            at += n;
                            sent.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => break,
                    }
                }
                finished.fetch_add(1, Ordering::Relaxed);
                // Hold the connection (and its unfinished frame) open until told to stop.
                while !stop.load(Ordering::Relaxed) {
                    std::thread::park_timeout(Duration::from_millis(50));
                }
            })
        })
        .collect();

    // Wait until the senders are done or the gateway stopped taking bytes (back-pressure):
    // no progress for a whole second. Bounded at 60 s.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (mut last, mut still_since) = (0, Instant::now());
    while finished.load(Ordering::Relaxed) < CONNECTIONS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        let now = sent.load(Ordering::Relaxed);
        if now != last {
            (last, still_since) = (now, Instant::now());
        } else if still_since.elapsed() >= Duration::from_secs(1) && now > 0 {
            break;
        }
    }
    let peak_kib = proc_status_kib(pid, "VmHWM");
    let accepted = sent.load(Ordering::Relaxed);
    eprintln!(
        "RSS before {} MiB, peak {} MiB; {} MB sent by {} senders ({} finished)",
        before_kib / 1024,
        peak_kib / 1024,
        accepted / 1_000_000,
        CONNECTIONS,
        finished.load(Ordering::Relaxed)
    );
    assert!(
        peak_kib < 200 * 1024,
        "peak RSS {} MiB with {CONNECTIONS} unfinished {FRAME}-byte frames",
        peak_kib / 1024
    );
    // The gateway did reach the budget (senders had to wait), and still stays below the bound.
    wait_metric(&gw, "gateway_inflight_frame_waits_total", 1.0, WAIT);
    let peak_kib = proc_status_kib(pid, "VmHWM");
    assert!(
        peak_kib < 200 * 1024,
        "peak RSS {} MiB with {CONNECTIONS} unfinished {FRAME}-byte frames",
        peak_kib / 1024
    );

    // The budget is in use and visible; a normal sender is not held up by it.
    let budget = gw.metric("gateway_inflight_frame_budget_bytes");
    let held = gw.metric("gateway_inflight_frame_bytes");
    assert!(held > 0.0 && held <= budget, "held {held} of {budget}");
    let started = Instant::now();
    let mut fresh = gw.connect();
    assert_eq!(msa(&fresh.call(&adt("SMALL1"))), ("AA".into(), "SMALL1".into()));
    assert!(started.elapsed() < Duration::from_secs(5), "a small message waited {:?}", started.elapsed());

    // The senders go away; every held byte is released by the frame timeout at the latest.
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    wait_for("in-flight bytes back to 0", Duration::from_secs(30), || {
        (gw.metric("gateway_inflight_frame_bytes") == 0.0).then_some(())
    });
    assert_eq!(msa(&fresh.call(&adt("SMALL2"))), ("AA".into(), "SMALL2".into()));
    // Nothing is left starved: a large message goes through again.
    let mut large = adt("LARGE1");
    large.extend_from_slice(b"NTE|1||");
    large.resize(large.len() + 3_000_000, b'x');
    large.push(b'\r');
    assert_eq!(msa(&fresh.call(&large)), ("AA".into(), "LARGE1".into()));
    let log = gw.terminate_log();
    let warned = log.lines().filter(|l| l.contains("in-flight frame budget")).count();
    assert!((1..=2).contains(&warned), "one rate-limited WARN, not one per wait: {warned}\n{log}");
}

// ---------------------------------------------------------------- item 6: fair connections

/// All slots held by idle connections: a new sender is still served at once, the connection
/// idle the longest is closed for it. Connections in the middle of a frame are never cut; with
/// no idle connection to close, a newcomer is refused.
#[test]
fn idle_connections_cannot_lock_out_a_new_sender() {
    let setup = Setup::new(&format!("{PLAIN}max_connections = 3\n"));
    let gw = setup.start();
    let mut idle: Vec<Mllp> = (0..3).map(|_| gw.connect()).collect();
    for (i, c) in idle.iter_mut().enumerate() {
        assert_eq!(msa(&c.call(&adt(&format!("IDLE{i}")))).0, "AA");
    }
    let started = Instant::now();
    let mut newcomer = gw.connect();
    assert_eq!(msa(&newcomer.call(&adt("NEW1"))), ("AA".into(), "NEW1".into()));
    assert!(started.elapsed() < Duration::from_secs(2), "the new sender waited {:?}", started.elapsed());
    assert!(idle[0].closed_by_peer(), "the connection idle the longest gave way");
    assert_eq!(gw.metric("gateway_connections_evicted_total"), 1.0);
    // The others are untouched.
    assert_eq!(msa(&idle[1].call(&adt("IDLE1B"))).0, "AA");

    // Now every slot is in the middle of a frame: nothing may be cut, the newcomer is refused.
    let mut busy = [idle.remove(1), idle.remove(1), newcomer];
    let wire: Vec<Vec<u8>> = (0..3)
        .map(|i| {
            let mut w = Vec::new();
            gateway::mllp::codec::encode(&adt(&format!("BUSY{i}")), &mut w);
            w
        })
        .collect();
    for (c, w) in busy.iter_mut().zip(&wire) {
        c.send_raw(&w[..w.len() / 2]);
    }
    wait_metric(&gw, "gateway_connections_in_frame", 3.0, WAIT);
    let refused_before = gw.metric("gateway_connections_refused_total{reason=\"limit\"}");
    let mut late = gw.connect();
    assert!(late.closed_by_peer(), "no idle slot: refused");
    assert_eq!(gw.metric("gateway_connections_refused_total{reason=\"limit\"}"), refused_before + 1.0);
    for (i, (c, w)) in busy.iter_mut().zip(&wire).enumerate() {
        c.send_raw(&w[w.len() / 2..]);
        assert_eq!(msa(&c.read_ack().expect("busy connection kept")), ("AA".into(), format!("BUSY{i}")));
    }
    assert_eq!(gw.metric("gateway_connections_evicted_total"), 1.0, "no busy connection was cut");
    assert_eq!(journal_counts(&setup.db_path()).len(), 8);
}

/// A connection that sends a byte outside any frame every 200 ms is still closed when
/// `idle_timeout_secs` has passed since its last complete frame.
#[test]
fn bytes_outside_frames_do_not_keep_a_connection_alive() {
    let setup = Setup::new(&format!("{PLAIN}idle_timeout_secs = 2\n"));
    let gw = setup.start();
    let mut s = connect_from(Ipv4Addr::LOCALHOST, gw.addr());
    let mut wire = Vec::new();
    gateway::mllp::codec::encode(&adt("KEEP1"), &mut wire);
    s.write_all(&wire).unwrap();
    let mut c = Mllp::over(Box::new(s.try_clone().unwrap()));
    assert_eq!(msa(&c.read_ack().unwrap()).0, "AA");
    let last_frame = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let closed_after = loop {
        assert!(last_frame.elapsed() < Duration::from_secs(10), "still open after 10 s of stray bytes");
        let mut byte = [0u8; 1];
        match s.read(&mut byte) {
            Ok(0) => break last_frame.elapsed(),
            Ok(_) => panic!("nothing to answer"),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if s.write_all(b"\r").is_err() {
                    break last_frame.elapsed();
                }
            }
            Err(_) => break last_frame.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
        "closed after {closed_after:?}"
    );
    assert_eq!(gw.metric("gateway_idle_timeouts_total"), 1.0);
}

/// One source may hold `max_connections_per_source`; past it, its own connection idle the
/// longest gives way, and with none idle it is refused (counted, one WARN line). Other
/// sources are not affected.
#[test]
fn per_source_connection_limit() {
    let setup = Setup::new(&format!("{PLAIN}max_connections_per_source = 2\n"));
    let gw = setup.start();
    let addr = gw.addr();
    let a = Ipv4Addr::new(127, 0, 0, 2);
    let mut first = mllp_from(a, addr);
    let mut second = mllp_from(a, addr);
    assert_eq!(msa(&first.call(&adt("PS1"))).0, "AA");
    assert_eq!(msa(&second.call(&adt("PS2"))).0, "AA");
    // Both idle: a third from the same source replaces the one idle the longest.
    let mut third = mllp_from(a, addr);
    assert_eq!(msa(&third.call(&adt("PS3"))).0, "AA");
    assert!(first.closed_by_peer());
    // Both busy (a frame half sent): more from that source are refused.
    second.send_raw(&unfinished_frame("PSB1", 10));
    third.send_raw(&unfinished_frame("PSB2", 10));
    wait_metric(&gw, "gateway_connections_in_frame", 2.0, WAIT);
    for _ in 0..5 {
        let mut refused = mllp_from(a, addr);
        assert!(refused.closed_by_peer(), "over the per-source limit");
    }
    assert_eq!(gw.metric("gateway_connections_refused_total{reason=\"per_source\"}"), 5.0);
    // Another source is served.
    let mut other = mllp_from(Ipv4Addr::new(127, 0, 0, 3), addr);
    assert_eq!(msa(&other.call(&adt("PS4"))).0, "AA");
    // Shutdown waits for frames in progress: end them first.
    drop((second, third));
    let log = gw.terminate_log();
    let warned = log.lines().filter(|l| l.contains("WARN") && l.contains("per-source")).count();
    assert_eq!(warned, 1, "one rate-limited WARN for 5 refusals:\n{log}");
}

/// 300 idle connections to the admin endpoint: the gateway holds at most its cap of them
/// (file descriptors stay bounded), MLLP keeps accepting, the idle ones are closed by the
/// header-read timeout and `/healthz` answers again; oversized request heads are refused.
#[test]
fn admin_flood_is_capped_and_mllp_keeps_working() {
    let setup = Setup::new(PLAIN);
    let gw = setup.start();
    let pid = gw.child.id();
    let admin = gw.admin.unwrap();
    let fds_before = open_fds(pid);
    let flood: Vec<TcpStream> = (0..300).map(|_| TcpStream::connect(admin).unwrap()).collect();
    let mut c = gw.connect();
    assert_eq!(msa(&c.call(&adt("FLOOD1"))).0, "AA", "MLLP still accepts");
    // Until the admin answers again (its idle connections timed out), count its descriptors.
    let mut most = 0;
    let status = wait_for("/healthz answering", Duration::from_secs(20), || {
        most = most.max(open_fds(pid));
        try_get(admin, "/healthz")
    });
    assert_eq!(status, 200);
    assert!(most <= fds_before + 40, "{most} descriptors open during the flood (before it: {fds_before})");
    // The flood was accepted before the answering request: all but the cap were refused.
    assert!(gw.metric("gateway_connections_refused_total{reason=\"admin_limit\"}") >= 284.0);
    assert_eq!(msa(&c.call(&adt("FLOOD2"))).0, "AA");
    drop(flood);
    // An admin connection that sends nothing is closed after the header-read timeout (5 s).
    let mut idle = TcpStream::connect(admin).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    assert!(matches!(idle.read(&mut buf), Ok(0) | Err(_)), "idle admin connection closed");
    let after = started.elapsed();
    assert!(after >= Duration::from_secs(4) && after < Duration::from_secs(10), "closed after {after:?}");
    // A request head over the size bound is refused, not buffered.
    let mut big = TcpStream::connect(admin).unwrap();
    big.set_read_timeout(Some(WAIT)).unwrap();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n", "a".repeat(64 * 1024));
    let _ = big.write_all(head.as_bytes());
    let mut answer = String::new();
    let _ = big.read_to_string(&mut answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert_eq!(try_get(admin, "/healthz"), Some(200));
}

/// `GET path` over HTTP/1.0; the status, or `None` if the connection was refused or closed.
fn try_get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}
