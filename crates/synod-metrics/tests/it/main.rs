//! synod-metrics integration test: the real exporter on loopback, scraped over HTTP.
//!
//! The exporter is the process's one global recorder, so everything that
//! touches it lives in one test function.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use synod_metrics::{
    install, join_digest, names, scrape, scrape_with_timeout, Check, Health, MetricsError, ScrapeError,
};

/// Long enough that only a hang reaches it; no assertion depends on it.
const PATIENCE: Duration = Duration::from_secs(30);

fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn the_exporter_serves_what_was_recorded() {
    let addr = free_port();
    let healthy = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = healthy.clone();
    let _exporter = install(addr, move || {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Health { healthy: Check::Pass, ready: Check::Pass }
        } else {
            Health { healthy: Check::fail("no leader"), ready: Check::fail("applied 1 of 2") }
        }
    })
    .unwrap();

    metrics::counter!(names::PROPOSALS).increment(3);
    metrics::counter!(names::SLOTS_COMMITTED).increment(2);
    metrics::gauge!(names::IS_LEADER).set(1.0);
    metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => "2").set(1.0);
    metrics::gauge!(names::PEER_CONNECTED, names::LABEL_PEER => "3").set(0.0);
    metrics::histogram!(names::COMMIT_LATENCY).record(0.003);
    metrics::histogram!(names::COMMIT_LATENCY).record(0.5);
    let digest = 0xdead_beef_0123_4567_u64;
    synod_metrics::set_state_digest(digest);

    // The listener thread starts asynchronously: retry until it answers.
    let deadline = Instant::now() + PATIENCE;
    let scraped = loop {
        match scrape(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                eprintln!("not yet: {e}");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("exporter never answered: {e}"),
        }
    };
    assert_eq!(scraped.get(names::PROPOSALS), Some(3.0));
    assert_eq!(scraped.get(names::SLOTS_COMMITTED), Some(2.0));
    assert_eq!(scraped.get(names::IS_LEADER), Some(1.0));
    assert_eq!(scraped.get_labeled(names::PEER_CONNECTED, names::LABEL_PEER, "2"), Some(1.0));
    assert_eq!(scraped.get_labeled(names::PEER_CONNECTED, names::LABEL_PEER, "3"), Some(0.0));
    // Every counter is exported from the start; a gauge once it is set.
    assert_eq!(scraped.get(names::ELECTIONS), Some(0.0), "a counter never incremented");
    assert_eq!(scraped.get(names::CLIENT_BUSY), Some(0.0), "a counter never incremented");
    assert_eq!(scraped.get(names::CLIENT_CONNECTIONS), None, "a gauge never set");
    // Histograms are exported with buckets, so they can be aggregated across replicas.
    let count = format!("{}_count", names::COMMIT_LATENCY);
    let bucket = format!("{}_bucket", names::COMMIT_LATENCY);
    assert_eq!(scraped.get(&count), Some(2.0));
    assert_eq!(scraped.get_labeled(&bucket, "le", "0.005"), Some(1.0));
    assert_eq!(scraped.get_labeled(&bucket, "le", "+Inf"), Some(2.0));
    let hi = scraped.get(names::STATE_DIGEST_HI).unwrap();
    let lo = scraped.get(names::STATE_DIGEST_LO).unwrap();
    assert_eq!(join_digest(hi, lo), Some(digest));

    // Values move between scrapes.
    metrics::counter!(names::PROPOSALS).increment(1);
    assert_eq!(scrape(addr).unwrap().get(names::PROPOSALS), Some(4.0));

    // The health endpoints answer from the callback, on the same listener.
    assert_eq!(get(addr, "/health"), (503, r#"{"healthy":false,"reason":"no leader"}"#.to_owned()));
    assert_eq!(get(addr, "/readyz"), (503, r#"{"ready":false,"reason":"applied 1 of 2"}"#.to_owned()));
    healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    assert_eq!(get(addr, "/health"), (200, r#"{"healthy":true}"#.to_owned()));
    assert_eq!(get(addr, "/readyz"), (200, r#"{"ready":true}"#.to_owned()));
    assert_eq!(get(addr, "/elsewhere").0, 404);

    // A second exporter in the same process is refused, not a panic.
    assert!(matches!(install(free_port(), || Health::down("test")), Err(MetricsError::Build { .. })));
    // A taken port is an error too.
    assert!(matches!(install(addr, || Health::down("test")), Err(MetricsError::Bind { .. })));

    // Scraping a port nobody listens on fails cleanly.
    let nobody = free_port();
    assert!(matches!(scrape_with_timeout(nobody, Duration::from_secs(1)), Err(ScrapeError::Connect { .. })));
}

/// `GET path` over plain HTTP/1.1: the status code and the body, trimmed.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(PATIENCE)).unwrap();
    conn.write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes()).unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b).trim().to_owned();
    (status, body)
}

#[test]
fn a_server_that_is_not_prometheus_is_an_error() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        use std::io::{Read, Write};
        for answer in [&b"HTTP/1.0 500 Oops\r\n\r\n"[..], b"HTTP/1.0 200 OK\r\n\r\nnot metrics at all\n"] {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf).unwrap();
            conn.write_all(answer).unwrap();
        }
    });
    assert!(matches!(scrape(addr), Err(ScrapeError::Status { .. })));
    assert!(matches!(scrape(addr), Err(ScrapeError::Parse { .. })));
    server.join().unwrap();
}

#[test]
fn digests_split_and_join() {
    for d in [0, 1, u64::MAX, 0x8000_0000_0000_0001] {
        let (hi, lo) = synod_metrics::split_digest(d);
        assert_eq!(join_digest(hi, lo), Some(d));
    }
    assert_eq!(join_digest(-1.0, 0.0), None);
    assert_eq!(join_digest(0.5, 0.0), None);
    assert_eq!(join_digest(4_294_967_296.0, 0.0), None);
}
