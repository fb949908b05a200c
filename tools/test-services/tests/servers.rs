//! The private servers start, answer on their port, and leave nothing behind when stopped.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::TcpStream;

use sso_test_services::{Postgres, Redis};

fn redis_ping(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.write_all(b"PING\r\n")?;
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn process_running(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[test]
fn a_dropped_redis_stops_and_its_folder_goes() {
    let redis = Redis::start(&[]).unwrap();
    let port = redis.port;
    assert_eq!(redis_ping(port).unwrap(), "+PONG\r\n");
    drop(redis);
    assert!(!process_running(port), "nothing listens after the drop");
}

#[test]
fn a_killed_redis_can_be_restarted_on_its_port_with_its_data() {
    let mut redis = Redis::start(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    let port = redis.port;
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"SET k v\r\n").unwrap();
    let mut buf = [0u8; 16];
    let _ = s.read(&mut buf).unwrap();
    redis.kill();
    assert!(!process_running(port));
    redis.restart().unwrap();
    assert_eq!(redis.port, port);
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.write_all(b"GET k\r\n").unwrap();
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"$1\r\nv\r\n");
}

#[test]
fn a_private_postgres_accepts_connections_and_stops_when_dropped() {
    let pg = Postgres::start().unwrap();
    let port = pg.port;
    assert!(process_running(port));
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    drop(pg);
    assert!(!process_running(port));
}

#[test]
fn a_missing_binary_names_its_package() {
    let e = sso_test_services::binary("no-such-server-binary", "no-such-package").unwrap_err();
    assert_eq!(
        e.to_string(),
        "`no-such-server-binary` not found: the tests start their own server; install Debian's package `no-such-package` (apt-get install no-such-package)"
    );
}

/// A test binary whose server is missing ends with one line naming the package (run as a
/// child: `or_exit` ends the process).
#[test]
fn a_missing_server_ends_the_test_run_with_one_line() {
    match std::env::var("SSO_TEST_SERVICES_CHILD").as_deref() {
        Ok("redis") => {
            sso_test_services::redis_url();
            return;
        }
        Ok(_) => {
            use sso_test_services::OrExit;
            sso_test_services::binary("no-such-server-binary", "no-such-package").or_exit();
            return;
        }
        Err(_) => {}
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "a_missing_server_ends_the_test_run_with_one_line", "-q"])
        .env("SSO_TEST_SERVICES_CHILD", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(101));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().collect::<Vec<_>>(),
        [
            "error: `no-such-server-binary` not found: the tests start their own server; install Debian's package `no-such-package` (apt-get install no-such-package)"
        ]
    );
}
