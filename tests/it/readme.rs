//! The README's commands, run as written against the srvd binary (only ports differ: the tests
//! pick free ones).

use std::process::Command;
use std::time::Duration;

use crate::support::dns::dig;
use crate::support::shipped_zones;
use crate::support::srvd::spawn_binary;

/// The README, as committed.
fn readme() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap()
}

/// The text under the `## heading` of `readme`, up to the next `## `.
fn section<'r>(readme: &'r str, heading: &str) -> &'r str {
    readme
        .split(&format!("## {heading}"))
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .unwrap_or_else(|| panic!("the README has a {heading:?} section"))
}

#[test]
fn every_dig_command_in_the_readme_gets_an_authoritative_answer() {
    let readme = readme();
    let try_it = section(&readme, "Try it");
    let commands: Vec<&str> = try_it
        .lines()
        .filter(|l| l.starts_with("dig @127.0.0.1 -p 1053 "))
        .collect();
    assert!(
        commands.len() >= 4,
        "the README shows SRV, TXT, A and PTR examples"
    );
    let process = spawn_binary(&shipped_zones(), &["--zones-dir", "."]);
    let port = process.addr.port().to_string();
    for command in commands {
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "1053" { port.as_str() } else { a })
            .collect();
        let out = dig(&args);
        assert!(out.contains("status: NOERROR"), "{command}\n{out}");
        assert!(out.contains("flags: qr aa"), "{command}\n{out}");
        assert!(!out.contains("ANSWER: 0,"), "{command}\n{out}");
    }
}

/// The README's etcd walk-through, run as written against a test etcd (its URL replaces
/// `http://127.0.0.1:22379`) and the srvd binary started from the repository root as
/// `scripts/serve --etcd URL` starts it.
#[tokio::test]
async fn the_readme_etcd_example_answers_as_the_readme_says() {
    let readme = readme();
    let section = section(&readme, "Services in etcd");
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let serve = section
        .lines()
        .find(|l| l.starts_with("scripts/serve "))
        .expect("a serve command");
    let serve_args: Vec<String> = serve
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace("http://127.0.0.1:22379", &etcd.url))
        .collect();
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let process = spawn_binary(root, &serve_args);
    let port = process.addr.port().to_string();

    let put = section
        .lines()
        .find(|l| l.starts_with("etcdctl "))
        .expect("an etcdctl put");
    let output = Command::new("sh")
        .arg("-c")
        .arg(put.replace("http://127.0.0.1:22379", &etcd.url))
        .output()
        .expect("etcdctl is installed (scripts/install-deps)");
    assert!(
        output.status.success(),
        "{put}: {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let dig_command = section
        .lines()
        .find(|l| l.starts_with("dig "))
        .expect("a dig command");
    let args: Vec<&str> = dig_command
        .split_whitespace()
        .skip(1)
        .map(|a| if a == "1053" { port.as_str() } else { a })
        .collect();
    let out = crate::support::eventually(
        std::time::Duration::from_secs(5),
        "the put is answered",
        || {
            let args = args.clone();
            async move {
                let out = dig(&args);
                out.contains("ANSWER: 1,").then_some(out)
            }
        },
    )
    .await;
    assert!(out.contains("flags: qr aa"), "{out}");
    assert!(
        out.contains("_http._tcp.backend.service.local. 300 IN SRV 10 100 8080 x1._http._tcp.backend.service.local."),
        "{out}"
    );
    assert!(
        out.contains("x1._http._tcp.backend.service.local. 300 IN A 10.0.0.1"),
        "{out}"
    );
}

/// The README's `srvd resolve` commands, with the test server's address for 127.0.0.1:1053.
#[tokio::test]
async fn the_readme_resolve_commands_print_the_records() {
    let readme = readme();
    let commands: Vec<&str> = section(&readme, "Resolving services from programs")
        .lines()
        .filter(|l| l.starts_with("cargo run --release --bin srvd -- resolve "))
        .collect();
    assert_eq!(commands.len(), 2, "plain and --json");
    let server = crate::support::srvd::TestServer::start(&shipped_zones()).await;
    for command in commands {
        let args: Vec<String> = command
            .split(" -- ")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .map(|a| a.replace("127.0.0.1:1053", &server.addr.to_string()))
            .collect();
        let output = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_srvd"))
                .args(&args)
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert!(output.status.success(), "{command}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        if command.ends_with("--json") {
            let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
            assert_eq!(json.as_array().unwrap().len(), 3, "{stdout}");
        } else {
            assert_eq!(stdout.lines().count(), 3, "{stdout}");
            assert!(
                stdout.contains("10 60 8080 inst0._http._tcp.web.service.local. 10.0.0.1,fd00::1"),
                "{stdout}"
            );
        }
    }
}

/// Processes the registry walk-through starts in the background, killed by PID when dropped.
struct Jobs(Vec<std::process::Child>);

impl Drop for Jobs {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The answer lines of `dig` output (whitespace collapsed) for `rtype`, without their TTLs,
/// each TTL checked to be at most `max_ttl`.
fn records(out: &str, rtype: &str, max_ttl: u32) -> Vec<String> {
    out.lines()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let fields: Vec<&str> = l.split(' ').collect();
            (fields.len() > 4 && fields[2] == "IN" && fields[3] == rtype).then(|| {
                let ttl: u32 = fields[1].parse().unwrap();
                assert!(ttl <= max_ttl, "TTL above {max_ttl}: {l}");
                format!("{} {}", fields[0], fields[4..].join(" "))
            })
        })
        .collect()
}

/// A free loopback TCP port (for the walk-through's HTTP servers).
fn free_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port().to_string()
}

/// The README's service-registry loop, run line by line as written: its etcd URL, DNS port, HTTP
/// ports and `/tmp` directories are replaced by the test's, `scripts/serve` runs the binary as
/// `scripts/serve` would, a trailing `&` starts a background job and `kill %N` sends SIGTERM to
/// job N. Each query's expected result is the README's numbered list after the block.
#[tokio::test]
async fn the_readme_registry_loop_works_as_written() {
    let readme = readme();
    let section = section(&readme, "The service registry");
    let block = section
        .split("The whole loop on one machine")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the loop's shell block");
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    let (http1, http2) = (free_port(), free_port());
    let mut serve: Option<crate::support::srvd::SrvdProcess> = None;
    let mut jobs = Jobs(Vec::new());
    let mut queries = 0;
    for line in block
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let port = serve.as_ref().map(|s| s.addr.port().to_string());
        let line = line
            .replace("http://127.0.0.1:22379", &etcd.url)
            .replace(
                "127.0.0.1:1053",
                &format!("127.0.0.1:{}", port.as_deref().unwrap_or("")),
            )
            .replace(
                " -p 1053 ",
                &format!(" -p {} ", port.as_deref().unwrap_or("")),
            )
            .replace("8081", &http1)
            .replace("8082", &http2)
            .replace("/tmp/", &format!("{}/", tmp.path().display()));
        let (line, background) = match line.strip_suffix(" &") {
            Some(l) => (l.to_string(), true),
            None => (line, false),
        };
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        let srvd_args: Option<Vec<String>> = line
            .strip_prefix("cargo run --release --bin srvd -- ")
            .map(|rest| rest.split_whitespace().map(String::from).collect());
        if let Some(rest) = line.strip_prefix("scripts/serve ") {
            let args: Vec<&str> = rest.split_whitespace().collect();
            serve = Some(crate::support::srvd::spawn_binary(root, &args));
        } else if let Some(job) = line.strip_prefix("kill %") {
            let child = &jobs.0[job.parse::<usize>().unwrap() - 1];
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        } else if background {
            let mut command = match &srvd_args {
                Some(args) => {
                    let mut c = Command::new(env!("CARGO_BIN_EXE_srvd"));
                    c.args(args);
                    c
                }
                None => {
                    let mut c = Command::new(&words[0]);
                    c.args(&words[1..]);
                    c
                }
            };
            let child = command
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{line}: {e}"));
            jobs.0.push(child);
        } else if words[0] == "mkdir" {
            let status = Command::new("mkdir").args(&words[1..]).status().unwrap();
            assert!(status.success(), "{line}");
        } else {
            let expect = walk_through_expectation(queries);
            queries += 1;
            let what = format!("README: {line}");
            let args = words.clone();
            let srvd_args = srvd_args.clone();
            crate::support::eventually(Duration::from_secs(15), &what, || {
                let (args, srvd_args) = (args.clone(), srvd_args.clone());
                async move {
                    let out = tokio::task::spawn_blocking(move || match srvd_args {
                        Some(srvd_args) => {
                            let output = Command::new(env!("CARGO_BIN_EXE_srvd"))
                                .args(srvd_args)
                                .output()
                                .unwrap();
                            String::from_utf8_lossy(&output.stdout).into_owned()
                        }
                        None => {
                            let args: Vec<&str> = args[1..].iter().map(String::as_str).collect();
                            dig(&args)
                        }
                    })
                    .await
                    .unwrap();
                    expect(&out).then_some(())
                }
            })
            .await;
        }
    }
    assert_eq!(queries, 7, "the README's loop asks seven questions");
}

/// What the README's numbered list says query `n` of the loop prints (see the README section).
fn walk_through_expectation(n: usize) -> fn(&str) -> bool {
    match n {
        // 1. the one service type
        0 => |out| out == "_web._tcp.service.local.",
        // 2. both instances, each with SRV and TXT, and the shared address
        1 => |out| {
            let mut ptr = records(out, "PTR", 5);
            ptr.sort();
            ptr == [
                "_web._tcp.service.local. web-01._web._tcp.service.local.",
                "_web._tcp.service.local. web-02._web._tcp.service.local.",
            ] && records(out, "TXT", 5)
                .contains(&"web-01._web._tcp.service.local. \"version=2\"".to_string())
                && records(out, "A", 5) == ["127-0-0-1.addr.service.local. 127.0.0.1"]
                && records(out, "SRV", 5).iter().any(|l| {
                    l.starts_with("web-01._web._tcp.service.local. 10 1 ")
                        && l.ends_with(" 127-0-0-1.addr.service.local.")
                })
        },
        // 3. the canary subtype
        2 => |out| out == "web-01._web._tcp.service.local.",
        // 4. browse: one line per instance
        3 => |out| {
            out.lines().count() == 2
                && out.lines().any(|l| {
                    l.starts_with("web-01._web._tcp.service.local. 127-0-0-1.addr.service.local.:")
                        && l.ends_with(" 127.0.0.1 \"version=2\"")
                })
        },
        // 5. resolve: both SRV records with the address
        4 => |out| {
            out.lines().count() == 2
                && out.lines().all(|l| {
                    l.starts_with("10 1 ")
                        && l.ends_with(" 127-0-0-1.addr.service.local. 127.0.0.1")
                })
        },
        // 6. web-02's server stopped: only web-01 after its sidecar deregisters it
        5 => |out| out == "web-01._web._tcp.service.local.",
        // 7. web-01's sidecar stopped: nothing left
        6 => |out| out.contains("status: NXDOMAIN") && out.contains("flags: qr aa"),
        _ => |_| false,
    }
}

/// The README's "Coming from CoreDNS" Corefile, unchanged but for its ports and etcd URL:
/// `srvd check` prints what the README says, and `srvd serve --conf` answers the etcd example
/// and serves its health, readiness and metrics endpoints.
#[tokio::test]
async fn the_readme_corefile_is_served_as_written() {
    let readme = readme();
    let section = section(&readme, "Coming from CoreDNS");
    let corefile = section.split("```\n").nth(1).expect("the Corefile block");
    let etcd = crate::support::etcd::EtcdServer::start().await;
    let mut client = etcd.client().await;
    client
        .put(
            "/skydns/local/service/backend/_tcp/_http/x1",
            r#"{"host":"10.0.0.1","port":8080}"#,
            None,
        )
        .await
        .unwrap();
    let ports: Vec<String> = (0..4).map(|_| free_port()).collect();
    let corefile = corefile
        .replace("http://127.0.0.1:22379", &etcd.url)
        .replace(":1053", &format!(":{}", ports[0]))
        .replace(":8080", &format!(":{}", ports[1]))
        .replace(":8181", &format!(":{}", ports[2]))
        .replace(":9153", &format!(":{}", ports[3]));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Corefile"), &corefile).unwrap();
    let check = section
        .lines()
        .find(|l| l.contains(" -- check "))
        .and_then(|l| l.split(" -- ").nth(1))
        .expect("a check command");
    let args: Vec<&str> = check.split_whitespace().collect();
    let output = Command::new(env!("CARGO_BIN_EXE_srvd"))
        .args(&args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.starts_with(&format!(
            "Corefile: valid; serves service.local. (etcd) on 127.0.0.1:{}\n",
            ports[0]
        )),
        "{stdout}"
    );
    let serve = section
        .lines()
        .find(|l| l.contains(" -- serve "))
        .and_then(|l| l.split(" -- serve ").nth(1))
        .expect("a serve command");
    let args: Vec<&str> = serve.split_whitespace().collect();
    let mut process = crate::support::srvd::spawn_serve(dir.path(), &args, "info");
    process.until_etcd_synced(Duration::from_secs(10));
    let out = dig(&[
        "@127.0.0.1",
        "-p",
        &ports[0],
        "_http._tcp.backend.service.local",
        "SRV",
        "+short",
    ]);
    assert_eq!(out, "10 100 8080 x1._http._tcp.backend.service.local.");
    let http =
        |port: &str| -> std::net::SocketAddr { format!("127.0.0.1:{port}").parse().unwrap() };
    assert_eq!(
        crate::support::http::get(http(&ports[1]), "/health").await,
        (200, "OK".to_string())
    );
    assert_eq!(
        crate::support::http::get(http(&ports[2]), "/ready").await,
        (200, "OK".to_string())
    );
    let (status, metrics) = crate::support::http::get(http(&ports[3]), "/metrics").await;
    assert_eq!(status, 200);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("coredns_dns_requests_total{") && l.contains("type=\"SRV\"")),
        "{metrics}"
    );
    process.log_until(Duration::from_secs(5), |log| {
        log.iter().any(|l| {
            l.contains("srvd::query")
                && l.contains("\"SRV IN _http._tcp.backend.service.local. udp")
        })
    });
}

/// The README's DNS over TLS and HTTPS lines, run as written: its openssl command makes the
/// certificate (in a temporary directory instead of /tmp), srvd starts with its flags (free
/// ports instead of 8853 and 8443), and each dig line gets the SRV answer.
#[test]
fn the_readme_dns_over_tls_and_https_commands_work_as_written() {
    let readme = readme();
    let section = section(&readme, "DNS over TLS and HTTPS");
    let dir = tempfile::tempdir().unwrap();
    let tmp = format!("{}/", dir.path().display());
    let lines = |prefix: &str| -> Vec<String> {
        section
            .lines()
            .filter(|l| l.starts_with(prefix))
            .map(|l| l.replace("/tmp/", &tmp))
            .collect()
    };
    let openssl = lines("openssl ");
    assert_eq!(openssl.len(), 1, "one certificate command");
    let made = Command::new("sh")
        .arg("-c")
        .arg(&openssl[0])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}: {made:?}", openssl[0]);

    let serve = lines("scripts/serve ");
    assert_eq!(serve.len(), 1, "one serve command");
    let args: Vec<String> = serve[0]
        .split_whitespace()
        .skip(1)
        .map(|a| a.replace(":8853", ":0").replace(":8443", ":0"))
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let process = spawn_binary(root, &args);
    let serving = process
        .log
        .iter()
        .find(|l| l.contains("srvd serving"))
        .unwrap();
    let port = |scheme: &str| -> String {
        serving
            .split(&format!(", {scheme} "))
            .nth(1)
            .and_then(|rest| rest.split([',', ' ']).next())
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no {scheme} address in {serving:?}"))
            .port()
            .to_string()
    };
    let (dot, doh) = (port("tls"), port("https"));

    let digs = lines("dig ");
    for mode in ["+tls ", "+https ", "+https-get "] {
        assert!(
            digs.iter().any(|d| d.contains(mode)),
            "a dig {mode}line in {digs:?}"
        );
    }
    for command in &digs {
        let args: Vec<&str> = command
            .split_whitespace()
            .skip(1)
            .map(|a| match a {
                "8853" => dot.as_str(),
                "8443" => doh.as_str(),
                other => other,
            })
            .collect();
        let out = dig(&args);
        assert!(out.contains("status: NOERROR"), "{command}\n{out}");
        assert!(out.contains("flags: qr aa"), "{command}\n{out}");
        assert!(!out.contains("ANSWER: 0,"), "{command}\n{out}");
    }
}

/// The README's TLS and password walk-through, run as written: its openssl commands make the
/// certificates, a test etcd is started with the README's TLS flags on them (its URL replaces
/// `https://127.0.0.1:22379`, a temporary directory replaces `/tmp/srvd-tls`), the README's
/// etcdctl lines turn auth on and write, and the srvd binary started with the README's flags
/// answers the SRV question.
#[tokio::test]
async fn the_readme_tls_etcd_example_answers_as_the_readme_says() {
    let readme = readme();
    let section = section(&readme, "etcd over TLS and with a password");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("a sh block");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let lines: Vec<&str> = block
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .collect();
    let etcd_at = lines
        .iter()
        .position(|l| l.starts_with("etcd "))
        .expect("an etcd command");
    assert!(
        lines[etcd_at].contains(
            "--cert-file $D/etcd.pem --key-file $D/etcd-key.pem --trusted-ca-file $D/ca.pem --client-cert-auth"
        ),
        "the test etcd runs with the README's TLS flags: {}",
        lines[etcd_at]
    );
    let sh = |script: String| {
        let output = Command::new("sh")
            .arg("-ec")
            .arg(&script)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{script}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    let with_dir = |l: &str| l.replace("/tmp/srvd-tls", &d);
    sh(lines[..etcd_at]
        .iter()
        .map(|l| with_dir(l))
        .collect::<Vec<_>>()
        .join("\n"));
    let etcd = crate::support::etcd::EtcdServer::start_with(crate::support::etcd::EtcdOptions {
        tls: Some(crate::support::etcd::Pki::from_dir(dir.path())),
        client_cert_auth: true,
        ..Default::default()
    })
    .await;
    let with_url = |l: &str| {
        l.replace("https://127.0.0.1:22379", &etcd.url)
            .replace("$D", &d)
    };
    let after: Vec<&str> = lines[etcd_at + 1..].to_vec();
    let defs = format!(
        "D={d}\n{}",
        with_url(after.iter().find(|l| l.starts_with("E=")).unwrap())
    );
    let setup: Vec<String> = after
        .iter()
        .take_while(|l| !l.starts_with("scripts/serve"))
        .map(|l| with_url(l))
        .collect();
    sh(format!("D={d}\n{}", setup.join("\n")));
    let serve = after
        .iter()
        .find(|l| l.starts_with("scripts/serve "))
        .expect("a serve command");
    let serve_args: Vec<String> = with_url(serve)
        .split_whitespace()
        .skip(1)
        .map(String::from)
        .collect();
    let serve_args: Vec<&str> = serve_args.iter().map(String::as_str).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let process = spawn_binary(root, &serve_args);
    let port = process.addr.port().to_string();
    let put = after.iter().find(|l| l.contains(" put ")).expect("a put");
    sh(format!("{defs}\n{}", with_url(put)));
    let dig_command = after
        .iter()
        .find(|l| l.starts_with("dig "))
        .expect("a dig command");
    let args: Vec<&str> = dig_command
        .split_whitespace()
        .skip(1)
        .map(|a| if a == "1053" { port.as_str() } else { a })
        .collect();
    let out = crate::support::eventually(Duration::from_secs(10), "the put is answered", || {
        let args = args.clone();
        async move {
            let out = dig(&args);
            out.contains("ANSWER: 1,").then_some(out)
        }
    })
    .await;
    assert!(
        out.contains("_http._tcp.backend.service.local. 300 IN SRV 10 100 8080 x1._http._tcp.backend.service.local."),
        "{out}"
    );
}
