//! srvd behind `etcd grpc-proxy` when the proxy's shared watch on the prefix breaks. The proxy
//! (3.4, and still 3.6) serves all its clients' watches on one key range from one upstream watch
//! when their revisions allow. A watch refused for a compacted start revision is answered with
//! revision 0, and the proxy then takes that dead upstream watch for one that is due at
//! revision 1: it hands every later watch on the range an emulated `created` reply and nothing
//! else, for as long as the refused watch stays open. srvd must neither cause that (it checks
//! the history before it watches) nor stay stale behind it (a watcher that hears nothing, not
//! even etcd's progress notification, for `--etcd-watch-silence` is replaced by a re-read).
//! The proxy also passes etcd's OUT_OF_RANGE on as UNKNOWN, so srvd tells etcd's revision
//! refusals apart by their message, for the listing too.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use etcd_client::WatchOptions;

use crate::support::etcd::{EtcdOptions, EtcdProxy, EtcdServer, compact_to_now};
use crate::support::skydns::{arrives, key, put_stable, value};
use crate::support::srvd::spawn_binary_logging;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_the_proxy_never_serves_is_replaced_by_a_re_read_within_the_silence_bound() {
    // Progress notifications every second: a served watcher hears one at least every 2 s.
    let etcd = EtcdServer::start_with_flags(
        EtcdOptions::default(),
        &["--experimental-watch-progress-notify-interval", "1s"],
    )
    .await;
    let mut client = etcd.client().await;
    put_stable(&mut client).await;
    compact_to_now(&mut client).await;
    let proxy = EtcdProxy::start(std::slice::from_ref(&etcd.url)).await;

    // Another client of the proxy asks for compacted history on srvd's prefix and keeps its
    // stream open: the proxy's shared watch on the prefix is now dead.
    let mut other = etcd_client::Client::connect([proxy.url.as_str()], None)
        .await
        .unwrap();
    let (_requests, mut responses) = other
        .watch(
            "/skydns/",
            Some(WatchOptions::new().with_prefix().with_start_revision(2)),
        )
        .await
        .unwrap()
        .split();
    loop {
        let response = responses.message().await.unwrap().unwrap();
        if response.canceled() {
            assert!(response.compact_revision() > 0, "{response:?}");
            break;
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let silence = ["--etcd-watch-silence", "5s", "--zone", "skydns.test."];
    let mut proxied = spawn_binary_logging(
        dir.path(),
        &[&["--etcd", proxy.url.as_str()][..], &silence].concat(),
        "srvd=info",
    );
    let mut direct = spawn_binary_logging(
        dir.path(),
        &[&["--etcd", etcd.url.as_str()][..], &silence].concat(),
        "srvd=info",
    );
    proxied.until_etcd_synced(Duration::from_secs(10));
    direct.until_etcd_synced(Duration::from_secs(10));

    let written = Instant::now();
    let ip = Ipv4Addr::new(10, 8, 0, 1);
    client.put(key("late"), value(ip), None).await.unwrap();
    arrives(direct.addr, "late", ip, Duration::from_secs(5), written).await;
    // The proxied replica's watch joined the dead one: only the re-read brings the write.
    let after = arrives(proxied.addr, "late", ip, Duration::from_secs(20), written).await;
    eprintln!(
        "figure: behind a dead proxy watch, a write arrived after {after:?} (--etcd-watch-silence 5s)"
    );
    let silent = |log: &[String]| {
        log.iter()
            .filter(|l| l.contains("delivered nothing"))
            .cloned()
            .collect::<Vec<_>>()
    };
    assert!(
        !silent(proxied.collect_log()).is_empty(),
        "the proxied replica says why it re-read: {:#?}",
        proxied.log
    );
    assert!(
        silent(direct.collect_log()).is_empty(),
        "a served watch hearing progress every 2 s is never taken for silent: {:#?}",
        direct.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_cut_off_past_a_compaction_re_reads_without_watching_the_lost_history() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    put_stable(&mut client).await;
    let mut proxy = EtcdProxy::start(std::slice::from_ref(&etcd.url)).await;
    let dir = tempfile::tempdir().unwrap();
    let mut srvd = spawn_binary_logging(
        dir.path(),
        &["--etcd", &proxy.url, "--zone", "skydns.test."],
        "srvd=info",
    );
    srvd.until_etcd_synced(Duration::from_secs(10));

    proxy.stop();
    let ip = Ipv4Addr::new(10, 8, 0, 2);
    client
        .put(key("while-away"), value(ip), None)
        .await
        .unwrap();
    // Compacted past the first write too: the history after srvd's revision is gone.
    client.put(key("after"), value(ip), None).await.unwrap();
    compact_to_now(&mut client).await;
    proxy.restart().await;

    arrives(
        srvd.addr,
        "while-away",
        ip,
        Duration::from_secs(20),
        Instant::now(),
    )
    .await;
    let rereads: Vec<String> = srvd
        .collect_log()
        .iter()
        .filter(|l| l.contains("compacted past our revision"))
        .cloned()
        .collect();
    // Found by reading at the revision ("unknown": a read's refusal does not say where etcd
    // compacted), never by a watch etcd refused (which says), which would have broken the
    // proxy's watch on the prefix for its other clients.
    assert!(
        rereads.len() == 1 && rereads[0].contains("compacted=unknown"),
        "{:#?}",
        srvd.log
    );
}

/// A compaction between two pages of a listing is reported as a compaction, directly and through
/// the proxy (which passes etcd's OUT_OF_RANGE on as UNKNOWN): the sync task then reads again at
/// once, and does not log an outage and back off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compaction_between_listing_pages_is_a_compaction_directly_and_through_the_proxy() {
    let etcd = EtcdServer::start().await;
    let mut client = etcd.client().await;
    for i in 0..40u8 {
        client
            .put(
                key(&format!("k{i}")),
                value(Ipv4Addr::new(10, 8, 1, i)),
                None,
            )
            .await
            .unwrap();
    }
    let proxy = EtcdProxy::start(std::slice::from_ref(&etcd.url)).await;
    for url in [&etcd.url, &proxy.url] {
        let mut lister = srvd::sync::etcd::Etcd::connect(
            std::slice::from_ref(url),
            "/skydns/",
            1 << 22,
            &Default::default(),
        )
        .await
        .unwrap()
        .with_page_size(7);
        let first = std::sync::atomic::AtomicBool::new(true);
        let first = &first;
        let writer = &client;
        // After the first page, etcd moves on and compacts past the listing's revision; the
        // pages asked for after that are refused.
        let result = lister
            .list_prefix_pages(b"/skydns/", 0, |_page| {
                let mut writer = writer.clone();
                async move {
                    if first.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        writer.put("/elsewhere", "x", None).await.unwrap();
                        compact_to_now(&mut writer).await;
                    }
                    true
                }
            })
            .await;
        assert!(
            matches!(result, Err(srvd::sync::etcd::SyncError::Compacted { .. })),
            "through {url}: {result:?}"
        );
    }
    drop(client);
}
