//! The README's `dig` examples, run as written against the srvd binary serving `zones/`
//! (only the port differs: the test picks a free one instead of 1053).

use std::process::Command;

use crate::support::shipped_zones;
use crate::support::srvd::spawn_binary;

#[test]
fn every_dig_command_in_the_readme_gets_an_authoritative_answer() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands: Vec<&str> = readme
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
        let output = Command::new("dig")
            .args(&args)
            .args(["+tries=1", "+time=5"])
            .output()
            .expect("dig is installed (scripts/install-deps)");
        let out = String::from_utf8_lossy(&output.stdout);
        assert!(out.contains("status: NOERROR"), "{command}\n{out}");
        assert!(out.contains("flags: qr aa"), "{command}\n{out}");
        assert!(!out.contains("ANSWER: 0,"), "{command}\n{out}");
    }
}
