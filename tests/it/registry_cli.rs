//! `srvd serve`'s registry flags, wrong: the real binary refuses each with one line naming the
//! flag, before it binds an address or connects to etcd.

use std::io::ErrorKind;
use std::net::{TcpListener, UdpSocket};

use crate::support::srvd::run_binary_expecting_failure;

/// An address held on both transports (binding it fails) and a stand-in etcd endpoint that
/// records whether anyone connected.
struct Traps {
    listen: String,
    etcd: String,
    _busy_tcp: TcpListener,
    _busy_udp: UdpSocket,
    etcd_listener: TcpListener,
}

impl Traps {
    fn new() -> Self {
        let busy_tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = busy_tcp.local_addr().unwrap().port();
        let busy_udp = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let etcd_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        etcd_listener.set_nonblocking(true).unwrap();
        Self {
            listen: format!("127.0.0.1:{port}"),
            etcd: format!("http://{}", etcd_listener.local_addr().unwrap()),
            _busy_tcp: busy_tcp,
            _busy_udp: busy_udp,
            etcd_listener,
        }
    }

    fn etcd_was_contacted(&self) -> bool {
        match self.etcd_listener.accept() {
            Ok(_) => true,
            Err(e) if e.kind() == ErrorKind::WouldBlock => false,
            Err(e) => panic!("accept: {e}"),
        }
    }
}

#[test]
fn wrong_registry_flags_stop_the_start_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    // (arguments, with ETCD for the trap endpoint; what the line must contain)
    let cases: &[(&[&str], &[&str])] = &[
        (&["--registry", "/services"], &["--registry", "--etcd"]),
        (
            &["--registry-zone", "reg.test", "--registry-ttl", "5s"],
            &["--registry-zone", "--etcd"],
        ),
        (
            &["--etcd", "ETCD", "--registry-zone", "reg.test"],
            &["--registry-zone", "--registry PREFIX"],
        ),
        (
            &["--etcd", "ETCD", "--registry-ttl", "5s"],
            &["--registry-ttl", "--registry PREFIX"],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--registry",
                "/services",
                "--registry-ttl",
                "5q",
            ],
            &["--registry-ttl", "\"5q\""],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--registry",
                "/services",
                "--registry-ttl=-5s",
            ],
            &["--registry-ttl"],
        ),
        (
            &["--etcd", "ETCD", "--registry", "/skydns/x"],
            &["\"/skydns\"", "\"/skydns/x\"", "overlap", "--etcd-prefix"],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--etcd-prefix",
                "/services/dns",
                "--registry",
                "/services",
            ],
            &["\"/services/dns\"", "\"/services\"", "overlap"],
        ),
        (
            &["--etcd", "ETCD", "--registry", "/a", "--registry", "/a/b"],
            &["\"/a\"", "\"/a/b\"", "overlap", "--registry"],
        ),
        (
            &["--etcd", "ETCD", "--registry", "services"],
            &["--registry", "\"services\"", "/services"],
        ),
        (
            &["--etcd", "ETCD", "--registry", "/"],
            &["--registry", "\"/\""],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--registry",
                "/services",
                "--registry-zone",
                "local",
            ],
            &["--registry-zone", "local."],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--registry",
                "/services",
                "--registry-zone",
                "a..b",
            ],
            &["--registry-zone", "a..b"],
        ),
        (
            &[
                "--etcd",
                "ETCD",
                "--registry",
                "/services",
                "--registry-ttl",
                "600000h",
            ],
            &["--registry-ttl", "2147483647"],
        ),
        (&["--etcd", "ETCD", "--zone", "a..b"], &["--zone", "a..b"]),
    ];
    let mut failures = Vec::new();
    for (args, wanted) in cases {
        let traps = Traps::new();
        let mut argv = vec!["--listen", traps.listen.as_str()];
        argv.extend(
            args.iter()
                .map(|a| if *a == "ETCD" { &traps.etcd } else { *a }),
        );
        let (code, stderr) = run_binary_expecting_failure(dir.path(), &argv);
        let lines: Vec<&str> = stderr.lines().collect();
        let ok = code != 0
            && lines.len() == 1
            && lines[0].starts_with("srvd: ")
            && wanted.iter().all(|w| lines[0].contains(w))
            && !stderr.contains("in use")
            && !traps.etcd_was_contacted();
        if !ok {
            failures.push(format!(
                "{args:?}: exit {code}, etcd contacted: {}, stderr {stderr:?}, wanted one line with {wanted:?}",
                traps.etcd_was_contacted()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
