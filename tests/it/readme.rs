//! The README's commands, run as written against the srvd binary (only ports differ: the tests
//! pick free ones).

use std::process::Command;

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
    let commands: Vec<&str> = readme
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
